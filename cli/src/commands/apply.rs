//! `corral apply -f FILE|DIR|-`: every document of a file is checked before any is sent.

use corral_api::client::ApplyResult;
use corral_api::object;
use futures::StreamExt;

use super::{decode_source, errln, outln, read_sources, report, warn, Ctx};
use crate::args::ApplyArgs;
use crate::error::{local, CliError, Result};

pub fn dry_run_suffix(mode: &str) -> Result<(&'static str, bool)> {
    match mode {
        "none" | "false" => Ok(("", false)),
        "client" | "true" => Ok((" (dry run)", true)),
        "server" => Ok((" (server dry run)", true)),
        other => Err(local(format!(
            "Invalid dry-run value ({other}). Must be \"none\", \"server\", or \"client\"."
        ))),
    }
}

/// The namespace an object goes to, refusing one that contradicts `-n`.
pub fn object_namespace(
    ctx: &Ctx,
    info: &corral_api::ResourceInfo,
    obj: &serde_json::Value,
) -> Result<String> {
    if !info.namespaced {
        return Ok(String::new());
    }
    let own = object::namespace(obj);
    if own.is_empty() {
        return Ok(ctx.namespace.clone());
    }
    if ctx.namespace_explicit && own != ctx.namespace {
        return Err(local(format!(
            "the namespace from the provided object {own:?} does not match the namespace {:?}. You must pass '--namespace={own}' to perform this operation.",
            ctx.namespace
        )));
    }
    Ok(own.to_string())
}

/// Requests in flight at once when applying or deleting many objects.
pub const PARALLEL: usize = 16;

/// Splits objects, in file order, into runs that may be sent concurrently. A cluster-scoped
/// object (a Namespace the next objects live in) runs alone and before what follows it, and
/// an object named twice starts a new run, so the file's order still decides.
pub fn segments<T>(items: Vec<(super::Manifest, T)>) -> Vec<Vec<(super::Manifest, T)>> {
    let mut out: Vec<Vec<(super::Manifest, T)>> = Vec::new();
    let mut current: Vec<(super::Manifest, T)> = Vec::new();
    let key = |m: &super::Manifest| {
        (
            m.info.plural,
            object::namespace(&m.object).to_string(),
            object::name(&m.object).to_string(),
        )
    };
    for (m, extra) in items {
        let repeated = current.iter().any(|(c, _)| key(c) == key(&m));
        if !m.info.namespaced || repeated {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            if !m.info.namespaced {
                out.push(vec![(m, extra)]);
                continue;
            }
        }
        current.push((m, extra));
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

pub async fn run(ctx: &Ctx, a: &ApplyArgs) -> Result<()> {
    let (suffix, dry_run) = dry_run_suffix(&a.dry_run)?;
    let sources = read_sources(&a.files, a.recursive)?;
    let mut failed = false;
    let mut saw_objects = false;
    for src in &sources {
        let manifests = match decode_source(src) {
            Ok(m) => m,
            Err(errors) => {
                for e in errors {
                    errln(&e);
                }
                failed = true;
                continue;
            }
        };
        saw_objects |= !manifests.is_empty();
        let mut planned = Vec::new();
        for m in manifests {
            match object_namespace(ctx, m.info, &m.object) {
                Ok(ns) => planned.push((m, ns)),
                Err(e) => {
                    report(e);
                    failed = true;
                }
            }
        }
        for segment in segments(planned) {
            // Objects of a segment are independent: send them together (one store commit
            // can acknowledge many), print the results in file order.
            let mut results =
                futures::stream::iter(segment.into_iter().map(|(m, ns)| async move {
                    let r = ctx
                        .client
                        .apply_value_with_warnings(&ns, &m.object, dry_run)
                        .await;
                    (m, r)
                }))
                .buffered(PARALLEL);
            while let Some((m, r)) = results.next().await {
                let name = object::name(&m.object).to_string();
                match r {
                    Ok((result, stored, warnings)) => {
                        warn(&warnings);
                        let verb = match result {
                            ApplyResult::Created => "created",
                            ApplyResult::Configured => "configured",
                            ApplyResult::Unchanged => "unchanged",
                        };
                        let shown = if name.is_empty() {
                            object::name(&stored).to_string()
                        } else {
                            name
                        };
                        if a.output.as_deref() == Some("name") {
                            outln(&format!("{}/{shown}", m.info.qualified()))?;
                        } else {
                            outln(&format!("{}/{shown} {verb}{suffix}", m.info.qualified()))?;
                        }
                    }
                    Err(e) => {
                        let doing = format!("error when applying {:?}", src.name);
                        report(crate::error::server_doing(&ctx.server, &doing, &e));
                        failed = true;
                    }
                }
            }
        }
    }
    if !failed && !saw_objects {
        return Err(local("no objects passed to apply"));
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
    use corral_api::kinds;
    use serde_json::json;

    fn m(info: &'static corral_api::ResourceInfo, name: &str) -> (crate::commands::Manifest, ()) {
        (
            crate::commands::Manifest {
                info,
                object: json!({"metadata": {"name": name}}),
            },
            (),
        )
    }

    #[test]
    fn namespaces_and_repeated_objects_split_the_concurrent_runs() {
        let items = vec![
            m(&kinds::NAMESPACES, "ns"),
            m(&kinds::PODS, "a"),
            m(&kinds::SERVICES, "a"),
            m(&kinds::PODS, "b"),
            m(&kinds::PODS, "a"),
            m(&kinds::NODES, "n"),
            m(&kinds::PODS, "c"),
        ];
        let names: Vec<Vec<String>> = segments(items)
            .iter()
            .map(|s| {
                s.iter()
                    .map(|(m, _)| format!("{}/{}", m.info.plural, object::name(&m.object)))
                    .collect()
            })
            .collect();
        assert_eq!(
            names,
            vec![
                vec!["namespaces/ns"],
                vec!["pods/a", "services/a", "pods/b"],
                vec!["pods/a"],
                vec!["nodes/n"],
                vec!["pods/c"],
            ]
        );
    }
}
