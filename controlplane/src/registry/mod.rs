//! The registry: every API verb on objects of any kind, over the store. It owns object
//! metadata (uid, resourceVersion, generation, deletion), runs defaulting and validation,
//! and keeps each write a single compare-and-swap, so nothing is half-applied.

use std::sync::Arc;

use corral_api::decode;
use corral_api::kinds::{self, ResourceInfo};
use corral_api::object;
use corral_api::selector::{FieldSelector, LabelSelectorExpr};
use serde_json::{json, Value};
use tracing::debug;

use crate::store::{KeyValue, Revision, Store, StoreError, WatchStream};
use crate::validate::{self, Defaults};

mod alloc;
mod apply;
mod bind;
mod error;
pub mod raw;
mod status;

pub use alloc::ServiceAllocator;
pub use error::{ApiError, Result};

const WRITE_RETRIES: usize = 8;
const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-node-lease", "kube-public"];

/// An object just written (or, for a no-op or a dry run, the object as it stands): the tree
/// the write produced and its JSON as clients get it, with the resourceVersion.
#[derive(Debug, Clone)]
pub struct Written {
    pub object: Value,
    pub json: Vec<u8>,
}

impl Written {
    /// After a store write: the JSON is the stored bytes with the revision spliced in.
    fn stored(object: Value, kv: &KeyValue) -> Self {
        Self {
            object: stamped(object, kv),
            json: encode_kv(kv),
        }
    }

    /// Not written (a dry run): the JSON is serialised from the tree.
    fn unwritten(object: Value) -> Self {
        let json = serde_json::to_vec(&object).expect("JSON values serialize");
        Self { object, json }
    }
}

/// Outcome of an apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Configured,
    Unchanged,
}

/// Propagation of a delete to dependents (carried out by the garbage collector).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub propagation: Propagation,
    pub grace_period_seconds: Option<i64>,
    pub uid: Option<String>,
    pub resource_version: Option<Revision>,
    pub dry_run: bool,
}

pub struct Registry {
    store: Arc<dyn Store>,
    defaults: Defaults,
    services: ServiceAllocator,
}

/// `pods "web-1"`, `deployments.apps "web"`: how Kubernetes names an object in messages.
pub fn what(info: &ResourceInfo, name: &str) -> String {
    if info.group.is_empty() {
        format!("{} {name:?}", info.plural)
    } else {
        format!("{}.{} {name:?}", info.plural, info.group)
    }
}

/// `Deployment.apps "web"`: the spelling of validation errors.
fn kind_what(info: &ResourceInfo, name: &str) -> String {
    if info.group.is_empty() {
        format!("{} {name:?}", info.kind)
    } else {
        format!("{}.{} {name:?}", info.kind, info.group)
    }
}

pub fn key(info: &ResourceInfo, namespace: &str, name: &str) -> String {
    if info.namespaced {
        format!("/registry/{}/{namespace}/{name}", info.plural)
    } else {
        format!("/registry/{}/{name}", info.plural)
    }
}

pub fn prefix(info: &ResourceInfo, namespace: &str) -> String {
    if info.namespaced && !namespace.is_empty() {
        format!("/registry/{}/{namespace}/", info.plural)
    } else {
        format!("/registry/{}/", info.plural)
    }
}

/// Decodes a stored value and stamps its resourceVersion.
pub fn decode_kv(kv: &KeyValue) -> Value {
    let mut v: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
    object::set_meta(
        &mut v,
        "resourceVersion",
        Value::from(kv.mod_revision.to_string()),
    );
    v
}

/// Label and field selectors over stored objects: only the fields they read are parsed.
#[derive(Debug, Clone)]
pub struct Filter {
    labels: LabelSelectorExpr,
    fields: FieldSelector,
    paths: raw::Paths,
}

impl Filter {
    pub fn new(labels: &LabelSelectorExpr, fields: &FieldSelector) -> Self {
        let mut paths = raw::Paths::default();
        if !labels.is_everything() {
            paths.add(["metadata", "labels"]);
        }
        for (path, _, _) in &fields.terms {
            // The keys of the JSON pointer `FieldSelector::matches` builds from the path.
            let pointer = path.replace('.', "/");
            paths.add(
                pointer
                    .split('/')
                    .map(|token| token.replace("~1", "/").replace("~0", "~")),
            );
        }
        Self {
            labels: labels.clone(),
            fields: fields.clone(),
            paths,
        }
    }

