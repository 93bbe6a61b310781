//! Learning the control planes from the cluster, as a k3s agent does: every server keeps
//! itself in the `default/kubernetes` Endpoints while it lives, and a long-running component
//! follows that object so that its client can dial the others when the one it used dies.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Endpoints;

use super::watcher::{watcher, Event, WatcherConfig};
use crate::Client;

/// Where the servers are listed.
pub const NAMESPACE: &str = "default";
pub const NAME: &str = "kubernetes";

/// The `host:port` of every address of every subset, in the order they are listed.
pub fn addresses(endpoints: &Endpoints) -> Vec<String> {
    let mut out = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        let ports: Vec<i32> = subset
            .ports
            .iter()
            .flatten()
            .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .map(|p| p.port)
            .collect();
        for address in subset.addresses.iter().flatten() {
            for port in &ports {
                let host = &address.ip;
                out.push(if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                });
            }
        }
    }
    out
}

/// Follows the `default/kubernetes` Endpoints for as long as the task runs, handing every
/// listed server to `client`'s dialer. A client that may not read them keeps the servers it
/// was given.
pub fn follow(client: &Client) -> tokio::task::JoinHandle<()> {
    let servers = client.servers().clone();
    let config = WatcherConfig {
        namespace: NAMESPACE.into(),
        ..WatcherConfig::fields(format!("metadata.name={NAME}"))
    };
    let events = watcher::<Endpoints>(client.clone(), config);
    tokio::spawn(async move {
        futures::pin_mut!(events);
        while let Some(event) = events.next().await {
            let listed = match event {
                Event::Restarted(list, _) => list.first().map(addresses),
                Event::Applied(ep) => Some(addresses(&ep)),
                Event::Deleted(_) | Event::Bookmark(_) => None,
            };
            // An empty list (every server between leases) teaches nothing: keep what we had.
            if let Some(listed) = listed.filter(|l| !l.is_empty()) {
                if servers.learn(&listed) {
                    tracing::info!(servers = ?servers.urls(), "control planes learned from the cluster");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_address_of_every_subset_with_its_ports() {
        let ep: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "subsets": [
                {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"name": "https", "port": 6443}]},
                {"addresses": [{"ip": "fd00::3"}], "ports": [{"name": "https", "port": 7443}, {"name": "dns", "port": 53, "protocol": "UDP"}]},
            ]
        }))
        .unwrap();
        assert_eq!(
            addresses(&ep),
            ["10.0.0.1:6443", "10.0.0.2:6443", "[fd00::3]:7443"]
        );
        assert!(addresses(&Endpoints::default()).is_empty());
    }
}
