//! Builds the OCI runtime spec of one container from its pod spec and image config: a pure
//! function (no I/O), following containerd's default Linux spec and Docker's default
//! capability set, with Kubernetes' rules for command/args, env, user and resources.

use std::collections::BTreeMap;
use std::path::PathBuf;

use corral_api::rules::quantity;
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{json, Value};

use crate::runtime::ImageConfig;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    #[error("container {container:?}: {field}: {message}")]
    Field {
        container: String,
        field: String,
        message: String,
    },
}

/// Everything besides the pod that shapes a container's spec.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub image: &'a ImageConfig,
    pub container_id: &'a str,
    /// `None` for hostNetwork pods.
    pub netns_path: Option<PathBuf>,
    /// Files the agent wrote for this pod, bind-mounted read-only.
    pub hosts_file: PathBuf,
    pub resolv_file: PathBuf,
    pub hostname_file: PathBuf,
    /// Host directory of each volume (emptyDir and hostPath), by volume name.
    pub volume_dirs: BTreeMap<String, PathBuf>,
    /// Variables from ConfigMaps and Secrets (`envFrom`, `valueFrom` key references).
    pub config_env: crate::configdata::ConfigEnv,
    pub pod_ip: Option<String>,
    pub node_name: String,
    pub host_ip: String,
    /// RLIMIT_NOFILE for the process (soft = hard): the agent's own hard limit, as a
    /// containerd started by the same init would give.
    pub nofile: u64,
}

/// The hard RLIMIT_NOFILE of this process, from /proc/self/limits.
pub fn own_nofile_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|x| x.starts_with("Max open files"))
                .and_then(|x| x.split_whitespace().nth(4).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(1024)
}

/// Docker's default capabilities, which containerd's CRI uses too.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Kubernetes' command rules: `command` replaces the entrypoint (and drops the image's cmd);
/// `args` replace the cmd.
pub fn process_args(c: &Container, image: &ImageConfig) -> Vec<String> {
    let args = c.args.clone().unwrap_or_default();
    match &c.command {
        Some(cmd) if !cmd.is_empty() => cmd.iter().cloned().chain(args).collect(),
        _ => {
            let tail = if c.args.is_some() {
                args
            } else {
                image.cmd.clone()
            };
            image.entrypoint.iter().cloned().chain(tail).collect()
        }
    }
}

fn field_err(c: &Container, field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::Field {
        container: c.name.clone(),
        field: field.into(),
        message: message.into(),
    }
}

/// `$(VAR)` expansion as Kubernetes does for env values, command and args.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn env_list(input: &SpecInput) -> Result<(Vec<String>, BTreeMap<String, String>), SpecError> {
    let c = input.container;
    let mut vars: Vec<(String, String)> = Vec::new();
    let set = |vars: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(e) = vars.iter_mut().find(|(n, _)| *n == k) {
            e.1 = v;
        } else {
            vars.push((k, v));
        }
    };
    for e in &input.image.env {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        set(&mut vars, k.to_string(), v.to_string());
    }
    if !vars.iter().any(|(k, _)| k == "PATH") {
        set(
            &mut vars,
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    let pod_name = input.pod.metadata.name.clone().unwrap_or_default();
    set(
        &mut vars,
        "HOSTNAME".into(),
        crate::hosts::hostname(input.pod),
    );
    for (k, v) in &input.config_env.from {
        set(&mut vars, k.clone(), v.clone());
    }
    for (i, e) in c.env.iter().flatten().enumerate() {
        let known: BTreeMap<String, String> = vars.iter().cloned().collect();
        let value = match (&e.value, &e.value_from) {
            (_, Some(from))
                if from.config_map_key_ref.is_some() || from.secret_key_ref.is_some() =>
            {
                // Resolved by the worker; an optional reference to nothing sets nothing.
                match input.config_env.values.get(&i) {
                    Some(v) => v.clone(),
                    None => continue,
                }
            }
            (_, Some(from)) => {
                let Some(f) = &from.field_ref else {
                    return Err(field_err(
                        c,
                        format!("env[{i}].valueFrom"),
                        "only fieldRef, configMapKeyRef and secretKeyRef are supported by this agent",
                    ));
                };
                let meta = &input.pod.metadata;
                match f.field_path.as_str() {
                    "metadata.name" => pod_name.clone(),
                    "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
                    "metadata.uid" => meta.uid.clone().unwrap_or_default(),
                    "spec.nodeName" => input.node_name.clone(),
                    "spec.serviceAccountName" => input
                        .pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.service_account_name.clone())
                        .unwrap_or_default(),
                    "status.podIP" => input.pod_ip.clone().unwrap_or_default(),
                    "status.hostIP" => input.host_ip.clone(),
                    p => {
                        if let Some(l) = p
                            .strip_prefix("metadata.labels['")
                            .and_then(|s| s.strip_suffix("']"))
                        {
                            meta.labels
                                .as_ref()
                                .and_then(|m| m.get(l))
                                .cloned()
                                .unwrap_or_default()
                        } else if let Some(a) = p
                            .strip_prefix("metadata.annotations['")
                            .and_then(|s| s.strip_suffix("']"))
                        {
                            meta.annotations
                                .as_ref()
                                .and_then(|m| m.get(a))
                                .cloned()
                                .unwrap_or_default()
                        } else {
                            return Err(field_err(
                                c,
                                format!("env[{i}].valueFrom.fieldRef.fieldPath"),
                                format!("unsupported field path {p:?}"),
                            ));
                        }
                    }
                }
            }
            (Some(v), None) => expand(v, &known),
            (None, None) => String::new(),
        };
        set(&mut vars, e.name.clone(), value);
    }
    let map = vars.iter().cloned().collect();
    Ok((
        vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        map,
    ))
}

