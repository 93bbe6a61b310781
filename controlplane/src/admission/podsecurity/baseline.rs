//! The `baseline` checks: no host namespaces, privileged containers, added capabilities
//! beyond the runtime's default set, hostPath volumes, host ports, host processes, unmasked
//! /proc, forbidden AppArmor, SELinux or seccomp settings, or unsafe sysctls.

use super::pod::{containers, plural, pod_and_containers, quoted, ContainerView, PodView};
use super::Violation;

/// Capabilities a container runtime grants by default, which baseline lets a container add.
const DEFAULT_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Sysctls namespaced per pod and isolated from the node, which baseline allows.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

const SELINUX_TYPES: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

fn violation(reason: &str, detail: String) -> Option<Violation> {
    Some(Violation {
        reason: reason.to_string(),
        detail,
    })
}

pub fn host_namespaces(pod: &PodView) -> Option<Violation> {
    let s = pod.spec;
    let set: Vec<&str> = [
        (s.host_network, "hostNetwork=true"),
        (s.host_pid, "hostPID=true"),
        (s.host_ipc, "hostIPC=true"),
    ]
    .into_iter()
    .filter(|(v, _)| *v == Some(true))
    .map(|(_, what)| what)
    .collect();
    if set.is_empty() {
        return None;
    }
    violation("host namespaces", set.join(", "))
}

pub fn privileged(pod: &PodView) -> Option<Violation> {
    let bad = pod.containers_where(|c| c.security.and_then(|s| s.privileged) == Some(true));
    if bad.is_empty() {
        return None;
    }
    violation(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers(&bad)
        ),
    )
}

/// What a container adds to its capabilities.
pub fn added(c: &ContainerView) -> Vec<String> {
    c.security
        .and_then(|s| s.capabilities.as_ref())
        .and_then(|c| c.add.clone())
        .unwrap_or_default()
}

pub fn capabilities(pod: &PodView) -> Option<Violation> {
    let forbidden = |cap: &String| !DEFAULT_CAPABILITIES.contains(&cap.as_str());
    let bad = pod.containers_where(|c| added(c).iter().any(forbidden));
    if bad.is_empty() {
        return None;
    }
    let mut caps: Vec<String> = pod
        .containers
        .iter()
        .flat_map(added)
        .filter(forbidden)
        .collect();
    caps.sort();
    caps.dedup();
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers(&bad),
            quoted(&caps)
        ),
    )
}

pub fn host_path_volumes(pod: &PodView) -> Option<Violation> {
    let bad: Vec<&str> = pod
        .spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.host_path.is_some())
        .map(|v| v.name.as_str())
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation("hostPath volumes", plural("volume", "volumes", &bad))
}

pub fn host_ports(pod: &PodView) -> Option<Violation> {
    let host_ports = |c: &ContainerView| -> Vec<i32> {
        c.ports
            .iter()
            .filter_map(|p| p.host_port)
            .filter(|p| *p != 0)
            .collect()
    };
    let bad = pod.containers_where(|c| !host_ports(c).is_empty());
    if bad.is_empty() {
        return None;
    }
    let mut ports: Vec<String> = Vec::new();
    for p in pod.containers.iter().flat_map(host_ports) {
        if !ports.contains(&p.to_string()) {
            ports.push(p.to_string());
        }
    }
    let (verb, noun) = if bad.len() == 1 {
        (
            "uses",
            if ports.len() == 1 {
                "hostPort"
            } else {
                "hostPorts"
            },
        )
    } else {
        ("use", "hostPorts")
    };
    violation(
        "hostPort",
        format!("{} {verb} {noun} {}", containers(&bad), ports.join(", ")),
    )
}

pub fn host_process(pod: &PodView) -> Option<Violation> {
    let on_pod = pod
        .pod_security()
        .and_then(|s| s.windows_options.as_ref())
        .and_then(|w| w.host_process)
        == Some(true);
    let bad = pod.containers_where(|c| {
        c.security
            .and_then(|s| s.windows_options.as_ref())
            .and_then(|w| w.host_process)
            == Some(true)
    });
    if !on_pod && bad.is_empty() {
        return None;
    }
    violation(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            pod_and_containers(on_pod, "and", &bad)
        ),
    )
}

pub fn proc_mount(pod: &PodView) -> Option<Violation> {
    let mount = |c: &ContainerView| -> Option<String> {
        c.security
            .and_then(|s| s.proc_mount.clone())
            .filter(|m| m != "Default")
    };
    let bad = pod.containers_where(|c| mount(c).is_some());
    if bad.is_empty() {
        return None;
    }
    let mut values: Vec<String> = pod.containers.iter().filter_map(mount).collect();
    values.dedup();
    violation(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers(&bad),
            quoted(&values)
        ),
    )
}