    pub fn is_everything(&self) -> bool {
        self.labels.is_everything() && self.fields.is_everything()
    }

    pub fn matches(&self, kv: &KeyValue) -> bool {
        if self.is_everything() {
            return true;
        }
        let mut v = self.paths.project(&kv.value).unwrap_or(Value::Null);
        object::set_meta(
            &mut v,
            "resourceVersion",
            Value::from(kv.mod_revision.to_string()),
        );
        self.labels.matches_object(&v) && self.fields.matches(&v)
    }
}

/// The stored form: the object without its resourceVersion (the store's revision is it).
fn encode(object: &mut Value) -> Vec<u8> {
    object::set_meta(object, "resourceVersion", Value::Null);
    serde_json::to_vec(object).expect("JSON values serialize")
}

/// Stamps the store's revision on an object that was just written.
fn stamped(mut object: Value, kv: &KeyValue) -> Value {
    object::set_meta(
        &mut object,
        "resourceVersion",
        Value::from(kv.mod_revision.to_string()),
    );
    object
}

/// A stored value as Kubernetes JSON with its resourceVersion, without parsing it: the field
/// is spliced in after the top-level `"metadata":{`. Falls back to a parse when the bytes do
/// not have that shape.
pub fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    match metadata_body_offset(&kv.value) {
        Some(at) => {
            let field = format!("\"resourceVersion\":\"{}\"", kv.mod_revision);
            let empty = kv.value.get(at) == Some(&b'}');
            let mut out = Vec::with_capacity(kv.value.len() + field.len() + 1);
            out.extend_from_slice(&kv.value[..at]);
            out.extend_from_slice(field.as_bytes());
            if !empty {
                out.push(b',');
            }
            out.extend_from_slice(&kv.value[at..]);
            out
        }
        None => serde_json::to_vec(&decode_kv(kv)).expect("JSON values serialize"),
    }
}

