//! The pod's sandbox: its network (namespace and CNI, or the node's for hostNetwork), the
//! files every container mounts (hosts, resolv.conf, hostname), its volume directories, and
//! their release (network, files, cgroup directories) once its containers are gone.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::{NodeContext, Worker};
use crate::configdata::{self, ConfigData};
use crate::network::{HostPort, PodNet, PodNetRequest};
use crate::pod::state::Current;

impl Worker {
    /// Shows every container without an attempt as ContainerCreating, with the sandbox error.
    pub(super) fn mark_creating(&mut self) {
        for c in self.containers() {
            let rec = self.records.entry(c.name.clone()).or_default();
            if rec.current.is_none() {
                rec.waiting = Some((
                    "ContainerCreating".into(),
                    self.sandbox_error.clone().unwrap_or_default(),
                ));
            }
        }
    }

    /// Network namespace + CNI, then the files every container mounts.
    pub(super) async fn setup_sandbox(&self) -> Result<PodNet, String> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let host_ports: Vec<HostPort> = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                p.host_port.map(|hp| HostPort {
                    host_port: hp,
                    container_port: p.container_port,
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    host_ip: p.host_ip.clone().unwrap_or_default(),
                })
            })
            .collect();
        let net = if spec.host_network.unwrap_or(false) {
            PodNet {
                netns: PathBuf::new(),
                ip: self.ctx.node_ip.clone(),
            }
        } else {
            self.ctx
                .network
                .setup(&PodNetRequest {
                    uid: self.uid.clone(),
                    namespace: self.pod.metadata.namespace.clone().unwrap_or_default(),
                    name: self.pod.metadata.name.clone().unwrap_or_default(),
                    host_ports,
                })
                .await
                .map_err(|e| e.to_string())?
        };
        let dir = self.ctx.pod_dir(&self.uid);
        let name = crate::hosts::hostname(&self.pod);
        let hosts = crate::hosts::hosts_file(&self.pod, &net.ip, &self.ctx.cluster_dns.domain);
        let node_resolv = tokio::fs::read_to_string(&self.ctx.resolv_conf)
            .await
            .unwrap_or_default();
        let resolv = crate::resolv::resolv_conf(&self.pod, &node_resolv, &self.ctx.cluster_dns);
        let write = |file: &'static str, content: String| {
            let path = dir.join(file);
            async move {
                tokio::fs::write(&path, content)
                    .await
                    .map_err(|e| format!("writing {}: {e}", path.display()))
            }
        };
        tokio::fs::create_dir_all(dir.join("volumes"))
            .await
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        write("hosts", hosts).await?;
        write("resolv.conf", resolv).await?;
        write("hostname", format!("{name}\n")).await?;
        Ok(net)
    }

    /// Rewrites the configMap/secret/projected volumes of a running pod when their objects
    /// changed, as kubelet's periodic volume sync does (here at most every 5 s); the atomic
    /// `..data` swap means a container never reads a half-updated set.
    pub(super) async fn refresh_config_volumes(&mut self) {
        const EVERY: Duration = Duration::from_secs(5);
        let spec = self.pod.spec.clone().unwrap_or_default();
        let volumes: Vec<_> = spec
            .volumes
            .iter()
            .flatten()
            .filter(|v| v.config_map.is_some() || v.secret.is_some() || v.projected.is_some())
            .cloned()
            .collect();
        let running = self
            .records
            .values()
            .any(|r| matches!(r.current, Some(Current::Running { .. })));
        if volumes.is_empty() || !running {
            return;
        }
        // Monotonic: a rate limit, not a Kubernetes time.
        let now = tokio::time::Instant::now();
        if self.config_refreshed.is_some_and(|t| now < t + EVERY) {
            return;
        }
        self.config_refreshed = Some(now);
        let Ok(data) = self.config_data().await else {
            return;
        };
        for v in volumes {
            // A source that went away keeps the last files, as kubelet does.
            let Some(Ok(files)) = configdata::volume_files(&v, &data) else {
                continue;
            };
            let dir = match self.ctx.volume_dir(&self.uid, &v.name) {
                Ok(dir) => dir,
                Err(e) => {
                    warn!(error = %e, "not refreshing volume");
                    continue;
                }
            };
            match configdata::write_volume(&dir, &files) {
                Ok(true) => info!(volume = %v.name, "volume contents updated"),
                Ok(false) => {}
                Err(e) => warn!(volume = %v.name, error = %e, "refreshing volume failed"),
            }
        }
    }

    /// The ConfigMaps and Secrets the pod refers to (none fetched when it refers to none).
    pub(super) async fn config_data(&self) -> Result<ConfigData, String> {
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        let refs = configdata::references(&self.pod);
        if refs.is_empty() {
            return Ok(ConfigData {
                namespace: ns,
                ..Default::default()
            });
        }
        self.ctx
            .api
            .config_data(&ns, &refs)
            .await
            .map_err(|e| format!("reading the pod's ConfigMaps and Secrets: {e}"))
    }

    /// Host directories of the pod's volumes; unsupported kinds are left out (a container
    /// mounting one gets a CreateContainerConfigError naming it).
    pub(super) async fn volume_dirs(
        &self,
        config: &ConfigData,
    ) -> Result<BTreeMap<String, PathBuf>, String> {
        let mut out = BTreeMap::new();
        let spec = self.pod.spec.clone().unwrap_or_default();
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        for (i, v) in spec.volumes.iter().flatten().enumerate() {
            if let Some(files) = configdata::volume_files(v, config) {
                let files = files.map_err(|m| {
                    format!("MountVolume.SetUp failed for volume {:?} : {m}", v.name)
                })?;
                let dir = self
                    .ctx
                    .volume_dir(&self.uid, &v.name)
                    .map_err(|e| e.to_string())?;
                configdata::write_volume(&dir, &files)
                    .map_err(|e| format!("volumes[{i}] {:?}: writing files: {e}", v.name))?;
                out.insert(v.name.clone(), dir);
            } else if let Some(claim) = &v.persistent_volume_claim {
                let dir = self
                    .ctx
                    .api
                    .claim_dir(&ns, &claim.claim_name)
                    .await
                    .map_err(|m| {
                        format!("MountVolume.SetUp failed for volume {:?} : {m}", v.name)
                    })?;
                out.insert(v.name.clone(), dir);
            } else if v.empty_dir.is_some() {
                let dir = self
                    .ctx
                    .volume_dir(&self.uid, &v.name)
                    .map_err(|e| e.to_string())?;
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(|e| format!("volumes[{i}] {:?}: {e}", v.name))?;
                out.insert(v.name.clone(), dir);
            } else if let Some(hp) = &v.host_path {
                let path = PathBuf::from(&hp.path);
                match hp.type_.as_deref().unwrap_or("") {
                    "DirectoryOrCreate" => tokio::fs::create_dir_all(&path)
                        .await
                        .map_err(|e| format!("volumes[{i}].hostPath {:?}: {e}", hp.path))?,
                    "Directory" if !path.is_dir() => {
                        return Err(format!(
                            "volumes[{i}].hostPath: {:?} is not a directory",
                            hp.path
                        ))
                    }
                    "File" if !path.is_file() => {
                        return Err(format!(
                            "volumes[{i}].hostPath: {:?} is not a file",
                            hp.path
                        ))
                    }
                    _ => {}
                }
                out.insert(v.name.clone(), path);
            }
        }
        Ok(out)
    }
}

