//! Events the agent records on its pods, shaped like kubelet's (source `kubelet` on this
//! host, `involvedObject.fieldPath` naming the container), so `describe` shows them. Posting
//! happens in the background: a pod worker never waits on it.

use corral_api::runtime::recorder::{Recorder, Reporter, NORMAL, WARNING};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};

const COMPONENT: &str = "kubelet";

/// kubelet's reasons (pkg/kubelet/events/event.go).
pub mod reason {
    pub const CREATED: &str = "Created";
    pub const STARTED: &str = "Started";
    pub const FAILED: &str = "Failed";
    pub const KILLING: &str = "Killing";
    pub const BACK_OFF: &str = "BackOff";
    pub const PULLING: &str = "Pulling";
    pub const PULLED: &str = "Pulled";
    pub const FAILED_MOUNT: &str = "FailedMount";
    pub const UNHEALTHY: &str = "Unhealthy";
}

/// kubelet's messages, word for word (its image manager and kuberuntime).
pub mod message {
    use std::time::Duration;

    pub fn pulling(image: &str) -> String {
        format!("Pulling image {image:?}")
    }
    pub fn already_present(image: &str) -> String {
        format!("Container image {image:?} already present on machine")
    }
    pub fn pulled(image: &str, took: Duration) -> String {
        format!("Successfully pulled image {image:?} in {took:?} ({took:?} including waiting)")
    }
    pub fn pull_failed(image: &str, error: &str) -> String {
        format!("Failed to pull image {image:?}: {error}")
    }
    pub fn pull_back_off(image: &str) -> String {
        format!("Back-off pulling image {image:?}")
    }
    pub fn created(container: &str) -> String {
        format!("Created container: {container}")
    }
    pub fn started(container: &str) -> String {
        format!("Started container {container}")
    }
    pub fn stopping(container: &str) -> String {
        format!("Stopping container {container}")
    }
    /// `pod` as kubelet's `format.Pod`: `name_namespace(uid)`.
    pub fn back_off(container: &str, name: &str, namespace: &str, uid: &str) -> String {
        format!("Back-off restarting failed container {container} in pod {name}_{namespace}({uid})")
    }
    /// A failed attempt, as kubelet's `Error: ...` event after CreateContainerConfigError and
    /// the like.
    pub fn error(message: &str) -> String {
        format!("Error: {message}")
    }
    /// kubelet's prober, on every failed attempt: `Liveness probe failed: ...`.
    pub fn probe_failed(kind: crate::probe::Kind, output: &str) -> String {
        let probe = match kind {
            crate::probe::Kind::Liveness => "Liveness",
            crate::probe::Kind::Readiness => "Readiness",
            crate::probe::Kind::Startup => "Startup",
        };
        format!("{probe} probe failed: {output}")
    }
    /// kubelet's kill after liveness or startup gave up (`what`: `liveness`, `startup`).
    pub fn failed_probe_kill(container: &str, what: &str) -> String {
        format!("Container {container} failed {what} probe, will be restarted")
    }
}

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

    /// A Warning about the pod itself (FailedMount: no fieldPath, as kubelet's).
    pub fn pod_warning(&self, reason: &str, message: &str) {
        self.recorder
            .record(&self.pod, WARNING, reason, message, None);
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
