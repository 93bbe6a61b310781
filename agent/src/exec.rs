//! `corral exec` and `corral attach` on the agent: a process run in a pod's container through
//! containerd's task Exec API (stdio FIFOs, a terminal with resize, the exit code back), and
//! the live output of a container's own process (the file its shim writes, as logs read it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1 as cs;
use corral_proto as pb;
use pb::stream_frame::Msg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::pod::manager::PodIndex;
use crate::probe::exec::{container_process, PROCESS_TYPE_URL};
use crate::runtime::{RuntimeError, TaskState, LABEL_ATTEMPT, LABEL_CONTAINER_NAME, LABEL_POD_UID};
use crate::streams::{Duplex, StreamSink, MAX_DATA};

/// How long output may still come after the process exited (a background child can hold
/// its stdout open; its output past this is not waited for).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// What exec and attach need: containerd, the pods on this node, the agent's data dir.
#[derive(Clone)]
pub struct ExecContext {
    pub containerd: corral_containerd::Client,
    pub index: PodIndex,
    pub data_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("pod {pod:?} in namespace {namespace:?} is not running on this node")]
    NoPod { namespace: String, pod: String },
    #[error("container {container:?} not found in pod {pod:?}")]
    NoContainer { pod: String, container: String },
    #[error("container {container:?} in pod {pod:?} is not running")]
    NotRunning { pod: String, container: String },
    #[error("container {container:?} in pod {pod:?}: {source}")]
    Runtime {
        pod: String,
        container: String,
        #[source]
        source: RuntimeError,
    },
    #[error("container {container:?} in pod {pod:?}: {what}: {source}")]
    Io {
        pod: String,
        container: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// The pod and container a request is about, for errors.
#[derive(Clone)]
struct Target {
    namespace: String,
    pod: String,
    container: String,
}

impl Target {
    fn runtime(&self) -> impl FnOnce(RuntimeError) -> ExecError + '_ {
        |source| ExecError::Runtime {
            pod: self.pod.clone(),
            container: self.container.clone(),
            source,
        }
    }
    fn io(&self, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ExecError + '_ {
        let what = what.into();
        |source| ExecError::Io {
            pod: self.pod.clone(),
            container: self.container.clone(),
            what,
            source,
        }
    }
}

/// The containerd ID of the running container `t` names (its newest attempt).
async fn running_container(ctx: &ExecContext, t: &Target) -> Result<String, ExecError> {
    let uid = ctx
        .index
        .uid(&t.namespace, &t.pod)
        .ok_or_else(|| ExecError::NoPod {
            namespace: t.namespace.clone(),
            pod: t.pod.clone(),
        })?;
    let all = ctx.containerd.list().await.map_err(t.runtime())?;
    let mut mine: Vec<_> = all
        .into_iter()
        .filter(|c| {
            c.labels.get(LABEL_POD_UID) == Some(&uid)
                && c.labels.get(LABEL_CONTAINER_NAME) == Some(&t.container)
        })
        .collect();
    if mine.is_empty() {
        return Err(ExecError::NoContainer {
            pod: t.pod.clone(),
            container: t.container.clone(),
        });
    }
    let attempt = |c: &corral_containerd::ContainerInfo| -> u32 {
        c.labels
            .get(LABEL_ATTEMPT)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0)
    };
    mine.sort_by_key(|c| std::cmp::Reverse(attempt(c)));
    mine.into_iter()
        .find(|c| matches!(c.state, TaskState::Running { .. }))
        .map(|c| c.id)
        .ok_or_else(|| ExecError::NotRunning {
            pod: t.pod.clone(),
            container: t.container.clone(),
        })
}

/// Runs `req.command` in the container and streams it; the stream's end carries the exit
/// code, or the error naming pod and container.
pub async fn exec(ctx: ExecContext, req: pb::ExecRequest, io: Duplex) {
    let sink = io.output.clone();
    let t = Target {
        namespace: req.namespace.clone(),
        pod: req.pod.clone(),
        container: req.container.clone(),
    };
    let end = match run_exec(&ctx, &t, &req, io).await {
        Ok(code) => pb::StreamEnd {
            exit_code: Some(code),
            error: String::new(),
        },
        Err(e) => {
            warn!(pod = %t.pod, namespace = %t.namespace, container = %t.container, error = %e, "exec failed");
            pb::StreamEnd {
                exit_code: None,
                error: e.to_string(),
            }
        }
    };
    let _ = sink.end(end).await;
}

