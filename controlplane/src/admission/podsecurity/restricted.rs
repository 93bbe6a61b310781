//! The `restricted` checks, on top of baseline: no privilege escalation, every capability
//! dropped (NET_BIND_SERVICE alone may be added), non-root, a RuntimeDefault or Localhost
//! seccomp profile, and only volume types that cannot reach the node.

use serde_json::Value;

use super::baseline::{added, container_seccomp, pod_seccomp, unconfined_seccomp};
use super::pod::{containers, plural, pod_and_containers, quoted, PodView};
use super::Violation;

/// Volume sources restricted allows (their JSON member names).
const ALLOWED_VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Kubernetes skips the Linux-only restricted checks for pods that say they run on Windows.
fn windows(pod: &PodView) -> bool {
    pod.spec.os.as_ref().is_some_and(|o| o.name == "windows")
}

fn violation(reason: &str, detail: String) -> Option<Violation> {
    Some(Violation {
        reason: reason.to_string(),
        detail,
    })
}

pub fn allow_privilege_escalation(pod: &PodView) -> Option<Violation> {
    if windows(pod) {
        return None;
    }
    let bad = pod
        .containers_where(|c| c.security.and_then(|s| s.allow_privilege_escalation) != Some(false));
    if bad.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers(&bad)
        ),
    )
}

pub fn capabilities(pod: &PodView) -> Option<Violation> {
    if windows(pod) {
        return None;
    }
    let drops_all = |c: &super::pod::ContainerView| {
        c.security
            .and_then(|s| s.capabilities.as_ref())
            .and_then(|c| c.drop.as_ref())
            .is_some_and(|d| d.iter().any(|x| x == "ALL"))
    };
    let no_drop = pod.containers_where(|c| !drops_all(c));
    let forbidden = |cap: &String| cap != "NET_BIND_SERVICE";
    let adds = pod.containers_where(|c| added(c).iter().any(forbidden));
    let mut details = Vec::new();
    if !no_drop.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers(&no_drop)
        ));
    }
    if !adds.is_empty() {
        let mut caps: Vec<String> = pod
            .containers
            .iter()
            .flat_map(added)
            .filter(forbidden)
            .collect();
        caps.sort();
        caps.dedup();
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers(&adds),
            quoted(&caps)
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

pub fn run_as_non_root(pod: &PodView) -> Option<Violation> {
    let on_pod = pod.pod_security().and_then(|s| s.run_as_non_root);
    let own = |c: &super::pod::ContainerView| c.security.and_then(|s| s.run_as_non_root);
    let mut details = Vec::new();
    if on_pod == Some(false) {
        details.push("pod must not set securityContext.runAsNonRoot=false".to_string());
    }
    let explicit_false = pod.containers_where(|c| own(c) == Some(false));
    if !explicit_false.is_empty() {
        details.push(format!(
            "{} must not set securityContext.runAsNonRoot=false",
            containers(&explicit_false)
        ));
    }
    if on_pod != Some(true) {
        let unset = pod.containers_where(|c| own(c).is_none());
        if !unset.is_empty() {
            details.push(format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers(&unset)
            ));
        }
    }
    if details.is_empty() {
        return None;
    }
    violation("runAsNonRoot != true", details.join("; "))
}

pub fn run_as_user(pod: &PodView) -> Option<Violation> {
    let on_pod = pod.pod_security().and_then(|s| s.run_as_user) == Some(0);
    let bad = pod.containers_where(|c| c.security.and_then(|s| s.run_as_user) == Some(0));
    if !on_pod && bad.is_empty() {
        return None;
    }
    violation(
        "runAsUser=0",
        format!(
            "{} must not set runAsUser=0",
            pod_and_containers(on_pod, "and", &bad)
        ),
    )
}

pub fn seccomp(pod: &PodView) -> Option<Violation> {
    if windows(pod) {
        return None;
    }
    let valid = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    let mut details: Vec<String> = unconfined_seccomp(pod).into_iter().collect();
    if !pod_seccomp(pod).as_deref().is_some_and(valid) {
        let unset = pod.containers_where(|c| container_seccomp(c).is_none());
        if !unset.is_empty() {
            details.push(format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers(&unset)
            ));
        }
    }
    if details.is_empty() {
        return None;
    }
    violation("seccompProfile", details.join("; "))
}

pub fn volume_types(pod: &PodView) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types: Vec<String> = Vec::new();
    for v in pod.spec.volumes.iter().flatten() {
        let Ok(Value::Object(members)) = serde_json::to_value(v) else {
            continue;
        };
        let restricted: Vec<&String> = members
            .keys()
            .filter(|k| *k != "name" && !ALLOWED_VOLUME_TYPES.contains(&k.as_str()))
            .collect();
        if !restricted.is_empty() {
            bad.push(v.name.as_str());
            types.extend(restricted.into_iter().cloned());
        }
    }
    if bad.is_empty() {
        return None;
    }
    types.sort();
    types.dedup();
    violation(
        "restricted volume types",
        format!(
            "{} {} {}",
            plural("volume", "volumes", &bad),
            if bad.len() == 1 { "uses" } else { "use" },
            plural("restricted volume type", "restricted volume types", &types)
        ),
    )
}
