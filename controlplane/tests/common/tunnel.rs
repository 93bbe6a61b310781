//! A fake agent's end of the tunnel: the hello naming its node, then the stream of requests.
#![allow(dead_code)]

use corral_proto as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Opens the tunnel as node `node` over `api`'s connection: the sender of what the agent
/// sends up, and the stream of what the control plane sends down.
pub async fn open(
    api: &corral_api::Client,
    node: &str,
) -> (mpsc::Sender<pb::AgentUp>, tonic::Streaming<pb::AgentDown>) {
    let mut client = pb::agent_tunnel_client::AgentTunnelClient::new(api.transport());
    let (up, up_rx) = mpsc::channel(16);
    let hello = pb::agent_up::Msg::Hello(pb::AgentHello {
        node_name: node.into(),
    });
    up.send(pb::AgentUp { msg: Some(hello) }).await.unwrap();
    let down = client
        .open(ReceiverStream::new(up_rx))
        .await
        .unwrap()
        .into_inner();
    (up, down)
}
