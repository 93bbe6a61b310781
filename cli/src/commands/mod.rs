//! One module per verb. This module holds what they share: the connection context, argument
//! forms (`KIND NAME`, `KIND/NAME`), manifest reading, output and waiting helpers.

mod apply;
mod attach;
mod auth;
pub mod cluster;
mod config_cmd;
mod cp;
mod create;
mod create_data;
pub mod dashboard;
mod delete;
mod describe;
mod exec;
mod get;
pub mod lab;
mod label;
mod logs;
mod nodes;
mod patch;
pub mod port_forward;
mod rollout;
mod scale;
pub mod token;
pub mod top;
mod version;
mod wait;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_api::kinds::{self, ResourceInfo};
use corral_api::Client;
use serde_json::Value;

use crate::args::{Cli, Command};
use crate::config::{self, Config, Overrides, Resolved};
use crate::error::{self, local, CliError, Result};

/// What every command that talks to the control plane needs.
pub struct Ctx {
    pub client: Client,
    pub server: String,
    pub namespace: String,
    /// `-n` was given on the command line.
    pub namespace_explicit: bool,
}

impl Ctx {
    /// A NotFound/AlreadyExists error naming the object, else the server's message.
    pub fn about(
        &self,
        info: &ResourceInfo,
        name: &str,
        e: &corral_api::client::Error,
    ) -> CliError {
        error::about(&self.server, info, name, e)
    }

    pub fn err(&self, e: &corral_api::client::Error) -> CliError {
        error::server(&self.server, e)
    }

    /// The namespace to use for a kind: empty for cluster-scoped kinds.
    pub fn ns_for(&self, info: &ResourceInfo) -> String {
        if info.namespaced {
            self.namespace.clone()
        } else {
            String::new()
        }
    }
}

fn config_path(cli: &Cli) -> PathBuf {
    cli.config.clone().unwrap_or_else(config::default_path)
}

fn resolve(cli: &Cli) -> Result<Resolved> {
    let path = config_path(cli);
    let cfg = Config::load(&path).map_err(local)?;
    let overrides = Overrides {
        server: cli.server.clone(),
        context: cli.context.clone(),
        namespace: cli.namespace.clone(),
        env_server: std::env::var(config::ENV_SERVER).ok(),
    };
    config::resolve(&cfg, &overrides, corral_api::kubeconfig::base_dir(&path)).map_err(local)
}

/// The cluster CA's DER for the hash in printed tokens.
/// The cluster CA (DER) the current context trusts: printed tokens carry its hash.
fn ca_der(cli: &Cli) -> Option<Vec<u8>> {
    let pem = resolve(cli).ok()?.credentials.ca_pem?;
    corral_api::pin::pem_to_der(std::str::from_utf8(&pem).ok()?)
}

fn connect(cli: &Cli) -> Result<Ctx> {
    let r = resolve(cli)?;
    let client = Client::connect_lazy_with(&r.server, &r.credentials).map_err(local)?;
    Ok(Ctx {
        client,
        server: r.server,
        namespace: r.namespace,
        namespace_explicit: r.namespace_explicit,
    })
}

