//! A typed in-memory `ContainerRuntime` for tests: containers with their task states, images
//! that are present or pullable, exits a test triggers, and a log of every call with when it
//! was made. Signals act as on runc: SIGKILL ends a task, SIGTERM only when the fake is told
//! the process honours it; exec exits 0 for the command `true` and 1 for anything else.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{
    normalize_reference, ContainerInfo, ContainerRuntime, CreateContainer, ExitInfo, ImageConfig,
    ImageInfo, Result, RuntimeError, TaskState,
};
use crate::clock::{Clock, SystemClock};

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// One call made to the fake runtime.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Image(String),
    Pull(String),
    Import(PathBuf),
    Create(String),
    CreateTask(String),
    StartTask(String),
    Wait(String),
    Kill { id: String, signal: i32 },
    Remove(String),
    List,
    Exec { id: String, command: Vec<String> },
}

impl fmt::Display for Call {
    /// The short form tests compare: `kill 15`, `exec true`, `create <id>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Image(r) => write!(f, "image {r}"),
            Call::Pull(r) => write!(f, "pull {r}"),
            Call::Import(p) => write!(f, "import {}", p.display()),
            Call::Create(id) => write!(f, "create {id}"),
            Call::CreateTask(id) => write!(f, "create-task {id}"),
            Call::StartTask(id) => write!(f, "start-task {id}"),
            Call::Wait(id) => write!(f, "wait {id}"),
            Call::Kill { signal, .. } => write!(f, "kill {signal}"),
            Call::Remove(id) => write!(f, "remove {id}"),
            Call::List => write!(f, "list"),
            Call::Exec { command, .. } => write!(f, "exec {}", command.join(" ")),
        }
    }
}

/// A call and when it was made.
#[derive(Debug, Clone)]
pub struct Called {
    pub call: Call,
    pub at: Instant,
}

#[derive(Debug, Clone, PartialEq)]
enum Task {
    None,
    Created,
    Running { pid: u32 },
    Exited(ExitInfo),
}

struct Entry {
    created: CreateContainer,
    task: Task,
    exit: watch::Sender<Option<ExitInfo>>,
}

#[derive(Default)]
struct State {
    images: HashMap<String, ImageInfo>,
    pullable: HashMap<String, ImageInfo>,
    containers: BTreeMap<String, Entry>,
    history: Vec<Called>,
    next_pid: u32,
}

pub struct FakeRuntime {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    exits_on_term: bool,
    exec_takes: Duration,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

fn image_info(reference: &str) -> ImageInfo {
    let reference = normalize_reference(reference);
    ImageInfo {
        id: format!("sha256:fake-{reference}"),
        reference,
        config: ImageConfig::default(),
    }
}

fn not_found(op: &'static str, id: &str) -> RuntimeError {
    RuntimeError::Grpc {
        op,
        what: format!("container {id:?}"),
        source: tonic::Status::not_found("not found"),
    }
}

impl FakeRuntime {
    /// No images, no containers; processes exit on SIGTERM; exec returns at once.
    pub fn new() -> Self {
        FakeRuntime {
            state: Mutex::new(State {
                next_pid: 100,
                ..Default::default()
            }),
            clock: Arc::new(SystemClock),
            exits_on_term: true,
            exec_takes: Duration::ZERO,
        }
    }

    /// The clock exits are timed by.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// An image present in the runtime.
    pub fn with_image(self, reference: &str) -> Self {
        let i = image_info(reference);
        self.state.lock().images.insert(i.reference.clone(), i);
        self
    }

    /// An image absent from the runtime that a pull fetches.
    pub fn with_pullable(self, reference: &str) -> Self {
        let i = image_info(reference);
        self.state.lock().pullable.insert(i.reference.clone(), i);
        self
    }

    /// Whether a container's process exits on SIGTERM (it always does on SIGKILL).
    pub fn exits_on_term(mut self, exits: bool) -> Self {
        self.exits_on_term = exits;
        self
    }

    /// How long an exec runs (bounded by its timeout).
    pub fn exec_takes(mut self, d: Duration) -> Self {
        self.exec_takes = d;
        self
    }

    /// Adds a container whose task runs, as if made before the test started.
    pub fn add_running(&self, id: &str, labels: HashMap<String, String>) {
        let mut s = self.state.lock();
        let pid = s.next_pid;
        s.next_pid += 1;
        s.containers.insert(
            id.to_string(),
            Entry {
                created: CreateContainer {
                    id: id.to_string(),
                    image: String::new(),
                    spec: serde_json::Value::Null,
                    labels,
                    log_path: PathBuf::new(),
                },
                task: Task::Running { pid },
                exit: watch::Sender::new(None),
            },
        );
    }

    /// The running process of `id` exits with `exit_code` now; false if it was not running.
    pub fn exit(&self, id: &str, exit_code: i32) -> bool {
        let now = self.clock.now();
        let mut s = self.state.lock();
        match s.containers.get_mut(id) {
            Some(e) if matches!(e.task, Task::Running { .. }) => {
                finish(e, exit_code, now);
                true
            }
            _ => false,
        }
    }

