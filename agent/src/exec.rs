//! `corral exec` and `corral attach` on the agent: a process run in a pod's container through
//! containerd's task Exec API (stdio FIFOs, a terminal with resize, the exit code back), and
//! the live output of a container's own process.

use std::path::PathBuf;

use corral_proto as pb;

use crate::pod::manager::PodIndex;
use crate::streams::Duplex;

/// What exec and attach need: containerd, the pods on this node, the agent's data dir.
#[derive(Clone)]
pub struct ExecContext {
    pub containerd: corral_containerd::Client,
    pub index: PodIndex,
    pub data_dir: PathBuf,
}

pub async fn exec(_ctx: ExecContext, _req: pb::ExecRequest, io: Duplex) {
    let _ = io.output.fail("exec: not yet").await;
}

pub async fn attach(_ctx: ExecContext, _req: pb::AttachRequest, io: Duplex) {
    let _ = io.output.fail("attach: not yet").await;
}
