//! `corral create -f`, `create deployment` (kubectl's generated object, `--dry-run=client -o yaml`)
//! `create namespace`, `create configmap` and `create secret generic|tls`.

use corral_api::kinds;
use corral_api::object;
use serde_json::Value;

use super::apply::{dry_run_suffix, object_namespace};
use super::create_data;
use super::{decode_source, errln, out, outln, read_sources, report, Ctx};
use crate::args::{CreateArgs, CreateSecretWhat, CreateWhat};
use crate::error::{local, CliError, Result};
use crate::printers::output;

fn build(w: &CreateWhat) -> Result<(&'static corral_api::ResourceInfo, Value, &str, Option<&str>)> {
    match w {
        CreateWhat::Deployment(d) => {
            if d.replicas < 0 {
                return Err(local("--replicas must be greater than or equal to 0"));
            }
            if d.port.is_some() && d.image.len() > 1 {
                return Err(local("cannot use --port with multiple images"));
            }
            Ok((
                &kinds::DEPLOYMENTS,
                output::create_deployment(&d.name, &d.image, d.replicas, d.port),
                d.dry_run.as_str(),
                d.output.as_deref(),
            ))
        }
        CreateWhat::Namespace(n) => Ok((
            &kinds::NAMESPACES,
            output::create_namespace(&n.name),
            n.dry_run.as_str(),
            n.output.as_deref(),
        )),
        CreateWhat::Configmap(c) => {
            let g = create_data::gather(&c.sources, "ConfigMap", &c.name)?;
            Ok((
                &kinds::CONFIGMAPS,
                create_data::configmap(&c.name, &g),
                c.dry_run.as_str(),
                c.output.as_deref(),
            ))
        }
        CreateWhat::Secret { what } => match what {
            CreateSecretWhat::Generic(s) => {
                let g = create_data::gather(&s.sources, "Secret", &s.name)?;
                Ok((
                    &kinds::SECRETS,
                    create_data::secret(&s.name, &g, s.type_.as_deref()),
                    s.dry_run.as_str(),
                    s.output.as_deref(),
                ))
            }
            CreateSecretWhat::Tls(t) => Ok((
                &kinds::SECRETS,
                create_data::tls_secret(&t.name, &t.cert, &t.key)?,
                t.dry_run.as_str(),
                t.output.as_deref(),
            )),
        },
    }
}

pub fn is_client_dry_run(w: &CreateWhat) -> bool {
    let mode = match w {
        CreateWhat::Deployment(d) => &d.dry_run,
        CreateWhat::Namespace(n) => &n.dry_run,
        CreateWhat::Configmap(c) => &c.dry_run,
        CreateWhat::Secret { what } => match what {
            CreateSecretWhat::Generic(s) => &s.dry_run,
            CreateSecretWhat::Tls(t) => &t.dry_run,
        },
    };
    mode == "client" || mode == "true"
}

fn print(
    info: &corral_api::ResourceInfo,
    obj: &Value,
    fmt: Option<&str>,
    suffix: &str,
) -> Result<()> {
    match fmt {
        Some("yaml") => out(&output::yaml(obj)),
        Some("json") => out(&output::json(obj)),
        Some("name") => outln(&output::name(info, obj)),
        None | Some("") => outln(&format!("{} created{suffix}", output::name(info, obj))),
        Some(other) => Err(local(format!(
            "unable to match a printer suitable for the output format {other:?}, allowed formats are: json,name,yaml"
        ))),
    }
}

/// `--dry-run=client`: print the object without contacting the server.
pub fn client_dry_run(w: &CreateWhat) -> Result<()> {
    let (info, obj, _, fmt) = build(w)?;
    print(info, &obj, fmt, " (dry run)")
}

pub async fn run(ctx: &Ctx, a: &CreateArgs) -> Result<()> {
    if let Some(w) = &a.what {
        let (info, obj, mode, fmt) = build(w)?;
        let (suffix, dry_run) = dry_run_suffix(mode)?;
        let ns = object_namespace(ctx, info, &obj)?;
        let (created, warnings) = ctx
            .client
            .create_value_with_warnings(info, &ns, &obj, dry_run)
            .await
            .map_err(|e| ctx.about(info, object::name(&obj), &e))?;
        super::warn(&warnings);
        return print(info, &super::with_type(info, created), fmt, suffix);
    }
    if a.files.is_empty() {
        return Err(local(
            "must specify one of -f or a kind to create (deployment, namespace, configmap, secret)",
        ));
    }
    let mut failed = false;
    for src in read_sources(&a.files, a.recursive)? {
        let manifests = match decode_source(&src) {
            Ok(m) => m,
            Err(errors) => {
                for e in errors {
                    errln(&e);
                }
                failed = true;
                continue;
            }
        };
        for m in manifests {
            let ns = object_namespace(ctx, m.info, &m.object)?;
            match ctx
                .client
                .create_value_with_warnings(m.info, &ns, &m.object, false)
                .await
            {
                Ok((obj, warnings)) => {
                    super::warn(&warnings);
                    outln(&format!("{} created", output::name(m.info, &obj)))?
                }
                Err(e) => {
                    report(ctx.about(m.info, object::name(&m.object), &e));
                    failed = true;
                }
            }
        }
    }
    if failed {
        Err(CliError::Reported)
    } else {
        Ok(())
    }
}
