//! The ServerJoin service: a server joining the embedded etcd (`install.sh server --server
//! URL`) trades the server token for the etcd CA while this server adds it as an etcd member
//! (k3s's `--server` join). [`plan_member`] and [`initial_cluster`] are the pure part; the
//! service reads the token and CA from disk and talks to etcd through its cluster API.

use std::path::PathBuf;

use corral_proto::v1 as pb;
use etcd_client::Client;
use tokio::sync::Mutex;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::auth::tokens::constant_time_eq;
use crate::pki::etcd as etcd_pki;
use crate::store::etcd::EtcdConfig;

/// An etcd member as [`plan_member`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    /// Empty until the member has started and published its name.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberPlan {
    /// A new member with this peer URL.
    Add,
    /// Already a member (a join retried, or a server reinstalled on its own data): no change.
    Keep { id: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum ServerJoinError {
    #[error("server token refused: it is not this cluster's (the first server keeps it in DATA_DIR/server-token)")]
    WrongToken,
    #[error("this server cannot read its own server token at {path}: {source}")]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("member name {name:?}: must be a DNS-1123 subdomain (the joining host's name)")]
    BadName { name: String },
    #[error("peer URL {url:?}: must be https://HOST:PORT (etcd peers talk TLS only)")]
    BadPeerUrl { url: String },
    #[error("etcd member {name:?} already exists with peer URLs {peer_urls:?}: remove it first (etcdctl member remove {id:x}) or join under another name")]
    NameTaken {
        name: String,
        id: u64,
        peer_urls: Vec<String>,
    },
    #[error("peer URL {url} belongs to etcd member {other:?}: remove it first (etcdctl member remove {id:x})")]
    UrlTaken { url: String, other: String, id: u64 },
    #[error("this server runs no embedded etcd ({dir} holds no etcd CA): join through a server installed with --cluster-init or --server")]
    NoEtcdCa { dir: PathBuf },
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error("etcd {op}: {source}")]
    Etcd {
        op: &'static str,
        #[source]
        source: etcd_client::Error,
    },
}

impl From<ServerJoinError> for Status {
    fn from(e: ServerJoinError) -> Self {
        use ServerJoinError::*;
        match e {
            WrongToken => Status::permission_denied(e.to_string()),
            BadName { .. } | BadPeerUrl { .. } => Status::invalid_argument(e.to_string()),
            NameTaken { .. } | UrlTaken { .. } => Status::already_exists(e.to_string()),
            NoEtcdCa { .. } => Status::failed_precondition(e.to_string()),
            Etcd { .. } => Status::unavailable(e.to_string()),
            TokenFile { .. } | Pki(_) => Status::internal(e.to_string()),
        }
    }
}

/// A peer URL etcd accepts from a joiner: `https://HOST:PORT`, nothing after the port.
pub fn validate_peer_url(url: &str) -> Result<(), ServerJoinError> {
    let bad = || ServerJoinError::BadPeerUrl {
        url: url.to_string(),
    };
    let rest = url.strip_prefix("https://").ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    if !host_ok || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(())
}

/// What to do for a joiner `name` at `peer_url`, given the cluster's members.
pub fn plan_member(
    members: &[Member],
    name: &str,
    peer_url: &str,
) -> Result<MemberPlan, ServerJoinError> {
    if let Some(m) = members
        .iter()
        .find(|m| m.peer_urls.iter().any(|u| u == peer_url))
    {
        return if m.name.is_empty() || m.name == name {
            Ok(MemberPlan::Keep { id: m.id })
        } else {
            Err(ServerJoinError::UrlTaken {
                url: peer_url.to_string(),
                other: m.name.clone(),
                id: m.id,
            })
        };
    }
    if let Some(m) = members.iter().find(|m| m.name == name) {
        return Err(ServerJoinError::NameTaken {
            name: name.to_string(),
            id: m.id,
            peer_urls: m.peer_urls.clone(),
        });
    }
    Ok(MemberPlan::Add)
}

/// etcd's `--initial-cluster` for member `new` (named `name`): every started member by its
/// name and peer URLs, and the new one (members added but not started yet have no name and
/// are left out, as etcdctl does).
pub fn initial_cluster(members: &[Member], new: u64, name: &str) -> String {
    let mut parts = Vec::new();
    for m in members {
        let n = if m.id == new { name } else { m.name.as_str() };
        if n.is_empty() {
            continue;
        }
        for u in &m.peer_urls {
            parts.push(format!("{n}={u}"));
        }
    }
    // By name, whatever order etcd lists its members in (by id).
    parts.sort();
    parts.join(",")
}

/// What a server leaving the embedded etcd (`corral-uninstall.sh`) does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leave {
    /// Remove this member: the others then count a quorum without it.
    Remove { id: u64 },
    /// It is not a member (already removed).
    NotMember,
    /// It is the only member: the cluster goes with it.
    Last,
}