/// Kills and deletes the exec process and removes its FIFOs when the exec ends, however it
/// ends (a cancelled stream drops this mid-way).
struct ExecGuard {
    c: corral_containerd::Client,
    container: String,
    exec_id: String,
    dir: PathBuf,
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        let c = self.c.clone();
        let (container_id, exec_id) = (self.container.clone(), self.exec_id.clone());
        let dir = self.dir.clone();
        tokio::spawn(async move {
            let _ = c
                .tasks()
                .kill(c.req(
                    cs::KillRequest {
                        container_id: container_id.clone(),
                        exec_id: exec_id.clone(),
                        signal: nix::sys::signal::Signal::SIGKILL as u32,
                        all: false,
                    },
                    None,
                ))
                .await;
            let _ = c
                .tasks()
                .delete_process(c.req(
                    cs::DeleteProcessRequest {
                        container_id,
                        exec_id,
                    },
                    None,
                ))
                .await;
            let _ = tokio::fs::remove_dir_all(&dir).await;
        });
    }
}

fn mkfifo(path: &Path) -> std::io::Result<()> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(std::io::Error::from)
}

async fn run_exec(
    ctx: &ExecContext,
    t: &Target,
    req: &pb::ExecRequest,
    io: Duplex,
) -> Result<i32, ExecError> {
    let id = running_container(ctx, t).await?;
    let c = &ctx.containerd;
    let mut process = container_process(c, &id).await.map_err(t.runtime())?;
    process["args"] = serde_json::json!(req.command);
    process["terminal"] = serde_json::json!(req.tty);
    match (&req.size, process.as_object_mut()) {
        (Some(s), Some(_)) if req.tty && s.width > 0 && s.height > 0 => {
            process["consoleSize"] = serde_json::json!({"height": s.height, "width": s.width});
        }
        (_, Some(p)) => {
            p.remove("consoleSize");
        }
        _ => {}
    }
    let exec_id = format!("exec-{}", uuid::Uuid::new_v4().simple());
    let dir = ctx.data_dir.join("tmp").join("exec").join(&exec_id);
    std::fs::create_dir_all(&dir).map_err(t.io(format!("creating {}", dir.display())))?;
    let guard = ExecGuard {
        c: c.clone(),
        container: id.clone(),
        exec_id: exec_id.clone(),
        dir: dir.clone(),
    };
    // Our ends are open before the shim opens its own: its writers would otherwise wait.
    let fifo = |name: &str| -> Result<PathBuf, ExecError> {
        let path = dir.join(name);
        mkfifo(&path).map_err(t.io(format!("creating {}", path.display())))?;
        Ok(path)
    };
    let stdout_path = fifo("stdout")?;
    let stdout = pipe::OpenOptions::new()
        .open_receiver(&stdout_path)
        .map_err(t.io("opening stdout"))?;
    // A terminal has one output: stderr is merged into it.
    let (stderr_path, stderr) = if req.tty {
        (String::new(), None)
    } else {
        let path = fifo("stderr")?;
        let rx = pipe::OpenOptions::new()
            .open_receiver(&path)
            .map_err(t.io("opening stderr"))?;
        (path.display().to_string(), Some(rx))
    };
    // Read-write: opening never waits for the shim, and our end never sees it closed.
    let (stdin_path, stdin) = if req.stdin {
        let path = fifo("stdin")?;
        let tx = pipe::OpenOptions::new()
            .read_write(true)
            .open_sender(&path)
            .map_err(t.io("opening stdin"))?;
        (path.display().to_string(), Some(tx))
    } else {
        (String::new(), None)
    };
    let what = format!("{id} exec {exec_id}");
    c.tasks()
        .exec(c.req(
            cs::ExecProcessRequest {
                container_id: id.clone(),
                exec_id: exec_id.clone(),
                stdin: stdin_path,
                stdout: stdout_path.display().to_string(),
                stderr: stderr_path,
                terminal: req.tty,
                spec: Some(prost_types::Any {
                    type_url: PROCESS_TYPE_URL.to_string(),
                    value: serde_json::to_vec(&process).unwrap_or_default(),
                }),
            },
            None,
        ))
        .await
        .map_err(|s| t.runtime()(RuntimeError::grpc("exec", what.clone())(s)))?;
    c.tasks()
        .start(c.req(
            cs::StartRequest {
                container_id: id.clone(),
                exec_id: exec_id.clone(),
            },
            None,
        ))
        .await
        .map_err(|s| t.runtime()(RuntimeError::grpc("start exec", what.clone())(s)))?;
    debug!(pod = %t.pod, container = %t.container, exec_id = %exec_id, "exec started");

    let sink = io.output.clone();
    let outputs = async {
        let err_sink = sink.clone();
        tokio::join!(copy_out(stdout, &sink, true), async {
            if let Some(rx) = stderr {
                copy_out(rx, &err_sink, false).await;
            }
        });
    };
    let input = copy_in(c, &id, &exec_id, io.input, stdin);
    let wait = async {
        c.tasks()
            .wait(c.req(
                cs::WaitRequest {
                    container_id: id.clone(),
                    exec_id: exec_id.clone(),
                },
                None,
            ))
            .await
            .map(|r| r.into_inner().exit_status as i32)
            .map_err(|s| t.runtime()(RuntimeError::grpc("wait exec", what.clone())(s)))
    };
    tokio::pin!(outputs, input, wait);
    let (mut outputs_done, mut input_done) = (false, false);
    let code = loop {
        tokio::select! {
            r = &mut wait => break r?,
            _ = &mut outputs, if !outputs_done => outputs_done = true,
            _ = &mut input, if !input_done => input_done = true,
        }
    };
    if !outputs_done {
        let _ = tokio::time::timeout(OUTPUT_GRACE, &mut outputs).await;
    }
    drop(guard);
    Ok(code)
}

