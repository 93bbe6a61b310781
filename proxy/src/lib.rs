//! corral-proxy: one per node, in the node's network namespace. Watches Services, Endpoints,
//! Ingresses, IngressClasses and Nodes; keeps the iptables rules for ClusterIP/NodePort
//! services, serves the Ingress reverse proxy (creating its default IngressClass) and reports
//! the Ingress addresses. Everything is derived from the
//! caches by pure functions on each change; the kernel and the API are written only on change.

pub mod cache;
pub mod dns;
pub mod ingress;
pub mod iptables;
pub mod loadgen;
pub mod metrics;
pub mod model;
pub mod report;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use corral_api::runtime::ObjectKey;
use corral_api::Client;
use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use parking_lot::RwLock;
use tokio::sync::watch;

use ingress::routes::RouteTable;
use iptables::{Iptables, Syncer};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("running {program}: {source}")]
    Exec {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed: {stderr}")]
    Iptables { program: String, stderr: String },
    #[error("listening on {addr} for ingress traffic: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("control plane at {server}")]
    Connect {
        server: String,
        #[source]
        source: corral_api::client::Error,
    },
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Control plane URL, `https://host:port` (`http://` only for a plaintext control plane).
    pub server: String,
    /// The cluster CA and this node's credentials (empty: plaintext).
    pub credentials: corral_api::Credentials,
    pub node_name: String,
    /// Where the Ingress reverse proxy listens.
    pub ingress_listen: SocketAddr,
    /// Full resync (repairs rules removed behind our back).
    pub resync: Duration,
    /// Ingress worker threads, each with its own single-threaded runtime and listening
    /// socket (SO_REUSEPORT); 0 means one per CPU, as nginx's `worker_processes auto`.
    pub ingress_threads: usize,
    /// Node-local cluster DNS; `None` serves none.
    pub dns: Option<DnsConfig>,
}

/// Cluster DNS: where this node's server listens and where it forwards other names. The
/// iptables plan sends the `kube-system/kube-dns` ClusterIP to this listener, so every pod's
/// query stays on its node (NodeLocal DNSCache's shape).
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Listening address; `None`: this node's InternalIP, once the Node says it.
    pub address: Option<std::net::IpAddr>,
    pub port: u16,
    pub upstreams: Vec<SocketAddr>,
    pub cluster_domain: String,
    /// The pod and Service ranges whose reverse (PTR) names the server answers.
    pub reverse_ranges: Vec<ipnet::Ipv4Net>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            address: None,
            port: 53,
            upstreams: vec![],
            cluster_domain: "cluster.local".into(),
            reverse_ranges: ["10.42.0.0/16", "10.43.0.0/16"]
                .iter()
                .map(|r| r.parse().expect("valid range"))
                .collect(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: "http://127.0.0.1:7443".into(),
            credentials: Default::default(),
            node_name: String::new(),
            ingress_listen: "0.0.0.0:80".parse().expect("valid address"),
            resync: Duration::from_secs(30),
            ingress_threads: 0,
            dns: None,
        }
    }
}

fn by_key<
    K: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
>(
    items: Vec<Arc<K>>,
) -> BTreeMap<(String, String), Arc<K>> {
    items
        .into_iter()
        .map(|o| {
            let m = o.metadata();
            (
                (
                    m.namespace.clone().unwrap_or_default(),
                    m.name.clone().unwrap_or_default(),
                ),
                o.clone(),
            )
        })
        .collect()
}