/// What member `id` leaving does. Pure.
pub fn plan_leave(members: &[Member], id: u64) -> Leave {
    match members.iter().find(|m| m.id == id) {
        None => Leave::NotMember,
        Some(_) if members.len() == 1 => Leave::Last,
        Some(m) => Leave::Remove { id: m.id },
    }
}

/// Removes the member `etcd` reaches (one endpoint: this host's own member, from the server
/// being uninstalled). etcd refuses a removal that would cost its quorum.
pub async fn leave(etcd: &EtcdConfig) -> Result<Leave, ServerJoinError> {
    let mut client = Client::connect(&etcd.endpoints, Some(etcd.connect_options()))
        .await
        .map_err(|source| ServerJoinError::Etcd {
            op: "connect",
            source,
        })?;
    let status = client
        .status()
        .await
        .map_err(|source| ServerJoinError::Etcd {
            op: "status",
            source,
        })?;
    let me = status.header().map(|h| h.member_id()).unwrap_or_default();
    let members = ServerJoinService::members(&mut client).await?;
    let name = members
        .iter()
        .find(|m| m.id == me)
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let plan = plan_leave(&members, me);
    if let Leave::Remove { id } = plan {
        // etcd changes members only once its leader has been connected to all of them for a
        // while ("unhealthy cluster" right after a join or a restart): tried again.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match client.member_remove(id).await {
                Ok(_) => break,
                Err(etcd_client::Error::GRpcStatus(s))
                    if s.code() == tonic::Code::Unavailable
                        && std::time::Instant::now() < deadline =>
                {
                    info!(reason = %s.message(), "etcd cannot remove a member yet; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(source) => {
                    return Err(ServerJoinError::Etcd {
                        op: "member remove",
                        source,
                    })
                }
            }
        }
        info!(member = %name, id = %format!("{id:x}"), "left the embedded etcd");
    }
    Ok(plan)
}

/// Serves ServerJoin on a server whose etcd CA is in `ca_dir` and server token in `token_file`.
pub struct ServerJoinService {
    etcd: EtcdConfig,
    ca_dir: PathBuf,
    token_file: PathBuf,
    /// One member change at a time from this server.
    busy: Mutex<()>,
}

impl ServerJoinService {
    pub fn new(etcd: EtcdConfig, ca_dir: PathBuf, token_file: PathBuf) -> Self {
        Self {
            etcd,
            ca_dir,
            token_file,
            busy: Mutex::new(()),
        }
    }

    pub fn into_server(self) -> pb::server_join_server::ServerJoinServer<Self> {
        pb::server_join_server::ServerJoinServer::new(self)
    }

    fn check_token(&self, given: &str) -> Result<(), ServerJoinError> {
        let mine = std::fs::read_to_string(&self.token_file).map_err(|source| {
            ServerJoinError::TokenFile {
                path: self.token_file.clone(),
                source,
            }
        })?;
        let mine = mine.trim();
        if mine.is_empty() || !constant_time_eq(mine.as_bytes(), given.trim().as_bytes()) {
            return Err(ServerJoinError::WrongToken);
        }
        Ok(())
    }

    async fn members(client: &mut Client) -> Result<Vec<Member>, ServerJoinError> {
        let resp = client
            .member_list()
            .await
            .map_err(|source| ServerJoinError::Etcd {
                op: "member list",
                source,
            })?;
        Ok(resp
            .members()
            .iter()
            .map(|m| Member {
                id: m.id(),
                name: m.name().to_string(),
                peer_urls: m.peer_urls().to_vec(),
                client_urls: m.client_urls().to_vec(),
            })
            .collect())
    }

    async fn join(
        &self,
        req: pb::ServerJoinRequest,
    ) -> Result<pb::ServerJoinResponse, ServerJoinError> {
        self.check_token(&req.token)?;
        if !corral_api::rules::names::is_dns1123_subdomain(&req.name) {
            return Err(ServerJoinError::BadName { name: req.name });
        }
        validate_peer_url(&req.peer_url)?;
        let ca = etcd_pki::load_ca(&self.ca_dir)?.ok_or_else(|| ServerJoinError::NoEtcdCa {
            dir: self.ca_dir.clone(),
        })?;
        let _one = self.busy.lock().await;
        let mut client = Client::connect(&self.etcd.endpoints, Some(self.etcd.connect_options()))
            .await
            .map_err(|source| ServerJoinError::Etcd {
                op: "connect",
                source,
            })?;
        let before = Self::members(&mut client).await?;
        let id = match plan_member(&before, &req.name, &req.peer_url)? {
            MemberPlan::Keep { id } => id,
            MemberPlan::Add => {
                let added = client
                    .member_add([req.peer_url.as_str()], None)
                    .await
                    .map_err(|source| ServerJoinError::Etcd {
                        op: "member add",
                        source,
                    })?;
                let id = added.member().map(|m| m.id()).unwrap_or_default();
                info!(member = %req.name, peer_url = %req.peer_url, id = %format!("{id:x}"), "added an etcd member");
                id
            }
        };
        let after = Self::members(&mut client).await?;
        Ok(pb::ServerJoinResponse {
            etcd_ca_pem: ca.cert_pem,
            etcd_ca_key_pem: ca.key_pem,
            initial_cluster: initial_cluster(&after, id, &req.name),
            member_id: format!("{id:x}"),
            client_urls: after
                .iter()
                .filter(|m| m.id != id)
                .flat_map(|m| m.client_urls.clone())
                .collect(),
        })
    }
}

