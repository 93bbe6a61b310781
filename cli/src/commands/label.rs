//! `corral label KIND NAME key=value key-`.

use std::collections::BTreeMap;

use corral_api::{object, ListParams};
use serde_json::Value;

use super::{outln, parse_targets, report, Ctx, Targets};
use crate::args::LabelArgs;
use crate::error::{local, CliError, Result};

/// `key=value` sets, `key-` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Set(String, String),
    Remove(String),
}

/// Splits the arguments into resources and label changes.
pub fn split_args(args: &[String]) -> Result<(Vec<String>, Vec<Change>)> {
    let mut resources = Vec::new();
    let mut changes = Vec::new();
    for a in args {
        if let Some((k, v)) = a.split_once('=') {
            if k.is_empty() {
                return Err(local(format!("invalid label spec: {a}")));
            }
            changes.push(Change::Set(k.to_string(), v.to_string()));
        } else if let Some(k) = a.strip_suffix('-').filter(|_| !resources.is_empty()) {
            changes.push(Change::Remove(k.to_string()));
        } else if changes.is_empty() {
            resources.push(a.clone());
        } else {
            return Err(local(format!("invalid label spec: {a}")));
        }
    }
    if changes.is_empty() {
        return Err(local("at least one label update is required"));
    }
    Ok((resources, changes))
}

/// Applies the changes; `Ok(false)` when nothing changed.
pub fn apply_changes(
    labels: &mut BTreeMap<String, String>,
    changes: &[Change],
    overwrite: bool,
) -> Result<bool> {
    let before = labels.clone();
    for c in changes {
        match c {
            Change::Set(k, v) => {
                if let Some(old) = labels.get(k) {
                    if old != v && !overwrite {
                        return Err(local(format!(
                            "'{k}' already has a value ({old}), and --overwrite is false"
                        )));
                    }
                }
                labels.insert(k.clone(), v.clone());
            }
            Change::Remove(k) => {
                labels.remove(k);
            }
        }
    }
    Ok(*labels != before)
}

pub async fn run(ctx: &Ctx, a: &LabelArgs) -> Result<()> {
    let (resources, changes) = split_args(&a.args)?;
    let mut objects = Vec::new();
    match parse_targets(&resources)? {
        Targets::Named(list) => objects.extend(list),
        Targets::Kinds { kinds, names } if !names.is_empty() => {
            for info in kinds {
                objects.extend(names.iter().map(|n| (info, n.clone())));
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
                objects.extend(items.iter().map(|o| (info, object::name(o).to_string())));
            }
        }
    }
    let mut failed = false;
    for (info, name) in objects {
        let ns = ctx.ns_for(info);
        let result: Result<bool> = async {
            for _ in 0..10 {
                let mut obj = ctx
                    .client
                    .get_value(info, &ns, &name)
                    .await
                    .map_err(|e| ctx.about(info, &name, &e))?;
                let mut labels: BTreeMap<String, String> = obj
                    .pointer("/metadata/labels")
                    .and_then(|l| serde_json::from_value(l.clone()).ok())
                    .unwrap_or_default();
                if !apply_changes(&mut labels, &changes, a.overwrite)? {
                    return Ok(false);
                }
                object::set_meta(
                    &mut obj,
                    "labels",
                    serde_json::to_value(&labels).unwrap_or(Value::Null),
                );
                match ctx
                    .client
                    .update_value_with_warnings(info, &ns, &obj, false)
                    .await
                {
                    Ok((_, warnings)) => {
                        super::warn(&warnings);
                        return Ok(true);
                    }
                    Err(e) if e.is_conflict() => continue,
                    Err(e) => return Err(ctx.about(info, &name, &e)),
                }
            }
            Err(local("too many conflicting updates, try again"))
        }
        .await;
        match result {
            Ok(true) => outln(&format!("{}/{name} labeled", info.qualified()))?,
            Ok(false) => outln(&format!("{}/{name} not labeled", info.qualified()))?,
            Err(e) => {
                report(e);
                failed = true;
            }
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

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn label_arguments_split_into_resources_and_changes() {
        let (r, c) = split_args(&s(&["pods", "a", "tier=web", "old-"])).unwrap();
        assert_eq!(r, s(&["pods", "a"]));
        assert_eq!(
            c,
            vec![
                Change::Set("tier".into(), "web".into()),
                Change::Remove("old".into())
            ]
        );
        assert!(split_args(&s(&["pods", "a"])).is_err());
    }

    #[test]
    fn existing_labels_need_overwrite() {
        let mut m: BTreeMap<String, String> = [("app".to_string(), "x".to_string())].into();
        let err =
            apply_changes(&mut m, &[Change::Set("app".into(), "y".into())], false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "error: 'app' already has a value (x), and --overwrite is false"
        );
        assert!(apply_changes(&mut m, &[Change::Set("app".into(), "y".into())], true).unwrap());
        assert!(!apply_changes(&mut m, &[Change::Set("app".into(), "y".into())], false).unwrap());
    }
}
