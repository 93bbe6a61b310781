//! Images as containerd holds them: Kubernetes' reference normalisation, the lookup of an
//! image's config and top-layer chain id (following an index to this platform's manifest), and
//! the OCI chain-id rule the import and the rootfs snapshots share.

use containerd_client::services::v1 as cs;
use containerd_client::types::Descriptor;
use futures::StreamExt;

use crate::{Client, Error, Result};

pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The parts of an image config a container spec needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    /// Normalised reference (`docker.io/library/busybox:1`).
    pub reference: String,
    /// Config digest, Kubernetes' imageID.
    pub id: String,
    pub config: ImageConfig,
}

/// Kubernetes' image name normalisation: `nginx` → `docker.io/library/nginx:latest`.
pub fn normalize_reference(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let (repo, tag) = match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, Some(t)),
        _ => (name, None),
    };
    let first = repo.split('/').next().unwrap_or_default();
    let has_domain =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_domain {
        repo.to_string()
    } else if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    };
    match (tag, digest) {
        (_, Some(d)) => format!("{full}@{d}"),
        (Some(t), None) => format!("{full}:{t}"),
        (None, None) => format!("{full}:latest"),
    }
}

impl Client {
    /// The image if it is present in containerd.
    pub async fn image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        Ok(self.image_with_chain(reference).await?.map(|(i, _)| i))
    }

    /// Reads a whole blob from the content store.
    pub(crate) async fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let mut stream = self
            .content()
            .read(self.req(
                cs::ReadContentRequest {
                    digest: digest.to_string(),
                    offset: 0,
                    size: 0,
                },
                None,
            ))
            .await
            .map_err(Error::grpc("read content", digest))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend(chunk.map_err(Error::grpc("read content", digest))?.data);
        }
        Ok(out)
    }

    /// Follows an index to this platform's manifest.
    pub(crate) async fn resolve_manifest(
        &self,
        reference: &str,
        target: &Descriptor,
    ) -> Result<(Descriptor, serde_json::Value)> {
        let mut desc = target.clone();
        for _ in 0..4 {
            let bytes = self.read_blob(&desc.digest).await?;
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| Error::BadImage {
                    reference: reference.to_string(),
                    message: format!("manifest {}: {e}", desc.digest),
                })?;
            let is_index = desc.media_type == MT_OCI_INDEX
                || desc.media_type == MT_DOCKER_LIST
                || v.get("manifests").is_some();
            if !is_index {
                return Ok((desc, v));
            }
            desc = pick_platform(&v).ok_or_else(|| Error::BadImage {
                reference: reference.to_string(),
                message: format!("no manifest for linux/{}", oci_arch()),
            })?;
        }
        Err(Error::BadImage {
            reference: reference.to_string(),
            message: "nested indexes too deep".into(),
        })
    }

    /// Image config and top-layer chain id for a reference, cached by manifest digest.
    pub async fn image_with_chain(&self, reference: &str) -> Result<Option<(ImageInfo, String)>> {
        let reference = normalize_reference(reference);
        let image = match self
            .images()
            .get(self.req(
                cs::GetImageRequest {
                    name: reference.clone(),
                },
                None,
            ))
            .await
        {
            Ok(r) => r.into_inner().image,
            Err(s) if s.code() == tonic::Code::NotFound => None,
            Err(s) => return Err(Error::grpc("get image", &reference)(s)),
        };
        let Some(target) = image.and_then(|i| i.target) else {
            return Ok(None);
        };
        if let Some((info, chain)) = self.image_cache.lock().get(&target.digest) {
            let mut info = info.clone();
            info.reference = reference.clone();
            return Ok(Some((info, chain.clone())));
        }
        let (_, manifest) = self.resolve_manifest(&reference, &target).await?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| Error::BadImage {
                reference: reference.clone(),
                message: "manifest has no config".into(),
            })?
            .to_string();
        let config: serde_json::Value =
            serde_json::from_slice(&self.read_blob(&config_digest).await?).map_err(|e| {
                Error::BadImage {
                    reference: reference.clone(),
                    message: format!("config: {e}"),
                }
            })?;
        let diff_ids = diff_ids(&config);
        let chain = chain_ids(&diff_ids).pop().ok_or_else(|| Error::BadImage {
            reference: reference.clone(),
            message: "image has no layers".into(),
        })?;
        let c = &config["config"];
        let strs = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let info = ImageInfo {
            reference: reference.clone(),
            id: config_digest,
            config: ImageConfig {
                entrypoint: strs(&c["Entrypoint"]),
                cmd: strs(&c["Cmd"]),
                env: strs(&c["Env"]),
                working_dir: c["WorkingDir"].as_str().unwrap_or_default().to_string(),
                user: c["User"].as_str().unwrap_or_default().to_string(),
            },
        };
        self.image_cache
            .lock()
            .insert(target.digest.clone(), (info.clone(), chain.clone()));
        Ok(Some((info, chain)))
    }
}

/// This machine's architecture as OCI platforms name it.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn pick_platform(index: &serde_json::Value) -> Option<Descriptor> {
    let manifests = index["manifests"].as_array()?;
    let fits = |m: &&serde_json::Value| {
        let p = &m["platform"];
        p.is_null() || (p["os"] == "linux" && p["architecture"] == oci_arch())
    };
    let m = manifests.iter().find(fits)?;
    Some(Descriptor {
        media_type: m["mediaType"].as_str().unwrap_or_default().to_string(),
        digest: m["digest"].as_str()?.to_string(),
        size: m["size"].as_i64().unwrap_or_default(),
        annotations: Default::default(),
    })
}

/// OCI chain ids: chain(0) = diff(0); chain(n) = sha256(chain(n-1) + " " + diff(n)).
/// The uncompressed layer digests an image config lists (`rootfs.diff_ids`).
pub fn diff_ids(config: &serde_json::Value) -> Vec<String> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{prev} {d}").as_bytes()))
            ),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{chain_ids, normalize_reference as n};

    #[test]
    fn references_are_normalised_like_kubernetes() {
        assert_eq!(n("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(
            n("fedek3/workshop-uns:v0.2.0"),
            "docker.io/fedek3/workshop-uns:v0.2.0"
        );
        assert_eq!(n("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
        assert_eq!(n("localhost/app:1"), "localhost/app:1");
        assert_eq!(
            n("busybox@sha256:abc"),
            "docker.io/library/busybox@sha256:abc"
        );
    }

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let ids = chain_ids(&["sha256:a".into(), "sha256:b".into()]);
        assert_eq!(ids[0], "sha256:a");
        // sha256("sha256:a sha256:b")
        assert!(ids[1].starts_with("sha256:") && ids[1].len() == 71);
        assert_eq!(chain_ids(&[]).len(), 0);
    }
}
