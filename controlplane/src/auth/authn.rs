//! Authentication, as a tower layer over every gRPC service: a verified client certificate
//! (CN = user, O = groups), else a bearer token through the [`TokenAuthenticator`], becomes
//! the [`UserInfo`] in the request's extensions; anything else is answered UNAUTHENTICATED
//! with one line saying how to get credentials. `Insecure` makes every request the admin.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tracing::debug;

use super::{TokenAuthenticator, TokenRejected, UserInfo, AUTHENTICATED, MASTERS};
use crate::listener::ConnInfo;

/// How requests are authenticated.
#[derive(Clone)]
pub enum Mode {
    /// TLS required; client certificates, and bearer tokens when an authenticator is given.
    Secure {
        tokens: Option<Arc<dyn TokenAuthenticator>>,
        /// Where the admin kubeconfig is, for the message an unauthenticated client gets.
        admin_kubeconfig: String,
    },
    /// `--insecure-plaintext`: every request is the admin (kube-apiserver's old insecure port).
    Insecure,
}

/// The identity a client certificate gives, read once per connection.
#[derive(Debug, Clone)]
pub struct CertIdentity {
    pub user: UserInfo,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

/// Why a request was refused: one line saying what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthnError {
    #[error("this control plane requires TLS and credentials: use https:// and the kubeconfig written to {admin_kubeconfig}, or join with a token")]
    Plaintext { admin_kubeconfig: String },
    #[error("no credentials: present a client certificate or a bearer token (the admin's kubeconfig is {admin_kubeconfig}, or join with a token)")]
    NoCredentials { admin_kubeconfig: String },
    #[error("client certificate of {user:?} expired at {at}: get a new certificate")]
    CertExpired { user: String, at: String },
    #[error("client certificate of {user:?} is valid only from {at}: this machine's clock and the client's differ (clock skew)")]
    CertNotYetValid { user: String, at: String },
    #[error("client certificate has no usable subject: {reason}")]
    BadCert { reason: String },
    #[error("bearer tokens are not accepted by this control plane: use a client certificate")]
    TokensOff,
    #[error(
        "bearer token not recognised: check the token, or create one with `corral token create`"
    )]
    UnknownToken,
    #[error(transparent)]
    Token(#[from] TokenRejected),
}

/// The admin identity of the insecure mode.
pub fn admin() -> UserInfo {
    UserInfo::new("admin", [MASTERS, AUTHENTICATED])
}

/// Reads a verified client certificate's subject and validity.
pub fn cert_identity(der: &[u8]) -> Result<CertIdentity, AuthnError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| AuthnError::BadCert {
        reason: e.to_string(),
    })?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .ok_or_else(|| AuthnError::BadCert {
            reason: "no common name".into(),
        })?
        .to_string();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    if !groups.iter().any(|g| g == AUTHENTICATED) {
        groups.push(AUTHENTICATED.to_string());
    }
    Ok(CertIdentity {
        user: UserInfo { name, groups },
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| unix.to_string())
}

/// A certificate identity checked against `now` (unix seconds): a connection that outlives
/// its certificate is refused from then on.
pub fn check_validity(id: &CertIdentity, now: i64) -> Result<UserInfo, AuthnError> {
    if now > id.not_after {
        return Err(AuthnError::CertExpired {
            user: id.user.name.clone(),
            at: rfc3339(id.not_after),
        });
    }
    if now < id.not_before {
        return Err(AuthnError::CertNotYetValid {
            user: id.user.name.clone(),
            at: rfc3339(id.not_before),
        });
    }
    Ok(id.user.clone())
}

