//! The typed gRPC client every Corral component and the CLI use to reach the API server.

use corral_proto as pb;
use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::tls::{self, TlsError};

use crate::kinds::{self, ResourceInfo};
use crate::object;
use crate::rules::limits;
use crate::status::{ApiStatus, StatusReason};

mod connect;
mod dial;
mod servers;
mod streams;
pub use connect::Bearer;
pub use servers::{Servers, Target};
pub use streams::{stdin_frames, StreamKind, MAX_DATA};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to the control plane at {server}: {source}")]
    Connect {
        server: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// TLS could not be set up or the handshake failed; the message names what to fix.
    #[error("cannot connect to the control plane at {server}: {source}")]
    Tls {
        server: String,
        #[source]
        source: Box<TlsError>,
    },
    /// A lazy connection's TLS handshake failed (a refused TCP connection stays `Api`
    /// Unavailable, as before TLS).
    #[error("cannot connect to the control plane: {0}")]
    Handshake(Box<TlsError>),
    #[error("server {server:?}: {problem}")]
    BadServer {
        server: String,
        problem: &'static str,
    },
    #[error("the bearer token is not valid in an HTTP header (it has characters other than visible ASCII)")]
    BadToken,
    /// The server (or the transport) refused the call. `status` is what the server said,
    /// as data; `None` when the error was made by the transport, not by the server.
    #[error("{message}")]
    Api {
        code: tonic::Code,
        message: String,
        status: Option<Box<ApiStatus>>,
    },
    #[error("decoding {what}: {source}")]
    Decode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Kubeconfig(Box<crate::kubeconfig::KubeconfigError>),
    #[error("unknown resource type {0:?}")]
    UnknownResource(String),
    /// A request body the server would refuse for its size, caught before it is sent.
    #[error("{what}: the request body is {size}")]
    TooLarge {
        what: String,
        #[source]
        size: limits::TooLarge,
    },
}

impl Error {
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
    /// What the server said, as data, when it said it.
    pub fn status(&self) -> Option<&ApiStatus> {
        match self {
            Error::Api {
                status: Some(s), ..
            } => Some(s),
            _ => None,
        }
    }
    pub fn reason(&self) -> Option<&StatusReason> {
        self.status().map(|s| &s.reason)
    }
    /// By the reason when the server sent one, else by the gRPC code.
    fn is(&self, reasons: &[StatusReason], code: tonic::Code) -> bool {
        match self.reason() {
            Some(r) => reasons.contains(r),
            None => self.code() == Some(code),
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.is(&[StatusReason::NotFound], tonic::Code::NotFound)
    }
    pub fn is_already_exists(&self) -> bool {
        self.is(&[StatusReason::AlreadyExists], tonic::Code::AlreadyExists)
    }
    pub fn is_conflict(&self) -> bool {
        self.is(&[StatusReason::Conflict], tonic::Code::Aborted)
    }
    /// The watch asked for history that was compacted away: re-list.
    pub fn is_gone(&self) -> bool {
        self.is(
            &[StatusReason::Gone, StatusReason::Expired],
            tonic::Code::OutOfRange,
        )
    }
    /// The object failed validation; its field causes are in [`Error::status`].
    pub fn is_invalid(&self) -> bool {
        self.reason() == Some(&StatusReason::Invalid)
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        // A failed handshake on a lazy connection reaches the caller as a status, with the
        // connector's one-line error in its source chain.
        if let Some(t) = std::error::Error::source(&s).and_then(tls::find_tls_error) {
            if !matches!(t, TlsError::Tcp { .. }) {
                return Error::Handshake(Box::new(t.clone()));
            }
        }
        let message = if s.code() == tonic::Code::Unavailable && s.message().is_empty() {
            "control plane unavailable".to_string()
        } else {
            s.message().to_string()
        };
        Error::Api {
            code: s.code(),
            message,
            status: ApiStatus::from_details(s.details()).map(Box::new),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A Kubernetes object type the client can move (any k8s-openapi resource Corral serves).
pub trait Object:
    k8s_openapi::Resource
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + Serialize
    + DeserializeOwned
    + Clone
    + Send
    + 'static
{
    fn info() -> &'static ResourceInfo {
        kinds::by_plural(Self::URL_PATH_SEGMENT)
            .expect("every k8s-openapi type used with the client is in kinds::ALL")
    }
}

impl<T> Object for T where
    T: k8s_openapi::Resource
        + k8s_openapi::Metadata<Ty = ObjectMeta>
        + Serialize
        + DeserializeOwned
        + Clone
        + Send
        + 'static
{
}

/// A change seen by a watch.
#[derive(Debug, Clone)]
pub enum WatchEvent<T> {
    Added(T),
    Modified(T),
    Deleted(T),
    Bookmark(i64),
}

#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub label_selector: String,
    pub field_selector: String,
}

impl ListParams {
    pub fn labels(s: impl Into<String>) -> Self {
        Self {
            label_selector: s.into(),
            ..Default::default()
        }
    }
    pub fn fields(s: impl Into<String>) -> Self {
        Self {
            field_selector: s.into(),
            ..Default::default()
        }
    }
}

pub use pb::apply_response::Result as ApplyResult;
pub use pb::PropagationPolicy;

/// The connection every generated client of this process's [`Client`] shares (API, agent
/// tunnel): one HTTP/2 channel, with the bearer token added to each call.
pub type Transport = InterceptedService<Channel, Bearer>;

#[derive(Clone)]
pub struct Client {
    api: pb::api_client::ApiClient<Transport>,
    transport: Transport,
    /// The first server given, for messages.
    server: String,
    /// Every server this client may dial (given and learned).
    servers: Servers,
    bearer: Bearer,
    /// The TLS configuration new connections use (`None` for plaintext).
    tls: Option<tls::ConfigSlot>,
    ca_source: Arc<str>,
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("Kubernetes objects always serialize")
}

/// An object as a request body, refused here when the server would refuse it for its size.
fn body(object: &Value) -> Result<Vec<u8>> {
    let bytes = to_json(object);
    limits::check(bytes.len(), limits::MAX_REQUEST_BODY).map_err(|size| Error::TooLarge {
        what: format!(
            "{} {:?}",
            object
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("object"),
            object::str_at(object, "/metadata/name").unwrap_or_default()
        ),
        size,
    })?;
    Ok(bytes)
}

/// The warnings a response carries (`warning` metadata entries, `299 - "text"`).
fn warnings(metadata: &tonic::metadata::MetadataMap) -> Vec<String> {
    metadata
        .get_all(crate::warning::METADATA_KEY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(crate::warning::parse)
        .collect()
}

fn from_json<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Decode {
        what: what.to_string(),
        source,
    })
}

impl Client {
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The servers this client dials, shared: [`Servers::learn`] adds to them.
    pub fn servers(&self) -> &Servers {
        &self.servers
    }