    /// The containers as `list` shows them, without recording a call.
    pub fn containers(&self) -> Vec<ContainerInfo> {
        self.state.lock().containers.values().map(info).collect()
    }

    /// What `create` was given for `id`, while the container exists.
    pub fn created(&self, id: &str) -> Option<CreateContainer> {
        let s = self.state.lock();
        s.containers.get(id).map(|e| e.created.clone())
    }

    /// Every call so far, in order.
    pub fn history(&self) -> Vec<Called> {
        self.state.lock().history.clone()
    }

    fn record(&self, call: Call) {
        self.state.lock().history.push(Called {
            call,
            at: Instant::now(),
        });
    }
}

fn finish(e: &mut Entry, exit_code: i32, finished_at: jiff::Timestamp) {
    let exit = ExitInfo {
        exit_code,
        finished_at,
        oom_killed: false,
    };
    e.task = Task::Exited(exit.clone());
    e.exit.send_replace(Some(exit));
}

fn info(e: &Entry) -> ContainerInfo {
    ContainerInfo {
        id: e.created.id.clone(),
        labels: e.created.labels.clone(),
        state: match &e.task {
            Task::None | Task::Created => TaskState::Created,
            Task::Running { pid } => TaskState::Running { pid: *pid },
            Task::Exited(x) => TaskState::Exited {
                exit_code: x.exit_code,
                finished_at: x.finished_at,
            },
        },
    }
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        self.record(Call::Image(reference.into()));
        let s = self.state.lock();
        Ok(s.images.get(&normalize_reference(reference)).cloned())
    }

    async fn pull(&self, reference: &str) -> Result<ImageInfo> {
        self.record(Call::Pull(reference.into()));
        let mut s = self.state.lock();
        let key = normalize_reference(reference);
        let Some(i) = s.pullable.get(&key).cloned() else {
            return Err(RuntimeError::ImageNotFound(reference.into()));
        };
        s.images.insert(key, i.clone());
        Ok(i)
    }

    async fn import_archive(&self, path: &Path) -> Result<Vec<String>> {
        self.record(Call::Import(path.into()));
        Ok(Vec::new())
    }

    async fn create(&self, c: &CreateContainer) -> Result<()> {
        self.record(Call::Create(c.id.clone()));
        let mut s = self.state.lock();
        if s.containers.contains_key(&c.id) {
            return Err(RuntimeError::Grpc {
                op: "create",
                what: format!("container {:?}", c.id),
                source: tonic::Status::already_exists("already exists"),
            });
        }
        s.containers.insert(
            c.id.clone(),
            Entry {
                created: c.clone(),
                task: Task::None,
                exit: watch::Sender::new(None),
            },
        );
        Ok(())
    }

    async fn create_task(&self, id: &str) -> Result<()> {
        self.record(Call::CreateTask(id.into()));
        let mut s = self.state.lock();
        let e = s
            .containers
            .get_mut(id)
            .ok_or_else(|| not_found("create task", id))?;
        e.task = Task::Created;
        Ok(())
    }

    async fn start_task(&self, id: &str) -> Result<u32> {
        self.record(Call::StartTask(id.into()));
        let mut s = self.state.lock();
        let pid = s.next_pid;
        let e = s
            .containers
            .get_mut(id)
            .ok_or_else(|| not_found("start task", id))?;
        if e.task != Task::Created {
            return Err(not_found("start task", id));
        }
        e.task = Task::Running { pid };
        s.next_pid += 1;
        Ok(pid)
    }

    async fn wait(&self, id: &str) -> Result<ExitInfo> {
        self.record(Call::Wait(id.into()));
        let mut rx = {
            let s = self.state.lock();
            let e = s.containers.get(id).ok_or_else(|| not_found("wait", id))?;
            e.exit.subscribe()
        };
        // Removed without an exit: gone, as containerd reports it.
        let exit = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| not_found("wait", id))?
            .clone();
        exit.ok_or_else(|| not_found("wait", id))
    }

    async fn kill(&self, id: &str, signal: i32) -> Result<()> {
        self.record(Call::Kill {
            id: id.into(),
            signal,
        });
        let now = self.clock.now();
        let mut s = self.state.lock();
        let e = s
            .containers
            .get_mut(id)
            .ok_or_else(|| not_found("kill", id))?;
        let ends = signal == SIGKILL || (signal == SIGTERM && self.exits_on_term);
        if ends && matches!(e.task, Task::Running { .. }) {
            finish(e, 128 + signal, now);
        }
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<()> {
        self.record(Call::Remove(id.into()));
        let now = self.clock.now();
        let mut s = self.state.lock();
        if let Some(mut e) = s.containers.remove(id) {
            if matches!(e.task, Task::Running { .. }) {
                finish(&mut e, 128 + SIGKILL, now);
            }
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>> {
        self.record(Call::List);
        Ok(self.containers())
    }

    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<i32> {
        self.record(Call::Exec {
            id: id.into(),
            command: command.to_vec(),
        });
        tokio::time::sleep(self.exec_takes.min(timeout)).await;
        Ok(if command.first().map(String::as_str) == Some("true") {
            0
        } else {
            1
        })
    }
}