/// Runs until `shutdown` resolves, then removes the rules it installed.
pub async fn run(
    config: Config,
    ipt: Arc<dyn Iptables>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let client =
        Client::connect_lazy_with(&config.server, &config.credentials).map_err(|source| {
            Error::Connect {
                server: config.server.clone(),
                source,
            }
        })?;
    let servers = corral_api::runtime::servers::follow(&client);
    let (changed, mut changes) = watch::channel(0u64);
    let (services, t1) = cache::follow::<Service>(&client, &changed);
    let (endpoints, t2) = cache::follow::<Endpoints>(&client, &changed);
    let (ingresses, t3) = cache::follow::<Ingress>(&client, &changed);
    let (nodes, t4) = cache::follow::<Node>(&client, &changed);
    let (classes, t5) = cache::follow::<IngressClass>(&client, &changed);
    let tasks = vec![t1, t2, t3, t4, t5, servers];
    // The Endpoints revision last programmed, for agents holding a terminating pod's SIGTERM.
    let (programmed, revisions) = watch::channel(0i64);
    let reporter = tokio::spawn(report::run(
        client.clone(),
        config.node_name.clone(),
        revisions,
    ));
    let threads = match config.ingress_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let listeners =
        ingress::bind(config.ingress_listen, threads).map_err(|source| Error::Bind {
            addr: config.ingress_listen,
            source,
        })?;
    let routes: ingress::SharedRoutes = Arc::new(RwLock::new(Arc::new(RouteTable::default())));
    // Dropped when `run` returns, which stops the Ingress workers.
    let (_stop_ingress, stop_rx) = watch::channel(false);
    ingress::spawn_workers(listeners, routes.clone(), stop_rx).map_err(|source| Error::Bind {
        addr: config.ingress_listen,
        source,
    })?;
    tracing::info!(node = %config.node_name, ingress = %config.ingress_listen, ingress_threads = threads, server = %config.server, "proxy started");

    let snapshot: dns::SharedSnapshot = Arc::default();
    // Started once the node's address is known; dropped when `run` returns.
    let mut dns_server: Option<(hickory_server::Server<dns::Handler>, SocketAddr)> = None;
    let mut syncer = Syncer::new(ipt.clone());
    tokio::pin!(shutdown);
    let synced = async {
        services.wait_synced().await;
        endpoints.wait_synced().await;
        ingresses.wait_synced().await;
        nodes.wait_synced().await;
        classes.wait_synced().await;
    };
    let mut stopped = tokio::select! {
        _ = synced => false,
        _ = &mut shutdown => true,
    };
    let mut resync = tokio::time::interval(config.resync);
    let mut retry = false;
    let mut ready = false;
    // Ingresses of other classes already reported, so each is logged once.
    let mut reported: BTreeSet<(String, String)> = BTreeSet::new();
    while !stopped {
        let force = tokio::select! {
            _ = changes.changed() => false,
            _ = resync.tick() => true,
            _ = tokio::time::sleep(Duration::from_secs(1)), if retry => true,
            _ = &mut shutdown => { stopped = true; continue; }
        };
        changes.borrow_and_update();
        retry = false;
        // Read before the list: what is programmed below includes at least this revision.
        let endpoints_revision = endpoints.resource_version();
        let svc_list = services.list();
        let ep_map = by_key(endpoints.list());
        let mut ports = model::service_ports(&svc_list, &ep_map);
        if let Some(cfg) = &config.dns {
            *snapshot.write() = Arc::new(
                dns::plan::Snapshot::build(&cfg.cluster_domain, &svc_list, &ep_map)
                    .with_reverse_ranges(&cfg.reverse_ranges),
            );
            if dns_server.is_none() {
                dns_server = start_dns(cfg, &config.node_name, &nodes.list(), &snapshot).await;
                retry |= dns_server.is_none();
            }
            if let Some((_, addr)) = &dns_server {
                model::local_dns(&mut ports, dns::SERVICE_NAMESPACE, dns::SERVICE_NAME, *addr);
            }
        }
        let selection = ingress::class::select(&ingresses.list(), &classes.list());
        for (ing, class) in &selection.ignored {
            if reported.insert((ing.clone(), class.clone())) {
                tracing::info!(ingress = %ing, class = %class, "ignoring an Ingress of another class");
            }
        }
        reported.retain(|r| selection.ignored.contains(r));
        let table = RouteTable::build(&selection.served, &by_key(svc_list), &ep_map);
        for w in &table.warnings {
            tracing::warn!("{w}");
        }
        *routes.write() = Arc::new(table);
        let mut s = std::mem::replace(&mut syncer, Syncer::new(ipt.clone()));
        let (s, result) = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let r = s.sync(&ports, force);
            metrics::global().synced(started.elapsed());
            (s, r)
        })
        .await
        .expect("iptables sync does not panic");
        syncer = s;
        retry |= match result {
            Ok(wrote) => {
                if !ready {
                    // The first sync is in the kernel: systemd may count the proxy up.
                    ready = true;
                    corral_api::runtime::systemd::notify_ready();
                }
                if wrote {
                    tracing::debug!("iptables rules synced");
                }
                // Rules and Ingress routes now hold this revision's endpoints.
                programmed.send_if_modified(|r| {
                    let newer = endpoints_revision > *r;
                    *r = (*r).max(endpoints_revision);
                    newer
                });
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "syncing iptables rules failed, retrying");
                true
            }
        };
        // After the kernel sync, so a slow API never delays endpoint changes.
        if classes
            .get(&ObjectKey::new("", ingress::class::CLASS_NAME))
            .is_none()
        {
            retry |= !ensure_class(&client).await;
        }
        let addrs = status::node_addresses(&nodes.list());
        for ing in &selection.served {
            if let Some(mut updated) = status::with_addresses(ing, &addrs) {
                updated.metadata.resource_version = None;
                if let Err(e) = client.update_status(&updated).await {
                    tracing::warn!(ingress = ?ing.metadata.name, error = %e, "updating ingress status failed");
                    retry = true;
                }
            }
        }
    }
    for t in tasks {
        t.abort();
    }
    // Its report goes first, so no agent waits for this proxy any more.
    drop(programmed);
    if tokio::time::timeout(Duration::from_secs(3), reporter)
        .await
        .is_err()
    {
        tracing::warn!("the programmed-endpoints report was not removed in time");
    }
    tracing::info!("stopping: removing iptables rules");
    tokio::task::spawn_blocking(move || syncer.cleanup())
        .await
        .expect("iptables cleanup does not panic")
}