    /// The raw generated client, for calls this wrapper does not cover.
    pub fn raw(&self) -> pb::api_client::ApiClient<Transport> {
        self.api.clone()
    }

    pub async fn version(&self) -> Result<pb::VersionResponse> {
        Ok(self
            .api
            .clone()
            .version(pb::VersionRequest {})
            .await?
            .into_inner())
    }

    // ---- untyped (Kubernetes JSON) calls ----

    pub async fn get_value(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
    ) -> Result<Value> {
        let req = pb::GetRequest {
            r#ref: Some(object_ref(info, namespace, name)),
        };
        let obj = self.api.clone().get(req).await?.into_inner();
        from_json(info.kind, &obj.json)
    }

    pub async fn list_value(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        params: &ListParams,
    ) -> Result<(Vec<Value>, i64)> {
        let req = pb::ListRequest {
            resource: info.plural.to_string(),
            namespace: ns_for(info, namespace),
            label_selector: params.label_selector.clone(),
            field_selector: params.field_selector.clone(),
            ..Default::default()
        };
        let resp = self.api.clone().list(req).await?.into_inner();
        let items = resp
            .items
            .iter()
            .map(|b| from_json(info.kind, b))
            .collect::<Result<Vec<_>>>()?;
        Ok((items, resp.resource_version))
    }

    pub async fn create_value(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        object: &Value,
        dry_run: bool,
    ) -> Result<Value> {
        let (created, _) = self
            .create_value_with_warnings(info, namespace, object, dry_run)
            .await?;
        Ok(created)
    }

    /// [`Client::create_value`], with the server's warnings (Kubernetes' `Warning` headers,
    /// such as `would violate PodSecurity ...`).
    pub async fn create_value_with_warnings(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        object: &Value,
        dry_run: bool,
    ) -> Result<(Value, Vec<String>)> {
        let req = pb::CreateRequest {
            resource: info.plural.to_string(),
            namespace: ns_for(info, namespace),
            json: body(object)?,
            dry_run,
        };
        let response = self.api.clone().create(req).await?;
        let warnings = warnings(response.metadata());
        let obj = response.into_inner();
        Ok((from_json(info.kind, &obj.json)?, warnings))
    }

    pub async fn update_value(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        object: &Value,
        status: bool,
    ) -> Result<Value> {
        let (updated, _) = self
            .update_value_with_warnings(info, namespace, object, status)
            .await?;
        Ok(updated)
    }