#[tonic::async_trait]
impl pb::server_join_server::ServerJoin for ServerJoinService {
    async fn join_server(
        &self,
        request: Request<pb::ServerJoinRequest>,
    ) -> Result<Response<pb::ServerJoinResponse>, Status> {
        let req = request.into_inner();
        let name = req.name.clone();
        self.join(req).await.map(Response::new).map_err(|e| {
            warn!(member = %name, error = %e, "server join refused");
            e.into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, name: &str, peer: &str) -> Member {
        Member {
            id,
            name: name.into(),
            peer_urls: vec![peer.into()],
            client_urls: vec![peer.replace("2380", "2379")],
        }
    }

    #[test]
    fn a_joiner_is_added_kept_or_refused_by_its_name_and_peer_url() {
        let s1 = m(1, "s1", "https://10.0.0.1:2380");
        let unstarted = m(2, "", "https://10.0.0.2:2380");
        type Case<'a> = (
            &'a str,
            Vec<Member>,
            &'a str,
            &'a str,
            Result<MemberPlan, &'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "new",
                vec![s1.clone()],
                "s2",
                "https://10.0.0.2:2380",
                Ok(MemberPlan::Add),
            ),
            (
                "retried before it started",
                vec![s1.clone(), unstarted.clone()],
                "s2",
                "https://10.0.0.2:2380",
                Ok(MemberPlan::Keep { id: 2 }),
            ),
            (
                "started and asks again",
                vec![s1.clone(), m(2, "s2", "https://10.0.0.2:2380")],
                "s2",
                "https://10.0.0.2:2380",
                Ok(MemberPlan::Keep { id: 2 }),
            ),
            (
                "name of another",
                vec![s1.clone()],
                "s1",
                "https://10.0.0.9:2380",
                Err("already exists"),
            ),
            (
                "address of another",
                vec![s1.clone()],
                "s9",
                "https://10.0.0.1:2380",
                Err("belongs to etcd member \"s1\""),
            ),
        ];
        for (what, members, name, url, want) in cases {
            match (plan_member(&members, name, url), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{what}"),
                (Err(e), Err(words)) => assert!(e.to_string().contains(words), "{what}: {e}"),
                (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_initial_cluster_names_started_members_and_the_new_one_by_name() {
        // etcd lists members by id; an unstarted one (no name yet) is left out.
        let members = vec![
            m(2, "", "https://10.0.0.2:2380"),
            m(3, "s3", "https://10.0.0.3:2380"),
            m(4, "s1", "https://10.0.0.1:2380"),
            m(5, "", "https://10.0.0.5:2380"),
        ];
        assert_eq!(
            initial_cluster(&members, 5, "s0"),
            "s0=https://10.0.0.5:2380,s1=https://10.0.0.1:2380,s3=https://10.0.0.3:2380"
        );
    }

    #[test]
    fn a_leaving_member_is_removed_unless_it_is_the_last_or_gone() {
        let s1 = m(1, "s1", "https://10.0.0.1:2380");
        let s2 = m(2, "s2", "https://10.0.0.2:2380");
        let both = [s1.clone(), s2];
        assert_eq!(plan_leave(&both, 2), Leave::Remove { id: 2 });
        assert_eq!(plan_leave(&both[..1], 2), Leave::NotMember);
        assert_eq!(plan_leave(&[s1], 1), Leave::Last);
    }

    #[test]
    fn only_https_peer_urls_with_a_port_are_accepted() {
        for ok in [
            "https://10.0.0.2:2380",
            "https://s2.lab:2380",
            "https://[fd00::2]:2380",
        ] {
            assert!(validate_peer_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.2:2380",
            "https://10.0.0.2",
            "https://10.0.0.2:2380/x",
            "https://:2380",
            "https://a b:2380",
        ] {
            assert!(validate_peer_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_token_is_compared_with_the_servers_own() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server-token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let svc = ServerJoinService::new(EtcdConfig::default(), dir.path().into(), file);
        assert!(svc.check_token("s3cret").is_ok());
        assert!(matches!(
            svc.check_token("guess"),
            Err(ServerJoinError::WrongToken)
        ));
        assert!(matches!(
            svc.check_token(""),
            Err(ServerJoinError::WrongToken)
        ));
    }
}
