//! The real kubectl reads Corral's OpenAPI: `kubectl explain` (kubectl v1.33 through the
//! dispatcher on PATH, v1.32 when present, and Debian's v1.20 reading `/openapi/v2`) prints
//! Kubernetes' descriptions and types, kubectl v1.20 validates against the v2 definitions, and
//! `fieldValidation` answers as kube-apiserver does (Strict's error wording, Warn's warnings).

use corral_tests::kubectl::{self, Kubectl};
use corral_tests::{skip_unless_e2e, TestCluster};

/// A pod with a field no Kubernetes type has.
const BAD_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers:\n  - name: c\n    image: busybox\n    bogus: 1\n";

/// What `kubectl explain` must print for Corral as it does for Kubernetes.
fn explains_as_kubernetes(k: &Kubectl) {
    let deploy = k.ok(&["explain", "deployment"]);
    for want in [
        "GROUP:      apps",
        "KIND:       Deployment",
        "VERSION:    v1",
        "Deployment enables declarative updates for Pods and ReplicaSets.",
        "spec\t<DeploymentSpec>",
    ] {
        assert!(deploy.contains(want), "{want:?} missing:\n{deploy}");
    }
    let containers = k.ok(&["explain", "deployment.spec.template.spec.containers"]);
    for want in [
        "FIELD: containers <[]Container>",
        "List of containers belonging to the pod.",
        "image\t<string>",
        "resources\t<ResourceRequirements>",
    ] {
        assert!(containers.contains(want), "{want:?} missing:\n{containers}");
    }
    let recursive = k.ok(&["explain", "pod.spec", "--recursive"]);
    for want in [
        "FIELD: spec <PodSpec>",
        "  containers\t<[]Container> -required-",
        "    image\t<string>",
        "      limits\t<map[string]Quantity>",
    ] {
        assert!(recursive.contains(want), "{want:?} missing:\n{recursive}");
    }
    let surge = k.ok(&["explain", "deploy.spec.strategy.rollingUpdate.maxSurge"]);
    assert!(surge.contains("FIELD: maxSurge <IntOrString>"), "{surge}");
    let (_, err, found) = k.run(&["explain", "pod.spec.bogus"]);
    assert!(
        !found && err.contains("field \"bogus\" does not exist"),
        "{err}"
    );
}

#[tokio::test]
async fn kubectl_explains_kinds_and_field_validation_answers_as_kube_apiserver() {
    skip_unless_e2e!();
    let Some(bin) = kubectl::on_path() else {
        eprintln!("SKIPPED: kubectl is not installed");
        return;
    };
    let cluster = TestCluster::create("kexplain", 0).await;
    let admin = cluster
        .state
        .layout
        .dir
        .join("controlplane")
        .join("admin.kubeconfig");
    let k = Kubectl::new(&bin, &admin);
    explains_as_kubernetes(&k);
    if let Some(v132) = kubectl::v1_32() {
        let k132 = Kubectl::new(&v132, &admin);
        assert!(k132.ok(&["version", "--client"]).contains("v1.32"));
        explains_as_kubernetes(&k132);
    } else {
        eprintln!("SKIPPED (v1.32 step): {} is not installed", kubectl::V1_32);
    }

    // kubectl v1.20 reads /openapi/v2 (protobuf): explain, and its client-side validation.
    match kubectl::v1_20() {
        None => eprintln!("SKIPPED (v1.20 step): Debian's kubectl v1.20 is not available"),
        Some(bin) => {
            let old = Kubectl::new(&bin, &admin);
            let out = old.ok(&["explain", "deployment.spec.template.spec.containers"]);
            for want in [
                "RESOURCE: containers <[]Object>",
                "List of containers belonging to the pod.",
                "image\t<string>",
            ] {
                assert!(out.contains(want), "{want:?} missing:\n{out}");
            }
            let bad = old.home.path().join("bad.yaml");
            std::fs::write(&bad, BAD_POD).expect("write manifest");
            let (_, err, created) = old.run(&["apply", "-f", bad.to_str().expect("utf-8 path")]);
            assert!(!created);
            assert!(
                err.contains("ValidationError(Pod.spec.containers[0]): unknown field \"bogus\" in io.k8s.api.core.v1.Container"),
                "{err}"
            );
        }
    }

    // Strict (kubectl's default, since the PATCH operations take fieldValidation): refused
    // in kube-apiserver's words.
    let bad = k.home.path().join("bad.yaml");
    std::fs::write(&bad, BAD_POD).expect("write manifest");
    let path = bad.to_str().expect("utf-8 path");
    let (_, err, created) = k.run(&["apply", "-f", path]);
    assert!(!created);
    assert_eq!(
        err.trim(),
        format!("Error from server (BadRequest): error when creating {path:?}: Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.containers[0].bogus\"")
    );

    // Warn: created without the field, and kubectl prints the server's warning.
    let (out, err, created) = k.run(&["apply", "--validate=warn", "-f", path]);
    assert!(created, "{out}\n{err}");
    assert!(
        err.contains("Warning: unknown field \"spec.containers[0].bogus\""),
        "{err}"
    );
    let stored = k.ok(&["get", "pod", "bad", "-o", "jsonpath={.spec.containers[0]}"]);
    assert!(!stored.contains("bogus"), "{stored}");

    // Ignore (--validate=false): silently.
    let quiet = k.home.path().join("quiet.yaml");
    let text = std::fs::read_to_string(&bad).expect("read manifest");
    std::fs::write(&quiet, text.replace("name: bad", "name: quiet")).expect("write manifest");
    let quiet = quiet.to_str().expect("utf-8 path");
    let (out, err, created) = k.run(&["create", "--validate=false", "-f", quiet]);
    assert!(created && !err.contains("Warning"), "{out}\n{err}");
}
