//! The agent's end of the pod network (`corral-podnet` does the work): watches the Nodes
//! through the runtime's watcher and resyncs routes or VXLAN entries on every change and every
//! 30 s (repairing deleted routes), publishes this node's VTEP MAC in its Node annotation, and
//! keeps the pod egress masquerade and forward chains.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use corral_api::runtime::reflector::{self, Store};
use corral_api::runtime::watcher::{watcher, WatcherConfig};
use corral_api::Client;
use corral_podnet::model::format_mac;
use corral_podnet::netlink::{self, Netlink};
use corral_podnet::{Cidr, Mode, NodeInfo, VTEP_MAC_ANNOTATION, VXLAN_OVERHEAD};
use k8s_openapi::api::core::v1::Node;
use tracing::{debug, info, warn};

#[derive(Debug, Clone)]
pub struct PodNetConfig {
    pub node_name: String,
    pub mode: Mode,
    pub cluster_cidr: Cidr,
    /// Used until the Node object shows an InternalIP.
    pub node_ip: Option<Ipv4Addr>,
    pub resync: Duration,
}

/// The pod MTU: in VXLAN mode the MTU of the interface holding `node_ip` minus VXLAN's 50
/// bytes (1450 when it cannot be read); otherwise the CNI default.
pub async fn pod_mtu(mode: Mode, node_ip: Option<Ipv4Addr>) -> Option<u32> {
    if mode != Mode::Vxlan {
        return None;
    }
    let link_mtu = match (Netlink::connect(), node_ip) {
        (Ok(nl), Some(ip)) => nl.interface_of(ip).await.ok().map(|(_, mtu)| mtu),
        _ => None,
    };
    Some(link_mtu.unwrap_or(1500).saturating_sub(VXLAN_OVERHEAD))
}

/// Runs until the process ends.
pub async fn run(client: Client, cfg: PodNetConfig) {
    let store: Arc<Store<Node>> = Store::new();
    let changed = Arc::new(tokio::sync::Notify::new());
    let c = changed.clone();
    store.on_change(move |_| c.notify_one());
    tokio::spawn(reflector::reflect(
        store.clone(),
        watcher::<Node>(client.clone(), WatcherConfig::all()),
    ));
    store.wait_synced().await;
    let nl = match Netlink::connect() {
        Ok(nl) => nl,
        Err(e) => {
            warn!(error = %e, "pod network disabled: no netlink socket");
            return;
        }
    };
    info!(mode = %cfg.mode, cluster_cidr = %cfg.cluster_cidr, "pod network");
    let mut last: Option<Vec<NodeInfo>> = None;
    let mut periodic = true;
    loop {
        // Node status updates (heartbeats) change nothing the network reads: only a change
        // of what the planner sees, or the periodic repair, goes to the kernel.
        let nodes: Vec<NodeInfo> = store
            .list()
            .iter()
            .map(|n| NodeInfo::from_node(n))
            .collect();
        if periodic || last.as_ref() != Some(&nodes) {
            sync_once(&client, &nl, &nodes, &cfg).await;
            last = Some(nodes);
        }
        periodic = tokio::select! {
            _ = changed.notified() => false,
            _ = tokio::time::sleep(cfg.resync) => true,
        };
    }
}

async fn sync_once(client: &Client, nl: &Netlink, nodes: &[NodeInfo], cfg: &PodNetConfig) {
    let own = nodes.iter().find(|n| n.name == cfg.node_name);
    // Taken at every sync: the control plane may assign the pod CIDR after the agent starts.
    let pod_cidr = own.and_then(|n| n.pod_cidr);
    let node_ip = own.and_then(|n| n.ip).or(cfg.node_ip);
    match netlink::sync(
        nl,
        cfg.mode,
        Some(&cfg.node_name),
        node_ip,
        cfg.cluster_cidr,
        nodes,
    )
    .await
    {
        Ok((report, mac)) => {
            for a in &report.actions {
                info!(action = %a, "pod network");
            }
            for (node, why) in &report.skipped {
                debug!(node = %node, reason = %why, "no pod route");
            }
            if let Some(mac) = mac {
                let published = own.and_then(|n| n.vtep_mac);
                if published != Some(mac) {
                    publish_vtep_mac(client, &cfg.node_name, &format_mac(&mac)).await;
                }
            }
        }
        Err(e) => warn!(error = %e, "pod network sync failed"),
    }
    let cluster = cfg.cluster_cidr;
    let r = tokio::task::spawn_blocking(move || {
        corral_podnet::iptables::System::default().sync(cluster, pod_cidr)
    })
    .await;
    match r {
        Ok(Ok(true)) => {
            info!(pod_cidr = ?pod_cidr.map(|c| c.to_string()), "pod egress rules written")
        }
        Ok(Ok(false)) => {}
        Ok(Err(e)) => warn!(error = %e, "pod egress rules"),
        Err(e) => warn!(error = %e, "pod egress rules task"),
    }
}

/// Sets `corral.io/vtep-mac` on this node's Node (a conflict is retried by the next sync,
/// which the watch event of any write triggers).
async fn publish_vtep_mac(client: &Client, node: &str, mac: &str) {
    let r = async {
        let mut n: Node = client.get("", node).await?;
        n.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(VTEP_MAC_ANNOTATION.to_string(), mac.to_string());
        client.update(&n).await
    }
    .await;
    match r {
        Ok(_) => info!(node, mac, "published the VTEP MAC"),
        Err(e) => warn!(node, error = %e, "publishing the VTEP MAC"),
    }
}
