//! `corral exec [-i] [-t] POD [-c C] -- CMD...` through the `Exec` stream, and the session
//! attach and cp share: stdin forwarded from a thread, raw terminal mode restored on every
//! exit path, SIGWINCH sent as resize frames, the remote exit code as the CLI's.

use std::io::{Read, Write};
use std::os::fd::AsFd;

use corral_api::client::{stdin_frames, StreamKind};
use corral_api::kinds;
use corral_proto as pb;
use pb::stream_frame::Msg;
use rustix::termios;
use tokio::sync::mpsc;

use super::logs::{pick_container, pick_pod};
use super::{errln, Ctx};
use crate::args::ExecArgs;
use crate::error::{local, CliError, Result};

/// Where a session's output goes and where its input comes from.
pub(super) struct Io<'a> {
    /// Read on its own thread and forwarded; its end is sent as `stdin_eof`.
    pub stdin: Option<Box<dyn Read + Send>>,
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
    /// A terminal: raw mode on our stdin and window size changes forwarded.
    pub tty: bool,
}

/// Puts the terminal in raw mode; the saved mode comes back when dropped, so every return
/// path (errors included) restores it.
struct RawMode {
    saved: termios::Termios,
}

impl RawMode {
    fn enter() -> Option<Self> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(stdin.as_fd(), termios::OptionalActions::Now, &raw).ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let stdin = std::io::stdin();
        let _ = termios::tcsetattr(stdin.as_fd(), termios::OptionalActions::Now, &self.saved);
    }
}

/// Our terminal's size, when stdout (else stdin) is one.
pub(super) fn terminal_size() -> Option<pb::TerminalSize> {
    let ws = termios::tcgetwinsize(std::io::stdout().as_fd())
        .or_else(|_| termios::tcgetwinsize(std::io::stdin().as_fd()))
        .ok()?;
    (ws.ws_col > 0 && ws.ws_row > 0).then_some(pb::TerminalSize {
        width: ws.ws_col as u32,
        height: ws.ws_row as u32,
    })
}

pub(super) fn stdin_is_tty() -> bool {
    termios::isatty(std::io::stdin().as_fd())
}

/// Copies `input` into stdin frames on a thread of its own (a blocking read must not hold
/// the runtime), then sends `stdin_eof`.
fn forward_stdin(mut input: Box<dyn Read + Send>, tx: mpsc::Sender<pb::StreamFrame>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; corral_api::client::MAX_DATA];
        loop {
            match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    for frame in stdin_frames(&buf[..n]) {
                        if tx.blocking_send(frame).is_err() {
                            return;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.blocking_send(pb::StreamFrame {
            msg: Some(Msg::StdinEof(true)),
        });
    });
}

/// Runs one stream to its end: output written as it comes, input and resizes sent. Returns
/// the stream's end.
pub(super) async fn session(
    ctx: &Ctx,
    kind: StreamKind,
    first: pb::StreamFrame,
    pod: &str,
    io: Io<'_>,
) -> Result<pb::StreamEnd> {
    let (tx, mut rx) = ctx
        .client
        .open_stream(kind, first)
        .await
        .map_err(|e| ctx.about(&kinds::PODS, pod, &e))?;
    let _raw = if io.tty { RawMode::enter() } else { None };
    if let Some(input) = io.stdin {
        forward_stdin(input, tx.clone());
    }
    let resizes = io.tty.then(|| {
        let tx = tx.clone();
        tokio::spawn(async move {
            let Ok(mut winch) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
            else {
                return;
            };
            while winch.recv().await.is_some() {
                if let Some(size) = terminal_size() {
                    let frame = pb::StreamFrame {
                        msg: Some(Msg::Resize(size)),
                    };
                    if tx.send(frame).await.is_err() {
                        return;
                    }
                }
            }
        })
    });
    // Held until the end: dropping every sender would end our side of the call.
    let _tx = tx;
    let result = loop {
        let frame = match rx.message().await {
            Ok(Some(f)) => f,
            Ok(None) => break Err(local("the stream ended without a result")),
            Err(s) => break Err(ctx.about(&kinds::PODS, pod, &s.into())),
        };
        let written = match frame.msg {
            Some(Msg::Stdout(d)) => io.stdout.write_all(&d).and_then(|()| io.stdout.flush()),
            Some(Msg::Stderr(d)) => io.stderr.write_all(&d).and_then(|()| io.stderr.flush()),
            Some(Msg::End(end)) => break Ok(end),
            _ => Ok(()),
        };
        if written.is_err() {
            break Err(CliError::Reported);
        }
    };
    if let Some(r) = resizes {
        r.abort();
    }
    result
}

/// The end of a stream as kubectl reports it: an error is `error: ...`; a non-zero exit is
/// `command terminated with exit code N` and the CLI exits with N.
pub(super) fn finish(end: pb::StreamEnd) -> Result<()> {
    if !end.error.is_empty() {
        return Err(local(end.error));
    }
    match end.exit_code {
        Some(0) | None => Ok(()),
        Some(code) => {
            errln(&format!("command terminated with exit code {code}"));
            Err(CliError::Exit(code))
        }
    }
}

pub async fn run(ctx: &Ctx, a: &ExecArgs) -> Result<()> {
    if a.command.is_empty() {
        return Err(local(
            "you must specify at least one command for the container",
        ));
    }
    let pod = pick_pod(ctx, &a.pod).await?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let container = pick_container(&pod, a.container.as_deref())?;
    let mut tty = a.tty;
    if tty && !(a.stdin && stdin_is_tty()) {
        // kubectl's words; the command still runs, without a terminal.
        errln("Unable to use a TTY - input is not a terminal or the right kind of file");
        tty = false;
    }
    let first = pb::StreamFrame {
        msg: Some(Msg::Exec(pb::ExecRequest {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| ctx.namespace.clone()),
            pod: name.clone(),
            container,
            command: a.command.clone(),
            stdin: a.stdin,
            tty,
            size: if tty { terminal_size() } else { None },
        })),
    };
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let io = Io {
        stdin: a
            .stdin
            .then(|| Box::new(std::io::stdin()) as Box<dyn Read + Send>),
        stdout: &mut stdout,
        stderr: &mut stderr,
        tty,
    };
    let end = session(ctx, StreamKind::Exec, first, &name, io).await?;
    finish(end)
}
