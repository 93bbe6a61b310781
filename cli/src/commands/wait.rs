//! `corral wait --for=delete|condition=NAME[=VALUE]|jsonpath={PATH}=VALUE KIND/NAME`.

use std::pin::pin;

use corral_api::kinds::ResourceInfo;
use corral_api::{object, ListParams};
use futures::StreamExt;
use serde_json::Value;

use super::{errln, outln, parse_targets, Ctx, Targets};
use crate::args::WaitArgs;
use crate::error::{local, CliError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Delete,
    /// `status.conditions[type=NAME].status == VALUE` (VALUE defaults to True).
    Status {
        name: String,
        value: String,
    },
    /// A JSONPath template rendered against the object equals VALUE.
    JsonPath {
        template: String,
        value: String,
    },
}

pub fn parse_condition(s: &str) -> Result<Condition> {
    if s == "delete" {
        return Ok(Condition::Delete);
    }
    if let Some(rest) = s.strip_prefix("condition=") {
        let (name, value) = rest.split_once('=').unwrap_or((rest, "True"));
        if name.is_empty() {
            return Err(local("--for=condition=NAME needs a condition name"));
        }
        return Ok(Condition::Status {
            name: name.to_string(),
            value: value.to_string(),
        });
    }
    if let Some(rest) = s.strip_prefix("jsonpath=") {
        // `{.status.phase}=Running`: the template ends at the last `}`.
        if let Some(end) = rest.rfind('}') {
            let (template, tail) = rest.split_at(end + 1);
            if let Some(value) = tail.strip_prefix('=') {
                return Ok(Condition::JsonPath {
                    template: template.to_string(),
                    value: value.to_string(),
                });
            }
        }
        return Err(local(
            "--for=jsonpath must look like jsonpath={.status.phase}=Running",
        ));
    }
    Err(local(format!(
        "unrecognized condition: {s:?} (use delete, condition=NAME[=VALUE] or jsonpath={{PATH}}=VALUE)"
    )))
}

/// Whether the object (None: it does not exist) meets the condition.
pub fn met(cond: &Condition, obj: Option<&Value>) -> bool {
    match (cond, obj) {
        (Condition::Delete, None) => true,
        (Condition::Delete, Some(_)) | (_, None) => false,
        (Condition::Status { name, value }, Some(o)) => o
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| {
                c.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case(name))
                    && c.get("status")
                        .and_then(Value::as_str)
                        .is_some_and(|s| s.eq_ignore_ascii_case(value))
            }),
        (Condition::JsonPath { template, value }, Some(o)) => {
            crate::jsonpath::render(template, o).is_ok_and(|got| got == *value)
        }
    }
}

async fn wait_one(
    ctx: &Ctx,
    info: &ResourceInfo,
    name: &str,
    cond: &Condition,
    deadline: tokio::time::Instant,
) -> Result<bool> {
    let ns = ctx.ns_for(info);
    let params = ListParams::fields(format!("metadata.name={name}"));
    loop {
        // Subscribe first, then read: a change between the two still wakes us.
        let stream = ctx
            .client
            .watch_value(info, &ns, &params, 0)
            .await
            .map_err(|e| ctx.err(&e))?;
        let mut stream = pin!(stream);
        let current = match ctx.client.get_value(info, &ns, name).await {
            Ok(v) => Some(v),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(ctx.err(&e)),
        };
        if current.is_none() && *cond != Condition::Delete {
            return Err(ctx.about(
                info,
                name,
                &corral_api::client::Error::Api {
                    code: tonic::Code::NotFound,
                    message: String::new(),
                    status: None,
                },
            ));
        }
        if met(cond, current.as_ref()) {
            return Ok(true);
        }
        loop {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Err(_) => return Ok(false),
                Ok(None) | Ok(Some(Err(_))) => break,
                Ok(Some(Ok(corral_api::WatchEvent::Deleted(_)))) => {
                    if *cond == Condition::Delete {
                        return Ok(true);
                    }
                    // Gone (or no longer selected): re-read to report it properly.
                    break;
                }
                Ok(Some(Ok(corral_api::WatchEvent::Added(o))))
                | Ok(Some(Ok(corral_api::WatchEvent::Modified(o)))) => {
                    if met(cond, Some(&o)) {
                        return Ok(true);
                    }
                }
                Ok(Some(Ok(corral_api::WatchEvent::Bookmark(_)))) => {}
            }
        }
    }
}

pub async fn run(ctx: &Ctx, a: &WaitArgs) -> Result<()> {
    let cond = parse_condition(&a.condition)?;
    let mut targets: Vec<(&'static ResourceInfo, String)> = Vec::new();
    match parse_targets(&a.resources)? {
        Targets::Named(list) => targets = list,
        Targets::Kinds { kinds, names } if !names.is_empty() => {
            for info in kinds {
                targets.extend(names.iter().map(|n| (info, n.clone())));
            }
        }
        Targets::Kinds { kinds, .. } => {
            if !a.all && a.selector.is_none() {
                return Err(local(
                    "resource(s) were provided, but no name was specified",
                ));
            }
            for info in kinds {
                let (items, _) = ctx
                    .client
                    .list_value(
                        info,
                        &ctx.ns_for(info),
                        &ListParams::labels(a.selector.clone().unwrap_or_default()),
                    )
                    .await
                    .map_err(|e| ctx.err(&e))?;
                targets.extend(items.iter().map(|o| (info, object::name(o).to_string())));
            }
            if targets.is_empty() {
                return Err(local("no matching resources found"));
            }
        }
    }
    let deadline = tokio::time::Instant::now() + a.timeout;
    let mut failed = false;
    for (info, name) in targets {
        if wait_one(ctx, info, &name, &cond, deadline).await? {
            let what = if cond == Condition::Delete {
                "deleted"
            } else {
                "condition met"
            };
            outln(&format!("{}/{name} {what}", info.qualified()))?;
        } else {
            errln(&format!(
                "error: timed out waiting for the condition on {}/{name}",
                crate::error::resource_name(info)
            ));
            failed = true;
        }
    }
    if failed {
        Err(CliError::Reported)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_parse_like_kubectl_wait() {
        assert_eq!(parse_condition("delete").unwrap(), Condition::Delete);
        assert_eq!(
            parse_condition("condition=Ready").unwrap(),
            Condition::Status {
                name: "Ready".into(),
                value: "True".into()
            }
        );
        assert_eq!(
            parse_condition("jsonpath={.status.phase}=Running").unwrap(),
            Condition::JsonPath {
                template: "{.status.phase}".into(),
                value: "Running".into()
            }
        );
        assert!(parse_condition("ready").is_err());
        assert!(parse_condition("jsonpath={.status.phase}").is_err());
    }

    #[test]
    fn conditions_are_checked_against_the_object() {
        let pod = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        let ready = parse_condition("condition=ready").unwrap();
        assert!(met(&ready, Some(&pod)));
        assert!(!met(&ready, None));
        assert!(!met(
            &parse_condition("condition=Ready=False").unwrap(),
            Some(&pod)
        ));
        assert!(met(
            &parse_condition("jsonpath={.status.phase}=Running").unwrap(),
            Some(&pod)
        ));
        assert!(met(&Condition::Delete, None));
        assert!(!met(&Condition::Delete, Some(&pod)));
    }
}
