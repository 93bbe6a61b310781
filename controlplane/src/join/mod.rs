//! The Join service: a bootstrap token holder trades a CSR for a node certificate
//! (`CN=system:node:<name>, O=system:nodes`), a node renews its own; the node identity record
//! (`identity.rs`) keeps one key per node name. CSR signing sits behind `sign::CsrSigner`.

use std::sync::Arc;
use std::time::Duration;

use corral_api::kinds;
use corral_proto::v1 as pb;
use serde_json::Value;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::auth::{UserInfo, BOOTSTRAPPERS, MASTERS, NODES, NODE_PREFIX};
use crate::registry::{ApiError, Registry};

pub mod identity;
pub mod server;
pub mod server_joiner;
pub mod sign;

use identity::Plan;
use sign::{CsrSigner, SignError};

/// Kubernetes' and k3s's leaf lifetime.
pub const DEFAULT_NODE_CERT_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
/// `corral-node-` + name must stay a valid Secret name (253 characters).
const MAX_NODE_NAME: usize = 253 - identity::SECRET_PREFIX.len();

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("no credentials: join with an agent token (--token or --token-file; `corral token create` makes one)")]
    Unauthenticated,
    #[error("user {user:?} may not join nodes: use an agent join token (`corral token create`)")]
    NotBootstrapper { user: String },
    #[error("user {user:?} is not a node: renewal takes the node's current certificate")]
    NotNode { user: String },
    #[error("node name {name:?}: must be a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most {MAX_NODE_NAME} characters): choose one with --node-name")]
    BadName { name: String },
    #[error("node name {name:?} is held by another host's key: if this host replaced that node, run `corral delete node {name}` and join again; otherwise choose another name with --node-name")]
    NameTaken { name: String },
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<JoinError> for Status {
    fn from(e: JoinError) -> Self {
        match e {
            JoinError::Unauthenticated => Status::unauthenticated(e.to_string()),
            JoinError::NotBootstrapper { .. } | JoinError::NotNode { .. } => {
                Status::permission_denied(e.to_string())
            }
            JoinError::BadName { .. } | JoinError::Sign(SignError::BadCsr(_)) => {
                Status::invalid_argument(e.to_string())
            }
            JoinError::NameTaken { .. } => Status::already_exists(e.to_string()),
            JoinError::Sign(_) => Status::internal(e.to_string()),
            JoinError::Api(api) => api.into(),
        }
    }
}

pub fn validate_node_name(name: &str) -> Result<(), JoinError> {
    if name.len() > MAX_NODE_NAME || !corral_api::rules::names::is_dns1123_subdomain(name) {
        return Err(JoinError::BadName {
            name: name.to_string(),
        });
    }
    Ok(())
}

pub struct JoinService {
    registry: Arc<Registry>,
    signer: Arc<dyn CsrSigner>,
    lifetime: Duration,
}

impl JoinService {
    pub fn new(registry: Arc<Registry>, signer: Arc<dyn CsrSigner>, lifetime: Duration) -> Self {
        Self {
            registry,
            signer,
            lifetime,
        }
    }

    pub fn into_server(self) -> pb::join_server::JoinServer<Self> {
        pb::join_server::JoinServer::new(self)
    }

