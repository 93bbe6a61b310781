//! Pod networking: one network namespace per pod (a bind-mounted nsfs file, made with
//! `unshare` in a throw-away thread, which also sets `lo` up over rtnetlink as the loopback
//! plugin would) wired up by the standard CNI plugins, executed as the CNI spec says: bridge +
//! host-local IPAM from the node's pod CIDR, then portmap when the pod asks for host ports.
//! Each pod's CNI result is kept on disk, so teardown after an agent restart still releases
//! the IP. A typed in-memory fake for tests is in `fake`.

pub mod fake;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network namespace {path}: {source}")]
    Netns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CNI plugin {plugin} {command} for pod {pod}: {message}")]
    Plugin {
        plugin: String,
        command: &'static str,
        pod: String,
        message: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = NetworkError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq)]
pub struct HostPort {
    pub host_port: i32,
    pub container_port: i32,
    pub protocol: String,
    pub host_ip: String,
}

#[derive(Debug, Clone)]
pub struct PodNetRequest {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub host_ports: Vec<HostPort>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PodNet {
    pub netns: PathBuf,
    pub ip: String,
}

#[async_trait]
pub trait Network: Send + Sync + 'static {
    /// Creates (or finds again) the pod's namespace and interfaces; idempotent.
    async fn setup(&self, req: &PodNetRequest) -> Result<PodNet>;
    /// Releases the IP and removes the namespace; missing pieces are not an error.
    async fn teardown(&self, uid: &str) -> Result<()>;
    /// Pod uids that have network state on this node.
    async fn list(&self) -> Result<Vec<String>>;
    /// Where the pod's namespace is (or will be) mounted.
    fn netns_path(&self, uid: &str) -> PathBuf;
}

#[derive(Debug, Clone)]
pub struct CniConfig {
    pub bin_dir: PathBuf,
    /// Where namespace files are mounted (`/run/netns`).
    pub netns_dir: PathBuf,
    /// Per-pod results and the host-local IPAM store.
    pub state_dir: PathBuf,
    pub bridge: String,
    pub pod_cidr: String,
    /// Bridge and pod MTU (lowered for VXLAN); `None`: the plugin's default.
    pub mtu: Option<u32>,
}

pub struct Cni {
    cfg: CniConfig,
}

const IFNAME: &str = "eth0";
const CNI_VERSION: &str = "1.0.0";

impl Cni {
    pub fn new(cfg: CniConfig) -> Self {
        Self { cfg }
    }

    fn result_path(&self, uid: &str) -> PathBuf {
        self.cfg
            .state_dir
            .join("results")
            .join(format!("{uid}.json"))
    }

