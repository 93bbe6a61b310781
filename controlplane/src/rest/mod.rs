//! The Kubernetes REST API on the control plane's one listener: requests whose content type
//! is `application/grpc` go to tonic, every other one comes here. A REST request is
//! authenticated by the same `authn::authenticate`, then turned into a call of the gRPC
//! `ApiService` itself, so authorization, admission, validation and the registry are the
//! gRPC API's own (no second validation, no second store).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use corral_api::kinds::{self, ResourceInfo};
use corral_api::status::StatusReason;
use futures::future::BoxFuture;
use http::{HeaderMap, Request, Response, StatusCode};
use tracing::{debug, Instrument};

use crate::auth::authn::{self, Mode};
use crate::auth::UserInfo;
use crate::registry::FieldManager;
use crate::server::{ApiService, AuthorizeAs};

/// The longest field manager name (the API server's `FieldManagerMaxLength`).
pub const MAX_FIELD_MANAGER: usize = 128;

mod body;
pub mod connect;
pub mod dashboard;
pub mod discovery;
mod media;
pub mod openapi;
mod patch;
pub mod path;
pub mod response;
mod subresources;
pub mod table;
pub mod top;
mod validation;
mod verbs;
mod watch;

use path::{RequestInfo, Target};
use response::Body;

/// The REST side of the listener.
pub struct Rest {
    api: Arc<ApiService>,
    mode: Arc<Mode>,
}

impl Rest {
    pub fn new(api: Arc<ApiService>, mode: Mode) -> Self {
        Self {
            api,
            mode: Arc::new(mode),
        }
    }

    /// Answers one REST request.
    pub async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let span = tracing::debug_span!("rest", method = %parts.method, path = %parts.uri.path());
        async move {
            // The dashboard's static files are public (see `dashboard`); its data is not.
            if let Some(route) = dashboard::route(&parts.method, parts.uri.path()) {
                return dashboard::serve(&self.mode, &parts, route);
            }
            let user = match authn::authenticate(&self.mode, &parts).await {
                Ok(u) => u,
                Err(e) => {
                    debug!(error = %e, "request refused: unauthenticated");
                    return response::fail(StatusReason::Unauthorized, "Unauthorized");
                }
            };
            let query = path::query(parts.uri.query());
            match path::parse(&parts.method, parts.uri.path(), &query) {
                Target::Version => response::json(
                    StatusCode::OK,
                    &discovery::version(
                        env!("CARGO_PKG_VERSION"),
                        option_env!("CORRAL_GIT_COMMIT").unwrap_or("unknown"),
                    ),
                ),
                Target::LegacyVersions => {
                    response::json(StatusCode::OK, &discovery::legacy_versions())
                }
                Target::Groups => {
                    response::json(StatusCode::OK, &top::with_group(discovery::group_list()))
                }
                Target::Group(g) => found(top::group(&g).or_else(|| discovery::group(&g))),
                Target::Resources { group, version } => found(
                    top::resources(&group, &version)
                        .or_else(|| discovery::resource_list(&group, &version)),
                ),
                Target::Health => response::bytes(StatusCode::OK, "text/plain", "ok".into()),
                // As kube-apiserver: `get` on the path, through the authorizer chain (RBAC's
                // nonResourceURLs; `system:monitoring` and the admins may).
                Target::Metrics => match self.api.check_path(&user, "get", "/metrics").await {
                    Ok(()) => response::bytes(
                        StatusCode::OK,
                        corral_api::runtime::metrics::CONTENT_TYPE,
                        corral_api::runtime::metrics::encode(&crate::metrics::global().registry())
                            .into(),
                    ),
                    Err(status) => response::grpc_error(&status),
                },
                Target::OpenApiV2 => response::bytes(
                    StatusCode::OK,
                    openapi::V2_PROTOBUF,
                    openapi::v2::document(),
                ),
                Target::OpenApiIndex => openapi::serve_index(),
                Target::OpenApi(gv) => {
                    openapi::serve_document(&gv, query.get("hash").map(String::as_str))
                        .unwrap_or_else(not_found)
                }
                Target::NotFound => not_found(),
                Target::Resource(info) if top::handles(&info) => {
                    top::serve(&self.api, user, info, &query).await
                }
                Target::Resource(info) if connect::handles(&info) => {
                    connect::serve(&self.api, user, info, parts).await
                }
                Target::Resource(info) => {
                    let Some(kind) = resolve(&info) else {
                        return not_found();
                    };
                    if let Err(f) = media::check_accept(&parts.headers) {
                        return response::error(&f);
                    }
                    let mut body = match body::read(body).await {
                        Ok(b) => b,
                        Err(f) => return response::error(&f),
                    };
                    if matches!(info.verb, "create" | "update") {
                        let ct = parts
                            .headers
                            .get(http::header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok());
                        body = match media::object_json(ct, body, kind, &info.subresource) {
                            Ok(b) => b,
                            Err(f) => return response::error(&f),
                        };
                    }
                    let call = Call {
                        api: &self.api,
                        user,
                        info,
                        kind,
                        query,
                        headers: parts.headers,
                        body,
                    };
                    call.serve().await
                }
            }
        }
        .instrument(span)
        .await
    }
}

