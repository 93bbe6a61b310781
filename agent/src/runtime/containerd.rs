//! `ContainerRuntime` over containerd's gRPC API (containers, tasks, snapshots, content, images,
//! leases and diff services), with the runc v2 shim. Task stdio goes to `file://` URIs, so the
//! shim writes logs itself and an agent restart loses nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use containerd_client::services::v1 as cs;
use containerd_client::services::v1::snapshots as ss;
use containerd_client::types::v1::Status as ProcStatus;
use containerd_client::types::{Descriptor, Mount};
use futures::StreamExt;
use jiff::Timestamp;
use parking_lot::Mutex;
use tonic::transport::Channel;
use tonic::Request;

use super::{
    normalize_reference, ContainerInfo, ContainerRuntime, CreateContainer, ExitInfo, ImageConfig,
    ImageInfo, Result, RuntimeError, TaskState,
};

pub const RUNC_V2: &str = "io.containerd.runc.v2";
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Rootfs mounts and stdio URI of a task to create.
type TaskInputs = (Vec<Mount>, String);

/// containerd over its socket, in one namespace.
#[derive(Clone)]
pub struct Containerd {
    pub(crate) channel: Channel,
    pub(crate) namespace: String,
    pub(crate) snapshotter: String,
    /// Scratch space for image imports.
    pub(crate) tmp_dir: PathBuf,
    /// manifest digest → (config, chain id of the top layer)
    image_cache: Arc<Mutex<HashMap<String, (ImageInfo, String)>>>,
    /// Rootfs mounts and log URI of containers this process created whose task is not made
    /// yet: what `create_task` would otherwise fetch with two more round trips.
    pending_tasks: Arc<Mutex<HashMap<String, TaskInputs>>>,
    pub(crate) registries: Registries,
}

/// Which registries pulls may reach, and which of them speak plain HTTP.
#[derive(Debug, Clone, Default)]
pub struct Registries {
    /// `host[:port]` reached over plain HTTP.
    pub insecure: Vec<String>,
    /// When non-empty, only these `host[:port]` are pulled from.
    pub allowed: Vec<String>,
}

impl Containerd {
    pub async fn connect(
        socket: &Path,
        namespace: &str,
        snapshotter: &str,
        tmp_dir: PathBuf,
    ) -> Result<Self> {
        let channel =
            containerd_client::connect(socket)
                .await
                .map_err(|source| RuntimeError::Connect {
                    path: socket.to_path_buf(),
                    source,
                })?;
        Ok(Self {
            channel,
            namespace: namespace.to_string(),
            snapshotter: snapshotter.to_string(),
            tmp_dir,
            image_cache: Default::default(),
            pending_tasks: Default::default(),
            registries: Registries::default(),
        })
    }

    pub fn with_registries(mut self, registries: Registries) -> Self {
        self.registries = registries;
        self
    }

    /// The gRPC channel to containerd, for callers that need another service.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// A request carrying the namespace (and a lease when given) as containerd expects.
    pub(crate) fn req<T>(&self, msg: T, lease: Option<&str>) -> Request<T> {
        let mut r = Request::new(msg);
        let md = r.metadata_mut();
        if let Ok(v) = self.namespace.parse() {
            md.insert("containerd-namespace", v);
        }
        if let Some(lease) = lease.and_then(|l| l.parse().ok()) {
            md.insert("containerd-lease", lease);
        }
        r
    }

    pub(crate) fn containers(&self) -> cs::containers_client::ContainersClient<Channel> {
        cs::containers_client::ContainersClient::new(self.channel.clone())
    }
    pub(crate) fn tasks(&self) -> cs::tasks_client::TasksClient<Channel> {
        cs::tasks_client::TasksClient::new(self.channel.clone())
    }
    pub(crate) fn snapshots(&self) -> ss::snapshots_client::SnapshotsClient<Channel> {
        ss::snapshots_client::SnapshotsClient::new(self.channel.clone())
    }
    pub(crate) fn content(&self) -> cs::content_client::ContentClient<Channel> {
        cs::content_client::ContentClient::new(self.channel.clone())
            .max_decoding_message_size(64 << 20)
    }
    pub(crate) fn images(&self) -> cs::images_client::ImagesClient<Channel> {
        cs::images_client::ImagesClient::new(self.channel.clone())
    }
    pub(crate) fn leases(&self) -> cs::leases_client::LeasesClient<Channel> {
        cs::leases_client::LeasesClient::new(self.channel.clone())
    }
    pub(crate) fn diff(&self) -> cs::diff_client::DiffClient<Channel> {
        cs::diff_client::DiffClient::new(self.channel.clone())
    }