    async fn record(&self, name: &str) -> Result<Option<Value>, JoinError> {
        match self
            .registry
            .get(
                &kinds::SECRETS,
                identity::NAMESPACE,
                &identity::secret_name(name),
            )
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(ApiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn node_exists(&self, name: &str) -> Result<bool, JoinError> {
        match self.registry.get(&kinds::NODES, "", name).await {
            Ok(_) => Ok(true),
            Err(ApiError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the record for `key` over `current` (at its resourceVersion) or creates it.
    async fn put_record(
        &self,
        name: &str,
        key: &str,
        current: Option<&Value>,
    ) -> Result<(), ApiError> {
        let mut secret = identity::to_secret(name, key);
        match current {
            None => self
                .registry
                .create(&kinds::SECRETS, identity::NAMESPACE, secret, false)
                .await
                .map(drop),
            Some(cur) => {
                secret["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
                self.registry
                    .update(&kinds::SECRETS, identity::NAMESPACE, secret, false, false)
                    .await
                    .map(drop)
            }
        }
    }

    /// Claims `name` for the CSR's key, retrying once when another join raced us.
    async fn claim(&self, name: &str, key: &str) -> Result<Plan, JoinError> {
        let mut attempt = 0;
        loop {
            let record = self.record(name).await?;
            let recorded = record.as_ref().and_then(identity::key_hash);
            // An unreadable record holds no key: overwrite it as if absent.
            let plan = match (&record, &recorded) {
                (Some(_), None) => Plan::Replace,
                _ => identity::plan(recorded.as_deref(), self.node_exists(name).await?, key),
            };
            let written = match plan {
                Plan::Keep => return Ok(plan),
                Plan::Refuse => {
                    return Err(JoinError::NameTaken {
                        name: name.to_string(),
                    })
                }
                Plan::Create => self.put_record(name, key, None).await,
                Plan::Replace => self.put_record(name, key, record.as_ref()).await,
            };
            match written {
                Ok(()) => return Ok(plan),
                Err(ApiError::AlreadyExists { .. } | ApiError::Conflict { .. }) if attempt == 0 => {
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn sign(&self, csr_pem: &str, name: &str) -> Result<pb::JoinResponse, JoinError> {
        let cn = format!("{NODE_PREFIX}{name}");
        let cert_pem = self
            .signer
            .sign_client(csr_pem, &cn, &[NODES], self.lifetime)?;
        Ok(pb::JoinResponse {
            cert_pem,
            ca_pem: self.signer.ca_pem(),
        })
    }

    async fn join_inner(
        &self,
        user: Option<UserInfo>,
        req: pb::JoinRequest,
    ) -> Result<pb::JoinResponse, JoinError> {
        let user = user.ok_or(JoinError::Unauthenticated)?;
        if !user.in_group(BOOTSTRAPPERS) && !user.in_group(MASTERS) {
            return Err(JoinError::NotBootstrapper { user: user.name });
        }
        validate_node_name(&req.node_name)?;
        let key = sign::csr_key_hash(&req.csr_pem)?;
        let plan = self.claim(&req.node_name, &key).await?;
        let resp = self.sign(&req.csr_pem, &req.node_name)?;
        info!(node = %req.node_name, by = %user.name, ?plan, "node joined");
        Ok(resp)
    }

    async fn renew_inner(
        &self,
        user: Option<UserInfo>,
        req: pb::RenewRequest,
    ) -> Result<pb::JoinResponse, JoinError> {
        let user = user.ok_or(JoinError::Unauthenticated)?;
        let name = user
            .node_name()
            .ok_or_else(|| JoinError::NotNode {
                user: user.name.clone(),
            })?
            .to_string();
        validate_node_name(&name)?;
        let key = sign::csr_key_hash(&req.csr_pem)?;
        // The caller proved it holds the name's current certificate: its new key takes over.
        let record = self.record(&name).await?;
        if record.as_ref().and_then(identity::key_hash).as_deref() != Some(key.as_str()) {
            self.put_record(&name, &key, record.as_ref()).await?;
        }
        let resp = self.sign(&req.csr_pem, &name)?;
        info!(node = %name, "node certificate renewed");
        Ok(resp)
    }
}

#[tonic::async_trait]
impl pb::join_server::Join for JoinService {
    async fn join(
        &self,
        request: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        let user = request.extensions().get::<UserInfo>().cloned();
        let node = request.get_ref().node_name.clone();
        self.join_inner(user, request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| {
                warn!(node = %node, error = %e, "join refused");
                e.into()
            })
    }

    async fn renew(
        &self,
        request: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        let user = request.extensions().get::<UserInfo>().cloned();
        self.renew_inner(user, request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| {
                warn!(error = %e, "renewal refused");
                e.into()
            })
    }
}

#[cfg(test)]
mod tests;
