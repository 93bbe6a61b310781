//! `corral-controlplane`: the API server, store and controllers in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use corral_controlplane::admission::podsecurity::{self, Level, Policy};

#[derive(Parser, Debug)]
#[command(
    name = "corral-controlplane",
    version,
    // A flag given again wins (installed units put INSTALL_CORRAL_EXEC after their defaults).
    args_override_self = true,
    about = "Corral's API server, store and controllers"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Address the gRPC API listens on.
    #[arg(long, default_value = "127.0.0.1:7443", env = "CORRAL_LISTEN")]
    listen: SocketAddr,
    /// Directory for the database (corral.db).
    #[arg(
        long,
        default_value = "/var/lib/corral/controlplane",
        env = "CORRAL_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// Do not run the controllers in this process.
    #[arg(long)]
    no_controllers: bool,
    /// Range the nodes' pod CIDRs are cut from (each Node without `spec.podCIDR` gets the
    /// lowest free subnet; a deleted node's subnet is free again).
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
    /// Prefix length of each node's pod CIDR.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// Service ClusterIP range.
    #[arg(long, default_value = "10.43.0.0/16")]
    service_cidr: String,
    /// ClusterIP of the cluster DNS Service (kube-system/kube-dns), created at start.
    #[arg(long, default_value = "10.43.0.10")]
    cluster_dns: std::net::Ipv4Addr,
    /// Seconds without a Lease renewal before a node is marked NotReady/Unknown.
    #[arg(long, default_value_t = 4)]
    node_monitor_grace_seconds: u64,
    /// Seconds pods tolerate an unreachable or not-ready node before eviction (default toleration).
    #[arg(long, default_value_t = 1)]
    pod_eviction_seconds: u64,
    /// Nodes per second whose pods are evicted, per zone, when the zone is healthy (the first
    /// eviction in a zone goes at once).
    #[arg(long, default_value_t = 0.1)]
    node_eviction_rate: f64,
    /// Nodes per second whose pods are evicted in a partially disrupted zone larger than
    /// --large-cluster-size-threshold (smaller zones evict nothing then).
    #[arg(long, default_value_t = 0.01)]
    secondary_node_eviction_rate: f64,
    /// Share of not-ready nodes (at least 3) that makes a zone partially disrupted.
    #[arg(long, default_value_t = 0.55)]
    unhealthy_zone_threshold: f64,
    /// Zones with more nodes than this use the secondary rate when partially disrupted.
    #[arg(long, default_value_t = 50)]
    large_cluster_size_threshold: usize,
    /// Pod Security level enforced in namespaces without a `pod-security.kubernetes.io/enforce`
    /// label: privileged (admits every pod), baseline or restricted.
    #[arg(long, default_value = "privileged")]
    pod_security_default: Level,
    /// Pod Security level that warns (namespaces without a `.../warn` label).
    #[arg(long, default_value = "privileged")]
    pod_security_warn_default: Level,
    /// Pod Security level that is logged (namespaces without a `.../audit` label).
    #[arg(long, default_value = "privileged")]
    pod_security_audit_default: Level,
    /// Another name or address for the serving certificate (repeatable); localhost, the
    /// loopback addresses, the hostname and the listen address are always in it.
    #[arg(long = "tls-san")]
    tls_san: Vec<String>,
    /// The address other hosts reach this server at, listed in `default/kubernetes` for
    /// clients to fail over to (default: the listen address, or with 0.0.0.0 the address of
    /// the interface holding the default route); added to the serving certificate.
    #[arg(long, env = "CORRAL_ADVERTISE_ADDRESS")]
    advertise_address: Option<std::net::IpAddr>,
    /// Serve plaintext without authentication: EVERY request is the cluster admin. Only for
    /// a machine no one else can reach.
    #[arg(long)]
    insecure_plaintext: bool,
    /// Where to write the admin kubeconfig (default DATA_DIR/admin.kubeconfig).
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
    /// Keep the cluster in etcd instead of SQLite in --data-dir: `etcd://h1:2379,h2:2379`
    /// (plain), `etcds://...` or `https://h1:2379,...` (TLS).
    #[arg(long, env = "CORRAL_DATASTORE_ENDPOINT")]
    datastore_endpoint: Option<String>,
    /// CA that signed etcd's serving certificates (TLS endpoints).
    #[arg(long, requires = "datastore_endpoint")]
    datastore_cafile: Option<PathBuf>,
    /// Client certificate for etcd, when it asks for one (with --datastore-keyfile).
    #[arg(long, requires_all = ["datastore_endpoint", "datastore_keyfile"])]
    datastore_certfile: Option<PathBuf>,
    #[arg(long, requires_all = ["datastore_endpoint", "datastore_certfile"])]
    datastore_keyfile: Option<PathBuf>,
    /// The secret the servers on one datastore share: it seals the cluster CA there (the first
    /// server makes one when none is given and keeps it in DATA_DIR/server-token).
    #[arg(
        long,
        env = "CORRAL_TOKEN",
        requires = "datastore_endpoint",
        hide_env_values = true
    )]
    token: Option<String>,
    /// A file holding the server token.
    #[arg(long, conflicts_with = "token", requires = "datastore_endpoint")]
    token_file: Option<PathBuf>,
    /// The embedded etcd's CA directory (`corral-controlplane etcd-certs`): this server then
    /// adds joining servers as etcd members (ServerJoin, authenticated by the server token).
    #[arg(long, requires = "datastore_endpoint")]
    etcd_ca_dir: Option<PathBuf>,
    /// Lifetime of node certificates in seconds (365 days; shorter only to test renewal).
    #[arg(long, default_value_t = 365 * 86_400, hide = true)]
    node_cert_lifetime_seconds: u64,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Copy a cluster, offline (its control plane stopped), from SQLite to an empty etcd:
    /// objects with their uids, the tokens, and the cluster CA sealed with the server token.
    Migrate {
        /// `sqlite:DIR`, the control plane's data directory.
        #[arg(long)]
        from: String,
        /// `etcd://h1:2379,...`, `etcds://...` or `https://...` endpoints.
        #[arg(long)]
        to: String,
        #[arg(long)]
        datastore_cafile: Option<PathBuf>,
        #[arg(long, requires = "datastore_keyfile")]
        datastore_certfile: Option<PathBuf>,
        #[arg(long, requires = "datastore_certfile")]
        datastore_keyfile: Option<PathBuf>,
        /// The server token that seals the CA in etcd (default: DIR/server-token, else a new
        /// one written there).
        #[arg(long, env = "CORRAL_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Make (or keep) the embedded etcd's CA and this host's etcd certificates in DIR: the
    /// first server (`install.sh server --cluster-init`). Prints what it did.
    EtcdCerts {
        #[arg(long)]
        dir: PathBuf,
        /// This member's name (the host name).
        #[arg(long)]
        name: String,
        /// Another name or address for etcd's serving certificate (repeatable).
        #[arg(long = "san")]
        sans: Vec<String>,
    },
    /// Join the embedded etcd through a running server (`install.sh server --server URL`):
    /// pins the cluster CA the token names, is added as an etcd member, writes the etcd CA and
    /// this host's certificates into DIR and prints etcd's --initial-cluster.
    EtcdJoin {
        /// https://SERVER:7443 of a running server.
        #[arg(long)]
        server: String,
        /// The server token: K10<ca-hash>::server:<secret> or the bare secret.
        #[arg(long, env = "CORRAL_SERVER_TOKEN", hide_env_values = true)]
        token: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        /// This member's peer URL, https://IP:2380.
        #[arg(long)]
        peer_url: String,
        #[arg(long = "san")]
        sans: Vec<String>,
    },
    /// Leave the embedded etcd (`corral-uninstall.sh` on a server): removes this host's member
    /// through its own etcd, so the others count a quorum without it.
    EtcdLeave {
        /// The etcd TLS directory (the control plane's client certificate and the etcd CA).
        #[arg(long)]
        dir: PathBuf,
        /// This host's own etcd member.
        #[arg(long, default_value = "https://127.0.0.1:2379")]
        endpoint: String,
    },
    /// Print the server token in its long form, K10<ca-hash>::server:<secret>, for the next
    /// servers (`install.sh server --server URL --token ...`).
    ServerToken {
        #[arg(long, default_value = "/var/lib/corral/controlplane")]
        data_dir: PathBuf,
    },
}

