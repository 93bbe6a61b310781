//! Interactive streams (exec, attach, port-forward): one bidirectional gRPC call per stream,
//! its first frame the request. The control plane relays it through the pod's node agent;
//! this leg's flow control is HTTP/2's own, so the caller sends no credit frames.

use corral_proto as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Client, Result};

/// Which interactive RPC to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Exec,
    Attach,
    PortForward,
}

/// The most bytes one data frame carries (stdin); larger input is cut by [`stdin_frames`].
pub const MAX_DATA: usize = 32 * 1024;

/// `data` as stdin frames of at most [`MAX_DATA`] bytes.
pub fn stdin_frames(data: &[u8]) -> impl Iterator<Item = pb::StreamFrame> + '_ {
    data.chunks(MAX_DATA).map(|c| pb::StreamFrame {
        msg: Some(pb::stream_frame::Msg::Stdin(c.to_vec())),
    })
}

impl Client {
    /// Opens a stream whose request is `first`: frames sent into the sender go to the pod
    /// (stdin, stdin_eof, resize); the response yields stdout, stderr and, last, an `end`.
    /// Dropping the response cancels the stream; dropping the sender only ends the input.
    pub async fn open_stream(
        &self,
        kind: StreamKind,
        first: pb::StreamFrame,
    ) -> Result<(
        mpsc::Sender<pb::StreamFrame>,
        tonic::Streaming<pb::StreamFrame>,
    )> {
        let (tx, rx) = mpsc::channel(16);
        tx.send(first)
            .await
            .expect("the receiver is held until the call is made");
        let mut api = self.api.clone();
        let input = ReceiverStream::new(rx);
        let response = match kind {
            StreamKind::Exec => api.exec(input).await?,
            StreamKind::Attach => api.attach(input).await?,
            StreamKind::PortForward => api.port_forward(input).await?,
        };
        Ok((tx, response.into_inner()))
    }
}
