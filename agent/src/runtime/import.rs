//! Image import into containerd: blobs written into the content store under a lease (with the
//! GC reference labels containerd's own client sets), layers unpacked into the snapshotter
//! through the diff service, then the image record. Sources: OCI image-layout archives and
//! docker-archive tars.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use containerd_client::services::v1 as cs;
use containerd_client::services::v1::snapshots as ss;
use containerd_client::types::Descriptor;
use futures::StreamExt;
use rand::Rng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::containerd::{chain_ids, Containerd};
use super::{normalize_reference, ImageInfo, Result, RuntimeError};

const CHUNK: usize = 1 << 20;
pub const LABEL_IMPORTED: &str = "corral.image.imported";

fn bad(path: &Path, message: impl Into<String>) -> RuntimeError {
    RuntimeError::BadArchive {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Removes the extraction directory even when the import fails half-way.
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A blob on disk with the descriptor it will have in the content store.
struct Blob {
    desc: Descriptor,
    file: PathBuf,
}

pub async fn import_archive(rt: &Containerd, path: &Path) -> Result<Vec<String>> {
    let dir = rt
        .tmp_dir
        .join(format!("import-{:016x}", rand::thread_rng().gen::<u64>()));
    let _guard = TempDir(dir.clone());
    {
        let (src, dir) = (path.to_path_buf(), dir.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            tar::Archive::new(std::fs::File::open(&src)?).unpack(&dir)
        })
        .await
        .expect("unpack task does not panic")
        .map_err(RuntimeError::io(format!("unpacking {}", path.display())))?;
    }
    let images = if dir.join("index.json").exists() {
        oci_layout_images(path, &dir).await?
    } else if dir.join("manifest.json").exists() {
        docker_archive_images(path, &dir).await?
    } else {
        return Err(bad(
            path,
            "neither an OCI layout (index.json) nor a docker archive (manifest.json)",
        ));
    };
    if images.is_empty() {
        return Err(bad(
            path,
            "no named image inside (io.containerd.image.name / RepoTags)",
        ));
    }
    let lease = Lease::create(rt).await?;
    let mut names = Vec::new();
    let mut result = Ok(());
    for (name, manifest_blob, extra_blobs) in images {
        match store_image(rt, &lease.id, &name, &manifest_blob, &extra_blobs, &dir).await {
            Ok(_) => names.push(name),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    lease.delete(rt).await;
    result.map(|()| names)
}

/// `(name, manifest blob, other blobs by digest)` for each named manifest in an OCI layout.
async fn oci_layout_images(
    archive: &Path,
    dir: &Path,
) -> Result<Vec<(String, Blob, HashMap<String, Blob>)>> {
    let index: Value = read_json(archive, &dir.join("index.json")).await?;
    let mut out = Vec::new();
    for m in index["manifests"].as_array().cloned().unwrap_or_default() {
        let ann = &m["annotations"];
        let name = ann["io.containerd.image.name"]
            .as_str()
            .or_else(|| {
                ann["org.opencontainers.image.ref.name"]
                    .as_str()
                    .filter(|n| n.contains('/') || n.contains(':'))
            })
            .map(normalize_reference);
        let Some(name) = name else { continue };
        let mut desc = descriptor(archive, &m)?;
        // Follow a nested index to this platform's manifest.
        for _ in 0..4 {
            let v: Value = read_json(archive, &blob_path(dir, &desc.digest)).await?;
            if v.get("manifests").is_none() {
                break;
            }
            let pick = v["manifests"]
                .as_array()
                .and_then(|ms| {
                    ms.iter().find(|m| {
                        let p = &m["platform"];
                        p.is_null()
                            || (p["os"] == "linux"
                                && p["architecture"] == super::containerd::oci_arch())
                    })
                })
                .ok_or_else(|| bad(archive, format!("{name}: no manifest for this platform")))?;
            desc = descriptor(archive, pick)?;
        }
        let file = blob_path(dir, &desc.digest);
        out.push((name, Blob { desc, file }, HashMap::new()));
    }
    Ok(out)
}

/// Docker archives have no manifests: one is made (docker schema 2) for each entry.
async fn docker_archive_images(
    archive: &Path,
    dir: &Path,
) -> Result<Vec<(String, Blob, HashMap<String, Blob>)>> {
    let entries: Value = read_json(archive, &dir.join("manifest.json")).await?;
    let mut out = Vec::new();
    for e in entries.as_array().cloned().unwrap_or_default() {
        let config_file = dir.join(e["Config"].as_str().unwrap_or_default());
        let (config_digest, config_size, _) = hash_file(&config_file).await?;
        let mut extra = HashMap::new();
        extra.insert(
            config_digest.clone(),
            Blob {
                desc: Descriptor {
                    media_type: "application/vnd.docker.container.image.v1+json".into(),
                    digest: config_digest.clone(),
                    size: config_size,
                    annotations: Default::default(),
                },
                file: config_file,
            },
        );
        let mut layers = Vec::new();
        for l in e["Layers"].as_array().cloned().unwrap_or_default() {
            let file = dir.join(l.as_str().unwrap_or_default());
            let (digest, size, gzipped) = hash_file(&file).await?;
            let media_type = if gzipped {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            } else {
                "application/vnd.docker.image.rootfs.diff.tar"
            };
            layers.push(json!({"mediaType": media_type, "digest": digest, "size": size}));
            extra.insert(
                digest.clone(),
                Blob {
                    desc: Descriptor {
                        media_type: media_type.into(),
                        digest,
                        size,
                        annotations: Default::default(),
                    },
                    file,
                },
            );
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": config_digest, "size": config_size},
            "layers": layers,
        }))
        .expect("json values serialize");
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
        let file = dir.join(format!("corral-manifest-{}", &digest[7..]));
        tokio::fs::write(&file, &manifest)
            .await
            .map_err(RuntimeError::io(format!("writing {}", file.display())))?;
        let manifest_blob = Blob {
            desc: Descriptor {
                media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
                digest,
                size: manifest.len() as i64,
                annotations: Default::default(),
            },
            file,
        };
        for tag in e["RepoTags"].as_array().cloned().unwrap_or_default() {
            if let Some(tag) = tag.as_str() {
                let blobs = extra
                    .iter()
                    .map(|(k, b)| {
                        (
                            k.clone(),
                            Blob {
                                desc: b.desc.clone(),
                                file: b.file.clone(),
                            },
                        )
                    })
                    .collect();
                out.push((
                    normalize_reference(tag),
                    Blob {
                        desc: manifest_blob.desc.clone(),
                        file: manifest_blob.file.clone(),
                    },
                    blobs,
                ));
            }
        }
    }
    Ok(out)
}

fn descriptor(archive: &Path, v: &Value) -> Result<Descriptor> {
    Ok(Descriptor {
        media_type: v["mediaType"].as_str().unwrap_or_default().to_string(),
        digest: v["digest"]
            .as_str()
            .filter(|d| d.starts_with("sha256:"))
            .ok_or_else(|| bad(archive, "descriptor without a sha256 digest"))?
            .to_string(),
        size: v["size"].as_i64().unwrap_or_default(),
        annotations: Default::default(),
    })
}

fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

async fn read_json(archive: &Path, file: &Path) -> Result<Value> {
    let bytes = tokio::fs::read(file)
        .await
        .map_err(|e| bad(archive, format!("{}: {e}", file.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(archive, format!("{}: {e}", file.display())))
}

/// sha256 digest, size, and whether the file is gzip.
async fn hash_file(file: &Path) -> Result<(String, i64, bool)> {
    let mut f = tokio::fs::File::open(file)
        .await
        .map_err(RuntimeError::io(format!("opening {}", file.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let (mut size, mut first) = (0i64, None);
    loop {
        let n = f
            .read(&mut buf)
            .await
            .map_err(RuntimeError::io(format!("reading {}", file.display())))?;
        if n == 0 {
            break;
        }
        first.get_or_insert_with(|| buf[..n.min(2)].to_vec());
        h.update(&buf[..n]);
        size += n as i64;
    }
    let gz = first.is_some_and(|b| b == [0x1f, 0x8b]);
    Ok((format!("sha256:{}", hex::encode(h.finalize())), size, gz))
}

async fn store_image(
    rt: &Containerd,
    lease: &str,
    name: &str,
    manifest: &Blob,
    extra: &HashMap<String, Blob>,
    dir: &Path,
) -> Result<ImageInfo> {
    let find = |digest: &str| -> PathBuf {
        extra
            .get(digest)
            .map(|b| b.file.clone())
            .unwrap_or_else(|| blob_path(dir, digest))
    };
    let m: Value = serde_json::from_slice(
        &tokio::fs::read(&manifest.file)
            .await
            .map_err(RuntimeError::io(format!("reading manifest of {name}")))?,
    )
    .map_err(|e| RuntimeError::BadImage {
        reference: name.to_string(),
        message: format!("manifest: {e}"),
    })?;
    let config_desc = descriptor(&manifest.file, &m["config"])?;
    let config: Value = read_json(&manifest.file, &find(&config_desc.digest)).await?;
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let layers: Vec<Descriptor> = m["layers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|l| descriptor(&manifest.file, l))
        .collect::<Result<_>>()?;
    if layers.len() != diff_ids.len() || layers.is_empty() {
        return Err(RuntimeError::BadImage {
            reference: name.to_string(),
            message: format!("{} layers but {} diff ids", layers.len(), diff_ids.len()),
        });
    }
    let chains = chain_ids(&diff_ids);
    let snap_label = format!("containerd.io/gc.ref.snapshot.{}", rt.snapshotter);

    // Children first, so a GC between writes never sees a dangling reference.
    for (layer, diff) in layers.iter().zip(&diff_ids) {
        let labels = HashMap::from([("containerd.io/uncompressed".to_string(), diff.clone())]);
        write_blob(rt, lease, layer, &find(&layer.digest), labels).await?;
    }
    let config_labels = HashMap::from([(snap_label, chains.last().cloned().unwrap_or_default())]);
    write_blob(
        rt,
        lease,
        &config_desc,
        &find(&config_desc.digest),
        config_labels,
    )
    .await?;
    let mut manifest_labels = HashMap::from([(
        "containerd.io/gc.ref.content.config".to_string(),
        config_desc.digest.clone(),
    )]);
    for (i, l) in layers.iter().enumerate() {
        manifest_labels.insert(
            format!("containerd.io/gc.ref.content.l.{i}"),
            l.digest.clone(),
        );
    }
    write_blob(rt, lease, &manifest.desc, &manifest.file, manifest_labels).await?;

    unpack(rt, lease, name, &layers, &diff_ids).await?;

    let image = cs::Image {
        name: name.to_string(),
        labels: HashMap::from([(LABEL_IMPORTED.to_string(), "true".to_string())]),
        target: Some(manifest.desc.clone()),
        ..Default::default()
    };
    let created = rt
        .images()
        .create(rt.req(
            cs::CreateImageRequest {
                image: Some(image.clone()),
                source_date_epoch: None,
            },
            Some(lease),
        ))
        .await;
    match created {
        Ok(_) => {}
        Err(s) if s.code() == tonic::Code::AlreadyExists => {
            rt.images()
                .update(rt.req(
                    cs::UpdateImageRequest {
                        image: Some(image),
                        update_mask: None,
                        source_date_epoch: None,
                    },
                    Some(lease),
                ))
                .await
                .map_err(RuntimeError::grpc("update image", name))?;
        }
        Err(s) => return Err(RuntimeError::grpc("create image", name)(s)),
    }
    tracing::info!(image = %name, manifest = %manifest.desc.digest, "image stored");
    use super::ContainerRuntime;
    rt.image(name)
        .await?
        .ok_or_else(|| RuntimeError::ImageNotFound(name.to_string()))
}

/// Writes one blob from a file into the content store, or just sets its labels if present.
pub(crate) async fn write_blob(
    rt: &Containerd,
    lease: &str,
    desc: &Descriptor,
    file: &Path,
    labels: HashMap<String, String>,
) -> Result<()> {
    let data = tokio::fs::read(file)
        .await
        .map_err(RuntimeError::io(format!("reading blob {}", file.display())))?;
    write_bytes(rt, lease, desc, data, labels).await
}

pub(crate) async fn write_bytes(
    rt: &Containerd,
    lease: &str,
    desc: &Descriptor,
    data: Vec<u8>,
    labels: HashMap<String, String>,
) -> Result<()> {
    let exists = rt
        .content()
        .info(rt.req(
            cs::InfoRequest {
                digest: desc.digest.clone(),
            },
            Some(lease),
        ))
        .await;
    if exists.is_ok() {
        // Present already: make sure it carries our GC labels.
        let info = cs::Info {
            digest: desc.digest.clone(),
            labels: labels.clone(),
            ..Default::default()
        };
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        rt.content()
            .update(rt.req(
                cs::UpdateRequest {
                    info: Some(info),
                    update_mask: Some(prost_types::FieldMask { paths }),
                },
                Some(lease),
            ))
            .await
            .map_err(RuntimeError::grpc("update content labels", &desc.digest))?;
        // Also bind it to this lease so it survives until the image record exists.
        let _ = rt
            .leases()
            .add_resource(rt.req(
                cs::AddResourceRequest {
                    id: lease.to_string(),
                    resource: Some(cs::Resource {
                        id: desc.digest.clone(),
                        r#type: "content".into(),
                    }),
                },
                None,
            ))
            .await;
        return Ok(());
    }
    let total = data.len() as i64;
    let r#ref = format!(
        "corral-{}-{:08x}",
        desc.digest.trim_start_matches("sha256:"),
        rand::thread_rng().gen::<u32>()
    );
    let mut reqs = Vec::new();
    let mut offset = 0i64;
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(CHUNK).collect()
    };
    let n = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let last = i + 1 == n;
        reqs.push(cs::WriteContentRequest {
            action: if last {
                cs::WriteAction::Commit as i32
            } else {
                cs::WriteAction::Write as i32
            },
            r#ref: r#ref.clone(),
            total,
            expected: desc.digest.clone(),
            offset,
            data: chunk.to_vec(),
            labels: if last { labels.clone() } else { HashMap::new() },
        });
        offset += chunk.len() as i64;
    }
    drop(data);
    let resp = rt
        .content()
        .write(rt.req(futures::stream::iter(reqs), Some(lease)))
        .await;
    let mut stream = match resp {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == tonic::Code::AlreadyExists => return Ok(()),
        Err(s) => return Err(RuntimeError::grpc("write content", &desc.digest)(s)),
    };
    while let Some(r) = stream.next().await {
        match r {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::AlreadyExists => return Ok(()),
            Err(s) => return Err(RuntimeError::grpc("write content", &desc.digest)(s)),
        }
    }
    Ok(())
}

/// Applies each layer onto its parent snapshot, committing it under its chain id.
pub(crate) async fn unpack(
    rt: &Containerd,
    lease: &str,
    name: &str,
    layers: &[Descriptor],
    diff_ids: &[String],
) -> Result<()> {
    let chains = chain_ids(diff_ids);
    let mut parent = String::new();
    for (i, layer) in layers.iter().enumerate() {
        let chain = &chains[i];
        let stat = rt
            .snapshots()
            .stat(rt.req(
                ss::StatSnapshotRequest {
                    snapshotter: rt.snapshotter.clone(),
                    key: chain.clone(),
                },
                Some(lease),
            ))
            .await;
        if stat.is_ok() {
            parent = chain.clone();
            continue;
        }
        let key = format!("extract-{:08x} {chain}", rand::thread_rng().gen::<u32>());
        let mounts = rt
            .snapshots()
            .prepare(rt.req(
                ss::PrepareSnapshotRequest {
                    snapshotter: rt.snapshotter.clone(),
                    key: key.clone(),
                    parent: parent.clone(),
                    labels: Default::default(),
                },
                Some(lease),
            ))
            .await
            .map_err(RuntimeError::grpc(
                "prepare snapshot",
                format!("{name} layer {i}"),
            ))?
            .into_inner()
            .mounts;
        let applied = rt
            .diff()
            .apply(rt.req(
                cs::ApplyRequest {
                    diff: Some(layer.clone()),
                    mounts,
                    payloads: Default::default(),
                    sync_fs: false,
                },
                Some(lease),
            ))
            .await;
        let applied = match applied {
            Ok(a) => a.into_inner().applied.map(|d| d.digest).unwrap_or_default(),
            Err(s) => {
                remove_snapshot(rt, &key).await;
                return Err(RuntimeError::grpc(
                    "apply layer",
                    format!("{name} layer {i}"),
                )(s));
            }
        };
        if applied != diff_ids[i] {
            remove_snapshot(rt, &key).await;
            return Err(RuntimeError::BadImage {
                reference: name.to_string(),
                message: format!(
                    "layer {i} unpacked to {applied}, config says {}",
                    diff_ids[i]
                ),
            });
        }
        let committed = rt
            .snapshots()
            .commit(rt.req(
                ss::CommitSnapshotRequest {
                    snapshotter: rt.snapshotter.clone(),
                    name: chain.clone(),
                    key: key.clone(),
                    labels: Default::default(),
                },
                Some(lease),
            ))
            .await;
        if let Err(s) = committed {
            remove_snapshot(rt, &key).await;
            if s.code() != tonic::Code::AlreadyExists {
                return Err(RuntimeError::grpc(
                    "commit snapshot",
                    format!("{name} layer {i}"),
                )(s));
            }
        }
        parent = chain.clone();
    }
    Ok(())
}

async fn remove_snapshot(rt: &Containerd, key: &str) {
    let _ = rt
        .snapshots()
        .remove(rt.req(
            ss::RemoveSnapshotRequest {
                snapshotter: rt.snapshotter.clone(),
                key: key.to_string(),
            },
            None,
        ))
        .await;
}

/// A containerd lease that expires on its own if the agent dies mid-import.
pub(crate) struct Lease {
    pub id: String,
}

impl Lease {
    pub async fn create(rt: &Containerd) -> Result<Self> {
        let id = format!("corral-{:016x}", rand::thread_rng().gen::<u64>());
        let expire = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
        rt.leases()
            .create(rt.req(
                cs::CreateRequest {
                    id: id.clone(),
                    labels: HashMap::from([(
                        "containerd.io/gc.expire".to_string(),
                        expire.to_string(),
                    )]),
                },
                None,
            ))
            .await
            .map_err(RuntimeError::grpc("create lease", &id))?;
        Ok(Self { id })
    }

    pub async fn delete(self, rt: &Containerd) {
        let _ = rt
            .leases()
            .delete(rt.req(
                cs::DeleteRequest {
                    id: self.id.clone(),
                    sync: false,
                },
                None,
            ))
            .await;
    }
}

/// Pulls from an OCI registry with `oci-client`: manifest (following an index to this
/// platform), config and layers are fetched into scratch files, then stored and unpacked
/// exactly like an imported archive.
pub async fn pull(rt: &Containerd, reference: &str) -> Result<ImageInfo> {
    use oci_client::manifest as m;
    let name = normalize_reference(reference);
    let perr = |message: String| RuntimeError::Pull {
        reference: name.clone(),
        message,
    };
    let r: oci_client::Reference = name
        .parse()
        .map_err(|e| perr(format!("invalid reference: {e}")))?;
    let registry = r.registry().to_string();
    let allowed = &rt.registries.allowed;
    let host = registry
        .rsplit_once(':')
        .map_or(registry.as_str(), |(h, _)| h);
    if !allowed.is_empty() && !allowed.iter().any(|a| *a == registry || a == host) {
        return Err(perr(format!(
            "registry {registry:?} is not in this node's allowed registries {allowed:?}"
        )));
    }
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::HttpsExcept(rt.registries.insecure.clone()),
        ..Default::default()
    });
    let auth = oci_client::secrets::RegistryAuth::Anonymous;
    let accepted = [
        m::OCI_IMAGE_MEDIA_TYPE,
        m::IMAGE_MANIFEST_MEDIA_TYPE,
        m::OCI_IMAGE_INDEX_MEDIA_TYPE,
        m::IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    ];
    let (mut bytes, mut digest) = client
        .pull_manifest_raw(&r, &auth, &accepted)
        .await
        .map_err(|e| perr(e.to_string()))?;
    let mut manifest: Value =
        serde_json::from_slice(&bytes).map_err(|e| perr(format!("manifest: {e}")))?;
    if manifest.get("manifests").is_some() {
        let pick = manifest["manifests"]
            .as_array()
            .and_then(|ms| {
                ms.iter().find(|m| {
                    let p = &m["platform"];
                    p["os"] == "linux" && p["architecture"] == super::containerd::oci_arch()
                })
            })
            .and_then(|m| m["digest"].as_str())
            .ok_or_else(|| {
                perr(format!(
                    "no manifest for linux/{}",
                    super::containerd::oci_arch()
                ))
            })?
            .to_string();
        let by_digest =
            oci_client::Reference::with_digest(registry.clone(), r.repository().to_string(), pick);
        (bytes, digest) = client
            .pull_manifest_raw(&by_digest, &auth, &accepted)
            .await
            .map_err(|e| perr(e.to_string()))?;
        manifest = serde_json::from_slice(&bytes).map_err(|e| perr(format!("manifest: {e}")))?;
    }
    let media_type = manifest["mediaType"]
        .as_str()
        .unwrap_or(m::OCI_IMAGE_MEDIA_TYPE)
        .to_string();

    let dir = rt
        .tmp_dir
        .join(format!("pull-{:016x}", rand::thread_rng().gen::<u64>()));
    let _guard = TempDir(dir.clone());
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(RuntimeError::io(format!("creating {}", dir.display())))?;
    let manifest_file = dir.join("manifest.json");
    tokio::fs::write(&manifest_file, &bytes)
        .await
        .map_err(RuntimeError::io(format!(
            "writing {}",
            manifest_file.display()
        )))?;
    let mut wanted = vec![manifest["config"].clone()];
    wanted.extend(manifest["layers"].as_array().cloned().unwrap_or_default());
    let mut extra = HashMap::new();
    for d in wanted {
        let desc = descriptor(&manifest_file, &d)?;
        let file = dir.join(desc.digest.trim_start_matches("sha256:"));
        let out = tokio::fs::File::create(&file)
            .await
            .map_err(RuntimeError::io(format!("creating {}", file.display())))?;
        client
            .pull_blob(&r, desc.digest.as_str(), out)
            .await
            .map_err(|e| perr(format!("blob {}: {e}", desc.digest)))?;
        extra.insert(desc.digest.clone(), Blob { desc, file });
    }
    let manifest_blob = Blob {
        desc: Descriptor {
            media_type,
            digest,
            size: bytes.len() as i64,
            annotations: Default::default(),
        },
        file: manifest_file,
    };
    let lease = Lease::create(rt).await?;
    let stored = store_image(rt, &lease.id, &name, &manifest_blob, &extra, &dir).await;
    lease.delete(rt).await;
    stored
}
