//! `corral cp` as kubectl does it: tar through exec. `POD:/path LOCAL` runs `tar cf - PATH`
//! in the container and unpacks locally; `LOCAL POD:/path` sends a tar to `tar -xmf - -C DIR`.
//! `NAMESPACE/POD:/path` and `-c CONTAINER` as in kubectl.

use std::io::{Cursor, Read};
use std::path::{Component, Path, PathBuf};

use corral_api::client::StreamKind;
use corral_proto as pb;
use pb::stream_frame::Msg;

use super::exec::{session, Io};
use super::logs::pick_container;
use super::{errln, Ctx};
use crate::args::CpArgs;
use crate::error::{local, CliError, Result};

/// One side of a copy.
#[derive(Debug, PartialEq)]
enum Spec {
    Local(String),
    Remote {
        namespace: Option<String>,
        pod: String,
        path: String,
    },
}

/// kubectl's reading of a file spec: `[NAMESPACE/]POD:PATH` is in a pod, anything else local.
fn parse(spec: &str) -> Spec {
    if let Some((pod, path)) = spec.split_once(':') {
        if !pod.is_empty() && !pod.starts_with('.') && !pod.starts_with('/') {
            let (namespace, pod) = match pod.split_once('/') {
                Some((ns, p)) => (Some(ns.to_string()), p.to_string()),
                None => (None, pod.to_string()),
            };
            return Spec::Remote {
                namespace,
                pod,
                path: path.to_string(),
            };
        }
    }
    Spec::Local(spec.to_string())
}

/// Where an archive entry named `name` goes: under `dest` by its path below `prefix` (the
/// remote path tar was asked for), never outside it; `None` for entries outside the prefix.
fn destination(dest: &Path, prefix: &str, name: &str) -> Option<PathBuf> {
    let rest = name.strip_prefix(prefix)?;
    if !(rest.is_empty() || rest.starts_with('/') || prefix.is_empty()) {
        return None;
    }
    let rel = Path::new(rest.trim_start_matches('/'));
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return None;
    }
    Some(if rel.as_os_str().is_empty() {
        dest.to_path_buf()
    } else {
        dest.join(rel)
    })
}

struct Target<'a> {
    ctx: &'a Ctx,
    namespace: String,
    pod: String,
    container: String,
}

impl Target<'_> {
    /// Runs `command` in the container with `stdin`; returns its stdout, stderr and end.
    async fn run(
        &self,
        command: Vec<String>,
        stdin: Option<Vec<u8>>,
    ) -> Result<(Vec<u8>, Vec<u8>, pb::StreamEnd)> {
        let first = pb::StreamFrame {
            msg: Some(Msg::Exec(pb::ExecRequest {
                namespace: self.namespace.clone(),
                pod: self.pod.clone(),
                container: self.container.clone(),
                command,
                stdin: stdin.is_some(),
                tty: false,
                size: None,
            })),
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let io = Io {
            stdin: stdin.map(|d| Box::new(Cursor::new(d)) as Box<dyn Read + Send>),
            stdout: &mut out,
            stderr: &mut err,
            tty: false,
        };
        let end = session(self.ctx, StreamKind::Exec, first, &self.pod, io).await?;
        if !end.error.is_empty() {
            return Err(local(&end.error));
        }
        Ok((out, err, end))
    }
}

/// tar's complaints, without busybox's note about the leading `/` it strips.
fn report_stderr(err: &[u8]) {
    for line in String::from_utf8_lossy(err).lines() {
        if !line.contains("removing leading") && !line.trim().is_empty() {
            errln(line);
        }
    }
}

fn failed(end: &pb::StreamEnd) -> Option<CliError> {
    match end.exit_code {
        Some(0) | None => None,
        Some(code) => {
            errln(&format!("command terminated with exit code {code}"));
            Some(CliError::Exit(code))
        }
    }
}

pub async fn run(ctx: &Ctx, a: &CpArgs) -> Result<()> {
    let (src, dest) = (parse(&a.src), parse(&a.dest));
    let (remote, to_pod) = match (&src, &dest) {
        (Spec::Local(_), Spec::Local(_)) => {
            return Err(local(
                "one of src or dest must be a remote file specification",
            ))
        }
        (Spec::Remote { .. }, Spec::Remote { .. }) => {
            return Err(local(
                "one of src or dest must be a local file specification",
            ))
        }
        (Spec::Remote { .. }, _) => (&src, false),
        (_, Spec::Remote { .. }) => (&dest, true),
    };
    let Spec::Remote {
        namespace,
        pod,
        path,
    } = remote
    else {
        unreachable!("matched above")
    };
    if path.is_empty() {
        return Err(local("filepath can not be empty"));
    }
    let namespace = namespace.clone().unwrap_or_else(|| ctx.namespace.clone());
    let pod_obj = ctx
        .client
        .get::<corral_api::k8s::api::core::v1::Pod>(&namespace, pod)
        .await
        .map_err(|e| ctx.about(&corral_api::kinds::PODS, pod, &e))?;
    let target = Target {
        ctx,
        namespace,
        pod: pod.clone(),
        container: pick_container(&pod_obj, a.container.as_deref())?,
    };
    match (to_pod, &src, &dest) {
        (false, _, Spec::Local(local_dest)) => from_pod(&target, path, Path::new(local_dest)).await,
        (true, Spec::Local(local_src), _) => to_pod_copy(&target, Path::new(local_src), path).await,
        _ => unreachable!("one side is local"),
    }
}

