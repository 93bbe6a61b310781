//! The container runtime seam: what the pod workers need from containerd, as a narrow trait,
//! with the containerd implementation in `containerd` and a typed in-memory fake for tests in
//! `fake`. Images, errors and container teardown come from the `corral-containerd` crate,
//! shared with `corral cluster`.

pub mod containerd;
pub mod fake;
pub mod metrics;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use jiff::Timestamp;

pub use corral_containerd::{
    normalize_reference, ContainerInfo, Error as RuntimeError, ImageConfig, ImageInfo, TaskState,
};

/// Labels Corral puts on every container it creates; how a restarted agent recognises them.
pub const LABEL_POD_UID: &str = "corral.pod.uid";
pub const LABEL_POD_NAME: &str = "corral.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "corral.pod.namespace";
pub const LABEL_CONTAINER_NAME: &str = "corral.container.name";
pub const LABEL_ATTEMPT: &str = "corral.container.attempt";
pub const LABEL_STARTED_AT: &str = "corral.container.started-at";
pub const LABEL_LOG_PATH: &str = "corral.container.log-path";

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// What to create: the OCI runtime spec is already built (see `spec`).
#[derive(Debug, Clone)]
pub struct CreateContainer {
    pub id: String,
    pub image: String,
    pub spec: serde_json::Value,
    pub labels: HashMap<String, String>,
    /// stdout and stderr of the task are appended to this file.
    pub log_path: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExitInfo {
    pub exit_code: i32,
    pub finished_at: Timestamp,
    pub oom_killed: bool,
}

#[async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// The image if it is present in the runtime.
    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>>;
    /// Pulls an image from its registry.
    async fn pull(&self, reference: &str) -> Result<ImageInfo>;
    /// Imports an OCI-layout or docker-archive tar; returns the references it created.
    async fn import_archive(&self, path: &Path) -> Result<Vec<String>>;
    /// Creates the container (its rootfs snapshot and record), no task yet.
    async fn create(&self, c: &CreateContainer) -> Result<()>;
    /// Creates the container's task: the shim and `runc create` set up its namespaces, mounts
    /// and cgroup, and its process waits to be started (nothing of the image runs yet).
    async fn create_task(&self, id: &str) -> Result<()>;
    /// Runs the process of a task made by `create_task`; returns its pid. A task that cannot
    /// start is deleted, so that the container can get a new one.
    async fn start_task(&self, id: &str) -> Result<u32>;
    /// Creates and starts the container's task; returns when the process runs.
    async fn start(&self, id: &str) -> Result<u32> {
        self.create_task(id).await?;
        self.start_task(id).await
    }
    /// Waits for the task to exit.
    async fn wait(&self, id: &str) -> Result<ExitInfo>;
    /// Sends a signal to every process of the container.
    async fn kill(&self, id: &str, signal: i32) -> Result<()>;
    /// Removes the task, the container and its snapshot; missing pieces are not an error.
    async fn remove(&self, id: &str) -> Result<()>;
    /// Every container in the runtime's namespace, with its task state.
    async fn list(&self) -> Result<Vec<ContainerInfo>>;
    /// Runs a command in the running container (exec probes); returns its exit code.
    async fn exec(&self, id: &str, command: &[String], timeout: std::time::Duration)
        -> Result<i32>;
}
