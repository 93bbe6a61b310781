//! Pulls from OCI registries with `oci-client`, limited to the node's allowed registries:
//! manifest (following an index to this platform), config and layers are fetched into scratch
//! files, then stored and unpacked exactly like an imported archive.

use std::collections::HashMap;

use containerd_client::types::Descriptor;
use rand::Rng;
use serde_json::Value;

use crate::image::{normalize_reference, oci_arch, ImageInfo};
use crate::store::{descriptor, store_image, Blob, Lease, TempDir};
use crate::{Client, Error, Result};

/// Which registries pulls may reach, and which of them speak plain HTTP.
#[derive(Debug, Clone, Default)]
pub struct Registries {
    /// `host[:port]` reached over plain HTTP.
    pub insecure: Vec<String>,
    /// When non-empty, only these `host[:port]` are pulled from.
    pub allowed: Vec<String>,
}

impl Client {
    /// Pulls an image from its registry (anonymously); an `allowed` list refuses other hosts.
    pub async fn pull(&self, reference: &str) -> Result<ImageInfo> {
        use oci_client::manifest as m;
        let name = normalize_reference(reference);
        let perr = |message: String| Error::Pull {
            reference: name.clone(),
            message,
        };
        let r: oci_client::Reference = name
            .parse()
            .map_err(|e| perr(format!("invalid reference: {e}")))?;
        let registry = r.registry().to_string();
        let allowed = &self.registries.allowed;
        let host = registry
            .rsplit_once(':')
            .map_or(registry.as_str(), |(h, _)| h);
        if !allowed.is_empty() && !allowed.iter().any(|a| *a == registry || a == host) {
            return Err(perr(format!(
                "registry {registry:?} is not in this node's allowed registries {allowed:?}"
            )));
        }
        let client = oci_client::Client::new(oci_client::client::ClientConfig {
            protocol: oci_client::client::ClientProtocol::HttpsExcept(
                self.registries.insecure.clone(),
            ),
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
                        p["os"] == "linux" && p["architecture"] == oci_arch()
                    })
                })
                .and_then(|m| m["digest"].as_str())
                .ok_or_else(|| perr(format!("no manifest for linux/{}", oci_arch())))?
                .to_string();
            let by_digest = oci_client::Reference::with_digest(
                registry.clone(),
                r.repository().to_string(),
                pick,
            );
            (bytes, digest) = client
                .pull_manifest_raw(&by_digest, &auth, &accepted)
                .await
                .map_err(|e| perr(e.to_string()))?;
            manifest =
                serde_json::from_slice(&bytes).map_err(|e| perr(format!("manifest: {e}")))?;
        }
        let media_type = manifest["mediaType"]
            .as_str()
            .unwrap_or(m::OCI_IMAGE_MEDIA_TYPE)
            .to_string();

        let dir = self
            .tmp_dir
            .join(format!("pull-{:016x}", rand::thread_rng().gen::<u64>()));
        let _guard = TempDir(dir.clone());
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(Error::io(format!("creating {}", dir.display())))?;
        let manifest_file = dir.join("manifest.json");
        tokio::fs::write(&manifest_file, &bytes)
            .await
            .map_err(Error::io(format!("writing {}", manifest_file.display())))?;
        let mut wanted = vec![manifest["config"].clone()];
        wanted.extend(manifest["layers"].as_array().cloned().unwrap_or_default());
        let mut extra = HashMap::new();
        for d in wanted {
            let desc = descriptor(&manifest_file, &d)?;
            let file = dir.join(desc.digest.trim_start_matches("sha256:"));
            let out = tokio::fs::File::create(&file)
                .await
                .map_err(Error::io(format!("creating {}", file.display())))?;
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
        let lease = Lease::create(self).await?;
        let stored = store_image(self, &lease.id, &name, &manifest_blob, &extra, &dir).await;
        lease.delete(self).await;
        stored
    }
}