/// The subcommands other than `migrate`; `None` when `cmd` is not one of them.
async fn etcd_command(cmd: &Cmd) -> anyhow::Result<Option<()>> {
    use corral_controlplane::join::server_joiner::{self, ServerToken};
    use corral_controlplane::pki::etcd as etcd_pki;
    match cmd {
        Cmd::EtcdCerts { dir, name, sans } => {
            let actions = etcd_pki::ensure(dir, None, name, &etcd_pki::sans(name, sans))?;
            println!("etcd certificates in {}: {actions:?}", dir.display());
        }
        Cmd::EtcdJoin {
            server,
            token,
            dir,
            name,
            peer_url,
            sans,
        } => {
            let token = ServerToken::parse(token)?;
            let joined = server_joiner::join(
                server,
                &token,
                name,
                peer_url,
                dir,
                &etcd_pki::sans(name, sans),
            )
            .await?;
            println!("{}", joined.initial_cluster);
        }
        Cmd::EtcdLeave { dir, endpoint } => {
            let read = |f: &str| {
                std::fs::read(dir.join(f))
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", dir.join(f).display()))
            };
            let etcd = corral_controlplane::store::etcd::EtcdConfig {
                endpoints: vec![endpoint.clone()],
                ca: Some(read(etcd_pki::CA_CRT)?),
                cert: Some(read(etcd_pki::CLIENT_CRT)?),
                key: Some(read(etcd_pki::CLIENT_KEY)?),
            };
            let done = corral_controlplane::join::server::leave(&etcd).await?;
            println!("etcd member at {endpoint}: {done:?}");
        }
        Cmd::ServerToken { data_dir } => {
            let read = |p: PathBuf| {
                std::fs::read_to_string(&p)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
            };
            let secret = read(data_dir.join(corral_controlplane::pki::bootstrap::TOKEN_FILE))?;
            let ca = read(data_dir.join("tls/ca.crt"))?;
            let der = corral_api::pin::pem_to_der(&ca).ok_or_else(|| {
                anyhow::anyhow!("{}/tls/ca.crt: not a PEM certificate", data_dir.display())
            })?;
            println!("{}", ServerToken::long(&secret, &der));
        }
        Cmd::Migrate { .. } => return Ok(None),
    }
    Ok(Some(()))
}