pub fn app_armor(pod: &PodView) -> Option<Violation> {
    let mut details = Vec::new();
    for (key, value) in pod.meta.annotations.iter().flatten() {
        if key.starts_with(APPARMOR_ANNOTATION_PREFIX)
            && value != "runtime/default"
            && !value.starts_with("localhost/")
        {
            details.push(format!("annotation {key:?}={value:?}"));
        }
    }
    let allowed = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    let pod_type = pod
        .pod_security()
        .and_then(|s| s.app_armor_profile.as_ref())
        .map(|p| p.type_.clone())
        .filter(|t| !allowed(t));
    let container_type = |c: &ContainerView| {
        c.security
            .and_then(|s| s.app_armor_profile.as_ref())
            .map(|p| p.type_.clone())
            .filter(|t| !allowed(t))
    };
    let bad = pod.containers_where(|c| container_type(c).is_some());
    if pod_type.is_some() || !bad.is_empty() {
        let mut types: Vec<String> = pod_type.iter().cloned().collect();
        types.extend(pod.containers.iter().filter_map(container_type));
        types.sort();
        types.dedup();
        details.push(format!(
            "{} must not set securityContext.appArmorProfile.type to {}",
            pod_and_containers(pod_type.is_some(), "and", &bad),
            quoted(&types)
        ));
    }
    if details.is_empty() {
        return None;
    }
    let reason = if details.len() == 1 {
        "forbidden AppArmor profile"
    } else {
        "forbidden AppArmor profiles"
    };
    violation(reason, details.join(", "))
}

pub fn se_linux_options(pod: &PodView) -> Option<Violation> {
    let mut types = Vec::new();
    let mut users = Vec::new();
    let mut roles = Vec::new();
    let mut inspect = |o: Option<&k8s_openapi::api::core::v1::SELinuxOptions>| -> bool {
        let Some(o) = o else { return false };
        let mut bad = false;
        if let Some(t) = o.type_.as_deref().filter(|t| !SELINUX_TYPES.contains(t)) {
            types.push(t.to_string());
            bad = true;
        }
        if let Some(u) = o.user.as_deref().filter(|u| !u.is_empty()) {
            users.push(u.to_string());
            bad = true;
        }
        if let Some(r) = o.role.as_deref().filter(|r| !r.is_empty()) {
            roles.push(r.to_string());
            bad = true;
        }
        bad
    };
    let on_pod = inspect(pod.pod_security().and_then(|s| s.se_linux_options.as_ref()));
    let bad: Vec<&str> = pod
        .containers
        .iter()
        .filter(|c| inspect(c.security.and_then(|s| s.se_linux_options.as_ref())))
        .map(|c| c.name)
        .collect();
    if !on_pod && bad.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    for (one, many, mut values) in [
        ("type", "types", types),
        ("user", "users", users),
        ("role", "roles", roles),
    ] {
        values.sort();
        values.dedup();
        if !values.is_empty() {
            data.push(plural(one, many, &values));
        }
    }
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            pod_and_containers(on_pod, "and", &bad),
            data.join("; ")
        ),
    )
}

/// The pod's and each container's seccomp profile type, when set.
pub fn pod_seccomp(pod: &PodView) -> Option<String> {
    pod.pod_security()
        .and_then(|s| s.seccomp_profile.as_ref())
        .map(|p| p.type_.clone())
}

pub fn container_seccomp(c: &ContainerView) -> Option<String> {
    c.security
        .and_then(|s| s.seccomp_profile.as_ref())
        .map(|p| p.type_.clone())
}

/// `pod and container "c" must not set securityContext.seccompProfile.type to "Unconfined"`,
/// for baseline and restricted alike.
pub fn unconfined_seccomp(pod: &PodView) -> Option<String> {
    let on_pod = pod_seccomp(pod).as_deref() == Some("Unconfined");
    let bad = pod.containers_where(|c| container_seccomp(c).as_deref() == Some("Unconfined"));
    if !on_pod && bad.is_empty() {
        return None;
    }
    Some(format!(
        "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
        pod_and_containers(on_pod, "and", &bad)
    ))
}

pub fn seccomp(pod: &PodView) -> Option<Violation> {
    violation("seccompProfile", unconfined_seccomp(pod)?)
}

pub fn sysctls(pod: &PodView) -> Option<Violation> {
    let bad: Vec<&str> = pod
        .pod_security()
        .and_then(|s| s.sysctls.as_ref())
        .into_iter()
        .flatten()
        .map(|s| s.name.as_str())
        .filter(|n| !SAFE_SYSCTLS.contains(n))
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation("forbidden sysctls", bad.join(", "))
}
