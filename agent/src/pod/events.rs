//! Events the agent records on its pods, shaped like kubelet's (source `kubelet` on this
//! host, `involvedObject.fieldPath` naming the container), so `describe` shows them. Posting
//! happens in the background: a pod worker never waits on it.

use corral_api::runtime::recorder::{Recorder, Reporter, NORMAL, WARNING};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};

const COMPONENT: &str = "kubelet";

/// The reporter of a node's events: `kubelet` on this host.
pub fn reporter(node: &str) -> Reporter {
    Reporter {
        host: Some(node.to_string()),
        instance: Some(node.to_string()),
        ..Reporter::new(COMPONENT)
    }
}

/// Records events on one pod through the node's recorder.
#[derive(Clone)]
pub struct PodEvents {
    recorder: Recorder,
    pod: ObjectReference,
}

impl PodEvents {
    pub fn new(recorder: &Recorder, pod: &Pod) -> Self {
        PodEvents {
            recorder: recorder.clone(),
            pod: corral_api::runtime::recorder::reference(pod),
        }
    }

    /// A Warning about one container of the pod.
    pub fn warning(&self, container: &str, reason: &str, message: &str) {
        self.record(container, WARNING, reason, message);
    }

    /// A Normal event about one container of the pod.
    pub fn normal(&self, container: &str, reason: &str, message: &str) {
        self.record(container, NORMAL, reason, message);
    }

    fn record(&self, container: &str, type_: &str, reason: &str, message: &str) {
        let regarding = ObjectReference {
            field_path: Some(format!("spec.containers{{{container}}}")),
            ..self.pod.clone()
        };
        self.recorder
            .record(&regarding, type_, reason, message, None);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::pod::api::fake::FakePodApi;

    #[tokio::test]
    async fn container_events_name_the_pod_and_the_container_like_kubelet() {
        let api = Arc::new(FakePodApi::default());
        let recorder = Recorder::with_sink(api.clone(), reporter("node-1"));
        let mut pod = Pod::default();
        pod.metadata.name = Some("web".into());
        pod.metadata.namespace = Some("default".into());
        pod.metadata.uid = Some("u1".into());
        let events = PodEvents::new(&recorder, &pod);
        events.warning("app", "FailedPreStopHook", "PreStopHook failed");
        events.warning("app", "FailedPreStopHook", "PreStopHook failed");
        let wait = api.wait_for(|c| (c.events.len() == 2).then(|| c.events.clone()));
        let written = tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .expect("two writes");
        let ev = &written[1];
        assert_eq!(
            written[0].metadata.name, ev.metadata.name,
            "a repeat bumps one event"
        );
        assert_eq!(ev.count, Some(2));
        assert!(ev.metadata.name.clone().unwrap().starts_with("web."));
        assert_eq!(ev.metadata.namespace.as_deref(), Some("default"));
        let o = &ev.involved_object;
        assert_eq!(o.kind.as_deref(), Some("Pod"));
        assert_eq!(o.uid.as_deref(), Some("u1"));
        assert_eq!(o.field_path.as_deref(), Some("spec.containers{app}"));
        assert_eq!(ev.source.clone().unwrap().host.as_deref(), Some("node-1"));
        assert_eq!(ev.type_.as_deref(), Some("Warning"));
    }
}
