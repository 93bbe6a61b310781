//! `corral delete`: by kind and names, by file, by selector or `--all`; prints kubectl's
//! `pod "x" deleted` and by default waits until the objects are gone.

use std::time::Duration;

use corral_api::client::PropagationPolicy;
use futures::StreamExt;

use super::apply::PARALLEL;
use corral_api::kinds::ResourceInfo;
use corral_api::{object, DeleteOptions, ListParams};

use super::{
    apply::object_namespace, deadline_or, decode_source, errln, no_resources, outln, parse_targets,
    read_sources, report, wait_gone, Ctx, Targets,
};
use crate::args::DeleteArgs;
use crate::error::{local, CliError, Result};

pub fn propagation(cascade: &str) -> Result<PropagationPolicy> {
    match cascade {
        "background" | "true" => Ok(PropagationPolicy::Background),
        "foreground" => Ok(PropagationPolicy::Foreground),
        "orphan" | "false" => Ok(PropagationPolicy::Orphan),
        other => Err(local(format!(
            "invalid cascade value ({other}). Must be \"background\", \"foreground\", or \"orphan\""
        ))),
    }
}

/// `--grace-period`, `--now` and `--force` combined as kubectl does.
pub fn grace(a: &DeleteArgs) -> Option<i64> {
    if a.now {
        Some(1)
    } else if a.grace_period >= 0 {
        Some(a.grace_period)
    } else if a.force {
        Some(0)
    } else {
        None
    }
}

pub async fn run(ctx: &Ctx, a: &DeleteArgs) -> Result<()> {
    let opts = DeleteOptions {
        propagation: propagation(&a.cascade)?,
        grace_period_seconds: grace(a),
        ..Default::default()
    };
    let mut failed = false;
    // (kind, namespace, name) to delete, in order.
    let mut todo: Vec<(&'static ResourceInfo, String, String)> = Vec::new();

    if !a.files.is_empty() {
        if !a.resources.is_empty() {
            return Err(local("resource names cannot be given together with -f"));
        }
        for src in read_sources(&a.files, a.recursive)? {
            match decode_source(&src) {
                Ok(ms) => {
                    for m in ms {
                        let ns = object_namespace(ctx, m.info, &m.object)?;
                        todo.push((m.info, ns, object::name(&m.object).to_string()));
                    }
                }
                Err(errors) => {
                    for e in errors {
                        errln(&e);
                    }
                    failed = true;
                }
            }
        }
    } else {
        if a.resources.is_empty() {
            return Err(local(
                "You must provide one or more resources by argument or filename.",
            ));
        }
        match parse_targets(&a.resources)? {
            Targets::Named(list) => {
                for (info, name) in list {
                    todo.push((info, ctx.ns_for(info), name));
                }
            }
            Targets::Kinds { kinds, names } if !names.is_empty() => {
                for info in kinds {
                    for n in &names {
                        todo.push((info, ctx.ns_for(info), n.clone()));
                    }
                }
            }
            Targets::Kinds { kinds, .. } => {
                if !a.all && a.selector.is_none() {
                    return Err(local(
                        "resource(s) were provided, but no name was specified",
                    ));
                }
                for info in kinds {
                    let params = ListParams::labels(a.selector.clone().unwrap_or_default());
                    let ns = ctx.ns_for(info);
                    let (items, _) = ctx
                        .client
                        .list_value(info, &ns, &params)
                        .await
                        .map_err(|e| ctx.err(&e))?;
                    if items.is_empty() {
                        errln(&no_resources(info.namespaced, &ns));
                    }
                    for it in items {
                        todo.push((
                            info,
                            object::namespace(&it).to_string(),
                            object::name(&it).to_string(),
                        ));
                    }
                }
            }
        }
    }

    let mut waiting = Vec::new();
    let mut longest_grace: u64 = 0;
    // Sent concurrently (a store commit can acknowledge many), reported in order.
    let mut results = futures::stream::iter(todo.into_iter().map(|(info, ns, name)| {
        let opts = opts.clone();
        async move {
            let r = ctx.client.delete_value(info, &ns, &name, opts).await;
            (info, ns, name, r)
        }
    }))
    .buffered(PARALLEL);
    while let Some((info, ns, name, r)) = results.next().await {
        match r {
            Ok((obj, finished)) => {
                outln(&format!("{} {name:?} deleted", info.qualified()))?;
                if !finished {
                    let grace = obj
                        .pointer("/metadata/deletionGracePeriodSeconds")
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0);
                    longest_grace = longest_grace.max(grace.min(24 * 3600));
                    waiting.push((info, ns, name, object::uid(&obj).to_string()));
                }
            }
            Err(e) if e.is_not_found() && a.ignore_not_found => {}
            Err(e) => {
                report(ctx.about(info, &name, &e));
                failed = true;
            }
        }
    }

    if a.wait {
        // Without --timeout: a minute beyond the longest grace period granted.
        let deadline = deadline_or(a.timeout, Duration::from_secs(60 + longest_grace));
        let mut waits =
            futures::stream::iter(waiting.into_iter().map(|(info, ns, name, uid)| async move {
                let gone = wait_gone(ctx, info, &ns, &name, &uid, deadline).await;
                (info, name, gone)
            }))
            .buffered(PARALLEL);
        while let Some((info, name, gone)) = waits.next().await {
            if !gone? {
                errln(&format!(
                    "error: timed out waiting for the condition on {}/{name}",
                    crate::error::resource_name(info)
                ));
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
