//! The namespace controller's planner: from what a Terminating namespace still holds, the
//! next bounded batch of deletions, whether the `kubernetes` finalizer may go, and the status
//! conditions Kubernetes' namespace controller reports. No I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use corral_api::kinds::ResourceInfo;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The finalizer in `spec.finalizers` this controller owns.
pub const FINALIZER: &str = "kubernetes";
/// At most this many objects are deleted per reconcile; the next batch follows at once.
pub const BATCH: usize = 500;
/// How soon to look again while content is going away on its own (pods the agents are
/// stopping, objects whose finalizers others hold).
pub const WAIT: Duration = Duration::from_millis(500);

/// One object in the namespace, as far as the planner cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub kind: &'static ResourceInfo,
    pub name: String,
    pub uid: String,
    /// It has a deletionTimestamp: it goes once its grace period or finalizers end.
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

pub struct Input<'a> {
    pub namespace: &'a Namespace,
    /// Everything listed in the namespace, every namespaced kind.
    pub content: &'a [Content],
    /// Kinds whose list failed: the namespace is not known to be empty.
    pub unlisted: &'a [&'static ResourceInfo],
    pub batch: usize,
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Objects to delete now, at most `batch`.
    pub delete: Vec<Content>,
    /// Remove the `kubernetes` finalizer: nothing is left in the namespace.
    pub finalize: bool,
    /// Objects left, by `resource.group`, after this batch.
    pub remaining: BTreeMap<String, usize>,
    /// Finalizers of the objects left, with how many objects hold each.
    pub finalizers_remaining: BTreeMap<String, usize>,
    pub requeue_after: Option<Duration>,
}

pub fn is_terminating(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
}