    /// Reads a whole blob from the content store.
    pub(crate) async fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let mut stream = self
            .content()
            .read(self.req(
                cs::ReadContentRequest {
                    digest: digest.to_string(),
                    offset: 0,
                    size: 0,
                },
                None,
            ))
            .await
            .map_err(RuntimeError::grpc("read content", digest))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend(
                chunk
                    .map_err(RuntimeError::grpc("read content", digest))?
                    .data,
            );
        }
        Ok(out)
    }

    /// Follows an index to this platform's manifest.
    pub(crate) async fn resolve_manifest(
        &self,
        reference: &str,
        target: &Descriptor,
    ) -> Result<(Descriptor, serde_json::Value)> {
        let mut desc = target.clone();
        for _ in 0..4 {
            let bytes = self.read_blob(&desc.digest).await?;
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| RuntimeError::BadImage {
                    reference: reference.to_string(),
                    message: format!("manifest {}: {e}", desc.digest),
                })?;
            let is_index = desc.media_type == MT_OCI_INDEX
                || desc.media_type == MT_DOCKER_LIST
                || v.get("manifests").is_some();
            if !is_index {
                return Ok((desc, v));
            }
            desc = pick_platform(&v).ok_or_else(|| RuntimeError::BadImage {
                reference: reference.to_string(),
                message: format!("no manifest for linux/{}", oci_arch()),
            })?;
        }
        Err(RuntimeError::BadImage {
            reference: reference.to_string(),
            message: "nested indexes too deep".into(),
        })
    }

    /// Image config and top-layer chain id for a reference, cached by manifest digest.
    async fn image_with_chain(&self, reference: &str) -> Result<Option<(ImageInfo, String)>> {
        let reference = normalize_reference(reference);
        let image = match self
            .images()
            .get(self.req(
                cs::GetImageRequest {
                    name: reference.clone(),
                },
                None,
            ))
            .await
        {
            Ok(r) => r.into_inner().image,
            Err(s) if s.code() == tonic::Code::NotFound => None,
            Err(s) => return Err(RuntimeError::grpc("get image", &reference)(s)),
        };
        let Some(target) = image.and_then(|i| i.target) else {
            return Ok(None);
        };
        if let Some((info, chain)) = self.image_cache.lock().get(&target.digest) {
            let mut info = info.clone();
            info.reference = reference.clone();
            return Ok(Some((info, chain.clone())));
        }
        let (_, manifest) = self.resolve_manifest(&reference, &target).await?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| RuntimeError::BadImage {
                reference: reference.clone(),
                message: "manifest has no config".into(),
            })?
            .to_string();
        let config: serde_json::Value =
            serde_json::from_slice(&self.read_blob(&config_digest).await?).map_err(|e| {
                RuntimeError::BadImage {
                    reference: reference.clone(),
                    message: format!("config: {e}"),
                }
            })?;
        let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let chain = chain_ids(&diff_ids)
            .pop()
            .ok_or_else(|| RuntimeError::BadImage {
                reference: reference.clone(),
                message: "image has no layers".into(),
            })?;
        let c = &config["config"];
        let strs = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let info = ImageInfo {
            reference: reference.clone(),
            id: config_digest,
            config: ImageConfig {
                entrypoint: strs(&c["Entrypoint"]),
                cmd: strs(&c["Cmd"]),
                env: strs(&c["Env"]),
                working_dir: c["WorkingDir"].as_str().unwrap_or_default().to_string(),
                user: c["User"].as_str().unwrap_or_default().to_string(),
            },
        };
        self.image_cache
            .lock()
            .insert(target.digest.clone(), (info.clone(), chain.clone()));
        Ok(Some((info, chain)))
    }

    /// Rootfs mounts and log URI of a container, read back from containerd.
    async fn task_inputs(&self, id: &str) -> Result<TaskInputs> {
        let container = self
            .containers()
            .get(self.req(cs::GetContainerRequest { id: id.to_string() }, None))
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
            .snapshots()
            .mounts(self.req(
                ss::MountsRequest {
                    snapshotter: self.snapshotter.clone(),
                    key: id.to_string(),
                },
                None,
            ))
            .await
            .map_err(RuntimeError::grpc("snapshot mounts", id))?
            .into_inner()
            .mounts;
        Ok((mounts, format!("file://{log}")))
    }

    async fn task(&self, id: &str) -> Result<Option<containerd_client::types::v1::Process>> {
        match self
            .tasks()
            .get(self.req(
                cs::GetRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                },
                None,
            ))
            .await
        {
            Ok(r) => Ok(r.into_inner().process),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(RuntimeError::grpc("get task", id)(s)),
        }
    }

    /// Whether the kernel OOM-killed something in the container's cgroup (v1 or v2).
    async fn oom_killed(&self, id: &str) -> bool {
        let Ok(r) = self
            .containers()
            .get(self.req(cs::GetContainerRequest { id: id.to_string() }, None))
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

fn ts(t: Option<prost_types::Timestamp>) -> Timestamp {
    t.and_then(|t| Timestamp::new(t.seconds, t.nanos).ok())
        .unwrap_or_else(Timestamp::now)
}

pub(crate) fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn pick_platform(index: &serde_json::Value) -> Option<Descriptor> {
    let manifests = index["manifests"].as_array()?;
    let fits = |m: &&serde_json::Value| {
        let p = &m["platform"];
        p.is_null() || (p["os"] == "linux" && p["architecture"] == oci_arch())
    };
    let m = manifests.iter().find(fits)?;
    Some(Descriptor {
        media_type: m["mediaType"].as_str().unwrap_or_default().to_string(),
        digest: m["digest"].as_str()?.to_string(),
        size: m["size"].as_i64().unwrap_or_default(),
        annotations: Default::default(),
    })
}

/// OCI chain ids: chain(0) = diff(0); chain(n) = sha256(chain(n-1) + " " + diff(n)).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{prev} {d}").as_bytes()))
            ),
        };
        out.push(next);
    }
    out
}

