//! The garbage collector's planner over the owner graph (every watched object's uid and
//! ownerReferences): Background, Foreground and Orphan deletion as Kubernetes does them.

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

/// One object of the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphNode {
    /// Kind (`Pod`, `ReplicaSet`...), as in ownerReferences.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub owners: Vec<OwnerReference>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Delete a dependent whose owner is being deleted in the foreground.
    Delete(GraphNode, Propagation),
    /// None of these owners is in the cache: check them against the API, delete the object if
    /// all are really gone (`all`), else drop the dangling references.
    VerifyOwners {
        node: GraphNode,
        absent: Vec<OwnerReference>,
        all: bool,
    },
    /// Drop the references to `uid` (orphan deletion of the owner).
    RemoveOwnerRef(GraphNode, String),
    RemoveFinalizer(GraphNode, &'static str),
}

pub fn plan(nodes: &[GraphNode]) -> Vec<Action> {
    let by_uid: HashMap<&str, &GraphNode> = nodes.iter().map(|n| (n.uid.as_str(), n)).collect();
    let mut dependents: HashMap<&str, Vec<&GraphNode>> = HashMap::new();
    for n in nodes {
        for o in &n.owners {
            dependents.entry(o.uid.as_str()).or_default().push(n);
        }
    }
    let mut actions = Vec::new();
    let mut handled: HashSet<&str> = HashSet::new();
    for owner in nodes.iter().filter(|n| n.deleting) {
        let deps = dependents
            .get(owner.uid.as_str())
            .cloned()
            .unwrap_or_default();
        if owner.finalizers.iter().any(|f| f == ORPHAN) {
            for d in &deps {
                actions.push(Action::RemoveOwnerRef((*d).clone(), owner.uid.clone()));
                handled.insert(d.uid.as_str());
            }
            if deps.is_empty() {
                actions.push(Action::RemoveFinalizer(owner.clone(), ORPHAN));
            }
        } else if owner.finalizers.iter().any(|f| f == FOREGROUND) {
            for d in &deps {
                handled.insert(d.uid.as_str());
                if !d.deleting {
                    let has_deps = dependents.contains_key(d.uid.as_str());
                    let how = if has_deps {
                        Propagation::Foreground
                    } else {
                        Propagation::Background
                    };
                    actions.push(Action::Delete((*d).clone(), how));
                }
            }
            let blocking = deps.iter().any(|d| {
                d.owners
                    .iter()
                    .any(|o| o.uid == owner.uid && o.block_owner_deletion == Some(true))
            });
            if !blocking {
                actions.push(Action::RemoveFinalizer(owner.clone(), FOREGROUND));
            }
        }
    }
    for n in nodes {
        if n.owners.is_empty() || n.deleting || handled.contains(n.uid.as_str()) {
            continue;
        }
        let absent: Vec<OwnerReference> = n
            .owners
            .iter()
            .filter(|o| !by_uid.contains_key(o.uid.as_str()))
            .cloned()
            .collect();
        if !absent.is_empty() {
            let all = absent.len() == n.owners.len();
            actions.push(Action::VerifyOwners {
                node: n.clone(),
                absent,
                all,
            });
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: &str, name: &str, owners: &[(&str, bool)]) -> GraphNode {
        GraphNode {
            kind: kind.into(),
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            owners: owners
                .iter()
                .map(|(o, block)| OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: o.to_string(),
                    uid: format!("uid-{o}"),
                    controller: Some(true),
                    block_owner_deletion: Some(*block),
                })
                .collect(),
            deleting: false,
            finalizers: vec![],
        }
    }

    fn deleting(mut n: GraphNode, finalizer: Option<&str>) -> GraphNode {
        n.deleting = true;
        n.finalizers = finalizer.into_iter().map(str::to_string).collect();
        n
    }

    /// ("delete"|"verify"|"unref"|"unfinalize", name, detail)
    fn summary(actions: &[Action]) -> Vec<(String, String, String)> {
        let mut v: Vec<_> = actions
            .iter()
            .map(|a| match a {
                Action::Delete(n, p) => ("delete".into(), n.name.clone(), format!("{p:?}")),
                Action::VerifyOwners { node, all, .. } => {
                    ("verify".into(), node.name.clone(), all.to_string())
                }
                Action::RemoveOwnerRef(n, uid) => ("unref".into(), n.name.clone(), uid.clone()),
                Action::RemoveFinalizer(n, f) => {
                    ("unfinalize".into(), n.name.clone(), f.to_string())
                }
            })
            .collect();
        v.sort();
        v
    }

    fn s(items: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
        let mut v: Vec<_> = items
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn garbage_collection_plans_match_kubernetes() {
        let rs = node("ReplicaSet", "rs", &[]);
        let pod = node("Pod", "p1", &[("rs", true)]);
        type Case = (&'static str, Vec<GraphNode>, Vec<(String, String, String)>);
        let cases: Vec<Case> = vec![
            (
                "live owner: nothing to do",
                vec![rs.clone(), pod.clone()],
                vec![],
            ),
            (
                "background: owner gone, dependent verified then deleted",
                vec![pod.clone()],
                s(&[("verify", "p1", "true")]),
            ),
            (
                "one of two owners gone: only the dangling reference goes",
                vec![
                    rs.clone(),
                    node("Pod", "p2", &[("rs", true), ("old", false)]),
                ],
                s(&[("verify", "p2", "false")]),
            ),
            (
                "foreground: dependents deleted, finalizer kept while they block",
                vec![deleting(rs.clone(), Some(FOREGROUND)), pod.clone()],
                s(&[("delete", "p1", "Background")]),
            ),
            (
                "foreground: a terminating blocking dependent still blocks",
                vec![
                    deleting(rs.clone(), Some(FOREGROUND)),
                    deleting(pod.clone(), None),
                ],
                vec![],
            ),
            (
                "foreground: non-blocking dependents do not hold the owner",
                vec![
                    deleting(rs.clone(), Some(FOREGROUND)),
                    node("Pod", "p3", &[("rs", false)]),
                ],
                s(&[
                    ("delete", "p3", "Background"),
                    ("unfinalize", "rs", FOREGROUND),
                ]),
            ),
            (
                "foreground: no dependents left, finalizer removed",
                vec![deleting(rs.clone(), Some(FOREGROUND))],
                s(&[("unfinalize", "rs", FOREGROUND)]),
            ),
            (
                "foreground cascades through dependents that have dependents",
                vec![
                    deleting(node("Deployment", "d", &[]), Some(FOREGROUND)),
                    node("ReplicaSet", "rs2", &[("d", true)]),
                    node("Pod", "p4", &[("rs2", true)]),
                ],
                s(&[("delete", "rs2", "Foreground")]),
            ),
            (
                "orphan: references stripped, then the finalizer",
                vec![deleting(rs.clone(), Some(ORPHAN)), pod.clone()],
                s(&[("unref", "p1", "uid-rs")]),
            ),
            (
                "orphan: done",
                vec![deleting(rs.clone(), Some(ORPHAN))],
                s(&[("unfinalize", "rs", ORPHAN)]),
            ),
            (
                "owner marked without propagation finalizers: wait for it to go",
                vec![deleting(rs.clone(), Some("example.com/other")), pod.clone()],
                vec![],
            ),
        ];
        for (name, nodes, want) in cases {
            assert_eq!(summary(&plan(&nodes)), want, "{name}");
        }
    }
}
