//! The container runtime seam: what the pod workers need from containerd, as a narrow trait,
//! with the containerd implementation in `containerd`, image import in `import` and a typed
//! in-memory fake for tests in `fake`.

pub mod containerd;
pub mod fake;
pub mod import;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use jiff::Timestamp;

/// Labels Corral puts on every container it creates; how a restarted agent recognises them.
pub const LABEL_POD_UID: &str = "corral.pod.uid";
pub const LABEL_POD_NAME: &str = "corral.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "corral.pod.namespace";
pub const LABEL_CONTAINER_NAME: &str = "corral.container.name";
pub const LABEL_ATTEMPT: &str = "corral.container.attempt";
pub const LABEL_STARTED_AT: &str = "corral.container.started-at";
pub const LABEL_LOG_PATH: &str = "corral.container.log-path";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot connect to containerd at {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("containerd {op} {what}: {source}")]
    Grpc {
        op: &'static str,
        what: String,
        #[source]
        source: tonic::Status,
    },
    #[error("image {0:?} not found")]
    ImageNotFound(String),
    #[error("image {reference:?}: {message}")]
    BadImage { reference: String, message: String },
    #[error("image archive {path}: {message}")]
    BadArchive { path: PathBuf, message: String },
    #[error("pulling {reference:?}: {message}")]
    Pull { reference: String, message: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, RuntimeError::Grpc { source, .. } if source.code() == tonic::Code::NotFound)
    }
    pub(crate) fn grpc(
        op: &'static str,
        what: impl Into<String>,
    ) -> impl FnOnce(tonic::Status) -> Self {
        let what = what.into();
        move |source| RuntimeError::Grpc { op, what, source }
    }
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| RuntimeError::Io { what, source }
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// The parts of an image config a container spec needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    /// Normalised reference (`docker.io/library/busybox:1`).
    pub reference: String,
    /// Config digest, Kubernetes' imageID.
    pub id: String,
    pub config: ImageConfig,
}

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
pub enum TaskState {
    /// Container record exists, no task (created, or its task was deleted).
    Created,
    Running {
        pid: u32,
    },
    Exited {
        exit_code: i32,
        finished_at: Timestamp,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    pub labels: HashMap<String, String>,
    pub state: TaskState,
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

/// Kubernetes' image name normalisation: `nginx` → `docker.io/library/nginx:latest`.
pub fn normalize_reference(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let (repo, tag) = match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, Some(t)),
        _ => (name, None),
    };
    let first = repo.split('/').next().unwrap_or_default();
    let has_domain =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_domain {
        repo.to_string()
    } else if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    };
    match (tag, digest) {
        (_, Some(d)) => format!("{full}@{d}"),
        (Some(t), None) => format!("{full}:{t}"),
        (None, None) => format!("{full}:latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_reference as n;

    #[test]
    fn references_are_normalised_like_kubernetes() {
        assert_eq!(n("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(
            n("fedek3/workshop-uns:v0.2.0"),
            "docker.io/fedek3/workshop-uns:v0.2.0"
        );
        assert_eq!(n("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
        assert_eq!(n("localhost/app:1"), "localhost/app:1");
        assert_eq!(
            n("busybox@sha256:abc"),
            "docker.io/library/busybox@sha256:abc"
        );
    }
}