/// Network, files and cgroup directories of a pod whose containers are gone.
pub async fn release_pod_resources(ctx: &NodeContext, uid: &str) {
    for attempt in 0..5u32 {
        match ctx.network.teardown(uid).await {
            Ok(()) => break,
            Err(e) => {
                warn!(pod = %uid, error = %e, attempt, "network teardown failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    let _ = tokio::fs::remove_dir_all(ctx.pod_dir(uid)).await;
    // runc removes each container's cgroup but not the pod's parent, and the shim may still
    // be tearing the children down: retry for a while in the background.
    let uid = uid.to_string();
    tokio::spawn(async move {
        for _ in 0..60 {
            if remove_pod_cgroups(&uid).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        debug!(pod = %uid, "pod cgroup directories still busy");
    });
}

/// Removes `corral/pod<uid>` in every cgroup hierarchy; true when none is left.
async fn remove_pod_cgroups(uid: &str) -> bool {
    let mut left = false;
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(mut rd) = tokio::fs::read_dir("/sys/fs/cgroup").await {
        while let Ok(Some(e)) = rd.next_entry().await {
            roots.push(e.path());
        }
    }
    for root in roots {
        let dir = root.join("corral").join(format!("pod{uid}"));
        match tokio::fs::remove_dir(&dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) if e.raw_os_error() == Some(20) => {} // ENOTDIR: a controller file
            Err(_) => left = true,
        }
    }
    !left
}
