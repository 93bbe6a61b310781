//! The cluster DNS Service, created at start as k3s ships CoreDNS's: `kube-system/kube-dns`
//! at `--cluster-dns` (53/UDP `dns`, 53/TCP `dns-tcp`), with no selector: every node's proxy
//! answers behind it (`proxy/src/dns/`), so it has no Endpoints of its own.

use std::net::Ipv4Addr;

use corral_api::kinds;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::registry::{ApiError, Registry};

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "kube-dns";

/// The Service, as a manifest. Pure.
pub fn service(cluster_ip: Ipv4Addr) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip.to_string(),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
        },
    })
}

/// Creates the Service unless it exists. A refusal (the address outside the Service range or
/// taken) is logged, not fatal: the cluster runs, without DNS at that address.
pub async fn ensure(registry: &Registry, cluster_ip: Ipv4Addr) {
    match registry
        .create(&kinds::SERVICES, NAMESPACE, service(cluster_ip), false)
        .await
    {
        Ok(_) => {
            info!(service = "kube-system/kube-dns", ip = %cluster_ip, "created the cluster DNS Service")
        }
        Err(ApiError::AlreadyExists { .. }) => {}
        Err(e) => {
            warn!(service = "kube-system/kube-dns", ip = %cluster_ip, error = %e, "creating the cluster DNS Service failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_dns_service_is_created_once_at_its_address_without_a_selector() {
        let dir = tempfile::tempdir().unwrap();
        let registry = crate::registry::testutil::registry(&dir).await;
        let ip = Ipv4Addr::new(10, 43, 0, 10);
        ensure(&registry, ip).await;
        ensure(&registry, ip).await;
        let got = registry
            .get(&kinds::SERVICES, NAMESPACE, NAME)
            .await
            .expect("kube-dns exists");
        let spec = &got["spec"];
        assert_eq!(spec["clusterIP"], "10.43.0.10");
        assert_eq!(spec["selector"], Value::Null);
        let ports: Vec<(String, String)> = spec["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().into(),
                    p["protocol"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(
            ports,
            [
                ("dns".into(), "UDP".into()),
                ("dns-tcp".into(), "TCP".into())
            ]
        );
    }
}
