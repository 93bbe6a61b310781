//! Create: namespace resolution, admission (schema, defaults, validation), server-owned
//! metadata (uid, creationTimestamp, generation) and service allocation.

use corral_api::decode;
use corral_api::kinds::{self, ResourceInfo};
use corral_api::object;
use serde_json::Value;
use tracing::debug;

use super::{encode, key, ApiError, Registry, Result, Subject, Written};
use crate::store::StoreError;
use crate::validate;

impl Registry {
    /// Checks the object against its kind: schema, defaults, validation.
    pub(super) fn admit(&self, info: &ResourceInfo, object: Value) -> Result<Value> {
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
                    Subject::resource(info, &name),
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
                what: Subject::kind(info, &name),
                errors,
            });
        }
        super::podsecurity::check_namespace_labels(info, &canonical)?;
        Ok(canonical)
    }

    /// The namespace a write lands in (the request's, the object's, or `default`); the
    /// authorizer asks about the same one.
    pub fn resolve_namespace(
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

    /// The object's name, which updates and applies need; `detail` says why when it is empty.
    pub(super) fn required_name(
        info: &ResourceInfo,
        object: &Value,
        detail: &str,
    ) -> Result<String> {
        let name = object::name(object);
        if name.is_empty() {
            return Err(ApiError::Invalid {
                what: Subject::kind(info, ""),
                errors: vec![validate::FieldError {
                    path: "metadata.name".into(),
                    detail: detail.into(),
                }],
            });
        }
        Ok(name.to_string())
    }

    pub async fn create(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        object: Value,
        dry_run: bool,
    ) -> Result<Written> {
        self.create_as(info, namespace, object, dry_run, None).await
    }

    /// [`Registry::create`] made for a field manager, which owns every field it set
    /// (`managed.rs`).
    pub async fn create_as(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        object: Value,
        dry_run: bool,
        manager: Option<&str>,
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
        let object = self.admit(info, object)?;
        let mut object = super::managed::created(info, manager, object);
        let name = object::name(&object).to_string();
        if info.namespaced {
            self.check_namespace_open(info, &ns, &name).await?;
        }
        let warnings = self.pod_security_create(info, &ns, &object).await?;
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
        let claims = if info.plural == kinds::SERVICES.plural {
            self.allocate_service(info, &ns, &name, &mut object, dry_run)
                .await?
        } else {
            Vec::new()
        };
        if dry_run {
            let mut written = Written::unwritten(object);
            written.warnings = warnings;
            return Ok(written);
        }
        let created = match encode(info, &mut object) {
            Ok(bytes) => self.store.create(&key(info, &ns, &name), bytes).await,
            Err(e) => {
                self.release_claims(&claims).await;
                return Err(e);
            }
        };
        if let Err(StoreError::AlreadyExists { .. }) = created {
            // Nothing holds the addresses claimed for it (a create's claims name its new uid).
            // After any other error the write may have landed: the repair loop decides.
            self.release_claims(&claims).await;
        }
        match created {
            Ok(kv) => {
                debug!(resource = info.plural, namespace = %ns, name = %name, rev = kv.mod_revision, "created");
                let mut written = Written::stored(object, &kv);
                written.warnings = warnings;
                Ok(written)
            }
            Err(StoreError::AlreadyExists { .. }) => Err(ApiError::AlreadyExists {
                what: Subject::resource(info, &name),
            }),
            Err(e) => Err(e.into()),
        }
    }
}