/// Copies one output FIFO into the stream until the shim closes it.
async fn copy_out(mut rx: pipe::Receiver, sink: &StreamSink, stdout: bool) {
    let mut buf = vec![0u8; MAX_DATA];
    loop {
        let n = match rx.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let data = buf[..n].to_vec();
        let sent = if stdout {
            sink.stdout(data).await
        } else {
            sink.stderr(data).await
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Feeds the client's frames to the process: stdin, its end (our FIFO end closed and
/// containerd's CloseIO), terminal resizes. Returns when the client sends nothing more.
async fn copy_in(
    c: &corral_containerd::Client,
    id: &str,
    exec_id: &str,
    mut input: mpsc::Receiver<pb::StreamFrame>,
    mut stdin: Option<pipe::Sender>,
) {
    while let Some(frame) = input.recv().await {
        match frame.msg {
            Some(Msg::Stdin(data)) => {
                if let Some(tx) = stdin.as_mut() {
                    if tx.write_all(&data).await.is_err() {
                        stdin = None;
                    }
                }
            }
            Some(Msg::StdinEof(_)) if stdin.take().is_some() => {
                let _ = c
                    .tasks()
                    .close_io(c.req(
                        cs::CloseIoRequest {
                            container_id: id.to_string(),
                            exec_id: exec_id.to_string(),
                            stdin: true,
                        },
                        None,
                    ))
                    .await;
            }
            Some(Msg::Resize(size)) => {
                let _ = c
                    .tasks()
                    .resize_pty(c.req(
                        cs::ResizePtyRequest {
                            container_id: id.to_string(),
                            exec_id: exec_id.to_string(),
                            width: size.width,
                            height: size.height,
                        },
                        None,
                    ))
                    .await;
            }
            _ => {}
        }
    }
}

/// Streams the live output of the container's own process (from now on, as its shim writes
/// it to the log file). Its task has no stdin (the shim writes its output to a file, so an
/// agent restart loses nothing), so a request for stdin is told so on stderr.
pub async fn attach(ctx: ExecContext, req: pb::AttachRequest, io: Duplex) {
    let sink = io.output.clone();
    let t = Target {
        namespace: req.namespace.clone(),
        pod: req.pod.clone(),
        container: req.container.clone(),
    };
    if let Err(e) = running_container(&ctx, &t).await {
        let _ = sink.fail(e).await;
        return;
    }
    if req.stdin {
        let note = format!(
            "container {:?} in pod {:?} has no stdin to attach to (Corral runs containers without one); showing its output only\n",
            t.container, t.pod
        );
        if sink.stderr(note.into_bytes()).await.is_err() {
            return;
        }
    }
    let (tx, mut rx) = mpsc::channel(4);
    let logs = pb::LogsRequest {
        namespace: req.namespace,
        pod: req.pod,
        container: req.container,
        follow: true,
        previous: false,
        tail_lines: 0,
        ..Default::default()
    };
    let follow = tokio::spawn(crate::logs::serve(
        ctx.data_dir.clone(),
        ctx.index.clone(),
        logs,
        tx,
    ));
    // Not used: dropped, so whatever the client sends is drained and credited.
    drop(io.input);
    let mut error = String::new();
    while let Some(chunk) = rx.recv().await {
        match chunk {
            Ok(data) => {
                if sink.stdout(data).await.is_err() {
                    follow.abort();
                    return;
                }
            }
            Err(e) => error = e,
        }
    }
    let _ = sink
        .end(pb::StreamEnd {
            exit_code: None,
            error,
        })
        .await;
}
