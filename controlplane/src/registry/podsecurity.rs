//! Pod Security admission in the registry, its one home: the namespace's policy (labels or
//! the cluster defaults), enforce on pods (create, and updates that change more than metadata,
//! tolerations or activeDeadlineSeconds), warn and audit on pods and workload templates,
//! label checks on namespaces, and warnings about existing pods when `enforce` tightens.

use corral_api::kinds::{self, ResourceInfo};
use corral_api::object;
use corral_api::status::{CauseType, StatusCause};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{Map, Value};
use tracing::warn;

use super::{decode_kv, key, prefix, ApiError, Registry, Result, Subject};
use crate::admission::podsecurity::{self as pss, Level, Mode, NamespacePolicy, Policy};

/// Evaluating existing pods when a namespace's enforce level changes stops after this many,
/// as Kubernetes bounds that work.
const MAX_EXISTING_PODS: usize = 3000;

/// Annotations that change a pod's security, so an update that changes them is checked.
const SECURITY_ANNOTATIONS: &[&str] = &[
    "seccomp.security.alpha.kubernetes.io/pod",
    "container.seccomp.security.alpha.kubernetes.io/",
    "container.apparmor.security.beta.kubernetes.io/",
];

/// Where a workload kind keeps its pod template.
fn template_pointer(plural: &str) -> Option<&'static str> {
    match plural {
        "replicasets"
        | "deployments"
        | "daemonsets"
        | "statefulsets"
        | "jobs"
        | "replicationcontrollers" => Some("/spec/template"),
        "cronjobs" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

fn labels(namespace: &Value) -> Option<&Map<String, Value>> {
    namespace
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
}

/// The pod (metadata and spec) Pod Security sees in `object`: the pod itself, or a workload's
/// template.
fn pod_of(info: &ResourceInfo, object: &Value) -> Option<PodTemplateSpec> {
    let at = if info.plural == kinds::PODS.plural {
        object
    } else {
        object.pointer(template_pointer(info.plural)?)?
    };
    let mut template = PodTemplateSpec::default();
    if let Some(m) = at.get("metadata") {
        template.metadata = serde_json::from_value(m.clone()).ok();
    }
    template.spec = serde_json::from_value(at.get("spec")?.clone()).ok();
    Some(template)
}

fn violations(level: Level, pod: &PodTemplateSpec) -> Vec<pss::Violation> {
    match (&pod.spec, level) {
        (_, Level::Privileged) | (None, _) => Vec::new(),
        (Some(spec), level) => pss::check(level, &pod.metadata.clone().unwrap_or_default(), spec),
    }
}

/// Whether a pod update is one Kubernetes checks: anything beyond metadata (other than the
/// seccomp and AppArmor annotations), tolerations and activeDeadlineSeconds.
fn significant_pod_update(old: &Value, new: &Value) -> bool {
    let spec = |p: &Value| {
        let mut s = p.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(m) = s.as_object_mut() {
            m.remove("tolerations");
            m.remove("activeDeadlineSeconds");
        }
        s
    };
    let security_annotations = |p: &Value| -> Vec<(String, Value)> {
        p.pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(k, _)| SECURITY_ANNOTATIONS.iter().any(|a| k.starts_with(a)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    spec(old) != spec(new) || security_annotations(old) != security_annotations(new)
}

/// Pod Security on one pod or workload being written in namespace `ns` (`old`: the stored
/// object, on an update). A pod violating the enforce level is Forbidden in Kubernetes'
/// words; otherwise the answer is the warn level's warnings, and audit violations are logged.
pub(super) fn admit(
    info: &ResourceInfo,
    ns: &str,
    policy: &NamespacePolicy,
    object: &Value,
    old: Option<&Value>,
) -> Result<Vec<String>> {
    let is_pod = info.plural == kinds::PODS.plural;
    if is_pod && old.is_some_and(|old| !significant_pod_update(old, object)) {
        return Ok(Vec::new());
    }
    let Some(pod) = pod_of(info, object) else {
        return Ok(Vec::new());
    };
    let name = object::name(object);
    if is_pod {
        let found = violations(policy.enforce.level, &pod);
        if !found.is_empty() {
            return Err(forbidden(info, name, policy.enforce, &found));
        }
    }
    let audit = violations(policy.audit.level, &pod);
    if !audit.is_empty() {
        warn!(
            namespace = %ns,
            resource = info.plural,
            name = %name,
            level = %policy.audit,
            violations = %pss::message(policy.audit, &audit, true),
            "pod security audit"
        );
    }
    let found = violations(policy.warn.level, &pod);
    if found.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![pss::message(policy.warn, &found, true)])
}

fn forbidden(
    info: &ResourceInfo,
    name: &str,
    policy: Policy,
    found: &[pss::Violation],
) -> ApiError {
    ApiError::Forbidden {
        what: Subject::resource(info, name),
        reason: pss::message(policy, found, false),
        causes: found
            .iter()
            .map(|v| StatusCause {
                kind: CauseType::Other("PodSecurity".into()),
                field: String::new(),
                message: v.to_string(),
            })
            .collect(),
    }
}

/// A namespace's Pod Security labels must be valid (on create, update and apply).
pub(super) fn check_namespace_labels(info: &ResourceInfo, namespace: &Value) -> Result<()> {
    if info.plural != kinds::NAMESPACES.plural {
        return Ok(());
    }
    let errors = pss::validate_labels(labels(namespace));
    if errors.is_empty() {
        return Ok(());
    }
    Err(ApiError::Invalid {
        what: Subject::resource(info, object::name(namespace)),
        errors,
    })
}

impl Registry {
    /// The Pod Security policy for writes of `info` into namespace `ns`: `None` for kinds it
    /// does not concern; the cluster defaults for an unlabelled (or missing) namespace.
    pub(super) async fn pod_security_policy(
        &self,
        info: &ResourceInfo,
        ns: &str,
    ) -> Result<Option<NamespacePolicy>> {
        if info.plural != kinds::PODS.plural && template_pointer(info.plural).is_none() {
            return Ok(None);
        }
        let namespace = self
            .store
            .get(&key(&kinds::NAMESPACES, "", ns))
            .await?
            .map(|kv| decode_kv(&kv));
        Ok(Some(pss::namespace_policy(
            namespace.as_ref().and_then(labels),
            &self.pod_security,
        )))
    }

    /// Pod Security for a create: Forbidden, or the warnings to send.
    pub(super) async fn pod_security_create(
        &self,
        info: &ResourceInfo,
        ns: &str,
        object: &Value,
    ) -> Result<Vec<String>> {
        match self.pod_security_policy(info, ns).await? {
            Some(policy) => admit(info, ns, &policy, object, None),
            None => Ok(Vec::new()),
        }
    }

    /// After a namespace's update: when its enforce policy changed to a stricter one than
    /// `privileged`, warnings naming the existing pods that would now be refused (they keep
    /// running, as in Kubernetes).
    pub(super) async fn existing_pod_warnings(
        &self,
        old: &Value,
        new: &Value,
    ) -> Result<Vec<String>> {
        let before = pss::namespace_policy(labels(old), &self.pod_security).get(Mode::Enforce);
        let after = pss::namespace_policy(labels(new), &self.pod_security).get(Mode::Enforce);
        if before == after || after.level == Level::Privileged {
            return Ok(Vec::new());
        }
        let ns = object::name(new);
        let (pods, _) = self.store.list(&prefix(&kinds::PODS, ns)).await?;
        // Pods with the same violations share one line, as Kubernetes groups them.
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for kv in pods.iter().take(MAX_EXISTING_PODS) {
            let pod = decode_kv(kv);
            let Some(template) = pod_of(&kinds::PODS, &pod) else {
                continue;
            };
            let found = violations(after.level, &template);
            if found.is_empty() {
                continue;
            }
            let reasons: Vec<&str> = found.iter().map(|v| v.reason.as_str()).collect();
            let reasons = reasons.join(", ");
            let name = object::name(&pod).to_string();
            match groups.iter_mut().find(|(r, _)| *r == reasons) {
                Some((_, names)) => names.push(name),
                None => groups.push((reasons, vec![name])),
            }
        }
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let mut warnings = vec![format!(
            "existing pods in namespace {ns:?} violate the new PodSecurity enforce level \"{after}\""
        )];
        for (reasons, names) in groups {
            warnings.push(match names.len() {
                1 => format!("{}: {reasons}", names[0]),
                n => format!("{} (and {} other pods): {reasons}", names[0], n - 1),
            });
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_updates_beyond_metadata_tolerations_and_deadlines_are_checked() {
        let old = json!({"metadata": {"name": "p", "labels": {"a": "1"}},
                         "spec": {"containers": [{"name": "c", "image": "i:1"}]}});
        let with = |patch: &dyn Fn(&mut Value)| {
            let mut p = old.clone();
            patch(&mut p);
            p
        };
        let rows: Vec<(&str, Value, bool)> = vec![
            ("same", old.clone(), false),
            (
                "labels",
                with(&|p| p["metadata"]["labels"]["a"] = json!("2")),
                false,
            ),
            (
                "other annotations",
                with(&|p| p["metadata"]["annotations"] = json!({"note": "x"})),
                false,
            ),
            (
                "tolerations",
                with(&|p| p["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}])),
                false,
            ),
            (
                "activeDeadlineSeconds",
                with(&|p| p["spec"]["activeDeadlineSeconds"] = json!(30)),
                false,
            ),
            (
                "image",
                with(&|p| p["spec"]["containers"][0]["image"] = json!("i:2")),
                true,
            ),
            (
                "AppArmor annotation",
                with(&|p| {
                    p["metadata"]["annotations"] =
                        json!({"container.apparmor.security.beta.kubernetes.io/c": "unconfined"})
                }),
                true,
            ),
        ];
        for (what, new, want) in rows {
            assert_eq!(significant_pod_update(&old, &new), want, "{what}");
        }
    }

    #[test]
    fn workload_templates_are_found_where_each_kind_keeps_them() {
        let template = json!({"metadata": {"labels": {"app": "x"}},
                              "spec": {"containers": [{"name": "c", "image": "i"}], "hostNetwork": true}});
        let rows: Vec<(&ResourceInfo, Value, bool)> = vec![
            (
                &kinds::DEPLOYMENTS,
                json!({"spec": {"template": template.clone()}}),
                true,
            ),
            (
                &kinds::DAEMONSETS,
                json!({"spec": {"template": template.clone()}}),
                true,
            ),
            (&kinds::PODS, template.clone(), true),
            (&kinds::CONFIGMAPS, json!({"data": {}}), false),
            (&kinds::REPLICASETS, json!({"spec": {}}), false),
        ];
        for (info, object, found) in rows {
            let pod = pod_of(info, &object);
            assert_eq!(
                pod.map(|p| violations(Level::Baseline, &p).len()),
                found.then_some(1),
                "{}",
                info.plural
            );
        }
    }
}