fn resources(c: &Container) -> Result<Value, SpecError> {
    let mut out = json!({ "devices": [{ "allow": false, "access": "rwm" }] });
    let Some(r) = &c.resources else {
        return Ok(out);
    };
    type ResourceList = BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>;
    // cpu in millicores (MilliValue), the rest in whole units (Value), as the kubelet reads them.
    let get =
        |m: &Option<ResourceList>, which: &str, key: &str| -> Result<Option<i64>, SpecError> {
            let Some(q) = m.as_ref().and_then(|m| m.get(key)) else {
                return Ok(None);
            };
            let parsed = if key == "cpu" {
                quantity::cpu_millis(&q.0)
            } else {
                quantity::value(&q.0)
            };
            parsed
                .map(Some)
                .map_err(|e| field_err(c, format!("resources.{which}.{key}"), e.to_string()))
        };
    if let Some(mem) = get(&r.limits, "limits", "memory")? {
        out["memory"] = json!({ "limit": mem });
    }
    let mut cpu = serde_json::Map::new();
    if let Some(milli) = get(&r.limits, "limits", "cpu")? {
        // The kubelet's MilliCPUToQuota, with its 1ms minimum quota.
        let period = 100_000i64;
        cpu.insert(
            "quota".into(),
            json!((milli.saturating_mul(period) / 1000).max(1000)),
        );
        cpu.insert("period".into(), json!(period));
    }
    let request = get(&r.requests, "requests", "cpu")?.or(get(&r.limits, "limits", "cpu")?);
    if let Some(milli) = request {
        // The kubelet's MilliCPUToShares, with its minimum of 2.
        cpu.insert(
            "shares".into(),
            json!((milli.saturating_mul(1024) / 1000).max(2)),
        );
    }
    if !cpu.is_empty() {
        out["cpu"] = Value::Object(cpu);
    }
    Ok(out)
}

fn capabilities(c: &Container, privileged: bool) -> Value {
    let mut caps: Vec<String> = if privileged {
        ALL_CAPS.iter().map(|s| s.to_string()).collect()
    } else {
        DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
    };
    let norm = |s: &String| {
        let up = s.to_ascii_uppercase();
        if up.starts_with("CAP_") || up == "ALL" {
            up
        } else {
            format!("CAP_{up}")
        }
    };
    if let Some(sc) = c
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
    {
        for d in sc.drop.iter().flatten().map(norm) {
            if d == "ALL" {
                caps.clear();
            } else {
                caps.retain(|x| *x != d);
            }
        }
        for a in sc.add.iter().flatten().map(norm) {
            if a == "ALL" {
                caps = ALL_CAPS.iter().map(|s| s.to_string()).collect();
            } else if !caps.contains(&a) {
                caps.push(a);
            }
        }
    }
    json!({ "bounding": caps, "effective": caps, "permitted": caps })
}

