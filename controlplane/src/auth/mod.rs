//! Who is asking and what they may do: the types every part of authentication, authorization
//! and admission shares. Authentication (`authn`) turns a connection's client certificate or a
//! request's bearer token into a [`UserInfo`]; authorization decides on [`Attributes`].

use async_trait::async_trait;

pub mod authn;
pub mod authz;
pub mod tokens;

/// Group of every authenticated identity, as in Kubernetes.
pub const AUTHENTICATED: &str = "system:authenticated";
/// Group whose members may do anything (the admin's client certificate carries it).
pub const MASTERS: &str = "system:masters";
/// Group of node identities (`CN=system:node:<name>, O=system:nodes`).
pub const NODES: &str = "system:nodes";
/// Prefix of a node identity's user name.
pub const NODE_PREFIX: &str = "system:node:";
/// Group of agent join tokens (`system:bootstrap:<token id>`): they may only join.
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";

/// An authenticated identity, as Kubernetes' `user.Info`. Inserted into every request's
/// extensions by the listener (a request without one never reaches a service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn new(
        name: impl Into<String>,
        groups: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            name: name.into(),
            groups: groups.into_iter().map(Into::into).collect(),
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The node this identity speaks for: `Some("n1")` for `system:node:n1` in `system:nodes`.
    pub fn node_name(&self) -> Option<&str> {
        if !self.in_group(NODES) {
            return None;
        }
        self.name
            .strip_prefix(NODE_PREFIX)
            .filter(|n| !n.is_empty())
    }
}

/// One request in authorization's terms (Kubernetes' `authorizer.Attributes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub user: UserInfo,
    /// get, list, watch, create, update, patch, delete, deletecollection, bind, ...
    pub verb: String,
    /// "" for the core group.
    pub api_group: String,
    /// Plural resource name: "pods", "secrets", ...
    pub resource: String,
    /// "status", "binding", "log", "scale", "finalize", or "".
    pub subresource: String,
    /// "" for cluster-scoped requests.
    pub namespace: String,
    /// "" for lists and creates of a generated name.
    pub name: String,
    /// A non-resource request's URL path (`/metrics`); "" for requests about resources.
    pub path: String,
}

/// An authorizer's answer. `Deny` carries the reason appended to Kubernetes' "cannot" line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
    NoOpinion,
}

/// Decides whether a request may proceed.
#[async_trait]
pub trait Authorizer: Send + Sync {
    async fn authorize(&self, attrs: &Attributes) -> Decision;
}

/// Why a bearer token was refused: one line that says what to fix, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejected {
    #[error("token {id} expired at {at}: create a new one with `corral token create`")]
    Expired { id: String, at: String },
    #[error("token {id} is not valid: wrong secret, or the token was deleted")]
    Invalid { id: String },
    #[error("malformed token: expected [K10<ca-hash>::]<id>.<secret>")]
    Malformed,
}

/// Turns a bearer token into an identity: `Ok(None)` when the token is not one this
/// authenticator knows; `Err` to refuse it.
#[async_trait]
pub trait TokenAuthenticator: Send + Sync {
    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, TokenRejected>;
}
