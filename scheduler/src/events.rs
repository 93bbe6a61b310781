//! Telling users why a pod waits: a `FailedScheduling` Warning event on the pod (repeats of the
//! same message bump the event's count, as kubectl shows `(x5 over 3m)`) and the pod's
//! `PodScheduled` condition set to False with reason Unschedulable.

use std::sync::Arc;

use corral_api::k8s::api::core::v1::{ObjectReference, Pod, PodCondition};
use corral_api::runtime::recorder::{self, Reporter};
use corral_api::Client;

use crate::podinfo::PodInfo;
use crate::{Error, Result};

pub const COMPONENT: &str = "default-scheduler";

pub struct Recorder {
    client: Client,
    events: recorder::Recorder,
}

impl Recorder {
    pub fn new(client: Client, identity: &str) -> Arc<Self> {
        let reporter = Reporter {
            instance: Some(identity.to_string()),
            ..Reporter::new(COMPONENT)
        };
        Arc::new(Recorder {
            events: recorder::Recorder::new(client.clone(), reporter),
            client,
        })
    }

    /// Records in the background, so the scheduling loop never waits on it.
    pub fn failed_scheduling(self: &Arc<Self>, pod: Arc<PodInfo>, message: String) {
        self.events.record(
            &regarding(&pod),
            recorder::WARNING,
            "FailedScheduling",
            &message,
            Some("Scheduling"),
        );
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.condition(&pod, &message).await {
                tracing::warn!(pod = %pod.key(), error = %e, "setting PodScheduled condition");
            }
        });
    }

    /// kube-scheduler's Normal `Scheduled` event once the binding is written.
    /// The pod was bound to `node`; `at` is when its bind was sent, so the event comes before
    /// anything the node does with the pod (which sees it only once the bind is stored).
    pub fn scheduled(
        &self,
        pod: &PodInfo,
        node: &str,
        at: corral_api::k8s::apimachinery::pkg::apis::meta::v1::Time,
    ) {
        self.events.record_at(
            &regarding(pod),
            recorder::NORMAL,
            "Scheduled",
            &scheduled_message(&pod.namespace, &pod.name, node),
            Some("Binding"),
            at,
        );
    }

    /// The pod was bound or deleted: its repeat bookkeeping goes.
    pub fn forget(&self, uid: &str) {
        self.events.forget(uid);
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

fn regarding(pod: &PodInfo) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(pod.name.clone()),
        namespace: Some(pod.namespace.clone()),
        uid: Some(pod.uid.clone()),
        resource_version: Some(pod.resource_version.clone()),
        ..Default::default()
    }
}

/// kube-scheduler's words for a bind (schedule_one.go).
pub fn scheduled_message(namespace: &str, name: &str, node: &str) -> String {
    format!("Successfully assigned {namespace}/{name} to {node}")
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
    fn a_bind_is_reported_in_kube_schedulers_words() {
        assert_eq!(
            scheduled_message("default", "web-0", "node-1"),
            "Successfully assigned default/web-0 to node-1"
        );
    }

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
