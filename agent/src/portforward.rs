//! Port-forward to a pod's port (helper `portfwd` replaces this stub): until then every
//! request ends at once with an "unsupported" error.

use corral_proto as pb;

use crate::pod::manager::PodIndex;
use crate::streams::Duplex;

pub async fn serve(_index: PodIndex, req: pb::PortForwardRequest, io: Duplex) {
    let _ = io
        .output
        .fail(format!(
            "port-forward to pod {:?} port {}: unsupported by this agent",
            req.pod, req.port
        ))
        .await;
}
