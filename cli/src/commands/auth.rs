//! `corral auth can-i VERB RESOURCE [NAME]`: asks the server through a SelfSubjectAccessReview
//! (a SubjectAccessReview with `--as`), prints `yes` or `no` and exits 0 or 1, as kubectl.

use corral_api::kinds;
use serde_json::{json, Value};

use super::{outln, Ctx};
use crate::args::CanIArgs;
use crate::error::{CliError, Result};

/// The review's `resourceAttributes`: the resource as the server names it (`pod` → `pods`,
/// `deployments.apps`, `pods/log`), in the namespace the resource lives in.
pub fn resource_attributes(ctx_namespace: &str, a: &CanIArgs) -> Value {
    let (typed, subresource) = match a.resource.split_once('/') {
        Some((r, s)) => (r, s),
        None => (a.resource.as_str(), ""),
    };
    let (resource, group, namespaced) = match kinds::lookup(typed) {
        Some(info) => (
            info.plural.to_string(),
            info.group.to_string(),
            info.namespaced,
        ),
        None => match typed.split_once('.') {
            Some((r, g)) => (r.to_string(), g.to_string(), true),
            None => (typed.to_string(), String::new(), true),
        },
    };
    let namespace = if a.all_namespaces || !namespaced {
        ""
    } else {
        ctx_namespace
    };
    json!({
        "verb": a.verb,
        "resource": resource,
        "group": group,
        "subresource": subresource,
        "namespace": namespace,
        "name": a.name.clone().unwrap_or_default(),
    })
}

pub async fn can_i(ctx: &Ctx, a: &CanIArgs) -> Result<()> {
    let attributes = resource_attributes(&ctx.namespace, a);
    let (info, review) = match &a.as_user {
        None if a.as_groups.is_empty() => (
            &kinds::SELFSUBJECTACCESSREVIEWS,
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                   "spec": {"resourceAttributes": attributes}}),
        ),
        user => (
            &kinds::SUBJECTACCESSREVIEWS,
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                   "spec": {"user": user.clone().unwrap_or_default(), "groups": a.as_groups,
                            "resourceAttributes": attributes}}),
        ),
    };
    let answer = ctx
        .client
        .create_value(info, "", &review, false)
        .await
        .map_err(|e| ctx.err(&e))?;
    let allowed = answer
        .pointer("/status/allowed")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let reason = answer
        .pointer("/status/reason")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !a.quiet {
        match (allowed, reason) {
            (true, _) => outln("yes")?,
            (false, "") => outln("no")?,
            (false, why) => outln(&format!("no - {why}"))?,
        }
    }
    if allowed {
        Ok(())
    } else {
        Err(CliError::Reported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(verb: &str, resource: &str, name: Option<&str>, all: bool) -> CanIArgs {
        CanIArgs {
            verb: verb.into(),
            resource: resource.into(),
            name: name.map(Into::into),
            all_namespaces: all,
            quiet: false,
            as_user: None,
            as_groups: vec![],
        }
    }

    #[test]
    fn can_i_names_the_resource_as_the_server_does() {
        let cases = [
            (
                args("get", "pod", Some("web"), false),
                json!(["get", "pods", "", "", "team", "web"]),
            ),
            (
                args("list", "deploy", None, true),
                json!(["list", "deployments", "apps", "", "", ""]),
            ),
            (
                args("get", "pods/log", None, false),
                json!(["get", "pods", "", "log", "team", ""]),
            ),
            (
                args("delete", "nodes", Some("n1"), false),
                json!(["delete", "nodes", "", "", "", "n1"]),
            ),
            (
                args("get", "widgets.example.com", None, false),
                json!(["get", "widgets", "example.com", "", "team", ""]),
            ),
        ];
        for (a, want) in cases {
            let v = resource_attributes("team", &a);
            let got: Vec<&Value> = [
                "verb",
                "resource",
                "group",
                "subresource",
                "namespace",
                "name",
            ]
            .iter()
            .map(|k| &v[*k])
            .collect();
            assert_eq!(json!(got), want, "{} {}", a.verb, a.resource);
        }
    }
}