pub async fn dispatch(cli: Cli) -> Result<()> {
    // Commands that need no server come first, so they work without one.
    match &cli.command {
        Command::Completion(a) => return version::completion(a.shell),
        Command::Config(a) if !matches!(a.action, crate::args::ConfigAction::CreateUser(_)) => {
            return config_cmd::run(&config_path(&cli), &a.action, cli.namespace.as_deref())
        }
        Command::ApiResources => return version::api_resources(),
        Command::Cluster(a) => return cluster::run(&config_path(&cli), a).await,
        Command::Node(a) => return cluster::node(a).await,
        Command::Image(a) => return cluster::image(a).await,
        Command::Lab(a) => return lab::run(a).await,
        Command::Create(crate::args::CreateArgs { what: Some(w), .. })
            if create::is_client_dry_run(w) =>
        {
            return create::client_dry_run(w)
        }
        _ => {}
    }
    let ctx = connect(&cli)?;
    let dashboard_ca =
        corral_api::kubeconfig::base_dir(&config_path(&cli)).join("dashboard-ca.crt");
    let ca = matches!(
        cli.command,
        Command::Token(_) | Command::Config(_) | Command::Dashboard(_)
    )
    .then(|| ca_der(&cli))
    .flatten();
    match cli.command {
        Command::Apply(a) => apply::run(&ctx, &a).await,
        Command::Get(a) => get::run(&ctx, &a).await,
        Command::Describe(a) => describe::run(&ctx, &a).await,
        Command::Delete(a) => delete::run(&ctx, &a).await,
        Command::Scale(a) => scale::run(&ctx, &a).await,
        Command::Create(a) => create::run(&ctx, &a).await,
        Command::Logs(a) => logs::run(&ctx, &a).await,
        Command::Exec(a) => exec::run(&ctx, &a).await,
        Command::Attach(a) => attach::run(&ctx, &a).await,
        Command::Cp(a) => cp::run(&ctx, &a).await,
        Command::PortForward(a) => port_forward::run(&ctx, &a).await,
        Command::Rollout(a) => rollout::run(&ctx, &a.action).await,
        Command::Cordon(a) => nodes::cordon(&ctx, &a.node, true).await,
        Command::Uncordon(a) => nodes::cordon(&ctx, &a.node, false).await,
        Command::Drain(a) => nodes::drain(&ctx, &a).await,
        Command::Label(a) => label::run(&ctx, &a).await,
        Command::Wait(a) => wait::run(&ctx, &a).await,
        Command::Patch(a) => patch::run(&ctx, &a).await,
        Command::Edit(a) => patch::edit(&ctx, &a.resources).await,
        Command::Set(a) => match &a.what {
            crate::args::SetWhat::Image { args } => patch::set_image(&ctx, args).await,
        },
        Command::Version(a) => version::run(&ctx, a.client).await,
        Command::Auth(a) => match &a.action {
            crate::args::AuthAction::CanI(c) => auth::can_i(&ctx, c).await,
        },
        Command::Token(a) => token::run(&ctx, &a, ca).await,
        Command::Dashboard(a) => dashboard::run(&ctx, &a, ca, dashboard_ca).await,
        Command::Top(a) => top::run(&ctx, &a).await,
        Command::Config(crate::args::ConfigArgs {
            action: crate::args::ConfigAction::CreateUser(a),
        }) => token::create_user(&ctx, &a, ca).await,
        Command::Completion(_)
        | Command::Config(_)
        | Command::ApiResources
        | Command::Cluster(_)
        | Command::Node(_)
        | Command::Image(_)
        | Command::Lab(_) => Ok(()),
    }
}

// ---- output ----

/// Writes to stdout and flushes (watch output must appear at once). A closed pipe ends the
/// command quietly.
pub fn out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|_| CliError::Reported)
}

/// Raw bytes to stdout (container logs need not be UTF-8, nor split on character boundaries).
pub fn out_bytes(data: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(data)
        .and_then(|()| stdout.flush())
        .map_err(|_| CliError::Reported)
}

pub fn outln(text: &str) -> Result<()> {
    out(&format!("{text}\n"))
}

pub fn errln(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Prints the server's warnings as kubectl does (`Warning: would violate PodSecurity ...`).
pub fn warn(warnings: &[String]) {
    for w in warnings {
        errln(&format!("Warning: {w}"));
    }
}

/// Prints an error now and lets the command go on (kubectl's behaviour for several objects).
pub fn report(e: CliError) {
    if let CliError::Message(m) = e {
        errln(&m);
    }
}

pub fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

// ---- kinds and names ----

pub fn kind(name: &str) -> Result<&'static ResourceInfo> {
    kinds::lookup(name).ok_or_else(|| error::unknown_kind(name))
}

