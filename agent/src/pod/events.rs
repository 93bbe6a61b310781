//! Events the agent records on its pods, shaped like kubelet's (source `kubelet` on this
//! host, `involvedObject.fieldPath` naming the container), so `describe` shows them. Posting
//! happens in the background: a pod worker never waits on it.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use tracing::warn;

use super::api::PodApi;

const COMPONENT: &str = "kubelet";

/// Records events on one pod.
#[derive(Clone)]
pub struct PodEvents {
    api: Arc<dyn PodApi>,
    node: String,
    pod: ObjectReference,
}

impl PodEvents {
    pub fn new(api: Arc<dyn PodApi>, node: &str, pod: &Pod) -> Self {
        PodEvents {
            api,
            node: node.to_string(),
            pod: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                namespace: pod.metadata.namespace.clone(),
                uid: pod.metadata.uid.clone(),
                resource_version: pod.metadata.resource_version.clone(),
                ..Default::default()
            },
        }
    }

    /// A Warning about one container of the pod.
    pub fn warning(&self, container: &str, reason: &str, message: &str) {
        self.record(container, "Warning", reason, message);
    }

    /// A Normal event about one container of the pod.
    pub fn normal(&self, container: &str, reason: &str, message: &str) {
        self.record(container, "Normal", reason, message);
    }

    fn record(&self, container: &str, type_: &str, reason: &str, message: &str) {
        let ev = self.event(container, type_, reason, message);
        let api = self.api.clone();
        tokio::spawn(async move {
            if let Err(e) = api.create_event(&ev).await {
                warn!(reason = ev.reason.as_deref().unwrap_or(""), error = %e, "recording event failed");
            }
        });
    }

    fn event(&self, container: &str, type_: &str, reason: &str, message: &str) -> Event {
        let now = corral_api::object::now();
        let pod_name = self.pod.name.clone().unwrap_or_default();
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{pod_name}.{:x}", now.0.as_nanosecond() as u64)),
                namespace: self.pod.namespace.clone(),
                ..Default::default()
            },
            involved_object: ObjectReference {
                field_path: Some(format!("spec.containers{{{container}}}")),
                ..self.pod.clone()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(type_.into()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now.clone()),
            event_time: Some(MicroTime(now.0)),
            source: Some(EventSource {
                component: Some(COMPONENT.into()),
                host: Some(self.node.clone()),
            }),
            reporting_component: Some(COMPONENT.into()),
            reporting_instance: Some(self.node.clone()),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn container_events_name_the_pod_and_the_container_like_kubelet() {
        // Building an event does no I/O: the API is never called.
        let api = Arc::new(crate::pod::api::fake::FakePodApi::default());
        let mut pod = Pod::default();
        pod.metadata.name = Some("web".into());
        pod.metadata.namespace = Some("default".into());
        pod.metadata.uid = Some("u1".into());
        let ev = PodEvents::new(api, "node-1", &pod).event(
            "app",
            "Warning",
            "FailedPreStopHook",
            "PreStopHook failed",
        );
        assert!(ev.metadata.name.unwrap().starts_with("web."));
        assert_eq!(ev.metadata.namespace.as_deref(), Some("default"));
        let o = &ev.involved_object;
        assert_eq!(o.kind.as_deref(), Some("Pod"));
        assert_eq!(o.uid.as_deref(), Some("u1"));
        assert_eq!(o.field_path.as_deref(), Some("spec.containers{app}"));
        assert_eq!(ev.source.unwrap().host.as_deref(), Some("node-1"));
        assert_eq!(ev.type_.as_deref(), Some("Warning"));
    }
}