pub fn holds_finalizer(ns: &Namespace) -> bool {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

/// Kubernetes names a resource in these messages as `resource.group` (`configmaps.`).
fn resource_name(kind: &ResourceInfo) -> String {
    format!("{}.{}", kind.plural, kind.group)
}

pub fn plan(input: &Input) -> Plan {
    let mut out = Plan::default();
    if !is_terminating(input.namespace) || !holds_finalizer(input.namespace) {
        return out;
    }
    for c in input.content {
        if !c.deleting && out.delete.len() < input.batch {
            out.delete.push(c.clone());
        }
        *out.remaining.entry(resource_name(c.kind)).or_default() += 1;
        for f in &c.finalizers {
            *out.finalizers_remaining.entry(f.clone()).or_default() += 1;
        }
    }
    for kind in input.unlisted {
        out.remaining.entry(resource_name(kind)).or_default();
    }
    out.finalize = input.content.is_empty() && input.unlisted.is_empty();
    out.requeue_after = if out.finalize {
        None
    } else if !out.delete.is_empty() {
        Some(Duration::ZERO)
    } else {
        Some(WAIT)
    };
    out
}

/// The deletion conditions after a reconcile that planned `plan` and failed to delete the
/// objects in `failures` (their errors as text for the message), as Kubernetes words them.
/// `None` when the namespace already shows them (no write).
pub fn conditions(
    ns: &Namespace,
    plan: &Plan,
    failures: &[String],
    now: Timestamp,
) -> Option<Vec<NamespaceCondition>> {
    let list = |m: &BTreeMap<String, usize>, what: &str| {
        m.iter()
            .map(|(k, n)| format!("{k} {what} {n} resource instances"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let wanted: Vec<(&str, bool, &str, String)> = vec![
        (
            "NamespaceDeletionDiscoveryFailure",
            false,
            "ResourcesDiscovered",
            "All resources successfully discovered".into(),
        ),
        (
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into(),
        ),
        if failures.is_empty() {
            (
                "NamespaceDeletionContentFailure",
                false,
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization".into(),
            )
        } else {
            (
                "NamespaceDeletionContentFailure",
                true,
                "ContentDeletionFailed",
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    failures.len(),
                    failures.join(", ")
                ),
            )
        },
        if plan.remaining.is_empty() {
            (
                "NamespaceContentRemaining",
                false,
                "ContentRemoved",
                "All content successfully removed".into(),
            )
        } else {
            (
                "NamespaceContentRemaining",
                true,
                "SomeResourcesRemain",
                format!(
                    "Some resources are remaining: {}",
                    list(&plan.remaining, "has")
                ),
            )
        },
        if plan.finalizers_remaining.is_empty() {
            (
                "NamespaceFinalizersRemaining",
                false,
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished".into(),
            )
        } else {
            (
                "NamespaceFinalizersRemaining",
                true,
                "SomeFinalizersRemain",
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    list(&plan.finalizers_remaining, "in")
                ),
            )
        },
    ];
    let existing = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    let mut out: Vec<NamespaceCondition> = existing
        .iter()
        .filter(|c| !wanted.iter().any(|w| w.0 == c.type_))
        .cloned()
        .collect();
    for (type_, status, reason, message) in wanted {
        let status = if status { "True" } else { "False" };
        let old = existing.iter().find(|c| c.type_ == type_);
        let same = old.is_some_and(|o| {
            o.status == status
                && o.reason.as_deref() == Some(reason)
                && o.message.as_deref() == Some(message.as_str())
        });
        changed |= !same;
        let since = old
            .filter(|o| o.status == status)
            .and_then(|o| o.last_transition_time.clone())
            .unwrap_or(Time(now));
        out.push(NamespaceCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: Some(since),
        });
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::t;
    use corral_api::kinds;
    use k8s_openapi::api::core::v1::{NamespaceSpec, NamespaceStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ns(terminating: bool, finalizers: &[&str]) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some("big".into()),
                deletion_timestamp: terminating.then(|| Time(t(0))),
                ..Default::default()
            },
            spec: Some(NamespaceSpec {
                finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
            }),
            status: Some(NamespaceStatus {
                phase: Some(if terminating { "Terminating" } else { "Active" }.into()),
                conditions: None,
            }),
        }
    }

    fn obj(kind: &'static ResourceInfo, name: &str) -> Content {
        Content {
            kind,
            name: name.into(),
            uid: format!("uid-{name}"),
            deleting: false,
            finalizers: Vec::new(),
        }
    }

    fn deleting(mut c: Content, finalizers: &[&str]) -> Content {
        c.deleting = true;
        c.finalizers = finalizers.iter().map(|f| f.to_string()).collect();
        c
    }

    #[test]
    fn a_terminating_namespace_is_emptied_in_batches_and_finalized_only_when_empty() {
        struct Case {
            name: &'static str,
            ns: Namespace,
            content: Vec<Content>,
            unlisted: Vec<&'static ResourceInfo>,
            batch: usize,
            want_deleted: Vec<&'static str>,
            want_finalize: bool,
            want_remaining: Vec<(&'static str, usize)>,
            want_requeue: Option<Duration>,
        }
        let cm = |n| obj(&kinds::CONFIGMAPS, n);
        let pod = |n| obj(&kinds::PODS, n);
        let cases = vec![
            Case {
                name: "an active namespace: nothing",
                ns: ns(false, &[FINALIZER]),
                content: vec![cm("a")],
                unlisted: vec![],
                batch: 10,
                want_deleted: vec![],
                want_finalize: false,
                want_remaining: vec![],
                want_requeue: None,
            },
            Case {
                name: "already finalized by us: nothing (other finalizers are not ours)",
                ns: ns(true, &["example.com/other"]),
                content: vec![],
                unlisted: vec![],
                batch: 10,
                want_deleted: vec![],
                want_finalize: false,
                want_remaining: vec![],
                want_requeue: None,
            },
            Case {
                name: "more than a batch: the first batch, then again at once",
                ns: ns(true, &[FINALIZER]),
                content: vec![cm("a"), cm("b"), cm("c")],
                unlisted: vec![],
                batch: 2,
                want_deleted: vec!["a", "b"],
                want_finalize: false,
                want_remaining: vec![("configmaps.", 3)],
                want_requeue: Some(Duration::ZERO),
            },
            Case {
                name: "pods stopping on their nodes are waited for, not deleted again",
                ns: ns(true, &[FINALIZER]),
                content: vec![deleting(pod("p"), &[]), cm("a")],
                unlisted: vec![],
                batch: 10,
                want_deleted: vec!["a"],
                want_finalize: false,
                want_remaining: vec![("configmaps.", 1), ("pods.", 1)],
                want_requeue: Some(Duration::ZERO),
            },
            Case {
                name: "only pods stopping: look again a little later",
                ns: ns(true, &[FINALIZER]),
                content: vec![deleting(pod("p"), &[])],
                unlisted: vec![],
                batch: 10,
                want_deleted: vec![],
                want_finalize: false,
                want_remaining: vec![("pods.", 1)],
                want_requeue: Some(WAIT),
            },
            Case {
                name: "a kind that could not be listed keeps the finalizer",
                ns: ns(true, &[FINALIZER]),
                content: vec![],
                unlisted: vec![&kinds::SECRETS],
                batch: 10,
                want_deleted: vec![],
                want_finalize: false,
                want_remaining: vec![("secrets.", 0)],
                want_requeue: Some(WAIT),
            },
            Case {
                name: "empty: the finalizer goes",
                ns: ns(true, &[FINALIZER, "example.com/other"]),
                content: vec![],
                unlisted: vec![],
                batch: 10,
                want_deleted: vec![],
                want_finalize: true,
                want_remaining: vec![],
                want_requeue: None,
            },
        ];
        for c in cases {
            let got = plan(&Input {
                namespace: &c.ns,
                content: &c.content,
                unlisted: &c.unlisted,
                batch: c.batch,
            });
            let deleted: Vec<&str> = got.delete.iter().map(|d| d.name.as_str()).collect();
            assert_eq!(deleted, c.want_deleted, "{}", c.name);
            assert_eq!(got.finalize, c.want_finalize, "{}", c.name);
            let remaining: Vec<(&str, usize)> = got
                .remaining
                .iter()
                .map(|(k, n)| (k.as_str(), *n))
                .collect();
            assert_eq!(remaining, c.want_remaining, "{}", c.name);
            assert_eq!(got.requeue_after, c.want_requeue, "{}", c.name);
        }
    }

    #[test]
    fn conditions_say_what_remains_as_kubernetes_does_and_are_written_only_on_change() {
        let mut namespace = ns(true, &[FINALIZER]);
        let content = vec![
            obj(&kinds::CONFIGMAPS, "a"),
            deleting(obj(&kinds::PODS, "p"), &["example.com/hold"]),
        ];
        let p = plan(&Input {
            namespace: &namespace,
            content: &content,
            unlisted: &[],
            batch: 10,
        });
        let failures = vec!["configmaps \"a\": storage: disk full".to_string()];
        let conds = conditions(&namespace, &p, &failures, t(5)).expect("first write");
        let by_type = |ty: &str| {
            let c = conds.iter().find(|c| c.type_ == ty).expect(ty);
            (
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        };
        assert_eq!(
            by_type("NamespaceContentRemaining"),
            (
                "True".into(),
                "SomeResourcesRemain".into(),
                "Some resources are remaining: configmaps. has 1 resource instances, pods. has 1 resource instances".into()
            )
        );
        assert_eq!(
            by_type("NamespaceFinalizersRemaining"),
            (
                "True".into(),
                "SomeFinalizersRemain".into(),
                "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances".into()
            )
        );
        assert_eq!(
            by_type("NamespaceDeletionContentFailure"),
            (
                "True".into(),
                "ContentDeletionFailed".into(),
                "Failed to delete all resource types, 1 remaining: configmaps \"a\": storage: disk full".into()
            )
        );
        assert_eq!(by_type("NamespaceDeletionDiscoveryFailure").0, "False");

        namespace.status.as_mut().unwrap().conditions = Some(conds.clone());
        assert_eq!(conditions(&namespace, &p, &failures, t(9)), None);
        let later = conditions(&namespace, &p, &[], t(9)).expect("failure cleared");
        let failure = later
            .iter()
            .find(|c| c.type_ == "NamespaceDeletionContentFailure")
            .unwrap();
        assert_eq!(
            (
                failure.status.as_str(),
                failure.last_transition_time.clone()
            ),
            ("False", Some(Time(t(9))))
        );
        let remaining = later
            .iter()
            .find(|c| c.type_ == "NamespaceContentRemaining")
            .unwrap();
        assert_eq!(remaining.last_transition_time, Some(Time(t(5))));
    }
}
