//! `persistentVolumeClaim` volumes: the directory of the PersistentVolume a claim is bound to
//! (hostPath or local, as the local-path provisioner makes them), as the kubelet mounts it.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

/// Why a claim has no directory yet, in the words of kubelet's FailedMount events.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("persistentvolumeclaim {claim:?} not found")]
    ClaimNotFound { claim: String },
    #[error("persistentvolumeclaim {claim:?} is not bound to a volume yet")]
    NotBound { claim: String },
    #[error("persistentvolume {volume:?} not found")]
    VolumeNotFound { volume: String },
    #[error(
        "persistentvolume {volume:?} is neither hostPath nor local: not supported by this node"
    )]
    Unsupported { volume: String },
    #[error("reading {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: corral_api::client::Error,
    },
    #[error("creating {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The host directory of claim `claim`, from the claim and the volume it names. Errors are the
/// reasons a kubelet gives in its FailedMount events.
pub fn claim_dir(
    claim: &str,
    pvc: Option<&PersistentVolumeClaim>,
    pv: Option<&PersistentVolume>,
) -> Result<PathBuf, ClaimError> {
    let Some(pvc) = pvc else {
        return Err(ClaimError::ClaimNotFound {
            claim: claim.into(),
        });
    };
    let volume = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ClaimError::NotBound {
            claim: claim.into(),
        })?;
    let Some(pv) = pv else {
        return Err(ClaimError::VolumeNotFound { volume });
    };
    let spec = pv.spec.as_ref();
    spec.and_then(|s| s.host_path.as_ref().map(|h| h.path.clone()))
        .or_else(|| spec.and_then(|s| s.local.as_ref().map(|l| l.path.clone())))
        .map(PathBuf::from)
        .ok_or(ClaimError::Unsupported { volume })
}

/// Looks the claim and its volume up, then creates the directory if needed.
pub async fn resolve_claim(
    client: &corral_api::Client,
    namespace: &str,
    claim: &str,
) -> Result<PathBuf, ClaimError> {
    let pvc: Option<PersistentVolumeClaim> =
        client
            .get_opt(namespace, claim)
            .await
            .map_err(|source| ClaimError::Api {
                what: format!("persistentvolumeclaim {claim:?}"),
                source,
            })?;
    let volume = pvc
        .as_ref()
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    let pv: Option<PersistentVolume> = if volume.is_empty() {
        None
    } else {
        client
            .get_opt("", &volume)
            .await
            .map_err(|source| ClaimError::Api {
                what: format!("persistentvolume {volume:?}"),
                source,
            })?
    };
    let dir = claim_dir(claim, pvc.as_ref(), pv.as_ref())?;
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|source| ClaimError::Io {
            path: dir.clone(),
            source,
        })?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bound_claim_resolves_to_its_volume_path_and_the_rest_say_why_not() {
        let pvc = |volume: Option<&str>| -> PersistentVolumeClaim {
            serde_json::from_value(json!({"metadata": {"name": "data-web-0"},
                "spec": {"volumeName": volume}}))
            .unwrap()
        };
        let pv: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": "pvc-1"},
            "spec": {"hostPath": {"path": "/var/lib/corral/storage/pvc-1"}}}))
        .unwrap();
        assert_eq!(
            claim_dir("data-web-0", Some(&pvc(Some("pvc-1"))), Some(&pv)).unwrap(),
            PathBuf::from("/var/lib/corral/storage/pvc-1")
        );
        assert_eq!(
            claim_dir("data-web-0", None, None).unwrap_err().to_string(),
            "persistentvolumeclaim \"data-web-0\" not found"
        );
        assert_eq!(
            claim_dir("data-web-0", Some(&pvc(None)), None)
                .unwrap_err()
                .to_string(),
            "persistentvolumeclaim \"data-web-0\" is not bound to a volume yet"
        );
        let nfs: PersistentVolume = serde_json::from_value(
            json!({"metadata": {"name": "pvc-1"}, "spec": {"nfs": {"server": "x", "path": "/"}}}),
        )
        .unwrap();
        assert!(
            claim_dir("data-web-0", Some(&pvc(Some("pvc-1"))), Some(&nfs))
                .unwrap_err()
                .to_string()
                .contains("neither hostPath nor local")
        );
    }
}