fn user(input: &SpecInput) -> Result<(u32, u32), SpecError> {
    let c = input.container;
    let pod_sc = input
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref());
    let csc = c.security_context.as_ref();
    let uid = csc
        .and_then(|s| s.run_as_user)
        .or(pod_sc.and_then(|s| s.run_as_user));
    let gid = csc
        .and_then(|s| s.run_as_group)
        .or(pod_sc.and_then(|s| s.run_as_group));
    let (img_uid, img_gid) = match input.image.user.split_once(':') {
        Some((u, g)) => (u.to_string(), Some(g.to_string())),
        None => (input.image.user.clone(), None),
    };
    let parse = |s: &str| -> Result<u32, SpecError> {
        match s {
            "" | "root" => Ok(0),
            s => s.parse().map_err(|_| {
                field_err(
                    c,
                    "image user",
                    format!("{s:?} is not numeric; set securityContext.runAsUser"),
                )
            }),
        }
    };
    let uid = match uid {
        Some(u) => u32::try_from(u).map_err(|_| {
            field_err(
                c,
                "securityContext.runAsUser",
                format!("{u} is out of range"),
            )
        })?,
        None => parse(&img_uid)?,
    };
    let gid = match gid {
        Some(g) => u32::try_from(g).map_err(|_| {
            field_err(
                c,
                "securityContext.runAsGroup",
                format!("{g} is out of range"),
            )
        })?,
        None => img_gid.as_deref().map(parse).transpose()?.unwrap_or(0),
    };
    Ok((uid, gid))
}

/// The OCI runtime spec (config.json) for one container of a pod.
pub fn build(input: &SpecInput) -> Result<Value, SpecError> {
    let c = input.container;
    let uid = input.pod.metadata.uid.clone().unwrap_or_default();
    let (env, vars) = env_list(input)?;
    let args: Vec<String> = process_args(c, input.image)
        .iter()
        .map(|a| expand(a, &vars))
        .collect();
    if args.is_empty() {
        return Err(field_err(
            c,
            "command",
            "neither the container nor its image sets a command",
        ));
    }
    let cwd = c
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| Some(input.image.working_dir.clone()).filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    let privileged = c
        .security_context
        .as_ref()
        .and_then(|s| s.privileged)
        .unwrap_or(false);
    let no_new_privs = c
        .security_context
        .as_ref()
        .and_then(|s| s.allow_privilege_escalation)
        .map(|a| !a)
        .unwrap_or(false);
    let (run_uid, run_gid) = user(input)?;

    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", if privileged { "rw" } else { "ro" }]}),
    ];
    let host_network = input
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    for (dest, src) in [
        ("/etc/hosts", &input.hosts_file),
        ("/etc/resolv.conf", &input.resolv_file),
        ("/etc/hostname", &input.hostname_file),
    ] {
        mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate", "rw"]}));
    }
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let Some(dir) = input.volume_dirs.get(&m.name) else {
            return Err(field_err(
                c,
                format!("volumeMounts[{i}].name"),
                format!(
                    "no volume {:?} (emptyDir, hostPath, persistentVolumeClaim, configMap, secret and projected volumes are supported)",
                    m.name
                ),
            ));
        };
        let mut src = dir.clone();
        if let Some(sub) = m.sub_path.as_ref().filter(|s| !s.is_empty()) {
            if sub.starts_with('/') || sub.split('/').any(|p| p == "..") {
                return Err(field_err(
                    c,
                    format!("volumeMounts[{i}].subPath"),
                    "must be a relative path without '..'",
                ));
            }
            src = src.join(sub);
        }
        let ro = if m.read_only.unwrap_or(false) {
            "ro"
        } else {
            "rw"
        };
        mounts.push(json!({"destination": m.mount_path, "type": "bind", "source": src, "options": ["rbind", "rprivate", ro]}));
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "mount"}),
    ];
    // A hostNetwork pod keeps the node's network and hostname, as in Kubernetes.
    if !host_network {
        namespaces.push(json!({"type": "uts"}));
        if let Some(ns) = &input.netns_path {
            namespaces.push(json!({"type": "network", "path": ns}));
        }
    }
    let mut linux = json!({
        "resources": resources(c)?,
        "cgroupsPath": format!("/corral/pod{uid}/{}", input.container_id),
        "namespaces": namespaces,
    });
    if privileged {
        linux["resources"]["devices"] = json!([{ "allow": true, "access": "rwm" }]);
    } else {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    let mut spec = json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": { "uid": run_uid, "gid": run_gid },
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": capabilities(c, privileged),
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": input.nofile, "soft": input.nofile }],
            "noNewPrivileges": no_new_privs,
        },
        "root": { "path": "rootfs", "readonly": c.security_context.as_ref().and_then(|s| s.read_only_root_filesystem).unwrap_or(false) },
        "mounts": mounts,
        "linux": linux,
    });
    if !host_network {
        spec["hostname"] = json!(crate::hosts::hostname(input.pod));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests;
