//! kubectl's columns for RBAC: roles by creation time, bindings by the role they grant and,
//! wide, to whom (users, groups, service accounts as `namespace/name`).

use crate::k8s::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, Role, RoleBinding, RoleRef, Subject,
};
use crate::k8s::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::format::age;
use super::PrintOptions;

pub const ROLE_HEADERS: &[&str] = &["NAME", "CREATED AT"];
pub const BINDING_HEADERS: &[&str] = &["NAME", "ROLE", "AGE"];
pub const BINDING_WIDE: &[&str] = &["USERS", "GROUPS", "SERVICEACCOUNTS"];

fn created_at(t: Option<&Time>) -> String {
    t.map(|t| t.0.to_string()).unwrap_or_default()
}

pub fn role_row(r: &Role, _: &PrintOptions) -> Vec<String> {
    meta_row(&r.metadata)
}

pub fn cluster_role_row(r: &ClusterRole, _: &PrintOptions) -> Vec<String> {
    meta_row(&r.metadata)
}

pub fn role_binding_row(b: &RoleBinding, opts: &PrintOptions) -> Vec<String> {
    binding_row(&b.metadata, &b.role_ref, b.subjects.as_ref(), opts)
}

pub fn cluster_role_binding_row(b: &ClusterRoleBinding, opts: &PrintOptions) -> Vec<String> {
    binding_row(&b.metadata, &b.role_ref, b.subjects.as_ref(), opts)
}

fn meta_row(meta: &ObjectMeta) -> Vec<String> {
    vec![
        meta.name.clone().unwrap_or_default(),
        created_at(meta.creation_timestamp.as_ref()),
    ]
}

/// Subjects of `kind`, comma-separated; service accounts as `namespace/name`.
fn subjects(all: &[Subject], kind: &str) -> String {
    all.iter()
        .filter(|s| s.kind == kind)
        .map(|s| match (kind, s.namespace.as_deref()) {
            ("ServiceAccount", Some(ns)) => format!("{ns}/{}", s.name),
            _ => s.name.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn binding_row(
    meta: &ObjectMeta,
    role: &RoleRef,
    subs: Option<&Vec<Subject>>,
    opts: &PrintOptions,
) -> Vec<String> {
    let mut cells = vec![
        meta.name.clone().unwrap_or_default(),
        format!("{}/{}", role.kind, role.name),
        age(opts.now, meta.creation_timestamp.as_ref()),
    ];
    if opts.wide {
        let subs = subs.map(Vec::as_slice).unwrap_or_default();
        for kind in ["User", "Group", "ServiceAccount"] {
            cells.push(subjects(subs, kind));
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(kind: &str, name: &str, ns: Option<&str>) -> Subject {
        Subject {
            kind: kind.into(),
            name: name.into(),
            namespace: ns.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn subjects_are_listed_by_kind_with_service_accounts_namespaced() {
        let all = [
            subject("User", "alice", None),
            subject("Group", "dev", None),
            subject("User", "bob", None),
            subject("ServiceAccount", "builder", Some("ci")),
        ];
        let cases = [
            ("User", "alice, bob"),
            ("Group", "dev"),
            ("ServiceAccount", "ci/builder"),
        ];
        for (kind, want) in cases {
            assert_eq!(subjects(&all, kind), want, "{kind}");
        }
    }
}
