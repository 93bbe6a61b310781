//! containerd over its gRPC API, as both the node agent and `corral cluster` use it: one
//! namespaced connection (`Client`), images (`image`: lookup; `import`: OCI and docker archives;
//! `pull`: registries) and container teardown (`containers`). Running pods stays in the agent.

pub mod containers;
mod error;
pub mod image;
pub mod import;
pub mod pull;
mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_client::services::v1 as cs;
use containerd_client::services::v1::snapshots as ss;
use parking_lot::Mutex;
use tonic::transport::Channel;
use tonic::Request;

pub use containers::{ContainerInfo, TaskExit, TaskState};
pub use error::{Error, Result};
pub use image::{chain_ids, normalize_reference, oci_arch, ImageConfig, ImageInfo};
pub use pull::Registries;
pub use store::LABEL_IMPORTED;

/// containerd over its socket, in one namespace. Clones share the connection and caches.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    namespace: String,
    snapshotter: String,
    /// Scratch space for image imports and pulls.
    tmp_dir: PathBuf,
    /// manifest digest → (config, chain id of the top layer)
    image_cache: Arc<Mutex<HashMap<String, (ImageInfo, String)>>>,
    registries: Registries,
}

impl Client {
    pub async fn connect(
        socket: &Path,
        namespace: &str,
        snapshotter: &str,
        tmp_dir: PathBuf,
    ) -> Result<Self> {
        let channel =
            containerd_client::connect(socket)
                .await
                .map_err(|source| Error::Connect {
                    path: socket.to_path_buf(),
                    source,
                })?;
        Ok(Self {
            channel,
            namespace: namespace.to_string(),
            snapshotter: snapshotter.to_string(),
            tmp_dir,
            image_cache: Default::default(),
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

    /// The snapshotter images are unpacked into and container rootfs are prepared with.
    pub fn snapshotter(&self) -> &str {
        &self.snapshotter
    }

    /// A request carrying the namespace (and a lease when given) as containerd expects.
    pub fn req<T>(&self, msg: T, lease: Option<&str>) -> Request<T> {
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

    pub fn containers(&self) -> cs::containers_client::ContainersClient<Channel> {
        cs::containers_client::ContainersClient::new(self.channel.clone())
    }
    pub fn tasks(&self) -> cs::tasks_client::TasksClient<Channel> {
        cs::tasks_client::TasksClient::new(self.channel.clone())
    }
    pub fn snapshots(&self) -> ss::snapshots_client::SnapshotsClient<Channel> {
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
}
