//! Pod Security through `corral`: warnings printed as kubectl prints them (`Warning: ...` on
//! stderr, the object still created), and a refused pod reported with Kubernetes' message.

mod common;

use common::Cluster;

const WATCHED: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: watched
  labels:
    pod-security.kubernetes.io/warn: restricted
    pod-security.kubernetes.io/enforce: baseline
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: watched
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: c
        image: busybox:1
        securityContext:
          privileged: true
"#;

const PRIVILEGED_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: p
  namespace: watched
spec:
  containers:
  - name: c
    image: busybox:1
    securityContext:
      privileged: true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_prints_pod_security_warnings_and_refusals_as_kubectl_does() {
    let c = Cluster::start().await;
    let file = c.file("watched.yaml", WATCHED);
    let out = c.corral(&["apply", "-f", &file]).await;
    assert_eq!(
        out.ok(),
        "namespace/watched created\ndeployment.apps/web created\n"
    );
    assert_eq!(
        out.stderr,
        "Warning: would violate PodSecurity \"restricted:latest\": privileged (container \"c\" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")\n"
    );

    let pod = c.file("pod.yaml", PRIVILEGED_POD);
    let err = c.corral(&["create", "-f", &pod]).await;
    assert!(
        err.failed().contains(
            r#"pods "p" is forbidden: violates PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#
        ),
        "{err:?}"
    );

    // A plain pod is admitted at baseline; tightening to restricted warns about it.
    let plain = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}});
    c.client
        .create_value(&corral_api::kinds::PODS, "watched", &plain, false)
        .await
        .expect("admitted at baseline");
    let out = c
        .corral(&[
            "label",
            "ns",
            "watched",
            "--overwrite",
            "pod-security.kubernetes.io/enforce=restricted",
        ])
        .await;
    assert_eq!(out.ok(), "namespace/watched labeled\n");
    assert_eq!(
        out.stderr,
        "Warning: existing pods in namespace \"watched\" violate the new PodSecurity enforce level \"restricted:latest\"\n\
         Warning: plain: allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile\n"
    );
}
