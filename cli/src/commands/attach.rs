//! `corral attach POD [-c C] [-i] [-t]` through the `Attach` stream: the live output of the
//! container's own process (Corral's containers have no stdin stream to attach to; the agent
//! says so on stderr when `-i` asks for it).

use corral_api::client::StreamKind;
use corral_proto as pb;
use pb::stream_frame::Msg;

use super::exec::{finish, session, stdin_is_tty, terminal_size, Io};
use super::logs::{pick_container, pick_pod};
use super::Ctx;
use crate::args::AttachArgs;
use crate::error::Result;

pub async fn run(ctx: &Ctx, a: &AttachArgs) -> Result<()> {
    let pod = pick_pod(ctx, &a.pod).await?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let container = pick_container(&pod, a.container.as_deref())?;
    let tty = a.tty && a.stdin && stdin_is_tty();
    let first = pb::StreamFrame {
        msg: Some(Msg::Attach(pb::AttachRequest {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| ctx.namespace.clone()),
            pod: name.clone(),
            container,
            stdin: a.stdin,
            tty,
            size: if tty { terminal_size() } else { None },
        })),
    };
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let io = Io {
        stdin: None,
        stdout: &mut stdout,
        stderr: &mut stderr,
        tty: false,
    };
    finish(session(ctx, StreamKind::Attach, first, &name, io).await?)
}
