//! Image archives into containerd: an OCI image-layout archive or a docker-archive tar is
//! unpacked into scratch space, each named image in it found (docker archives get a schema 2
//! manifest made for them), then stored like a pulled image (see `store`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use containerd_client::types::Descriptor;
use rand::Rng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::image::{normalize_reference, oci_arch};
use crate::store::{bad, descriptor, read_json, store_image, Blob, Lease, TempDir, CHUNK};
use crate::{Client, Error, Result};

impl Client {
    /// Imports an OCI-layout or docker-archive tar; returns the references it created.
    pub async fn import_archive(&self, path: &Path) -> Result<Vec<String>> {
        let dir = self
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
            .map_err(Error::io(format!("unpacking {}", path.display())))?;
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
        let lease = Lease::create(self).await?;
        let mut names = Vec::new();
        let mut result = Ok(());
        for (name, manifest_blob, extra_blobs) in images {
            match store_image(self, &lease.id, &name, &manifest_blob, &extra_blobs, &dir).await {
                Ok(_) => names.push(name),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        lease.delete(self).await;
        result.map(|()| names)
    }
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
                        p.is_null() || (p["os"] == "linux" && p["architecture"] == oci_arch())
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
            .map_err(Error::io(format!("writing {}", file.display())))?;
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

pub(crate) fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// sha256 digest, size, and whether the file is gzip.
async fn hash_file(file: &Path) -> Result<(String, i64, bool)> {
    let mut f = tokio::fs::File::open(file)
        .await
        .map_err(Error::io(format!("opening {}", file.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let (mut size, mut first) = (0i64, None);
    loop {
        let n = f
            .read(&mut buf)
            .await
            .map_err(Error::io(format!("reading {}", file.display())))?;
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
