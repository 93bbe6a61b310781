//! `ContainerRuntime` over containerd's gRPC API with the runc v2 shim: the agent's part
//! (container records with their OCI spec, rootfs snapshots, tasks, exit and OOM status) on top
//! of `corral_containerd::Client`, which owns images and teardown. Task stdio goes to the log
//! copier the shim starts (`binary://`, `corral-logger`), or to a `file://` URI without one, so an
//! agent restart loses no output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use containerd_client::services::v1 as cs;
use containerd_client::services::v1::snapshots as ss;
use containerd_client::types::Mount;
use corral_containerd::Client;
use parking_lot::Mutex;
use tonic::transport::Channel;

pub use corral_containerd::{oci_arch, Registries};

use super::{
    normalize_reference, ContainerInfo, ContainerRuntime, CreateContainer, ExitInfo, ImageInfo,
    Result, RuntimeError,
};

pub const RUNC_V2: &str = "io.containerd.runc.v2";
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// Rootfs mounts and stdio URI of a task to create.
type TaskInputs = (Vec<Mount>, String);

/// containerd over its socket, in one namespace, as the pod workers' runtime.
#[derive(Clone)]
pub struct Containerd {
    client: Client,
    /// Rootfs mounts and log URI of containers this process created whose task is not made
    /// yet: what `create_task` would otherwise fetch with two more round trips.
    pending_tasks: Arc<Mutex<HashMap<String, TaskInputs>>>,
    /// The log copier binary (see [`Containerd::with_logger`]).
    logger: Option<PathBuf>,
}

impl Containerd {
    pub async fn connect(
        socket: &Path,
        namespace: &str,
        snapshotter: &str,
        tmp_dir: PathBuf,
    ) -> Result<Self> {
        Ok(Self {
            client: Client::connect(socket, namespace, snapshotter, tmp_dir).await?,
            pending_tasks: Default::default(),
            logger: None,
        })
    }

    pub fn with_registries(mut self, registries: Registries) -> Self {
        self.client = self.client.with_registries(registries);
        self
    }

    /// Tasks' output goes through this log copier (`corral-logger`), which writes
    /// timed records; without one the shim appends raw output to the file.
    pub fn with_logger(mut self, logger: Option<PathBuf>) -> Self {
        self.logger = logger;
        self
    }

    /// A task's stdio URI for its log file.
    fn stdio_uri(&self, log: &Path) -> String {
        match &self.logger {
            Some(bin) if log != Path::new("/dev/null") => {
                corral_logger::copier::stdio_uri(bin, log)
            }
            _ => format!("file://{}", log.display()),
        }
    }

    /// The gRPC channel to containerd, for callers that need another service.
    pub fn channel(&self) -> Channel {
        self.client.channel()
    }

    /// The shared containerd client: namespaced requests and service clients.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Rootfs mounts and log URI of a container, read back from containerd.
    async fn task_inputs(&self, id: &str) -> Result<TaskInputs> {
        let container = self
            .client
            .containers()
            .get(
                self.client
                    .req(cs::GetContainerRequest { id: id.to_string() }, None),
            )
            .await
            .map_err(RuntimeError::grpc("get container", id))?
            .into_inner()
            .container
            .unwrap_or_default();
        let log = container
            .labels
            .get(super::LABEL_LOG_PATH)
            .cloned()
            .unwrap_or_else(|| "/dev/null".into());
        let mounts: Vec<Mount> = self
            .client
            .snapshots()
            .mounts(self.client.req(
                ss::MountsRequest {
                    snapshotter: self.client.snapshotter().to_string(),
                    key: id.to_string(),
                },
                None,
            ))
            .await
            .map_err(RuntimeError::grpc("snapshot mounts", id))?
            .into_inner()
            .mounts;
        Ok((mounts, self.stdio_uri(Path::new(&log))))
    }

    /// Whether the kernel OOM-killed something in the container's cgroup (v1 or v2).
    async fn oom_killed(&self, id: &str) -> bool {
        let Ok(r) = self
            .client
            .containers()
            .get(
                self.client
                    .req(cs::GetContainerRequest { id: id.to_string() }, None),
            )
            .await
        else {
            return false;
        };
        let Some(spec) = r.into_inner().container.and_then(|c| c.spec) else {
            return false;
        };
        let spec: serde_json::Value = serde_json::from_slice(&spec.value).unwrap_or_default();
        let Some(cg) = spec["linux"]["cgroupsPath"].as_str() else {
            return false;
        };
        let cg = cg.trim_start_matches('/');
        for (file, key) in [
            (
                format!("/sys/fs/cgroup/memory/{cg}/memory.oom_control"),
                "oom_kill",
            ),
            (format!("/sys/fs/cgroup/{cg}/memory.events"), "oom_kill"),
        ] {
            if let Ok(text) = tokio::fs::read_to_string(&file).await {
                let count = text
                    .lines()
                    .filter_map(|l| l.split_once(' '))
                    .find(|(k, _)| *k == key)
                    .and_then(|(_, v)| v.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                return count > 0;
            }
        }
        false
    }
}

#[async_trait]
impl ContainerRuntime for Containerd {
    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        self.client.image(reference).await
    }

