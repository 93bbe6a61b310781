//! The gRPC `Api` service: authorizes each call (`access.rs`), decodes requests, calls the
//! registry, encodes Kubernetes JSON. Watches are filtered here (label and field selectors,
//! with an object that stops matching delivered as DELETED, as Kubernetes does).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use corral_api::client::DeleteOptions;
use corral_api::kinds::{self, ResourceInfo};
use corral_api::object;
use corral_api::rules::limits;
use corral_api::selector::{FieldSelector, LabelSelectorExpr};
use corral_proto as pb;
use futures::{Stream, StreamExt};
use serde_json::Value;
use tonic::{Request, Response, Status};
use tracing::debug;

use crate::auth::authz::{review, Chain};
use crate::auth::{Authorizer, UserInfo};
use crate::registry::{
    self, ApiError, Applied, FieldManager, Filter, ListOptions, Registry, Subject,
};
use crate::store::{Event, EventType, Revision};
use crate::tunnel::Tunnels;

mod access;
pub(crate) mod streams;
mod top;

pub use access::AuthorizeAs;

const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

pub struct ApiService {
    registry: Arc<Registry>,
    tunnels: Tunnels,
    cluster_id: String,
    authorizer: Arc<dyn Authorizer>,
}

impl ApiService {
    /// The service with the cluster's authorizer chain (Node, then RBAC) over the registry.
    pub fn new(registry: Arc<Registry>, tunnels: Tunnels) -> Self {
        let authorizer = Arc::new(Chain::for_registry(registry.clone()));
        Self {
            registry,
            tunnels,
            cluster_id: String::new(),
            authorizer,
        }
    }

    pub fn with_authorizer(mut self, authorizer: Arc<dyn Authorizer>) -> Self {
        self.authorizer = authorizer;
        self
    }

    async fn check(
        &self,
        user: &UserInfo,
        verb: &str,
        info: &ResourceInfo,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), Status> {
        crate::metrics::label_request(verb, info.plural, subresource);
        let attrs = access::attributes(user, verb, info, subresource, namespace, name);
        access::check(self.authorizer.as_ref(), attrs).await
    }

    /// Whether `user` may `verb` the non-resource URL `path` (`/metrics`), in the chain's words.
    pub async fn check_path(&self, user: &UserInfo, verb: &str, path: &str) -> Result<(), Status> {
        let attrs = crate::auth::Attributes {
            user: user.clone(),
            verb: verb.into(),
            path: path.into(),
            api_group: String::new(),
            resource: String::new(),
            subresource: String::new(),
            namespace: String::new(),
            name: String::new(),
        };
        access::check(self.authorizer.as_ref(), attrs).await
    }

    /// The stored object a node identity's write replaces, for NodeRestriction.
    async fn current(&self, info: &ResourceInfo, namespace: &str, name: &str) -> Option<Value> {
        self.registry.get(info, namespace, name).await.ok()
    }

    /// The ID `Version` reports (`cluster_id::read`).
    pub fn with_cluster_id(mut self, id: String) -> Self {
        self.cluster_id = id;
        self
    }
}

fn resource(name: &str) -> Result<&'static ResourceInfo, Status> {
    kinds::by_plural(name)
        .or_else(|| kinds::lookup(name))
        .ok_or_else(|| ApiError::UnknownResource(name.to_string()).into())
}

/// The request's object: valid JSON, an object (every handler reads its members), and no
/// larger than Kubernetes accepts.
fn parse_json(bytes: &[u8]) -> Result<Value, Status> {
    limits::check(bytes.len(), limits::MAX_REQUEST_BODY).map_err(|size| ApiError::TooLarge {
        what: "the request body".into(),
        size,
    })?;
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        let found = match &value {
            Value::Array(_) => "an array",
            Value::String(_) => "a string",
            Value::Number(_) => "a number",
            Value::Bool(_) => "a boolean",
            _ => "null",
        };
        return Err(ApiError::BadRequest(format!(
            "request body must be a JSON object (a Kubernetes object), not {found}"
        ))
        .into());
    }
    Ok(value)
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("JSON values serialize")
}