/// The objects a command line names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// `KIND[,KIND...] [NAME...]`; no names means every object of the kinds.
    Kinds {
        kinds: Vec<&'static ResourceInfo>,
        names: Vec<String>,
    },
    /// `KIND/NAME...`
    Named(Vec<(&'static ResourceInfo, String)>),
}

pub fn parse_targets(args: &[String]) -> Result<Targets> {
    let Some(first) = args.first() else {
        return Err(local(
            "you must specify the type of resource to get. Use \"corral api-resources\" for a complete list of supported resources",
        ));
    };
    if args.iter().any(|a| a.contains('/')) {
        let mut named = Vec::new();
        for a in args {
            let Some((k, n)) = a.split_once('/') else {
                return Err(local(
                    "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'corral get resource/<resource_name>' instead of 'corral get resource resource/<resource_name>'",
                ));
            };
            if n.is_empty() {
                return Err(local(format!(
                    "arguments in resource/name form must have a single resource and name: {a:?}"
                )));
            }
            named.push((kind(k)?, n.to_string()));
        }
        return Ok(Targets::Named(named));
    }
    let mut kinds = Vec::new();
    for k in first.split(',').filter(|k| !k.is_empty()) {
        if k == "all" {
            // kubectl's "all" category.
            kinds.extend([
                &kinds::PODS,
                &kinds::SERVICES,
                &kinds::DAEMONSETS,
                &kinds::DEPLOYMENTS,
                &kinds::REPLICASETS,
                &kinds::STATEFULSETS,
            ]);
        } else {
            kinds.push(kind(k)?);
        }
    }
    Ok(Targets::Kinds {
        kinds,
        names: args[1..].to_vec(),
    })
}

/// Exactly one `KIND/NAME` or `KIND NAME`.
pub fn single_target(args: &[String]) -> Result<(&'static ResourceInfo, String)> {
    match parse_targets(args)? {
        Targets::Named(mut v) if v.len() == 1 => Ok(v.remove(0)),
        Targets::Kinds { kinds, mut names } if kinds.len() == 1 && names.len() == 1 => {
            Ok((kinds[0], names.remove(0)))
        }
        Targets::Kinds { names, .. } if names.is_empty() => Err(local(
            "resource(s) were provided, but no name was specified",
        )),
        _ => Err(local(
            "exactly one resource name is required (KIND/NAME or KIND NAME)",
        )),
    }
}

/// `No resources found in default namespace.` / `No resources found`.
pub fn no_resources(info_namespaced: bool, namespace: &str) -> String {
    if info_namespaced && !namespace.is_empty() {
        format!("No resources found in {namespace} namespace.")
    } else {
        "No resources found".to_string()
    }
}

// ---- manifests ----

/// A manifest source: its display name and text.
pub struct Source {
    pub name: String,
    pub text: String,
}

fn is_manifest(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml") | Some("yml") | Some("json")
    )
}

fn walk(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if recursive {
                walk(&p, recursive, out)?;
            }
        } else if is_manifest(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// Reads `-f` arguments: files, directories (YAML/JSON files in them) and `-` for stdin.
pub fn read_sources(files: &[String], recursive: bool) -> Result<Vec<Source>> {
    let mut sources = Vec::new();
    for f in files {
        if f == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| local(format!("reading stdin: {e}")))?;
            sources.push(Source {
                name: "STDIN".into(),
                text,
            });
            continue;
        }
        let path = Path::new(f);
        let meta =
            std::fs::metadata(path).map_err(|_| local(format!("the path {f:?} does not exist")))?;
        let paths = if meta.is_dir() {
            let mut v = Vec::new();
            walk(path, recursive, &mut v).map_err(|e| local(format!("reading {f}: {e}")))?;
            v
        } else {
            vec![path.to_path_buf()]
        };
        for p in paths {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| local(format!("reading {}: {e}", p.display())))?;
            sources.push(Source {
                name: p.display().to_string(),
                text,
            });
        }
    }
    Ok(sources)
}

/// One decoded, schema-checked manifest object.
pub struct Manifest {
    pub info: &'static ResourceInfo,
    pub object: Value,
}