fn bearer(req: &http::request::Parts) -> Option<&str> {
    let v = req
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Per-connection cache of the certificate identity (parsed on the connection's first request).
#[derive(Debug, Clone, Default)]
pub struct IdentityCache(Arc<OnceLock<Result<CertIdentity, AuthnError>>>);

/// Who is asking, by the rules in this module's header.
pub async fn authenticate(mode: &Mode, req: &http::request::Parts) -> Result<UserInfo, AuthnError> {
    let (tokens, admin_kubeconfig) = match mode {
        Mode::Insecure => return Ok(admin()),
        Mode::Secure {
            tokens,
            admin_kubeconfig,
        } => (tokens, admin_kubeconfig),
    };
    let conn = req.extensions.get::<ConnInfo>();
    if !conn.is_some_and(|c| c.tls) {
        return Err(AuthnError::Plaintext {
            admin_kubeconfig: admin_kubeconfig.clone(),
        });
    }
    let conn = conn.expect("checked above");
    if let Some(chain) = &conn.peer_certs {
        let id = conn
            .identity
            .0
            .get_or_init(|| cert_identity(&chain[0]))
            .clone()?;
        return check_validity(&id, jiff::Timestamp::now().as_second());
    }
    match (bearer(req), tokens) {
        (Some(_), None) => Err(AuthnError::TokensOff),
        (Some(token), Some(auth)) => match auth.authenticate(token).await? {
            Some(mut user) => {
                if !user.in_group(AUTHENTICATED) {
                    user.groups.push(AUTHENTICATED.to_string());
                }
                Ok(user)
            }
            None => Err(AuthnError::UnknownToken),
        },
        (None, _) => Err(AuthnError::NoCredentials {
            admin_kubeconfig: admin_kubeconfig.clone(),
        }),
    }
}

/// The gRPC service authenticated by its request alone (the server token).
pub const SERVER_JOIN_PATH: &str = "/corral.v1.ServerJoin/";

/// The layer put on the whole gRPC router.
#[derive(Clone)]
pub struct AuthnLayer {
    mode: Arc<Mode>,
}

impl AuthnLayer {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode: Arc::new(mode),
        }
    }
}

impl<S> tower::Layer<S> for AuthnLayer {
    type Service = Authn<S>;
    fn layer(&self, inner: S) -> Authn<S> {
        Authn {
            inner,
            mode: self.mode.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authn<S> {
    inner: S,
    mode: Arc<Mode>,
}

impl<S, B, R> tower::Service<http::Request<B>> for Authn<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<http::Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The clone is the one made ready by poll_ready's caller; keep it and leave a fresh one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let mode = self.mode.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            match authenticate(&mode, &parts).await {
                Ok(user) => {
                    parts.extensions.insert(user);
                    inner.call(http::Request::from_parts(parts, body)).await
                }
                // A joining server has only the server token, which the ServerJoin service
                // checks itself (over TLS: a plaintext request is refused above).
                Err(AuthnError::NoCredentials { .. })
                    if parts.uri.path().starts_with(SERVER_JOIN_PATH) =>
                {
                    inner.call(http::Request::from_parts(parts, body)).await
                }
                Err(e) => {
                    debug!(error = %e, path = %parts.uri.path(), "request refused: unauthenticated");
                    Ok(tonic::Status::unauthenticated(e.to_string()).into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> CertIdentity {
        CertIdentity {
            user: UserInfo::new("u", [AUTHENTICATED]),
            not_before: 100,
            not_after: 200,
        }
    }

    #[test]
    fn a_certificate_is_accepted_only_inside_its_validity() {
        let cases = [
            (150, Ok("u")),
            (100, Ok("u")),
            (200, Ok("u")),
            (201, Err("expired")),
            (99, Err("clock skew")),
        ];
        for (now, want) in cases {
            let got = check_validity(&id(), now);
            match (got, want) {
                (Ok(u), Ok(name)) => assert_eq!(u.name, name),
                (Err(e), Err(words)) => assert!(e.to_string().contains(words), "{now}: {e}"),
                (got, want) => panic!("at {now}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn only_a_bearer_authorization_header_is_a_token() {
        let req = |v: &str| {
            http::Request::builder()
                .header("authorization", v)
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        assert_eq!(bearer(&req("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&req("bearer abc")), Some("abc"));
        assert_eq!(bearer(&req("Basic abc")), None);
        assert_eq!(bearer(&req("Bearer ")), None);
    }
}
