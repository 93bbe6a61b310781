//! Corral's control plane: the store, the API server (registry + gRPC service), the agent
//! tunnels, and the controllers (crate `corral-controllers`), started together by [`start`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use corral_api::rules::limits;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub mod admission;
pub mod apiservers;
pub mod auth;
pub mod cluster_id;
pub mod join;
pub mod kubedns;
pub mod listener;
pub mod metrics;
pub mod migrate;
pub mod pki;
pub mod registry;
pub mod rest;
pub mod server;
pub mod store;
pub mod top;
pub mod tunnel;
pub mod validate;

use registry::{Registry, ServiceAllocator};
use store::Store;

#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Run the controllers in this process.
    pub controllers: bool,
    pub controllers_config: corral_controllers::Config,
    pub service_cidr: String,
    /// ClusterIP of `kube-system/kube-dns`, created at start (`--cluster-dns`); `None`: none.
    pub cluster_dns: Option<std::net::Ipv4Addr>,
    pub defaults: validate::Defaults,
    /// Watch history kept (in revisions) before compaction.
    pub history: i64,
    /// Connection and request limits of the API listener.
    pub limits: listener::ServeLimits,
    /// Pod Security policy of namespaces without `pod-security.kubernetes.io/*` labels.
    pub pod_security: admission::podsecurity::Defaults,
    /// Names and addresses the serving certificate carries besides the defaults
    /// (`--tls-san`).
    pub tls_sans: Vec<String>,
    /// Serve plaintext only, every request as the admin (`--insecure-plaintext`).
    pub insecure_plaintext: bool,
    /// Bearer tokens are checked by this (None: the join and user tokens stored in the registry).
    pub token_authenticator: Option<Arc<dyn auth::TokenAuthenticator>>,
    /// Where the admin kubeconfig is written (default `DATA_DIR/admin.kubeconfig`).
    pub write_kubeconfig: Option<PathBuf>,
    /// Lifetime of node certificates issued by Join and Renew (shortened by tests).
    pub node_cert_lifetime: Duration,
    /// The cluster's objects in etcd (`--datastore-endpoint`) instead of SQLite in the data
    /// directory (which then holds only this server's files: TLS, kubeconfigs).
    pub datastore: Option<store::etcd::EtcdConfig>,
    /// The secret servers on one datastore share (`--token`): it seals the cluster CA there.
    pub server_token: Option<String>,
    /// The embedded etcd's CA (`--etcd-ca-dir`): serves ServerJoin, which adds servers as etcd
    /// members (`install.sh server --server URL`).
    pub etcd_ca_dir: Option<PathBuf>,
    /// The address clients on other hosts reach this server at (`--advertise-address`; default
    /// from `listen` or the host's interfaces), listed in `default/kubernetes`.
    pub advertise_address: Option<std::net::IpAddr>,
    /// How long a server stays in `default/kubernetes` without renewing, and how often it does.
    pub apiserver_timing: apiservers::Timing,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("controllers", &self.controllers)
            .field("tls_sans", &self.tls_sans)
            .field("insecure_plaintext", &self.insecure_plaintext)
            .field("token_authenticator", &self.token_authenticator.is_some())
            .field("write_kubeconfig", &self.write_kubeconfig)
            .field(
                "datastore",
                &self.datastore.as_ref().map(|d| d.endpoints.clone()),
            )
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7443".parse().expect("valid address"),
            data_dir: PathBuf::from("/var/lib/corral/controlplane"),
            controllers: true,
            controllers_config: Default::default(),
            service_cidr: "10.43.0.0/16".into(),
            cluster_dns: Some(std::net::Ipv4Addr::new(10, 43, 0, 10)),
            defaults: Default::default(),
            history: 100_000,
            limits: Default::default(),
            pod_security: Default::default(),
            tls_sans: Vec::new(),
            insecure_plaintext: false,
            token_authenticator: None,
            write_kubeconfig: None,
            node_cert_lifetime: join::DEFAULT_NODE_CERT_LIFETIME,
            datastore: None,
            server_token: None,
            etcd_ca_dir: None,
            advertise_address: None,
            apiserver_timing: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("creating data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    ClusterId(#[from] cluster_id::ClusterIdError),
    #[error("opening the store: {0}")]
    Store(#[from] store::StoreError),
    #[error("bootstrapping default namespaces: {0}")]
    Bootstrap(#[from] registry::ApiError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("sharing the cluster CA through the datastore: {0}")]
    SharedCa(#[from] pki::bootstrap::BootstrapError),
    #[error("cluster PKI: {0}")]
    Pki(#[from] pki::PkiError),
    #[error("writing a kubeconfig: {0}")]
    Kubeconfig(#[from] corral_api::kubeconfig::KubeconfigError),
    #[error("connecting the controllers: {0}")]
    Client(#[from] corral_api::client::Error),
    #[error(transparent)]
    AgentToken(#[from] auth::tokens::AgentTokenError),
}

/// A running control plane. Dropping it stops the server and the controllers.
pub struct Running {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    /// Made once with the store; agents refuse a control plane whose ID differs.
    pub cluster_id: String,
    /// The cluster CA and serving certificate (`None` with `insecure_plaintext`).
    pub pki: Option<Arc<pki::Pki>>,
    admin: corral_api::Credentials,
    admin_kubeconfig: Option<PathBuf>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
    apiserver: Arc<apiservers::Reconciler>,
}

impl Running {
    /// `https://ADDR` (`http://ADDR` with `insecure_plaintext`), for clients.
    pub fn url(&self) -> String {
        let scheme = if self.pki.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The admin's credentials (the CA and a `CN=admin, O=system:masters` certificate), as in
    /// the admin kubeconfig; empty with `insecure_plaintext`.
    pub fn admin_credentials(&self) -> corral_api::Credentials {
        self.admin.clone()
    }

    /// Where the admin kubeconfig was written.
    pub fn admin_kubeconfig(&self) -> Option<&std::path::Path> {
        self.admin_kubeconfig.as_deref()
    }

    /// A client connected as the admin.
    pub async fn client(&self) -> Result<corral_api::Client, corral_api::client::Error> {
        corral_api::Client::connect_with(&self.url(), &self.admin).await
    }

    /// Credentials for `cn` in groups `orgs` (a year), signed by the cluster CA.
    pub fn credentials_for(
        &self,
        cn: &str,
        orgs: &[&str],
    ) -> Result<corral_api::Credentials, pki::PkiError> {
        match &self.pki {
            Some(p) => p.client_credentials(cn, orgs, pki::LEAF_LIFETIME),
            None => Ok(Default::default()),
        }
    }

    /// Waits until the server stops (it runs until shut down).
    pub async fn wait(mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    /// Stops serving; first takes this server out of `default/kubernetes` (bounded), so
    /// clients stop dialing it before its Lease would expire.
    pub async fn shutdown(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.apiserver.leave()).await;
        self.stop();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// ServerJoin, on a TLS server of the embedded etcd (its CA in `--etcd-ca-dir`).
fn server_join(
    config: &Config,
    secure: bool,
) -> Option<corral_proto::server_join_server::ServerJoinServer<join::server::ServerJoinService>> {
    let (etcd, dir) = (config.datastore.clone()?, config.etcd_ca_dir.clone()?);
    let token_file = config.data_dir.join(pki::bootstrap::TOKEN_FILE);
    secure.then(|| join::server::ServerJoinService::new(etcd, dir, token_file).into_server())
}

/// Opens the store, serves the API on `config.listen` and starts the controllers.
pub async fn start(config: Config) -> Result<Running, StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let (store, data_dir): (Arc<dyn Store>, _) = match &config.datastore {
        // The cluster lives in etcd; the data directory holds only this server's files.
        Some(etcd) => (
            Arc::new(store::etcd::EtcdStore::connect(etcd).await?),
            cluster_id::DataDir::Existing,
        ),
        None => {
            // A missing --data-dir must not silently start an empty cluster in the wrong place.
            let data_dir = cluster_id::inspect(&config.data_dir)?;
            let db = config.data_dir.join(cluster_id::DB_FILE);
            (Arc::new(store::sqlite::SqliteStore::open(&db)?), data_dir)
        }
    };
    let services = ServiceAllocator::new(&config.service_cidr).map_err(StartError::Config)?;
    let api_service_ip = services.first_ip();
    let registry = Arc::new(
        Registry::new(store.clone(), config.defaults.clone(), services)
            .with_pod_security(config.pod_security),
    );
    registry.bootstrap().await?;
    if let Some(ip) = config.cluster_dns {
        kubedns::ensure(&registry, ip).await;
    }
    let cluster_id = cluster_id::read(&registry).await?;
    if data_dir == cluster_id::DataDir::Empty {
        warn!(
            data_dir = %config.data_dir.display(),
            cluster_id = %cluster_id,
            "initialised a NEW cluster in an empty data directory: if this control plane served \
             a cluster before, --data-dir is wrong, and that cluster's agents will refuse this one"
        );
    } else {
        info!(data_dir = %config.data_dir.display(), cluster_id = %cluster_id, "cluster store opened");
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen,
        source,
    })?;
    let advertised = SocketAddr::new(
        apiservers::advertise_ip(config.advertise_address, config.listen.ip()),
        addr.port(),
    );
    let secure = !config.insecure_plaintext;
    let pki = if secure {
        let mut extra_sans = config.tls_sans.clone();
        extra_sans.push(advertised.ip().to_string());
        let sans = pki::default_sans(config.listen.ip(), &extra_sans);
        let dir = config.data_dir.join("tls");
        Some(Arc::new(match &config.datastore {
            // Servers on one datastore share the cluster CA through it.
            Some(_) => {
                let token = pki::bootstrap::server_token(
                    store.as_ref(),
                    &config.data_dir,
                    config.server_token.as_deref(),
                )
                .await?;
                pki::bootstrap::load(store.as_ref(), &dir, &sans, &token).await?
            }
            None => pki::Pki::load_or_create(&dir, &sans)?,
        }))
    } else {
        warn!(
            %addr,
            "INSECURE: --insecure-plaintext serves the API without TLS and treats EVERY \
             request as the cluster admin; anyone who reaches this port owns the cluster"
        );
        None
    };
    // Clients in this process and the kubeconfigs reach the API on a name the serving
    // certificate has.
    let local_addr = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    let scheme = if secure { "https" } else { "http" };
    let local_url = format!("{scheme}://{local_addr}");
    let (admin, admin_kubeconfig) = match &pki {
        Some(p) => {
            let admin = p.client_credentials("admin", &[auth::MASTERS], pki::LEAF_LIFETIME)?;
            let path = config
                .write_kubeconfig
                .clone()
                .unwrap_or_else(|| config.data_dir.join("admin.kubeconfig"));
            corral_api::kubeconfig::write(&path, "corral", &local_url, &admin)?;
            let scheduler =
                p.client_credentials("system:kube-scheduler", &[], pki::LEAF_LIFETIME)?;
            corral_api::kubeconfig::write(
                &p.dir().join("scheduler.kubeconfig"),
                "corral",
                &local_url,
                &scheduler,
            )?;
            info!(path = %path.display(), "wrote the admin kubeconfig");
            (admin, Some(path))
        }
        None => (Default::default(), None),
    };
    let mode =
        match &pki {
            Some(_) => auth::authn::Mode::Secure {
                tokens: Some(config.token_authenticator.clone().unwrap_or_else(|| {
                    Arc::new(auth::tokens::RegistryTokens::new(registry.clone()))
                })),
                admin_kubeconfig: admin_kubeconfig
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            },
            None => auth::authn::Mode::Insecure,
        };
    let server_tls = pki.as_ref().map(|p| p.server_config()).transpose()?;
    // Join tokens: the default agent token (DATA_DIR/agent-token) names the CA's hash; the
    // Join service signs node CSRs with the cluster CA (not served without TLS).
    let join = match &pki {
        Some(p) => {
            auth::tokens::ensure_agent_token(&registry, &config.data_dir, p.ca_der()).await?;
            Some(
                join::JoinService::new(registry.clone(), p.clone(), config.node_cert_lifetime)
                    .into_server(),
            )
        }
        None => None,
    };
    let tunnels = tunnel::Tunnels::default();
    let service = Arc::new(
        server::ApiService::new(registry.clone(), tunnels.clone())
            .with_cluster_id(cluster_id.clone()),
    );
    // The Kubernetes REST API shares the port: gRPC says so in its content type, everything
    // else is REST, authenticated by the same rules and served by the same service.
    let rest = rest::SplitLayer::new(rest::Rest::new(service.clone(), mode.clone()));
    let api = corral_proto::api_server::ApiServer::from_arc(service)
        // A request carries at most one object (3 MiB, checked with a clear error) plus its
        // envelope; answers (lists) may be large.
        .max_decoding_message_size(limits::MAX_REQUEST_MESSAGE)
        .max_encoding_message_size(limits::MAX_RESPONSE_MESSAGE);
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let incoming = listener::incoming(listener, &config.limits, server_tls);
    // HTTP/1.1 connections (kubectl's exec/attach upgrades, HTTP/1.1 REST clients) are served
    // by hyper with upgrades on, which tonic's server leaves off; HTTP/2 stays with tonic.
    let (http1_stop, http1_stopped) = tokio::sync::watch::channel(());
    let incoming = {
        let (rest, timeout) = (rest.rest(), config.limits.request_timeout);
        futures::StreamExt::filter_map(incoming, move |conn| {
            futures::future::ready(match conn {
                Ok(c) if c.is_http1() => {
                    rest::connect::http1::serve(c, rest.clone(), timeout, http1_stopped.clone());
                    None
                }
                other => Some(other),
            })
        })
    };
    let router = tonic::transport::Server::builder()
        // kubectl and client libraries speak HTTP/1.1 as well as HTTP/2.
        .accept_http1(true)
        // Outermost: every request, REST and gRPC, is counted and timed.
        .layer(metrics::MetricsLayer)
        .layer(rest)
        .layer(auth::authn::AuthnLayer::new(mode))
        .timeout(config.limits.request_timeout)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        // One stalled stream (exec input nobody takes) must not hold its connection.
        .initial_stream_window_size(limits::SERVER_STREAM_WINDOW)
        .initial_connection_window_size(limits::SERVER_CONNECTION_WINDOW)
        .add_service(api)
        .add_service(tunnels.service())
        .add_optional_service(join)
        .add_optional_service(server_join(&config, pki.is_some()));
    let server = tokio::spawn(async move {
        let stop = async {
            let _ = shutdown_rx.await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
            warn!(error = %e, "API server stopped with an error");
        }
        drop(http1_stop);
    });
    info!(%addr, data_dir = %config.data_dir.display(), "API server listening");

    let mut tasks = vec![
        registry::spawn_claim_repair(store.clone()),
        spawn_compactor(store, config.history),
    ];
    // Clients learn every live server from `default/kubernetes`.
    let apiserver = Arc::new(apiservers::Reconciler::new(
        registry.clone(),
        advertised,
        config.apiserver_timing,
    ));
    apiserver.ensure_service(api_service_ip).await;
    tasks.push(apiserver.clone().spawn());
    if config.controllers {
        let creds = match &pki {
            Some(p) => {
                p.client_credentials("system:kube-controller-manager", &[], pki::LEAF_LIFETIME)?
            }
            None => Default::default(),
        };
        let client = corral_api::Client::connect_lazy_with(&local_url, &creds)?;
        tasks.extend(corral_controllers::spawn(
            client,
            config.controllers_config.clone(),
        ));
    }
    Ok(Running {
        addr,
        registry,
        cluster_id,
        pki,
        admin,
        admin_kubeconfig,
        shutdown: Some(shutdown_tx),
        server: Some(server),
        tasks,
        apiserver,
    })
}

/// Keeps the last `history` revisions of watch history and forgets older ones.
fn spawn_compactor(store: Arc<dyn Store>, history: i64) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let Ok(rev) = store.current_revision().await else {
                continue;
            };
            if rev > history {
                if let Err(e) = store.compact(rev - history).await {
                    warn!(error = %e, "compaction failed");
                }
            }
        }
    })
}
