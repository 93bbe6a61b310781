//! Storing an image in containerd: blobs written into the content store under a lease (with
//! the GC reference labels containerd's own client sets), layers unpacked into the snapshotter
//! through the diff service, then the image record. Archive import and pull both end here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use containerd_client::services::v1 as cs;
use containerd_client::services::v1::snapshots as ss;
use containerd_client::types::Descriptor;
use futures::StreamExt;
use rand::Rng;
use serde_json::Value;

use crate::image::{chain_ids, diff_ids, ImageInfo};
use crate::import::blob_path;
use crate::{Client, Error, Result};

pub(crate) const CHUNK: usize = 1 << 20;
/// Label on every image record Corral wrote.
pub const LABEL_IMPORTED: &str = "corral.image.imported";

pub(crate) fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::BadArchive {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Removes the extraction directory even when the import fails half-way.
pub(crate) struct TempDir(pub PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A blob on disk with the descriptor it will have in the content store.
pub(crate) struct Blob {
    pub desc: Descriptor,
    pub file: PathBuf,
}

pub(crate) fn descriptor(archive: &Path, v: &Value) -> Result<Descriptor> {
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

pub(crate) async fn read_json(archive: &Path, file: &Path) -> Result<Value> {
    let bytes = tokio::fs::read(file)
        .await
        .map_err(|e| bad(archive, format!("{}: {e}", file.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(archive, format!("{}: {e}", file.display())))
}

pub(crate) async fn store_image(
    rt: &Client,
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
            .map_err(Error::io(format!("reading manifest of {name}")))?,
    )
    .map_err(|e| Error::BadImage {
        reference: name.to_string(),
        message: format!("manifest: {e}"),
    })?;
    let config_desc = descriptor(&manifest.file, &m["config"])?;
    let config: Value = read_json(&manifest.file, &find(&config_desc.digest)).await?;
    let diff_ids = diff_ids(&config);
    let layers: Vec<Descriptor> = m["layers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|l| descriptor(&manifest.file, l))
        .collect::<Result<_>>()?;
    if layers.len() != diff_ids.len() || layers.is_empty() {
        return Err(Error::BadImage {
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
                .map_err(Error::grpc("update image", name))?;
        }
        Err(s) => return Err(Error::grpc("create image", name)(s)),
    }
    tracing::info!(image = %name, manifest = %manifest.desc.digest, "image stored");
    rt.image(name)
        .await?
        .ok_or_else(|| Error::ImageNotFound(name.to_string()))
}

/// Writes one blob from a file into the content store, or just sets its labels if present.
pub(crate) async fn write_blob(
    rt: &Client,
    lease: &str,
    desc: &Descriptor,
    file: &Path,
    labels: HashMap<String, String>,
) -> Result<()> {
    let data = tokio::fs::read(file)
        .await
        .map_err(Error::io(format!("reading blob {}", file.display())))?;
    write_bytes(rt, lease, desc, data, labels).await
}

pub(crate) async fn write_bytes(
    rt: &Client,
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
            .map_err(Error::grpc("update content labels", &desc.digest))?;
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
        Err(s) => return Err(Error::grpc("write content", &desc.digest)(s)),
    };
    while let Some(r) = stream.next().await {
        match r {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::AlreadyExists => return Ok(()),
            Err(s) => return Err(Error::grpc("write content", &desc.digest)(s)),
        }
    }
    Ok(())
}

/// Applies each layer onto its parent snapshot, committing it under its chain id.
pub(crate) async fn unpack(
    rt: &Client,
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
            .map_err(Error::grpc("prepare snapshot", format!("{name} layer {i}")))?
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
                return Err(Error::grpc("apply layer", format!("{name} layer {i}"))(s));
            }
        };
        if applied != diff_ids[i] {
            remove_snapshot(rt, &key).await;
            return Err(Error::BadImage {
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
                return Err(Error::grpc("commit snapshot", format!("{name} layer {i}"))(
                    s,
                ));
            }
        }
        parent = chain.clone();
    }
    Ok(())
}

async fn remove_snapshot(rt: &Client, key: &str) {
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
    pub async fn create(rt: &Client) -> Result<Self> {
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
            .map_err(Error::grpc("create lease", &id))?;
        Ok(Self { id })
    }

    pub async fn delete(self, rt: &Client) {
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
