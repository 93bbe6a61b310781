//! Builds Corral's small test images as OCI image-layout archives, from Debian's busybox-static,
//! with no Docker engine: one gzip layer, an image config and a manifest, written
//! deterministically (fixed mtimes) so the same busybox gives the same digests.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Where Debian's busybox-static puts the binary.
pub const DEFAULT_BUSYBOX: &str = "/usr/bin/busybox";

/// All build timestamps, so archives are reproducible.
const MTIME: u64 = 1_700_000_000;

const APPLETS: &[&str] = &[
    "sh", "ash", "httpd", "sleep", "echo", "cat", "hostname", "ls", "wget", "env", "true", "false",
    "ps", "kill", "nc", "ip", "mkdir", "date", "head", "tail", "cp", "mv", "rm", "id", "uname",
    "seq", "yes", "dd", "grep", "sed", "test", "[", "printf", "touch", "wc", "whoami", "pwd",
    "mount", "ln", "chmod", "stat", "awk", "top", "free", "nslookup", "ping", "vi", "tee",
    // `corral cp` runs tar in the container, as kubectl cp does; `stty` for exec -t tests.
    "tar", "stty",
];

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("reading busybox at {path}: {source}")]
    Busybox {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing image archive {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One image to build: a reference and what differs from the base layer.
#[derive(Debug, Clone)]
pub struct ImageDef {
    /// Fully qualified reference, e.g. `docker.io/fedek3/workshop-uns:v0.2.0`.
    pub reference: String,
    /// Extra files (path inside the image, mode, content).
    pub files: Vec<(String, u32, Vec<u8>)>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub exposed_ports: Vec<u16>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

const WORKSHOP_START: &str = r#"#!/bin/sh
# The workshop app: a page showing the pod's hostname and the app version.
mkdir -p /www
HOST=$(hostname)
cat > /www/index.html <<EOF
<!DOCTYPE html>
<html><head><title>workshop-uns</title></head>
<body><h1>Hello from $HOST</h1><p>version: $APP_VERSION</p></body></html>
EOF
echo ok > /www/healthz
echo "workshop-uns $APP_VERSION serving on :80 as $HOST"
# As PID 1 the shell only gets SIGTERM with a handler installed: stop httpd and exit at once,
# as the real app's web server does, instead of waiting out the grace period for SIGKILL.
httpd -f -v -p 80 -h /www &
pid=$!
trap 'kill $pid; wait $pid; exit 0' TERM INT
wait $pid
"#;

/// The images the tests and the workshop use.
pub fn standard_images() -> Vec<ImageDef> {
    let mut out = Vec::new();
    for version in ["v0.2.0", "v0.3.0"] {
        out.push(ImageDef {
            reference: format!("docker.io/fedek3/workshop-uns:{version}"),
            files: vec![(
                "app/start.sh".into(),
                0o755,
                WORKSHOP_START.as_bytes().to_vec(),
            )],
            entrypoint: strings(&["/app/start.sh"]),
            cmd: vec![],
            env: vec![format!("APP_VERSION={version}")],
            working_dir: "/www".into(),
            exposed_ports: vec![80],
        });
    }
    // Sleeps until SIGTERM, then exits 0 at once (PID 1 ignores signals it does not handle).
    out.push(ImageDef {
        reference: "docker.io/corral-test/sleeper:v1".into(),
        files: vec![],
        entrypoint: vec![],
        cmd: strings(&[
            "sh",
            "-c",
            "trap 'echo terminated; exit 0' TERM; echo sleeping; while true; do sleep 1; done",
        ]),
        env: vec![],
        working_dir: "/".into(),
        exposed_ports: vec![],
    });
    out.push(ImageDef {
        reference: "docker.io/corral-test/crasher:v1".into(),
        files: vec![],
        entrypoint: vec![],
        cmd: strings(&["sh", "-c", "echo crashing; exit 3"]),
        env: vec![],
        working_dir: "/".into(),
        exposed_ports: vec![],
    });
    out
}

/// Archive file name for a reference: `fedek3_workshop-uns_v0.2.0.tar`.
pub fn archive_name(reference: &str) -> String {
    let short = reference.strip_prefix("docker.io/").unwrap_or(reference);
    format!("{}.tar", short.replace(['/', ':'], "_"))
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn header(path: &str, mode: u32, size: u64, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(MTIME);
    h.set_uid(0);
    h.set_gid(0);
    let _ = h.set_path(path);
    h
}

fn append_file<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    mode: u32,
    data: &[u8],
) -> std::io::Result<()> {
    let mut h = header(path, mode, data.len() as u64, tar::EntryType::Regular);
    h.set_cksum();
    b.append(&h, data)
}

fn append_dir<W: Write>(b: &mut tar::Builder<W>, path: &str, mode: u32) -> std::io::Result<()> {
    let mut h = header(path, mode, 0, tar::EntryType::Directory);
    h.set_cksum();
    b.append(&h, std::io::empty())
}

/// The root filesystem layer as an uncompressed tar.
fn layer_tar(busybox: &[u8], def: &ImageDef) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (dir, mode) in [
        ("bin/", 0o755),
        ("etc/", 0o755),
        ("tmp/", 0o1777),
        ("root/", 0o700),
        ("www/", 0o755),
        ("app/", 0o755),
        ("proc/", 0o755),
        ("sys/", 0o755),
        ("dev/", 0o755),
    ] {
        append_dir(&mut b, dir, mode)?;
    }
    append_file(&mut b, "bin/busybox", 0o755, busybox)?;
    for applet in APPLETS {
        let mut h = header(&format!("bin/{applet}"), 0o777, 0, tar::EntryType::Symlink);
        h.set_link_name("busybox")?;
        h.set_cksum();
        b.append(&h, std::io::empty())?;
    }
    append_file(
        &mut b,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    append_file(&mut b, "etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?;
    for (path, mode, data) in &def.files {
        append_file(&mut b, path, *mode, data)?;
    }
    b.into_inner()
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Writes one OCI image-layout archive holding `def`.
pub fn write_oci_archive(busybox: &[u8], def: &ImageDef, path: &Path) -> Result<(), BuildError> {
    let werr = |source| BuildError::Write {
        path: path.to_path_buf(),
        source,
    };
    let layer = layer_tar(busybox, def).map_err(werr)?;
    let diff_id = format!("sha256:{}", sha256_hex(&layer));
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&layer).map_err(werr)?;
    let layer_gz = gz.finish().map_err(werr)?;
    let layer_digest = format!("sha256:{}", sha256_hex(&layer_gz));

    let env: Vec<String> = std::iter::once("PATH=/bin".to_string())
        .chain(def.env.iter().cloned())
        .collect();
    let mut config = json!({
        "created": "2023-11-14T22:13:20Z",
        "architecture": arch(),
        "os": "linux",
        "config": {
            "Env": env,
            "WorkingDir": def.working_dir,
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": "2023-11-14T22:13:20Z", "created_by": "corral-build-images" }],
    });
    if !def.entrypoint.is_empty() {
        config["config"]["Entrypoint"] = json!(def.entrypoint);
    }
    if !def.cmd.is_empty() {
        config["config"]["Cmd"] = json!(def.cmd);
    }
    if !def.exposed_ports.is_empty() {
        let ports: BTreeMap<String, serde_json::Value> = def
            .exposed_ports
            .iter()
            .map(|p| (format!("{p}/tcp"), json!({})))
            .collect();
        config["config"]["ExposedPorts"] = json!(ports);
    }
    let config = serde_json::to_vec(&config).expect("json values serialize");
    let config_digest = format!("sha256:{}", sha256_hex(&config));

    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": layer_gz.len(),
        }],
    }))
    .expect("json values serialize");
    let manifest_digest = format!("sha256:{}", sha256_hex(&manifest));
    let tag = def
        .reference
        .rsplit_once(':')
        .map(|x| x.1)
        .unwrap_or("latest");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": { "architecture": arch(), "os": "linux" },
            "annotations": {
                "io.containerd.image.name": def.reference,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))
    .expect("json values serialize");

    let file = std::fs::File::create(path).map_err(werr)?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(file));
    let mut put = |name: &str, data: &[u8]| append_file(&mut b, name, 0o644, data);
    put("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(werr)?;
    put("index.json", &index).map_err(werr)?;
    for (digest, data) in [
        (&layer_digest, &layer_gz),
        (&config_digest, &config),
        (&manifest_digest, &manifest),
    ] {
        let name = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
        put(&name, data).map_err(werr)?;
    }
    b.into_inner()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .and_then(|f| f.sync_all())
        .map_err(werr)?;
    Ok(())
}