    async fn pull(&self, reference: &str) -> Result<ImageInfo> {
        self.client.pull(reference).await
    }

    async fn import_archive(&self, path: &Path) -> Result<Vec<String>> {
        self.client.import_archive(path).await
    }

    async fn create(&self, c: &CreateContainer) -> Result<()> {
        let (_, chain) = self
            .client
            .image_with_chain(&c.image)
            .await?
            .ok_or_else(|| RuntimeError::ImageNotFound(c.image.clone()))?;
        let spec = serde_json::to_vec(&c.spec).expect("json values serialize");
        let mut labels = c.labels.clone();
        labels.insert(
            super::LABEL_LOG_PATH.to_string(),
            c.log_path.display().to_string(),
        );
        let container = cs::Container {
            id: c.id.clone(),
            labels,
            image: normalize_reference(&c.image),
            runtime: Some(cs::container::Runtime {
                name: RUNC_V2.to_string(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.to_string(),
                value: spec,
            }),
            snapshotter: self.client.snapshotter().to_string(),
            snapshot_key: c.id.clone(),
            ..Default::default()
        };
        self.client
            .containers()
            .create(self.client.req(
                cs::CreateContainerRequest {
                    container: Some(container),
                },
                None,
            ))
            .await
            .map_err(RuntimeError::grpc("create container", &c.id))?;
        // The container record references the snapshot key, which keeps the snapshot from GC.
        let prepared = self
            .client
            .snapshots()
            .prepare(self.client.req(
                ss::PrepareSnapshotRequest {
                    snapshotter: self.client.snapshotter().to_string(),
                    key: c.id.clone(),
                    parent: chain,
                    labels: Default::default(),
                },
                None,
            ))
            .await;
        match prepared {
            Ok(r) => {
                let uri = self.stdio_uri(&c.log_path);
                self.pending_tasks
                    .lock()
                    .insert(c.id.clone(), (r.into_inner().mounts, uri));
            }
            Err(s) if s.code() == tonic::Code::AlreadyExists => {}
            Err(s) => {
                let _ = self.remove(&c.id).await;
                return Err(RuntimeError::grpc("prepare snapshot", &c.id)(s));
            }
        }
        if let Some(dir) = c.log_path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(RuntimeError::io(format!("creating {}", dir.display())))?;
        }
        Ok(())
    }

    async fn create_task(&self, id: &str) -> Result<()> {
        let pending = self.pending_tasks.lock().remove(id);
        let (mounts, uri) = match pending {
            Some(p) => p,
            None => self.task_inputs(id).await?,
        };
        self.client
            .tasks()
            .create(self.client.req(
                cs::CreateTaskRequest {
                    container_id: id.to_string(),
                    rootfs: mounts,
                    stdout: uri.clone(),
                    stderr: uri,
                    ..Default::default()
                },
                None,
            ))
            .await
            .map_err(RuntimeError::grpc("create task", id))?;
        Ok(())
    }

    async fn start_task(&self, id: &str) -> Result<u32> {
        let started = self
            .client
            .tasks()
            .start(self.client.req(
                cs::StartRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                },
                None,
            ))
            .await;
        match started {
            Ok(r) => Ok(r.into_inner().pid),
            Err(s) => {
                // A task that cannot start (bad command) is deleted so the next attempt can
                // create a fresh one.
                let _ = self
                    .client
                    .tasks()
                    .delete(self.client.req(
                        cs::DeleteTaskRequest {
                            container_id: id.to_string(),
                        },
                        None,
                    ))
                    .await;
                Err(RuntimeError::grpc("start task", id)(s))
            }
        }
    }

    async fn wait(&self, id: &str) -> Result<ExitInfo> {
        let exit = self.client.wait_task(id).await?;
        let oom_killed = self.oom_killed(id).await;
        Ok(ExitInfo {
            exit_code: exit.exit_code,
            finished_at: exit.finished_at,
            oom_killed,
        })
    }

    async fn kill(&self, id: &str, signal: i32) -> Result<()> {
        self.client.kill(id, signal).await
    }

    async fn remove(&self, id: &str) -> Result<()> {
        self.pending_tasks.lock().remove(id);
        self.client.remove(id).await
    }

    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<i32> {
        crate::probe::exec::exec(&self.client, id, command, timeout).await
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>> {
        self.client.list().await
    }
}
