//! Every live server in the `default/kubernetes` Service's Endpoints, as kube-apiserver's
//! lease endpoint reconciler keeps them: each server renews a Lease
//! (`kube-system/corral-apiserver-<hash>`, its URL as the holder) and rewrites the Endpoints
//! from the Leases that have not expired, so clients learn the others (`runtime::servers`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use corral_api::kinds;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use crate::registry::{ApiError, Registry};

pub const LEASE_NAMESPACE: &str = "kube-system";
/// Label of the servers' Leases.
pub const LABEL: &str = "corral.io/apiserver";
pub const PORT_NAME: &str = "https";
pub use corral_api::runtime::servers::{NAME, NAMESPACE};

/// How long a server stays listed without renewing, and how often it renews.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub lease: Duration,
    pub renew: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(15),
            renew: Duration::from_secs(5),
        }
    }
}

/// The address other hosts reach this server at: `--advertise-address`, else the listen
/// address when it names one, else the host's (the default route's interface), else loopback.
pub fn advertise_ip(flag: Option<IpAddr>, listen: IpAddr) -> IpAddr {
    if let Some(ip) = flag {
        return ip;
    }
    if !listen.is_unspecified() {
        return listen;
    }
    let chosen = corral_api::nodeip::read_interfaces()
        .ok()
        .and_then(|i| corral_api::nodeip::choose(None, None, &i).ok());
    match chosen {
        Some((ip, how)) => {
            info!(advertise_address = %ip, chosen_by = %how, "address advertised to clients");
            IpAddr::V4(ip)
        }
        None => {
            warn!(
                "no global address on this host: advertising 127.0.0.1 (give --advertise-address)"
            );
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
    }
}

/// The Lease name of the server at `addr`. Pure.
pub fn lease_name(addr: SocketAddr) -> String {
    let digest = Sha256::digest(addr.to_string().as_bytes());
    let hex: String = digest[..5].iter().map(|b| format!("{b:02x}")).collect();
    format!("corral-apiserver-{hex}")
}

fn micro_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// This server's Lease at `now`. Pure.
pub fn lease(addr: SocketAddr, now: jiff::Timestamp, timing: Timing) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": lease_name(addr),
            "namespace": LEASE_NAMESPACE,
            "labels": {LABEL: "true"},
        },
        "spec": {
            "holderIdentity": addr.to_string(),
            "leaseDurationSeconds": timing.lease.as_secs().max(1),
            "renewTime": micro_time(now),
        },
    })
}

/// The servers whose Leases have not expired at `now`, sorted. Pure.
pub fn live(leases: &[Value], now: jiff::Timestamp) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = leases
        .iter()
        .filter_map(|l| {
            let spec = l.get("spec")?;
            let addr: SocketAddr = spec.get("holderIdentity")?.as_str()?.parse().ok()?;
            let renewed: jiff::Timestamp = spec.get("renewTime")?.as_str()?.parse().ok()?;
            let secs = spec.get("leaseDurationSeconds")?.as_i64()?;
            let expires = renewed
                .checked_add(jiff::SignedDuration::from_secs(secs))
                .ok()?;
            (expires > now).then_some(addr)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The Endpoints subsets for `servers`: one subset per port, addresses sorted. Pure.
pub fn subsets(servers: &[SocketAddr]) -> Value {
    let mut ports: Vec<u16> = servers.iter().map(SocketAddr::port).collect();
    ports.sort();
    ports.dedup();
    Value::Array(
        ports
            .iter()
            .map(|port| {
                let ips: Vec<Value> = servers
                    .iter()
                    .filter(|s| s.port() == *port)
                    .map(|s| json!({"ip": s.ip().to_string()}))
                    .collect();
                json!({
                    "addresses": ips,
                    "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}],
                })
            })
            .collect(),
    )
}

/// The `default/kubernetes` Service (first address of the Service range, 443 to this
/// server's port), without a selector: its Endpoints are written here. Pure.
pub fn service(cluster_ip: Ipv4Addr, port: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip.to_string(),
            "ports": [{"name": PORT_NAME, "port": 443, "protocol": "TCP", "targetPort": port}],
        },
    })
}

/// Keeps this server listed for as long as it runs.
pub struct Reconciler {
    registry: Arc<Registry>,
    addr: SocketAddr,
    timing: Timing,
}

impl Reconciler {
    pub fn new(registry: Arc<Registry>, addr: SocketAddr, timing: Timing) -> Self {
        Self {
            registry,
            addr,
            timing,
        }
    }

    /// Creates the Service unless it exists (a refusal is logged: the cluster runs without
    /// it, and clients keep the servers they were given).
    pub async fn ensure_service(&self, cluster_ip: Ipv4Addr) {
        let svc = service(cluster_ip, self.addr.port());
        match self
            .registry
            .create(&kinds::SERVICES, NAMESPACE, svc, false)
            .await
        {
            Ok(_) => {
                info!(service = "default/kubernetes", ip = %cluster_ip, "created the API server's Service")
            }
            Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => {
                warn!(service = "default/kubernetes", error = %e, "creating the API server's Service failed")
            }
        }
    }

    /// Renews this server's Lease, then rewrites the Endpoints if the live set changed.
    pub async fn step(&self) -> Result<(), ApiError> {
        let now = jiff::Timestamp::now();
        self.put(
            &kinds::LEASES,
            LEASE_NAMESPACE,
            lease(self.addr, now, self.timing),
        )
        .await?;
        self.reconcile(now).await
    }

    async fn reconcile(&self, now: jiff::Timestamp) -> Result<(), ApiError> {
        let labels = corral_api::selector::LabelSelectorExpr::parse(&format!("{LABEL}=true"))
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let (leases, _) = self
            .registry
            .list(
                &kinds::LEASES,
                LEASE_NAMESPACE,
                &labels,
                &Default::default(),
            )
            .await?;
        let desired = subsets(&live(&leases, now));
        let current = self
            .registry
            .get(&kinds::ENDPOINTS, NAMESPACE, NAME)
            .await
            .ok();
        if current
            .as_ref()
            .map(|c| c.get("subsets").cloned().unwrap_or(json!([])))
            == Some(desired.clone())
        {
            return Ok(());
        }
        debug!(subsets = %desired, "rewriting the API server's Endpoints");
        let endpoints = json!({
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": desired,
        });
        self.put(&kinds::ENDPOINTS, NAMESPACE, endpoints).await
    }

    /// Create, else update (without a precondition: the registry retries on conflict).
    async fn put(
        &self,
        info: &corral_api::kinds::ResourceInfo,
        namespace: &str,
        object: Value,
    ) -> Result<(), ApiError> {
        match self
            .registry
            .create(info, namespace, object.clone(), false)
            .await
        {
            Ok(_) => Ok(()),
            Err(ApiError::AlreadyExists { .. }) => self
                .registry
                .update(info, namespace, object, false, false)
                .await
                .map(drop),
            Err(e) => Err(e),
        }
    }

    /// Takes this server out: deletes its Lease and rewrites the Endpoints without it.
    pub async fn leave(&self) {
        let _ = self
            .registry
            .delete(
                &kinds::LEASES,
                LEASE_NAMESPACE,
                &lease_name(self.addr),
                Default::default(),
            )
            .await;
        if let Err(e) = self.reconcile(jiff::Timestamp::now()).await {
            debug!(error = %e, "rewriting the API server's Endpoints on leaving");
        }
    }

    /// Renews and reconciles every `timing.renew` until the task is aborted.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.timing.renew);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.step().await {
                    warn!(server = %self.addr, error = %e, "renewing this server's place in the kubernetes Endpoints failed");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
