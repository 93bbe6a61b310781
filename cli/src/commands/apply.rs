//! `corral apply -f FILE|DIR|-`: every document of a file is checked before any is sent.

use corral_api::client::ApplyResult;
use corral_api::object;

use super::{decode_source, errln, outln, read_sources, report, Ctx};
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
        for m in manifests {
            let ns = match object_namespace(ctx, m.info, &m.object) {
                Ok(ns) => ns,
                Err(e) => {
                    report(e);
                    failed = true;
                    continue;
                }
            };
            let name = object::name(&m.object).to_string();
            match ctx.client.apply_value(&ns, &m.object, dry_run).await {
                Ok((result, stored)) => {
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
    if !failed && !saw_objects {
        return Err(local("no objects passed to apply"));
    }
    if failed {
        Err(CliError::Reported)
    } else {
        Ok(())
    }
}
