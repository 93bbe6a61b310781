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

pub mod auth;
pub mod cluster_id;
pub mod join;
pub mod listener;
pub mod registry;
pub mod server;
pub mod store;
pub mod tunnel;
pub mod validate;

use registry::{Registry, ServiceAllocator};
use store::Store;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Run the controllers in this process.
    pub controllers: bool,
    pub controllers_config: corral_controllers::Config,
    pub service_cidr: String,
    pub defaults: validate::Defaults,
    /// Watch history kept (in revisions) before compaction.
    pub history: i64,
    /// Connection and request limits of the API listener.
    pub limits: listener::ServeLimits,
    /// Lifetime of node certificates issued by Join and Renew (shortened by tests).
    pub node_cert_lifetime: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7443".parse().expect("valid address"),
            data_dir: PathBuf::from("/var/lib/corral/controlplane"),
            controllers: true,
            controllers_config: Default::default(),
            service_cidr: "10.43.0.0/16".into(),
            defaults: Default::default(),
            history: 100_000,
            limits: Default::default(),
            node_cert_lifetime: join::DEFAULT_NODE_CERT_LIFETIME,
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
    #[error(transparent)]
    Ca(#[from] join::sign::SignError),
    #[error(transparent)]
    AgentToken(#[from] auth::tokens::AgentTokenError),
}

/// A running control plane. Dropping it stops the server and the controllers.
pub struct Running {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    /// Made once with the store; agents refuse a control plane whose ID differs.
    pub cluster_id: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// `http://ADDR`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until the server stops (it runs until shut down).
    pub async fn wait(mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    pub async fn shutdown(mut self) {
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

/// Opens the store, serves the API on `config.listen` and starts the controllers.
pub async fn start(config: Config) -> Result<Running, StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    // A missing --data-dir must not silently start an empty cluster in the wrong place.
    let data_dir = cluster_id::inspect(&config.data_dir)?;
    let db = config.data_dir.join(cluster_id::DB_FILE);
    let store: Arc<dyn Store> = Arc::new(store::sqlite::SqliteStore::open(&db)?);
    let services = ServiceAllocator::new(&config.service_cidr).map_err(StartError::Config)?;
    let registry = Arc::new(Registry::new(
        store.clone(),
        config.defaults.clone(),
        services,
    ));
    registry.bootstrap().await?;
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

    // MERGE: replace with tls helper's Pki (its CA signs node CSRs through `CsrSigner`).
    let ca = join::sign::LocalCa::load_or_create(&config.data_dir)?;
    auth::tokens::ensure_agent_token(&registry, &config.data_dir, &ca.ca_der()).await?;
    // MERGE: the tls helper's authentication layer takes this as its `Arc<dyn TokenAuthenticator>`.
    let _tokens: Arc<dyn auth::TokenAuthenticator> =
        Arc::new(auth::tokens::RegistryTokens::new(registry.clone()));
    let join = join::JoinService::new(registry.clone(), Arc::new(ca), config.node_cert_lifetime)
        .into_server();

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
    let tunnels = tunnel::Tunnels::default();
    let api = corral_proto::api_server::ApiServer::new(
        server::ApiService::new(registry.clone(), tunnels.clone())
            .with_cluster_id(cluster_id.clone()),
    )
    // A request carries at most one object (3 MiB, checked with a clear error) plus its
    // envelope; answers (lists) may be large.
    .max_decoding_message_size(limits::MAX_REQUEST_MESSAGE)
    .max_encoding_message_size(limits::MAX_RESPONSE_MESSAGE);
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let incoming = listener::incoming(listener, &config.limits);
    let router = tonic::transport::Server::builder()
        .timeout(config.limits.request_timeout)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(api)
        .add_service(tunnels.service())
        .add_service(join);
    let server = tokio::spawn(async move {
        let stop = async {
            let _ = shutdown_rx.await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
            warn!(error = %e, "API server stopped with an error");
        }
    });
    info!(%addr, data_dir = %config.data_dir.display(), "API server listening");

    let mut tasks = vec![spawn_compactor(store, config.history)];
    if config.controllers {
        let client = corral_api::Client::connect_lazy(&format!("http://{addr}"))
            .map_err(|e| StartError::Config(e.to_string()))?;
        tasks.extend(corral_controllers::spawn(
            client,
            config.controllers_config.clone(),
        ));
    }
    Ok(Running {
        addr,
        registry,
        cluster_id,
        shutdown: Some(shutdown_tx),
        server: Some(server),
        tasks,
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
