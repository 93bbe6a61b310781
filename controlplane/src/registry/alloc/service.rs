//! Service writes around their claims: the addresses a write adds are claimed in the store
//! before the service is written (so two servers never hand one out twice), and the ones it
//! drops are released after. A write that loses a claim to another server chooses again.

use std::collections::BTreeSet;

use corral_api::kinds::ResourceInfo;
use serde_json::Value;

use super::claims::{self, Claim, Owner};
use super::Used;
use crate::registry::{decode_kv, key, ApiError, Registry, Result, Subject, Written};
use crate::store::Revision;

/// Rounds of choose-claim-write before a write gives up (each lost round means another
/// writer took an address or changed the service in between).
const ATTEMPTS: usize = 16;

fn invalid(info: &ResourceInfo, name: &str, e: crate::validate::FieldError) -> ApiError {
    ApiError::Invalid {
        what: Subject::kind(info, name),
        errors: vec![e],
    }
}

fn busy(info: &ResourceInfo, name: &str) -> ApiError {
    ApiError::Conflict {
        what: Subject::resource(info, name),
        reason: "its addresses kept being taken by other writers; please try again".into(),
    }
}

impl Registry {
    /// Chooses and claims a new service's addresses (a dry run only chooses). Returns the
    /// claims, which the caller releases if the service is not written.
    pub(in crate::registry) async fn allocate_service(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        object: &mut Value,
        dry_run: bool,
    ) -> Result<Vec<Claim>> {
        // A service that exists is refused as such, not for holding its own address.
        if self.store.get(&key(info, ns, name)).await?.is_some() {
            return Err(ApiError::AlreadyExists {
                what: Subject::resource(info, name),
            });
        }
        let owner = Owner::of(object);
        let requested = object.clone();
        for _ in 0..ATTEMPTS {
            let _guard = self.services.lock().await;
            let all = claims::list(self.store.as_ref()).await?;
            let mut chosen = requested.clone();
            self.services
                .allocate(&mut chosen, &claims::used_by_others(&all, &owner))
                .map_err(|e| invalid(info, name, e))?;
            if dry_run {
                *object = chosen;
                return Ok(Vec::new());
            }
            let plan = claims::plan_secure(&all, &owner, &claims::addresses(&chosen));
            let mut secured = Vec::new();
            match claims::secure(self.store.as_ref(), &owner, &plan, &mut secured).await {
                Ok(Ok(())) => {
                    *object = chosen;
                    return Ok(secured);
                }
                Ok(Err(_lost)) => claims::release(self.store.as_ref(), &secured).await,
                Err(e) => {
                    claims::release(self.store.as_ref(), &secured).await;
                    return Err(e.into());
                }
            }
        }
        Err(busy(info, name))
    }

    /// Releases claims of a service that was not written.
    pub(in crate::registry) async fn release_claims(&self, secured: &[Claim]) {
        claims::release(self.store.as_ref(), secured).await;
    }

    /// A main update (or apply) of a service: `change` makes the new object from the stored one
    /// and what other services hold. The addresses it adds are claimed before the write, which
    /// is made only at the revision it was planned on; the ones it drops are released after.
    pub(in crate::registry) async fn write_service(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        precondition: Revision,
        dry_run: bool,
        mut change: impl FnMut(&Value, &Used) -> Result<Value>,
    ) -> Result<Written> {
        let key = key(info, ns, name);
        for _ in 0..ATTEMPTS {
            let guard = self.services.lock().await;
            let kv = self
                .store
                .get(&key)
                .await?
                .ok_or_else(|| ApiError::NotFound {
                    what: Subject::resource(info, name),
                })?;
            let base = decode_kv(&kv);
            let owner = Owner::of(&base);
            let all = claims::list(self.store.as_ref()).await?;
            let planned = change(&base, &claims::used_by_others(&all, &owner))?;
            let before = claims::addresses(&base);
            let mut after = claims::addresses(&planned);
            let mut secured = Vec::new();
            if !dry_run {
                let needed: BTreeSet<_> = after.difference(&before).copied().collect();
                let plan = claims::plan_secure(&all, &owner, &needed);
                match claims::secure(self.store.as_ref(), &owner, &plan, &mut secured).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_lost)) => {
                        claims::release(self.store.as_ref(), &secured).await;
                        continue;
                    }
                    Err(e) => {
                        claims::release(self.store.as_ref(), &secured).await;
                        return Err(e.into());
                    }
                }
            }
            drop(guard);
            // Only at the revision planned on (or the request's own precondition, which a
            // changed object then fails as before).
            let at = if precondition != 0 {
                precondition
            } else {
                kv.mod_revision
            };
            let written = self
                .write_tree(info, ns, name, at, dry_run, |_| Ok(planned.clone()))
                .await;
            match written {
                Ok(written) => {
                    if !dry_run {
                        if crate::registry::delete::deletion_complete(info, &planned) {
                            after.clear();
                        }
                        let gone = claims::plan_release(&all, &owner, &before, &after);
                        claims::release(self.store.as_ref(), &gone).await;
                    }
                    return Ok(written);
                }
                Err(ApiError::Conflict { .. }) if precondition == 0 => {
                    claims::release(self.store.as_ref(), &secured).await;
                }
                Err(e) => {
                    // A store error may hide a write that landed: the repair loop decides.
                    if !matches!(e, ApiError::Store(_)) {
                        claims::release(self.store.as_ref(), &secured).await;
                    }
                    return Err(e);
                }
            }
        }
        Err(busy(info, name))
    }

    /// After a service is deleted: every claim of its uid goes (nothing else can hold them).
    pub(in crate::registry) async fn release_deleted_service(&self, deleted: &Value) {
        let owner = Owner::of(deleted);
        match claims::list(self.store.as_ref()).await {
            Ok(all) => {
                let owned: Vec<Claim> = all.into_iter().filter(|c| c.owner == owner).collect();
                claims::release(self.store.as_ref(), &owned).await;
            }
            Err(e) => {
                tracing::warn!(service = %owner, error = %e, "listing claims to release failed; the repair loop will")
            }
        }
    }
}
