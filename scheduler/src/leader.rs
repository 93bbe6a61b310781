//! Leader election over a `coordination.k8s.io/v1` Lease, as client-go's leaderelection: the
//! holder renews `renewTime` with compare-and-swap updates; a candidate takes the Lease over only
//! after it has seen the record unchanged for a whole lease duration (local clock, so clock skew
//! between machines does not matter).

use std::time::{Duration, Instant};

use corral_api::k8s::api::coordination::v1::{Lease, LeaseSpec};
use corral_api::k8s::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use corral_api::Client;
use tokio::sync::watch;

use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    /// The leader gives up when it could not renew for this long.
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// kube-scheduler's defaults: `kube-system/<name>`, 15s lease, 10s deadline, 2s retry.
    pub fn new(identity: &str) -> Self {
        LeaderConfig {
            namespace: "kube-system".into(),
            name: "corral-scheduler".into(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

struct Observed {
    resource_version: String,
    at: Instant,
}

pub struct LeaderElector {
    client: Client,
    config: LeaderConfig,
    observed: Option<Observed>,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaderConfig) -> Self {
        LeaderElector {
            client,
            config,
            observed: None,
        }
    }

    fn lease_name(&self) -> String {
        format!("{}/{}", self.config.namespace, self.config.name)
    }

    /// Campaigns, then renews; `tx` carries whether we lead. Returns only when leadership
    /// was held and then lost (the caller should stop, as kube-scheduler exits).
    pub async fn run(&mut self, tx: watch::Sender<bool>) -> Error {
        let mut leading = false;
        let mut last_renew = Instant::now();
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Ok(())) => {
                    last_renew = Instant::now();
                    if !leading {
                        leading = true;
                        tracing::info!(lease = %self.lease_name(), identity = %self.config.identity, "acquired lease");
                        let _ = tx.send(true);
                    }
                }
                Ok(Err(holder)) => {
                    if leading {
                        let _ = tx.send(false);
                        return Error::LostLease {
                            lease: self.lease_name(),
                            holder,
                        };
                    }
                }
                Err(e) => {
                    tracing::warn!(lease = %self.lease_name(), error = %e, "lease update failed");
                }
            }
            if leading && last_renew.elapsed() > self.config.renew_deadline {
                let _ = tx.send(false);
                return Error::LostLease {
                    lease: self.lease_name(),
                    holder: String::new(),
                };
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// `Ok(Ok(()))` when we hold the lease now, `Ok(Err(holder))` when someone else does.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Result<(), String>> {
        let c = &self.config;
        let what = || format!("lease {}/{}", c.namespace, c.name);
        let now = MicroTime(jiff::Timestamp::now());
        let duration_secs = c.lease_duration.as_secs().max(1) as i32;
        let current = self
            .client
            .get_opt::<Lease>(&c.namespace, &c.name)
            .await
            .map_err(|e| Error::api(what(), e))?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(c.name.clone()),
                    namespace: Some(c.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(c.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.client.create(&lease).await {
                Ok(created) => {
                    self.observe(&created);
                    Ok(Ok(()))
                }
                Err(e) if e.is_already_exists() => Ok(Err(String::new())),
                Err(e) => Err(Error::api(what(), e)),
            };
        };
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.resource_version != rv);
        if changed {
            self.observed = Some(Observed {
                resource_version: rv,
                at: Instant::now(),
            });
        }
        let held_for = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
        let unchanged_since = self
            .observed
            .as_ref()
            .map(|o| o.at)
            .unwrap_or_else(Instant::now);
        let ours = holder == c.identity;
        if !holder.is_empty() && !ours && unchanged_since.elapsed() < held_for {
            return Ok(Err(holder));
        }
        if !ours {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(c.identity.clone());
            tracing::info!(lease = %what(), previous = %holder, "taking over expired lease");
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(duration_secs);
        // The resourceVersion makes this a compare-and-swap: of two candidates only one wins.
        match self.client.update(&lease).await {
            Ok(updated) => {
                self.observe(&updated);
                Ok(Ok(()))
            }
            Err(e) if e.is_conflict() => Ok(Err(holder)),
            Err(e) => Err(Error::api(what(), e)),
        }
    }

    /// Gives the lease up if we hold it, so a standby takes over at once instead of after a
    /// lease duration (client-go's ReleaseOnCancel).
    pub async fn release(&self) -> Result<()> {
        let c = &self.config;
        let what = || format!("lease {}/{}", c.namespace, c.name);
        let Some(mut lease) = self
            .client
            .get_opt::<Lease>(&c.namespace, &c.name)
            .await
            .map_err(|e| Error::api(what(), e))?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(c.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        match self.client.update(&lease).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_conflict() => Ok(()),
            Err(e) => Err(Error::api(what(), e)),
        }
    }

    fn observe(&mut self, lease: &Lease) {
        self.observed = Some(Observed {
            resource_version: lease.metadata.resource_version.clone().unwrap_or_default(),
            at: Instant::now(),
        });
    }
}
