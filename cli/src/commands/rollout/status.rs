//! kubectl's rollout status viewers: pure functions from an object to (message, done).

use corral_api::k8s::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use corral_api::kinds::ResourceInfo;
use serde_json::Value;

/// kubectl's `DeploymentStatusViewer`: (message, done) or an error.
pub fn deployment_status(d: &Deployment) -> std::result::Result<(String, bool), String> {
    let name = d.metadata.name.clone().unwrap_or_default();
    let st = d.status.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    if generation > st.observed_generation.unwrap_or(0) {
        return Ok((
            "Waiting for deployment spec update to be observed...".into(),
            false,
        ));
    }
    let progressing = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing");
    if progressing.is_some_and(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded")) {
        return Err(format!(
            "deployment {name:?} exceeded its progress deadline"
        ));
    }
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = st.updated_replicas.unwrap_or(0);
    let replicas = st.replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    if updated < desired {
        return Ok((format!("Waiting for deployment {name:?} rollout to finish: {updated} out of {desired} new replicas have been updated..."), false));
    }
    if replicas > updated {
        return Ok((format!("Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...", replicas - updated), false));
    }
    if available < updated {
        return Ok((format!("Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."), false));
    }
    Ok((format!("deployment {name:?} successfully rolled out"), true))
}

pub fn daemonset_status(ds: &DaemonSet) -> std::result::Result<(String, bool), String> {
    let name = ds.metadata.name.clone().unwrap_or_default();
    let strategy = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.clone())
        .unwrap_or_else(|| "RollingUpdate".into());
    if strategy != "RollingUpdate" {
        return Err("rollout status is only available for RollingUpdate strategy type".into());
    }
    let st = ds.status.clone().unwrap_or_default();
    if ds.metadata.generation.unwrap_or(0) > st.observed_generation.unwrap_or(0) {
        return Ok((
            "Waiting for daemon set spec update to be observed...".into(),
            false,
        ));
    }
    let desired = st.desired_number_scheduled;
    let updated = st.updated_number_scheduled.unwrap_or(0);
    let available = st.number_available.unwrap_or(0);
    if updated < desired {
        return Ok((format!("Waiting for daemon set {name:?} rollout to finish: {updated} out of {desired} new pods have been updated..."), false));
    }
    if available < desired {
        return Ok((format!("Waiting for daemon set {name:?} rollout to finish: {available} of {desired} updated pods are available..."), false));
    }
    Ok((format!("daemon set {name:?} successfully rolled out"), true))
}

pub fn statefulset_status(sts: &StatefulSet) -> std::result::Result<(String, bool), String> {
    let spec = sts.spec.clone().unwrap_or_default();
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    if strategy.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return Err("rollout status is only available for RollingUpdate strategy type".into());
    }
    let st = sts.status.clone().unwrap_or_default();
    let observed = st.observed_generation.unwrap_or(0);
    if observed == 0 || sts.metadata.generation.unwrap_or(0) > observed {
        return Ok((
            "Waiting for statefulset spec update to be observed...".into(),
            false,
        ));
    }
    let replicas = spec.replicas.unwrap_or(1);
    let ready = st.ready_replicas.unwrap_or(0);
    if ready < replicas {
        return Ok((
            format!("Waiting for {} pods to be ready...", replicas - ready),
            false,
        ));
    }
    let updated = st.updated_replicas.unwrap_or(0);
    if let Some(partition) = strategy.rolling_update.as_ref().and_then(|r| r.partition) {
        if updated < replicas - partition {
            return Ok((format!("Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...", replicas - partition), false));
        }
        return Ok((
            format!("partitioned roll out complete: {updated} new pods have been updated..."),
            true,
        ));
    }
    let update_rev = st.update_revision.clone().unwrap_or_default();
    let current_rev = st.current_revision.clone().unwrap_or_default();
    if update_rev != current_rev {
        return Ok((format!("waiting for statefulset rolling update to complete {updated} pods at revision {update_rev}..."), false));
    }
    Ok((
        format!(
            "statefulset rolling update complete {} pods at revision {current_rev}...",
            st.current_replicas.unwrap_or(0)
        ),
        true,
    ))
}

pub(super) fn status_of(
    info: &ResourceInfo,
    obj: &Value,
) -> std::result::Result<(String, bool), String> {
    let conv = |e: serde_json::Error| e.to_string();
    match info.plural {
        "deployments" => deployment_status(&serde_json::from_value(obj.clone()).map_err(conv)?),
        "daemonsets" => daemonset_status(&serde_json::from_value(obj.clone()).map_err(conv)?),
        "statefulsets" => statefulset_status(&serde_json::from_value(obj.clone()).map_err(conv)?),
        _ => Err(format!(
            "no status viewer has been implemented for {}",
            info.kind
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(generation: i64, status: Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "mi-deploy", "generation": generation},
            "spec": {"replicas": 3, "selector": {}, "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn deployment_status_messages_follow_kubectl() {
        let cases = [
            (2, json!({"observedGeneration": 1}), "Waiting for deployment spec update to be observed...", false),
            (1, json!({"observedGeneration": 1, "updatedReplicas": 1, "replicas": 3}),
             "Waiting for deployment \"mi-deploy\" rollout to finish: 1 out of 3 new replicas have been updated...", false),
            (1, json!({"observedGeneration": 1, "updatedReplicas": 3, "replicas": 4}),
             "Waiting for deployment \"mi-deploy\" rollout to finish: 1 old replicas are pending termination...", false),
            (1, json!({"observedGeneration": 1, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 1}),
             "Waiting for deployment \"mi-deploy\" rollout to finish: 1 of 3 updated replicas are available...", false),
            (1, json!({"observedGeneration": 1, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3}),
             "deployment \"mi-deploy\" successfully rolled out", true),
        ];
        for (generation, status, want, done) in cases {
            assert_eq!(
                deployment_status(&deploy(generation, status)).unwrap(),
                (want.to_string(), done)
            );
        }
        let stuck = deploy(
            1,
            json!({"observedGeneration": 1, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
        );
        assert!(deployment_status(&stuck)
            .unwrap_err()
            .contains("exceeded its progress deadline"));
    }

    #[test]
    fn daemonset_status_messages_follow_kubectl() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "mi-app", "generation": 1},
            "spec": {"selector": {}, "template": {}},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 4, "currentNumberScheduled": 4,
                       "numberReady": 2, "numberMisscheduled": 0, "updatedNumberScheduled": 4, "numberAvailable": 2}
        }))
        .unwrap();
        assert_eq!(
            daemonset_status(&ds).unwrap().0,
            "Waiting for daemon set \"mi-app\" rollout to finish: 2 of 4 updated pods are available..."
        );
    }
}
