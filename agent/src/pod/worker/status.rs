//! Reporting: the pod's Kubernetes status computed from the records (`state::pod_status`) and
//! posted to the API server only when it differs from the last one posted.

use tracing::{debug, warn};

use super::Worker;
use crate::pod::state::{self, PodFacts};

impl Worker {
    pub(super) async fn post_status(&mut self) {
        let previous = self.last_posted.clone().or_else(|| self.pod.status.clone());
        let facts = PodFacts {
            pod_ip: self.net.as_ref().map(|n| n.ip.clone()),
            host_ip: self.ctx.node_ip.clone(),
            start_time: self.start_time,
        };
        let now = self.now();
        let status = state::pod_status(&self.pod, &self.records, &facts, previous.as_ref(), now);
        if self.last_posted.as_ref() == Some(&status) {
            return;
        }
        let mut pod = self.pod.clone();
        pod.metadata.resource_version = None;
        pod.status = Some(status.clone());
        match self.ctx.api.update_status(&pod).await {
            Ok(()) => {
                debug!(phase = ?status.phase, since_start = ?self.start_time.map(|t| self.now().duration_since(t)), "status posted");
                if status.phase.as_deref() == Some("Running") {
                    if let Some(seen) = self.seen.take() {
                        crate::metrics::global().pod_started(seen.elapsed());
                    }
                }
                self.last_posted = Some(status);
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => warn!(error = %e, "posting pod status failed"),
        }
    }
}