/// Offset just past the `{` that opens the top-level `metadata` object of compact JSON.
fn metadata_body_offset(json: &[u8]) -> Option<usize> {
    let (mut depth, mut in_str, mut escaped, mut start) = (0usize, false, false, 0usize);
    let mut i = 0;
    while i < json.len() {
        let c = json[i];
        if in_str {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_str = false;
                if depth == 1 && &json[start..i] == b"metadata" && json.get(i + 1) == Some(&b':') {
                    return (json.get(i + 2) == Some(&b'{')).then_some(i + 3);
                }
            }
        } else {
            match c {
                b'"' => {
                    in_str = true;
                    start = i + 1;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => depth = depth.checked_sub(1)?,
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// Equal apart from the top-level fields in `skip` and `metadata.resourceVersion`, without
/// copying either object.
fn same_except(a: &Value, b: &Value, skip: &[&str]) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let keys = a
        .keys()
        .chain(b.keys())
        .filter(|k| !skip.contains(&k.as_str()));
    for k in keys {
        let (x, y) = (a.get(k), b.get(k));
        let equal = if k == "metadata" {
            same_except(
                x.unwrap_or(&Value::Null),
                y.unwrap_or(&Value::Null),
                &["resourceVersion"],
            )
        } else {
            x == y
        };
        if !equal {
            return false;
        }
    }
    true
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, defaults: Defaults, services: ServiceAllocator) -> Self {
        Self {
            store,
            defaults,
            services,
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Creates the namespaces every cluster has.
    pub async fn bootstrap(&self) -> Result<()> {
        for ns in ["default", "kube-system", "kube-node-lease", "kube-public"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match self.create(&kinds::NAMESPACES, "", obj, false).await {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub async fn get(&self, info: &ResourceInfo, namespace: &str, name: &str) -> Result<Value> {
        let (_, v) = self.get_kv(info, namespace, name).await?;
        Ok(v)
    }

    /// An object as Kubernetes JSON, without parsing it.
    pub async fn get_json(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<u8>> {
        let kv = self
            .store
            .get(&key(info, namespace, name))
            .await?
            .ok_or_else(|| ApiError::NotFound {
                what: what(info, name),
            })?;
        Ok(encode_kv(&kv))
    }

    async fn get_kv(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
    ) -> Result<(KeyValue, Value)> {
        let kv = self
            .store
            .get(&key(info, namespace, name))
            .await?
            .ok_or_else(|| ApiError::NotFound {
                what: what(info, name),
            })?;
        let v = decode_kv(&kv);
        Ok((kv, v))
    }

    pub async fn list(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        labels: &LabelSelectorExpr,
        fields: &FieldSelector,
    ) -> Result<(Vec<Value>, Revision)> {
        let (kvs, rev) = self.store.list(&prefix(info, namespace)).await?;
        let items = kvs
            .iter()
            .map(decode_kv)
            .filter(|v| labels.matches_object(v) && fields.matches(v))
            .collect();
        Ok((items, rev))
    }

    /// The objects of a kind that match the selectors, as Kubernetes JSON. Objects are not
    /// parsed beyond the fields the selectors read, and are served from their stored bytes.
    pub async fn list_raw(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        labels: &LabelSelectorExpr,
        fields: &FieldSelector,
    ) -> Result<(Vec<Vec<u8>>, Revision)> {
        let (kvs, rev) = self.store.list(&prefix(info, namespace)).await?;
        let filter = Filter::new(labels, fields);
        Ok((
            kvs.iter()
                .filter(|kv| filter.matches(kv))
                .map(encode_kv)
                .collect(),
            rev,
        ))
    }

    pub async fn watch(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        after: Revision,
    ) -> Result<WatchStream> {
        Ok(self.store.watch(&prefix(info, namespace), after).await?)
    }

    /// Checks the object against its kind: schema, defaults, validation.
    fn admit(&self, info: &ResourceInfo, object: Value) -> Result<Value> {
        let mut object = object;
        let name = object::name(&object).to_string();
        match (object.get("apiVersion").and_then(Value::as_str), object.get("kind").and_then(Value::as_str)) {
            (Some(av), Some(k)) if av == info.api_version() && k == info.kind => {}
            (None, None) => {
                object["apiVersion"] = Value::from(info.api_version());
                object["kind"] = Value::from(info.kind);
            }
            (av, k) => {
                return Err(ApiError::BadRequest(format!(
                    "{}: the object's apiVersion {:?} and kind {:?} do not match the resource {:?} (want {} {})",
                    what(info, &name),
                    av.unwrap_or(""),
                    k.unwrap_or(""),
                    info.plural,
                    info.api_version(),
                    info.kind
                )))
            }
        }
        let mut canonical = decode::check_schema(info, &object)?;
        validate::apply_defaults(info, &mut canonical, &self.defaults);
        let errors = validate::validate(info, &canonical);
        if !errors.is_empty() {
            return Err(ApiError::Invalid {
                what: kind_what(info, &name),
                errors,
            });
        }
        Ok(canonical)
    }

    fn resolve_namespace(
        info: &ResourceInfo,
        namespace: &str,
        object: &mut Value,
    ) -> Result<String> {
        if !info.namespaced {
            object::set_meta(object, "namespace", Value::Null);
            return Ok(String::new());
        }
        let in_object = object::namespace(object).to_string();
        let ns = match (in_object.as_str(), namespace) {
            ("", "") => "default".to_string(),
            ("", ns) => ns.to_string(),
            (obj, "") => obj.to_string(),
            (obj, ns) if obj == ns => ns.to_string(),
            (obj, ns) => {
                return Err(ApiError::BadRequest(format!(
                    "the namespace of the provided object ({obj}) does not match the namespace sent on the request ({ns})"
                )))
            }
        };
        object::set_meta(object, "namespace", Value::from(ns.clone()));
        Ok(ns)
    }

    pub async fn create(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        object: Value,
        dry_run: bool,
    ) -> Result<Written> {
        let mut object = object;
        if !object.is_object() {
            return Err(ApiError::BadRequest(format!(
                "{}: body must be a JSON object",
                info.plural
            )));
        }
        let ns = Self::resolve_namespace(info, namespace, &mut object)?;
        if object::name(&object).is_empty() {
            if let Some(base) =
                object::str_at(&object, "/metadata/generateName").map(str::to_string)
            {
                let name = format!("{base}{}", object::random_suffix(5));
                object::set_meta(&mut object, "name", Value::from(name));
            }
        }
        let mut object = self.admit(info, object)?;
        let name = object::name(&object).to_string();
        if info.namespaced
            && self
                .store
                .get(&key(&kinds::NAMESPACES, "", &ns))
                .await?
                .is_none()
        {
            return Err(ApiError::NotFound {
                what: what(&kinds::NAMESPACES, &ns),
            });
        }
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            object::set_meta(&mut object, field, Value::Null);
        }
        object::set_meta(
            &mut object,
            "uid",
            // From the thread's CSPRNG: `new_v4` makes a getrandom system call per uid.
            Value::from(
                uuid::Builder::from_random_bytes(rand::random())
                    .into_uuid()
                    .to_string(),
            ),
        );
        object::set_meta(
            &mut object,
            "creationTimestamp",
            serde_json::to_value(object::now()).unwrap_or_default(),
        );
        if info.has_status || info.has_scale {
            object::set_meta(&mut object, "generation", Value::from(1));
        }
        let _guard = if info.plural == "services" {
            let guard = self.services.lock().await;
            let (existing, _) = self.store.list(&prefix(&kinds::SERVICES, "")).await?;
            let existing: Vec<Value> = existing.iter().map(decode_kv).collect();
            self.services
                .allocate(&mut object, None, &existing)
                .map_err(|e| ApiError::Invalid {
                    what: kind_what(info, &name),
                    errors: vec![e],
                })?;
            Some(guard)
        } else {
            None
        };
        if dry_run {
            return Ok(Written::unwritten(object));
        }
        match self
            .store
            .create(&key(info, &ns, &name), encode(&mut object))
            .await
        {
            Ok(kv) => {
                debug!(resource = info.plural, namespace = %ns, name = %name, rev = kv.mod_revision, "created");
                Ok(Written::stored(object, &kv))
            }
            Err(StoreError::AlreadyExists { .. }) => Err(ApiError::AlreadyExists {
                what: what(info, &name),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces an object (main resource) or only its status. A resourceVersion in the body is
    /// a precondition; without one the update is retried against the latest version.
    pub async fn update(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        object: Value,
        status: bool,
        dry_run: bool,
    ) -> Result<Vec<u8>> {
        let mut object = object;
        let ns = Self::resolve_namespace(info, namespace, &mut object)?;
        let name = object::name(&object).to_string();
        if name.is_empty() {
            return Err(ApiError::Invalid {
                what: kind_what(info, ""),
                errors: vec![validate::FieldError {
                    path: "metadata.name".into(),
                    detail: "Required value".into(),
                }],
            });
        }
        let precondition = object::resource_version(&object);
        if status {
            let admitted = decode::check_schema(info, &with_kind(info, object))?;
            if !dry_run {
                return self
                    .write_status(info, &ns, &name, precondition, &admitted)
                    .await;
            }
            let written = self
                .write_loop(info, &ns, &name, precondition, dry_run, |current| {
                    Ok(merge_status(current, &admitted))
                })
                .await?;
            return Ok(written.json);
        }
        let admitted = self.admit(info, object)?;
        let (_guard, others) = self.other_services(info, &ns, &name).await?;
        let written = self
            .write_loop(info, &ns, &name, precondition, dry_run, |current| {
                self.merge_main(info, current, &admitted, &others)
            })
            .await?;
        Ok(written.json)
    }

    /// Read-modify-write with compare-and-swap; `change` maps the current object to the new one.
    async fn write_loop<F>(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        precondition: Revision,
        dry_run: bool,
        change: F,
    ) -> Result<Written>
    where
        F: Fn(&Value) -> Result<Value>,
    {
        let key = key(info, ns, name);
        for _ in 0..WRITE_RETRIES {
            let (kv, current) = self.get_kv(info, ns, name).await?;
            if precondition != 0 && precondition != kv.mod_revision {
                return Err(conflict(info, name));
            }
            let mut updated = change(&current)?;
            if !same_except(&updated, &current, &["metadata", "status"]) {
                let generation = current
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if info.has_status || info.has_scale {
                    object::set_meta(&mut updated, "generation", Value::from(generation + 1));
                }
            }
            if same_except(&updated, &current, &[]) {
                return Ok(Written {
                    object: current,
                    json: encode_kv(&kv),
                });
            }
            if dry_run {
                return Ok(Written::unwritten(updated));
            }
            let deleting = deletion_complete(info, &updated);
            let result = if deleting {
                self.store.delete(&key, Some(kv.mod_revision)).await
            } else {
                self.store
                    .update(&key, encode(&mut updated), kv.mod_revision)
                    .await
            };
            match result {
                Ok(kv) if deleting => {
                    return Ok(Written {
                        object: decode_kv(&kv),
                        json: encode_kv(&kv),
                    })
                }
                Ok(kv) => return Ok(Written::stored(updated, &kv)),
                Err(StoreError::Conflict { .. }) if precondition == 0 => continue,
                Err(StoreError::Conflict { .. }) => return Err(conflict(info, name)),
                Err(StoreError::NotFound { .. }) => {
                    return Err(ApiError::NotFound {
                        what: what(info, name),
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict(info, name))
    }

    /// The new object of a main update: spec and metadata from the request, server-owned
    /// metadata and (for kinds with a status subresource) status from the stored object.
    fn merge_main(
        &self,
        info: &ResourceInfo,
        current: &Value,
        requested: &Value,
        other_services: &[Value],
    ) -> Result<Value> {
        let mut updated = requested.clone();
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            let v = current
                .pointer(&format!("/metadata/{field}"))
                .cloned()
                .unwrap_or(Value::Null);
            object::set_meta(&mut updated, field, v);
        }
        if info.has_status {
            match current.get("status") {
                Some(s) => updated["status"] = s.clone(),
                None => {
                    if let Some(m) = updated.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        if info.plural == "pods" {
            let bound = object::str_at(current, "/spec/nodeName").unwrap_or("");
            let wanted = object::str_at(&updated, "/spec/nodeName").unwrap_or("");
            if !bound.is_empty() && wanted.is_empty() {
                updated["spec"]["nodeName"] = Value::from(bound);
            } else if bound != wanted {
                return Err(ApiError::Invalid {
                    what: kind_what(info, object::name(current)),
                    errors: vec![validate::FieldError {
                        path: "spec.nodeName".into(),
                        detail: "Forbidden: pod updates may not change spec.nodeName; use the binding API".into(),
                    }],
                });
            }
        }
        let errors = validate::validate_update(info.plural, current, &updated);
        if !errors.is_empty() {
            return Err(ApiError::Invalid {
                what: kind_what(info, object::name(current)),
                errors,
            });
        }
        if info.plural == "services" {
            self.services
                .update_allocations(current, &mut updated, other_services)
                .map_err(|e| ApiError::Invalid {
                    what: kind_what(info, object::name(current)),
                    errors: vec![e],
                })?;
            // What the allocation decided must still be a valid service (a node port the
            // user kept on a ClusterIP service, say).
            let errors = validate::validate(info, &updated);
            if !errors.is_empty() {
                return Err(ApiError::Invalid {
                    what: kind_what(info, object::name(current)),
                    errors,
                });
            }
        }
        Ok(updated)
    }

    /// For a service write: the allocation lock and every other stored service.
    async fn other_services(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
    ) -> Result<(Option<tokio::sync::MutexGuard<'_, ()>>, Vec<Value>)> {
        if info.plural != "services" {
            return Ok((None, Vec::new()));
        }
        let guard = self.services.lock().await;
        let (all, _) = self.store.list(&prefix(&kinds::SERVICES, "")).await?;
        let others = all
            .iter()
            .map(decode_kv)
            .filter(|s| !(object::namespace(s) == ns && object::name(s) == name))
            .collect();
        Ok((Some(guard), others))
    }

    pub async fn delete(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        opts: DeleteOptions,
    ) -> Result<(Value, bool)> {
        let ns = if info.namespaced { namespace } else { "" };
        if info.plural == "namespaces" && PROTECTED_NAMESPACES.contains(&name) {
            return Err(ApiError::MethodNotAllowed(format!(
                "namespace {name:?} may not be deleted"
            )));
        }
        let key = key(info, ns, name);
        for _ in 0..WRITE_RETRIES {
            let (kv, current) = self.get_kv(info, ns, name).await?;
            if let Some(uid) = opts.uid.as_deref().filter(|u| !u.is_empty()) {
                if uid != object::uid(&current) {
                    return Err(ApiError::Conflict {
                        what: what(info, name),
                        reason: format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", object::uid(&current)),
                    });
                }
            }
            if let Some(rv) = opts.resource_version.filter(|rv| *rv != 0) {
                if rv != kv.mod_revision {
                    return Err(conflict(info, name));
                }
            }
            let plan = plan_delete(info, &current, &opts);
            if opts.dry_run {
                return Ok((current, matches!(plan, DeletePlan::Remove)));
            }
            let result = match &plan {
                DeletePlan::Remove => self.store.delete(&key, Some(kv.mod_revision)).await,
                DeletePlan::Mark(updated) => {
                    let mut updated = updated.clone();
                    self.store
                        .update(&key, encode(&mut updated), kv.mod_revision)
                        .await
                }
                DeletePlan::AlreadyMarked => return Ok((current, false)),
            };
            match result {
                Ok(kv) => {
                    let finished = matches!(plan, DeletePlan::Remove);
                    debug!(
                        resource = info.plural,
                        namespace = ns,
                        name,
                        finished,
                        "delete"
                    );
                    if finished && info.plural == "namespaces" {
                        self.purge_namespace(name).await?;
                    }
                    return Ok((decode_kv(&kv), finished));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => {
                    return Err(ApiError::NotFound {
                        what: what(info, name),
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict(info, name))
    }

    /// Removes every object in a deleted namespace.
    async fn purge_namespace(&self, namespace: &str) -> Result<()> {
        for info in kinds::ALL.iter().filter(|i| i.namespaced) {
            let (kvs, _) = self.store.list(&prefix(info, namespace)).await?;
            for kv in kvs {
                match self.store.delete(&kv.key, None).await {
                    Ok(_) | Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    pub async fn apply(
        &self,
        namespace: &str,
        object: Value,
        dry_run: bool,
    ) -> Result<(Applied, Written)> {
        let info = decode::kind_of(&object)?;
        let mut object = object;
        let ns = Self::resolve_namespace(info, namespace, &mut object)?;
        let name = object::name(&object).to_string();
        if name.is_empty() {
            return Err(ApiError::Invalid {
                what: kind_what(info, ""),
                errors: vec![validate::FieldError {
                    path: "metadata.name".into(),
                    detail: "Required value: name is required for apply".into(),
                }],
            });
        }
        let applied = apply::last_applied_form(&object);
        let exists = self.store.get(&key(info, &ns, &name)).await?.is_some();
        if !exists {
            let mut with_annotation = object.clone();
            apply::annotate(&mut with_annotation, &applied);
            return match self.create(info, &ns, with_annotation, dry_run).await {
                Ok(v) => Ok((Applied::Created, v)),
                Err(ApiError::AlreadyExists { .. }) => {
                    Box::pin(self.apply(namespace, object, dry_run)).await
                }
                Err(e) => Err(e),
            };
        }
        let before = std::sync::Mutex::new(None);
        let (_guard, others) = self.other_services(info, &ns, &name).await?;
        let result = self
            .write_loop(info, &ns, &name, 0, dry_run, |current| {
                *before.lock().expect("not poisoned") = Some(current.clone());
                let merged = apply::merge(current, &object, &applied);
                let admitted = self.admit(info, merged)?;
                self.merge_main(info, current, &admitted, &others)
            })
            .await?;
        let before = before.into_inner().expect("not poisoned");
        let outcome = if before
            .as_ref()
            .is_some_and(|b| same_except(b, &result.object, &[]))
        {
            Applied::Unchanged
        } else {
            Applied::Configured
        };
        Ok((outcome, result))
    }

    /// Binds a pod to a node: once, and only to a node that exists. The pod's stored JSON is
    /// edited in place (see `bind.rs`); the tree path handles pods of unusual shape.
    pub async fn bind(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        node: &str,
    ) -> Result<Vec<u8>> {
        if node.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "binding pods {name:?}: target node name is required"
            )));
        }
        if self
            .store
            .get(&key(&kinds::NODES, "", node))
            .await?
            .is_none()
        {
            return Err(ApiError::NotFound {
                what: what(&kinds::NODES, node),
            });
        }
        let key = key(&kinds::PODS, namespace, name);
        let now = serde_json::to_value(object::now()).unwrap_or_default();
        for _ in 0..WRITE_RETRIES {
            let kv = self
                .store
                .get(&key)
                .await?
                .ok_or_else(|| ApiError::NotFound {
                    what: what(&kinds::PODS, name),
                })?;
            let Some(patched) = bind::patch(&kv.value, name, uid, node, &now) else {
                return Ok(self.bind_tree(namespace, name, uid, node).await?.json);
            };
            match self.store.update(&key, patched?, kv.mod_revision).await {
                Ok(kv) => {
                    debug!(namespace, pod = name, node, rev = kv.mod_revision, "bound");
                    return Ok(encode_kv(&kv));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => {
                    return Err(ApiError::NotFound {
                        what: what(&kinds::PODS, name),
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict(&kinds::PODS, name))
    }

    /// A bind on the parsed tree, for stored pods the byte edit does not handle.
    async fn bind_tree(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        node: &str,
    ) -> Result<Written> {
        self.write_loop(&kinds::PODS, namespace, name, 0, false, |current| {
            bind::check(
                name,
                uid,
                object::uid(current),
                current.pointer("/metadata/deletionTimestamp").is_some(),
                object::str_at(current, "/spec/nodeName"),
            )?;
            let mut updated = current.clone();
            updated["spec"]["nodeName"] = Value::from(node);
            set_condition(&mut updated, "PodScheduled", "True", None);
            Ok(updated)
        })
        .await
    }

    /// The scale subresource: sets `spec.replicas`, returns (new, previous).
    pub async fn scale(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        replicas: i32,
    ) -> Result<(i32, i32)> {
        if !info.has_scale {
            return Err(ApiError::MethodNotAllowed(format!(
                "{} has no scale subresource",
                info.plural
            )));
        }
        if replicas < 0 {
            return Err(ApiError::Invalid {
                what: kind_what(info, name),
                errors: vec![validate::FieldError {
                    path: "spec.replicas".into(),
                    detail: format!(
                        "Invalid value: {replicas}: must be greater than or equal to 0"
                    ),
                }],
            });
        }
        let previous = std::sync::atomic::AtomicI32::new(0);
        self.write_loop(info, namespace, name, 0, false, |current| {
            let prev = current
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1) as i32;
            previous.store(prev, std::sync::atomic::Ordering::SeqCst);
            let mut updated = current.clone();
            updated["spec"]["replicas"] = Value::from(replicas);
            Ok(updated)
        })
        .await?;
        Ok((replicas, previous.into_inner()))
    }
}

fn with_kind(info: &ResourceInfo, mut object: Value) -> Value {
    if object.get("kind").is_none() {
        object["apiVersion"] = Value::from(info.api_version());
        object["kind"] = Value::from(info.kind);
    }
    object
}

fn conflict(info: &ResourceInfo, name: &str) -> ApiError {
    ApiError::Conflict {
        what: what(info, name),
        reason: "the object has been modified; please apply your changes to the latest version and try again".into(),
    }
}

/// A status update changes only `status`.
fn merge_status(current: &Value, requested: &Value) -> Value {
    let mut updated = current.clone();
    match requested.get("status") {
        Some(s) => updated["status"] = s.clone(),
        None => {
            if let Some(m) = updated.as_object_mut() {
                m.remove("status");
            }
        }
    }
    updated
}

fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// An object marked for deletion goes away once its finalizers are gone (pods: once their
/// grace period has also been confirmed as 0 by the agent).
fn deletion_complete(info: &ResourceInfo, object: &Value) -> bool {
    if object.pointer("/metadata/deletionTimestamp").is_none() || !finalizers(object).is_empty() {
        return false;
    }
    info.plural != "pods"
        || object
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            == Some(0)
        || object::str_at(object, "/spec/nodeName").is_none_or(str::is_empty)
}

enum DeletePlan {
    Remove,
    Mark(Value),
    AlreadyMarked,
}

/// Decides what a delete does to `current`: remove it now, or mark it (deletionTimestamp,
/// grace period, propagation finalizers) for the agent or the garbage collector to finish.
fn plan_delete(info: &ResourceInfo, current: &Value, opts: &DeleteOptions) -> DeletePlan {
    let mut updated = current.clone();
    let mut fins = finalizers(current);
    let marked = current.pointer("/metadata/deletionTimestamp").is_some();
    let propagation_finalizer = match opts.propagation {
        Propagation::Foreground => Some("foregroundDeletion"),
        Propagation::Orphan => Some("orphan"),
        Propagation::Background => None,
    };
    if let Some(f) = propagation_finalizer {
        if !marked && !fins.iter().any(|x| x == f) {
            fins.push(f.to_string());
        }
    }
    let bound_pod = info.plural == "pods"
        && object::str_at(current, "/spec/nodeName").is_some_and(|n| !n.is_empty());
    let terminal = matches!(
        object::str_at(current, "/status/phase"),
        Some("Succeeded" | "Failed")
    );
    let grace = if bound_pod && !terminal {
        let requested = opts.grace_period_seconds.unwrap_or_else(|| {
            current
                .pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        });
        let existing = current
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        Some(existing.map_or(requested, |e| e.min(requested)).max(0))
    } else {
        None
    };
    if fins.is_empty() && grace.is_none_or(|g| g == 0) {
        return DeletePlan::Remove;
    }
    let existing_grace = current
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    if marked && fins == finalizers(current) && grace == existing_grace {
        return DeletePlan::AlreadyMarked;
    }
    let grace_secs = grace.unwrap_or(0);
    let deadline = if marked {
        current
            .pointer("/metadata/deletionTimestamp")
            .cloned()
            .unwrap_or(Value::Null)
    } else {
        let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace_secs);
        serde_json::to_value(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at))
            .unwrap_or_default()
    };
    object::set_meta(&mut updated, "deletionTimestamp", deadline);
    object::set_meta(
        &mut updated,
        "deletionGracePeriodSeconds",
        Value::from(grace_secs),
    );
    object::set_meta(
        &mut updated,
        "finalizers",
        if fins.is_empty() {
            Value::Null
        } else {
            json!(fins)
        },
    );
    DeletePlan::Mark(updated)
}

/// Sets a condition in `status.conditions` (pods), keeping the transition time when unchanged.
pub fn set_condition(object: &mut Value, kind: &str, status: &str, reason: Option<&str>) {
    let now = serde_json::to_value(object::now()).unwrap_or_default();
    set_condition_at(object, kind, status, reason, now);
}

/// [`set_condition`] with the transition time given.
fn set_condition_at(
    object: &mut Value,
    kind: &str,
    status: &str,
    reason: Option<&str>,
    now: Value,
) {
    if !object.get("status").is_some_and(Value::is_object) {
        object["status"] = json!({});
    }
    let conditions = object["status"]
        .as_object_mut()
        .expect("status is an object")
        .entry("conditions")
        .or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let list = conditions.as_array_mut().expect("conditions is an array");
    let mut cond = json!({"type": kind, "status": status, "lastTransitionTime": now});
    if let Some(r) = reason {
        cond["reason"] = Value::from(r);
    }
    match list
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
    {
        Some(existing) if existing.get("status").and_then(Value::as_str) == Some(status) => {}
        Some(existing) => *existing = cond,
        None => list.push(cond),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_version_is_spliced_into_stored_json() {
        let cases = [
            (
                r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{}}"#,
                7,
            ),
            (r#"{"metadata":{},"kind":"X"}"#, 12),
            (
                r#"{"a":{"metadata":{"x":1}},"s":"\"metadata\":{","metadata":{"name":"q"}}"#,
                3,
            ),
        ];
        for (json, rev) in cases {
            let kv = KeyValue {
                key: "/k".into(),
                value: json.as_bytes().into(),
                create_revision: 1,
                mod_revision: rev,
            };
            let spliced: Value = serde_json::from_slice(&encode_kv(&kv)).expect("valid JSON");
            assert_eq!(spliced, decode_kv(&kv), "{json}");
        }
    }

    #[test]
    fn comparisons_ignore_only_the_resource_version_and_skipped_fields() {
        let a = json!({"metadata": {"name": "a", "resourceVersion": "1"}, "spec": {"x": 1}, "status": {"y": 1}});
        let b = json!({"metadata": {"name": "a", "resourceVersion": "2"}, "spec": {"x": 1}, "status": {"y": 2}});
        assert!(!same_except(&a, &b, &[]));
        assert!(same_except(&a, &b, &["status"]));
        assert!(!same_except(
            &a,
            &json!({"metadata": {"name": "b"}, "spec": {"x": 1}}),
            &["status"]
        ));
    }
}
