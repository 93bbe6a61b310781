//! Telling users why a pod waits: a `FailedScheduling` Warning event on the pod (repeats of the
//! same message bump the event's count, as kubectl shows `(x5 over 3m)`) and the pod's
//! `PodScheduled` condition set to False with reason Unschedulable.

use std::collections::HashMap;
use std::sync::Arc;

use corral_api::k8s::api::core::v1::{Event, EventSource, ObjectReference, Pod, PodCondition};
use corral_api::k8s::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use corral_api::Client;
use parking_lot::Mutex;

use crate::podinfo::PodInfo;
use crate::{Error, Result};

pub const COMPONENT: &str = "default-scheduler";

pub struct Recorder {
    client: Client,
    identity: String,
    /// Last event sent per pod uid, to bump its count instead of creating another.
    last: Mutex<HashMap<String, Event>>,
}

impl Recorder {
    pub fn new(client: Client, identity: &str) -> Arc<Self> {
        Arc::new(Recorder {
            client,
            identity: identity.to_string(),
            last: Mutex::new(HashMap::new()),
        })
    }

    /// Records in the background, so the scheduling loop never waits on it.
    pub fn failed_scheduling(self: &Arc<Self>, pod: Arc<PodInfo>, message: String) {
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.event(&pod, &message).await {
                tracing::warn!(pod = %pod.key(), error = %e, "recording FailedScheduling event");
            }
            if let Err(e) = this.condition(&pod, &message).await {
                tracing::warn!(pod = %pod.key(), error = %e, "setting PodScheduled condition");
            }
        });
    }

    /// The pod was bound or deleted: its repeat bookkeeping goes.
    pub fn forget(&self, uid: &str) {
        self.last.lock().remove(uid);
    }

    async fn event(&self, pod: &PodInfo, message: &str) -> Result<()> {
        let now = corral_api::object::now();
        let previous = self
            .last
            .lock()
            .get(&pod.uid)
            .filter(|e| e.message.as_deref() == Some(message))
            .cloned();
        if let Some(mut ev) = previous {
            ev.count = Some(ev.count.unwrap_or(1) + 1);
            ev.last_timestamp = Some(now.clone());
            match self.client.update(&ev).await {
                Ok(updated) => {
                    self.last.lock().insert(pod.uid.clone(), updated);
                    return Ok(());
                }
                // Someone removed or changed it (event TTL): start a fresh one.
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => {
                    return Err(Error::api(
                        format!("updating event for pod {:?}", pod.key()),
                        e,
                    ))
                }
            }
        }
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", pod.name, now.0.as_nanosecond() as u64)),
                namespace: Some(pod.namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                uid: Some(pod.uid.clone()),
                resource_version: Some(pod.resource_version.clone()),
                ..Default::default()
            },
            reason: Some("FailedScheduling".into()),
            message: Some(message.to_string()),
            type_: Some("Warning".into()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now.clone()),
            event_time: Some(MicroTime(now.0)),
            source: Some(EventSource {
                component: Some(COMPONENT.into()),
                host: None,
            }),
            reporting_component: Some(COMPONENT.into()),
            reporting_instance: Some(self.identity.clone()),
            action: Some("Scheduling".into()),
            ..Default::default()
        };
        let created = self
            .client
            .create(&ev)
            .await
            .map_err(|e| Error::api(format!("creating event for pod {:?}", pod.key()), e))?;
        self.last.lock().insert(pod.uid.clone(), created);
        Ok(())
    }

    async fn condition(&self, pod: &PodInfo, message: &str) -> Result<()> {
        let what = || format!("updating status of pod {:?}", pod.key());
        for _ in 0..3 {
            let Some(mut current) = self
                .client
                .get_opt::<Pod>(&pod.namespace, &pod.name)
                .await
                .map_err(|e| Error::api(what(), e))?
            else {
                return Ok(());
            };
            if current.metadata.uid.as_deref() != Some(&pod.uid)
                || current
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_ref())
                    .is_some()
            {
                return Ok(());
            }
            if !set_unschedulable(&mut current, message) {
                return Ok(());
            }
            match self.client.update_status(&current).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_conflict() => continue,
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(Error::api(what(), e)),
            }
        }
        Ok(())
    }
}

/// Sets `PodScheduled=False, reason Unschedulable`; false when it already says exactly that.
pub fn set_unschedulable(pod: &mut Pod, message: &str) -> bool {
    let status = pod.status.get_or_insert_with(Default::default);
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let want = PodCondition {
        type_: "PodScheduled".into(),
        status: "False".into(),
        reason: Some("Unschedulable".into()),
        message: Some(message.to_string()),
        last_transition_time: Some(corral_api::object::now()),
        ..Default::default()
    };
    match conditions.iter_mut().find(|c| c.type_ == "PodScheduled") {
        Some(c) if c.status == "False" && c.reason == want.reason && c.message == want.message => {
            false
        }
        Some(c) => {
            if c.status == "False" {
                // Only the message changed: keep the transition time.
                c.reason = want.reason;
                c.message = want.message;
            } else {
                *c = want;
            }
            true
        }
        None => {
            conditions.push(want);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_condition_is_set_once_per_message() {
        let mut pod = Pod::default();
        assert!(set_unschedulable(
            &mut pod,
            "0/1 nodes are available: 1 Insufficient cpu."
        ));
        assert!(!set_unschedulable(
            &mut pod,
            "0/1 nodes are available: 1 Insufficient cpu."
        ));
        assert!(set_unschedulable(
            &mut pod,
            "0/2 nodes are available: 2 Insufficient cpu."
        ));
        let c = &pod.status.unwrap().conditions.unwrap()[0];
        assert_eq!(c.status, "False");
        assert_eq!(c.reason.as_deref(), Some("Unschedulable"));
        assert_eq!(
            c.message.as_deref(),
            Some("0/2 nodes are available: 2 Insufficient cpu.")
        );
    }
}
