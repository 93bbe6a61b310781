//! Leader election over a `coordination.k8s.io/v1` Lease, as client-go's leaderelection: the
//! holder renews `renewTime` with compare-and-swap updates; a candidate takes the Lease over
//! only after it has seen the record unchanged for a whole lease duration on its own clock (so
//! clock skew between machines does not matter). The holder stops acting when it has not
//! renewed within the renew deadline, which is shorter than the lease duration: it stops before
//! anyone else may take over, so two holders never act at once. [`decide`] is the pure rule.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::Error as ApiError;
use crate::Client;

#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    /// The holder gives up when it could not renew for this long (less than the duration).
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// client-go's defaults: `kube-system/<name>`, 15 s lease, 10 s deadline, 2 s retry.
    pub fn new(name: &str, identity: &str) -> Self {
        LeaderConfig {
            namespace: "kube-system".into(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lease {lease}: {source}")]
    Api {
        lease: String,
        #[source]
        source: ApiError,
    },
}

/// Leadership was held and is gone: the holder must stop acting.
#[derive(Debug, thiserror::Error)]
#[error("lost the lease {lease}{}", if holder.is_empty() { String::new() } else { format!(" to {holder}") })]
pub struct LostLease {
    pub lease: String,
    /// Who holds it now, when known.
    pub holder: String,
}

/// Someone else holds the Lease (empty when a racing create won and the holder is unknown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the lease is held by {0:?}")]
pub struct HeldBy(pub String);

/// The last version of the Lease this candidate saw, and when it first saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub resource_version: String,
    pub at: Instant,
}

/// What to do with the Lease as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it, holding it.
    Create,
    /// Ours: renew it.
    Renew,
    /// Free, released or expired: take it over from `previous` (empty when free).
    TakeOver { previous: String },
    /// Someone else holds it and renews it.
    Wait { holder: String },
}