/// Decodes a source and checks every document before any is used, so that a bad document
/// stops the whole file. Errors name the file, then the object and field.
pub fn decode_source(src: &Source) -> std::result::Result<Vec<Manifest>, Vec<String>> {
    use corral_api::decode;
    let docs = decode::documents(&src.name, &src.text).map_err(|e| vec![format!("error: {e}")])?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for doc in docs {
        match decode::kind_of(&doc).and_then(|info| decode::check_schema(info, &doc).map(|_| info))
        {
            Ok(info) => out.push(Manifest { info, object: doc }),
            Err(e) => errors.push(format!("error: error validating {:?}: {e}", src.name)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

// ---- waiting ----

/// Deadline for commands whose `--timeout` of zero means "a sensible default".
pub fn deadline_or(timeout: Duration, default: Duration) -> tokio::time::Instant {
    let t = if timeout.is_zero() { default } else { timeout };
    tokio::time::Instant::now() + t
}

/// Waits until the object is gone (or replaced by one with another uid). Wakes on watch events
/// for the object and re-checks with a get, so no deletion can be missed.
pub async fn wait_gone(
    ctx: &Ctx,
    info: &ResourceInfo,
    ns: &str,
    name: &str,
    uid: &str,
    deadline: tokio::time::Instant,
) -> Result<bool> {
    use futures::StreamExt;
    let params = corral_api::ListParams::fields(format!("metadata.name={name}"));
    let mut stream = ctx
        .client
        .watch_value(info, ns, &params, 0)
        .await
        .ok()
        .map(Box::pin);
    loop {
        match ctx.client.get_value(info, ns, name).await {
            Err(e) if e.is_not_found() => return Ok(true),
            Err(e) => return Err(ctx.err(&e)),
            Ok(v) if corral_api::object::uid(&v) != uid => return Ok(true),
            Ok(_) => {}
        }
        let wake = async {
            match stream.as_mut() {
                Some(s) => matches!(s.next().await, Some(Ok(_))),
                None => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    true
                }
            }
        };
        match tokio::time::timeout_at(deadline, wake).await {
            Err(_) => return Ok(false),
            Ok(true) => {}
            // The watch ended: fall back to polling.
            Ok(false) => stream = None,
        }
    }
}

/// Ensures `apiVersion` and `kind` are set (list items may omit them).
pub fn with_type(info: &ResourceInfo, mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.entry("apiVersion")
            .or_insert_with(|| Value::String(info.api_version()));
        m.entry("kind")
            .or_insert_with(|| Value::String(info.kind.to_string()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn kind_name_and_slash_forms_resolve_aliases() {
        assert_eq!(
            parse_targets(&s(&["po", "a", "b"])).unwrap(),
            Targets::Kinds {
                kinds: vec![&kinds::PODS],
                names: s(&["a", "b"])
            }
        );
        assert_eq!(
            parse_targets(&s(&["rs/mi-app", "deploy/d"])).unwrap(),
            Targets::Named(vec![
                (&kinds::REPLICASETS, "mi-app".into()),
                (&kinds::DEPLOYMENTS, "d".into())
            ])
        );
        assert_eq!(
            parse_targets(&s(&["pods,svc"])).unwrap(),
            Targets::Kinds {
                kinds: vec![&kinds::PODS, &kinds::SERVICES],
                names: vec![]
            }
        );
    }

    #[test]
    fn unknown_kinds_and_mixed_forms_are_refused() {
        assert_eq!(
            parse_targets(&s(&["gadgets"])).unwrap_err().to_string(),
            "error: the server doesn't have a resource type \"gadgets\""
        );
        assert!(parse_targets(&s(&["pod", "pod/x"])).is_err());
        match parse_targets(&s(&["all"])).unwrap() {
            Targets::Kinds { kinds, .. } => assert_eq!(kinds.len(), 6),
            other => panic!("{other:?}"),
        }
        assert!(single_target(&s(&["deployment"])).is_err());
        assert_eq!(
            single_target(&s(&["replicaset/mi-app"])).unwrap(),
            (&kinds::REPLICASETS, "mi-app".to_string())
        );
    }

    #[test]
    fn a_bad_document_rejects_the_whole_file_naming_object_and_field() {
        let src = Source {
            name: "f.yaml".into(),
            text: "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ok\n---\napiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: mi-app\nspec:\n  replicass: 3\n".into(),
        };
        let errs = decode_source(&src).err().unwrap();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].contains("replicaset.apps \"mi-app\""),
            "{}",
            errs[0]
        );
        assert!(errs[0].contains("spec.replicass"), "{}", errs[0]);
    }

    #[test]
    fn invalid_yaml_reports_line_and_column() {
        let src = Source {
            name: "bad.yaml".into(),
            text: "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [x\n".into(),
        };
        let errs = decode_source(&src).err().unwrap();
        assert!(
            errs[0].contains("bad.yaml: invalid YAML at line"),
            "{}",
            errs[0]
        );
        assert!(errs[0].contains("column"), "{}", errs[0]);
    }
}