fn found(doc: Option<serde_json::Value>) -> Response<Body> {
    match doc {
        Some(d) => response::json(StatusCode::OK, &d),
        None => not_found(),
    }
}

fn not_found() -> Response<Body> {
    response::fail(
        StatusReason::NotFound,
        "the server could not find the requested resource",
    )
}

/// The kind a resource request names by group, version and plural.
fn resolve(info: &RequestInfo) -> Option<&'static ResourceInfo> {
    kinds::ALL
        .iter()
        .find(|k| k.plural == info.resource && k.group == info.group && k.version == info.version)
}

/// One resource request: who, what, and the request's query, headers and body.
pub(crate) struct Call<'a> {
    pub api: &'a ApiService,
    pub user: UserInfo,
    pub info: RequestInfo,
    pub kind: &'static ResourceInfo,
    pub query: BTreeMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Call<'_> {
    /// A gRPC request carrying the caller's identity, as the authentication layer makes it,
    /// and the Kubernetes verb and subresource it is authorized as (this request's).
    pub fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.extensions_mut().insert(self.user.clone());
        r.extensions_mut().insert(AuthorizeAs {
            verb: self.info.verb,
            subresource: path::static_subresource(&self.info.subresource),
        });
        if let Some(m) = self.recorded_manager() {
            r.extensions_mut().insert(FieldManager(m));
        }
        r
    }

    /// The field manager a create, update or patch is made for: `fieldManager`, else the
    /// User-Agent's product (what precedes its first `/`), as the API server derives it.
    pub fn field_manager(&self) -> Option<String> {
        if let Some(m) = self.q("fieldManager") {
            return Some(m.to_string());
        }
        let agent = self.headers.get(http::header::USER_AGENT)?.to_str().ok()?;
        let product = agent.split('/').next().unwrap_or("").trim();
        (!product.is_empty()).then(|| product.chars().take(MAX_FIELD_MANAGER).collect())
    }

    /// The manager the registry records the write for; none for server-side apply, whose
    /// ownership `patch.rs` computes itself, and none for reads.
    fn recorded_manager(&self) -> Option<String> {
        let writes = matches!(self.info.verb, "create" | "update" | "patch");
        (writes && !patch::is_apply(self)).then(|| self.field_manager())?
    }

    pub fn q(&self, key: &str) -> Option<&str> {
        self.query
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn dry_run(&self) -> bool {
        self.q("dryRun").is_some_and(|d| d == "All")
    }

    async fn serve(self) -> Response<Body> {
        let sub = self.info.subresource.clone();
        match (self.info.verb, sub.as_str()) {
            (_, "") => verbs::serve(self).await,
            _ => subresources::serve(self).await,
        }
    }
}

/// Splits the listener's requests: gRPC to the inner (tonic) service, the rest to [`Rest`].
#[derive(Clone)]
pub struct SplitLayer {
    rest: Arc<Rest>,
}

impl SplitLayer {
    pub fn new(rest: Rest) -> Self {
        Self {
            rest: Arc::new(rest),
        }
    }

    /// The REST side, for the HTTP/1.1 connections served outside tonic ([`connect::http1`]).
    pub fn rest(&self) -> Arc<Rest> {
        self.rest.clone()
    }
}

impl<S> tower::Layer<S> for SplitLayer {
    type Service = Split<S>;
    fn layer(&self, inner: S) -> Split<S> {
        Split {
            inner,
            rest: self.rest.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Split<S> {
    inner: S,
    rest: Arc<Rest>,
}

/// gRPC requests say so in their content type (`application/grpc`, `application/grpc+proto`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

impl<S> tower::Service<Request<Body>> for Split<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if is_grpc(req.headers()) {
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            return Box::pin(async move { inner.call(req).await });
        }
        let rest = self.rest.clone();
        Box::pin(async move { Ok(rest.handle(req).await) })
    }
}
