//! ServerJoin against a real etcd speaking TLS only (Debian's etcd-server on loopback, with
//! certificates from `pki::etcd`): a second member joins through the first server's control
//! plane with the server token and starts with `initial-cluster-state=existing`, and leaves
//! again (uninstall); a wrong token and a token naming another CA are refused before
//! anything changes.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral_controlplane::join::server_joiner::{self, JoinerError, ServerToken};
use corral_controlplane::pki::etcd as etcd_pki;
use corral_controlplane::store::etcd::EtcdConfig;
use corral_controlplane::{start, Config};

const ETCD: &str = "/usr/bin/etcd";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// An etcd member over TLS (clients and peers, certificates required), killed on drop.
struct Member(Child);

impl Member {
    fn start(
        name: &str,
        dir: &Path,
        tls: &Path,
        ports: (u16, u16),
        cluster: &str,
        state: &str,
    ) -> Self {
        let (client, peer) = ports;
        let f = |n: &str| tls.join(n).display().to_string();
        let child = Command::new(ETCD)
            .args([
                format!("--name={name}"),
                format!("--data-dir={}", dir.join(name).display()),
                format!("--listen-client-urls=https://127.0.0.1:{client}"),
                format!("--advertise-client-urls=https://127.0.0.1:{client}"),
                format!("--listen-peer-urls=https://127.0.0.1:{peer}"),
                format!("--initial-advertise-peer-urls=https://127.0.0.1:{peer}"),
                format!("--initial-cluster={cluster}"),
                format!("--initial-cluster-state={state}"),
                format!("--initial-cluster-token=corral-test-{}", std::process::id()),
                format!("--cert-file={}", f(etcd_pki::SERVER_CRT)),
                format!("--key-file={}", f(etcd_pki::SERVER_KEY)),
                format!("--trusted-ca-file={}", f(etcd_pki::CA_CRT)),
                "--client-cert-auth".into(),
                format!("--peer-cert-file={}", f(etcd_pki::SERVER_CRT)),
                format!("--peer-key-file={}", f(etcd_pki::SERVER_KEY)),
                format!("--peer-trusted-ca-file={}", f(etcd_pki::CA_CRT)),
                "--peer-client-cert-auth".into(),
                "--heartbeat-interval=50".into(),
                "--election-timeout=500".into(),
                "--logger=zap".into(),
                "--log-level=error".into(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        Member(child)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn client_config(tls: &Path, client_port: u16) -> EtcdConfig {
    let read = |n: &str| Some(std::fs::read(tls.join(n)).unwrap());
    EtcdConfig {
        endpoints: vec![format!("https://127.0.0.1:{client_port}")],
        ca: read(etcd_pki::CA_CRT),
        cert: read(etcd_pki::CLIENT_CRT),
        key: read(etcd_pki::CLIENT_KEY),
    }
}

/// (name, started) of every member, through `config`.
async fn members(config: &EtcdConfig) -> Option<Vec<(String, bool)>> {
    let mut c = etcd_client::Client::connect(&config.endpoints, Some(config.connect_options()))
        .await
        .ok()?;
    let list = c.member_list().await.ok()?;
    Some(
        list.members()
            .iter()
            .map(|m| (m.name().to_string(), !m.client_urls().is_empty()))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_the_token_joins_the_embedded_etcd_and_a_wrong_token_changes_nothing() {
    if !Path::new(ETCD).exists() {
        assert!(std::env::var_os("CI").is_none(), "{ETCD} is missing in CI");
        eprintln!("SKIPPED: {ETCD} is missing");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (tls0, tls1, data) = (
        work.path().join("tls0"),
        work.path().join("tls1"),
        work.path().join("cp"),
    );
    let sans: BTreeSet<String> = etcd_pki::sans("m0", &[]);
    etcd_pki::ensure(&tls0, None, "m0", &sans).unwrap();
    let (p0, p1) = ((free_port(), free_port()), (free_port(), free_port()));
    let first = format!("m0=https://127.0.0.1:{}", p0.1);
    let _m0 = Member::start("m0", work.path(), &tls0, p0, &first, "new");

    // The first server, on its etcd, answering ServerJoin with the etcd CA in tls0.
    let etcd0 = client_config(&tls0, p0.0);
    let running = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let config = Config {
                listen: "127.0.0.1:0".parse().unwrap(),
                data_dir: data.clone(),
                controllers: false,
                datastore: Some(etcd0.clone()),
                etcd_ca_dir: Some(tls0.clone()),
                ..Default::default()
            };
            match start(config).await {
                Ok(r) => break r,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("control plane not up yet: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("control plane on TLS etcd: {e}"),
            }
        }
    };
    let secret = std::fs::read_to_string(data.join("server-token")).unwrap();
    let ca_pem = std::fs::read_to_string(data.join("tls/ca.crt")).unwrap();
    let ca_der = corral_api::pin::pem_to_der(&ca_pem).unwrap();
    let long = ServerToken::parse(&ServerToken::long(&secret, &ca_der)).unwrap();
    let peer1 = format!("https://127.0.0.1:{}", p1.1);
    let sans1 = etcd_pki::sans("m1", &[]);

    // Refused before anything changes: a wrong secret, and a token naming another CA.
    let wrong = ServerToken {
        secret: "guess".into(),
        ..long.clone()
    };
    let err = server_joiner::join(&running.url(), &wrong, "m1", &peer1, &tls1, &sans1)
        .await
        .unwrap_err();
    assert!(matches!(err, JoinerError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("server token refused"), "{err}");
    let other = ServerToken {
        ca_hash: Some("0".repeat(64)),
        ..long.clone()
    };
    let err = server_joiner::join(&running.url(), &other, "m1", &peer1, &tls1, &sans1)
        .await
        .unwrap_err();
    assert!(matches!(err, JoinerError::Pin(_)), "{err}");
    assert_eq!(members(&etcd0).await.unwrap().len(), 1, "no member added");
    assert!(!tls1.exists(), "nothing written on a refused join");

    // The right token: m1 is added, gets the etcd CA, and starts as an existing member.
    let joined = server_joiner::join(&running.url(), &long, "m1", &peer1, &tls1, &sans1)
        .await
        .expect("join");
    assert_eq!(joined.initial_cluster, format!("{first},m1={peer1}"));
    assert_eq!(
        etcd_pki::load_ca(&tls1).unwrap(),
        etcd_pki::load_ca(&tls0).unwrap(),
        "the joiner has the cluster's etcd CA"
    );
    let _m1 = Member::start(
        "m1",
        work.path(),
        &tls1,
        p1,
        &joined.initial_cluster,
        "existing",
    );
    let etcd1 = client_config(&tls1, p1.0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = members(&etcd1).await.unwrap_or_default();
        if seen.len() == 2 && seen.iter().all(|(n, started)| !n.is_empty() && *started) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "m1 did not start as a member: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Asking again (a retried install) changes nothing.
    let again = server_joiner::join(&running.url(), &long, "m1", &peer1, &tls1, &sans1)
        .await
        .expect("join again");
    assert_eq!(again.member_id, joined.member_id);

    // Uninstalling m1 removes its member (through its own etcd); the last one stays.
    use corral_controlplane::join::server::{leave, Leave};
    assert!(matches!(leave(&etcd1).await.unwrap(), Leave::Remove { .. }));
    let left = members(&etcd0).await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(leave(&etcd0).await.unwrap(), Leave::Last);
    running.shutdown().await;
}