fn read_opt(p: &Option<PathBuf>) -> anyhow::Result<Option<Vec<u8>>> {
    p.as_ref()
        .map(|p| std::fs::read(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display())))
        .transpose()
}

fn etcd_config(
    spec: &str,
    ca: &Option<PathBuf>,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
) -> anyhow::Result<corral_controlplane::store::etcd::EtcdConfig> {
    let endpoints = corral_controlplane::store::etcd::EtcdConfig::parse_endpoints(spec)?;
    let tls = endpoints.iter().any(|e| e.starts_with("https://"));
    anyhow::ensure!(
        !tls || ca.is_some(),
        "{spec}: TLS endpoints need --datastore-cafile"
    );
    Ok(corral_controlplane::store::etcd::EtcdConfig {
        endpoints,
        ca: read_opt(ca)?,
        cert: read_opt(cert)?,
        key: read_opt(key)?,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    corral_api::runtime::logging::init();
    let args = Args::parse();
    if let Some(Cmd::Migrate {
        from,
        to,
        datastore_cafile,
        datastore_certfile,
        datastore_keyfile,
        token,
    }) = &args.command
    {
        let dir = corral_controlplane::migrate::source_dir(from)?;
        let etcd = etcd_config(to, datastore_cafile, datastore_certfile, datastore_keyfile)?;
        let done = corral_controlplane::migrate::migrate(&dir, &etcd, token.as_deref()).await?;
        println!(
            "migrated {} keys to {to}; start the servers with --datastore-endpoint {to} and the token in {}",
            done.keys,
            done.token_file.display()
        );
        return Ok(());
    }
    if let Some(cmd) = &args.command {
        if etcd_command(cmd).await?.is_some() {
            return Ok(());
        }
    }
    let cluster_cidr = corral_controllers::nodeipam::plan::Range::new(
        &args.cluster_cidr,
        args.node_cidr_mask_size,
    )?;
    let datastore = match &args.datastore_endpoint {
        None => None,
        Some(spec) => Some(etcd_config(
            spec,
            &args.datastore_cafile,
            &args.datastore_certfile,
            &args.datastore_keyfile,
        )?),
    };
    let server_token = match (&args.token, &args.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(p)) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("reading --token-file {}: {e}", p.display()))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    let config = corral_controlplane::Config {
        datastore,
        server_token,
        etcd_ca_dir: args.etcd_ca_dir,
        listen: args.listen,
        data_dir: args.data_dir,
        controllers: !args.no_controllers,
        controllers_config: corral_controllers::Config {
            node_monitor_grace: Duration::from_secs(args.node_monitor_grace_seconds),
            pod_eviction_timeout: Duration::from_secs(args.pod_eviction_seconds),
            eviction: corral_controllers::nodelifecycle::plan::EvictionRates {
                rate: args.node_eviction_rate,
                secondary_rate: args.secondary_node_eviction_rate,
                unhealthy_zone_threshold: args.unhealthy_zone_threshold,
                large_cluster_size_threshold: args.large_cluster_size_threshold,
            },
            cluster_cidr: Some(cluster_cidr),
            ..Default::default()
        },
        service_cidr: args.service_cidr,
        cluster_dns: Some(args.cluster_dns),
        defaults: corral_controlplane::validate::Defaults {
            toleration_seconds: args.pod_eviction_seconds as i64,
        },
        pod_security: podsecurity::Defaults {
            enforce: Policy::latest(args.pod_security_default),
            warn: Policy::latest(args.pod_security_warn_default),
            audit: Policy::latest(args.pod_security_audit_default),
        },
        tls_sans: args.tls_san,
        advertise_address: args.advertise_address,
        insecure_plaintext: args.insecure_plaintext,
        write_kubeconfig: args.write_kubeconfig,
        node_cert_lifetime: Duration::from_secs(args.node_cert_lifetime_seconds),
        ..Default::default()
    };
    let running = corral_controlplane::start(config).await?;
    // The store is open and the listener accepts: systemd may start what comes after us.
    corral_api::runtime::systemd::notify_ready();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate() => {}
    }
    running.shutdown().await;
    Ok(())
}

async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