async fn from_pod(t: &Target<'_>, path: &str, dest: &Path) -> Result<()> {
    let cmd = vec!["tar".into(), "cf".into(), "-".into(), path.to_string()];
    let (out, err, end) = t.run(cmd, None).await?;
    report_stderr(&err);
    if let Some(e) = failed(&end) {
        return Err(e);
    }
    let prefix = path.trim_start_matches('/').trim_end_matches('/');
    let prefix = prefix.strip_prefix("./").unwrap_or(prefix);
    let mut archive = tar::Archive::new(Cursor::new(out));
    let entries = archive
        .entries()
        .map_err(|e| local(format!("reading the archive from {}: {e}", t.pod)))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| local(format!("reading the archive: {e}")))?;
        let name = entry
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let name = name.trim_end_matches('/');
        let Some(mut target) = destination(dest, prefix, name) else {
            errln(&format!("warning: skipping {name:?}: outside {path}"));
            continue;
        };
        // A single file copied onto an existing directory goes inside it, as cp does.
        if target == dest && dest.is_dir() && entry.header().entry_type().is_file() {
            target = dest.join(Path::new(name).file_name().unwrap_or_default());
        }
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| local(format!("{}: {e}", parent.display())))?;
        }
        entry
            .unpack(&target)
            .map_err(|e| local(format!("{}: {e}", target.display())))?;
    }
    Ok(())
}

async fn to_pod_copy(t: &Target<'_>, src: &Path, dest: &str) -> Result<()> {
    if !src.exists() {
        return Err(local(format!(
            "{} doesn't exist in local filesystem",
            src.display()
        )));
    }
    // Onto an existing directory: inside it, under the source's name.
    let mut dest = dest.trim_end_matches('/').to_string();
    let is_dir = vec!["test".into(), "-d".into(), dest.clone()];
    if dest.is_empty() || t.run(is_dir, None).await?.2.exit_code == Some(0) {
        let base = src
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        dest = format!("{dest}/{base}");
    }
    let (dir, base) = match dest.rsplit_once('/') {
        Some((d, b)) => (if d.is_empty() { "/" } else { d }, b),
        None => ("", dest.as_str()),
    };
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let built = if src.is_dir() {
        builder.append_dir_all(base, src)
    } else {
        builder.append_path_with_name(src, base)
    };
    let archive = built
        .and_then(|()| builder.into_inner())
        .map_err(|e| local(format!("{}: {e}", src.display())))?;
    let mut cmd: Vec<String> = vec!["tar".into(), "-xmf".into(), "-".into()];
    if !dir.is_empty() {
        cmd.extend(["-C".into(), dir.to_string()]);
    }
    let (_, err, end) = t.run(cmd, Some(archive)).await?;
    report_stderr(&err);
    match failed(&end) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_with_a_pod_before_the_colon_is_remote() {
        let remote = |ns: Option<&str>, pod: &str, path: &str| Spec::Remote {
            namespace: ns.map(String::from),
            pod: pod.into(),
            path: path.into(),
        };
        let cases = [
            ("web:/tmp/x", remote(None, "web", "/tmp/x")),
            ("prod/web:/tmp/x", remote(Some("prod"), "web", "/tmp/x")),
            ("web:", remote(None, "web", "")),
            ("/tmp/x", Spec::Local("/tmp/x".into())),
            ("./a:b", Spec::Local("./a:b".into())),
            ("file", Spec::Local("file".into())),
        ];
        for (spec, want) in cases {
            assert_eq!(parse(spec), want, "{spec}");
        }
    }

    #[test]
    fn archive_entries_land_under_the_destination_and_never_outside_it() {
        let dest = Path::new("/out");
        let cases: [(&str, &str, Option<&str>); 7] = [
            ("tmp/f", "tmp/f", Some("/out")),
            ("tmp/d", "tmp/d/a/b", Some("/out/a/b")),
            ("tmp/d", "tmp/dx", None),
            ("tmp/d", "etc/passwd", None),
            ("tmp/d", "tmp/d/../../etc", None),
            ("tmp/d", "tmp/d/./a", Some("/out/./a")),
            ("", "a", Some("/out/a")),
        ];
        for (prefix, name, want) in cases {
            assert_eq!(
                destination(dest, prefix, name),
                want.map(PathBuf::from),
                "{prefix} {name}"
            );
        }
    }
}
