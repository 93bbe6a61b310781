//! `persistentVolumeClaim` volumes: the directory of the PersistentVolume a claim is bound to
//! (hostPath or local, as the local-path provisioner makes them), as the kubelet mounts it.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

/// The host directory of claim `claim`, from the claim and the volume it names. Errors are the
/// reasons a kubelet gives in its FailedMount events.
pub fn claim_dir(
    claim: &str,
    pvc: Option<&PersistentVolumeClaim>,
    pv: Option<&PersistentVolume>,
) -> Result<PathBuf, String> {
    let Some(pvc) = pvc else {
        return Err(format!("persistentvolumeclaim {claim:?} not found"));
    };
    let volume = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("persistentvolumeclaim {claim:?} is not bound to a volume yet"))?;
    let Some(pv) = pv else {
        return Err(format!("persistentvolume {volume:?} not found"));
    };
    let spec = pv.spec.as_ref();
    spec.and_then(|s| s.host_path.as_ref().map(|h| h.path.clone()))
        .or_else(|| spec.and_then(|s| s.local.as_ref().map(|l| l.path.clone())))
        .map(PathBuf::from)
        .ok_or_else(|| {
            format!("persistentvolume {volume:?} is neither hostPath nor local: not supported by this node")
        })
}

/// Looks the claim and its volume up, then creates the directory if needed.
pub async fn resolve_claim(
    client: &corral_api::Client,
    namespace: &str,
    claim: &str,
) -> Result<PathBuf, String> {
    let pvc: Option<PersistentVolumeClaim> = client
        .get_opt(namespace, claim)
        .await
        .map_err(|e| format!("reading persistentvolumeclaim {claim:?}: {e}"))?;
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
            .map_err(|e| format!("reading persistentvolume {volume:?}: {e}"))?
    };
    let dir = claim_dir(claim, pvc.as_ref(), pv.as_ref())?;
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
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
            claim_dir("data-web-0", None, None).unwrap_err(),
            "persistentvolumeclaim \"data-web-0\" not found"
        );
        assert_eq!(
            claim_dir("data-web-0", Some(&pvc(None)), None).unwrap_err(),
            "persistentvolumeclaim \"data-web-0\" is not bound to a volume yet"
        );
        let nfs: PersistentVolume = serde_json::from_value(
            json!({"metadata": {"name": "pvc-1"}, "spec": {"nfs": {"server": "x", "path": "/"}}}),
        )
        .unwrap();
        assert!(
            claim_dir("data-web-0", Some(&pvc(Some("pvc-1"))), Some(&nfs))
                .unwrap_err()
                .contains("neither hostPath nor local")
        );
    }
}