fn selectors(label: &str, field: &str) -> Result<(LabelSelectorExpr, FieldSelector), Status> {
    let bad = |e: &dyn std::fmt::Display| Status::from(ApiError::BadRequest(e.to_string()));
    let labels = LabelSelectorExpr::parse(label).map_err(|e| bad(&e))?;
    let fields = FieldSelector::parse(field).map_err(|e| bad(&e))?;
    Ok((labels, fields))
}

/// Access reviews are answered on create only.
fn not_virtual(info: &ResourceInfo) -> Result<(), Status> {
    if info.is_virtual() {
        return Err(
            ApiError::MethodNotAllowed(format!("{} can only be created", info.plural)).into(),
        );
    }
    Ok(())
}

fn object_ref(r: Option<pb::ObjectRef>) -> Result<(pb::ObjectRef, &'static ResourceInfo), Status> {
    let r = r.ok_or_else(|| ApiError::BadRequest("ref is required".into()))?;
    let info = resource(&r.resource)?;
    Ok((r, info))
}

/// Turns a store event into what a filtered watcher sees, if anything. Only the fields the
/// selectors read are parsed; the object is sent as its stored bytes.
fn watch_event(ev: &Event, filter: &Filter) -> Option<pb::WatchEvent> {
    use pb::watch_event::Type;
    let now = filter.matches(&ev.kv);
    let typ = match (ev.kind, &ev.prev) {
        (EventType::Delete, _) => now.then_some(Type::Deleted),
        (EventType::Put, None) => now.then_some(Type::Added),
        (EventType::Put, Some(_)) if filter.is_everything() => Some(Type::Modified),
        (EventType::Put, Some(prev)) => match (filter.matches(prev), now) {
            (true, true) => Some(Type::Modified),
            (false, true) => Some(Type::Added),
            (true, false) => Some(Type::Deleted),
            (false, false) => None,
        },
    }?;
    Some(pb::WatchEvent {
        r#type: typ as i32,
        object: registry::encode_kv(&ev.kv),
        resource_version: ev.revision(),
    })
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

/// One watch as the client sees it: store events through the filter, and bookmarks.
struct WatchState {
    events: crate::store::WatchStream,
    filter: Filter,
    bookmarks: Option<tokio::time::Interval>,
    last: Revision,
    done: bool,
    /// Counts this watch in `apiserver_registered_watchers` while it lives, and its events.
    counted: crate::metrics::WatchGuard,
}

impl WatchState {
    async fn next(mut self) -> Option<(Result<pb::WatchEvent, Status>, Self)> {
        if self.done {
            return None;
        }
        loop {
            let bookmark = async {
                match self.bookmarks.as_mut() {
                    Some(b) => b.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = self.events.next() => match ev? {
                    Err(e) => {
                        self.done = true;
                        return Some((Err(ApiError::from(e).into()), self));
                    }
                    Ok(ev) => {
                        self.last = ev.revision();
                        if let Some(out) = watch_event(&ev, &self.filter) {
                            self.counted.sent(ev.seen);
                            return Some((Ok(out), self));
                        }
                    }
                },
                _ = bookmark => {
                    let ev = pb::WatchEvent {
                        r#type: pb::watch_event::Type::Bookmark as i32,
                        object: Vec::new(),
                        resource_version: self.last,
                    };
                    return Some((Ok(ev), self));
                }
            }
        }
    }
}
type LogStream = Pin<Box<dyn Stream<Item = Result<pb::LogChunk, Status>> + Send>>;

#[tonic::async_trait]
impl pb::api_server::Api for ApiService {
    type WatchStream = WatchStream;
    type LogsStream = LogStream;
    type ExecStream = streams::FrameStream;
    type AttachStream = streams::FrameStream;
    type PortForwardStream = streams::FrameStream;

    async fn version(
        &self,
        req: Request<pb::VersionRequest>,
    ) -> Result<Response<pb::VersionResponse>, Status> {
        // Any authenticated identity may ask (Kubernetes' system:public-info-viewer).
        access::user_of(&req)?;
        Ok(Response::new(pb::VersionResponse {
            version: format!("v{}", env!("CARGO_PKG_VERSION")),
            git_commit: option_env!("CORRAL_GIT_COMMIT")
                .unwrap_or("unknown")
                .to_string(),
            store: "sqlite".into(),
            cluster_id: self.cluster_id.clone(),
        }))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::Object>, Status> {
        let user = access::user_of(&req)?;
        let (verb, sub) = access::verb_of(&req, "get", "");
        let (r, info) = object_ref(req.into_inner().r#ref)?;
        not_virtual(info)?;
        self.check(&user, verb, info, sub, &r.namespace, &r.name)
            .await?;
        let json = self.registry.get_json(info, &r.namespace, &r.name).await?;
        Ok(Response::new(pb::Object { json }))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let user = access::user_of(&req)?;
        let (verb, sub) = access::verb_of(&req, "list", "");
        let req = req.into_inner();
        let info = resource(&req.resource)?;
        not_virtual(info)?;
        let name = access::selected_name(&req.field_selector);
        self.check(&user, verb, info, sub, &req.namespace, name)
            .await?;
        let (labels, fields) = selectors(&req.label_selector, &req.field_selector)?;
        let opts = ListOptions::parse(
            req.limit,
            &req.r#continue,
            &req.resource_version,
            req.resource_version_exact,
        )?;
        let page = self
            .registry
            .list_raw(info, &req.namespace, &labels, &fields, &opts)
            .await?;
        Ok(Response::new(pb::ListResponse {
            items: page.items,
            resource_version: page.revision,
            r#continue: page.continue_token.unwrap_or_default(),
        }))
    }

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let user = access::user_of(&req)?;
        let (verb, sub) = access::verb_of(&req, "watch", "");
        let req = req.into_inner();
        let info = resource(&req.resource)?;
        not_virtual(info)?;
        let name = access::selected_name(&req.field_selector);
        self.check(&user, verb, info, sub, &req.namespace, name)
            .await?;
        let (labels, fields) = selectors(&req.label_selector, &req.field_selector)?;
        let filter = Filter::new(&labels, &fields);
        let events = self
            .registry
            .watch(info, &req.namespace, req.resource_version)
            .await?;
        let start = if req.resource_version > 0 {
            req.resource_version
        } else {
            self.registry
                .store()
                .current_revision()
                .await
                .map_err(ApiError::from)?
        };
        debug!(resource = info.plural, namespace = %req.namespace, from = start, "watch opened");
        // Polled by tonic as it sends: no relay task and channel hop per event. Dropping the
        // response (the client went away) drops the store watch.
        let bookmarks = req.allow_bookmarks.then(|| {
            tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY)
        });
        let state = WatchState {
            events,
            filter,
            bookmarks,
            last: start,
            done: false,
            counted: crate::metrics::global().watch_opened(info.plural),
        };
        Ok(Response::new(Box::pin(futures::stream::unfold(
            state,
            WatchState::next,
        ))))
    }

    async fn create(
        &self,
        req: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        let user = access::user_of(&req)?;
        let manager = req.extensions().get::<FieldManager>().cloned();
        let req = req.into_inner();
        let info = resource(&req.resource)?;
        let mut object = parse_json(&req.json)?;
        let ns = Registry::resolve_namespace(info, &req.namespace, &mut object)?;
        self.check(&user, "create", info, "", &ns, "").await?;
        if info.is_virtual() {
            let answered = review::answer(self.authorizer.as_ref(), info, &user, object).await?;
            return Ok(Response::new(pb::Object {
                json: to_bytes(&answered),
            }));
        }
        access::restrict(&user, info, &ns, &object, None)?;
        let manager = manager.as_ref().map(|m| m.0.as_str());
        let written = self
            .registry
            .create_as(info, &ns, object, req.dry_run, manager)
            .await?;
        let object = pb::Object { json: written.json };
        Ok(crate::admission::respond(object, &written.warnings))
    }

    async fn update(
        &self,
        req: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        let user = access::user_of(&req)?;
        let rest_as = req.extensions().get::<AuthorizeAs>().copied();
        let manager = req.extensions().get::<FieldManager>().cloned();
        let req = req.into_inner();
        let info = resource(&req.resource)?;
        not_virtual(info)?;
        let mut object = parse_json(&req.json)?;
        let ns = Registry::resolve_namespace(info, &req.namespace, &mut object)?;
        let name = object::name(&object).to_string();
        let subresource = match pb::Subresource::try_from(req.subresource) {
            Ok(pb::Subresource::Status) => "status",
            Ok(pb::Subresource::Finalize) => "finalize",
            _ => "",
        };
        let (verb, sub) = rest_as.map_or(("update", subresource), |a| (a.verb, a.subresource));
        self.check(&user, verb, info, sub, &ns, &name).await?;
        if user.node_name().is_some() {
            let old = self.current(info, &ns, &name).await;
            if subresource.is_empty() {
                access::restrict(&user, info, &ns, &object, old.as_ref())?;
            } else if let Some(old) = old.as_ref() {
                // A status write keeps the stored labels and spec: only the name matters.
                access::restrict(&user, info, &ns, old, Some(old))?;
            }
        }
        if req.subresource == pb::Subresource::Finalize as i32 {
            if info.plural != kinds::NAMESPACES.plural {
                return Err(ApiError::MethodNotAllowed(format!(
                    "{} has no finalize subresource",
                    info.plural
                ))
                .into());
            }
            let json = self
                .registry
                .finalize_namespace(object, req.dry_run)
                .await?;
            return Ok(Response::new(pb::Object { json }));
        }
        let status = req.subresource == pb::Subresource::Status as i32;
        let updated = self
            .registry
            .update_as(
                info,
                &ns,
                object,
                status,
                req.dry_run,
                manager.as_ref().map(|m| m.0.as_str()),
            )
            .await?;
        let object = pb::Object { json: updated.json };
        Ok(crate::admission::respond(object, &updated.warnings))
    }

    async fn scale(
        &self,
        req: Request<pb::ScaleRequest>,
    ) -> Result<Response<pb::ScaleResponse>, Status> {
        let user = access::user_of(&req)?;
        let (verb, sub) = access::verb_of(&req, "update", "scale");
        let manager = req.extensions().get::<FieldManager>().cloned();
        let req = req.into_inner();
        let (r, info) = object_ref(req.r#ref)?;
        self.check(&user, verb, info, sub, &r.namespace, &r.name)
            .await?;
        let manager = manager.as_ref().map(|m| m.0.as_str());
        let (replicas, previous) = self
            .registry
            .scale_as(info, &r.namespace, &r.name, req.replicas, manager)
            .await?;
        Ok(Response::new(pb::ScaleResponse { replicas, previous }))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let user = access::user_of(&req)?;
        let (verb, sub) = access::verb_of(&req, "delete", "");
        let req = req.into_inner();
        let opts = DeleteOptions::from(&req);
        let (r, info) = object_ref(req.r#ref)?;
        not_virtual(info)?;
        self.check(&user, verb, info, sub, &r.namespace, &r.name)
            .await?;
        let (object, finished) = self
            .registry
            .delete(info, &r.namespace, &r.name, opts)
            .await?;
        Ok(Response::new(pb::DeleteResponse {
            object: to_bytes(&object),
            finished,
        }))
    }

    async fn apply(
        &self,
        req: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        let user = access::user_of(&req)?;
        let req = req.into_inner();
        let mut object = parse_json(&req.json)?;
        let info = corral_api::decode::kind_of(&object).map_err(ApiError::from)?;
        not_virtual(info)?;
        let ns = Registry::resolve_namespace(info, &req.namespace, &mut object)?;
        let name = object::name(&object).to_string();
        // Kubernetes authorizes an apply as a patch, and as a create when the object is new.
        let old = self.current(info, &ns, &name).await;
        let verb = if old.is_some() { "patch" } else { "create" };
        let checked = if old.is_some() { name.as_str() } else { "" };
        self.check(&user, verb, info, "", &ns, checked).await?;
        access::restrict(&user, info, &ns, &object, old.as_ref())?;
        let (applied, v) = self.registry.apply(&ns, object, req.dry_run).await?;
        let result = match applied {
            Applied::Created => pb::apply_response::Result::Created,
            Applied::Configured => pb::apply_response::Result::Configured,
            Applied::Unchanged => pb::apply_response::Result::Unchanged,
        };
        let response = pb::ApplyResponse {
            result: result as i32,
            object: v.json,
        };
        Ok(crate::admission::respond(response, &v.warnings))
    }

    async fn bind(&self, req: Request<pb::BindRequest>) -> Result<Response<pb::Object>, Status> {
        let user = access::user_of(&req)?;
        let req = req.into_inner();
        let ns = if req.namespace.is_empty() {
            "default"
        } else {
            &req.namespace
        };
        self.check(&user, "create", &kinds::PODS, "binding", ns, &req.name)
            .await?;
        let json = self
            .registry
            .bind(ns, &req.name, &req.uid, &req.node_name)
            .await?;
        Ok(Response::new(pb::Object { json }))
    }

    async fn logs(
        &self,
        req: Request<pb::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let user = access::user_of(&req)?;
        let req = req.into_inner();
        let ns = if req.namespace.is_empty() {
            "default".to_string()
        } else {
            req.namespace.clone()
        };
        self.check(&user, "get", &kinds::PODS, "log", &ns, &req.pod)
            .await?;
        let errors = crate::validate::log_options(&req);
        if !errors.is_empty() {
            return Err(ApiError::Invalid {
                what: Subject {
                    group: String::new(),
                    kind: "PodLogOptions".into(),
                    name: req.pod.clone(),
                },
                errors,
            }
            .into());
        }
        let pod = self.registry.get(&kinds::PODS, &ns, &req.pod).await?;
        let node = object::str_at(&pod, "/spec/nodeName")
            .unwrap_or("")
            .to_string();
        if node.is_empty() {
            return Err(ApiError::Precondition(format!(
                "pod {:?} in namespace {ns:?} is not scheduled to a node yet",
                req.pod
            ))
            .into());
        }
        // The tunnel's stream is read at the client's pace: its credit to the agent follows
        // what this response has sent, so a slow reader slows only its own stream.
        let stream = self.tunnels.logs(&node, req).await?;
        Ok(Response::new(Box::pin(stream.map(|chunk| {
            chunk
                .map(|data| pb::LogChunk { data })
                .map_err(Status::from)
        }))))
    }

    async fn exec(
        &self,
        req: Request<tonic::Streaming<pb::StreamFrame>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        streams::open(self, req, streams::Kind::Exec).await
    }

    async fn attach(
        &self,
        req: Request<tonic::Streaming<pb::StreamFrame>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        streams::open(self, req, streams::Kind::Attach).await
    }

    async fn port_forward(
        &self,
        req: Request<tonic::Streaming<pb::StreamFrame>>,
    ) -> Result<Response<Self::PortForwardStream>, Status> {
        streams::open(self, req, streams::Kind::PortForward).await
    }

    async fn metrics(
        &self,
        req: Request<pb::MetricsRequest>,
    ) -> Result<Response<pb::MetricsResponse>, Status> {
        self.top(req).await
    }
}
