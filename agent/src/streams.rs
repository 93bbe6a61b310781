//! Interactive streams on the tunnel (exec, attach, port-forward), agent side: a handler gets
//! a `Duplex` (the client's frames in, a `StreamSink` out); output spends the control plane's
//! credit, input is granted back as the handler takes it, so no stream holds up another.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use corral_proto as pb;
use pb::stream_frame::Msg;
use tokio::sync::{mpsc, Semaphore};

/// The most bytes one data frame carries; `StreamSink::send` splits larger output.
pub const MAX_DATA: usize = 32 * 1024;
/// Frames of input the control plane may send before the agent grants more (both sides
/// start from it), and the output window when the control plane names none.
pub const WINDOW: u32 = 16;
/// The most credit a stream may hold: a control plane cannot make the agent buffer more.
const MAX_CREDIT: usize = 1024;

/// A handler's two ends of one stream.
pub struct Duplex {
    /// The client's frames after the first: stdin, stdin_eof, resize.
    pub input: mpsc::Receiver<pb::StreamFrame>,
    pub output: StreamSink,
}

/// The stream is gone: cancelled, or the tunnel closed.
#[derive(Debug, thiserror::Error)]
#[error("stream {0} is closed")]
pub struct Closed(pub u64);

/// Sends a stream's frames up the tunnel; stdout and stderr wait for credit.
#[derive(Clone)]
pub struct StreamSink {
    id: u64,
    up: mpsc::Sender<pb::AgentUp>,
    credit: Arc<Semaphore>,
    ended: Arc<AtomicBool>,
}

impl StreamSink {
    async fn up(&self, frame: pb::StreamFrame) -> Result<(), Closed> {
        let msg = pb::agent_up::Msg::Stream(pb::StreamUp {
            request_id: self.id,
            frame: Some(frame),
        });
        self.up
            .send(pb::AgentUp { msg: Some(msg) })
            .await
            .map_err(|_| Closed(self.id))
    }

    /// Sends one frame; stdout and stderr are cut into frames of at most [`MAX_DATA`] bytes,
    /// each sent once the control plane has credit for it.
    pub async fn send(&self, frame: pb::StreamFrame) -> Result<(), Closed> {
        let (data, stdout) = match frame.msg {
            Some(Msg::Stdout(d)) => (d, true),
            Some(Msg::Stderr(d)) => (d, false),
            Some(Msg::End(_)) => {
                self.ended.store(true, Ordering::Relaxed);
                return self.up(frame).await;
            }
            _ => return self.up(frame).await,
        };
        for chunk in data.chunks(MAX_DATA) {
            self.credit
                .acquire()
                .await
                .map_err(|_| Closed(self.id))?
                .forget();
            let msg = if stdout {
                Msg::Stdout(chunk.to_vec())
            } else {
                Msg::Stderr(chunk.to_vec())
            };
            self.up(pb::StreamFrame { msg: Some(msg) }).await?;
        }
        Ok(())
    }

    pub async fn stdout(&self, data: Vec<u8>) -> Result<(), Closed> {
        self.send(pb::StreamFrame {
            msg: Some(Msg::Stdout(data)),
        })
        .await
    }

    pub async fn stderr(&self, data: Vec<u8>) -> Result<(), Closed> {
        self.send(pb::StreamFrame {
            msg: Some(Msg::Stderr(data)),
        })
        .await
    }

    /// The stream's last frame.
    pub async fn end(&self, end: pb::StreamEnd) -> Result<(), Closed> {
        self.send(pb::StreamFrame {
            msg: Some(Msg::End(end)),
        })
        .await
    }

    /// Ends the stream with an error.
    pub async fn fail(&self, error: impl std::fmt::Display) -> Result<(), Closed> {
        self.end(pb::StreamEnd {
            exit_code: None,
            error: error.to_string(),
        })
        .await
    }

    /// Whether the handler sent the stream's end.
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }
}

/// The tunnel's handle on one open stream: where its frames from the control plane go.
pub struct Inbound {
    /// Holds at most the window: the control plane sends no more than it has credit for.
    tx: mpsc::Sender<pb::StreamFrame>,
    credit: Arc<Semaphore>,
}

/// A control plane that sent input past the credit it was granted.
#[derive(Debug, thiserror::Error)]
#[error("the control plane sent stream {0} more input than its credit")]
pub struct Overrun(pub u64);

impl Inbound {
    /// Takes one frame from the control plane without waiting: credit for output, or input
    /// for the handler.
    pub fn deliver(&self, id: u64, frame: pb::StreamFrame) -> Result<(), Overrun> {
        match frame.msg {
            Some(Msg::Credit(n)) => {
                let room = MAX_CREDIT.saturating_sub(self.credit.available_permits());
                self.credit.add_permits((n as usize).min(room));
                Ok(())
            }
            None => Ok(()),
            _ => match self.tx.try_send(frame) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => Err(Overrun(id)),
                // The stream is finishing: its input no longer matters.
                Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
            },
        }
    }
}

/// Opens stream `id`'s ends: the handler's `Duplex`, the tunnel's `Inbound`, and the task
/// that hands input to the handler and grants its credit back (it ends with the `Inbound`).
pub fn open(id: u64, up: mpsc::Sender<pb::AgentUp>, window: u32) -> (Duplex, Inbound) {
    let window = if window == 0 { WINDOW } else { window };
    let credit = Arc::new(Semaphore::new((window as usize).min(MAX_CREDIT)));
    let (tx, rx) = mpsc::channel(WINDOW as usize);
    let (input_tx, input) = mpsc::channel(1);
    let output = StreamSink {
        id,
        up,
        credit: credit.clone(),
        ended: Default::default(),
    };
    tokio::spawn(pump(rx, input_tx, output.clone()));
    (Duplex { input, output }, Inbound { tx, credit })
}

/// Moves input to the handler as it takes it and grants that much credit back, in halves of
/// the window. A handler that dropped its input still has it drained and credited, so the
/// control plane's relay (resize frames after the end of stdin) never waits forever.
async fn pump(
    mut rx: mpsc::Receiver<pb::StreamFrame>,
    input: mpsc::Sender<pb::StreamFrame>,
    sink: StreamSink,
) {
    let mut taken = 0u32;
    let mut handler_gone = false;
    while let Some(frame) = rx.recv().await {
        if !handler_gone && input.send(frame).await.is_err() {
            handler_gone = true;
        }
        taken += 1;
        if taken >= WINDOW / 2 {
            let n = std::mem::take(&mut taken);
            let credit = pb::StreamFrame {
                msg: Some(Msg::Credit(n)),
            };
            if sink.up(credit).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
