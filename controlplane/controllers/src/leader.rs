//! Leader election on a Lease (`kube-system/corral-controller-manager`), as
//! kube-controller-manager does: only the holder runs the controllers, so several control
//! planes can run side by side; a holder that stops renewing is replaced after the lease
//! duration.

use std::time::Duration;

use corral_api::Client;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "corral-controller-manager";

/// Whether `me` may hold the lease now: it is ours, free, or expired.
pub fn can_take(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> bool {
    let Some(spec) = spec else { return true };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == me {
        return true;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    match spec.renew_time.as_ref() {
        Some(t) => t.0.as_millisecond() + duration * 1000 < now.as_millisecond(),
        None => true,
    }
}

pub struct Election {
    client: Client,
    pub identity: String,
    pub duration: Duration,
    pub renew_every: Duration,
}

impl Election {
    pub fn new(client: Client, duration: Duration) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "corral".into());
        Self {
            client,
            identity: format!("{host}_{}", corral_api::object::random_suffix(8)),
            duration,
            renew_every: duration / 4,
        }
    }

    /// One attempt to take or renew the lease; true when we hold it afterwards.
    pub async fn try_acquire_or_renew(&self) -> bool {
        let now = Timestamp::now();
        let secs = self.duration.as_secs().max(1) as i32;
        match self.client.get_opt::<Lease>(NAMESPACE, NAME).await {
            Ok(None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(NAME.into()),
                        namespace: Some(NAMESPACE.into()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(secs),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                self.client.create(&lease).await.is_ok()
            }
            Ok(Some(mut lease)) => {
                if !can_take(lease.spec.as_ref(), &self.identity, now) {
                    return false;
                }
                let spec = lease.spec.get_or_insert_with(Default::default);
                if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                    spec.holder_identity = Some(self.identity.clone());
                    spec.acquire_time = Some(MicroTime(now));
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.lease_duration_seconds = Some(secs);
                spec.renew_time = Some(MicroTime(now));
                // Compare-and-swap on the resourceVersion we read: one winner.
                self.client.update(&lease).await.is_ok()
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed_secs_ago: i64, duration: i32, now: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(duration),
            renew_time: Some(MicroTime(
                now - jiff::SignedDuration::from_secs(renewed_secs_ago),
            )),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_free_own_or_expired_lease_can_be_taken() {
        let now = Timestamp::now();
        let cases = [
            (None, true),
            (Some(spec("", 0, 10, now)), true),
            (Some(spec("me", 0, 10, now)), true),
            (Some(spec("other", 3, 10, now)), false),
            (Some(spec("other", 11, 10, now)), true),
        ];
        for (s, want) in cases {
            assert_eq!(can_take(s.as_ref(), "me", now), want, "{s:?}");
        }
    }
}