    /// [`Client::update_value`], with the server's warnings.
    pub async fn update_value_with_warnings(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        object: &Value,
        status: bool,
    ) -> Result<(Value, Vec<String>)> {
        let req = pb::UpdateRequest {
            resource: info.plural.to_string(),
            namespace: ns_for(info, namespace),
            json: body(object)?,
            subresource: if status {
                pb::Subresource::Status as i32
            } else {
                pb::Subresource::Main as i32
            },
            dry_run: false,
        };
        let response = self.api.clone().update(req).await?;
        let warnings = warnings(response.metadata());
        let obj = response.into_inner();
        Ok((from_json(info.kind, &obj.json)?, warnings))
    }

    pub async fn delete_value(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        opts: DeleteOptions,
    ) -> Result<(Value, bool)> {
        let req = pb::DeleteRequest {
            r#ref: Some(object_ref(info, namespace, name)),
            propagation_policy: opts.propagation as i32,
            grace_period_seconds: opts.grace_period_seconds,
            uid: opts.uid.unwrap_or_default(),
            resource_version: opts.resource_version.unwrap_or_default(),
            dry_run: opts.dry_run,
        };
        let resp = self.api.clone().delete(req).await?.into_inner();
        Ok((from_json(info.kind, &resp.object)?, resp.finished))
    }

    pub async fn apply_value(
        &self,
        namespace: &str,
        object: &Value,
        dry_run: bool,
    ) -> Result<(ApplyResult, Value)> {
        let (result, object, _) = self
            .apply_value_with_warnings(namespace, object, dry_run)
            .await?;
        Ok((result, object))
    }

    /// [`Client::apply_value`], with the server's warnings.
    pub async fn apply_value_with_warnings(
        &self,
        namespace: &str,
        object: &Value,
        dry_run: bool,
    ) -> Result<(ApplyResult, Value, Vec<String>)> {
        let req = pb::ApplyRequest {
            json: body(object)?,
            namespace: namespace.to_string(),
            dry_run,
        };
        let response = self.api.clone().apply(req).await?;
        let warnings = warnings(response.metadata());
        let resp = response.into_inner();
        let result = ApplyResult::try_from(resp.result).unwrap_or(ApplyResult::Configured);
        Ok((result, from_json("object", &resp.object)?, warnings))
    }

    pub async fn scale(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        replicas: i32,
    ) -> Result<pb::ScaleResponse> {
        let req = pb::ScaleRequest {
            r#ref: Some(object_ref(info, namespace, name)),
            replicas,
        };
        Ok(self.api.clone().scale(req).await?.into_inner())
    }

    pub async fn bind(&self, namespace: &str, pod: &str, uid: &str, node: &str) -> Result<()> {
        let req = pb::BindRequest {
            namespace: namespace.to_string(),
            name: pod.to_string(),
            node_name: node.to_string(),
            uid: uid.to_string(),
        };
        self.api.clone().bind(req).await?;
        Ok(())
    }

    /// Watches raw objects from `resource_version` (0: from now).
    pub async fn watch_value(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        params: &ListParams,
        resource_version: i64,
    ) -> Result<impl Stream<Item = Result<WatchEvent<Value>>> + Send + 'static> {
        let req = pb::WatchRequest {
            resource: info.plural.to_string(),
            namespace: ns_for(info, namespace),
            label_selector: params.label_selector.clone(),
            field_selector: params.field_selector.clone(),
            resource_version,
            allow_bookmarks: true,
        };
        let stream = self.api.clone().watch(req).await?.into_inner();
        let kind = info.kind;
        Ok(stream.map(move |ev| {
            let ev = ev?;
            let typ = pb::watch_event::Type::try_from(ev.r#type)
                .unwrap_or(pb::watch_event::Type::Modified);
            Ok(match typ {
                pb::watch_event::Type::Bookmark => WatchEvent::Bookmark(ev.resource_version),
                pb::watch_event::Type::Added => WatchEvent::Added(from_json(kind, &ev.object)?),
                pb::watch_event::Type::Modified => {
                    WatchEvent::Modified(from_json(kind, &ev.object)?)
                }
                pb::watch_event::Type::Deleted => WatchEvent::Deleted(from_json(kind, &ev.object)?),
            })
        }))
    }

    // ---- typed calls ----

    pub async fn get<K: Object>(&self, namespace: &str, name: &str) -> Result<K> {
        let v = self.get_value(K::info(), namespace, name).await?;
        serde_json::from_value(v).map_err(|source| decode_err::<K>(source))
    }

    /// `Ok(None)` when the object does not exist.
    pub async fn get_opt<K: Object>(&self, namespace: &str, name: &str) -> Result<Option<K>> {
        match self.get::<K>(namespace, name).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn list<K: Object>(
        &self,
        namespace: &str,
        params: &ListParams,
    ) -> Result<(Vec<K>, i64)> {
        let (items, rv) = self.list_value(K::info(), namespace, params).await?;
        let items = items
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(|source| decode_err::<K>(source)))
            .collect::<Result<Vec<K>>>()?;
        Ok((items, rv))
    }

