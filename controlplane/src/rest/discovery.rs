//! Discovery documents built from the one kind table (`corral_api::kinds`): `/version`,
//! `/api` (APIVersions), `/apis` (APIGroupList), `/apis/<group>` (APIGroup) and each
//! group-version's APIResourceList with verbs, short names, categories and subresources.
//! Legacy (unaggregated) discovery: client-go falls back to it by the response's content type.

use corral_api::kinds::{self, ResourceInfo};
use serde_json::{json, Value};

/// The Kubernetes minor version whose API Corral serves (k8s-openapi's feature).
pub const KUBE_MINOR: &str = "33";

/// `/version`: kubectl compares the minor with its own (one minor apart is supported).
pub fn version(corral_version: &str, git_commit: &str) -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0+corral.{corral_version}"),
        "gitCommit": git_commit,
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `/api`.
pub fn legacy_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [],
    })
}

/// The named groups, in the kind table's order.
fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for k in kinds::ALL {
        if !k.group.is_empty() && !out.contains(&k.group) {
            out.push(k.group);
        }
    }
    out
}

fn group_doc(group: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": [gv.clone()],
        "preferredVersion": gv,
    })
}

/// `/apis`.
pub fn group_list() -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .map(|g| {
            let mut doc = group_doc(g);
            let o = doc.as_object_mut().expect("an object");
            o.remove("kind");
            o.remove("apiVersion");
            doc
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`, if Corral serves the group.
pub fn group(group: &str) -> Option<Value> {
    groups().contains(&group).then(|| group_doc(group))
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const READ_WRITE: &[&str] = &["get", "patch", "update"];

fn entry(info: &ResourceInfo) -> Value {
    let verbs: &[&str] = if info.is_virtual() {
        &["create"]
    } else {
        ALL_VERBS
    };
    let mut e = json!({
        "name": info.plural,
        "singularName": info.singular,
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": verbs,
    });
    if !info.short_names.is_empty() {
        e["shortNames"] = json!(info.short_names);
    }
    if !info.categories().is_empty() {
        e["categories"] = json!(info.categories());
    }
    e
}

/// A subresource's entry: its verbs, and its kind where it is not the parent's.
fn sub(info: &ResourceInfo, name: &str, verbs: &[&str], kind: Option<(&str, &str, &str)>) -> Value {
    let mut e = json!({
        "name": format!("{}/{name}", info.plural),
        "singularName": "",
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": verbs,
    });
    if let Some((group, version, kind)) = kind {
        e["group"] = json!(group);
        e["version"] = json!(version);
        e["kind"] = json!(kind);
    }
    e
}

/// `/api/v1`, `/apis/<group>/<version>`: `None` for a group-version Corral does not serve.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for info in kinds::ALL
        .iter()
        .filter(|k| k.group == group && k.version == version)
    {
        resources.push(entry(info));
        if info.plural == kinds::PODS.plural {
            resources.push(sub(
                info,
                "binding",
                &["create"],
                Some(("", "v1", "Binding")),
            ));
            resources.push(sub(
                info,
                "eviction",
                &["create"],
                Some(("policy", "v1", "Eviction")),
            ));
            resources.push(sub(info, "log", &["get"], None));
        }
        if info.plural == kinds::NAMESPACES.plural {
            resources.push(sub(info, "finalize", &["update"], None));
        }
        if info.has_scale {
            resources.push(sub(
                info,
                "scale",
                READ_WRITE,
                Some(("autoscaling", "v1", "Scale")),
            ));
        }
        if info.has_status {
            resources.push(sub(info, "status", READ_WRITE, None));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(list: &'a Value, name: &str) -> &'a Value {
        list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} is listed"))
    }

    #[test]
    fn core_resources_carry_what_kubectl_reads() {
        let core = resource_list("", "v1").unwrap();
        assert_eq!(core["groupVersion"], "v1");
        let pods = find(&core, "pods");
        assert_eq!(pods["kind"], "Pod");
        assert_eq!(pods["singularName"], "pod");
        assert_eq!(pods["namespaced"], true);
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert_eq!(pods["verbs"].as_array().unwrap().len(), 8);
        let cases = [
            ("pods/log", "Pod", json!(["get"])),
            ("pods/status", "Pod", json!(["get", "patch", "update"])),
            ("pods/binding", "Binding", json!(["create"])),
            ("pods/eviction", "Eviction", json!(["create"])),
            ("namespaces/finalize", "Namespace", json!(["update"])),
        ];
        for (name, kind, verbs) in cases {
            let e = find(&core, name);
            assert_eq!((&e["kind"], &e["verbs"]), (&json!(kind), &verbs), "{name}");
        }
        assert_eq!(find(&core, "pods/eviction")["group"], "policy");
        let nodes = find(&core, "nodes");
        assert_eq!(nodes["namespaced"], false);
        assert!(nodes.get("categories").is_none());
        assert!(find(&core, "secrets").get("shortNames").is_none());
    }

    #[test]
    fn scale_subresources_are_autoscaling_v1_scale() {
        let apps = resource_list("apps", "v1").unwrap();
        for name in [
            "deployments/scale",
            "replicasets/scale",
            "statefulsets/scale",
        ] {
            let e = find(&apps, name);
            assert_eq!(
                (&e["group"], &e["kind"]),
                (&json!("autoscaling"), &json!("Scale"))
            );
        }
        assert_eq!(find(&apps, "deployments")["shortNames"], json!(["deploy"]));
    }

    #[test]
    fn groups_are_served_once_each_with_their_preferred_version() {
        let list = group_list();
        let names: Vec<&str> = list["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        for g in [
            "apps",
            "networking.k8s.io",
            "rbac.authorization.k8s.io",
            "coordination.k8s.io",
            "authorization.k8s.io",
        ] {
            assert_eq!(names.iter().filter(|n| **n == g).count(), 1, "{g}");
        }
        assert_eq!(
            group("apps").unwrap()["preferredVersion"]["groupVersion"],
            "apps/v1"
        );
        assert!(group("batch").is_none());
        assert!(resource_list("batch", "v1").is_none());
        let reviews = resource_list("authorization.k8s.io", "v1").unwrap();
        assert_eq!(
            find(&reviews, "selfsubjectaccessreviews")["verbs"],
            json!(["create"])
        );
    }

    #[test]
    fn version_names_the_kubernetes_minor_served() {
        let v = version("0.1.0", "abc");
        assert_eq!(
            (v["major"].as_str(), v["minor"].as_str()),
            (Some("1"), Some(KUBE_MINOR))
        );
        assert!(v["gitVersion"].as_str().unwrap().starts_with("v1.33.0"));
    }
}
