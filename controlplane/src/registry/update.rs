//! Update (main resource and status subresource) and scale: the request merged over the
//! stored object, with server-owned metadata and status kept, validated as an update.

use corral_api::decode;
use corral_api::kinds::{self, ResourceInfo};
use corral_api::object;
use serde_json::Value;

use super::alloc::Used;
use super::{podsecurity, ApiError, Registry, Result, Subject};
use crate::validate;

/// An update's answer: the object's JSON as clients get it, and admission warnings.
#[derive(Debug, Clone)]
pub struct Updated {
    pub json: Vec<u8>,
    pub warnings: Vec<String>,
}

impl Registry {
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
        let updated = self
            .update_with_warnings(info, namespace, object, status, dry_run)
            .await?;
        Ok(updated.json)
    }

    /// [`Registry::update`], with the admission warnings for the client.
    pub async fn update_with_warnings(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        object: Value,
        status: bool,
        dry_run: bool,
    ) -> Result<Updated> {
        self.update_as(info, namespace, object, status, dry_run, None)
            .await
    }

    /// [`Registry::update_with_warnings`] made for a field manager, which a main update
    /// records in managedFields (`managed.rs`).
    pub async fn update_as(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        object: Value,
        status: bool,
        dry_run: bool,
        manager: Option<&str>,
    ) -> Result<Updated> {
        let answer = |json| Updated {
            json,
            warnings: Vec::new(),
        };
        let mut object = object;
        let ns = Self::resolve_namespace(info, namespace, &mut object)?;
        let name = Self::required_name(info, &object, "Required value")?;
        let precondition = object::resource_version(&object);
        if status {
            let admitted = decode::check_schema(info, &with_kind(info, object))?;
            if !dry_run {
                return self
                    .write_status(info, &ns, &name, precondition, &admitted)
                    .await
                    .map(answer);
            }
            let written = self
                .write_tree(info, &ns, &name, precondition, dry_run, |current| {
                    Ok(merge_status(current, &admitted))
                })
                .await?;
            return Ok(answer(written.json));
        }
        let admitted = self.admit(info, object)?;
        let policy = self.pod_security_policy(info, &ns).await?;
        let mut warnings = Vec::new();
        let mut before = None;
        let mut change = |current: &Value, used: &Used| {
            let updated = self.merge_main(info, current, &admitted, used, manager)?;
            if let Some(policy) = &policy {
                warnings = podsecurity::admit(info, &ns, policy, &updated, Some(current))?;
            }
            if info.plural == kinds::NAMESPACES.plural {
                before = Some(current.clone());
            }
            Ok(updated)
        };
        let written = if info.plural == kinds::SERVICES.plural {
            self.write_service(info, &ns, &name, precondition, dry_run, change)
                .await?
        } else {
            self.write_tree(info, &ns, &name, precondition, dry_run, |current| {
                change(current, &Used::default())
            })
            .await?
        };
        if let Some(before) = &before {
            warnings.extend(self.existing_pod_warnings(before, &written.object).await?);
        }
        Ok(Updated {
            json: written.json,
            warnings,
        })
    }

    /// The new object of a main update: spec and metadata from the request, server-owned
    /// metadata and (for kinds with a status subresource) status from the stored object,
    /// managedFields as `managed.rs` keeps them for the write's field manager.
    pub(super) fn merge_main(
        &self,
        info: &ResourceInfo,
        current: &Value,
        requested: &Value,
        used: &Used,
        manager: Option<&str>,
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
        if info.plural == "namespaces" {
            super::namespace::keep_spec_finalizers(current, &mut updated);
        }
        if info.plural == "pods" {
            let bound = object::str_at(current, "/spec/nodeName").unwrap_or("");
            let wanted = object::str_at(&updated, "/spec/nodeName").unwrap_or("");
            if !bound.is_empty() && wanted.is_empty() {
                updated["spec"]["nodeName"] = Value::from(bound);
            } else if bound != wanted {
                return Err(ApiError::Invalid {
                    what: Subject::kind(info, object::name(current)),
                    errors: vec![validate::FieldError {
                        path: "spec.nodeName".into(),
                        detail: "Forbidden: pod updates may not change spec.nodeName; use the binding API".into(),
                    }],
                });
            }
        }
        let mut updated = super::managed::updated(info, manager, current, updated);
        let errors = validate::validate_update(info.plural, current, &updated);
        if !errors.is_empty() {
            return Err(ApiError::Invalid {
                what: Subject::kind(info, object::name(current)),
                errors,
            });
        }
        if info.plural == "services" {
            self.services
                .update_allocations(current, &mut updated, used)
                .map_err(|e| ApiError::Invalid {
                    what: Subject::kind(info, object::name(current)),
                    errors: vec![e],
                })?;
            // What the allocation decided must still be a valid service (a node port the
            // user kept on a ClusterIP service, say).
            let errors = validate::validate(info, &updated);
            if !errors.is_empty() {
                return Err(ApiError::Invalid {
                    what: Subject::kind(info, object::name(current)),
                    errors,
                });
            }
        }
        Ok(updated)
    }

    /// The scale subresource: sets `spec.replicas`, returns (new, previous).
    pub async fn scale(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        replicas: i32,
    ) -> Result<(i32, i32)> {
        self.scale_as(info, namespace, name, replicas, None).await
    }

    /// [`Registry::scale`] made for a field manager, which then owns `spec.replicas`.
    pub async fn scale_as(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        replicas: i32,
        manager: Option<&str>,
    ) -> Result<(i32, i32)> {
        if !info.has_scale {
            return Err(ApiError::MethodNotAllowed(format!(
                "{} has no scale subresource",
                info.plural
            )));
        }
        if replicas < 0 {
            return Err(ApiError::Invalid {
                what: Subject::kind(info, name),
                errors: vec![validate::FieldError {
                    path: "spec.replicas".into(),
                    detail: format!(
                        "Invalid value: {replicas}: must be greater than or equal to 0"
                    ),
                }],
            });
        }
        let mut previous = 0;
        self.write_tree(info, namespace, name, 0, false, |current| {
            previous = current
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1) as i32;
            let mut updated = current.clone();
            updated["spec"]["replicas"] = Value::from(replicas);
            Ok(super::managed::updated(info, manager, current, updated))
        })
        .await?;
        Ok((replicas, previous))
    }
}

fn with_kind(info: &ResourceInfo, mut object: Value) -> Value {
    if object.get("kind").is_none() {
        object["apiVersion"] = Value::from(info.api_version());
        object["kind"] = Value::from(info.kind);
    }
    object
}

/// A status update changes only `status`.
pub(super) fn merge_status(current: &Value, requested: &Value) -> Value {
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
