//! Bad input through the CLI: each gets a clear, kubectl-shaped error, exit code 1, no panic,
//! and nothing is stored.

mod common;

use common::{cells, Cluster};
use corral_api::kinds;
use corral_api::ListParams;

async fn count(c: &Cluster, info: &corral_api::ResourceInfo) -> usize {
    c.client
        .list_value(info, "", &ListParams::default())
        .await
        .unwrap()
        .0
        .len()
}

const GOOD_NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: fine\n---\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_yaml_names_file_line_and_column_and_stores_nothing() {
    let c = Cluster::start().await;
    let before = count(&c, &kinds::NAMESPACES).await;
    let f = c.file(
        "bad.yaml",
        &format!("{GOOD_NS}apiVersion: v1\nkind: Pod\nmetadata:\n  name: [x\n"),
    );
    let out = c.corral(&["apply", "-f", &f]).await;
    let err = out.failed();
    assert!(
        err.starts_with(&format!("error: {f}: invalid YAML at line ")),
        "{err}"
    );
    assert!(err.contains("column"), "{err}");
    assert_eq!(out.stdout, "");
    assert_eq!(
        count(&c, &kinds::NAMESPACES).await,
        before,
        "the good document was not applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_name_object_and_path_and_the_whole_file_is_refused() {
    let c = Cluster::start().await;
    let f = c.file(
        "typo.yaml",
        &format!(
            "{GOOD_NS}apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: mi-app\nspec:\n  replicas: 3\n  selector:\n    matchLabels: {{app: mi-app}}\n  template:\n    metadata:\n      labels: {{app: mi-app}}\n    spec:\n      containers:\n      - name: c\n        imagen: nginx\n"
        ),
    );
    let out = c.corral(&["apply", "-f", &f]).await;
    let err = out.failed();
    assert!(err.contains("replicaset.apps \"mi-app\""), "{err}");
    assert!(
        err.contains("unknown field spec.template.spec.containers[0].imagen"),
        "{err}"
    );
    assert!(c
        .client
        .get_value(&kinds::NAMESPACES, "", "fine")
        .await
        .unwrap_err()
        .is_not_found());
    assert!(c
        .client
        .get_value(&kinds::REPLICASETS, "default", "mi-app")
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kinds_are_refused_in_manifests_and_on_the_command_line() {
    let c = Cluster::start().await;
    let f = c.file(
        "gadget.yaml",
        "apiVersion: v1\nkind: Gadget\nmetadata:\n  name: g\n",
    );
    let err = c.corral(&["apply", "-f", &f]).await.failed().to_string();
    assert!(err.contains("unknown kind \"Gadget\""), "{err}");
    let out = c.corral(&["get", "gadgets"]).await;
    assert_eq!(
        out.failed(),
        "error: the server doesn't have a resource type \"gadgets\"\n"
    );
    let out = c.corral(&["delete", "gadget", "x"]).await;
    assert_eq!(
        out.failed(),
        "error: the server doesn't have a resource type \"gadget\"\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_validation_errors_are_shown_and_nothing_is_stored() {
    let c = Cluster::start().await;
    let rs = |name: &str, replicas: i32, selector: &str, policy: &str| {
        format!(
            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {selector}}}\n  template:\n    metadata:\n      labels: {{app: mi-app}}\n    spec:\n      restartPolicy: {policy}\n      containers:\n      - name: c\n        image: nginx\n"
        )
    };
    for (file, text, needle) in [
        (
            "name.yaml",
            rs("Mi_App", 1, "mi-app", "Always"),
            "metadata.name",
        ),
        ("selector.yaml", rs("a", 1, "other", "Always"), "selector"),
        (
            "policy.yaml",
            rs("b", 1, "mi-app", "Never"),
            "restartPolicy",
        ),
        ("negative.yaml", rs("c", -1, "mi-app", "Always"), "replicas"),
    ] {
        let f = c.file(file, &text);
        let out = c.corral(&["apply", "-f", &f]).await;
        let err = out.failed();
        assert!(err.contains(needle), "{file}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(out.stdout, "", "{file}");
    }
    assert_eq!(count(&c, &kinds::REPLICASETS).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_objects_and_duplicates_read_like_kubectl() {
    let c = Cluster::start().await;
    let out = c.corral(&["get", "pod", "x"]).await;
    assert_eq!(
        out.failed(),
        "Error from server (NotFound): pods \"x\" not found\n"
    );
    let out = c.corral(&["delete", "deploy", "nope"]).await;
    assert_eq!(
        out.failed(),
        "Error from server (NotFound): deployments.apps \"nope\" not found\n"
    );
    let out = c.corral(&["describe", "svc", "nope"]).await;
    assert_eq!(
        out.failed(),
        "Error from server (NotFound): services \"nope\" not found\n"
    );
    assert_eq!(
        c.corral(&["create", "namespace", "dup"]).await.ok(),
        "namespace/dup created\n"
    );
    let out = c.corral(&["create", "namespace", "dup"]).await;
    assert_eq!(
        out.failed(),
        "Error from server (AlreadyExists): namespaces \"dup\" already exists\n"
    );
    let out = c.corral(&["scale", "--replicas=-1", "rs/x"]).await;
    assert!(out.failed().contains("must be greater than or equal to 0"));
    let out = c.corral(&["get", "pods", "-o", "xml"]).await;
    assert!(out.failed().contains("allowed formats are"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_gives_kubectls_connection_message() {
    let c = Cluster::start().await;
    // A port nobody listens on: bind, learn the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // https: the config file holds the cluster CA.
    let server = format!("https://127.0.0.1:{port}");
    let out = c.corral(&["--server", &server, "get", "pods"]).await;
    assert_eq!(
        out.failed(),
        format!("The connection to the server 127.0.0.1:{port} was refused - did you specify the right host or port?\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_a_pod_without_an_agent_fail_cleanly() {
    let c = Cluster::start().await;
    let f = c.file(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: mi-pod\nspec:\n  containers:\n  - name: c\n    image: nginx\n",
    );
    c.corral(&["apply", "-f", &f]).await.ok();
    let out = c.corral(&["logs", "mi-pod"]).await;
    let err = out.failed();
    assert!(err.starts_with("Error from server (BadRequest): "), "{err}");
    assert!(err.contains("mi-pod"), "{err}");
    let out = c.corral(&["logs", "mi-pod", "-c", "nope"]).await;
    assert_eq!(
        out.failed(),
        "error: container nope is not valid for pod mi-pod\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_namespace_reads_terminating_and_refuses_new_content_like_kubectl() {
    // No controllers: nothing empties the namespace, so it stays Terminating.
    let c = Cluster::start().await;
    assert_eq!(
        c.corral(&["create", "namespace", "old"]).await.ok(),
        "namespace/old created\n"
    );
    assert_eq!(
        c.corral(&["delete", "namespace", "old", "--wait=false"])
            .await
            .ok(),
        "namespace \"old\" deleted\n"
    );
    let out = c.corral(&["get", "ns", "old"]).await;
    assert_eq!(
        cells(out.ok().lines().nth(1).unwrap())[..2],
        ["old", "Terminating"]
    );
    let out = c
        .corral(&[
            "create",
            "configmap",
            "late",
            "-n",
            "old",
            "--from-literal=a=b",
        ])
        .await;
    assert!(
        out.failed().contains("configmaps \"late\" is forbidden: unable to create new content in namespace old because it is being terminated"),
        "{}",
        out.stderr
    );
}