    fn bridge_conf(&self) -> Value {
        let mut conf = json!({
            "cniVersion": CNI_VERSION,
            "name": "corral",
            "type": "bridge",
            "bridge": self.cfg.bridge,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": self.cfg.pod_cidr }]],
                "routes": [{ "dst": "0.0.0.0/0" }],
                "dataDir": self.cfg.state_dir.join("ipam"),
            },
        });
        if let Some(mtu) = self.cfg.mtu {
            conf["mtu"] = json!(mtu);
        }
        conf
    }

    fn portmap_conf(ports: &[HostPort]) -> Value {
        let mappings: Vec<Value> = ports
            .iter()
            .map(|p| {
                json!({
                    "hostPort": p.host_port,
                    "containerPort": p.container_port,
                    "protocol": p.protocol.to_ascii_lowercase(),
                    "hostIP": p.host_ip,
                })
            })
            .collect();
        json!({
            "cniVersion": CNI_VERSION,
            "name": "corral",
            "type": "portmap",
            "capabilities": { "portMappings": true },
            "snat": false,
            "runtimeConfig": { "portMappings": mappings },
        })
    }

    /// Runs one plugin; returns its stdout JSON (the result for ADD).
    async fn exec(
        &self,
        command: &'static str,
        uid: &str,
        netns: &Path,
        conf: &Value,
    ) -> Result<Value> {
        let plugin = conf["type"].as_str().unwrap_or_default().to_string();
        let perr = |message: String| NetworkError::Plugin {
            plugin: plugin.clone(),
            command,
            pod: uid.to_string(),
            message,
        };
        let mut child = tokio::process::Command::new(self.cfg.bin_dir.join(&plugin))
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", uid)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", IFNAME)
            .env("CNI_PATH", &self.cfg.bin_dir)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| perr(format!("cannot execute: {e}")))?;
        let input = serde_json::to_vec(conf).expect("json values serialize");
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(&input)
                .await
                .map_err(|e| perr(format!("writing config: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| perr(format!("waiting: {e}")))?;
        let stdout: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if !out.status.success() {
            let msg = stdout["msg"]
                .as_str()
                .map(|m| match stdout["details"].as_str() {
                    Some(d) if !d.is_empty() => format!("{m}: {d}"),
                    _ => m.to_string(),
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
            return Err(perr(msg));
        }
        Ok(stdout)
    }

    /// The plugin chain with `prevResult` threaded through, as a conflist runtime does.
    async fn add_chain(&self, req: &PodNetRequest, netns: &Path) -> Result<Value> {
        let mut result = self
            .exec("ADD", &req.uid, netns, &self.bridge_conf())
            .await?;
        if !req.host_ports.is_empty() {
            let mut pm = Self::portmap_conf(&req.host_ports);
            pm["prevResult"] = result.clone();
            result = self.exec("ADD", &req.uid, netns, &pm).await?;
        }
        Ok(result)
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetworkError {
    let what = what.into();
    move |source| NetworkError::Io { what, source }
}

/// Creates a persistent network namespace at `path` (what `ip netns add` does).
pub fn create_netns(path: &Path) -> Result<()> {
    let nerr = |source| NetworkError::Netns {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(nerr)?;
    }
    std::fs::File::create(path).map_err(nerr)?;
    let target = path.to_path_buf();
    // unshare(CLONE_NEWNET) only moves the calling thread, which then ends: the namespace
    // lives on through the bind mount.
    let made = std::thread::spawn(move || -> nix::Result<()> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
        // The loopback plugin's ADD, without spawning it: the thread is in the new namespace.
        loopback_up()?;
        let tid = nix::unistd::gettid();
        let src = format!("/proc/self/task/{tid}/ns/net");
        nix::mount::mount(
            Some(src.as_str()),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
    })
    .join()
    .expect("netns thread does not panic");
    if let Err(e) = made {
        let _ = std::fs::remove_file(path);
        return Err(nerr(std::io::Error::from(e)));
    }
    Ok(())
}

/// Sets `lo` (ifindex 1 in every namespace) up in the calling thread's network namespace:
/// one RTM_NEWLINK request over rtnetlink, acknowledged by the kernel.
fn loopback_up() -> nix::Result<()> {
    use nix::errno::Errno;
    use nix::sys::socket::{
        recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
        SockType,
    };
    use std::os::fd::AsRawFd;
    const RTM_NEWLINK: u16 = 16;
    const NLMSG_ERROR: u16 = 2;
    const NLM_F_REQUEST_ACK: u16 = 0x1 | 0x4;
    const IFF_UP: u32 = 0x1;
    const LOOPBACK_IFINDEX: i32 = 1;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    // nlmsghdr (len, type, flags, seq, pid) + ifinfomsg (family, pad, type, index, flags,
    // change), native endian.
    let mut msg = Vec::with_capacity(32);
    msg.extend_from_slice(&32u32.to_ne_bytes());
    msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST_ACK.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&[0, 0]);
    msg.extend_from_slice(&0u16.to_ne_bytes());
    msg.extend_from_slice(&LOOPBACK_IFINDEX.to_ne_bytes());
    msg.extend_from_slice(&IFF_UP.to_ne_bytes());
    msg.extend_from_slice(&IFF_UP.to_ne_bytes());
    sendto(
        fd.as_raw_fd(),
        &msg,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut buf = [0u8; 512];
    let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
    // The ack is an NLMSG_ERROR whose error field (after the 16-byte header) is 0.
    if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == NLMSG_ERROR {
        let err = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        return if err == 0 {
            Ok(())
        } else {
            Err(Errno::from_raw(-err))
        };
    }
    Err(Errno::EPROTO)
}

pub fn delete_netns(path: &Path) -> Result<()> {
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(NetworkError::Netns {
                path: path.to_path_buf(),
                source: e.into(),
            })
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetworkError::Netns {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn is_netns_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let p = path.display().to_string();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

/// The first IPv4 address in a CNI result, without its prefix length.
pub fn result_ip(result: &Value) -> Option<String> {
    result["ips"]
        .as_array()?
        .iter()
        .filter_map(|ip| ip["address"].as_str())
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
        .next()
}

impl Cni {
    /// The pod's record: `{"result": <CNI result or null>, "hostPorts": [...]}`, or None.
    async fn read_record(&self, uid: &str) -> Option<Value> {
        let bytes = tokio::fs::read(self.result_path(uid)).await.ok()?;
        Some(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Replaces the pod's record through a rename, so a crash leaves the old or the new one.
    /// (No fsync: it guards against an agent crash; the namespaces do not survive a reboot.)
    async fn write_record(&self, uid: &str, record: &Value) -> Result<()> {
        let path = self.result_path(uid);
        let dir = path.parent().expect("result path has a parent");
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(io_err(format!("creating {}", dir.display())))?;
        let tmp = path.with_extension("json.tmp");
        tokio::fs::write(&tmp, record.to_string())
            .await
            .map_err(io_err(format!("writing {}", tmp.display())))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(io_err(format!("renaming onto {}", path.display())))
    }

    /// CNI DEL of the chain in reverse order, with what the record kept (host ports, the ADD
    /// result); succeeds when things are already gone, as the spec requires of plugins.
    async fn del_chain(&self, uid: &str, netns: &Path, stored: &Value) -> Result<()> {
        let ports = stored_ports(stored);
        if !ports.is_empty() {
            let mut pm = Self::portmap_conf(&ports);
            if !stored["result"].is_null() {
                pm["prevResult"] = stored["result"].clone();
            }
            self.exec("DEL", uid, netns, &pm).await?;
        }
        let mut br = self.bridge_conf();
        if !stored["result"].is_null() {
            br["prevResult"] = stored["result"].clone();
        }
        self.exec("DEL", uid, netns, &br).await?;
        Ok(())
    }
}

fn stored_ports(stored: &Value) -> Vec<HostPort> {
    stored["hostPorts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| HostPort {
                    host_port: p["hostPort"].as_i64().unwrap_or_default() as i32,
                    container_port: p["containerPort"].as_i64().unwrap_or_default() as i32,
                    protocol: p["protocol"].as_str().unwrap_or("TCP").to_string(),
                    host_ip: p["hostIP"].as_str().unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn record(result: Value, ports: &[HostPort]) -> Value {
    json!({
        "result": result,
        "hostPorts": ports.iter().map(|p| json!({
            "hostPort": p.host_port, "containerPort": p.container_port,
            "protocol": p.protocol, "hostIP": p.host_ip,
        })).collect::<Vec<_>>(),
    })
}

#[async_trait]
impl Network for Cni {
    /// The record is written before anything is made (an intent, result null) and completed
    /// after the ADD: a crash at any point leaves a record that `list` reports, so the pod's
    /// namespace and IP are released even if the pod is gone by the next start; and a setup
    /// that finds a partial one (or a namespace without a result) first DELs what a previous
    /// ADD may have half-made, since host-local refuses a second address for the same pod.
    async fn setup(&self, req: &PodNetRequest) -> Result<PodNet> {
        let netns = self.netns_path(&req.uid);
        let stored = self.read_record(&req.uid).await;
        // The mountinfo scan, unshare and mount block: off the async threads, so that work
        // joined with this (the pod's containers being created) goes on meanwhile.
        let mounted = {
            let path = netns.clone();
            tokio::task::spawn_blocking(move || is_netns_mounted(&path))
                .await
                .unwrap_or(false)
        };
        if mounted {
            if let Some(ip) = stored.as_ref().and_then(|s| result_ip(&s["result"])) {
                return Ok(PodNet { netns, ip });
            }
        }
        self.write_record(&req.uid, &record(Value::Null, &req.host_ports))
            .await?;
        if mounted || stored.is_some() {
            let stored = stored.unwrap_or(Value::Null);
            if let Err(e) = self.del_chain(&req.uid, &netns, &stored).await {
                tracing::warn!(pod = %req.uid, error = %e, "clearing a previous partial network setup failed");
            }
        }
        if !mounted {
            let path = netns.clone();
            tokio::task::spawn_blocking(move || create_netns(&path))
                .await
                .map_err(|e| NetworkError::Netns {
                    path: netns.clone(),
                    source: std::io::Error::other(e),
                })??;
        }
        let result = match self.add_chain(req, &netns).await {
            Ok(r) => r,
            Err(e) => {
                let _ = self.teardown(&req.uid).await;
                return Err(e);
            }
        };
        // A crash here leaves an IP allocated and a record without it: see above.
        fail::fail_point!("agent::cni-added");
        let ip = result_ip(&result).ok_or_else(|| NetworkError::Plugin {
            plugin: "bridge".into(),
            command: "ADD",
            pod: req.uid.clone(),
            message: format!("result has no IP address: {result}"),
        })?;
        self.write_record(&req.uid, &record(result, &req.host_ports))
            .await?;
        tracing::info!(pod = %req.uid, namespace = %req.namespace, name = %req.name, %ip, "pod network ready");
        Ok(PodNet { netns, ip })
    }

    async fn teardown(&self, uid: &str) -> Result<()> {
        let netns = self.netns_path(uid);
        let result_file = self.result_path(uid);
        let stored = self.read_record(uid).await.unwrap_or(Value::Null);
        self.del_chain(uid, &netns, &stored).await?;
        delete_netns(&netns)?;
        match tokio::fs::remove_file(&result_file).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("removing {}", result_file.display()))(e)),
        }
        tracing::info!(pod = %uid, "pod network released");
        Ok(())
    }

    fn netns_path(&self, uid: &str) -> PathBuf {
        self.cfg.netns_dir.join(format!("corral-{uid}"))
    }

    async fn list(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let dir = self.cfg.state_dir.join("results");
        let Ok(mut rd) = tokio::fs::read_dir(&dir).await else {
            return Ok(out);
        };
        while let Ok(Some(e)) = rd.next_entry().await {
            if let Some(uid) = e.file_name().to_str().and_then(|n| n.strip_suffix(".json")) {
                out.push(uid.to_string());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_namespaces_have_loopback_up() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns");
        create_netns(&path).unwrap();
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net={}", path.display()))
            .args(["ip", "-o", "link", "show", "lo"])
            .output();
        delete_netns(&path).unwrap();
        let out = String::from_utf8_lossy(&out.unwrap().stdout).to_string();
        assert!(out.contains("LOOPBACK,UP"), "{out}");
    }

    #[test]
    fn result_ip_takes_the_first_address() {
        let r = json!({"ips": [{"address": "10.88.0.7/24", "gateway": "10.88.0.1"}]});
        assert_eq!(result_ip(&r).as_deref(), Some("10.88.0.7"));
        assert_eq!(result_ip(&json!({})), None);
    }

    #[test]
    fn portmap_conf_carries_runtime_port_mappings() {
        let c = Cni::portmap_conf(&[HostPort {
            host_port: 8080,
            container_port: 80,
            protocol: "TCP".into(),
            host_ip: String::new(),
        }]);
        assert_eq!(c["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert_eq!(c["runtimeConfig"]["portMappings"][0]["protocol"], "tcp");
    }

    #[test]
    fn bridge_conf_sets_the_mtu_only_when_the_pod_network_lowers_it() {
        let cni = |mtu| {
            Cni::new(CniConfig {
                bin_dir: "/usr/lib/cni".into(),
                netns_dir: "/run/netns".into(),
                state_dir: "/tmp/x".into(),
                bridge: "corral0".into(),
                pod_cidr: "10.42.1.0/24".into(),
                mtu,
            })
            .bridge_conf()
        };
        assert_eq!(cni(Some(1450))["mtu"], 1450);
        assert!(cni(None).get("mtu").is_none());
    }
}