/// Builds every standard image into `out_dir`; returns the archive paths.
pub fn build_standard_images(busybox: &Path, out_dir: &Path) -> Result<Vec<PathBuf>, BuildError> {
    let bb = std::fs::read(busybox).map_err(|source| BuildError::Busybox {
        path: busybox.to_path_buf(),
        source,
    })?;
    std::fs::create_dir_all(out_dir).map_err(|source| BuildError::Write {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for def in standard_images() {
        let path = out_dir.join(archive_name(&def.reference));
        write_oci_archive(&bb, &def, &path)?;
        out.push(path);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_are_reproducible_and_hold_an_oci_layout() {
        let dir = tempfile::tempdir().unwrap();
        let def = &standard_images()[0];
        let fake_busybox = b"#!not really busybox".to_vec();
        let a = dir.path().join("a.tar");
        let b = dir.path().join("b.tar");
        write_oci_archive(&fake_busybox, def, &a).unwrap();
        write_oci_archive(&fake_busybox, def, &b).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

        let mut names = Vec::new();
        let mut ar = tar::Archive::new(std::fs::File::open(&a).unwrap());
        for e in ar.entries().unwrap() {
            names.push(e.unwrap().path().unwrap().display().to_string());
        }
        assert!(names.contains(&"oci-layout".to_string()));
        assert!(names.contains(&"index.json".to_string()));
        assert_eq!(names.iter().filter(|n| n.starts_with("blobs/")).count(), 3);
    }

    #[test]
    fn archive_names_drop_the_default_registry() {
        assert_eq!(
            archive_name("docker.io/fedek3/workshop-uns:v0.2.0"),
            "fedek3_workshop-uns_v0.2.0.tar"
        );
    }
}