/// Binds the DNS server on the configured address, else this node's InternalIP; `None`
/// (logged) until that works.
async fn start_dns(
    cfg: &DnsConfig,
    node_name: &str,
    nodes: &[Arc<Node>],
    snapshot: &dns::SharedSnapshot,
) -> Option<(hickory_server::Server<dns::Handler>, SocketAddr)> {
    let ip = cfg.address.or_else(|| {
        nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(node_name))
            .and_then(|n| n.status.as_ref()?.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .and_then(|a| a.address.parse().ok())
    });
    let Some(ip) = ip else {
        tracing::info!(node = %node_name, "cluster DNS waits for the node's InternalIP");
        return None;
    };
    let handler = dns::Handler {
        snapshot: snapshot.clone(),
        upstreams: cfg.upstreams.clone(),
        upstream_timeout: Duration::from_secs(2),
    };
    match dns::serve(SocketAddr::new(ip, cfg.port), handler).await {
        Ok(served) => Some(served),
        Err(e) => {
            tracing::warn!(error = %e, "cluster DNS not serving yet, retrying");
            None
        }
    }
}

/// Creates the `corral` IngressClass; false when that failed (the caller retries). Another
/// node's proxy creating it first is success.
async fn ensure_class(client: &Client) -> bool {
    match client.create(&ingress::class::default_class()).await {
        Ok(_) => {
            tracing::info!(
                class = ingress::class::CLASS_NAME,
                controller = ingress::class::CONTROLLER,
                "created the default IngressClass"
            );
            true
        }
        Err(e) if e.is_already_exists() => true,
        Err(e) => {
            tracing::warn!(class = ingress::class::CLASS_NAME, error = %e, "creating the IngressClass failed, retrying");
            false
        }
    }
}