fn not_found_ok(
    r: std::result::Result<(), tonic::Status>,
) -> std::result::Result<(), tonic::Status> {
    match r {
        Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
        other => other,
    }
}

#[async_trait]
impl ContainerRuntime for Containerd {
    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        Ok(self.image_with_chain(reference).await?.map(|(i, _)| i))
    }

    async fn pull(&self, reference: &str) -> Result<ImageInfo> {
        super::import::pull(self, reference).await
    }

    async fn import_archive(&self, path: &Path) -> Result<Vec<String>> {
        super::import::import_archive(self, path).await
    }

    async fn create(&self, c: &CreateContainer) -> Result<()> {
        let (_, chain) = self
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
            snapshotter: self.snapshotter.clone(),
            snapshot_key: c.id.clone(),
            ..Default::default()
        };
        self.containers()
            .create(self.req(
                cs::CreateContainerRequest {
                    container: Some(container),
                },
                None,
            ))
            .await
            .map_err(RuntimeError::grpc("create container", &c.id))?;
        // The container record references the snapshot key, which keeps the snapshot from GC.
        let prepared = self
            .snapshots()
            .prepare(self.req(
                ss::PrepareSnapshotRequest {
                    snapshotter: self.snapshotter.clone(),
                    key: c.id.clone(),
                    parent: chain,
                    labels: Default::default(),
                },
                None,
            ))
            .await;
        match prepared {
            Ok(r) => {
                let uri = format!("file://{}", c.log_path.display());
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
        self.tasks()
            .create(self.req(
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
            .tasks()
            .start(self.req(
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
                    .tasks()
                    .delete(self.req(
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
        let r = self
            .tasks()
            .wait(self.req(
                cs::WaitRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                },
                None,
            ))
            .await
            .map_err(RuntimeError::grpc("wait task", id))?
            .into_inner();
        let oom_killed = self.oom_killed(id).await;
        Ok(ExitInfo {
            exit_code: r.exit_status as i32,
            finished_at: ts(r.exited_at),
            oom_killed,
        })
    }

    async fn kill(&self, id: &str, signal: i32) -> Result<()> {
        let r = self
            .tasks()
            .kill(self.req(
                cs::KillRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                    signal: signal as u32,
                    all: true,
                },
                None,
            ))
            .await
            .map(|_| ());
        not_found_ok(r).map_err(RuntimeError::grpc("kill task", id))
    }

    async fn remove(&self, id: &str) -> Result<()> {
        self.pending_tasks.lock().remove(id);
        if let Some(task) = self.task(id).await? {
            if task.status != ProcStatus::Stopped as i32 {
                self.kill(id, libc_sigkill()).await?;
                let _ = tokio::time::timeout(Duration::from_secs(10), self.wait(id)).await;
            }
            let r = self
                .tasks()
                .delete(self.req(
                    cs::DeleteTaskRequest {
                        container_id: id.to_string(),
                    },
                    None,
                ))
                .await
                .map(|_| ());
            not_found_ok(r).map_err(RuntimeError::grpc("delete task", id))?;
        }
        let r = self
            .containers()
            .delete(self.req(cs::DeleteContainerRequest { id: id.to_string() }, None))
            .await
            .map(|_| ());
        not_found_ok(r).map_err(RuntimeError::grpc("delete container", id))?;
        let r = self
            .snapshots()
            .remove(self.req(
                ss::RemoveSnapshotRequest {
                    snapshotter: self.snapshotter.clone(),
                    key: id.to_string(),
                },
                None,
            ))
            .await
            .map(|_| ());
        not_found_ok(r).map_err(RuntimeError::grpc("remove snapshot", id))
    }

    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<i32> {
        crate::probe::exec::exec(self, id, command, timeout).await
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>> {
        let containers = self
            .containers()
            .list(self.req(cs::ListContainersRequest { filters: vec![] }, None))
            .await
            .map_err(RuntimeError::grpc("list containers", ""))?
            .into_inner()
            .containers;
        let tasks = self
            .tasks()
            .list(self.req(
                cs::ListTasksRequest {
                    filter: String::new(),
                },
                None,
            ))
            .await
            .map_err(RuntimeError::grpc("list tasks", ""))?
            .into_inner()
            .tasks;
        let tasks: HashMap<String, _> = tasks.into_iter().map(|t| (t.id.clone(), t)).collect();
        Ok(containers
            .into_iter()
            .map(|c| {
                let state = match tasks.get(&c.id) {
                    None => TaskState::Created,
                    Some(t) if t.status == ProcStatus::Stopped as i32 => TaskState::Exited {
                        exit_code: t.exit_status as i32,
                        finished_at: ts(t.exited_at),
                    },
                    Some(t) if t.status == ProcStatus::Created as i32 => TaskState::Created,
                    Some(t) => TaskState::Running { pid: t.pid },
                };
                ContainerInfo {
                    id: c.id,
                    labels: c.labels,
                    state,
                }
            })
            .collect())
    }
}

fn libc_sigkill() -> i32 {
    nix::sys::signal::Signal::SIGKILL as i32
}

#[cfg(test)]
mod tests {
    use super::chain_ids;

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let ids = chain_ids(&["sha256:a".into(), "sha256:b".into()]);
        assert_eq!(ids[0], "sha256:a");
        // sha256("sha256:a sha256:b")
        assert!(ids[1].starts_with("sha256:") && ids[1].len() == 71);
        assert_eq!(chain_ids(&[]).len(), 0);
    }
}