/// The rule: a Lease is taken over only when it is free, or when its record has not changed
/// for a whole lease duration since this candidate first saw it. Updates `observed`.
pub fn decide(
    lease: Option<(&str, &LeaseSpec)>,
    observed: &mut Option<Observed>,
    me: &str,
    now: Instant,
) -> Decision {
    let Some((rv, spec)) = lease else {
        return Decision::Create;
    };
    if observed.as_ref().is_none_or(|o| o.resource_version != rv) {
        *observed = Some(Observed {
            resource_version: rv.to_string(),
            at: now,
        });
    }
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver { previous: holder };
    }
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
    let unchanged_since = observed.as_ref().map_or(now, |o| o.at);
    if now.duration_since(unchanged_since) < duration {
        Decision::Wait { holder }
    } else {
        Decision::TakeOver { previous: holder }
    }
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

    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    fn lease_name(&self) -> String {
        format!("{}/{}", self.config.namespace, self.config.name)
    }

    fn api_err(&self) -> impl Fn(ApiError) -> LeaderError + '_ {
        move |source| LeaderError::Api {
            lease: self.lease_name(),
            source,
        }
    }

    /// Campaigns, then renews; `tx` carries whether we lead. Returns only when leadership was
    /// held and then lost (the caller stops, as kube-scheduler exits).
    pub async fn run(&mut self, tx: watch::Sender<bool>) -> LostLease {
        let since = self.acquire().await;
        let _ = tx.send(true);
        let lost = self.hold(since).await;
        let _ = tx.send(false);
        lost
    }

    /// Campaigns until this candidate holds the lease; returns when the winning attempt began.
    pub async fn acquire(&mut self) -> Instant {
        loop {
            let started = Instant::now();
            match self.try_acquire_or_renew().await {
                Ok(Ok(())) => {
                    tracing::info!(lease = %self.lease_name(), identity = %self.config.identity, "acquired lease");
                    return started;
                }
                Ok(Err(_)) => {}
                Err(e) => tracing::warn!(error = %e, "lease update failed"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews the lease acquired at `since` until it is lost: another holder took it, or no
    /// renewal succeeded within the renew deadline (each attempt is cut at the deadline, so a
    /// hung request cannot keep a stale leader acting).
    pub async fn hold(&mut self, since: Instant) -> LostLease {
        let mut renewed = since;
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let deadline = renewed + self.config.renew_deadline;
            let started = Instant::now();
            let holder = match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await
            {
                Ok(Ok(Ok(()))) => {
                    renewed = started;
                    continue;
                }
                Ok(Ok(Err(HeldBy(holder)))) => Some(holder),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "lease renewal failed");
                    None
                }
                Err(_) => None,
            };
            if holder.is_some() || Instant::now() >= deadline {
                let lost = LostLease {
                    lease: self.lease_name(),
                    holder: holder.unwrap_or_default(),
                };
                tracing::warn!(identity = %self.config.identity, error = %lost, "stopping");
                return lost;
            }
        }
    }

    /// One attempt: `Ok(Ok(()))` when we hold the lease now, `Ok(Err(holder))` when someone
    /// else does.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Result<(), HeldBy>, LeaderError> {
        let c = self.config.clone();
        let now = MicroTime(jiff::Timestamp::now());
        let duration_secs = c.lease_duration.as_secs().max(1) as i32;
        let current = self
            .client
            .get_opt::<Lease>(&c.namespace, &c.name)
            .await
            .map_err(self.api_err())?;
        let decision = {
            let view = current.as_ref().map(|l| {
                (
                    l.metadata.resource_version.as_deref().unwrap_or(""),
                    l.spec.as_ref(),
                )
            });
            let default = LeaseSpec::default();
            let view = view.map(|(rv, spec)| (rv, spec.unwrap_or(&default)));
            decide(view, &mut self.observed, &c.identity, Instant::now())
        };
        let mut lease = match (decision, current) {
            (Decision::Wait { holder }, _) => return Ok(Err(HeldBy(holder))),
            (Decision::Create, _) | (_, None) => {
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
                    Err(e) if e.is_already_exists() => Ok(Err(HeldBy(String::new()))),
                    Err(e) => Err(self.api_err()(e)),
                };
            }
            (Decision::TakeOver { previous }, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                spec.acquire_time = Some(now.clone());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                spec.holder_identity = Some(c.identity.clone());
                tracing::info!(lease = %self.lease_name(), %previous, "taking over the lease");
                lease
            }
            (Decision::Renew, Some(lease)) => lease,
        };
        let holder = {
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.renew_time = Some(now);
            spec.lease_duration_seconds = Some(duration_secs);
            spec.holder_identity.clone().unwrap_or_default()
        };
        // The resourceVersion makes this a compare-and-swap: of two candidates only one wins.
        match self.client.update(&lease).await {
            Ok(updated) => {
                self.observe(&updated);
                Ok(Ok(()))
            }
            Err(e) if e.is_conflict() => Ok(Err(HeldBy(holder))),
            Err(e) => Err(self.api_err()(e)),
        }
    }

    /// Gives the lease up if we hold it, so a standby takes over at once instead of after a
    /// lease duration (client-go's ReleaseOnCancel).
    pub async fn release(&self) -> Result<(), LeaderError> {
        let c = &self.config;
        let Some(mut lease) = self
            .client
            .get_opt::<Lease>(&c.namespace, &c.name)
            .await
            .map_err(self.api_err())?
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
            Err(e) => Err(self.api_err()(e)),
        }
    }

    fn observe(&mut self, lease: &Lease) {
        self.observed = Some(Observed {
            resource_version: lease.metadata.resource_version.clone().unwrap_or_default(),
            at: Instant::now(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: (!holder.is_empty()).then(|| holder.to_string()),
            lease_duration_seconds: Some(duration),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_is_taken_only_when_free_ours_or_unchanged_for_its_duration() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let seen = |rv: &str, ago: u64| {
            Some(Observed {
                resource_version: rv.into(),
                at: t0 - s(ago),
            })
        };
        let other = spec("other", 10);
        let free = spec("", 10);
        let mine = spec("me", 10);
        let take = |p: &str| Decision::TakeOver { previous: p.into() };
        let wait = Decision::Wait {
            holder: "other".into(),
        };
        // (lease as (rv, spec), what we saw before, decision)
        let cases = [
            (None, None, Decision::Create),
            (Some(("5", &free)), None, take("")),
            (Some(("5", &mine)), seen("4", 100), Decision::Renew),
            // First sight of someone else's record: wait a whole duration from now.
            (Some(("5", &other)), None, wait.clone()),
            // The holder renewed (new version): the clock starts again.
            (Some(("6", &other)), seen("5", 100), wait.clone()),
            (Some(("5", &other)), seen("5", 9), wait.clone()),
            // Unchanged for longer than the duration: expired.
            (Some(("5", &other)), seen("5", 11), take("other")),
        ];
        for (lease, before, want) in cases {
            let mut observed = before.clone();
            assert_eq!(
                decide(lease, &mut observed, "me", t0),
                want,
                "{lease:?} seen before {before:?}"
            );
            if let Some((rv, _)) = lease {
                assert_eq!(observed.unwrap().resource_version, rv);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_that_cannot_renew_stops_before_its_lease_can_be_taken_over() {
        // Nothing listens on port 9: every renewal fails.
        let client = Client::connect_lazy("http://127.0.0.1:9").unwrap();
        let config = LeaderConfig {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            ..LeaderConfig::new("test", "me")
        };
        let mut elector = LeaderElector::new(client, config);
        let since = Instant::now();
        let lost = elector.hold(since).await;
        let stopped_after = since.elapsed();
        assert!(lost.holder.is_empty());
        // A candidate may take over 15 s after the last renewal at the earliest.
        assert!(
            stopped_after <= Duration::from_secs(10),
            "stopped {stopped_after:?} after the last renewal"
        );
        assert!(stopped_after >= Duration::from_secs(8), "{stopped_after:?}");
    }
}