    pub async fn create<K: Object>(&self, object: &K) -> Result<K> {
        let ns = object.metadata().namespace.clone().unwrap_or_default();
        let v = self
            .create_value(K::info(), &ns, &to_value(object), false)
            .await?;
        serde_json::from_value(v).map_err(|source| decode_err::<K>(source))
    }

    pub async fn update<K: Object>(&self, object: &K) -> Result<K> {
        self.update_typed(object, false).await
    }

    pub async fn update_status<K: Object>(&self, object: &K) -> Result<K> {
        self.update_typed(object, true).await
    }

    /// The namespace's `finalize` subresource: writes its `spec.finalizers` and nothing else
    /// (a resourceVersion in it is a precondition). Once a Terminating namespace has no
    /// finalizers left, this write deletes it.
    pub async fn finalize_namespace(
        &self,
        namespace: &k8s_openapi::api::core::v1::Namespace,
    ) -> Result<k8s_openapi::api::core::v1::Namespace> {
        let req = pb::UpdateRequest {
            resource: kinds::NAMESPACES.plural.to_string(),
            namespace: String::new(),
            json: to_json(namespace),
            subresource: pb::Subresource::Finalize as i32,
            dry_run: false,
        };
        let obj = self.api.clone().update(req).await?.into_inner();
        from_json(kinds::NAMESPACES.kind, &obj.json)
    }

    async fn update_typed<K: Object>(&self, object: &K, status: bool) -> Result<K> {
        let ns = object.metadata().namespace.clone().unwrap_or_default();
        let v = self
            .update_value(K::info(), &ns, &to_value(object), status)
            .await?;
        serde_json::from_value(v).map_err(|source| decode_err::<K>(source))
    }

    pub async fn delete<K: Object>(
        &self,
        namespace: &str,
        name: &str,
        opts: DeleteOptions,
    ) -> Result<bool> {
        Ok(self.delete_value(K::info(), namespace, name, opts).await?.1)
    }

    pub async fn watch<K: Object>(
        &self,
        namespace: &str,
        params: &ListParams,
        resource_version: i64,
    ) -> Result<impl Stream<Item = Result<WatchEvent<K>>> + Send + 'static> {
        let stream = self
            .watch_value(K::info(), namespace, params, resource_version)
            .await?;
        Ok(stream.map(|ev| {
            let conv =
                |v: Value| serde_json::from_value::<K>(v).map_err(|source| decode_err::<K>(source));
            Ok(match ev? {
                WatchEvent::Added(v) => WatchEvent::Added(conv(v)?),
                WatchEvent::Modified(v) => WatchEvent::Modified(conv(v)?),
                WatchEvent::Deleted(v) => WatchEvent::Deleted(conv(v)?),
                WatchEvent::Bookmark(rv) => WatchEvent::Bookmark(rv),
            })
        }))
    }
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub propagation: PropagationPolicy,
    pub grace_period_seconds: Option<i64>,
    pub uid: Option<String>,
    pub resource_version: Option<i64>,
    pub dry_run: bool,
}

impl DeleteOptions {
    pub fn background() -> Self {
        Self {
            propagation: PropagationPolicy::Background,
            ..Default::default()
        }
    }
    pub fn grace(seconds: i64) -> Self {
        Self {
            grace_period_seconds: Some(seconds),
            ..Default::default()
        }
    }
}

/// The options a delete request carries, as the API server reads them (the inverse of what
/// [`Client::delete_value`] sends): an unknown propagation policy reads as the default.
impl From<&pb::DeleteRequest> for DeleteOptions {
    fn from(req: &pb::DeleteRequest) -> Self {
        Self {
            propagation: PropagationPolicy::try_from(req.propagation_policy).unwrap_or_default(),
            grace_period_seconds: req.grace_period_seconds,
            uid: Some(req.uid.clone()).filter(|u| !u.is_empty()),
            resource_version: Some(req.resource_version).filter(|rv| *rv != 0),
            dry_run: req.dry_run,
        }
    }
}

fn to_value<T: Serialize>(object: &T) -> Value {
    serde_json::to_value(object).expect("Kubernetes objects always serialize")
}

fn decode_err<K: Object>(source: serde_json::Error) -> Error {
    Error::Decode {
        what: K::KIND.to_string(),
        source,
    }
}

fn ns_for(info: &ResourceInfo, namespace: &str) -> String {
    if info.namespaced {
        namespace.to_string()
    } else {
        String::new()
    }
}

fn object_ref(info: &ResourceInfo, namespace: &str, name: &str) -> pb::ObjectRef {
    pb::ObjectRef {
        resource: info.plural.to_string(),
        namespace: ns_for(info, namespace),
        name: name.to_string(),
    }
}
