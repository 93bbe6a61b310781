//! kubectl's typed commands (`kubectl create <kind> ...`, `kubectl auth can-i`) send their
//! bodies as Kubernetes protobuf; Corral reads them into the same objects the JSON path makes,
//! with both kubectl 1.33 (the dispatcher on PATH) and 1.32 when it is installed.

use corral_tests::kubectl::{self, Kubectl};
use corral_tests::{corral, skip_unless_e2e, TestCluster};

/// `kubectl auth can-i ...`'s answer (it exits 1 on "no").
fn can_i(k: &Kubectl, args: &[&str]) -> String {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let (out, err, _) = k.run(&all);
    assert!(err.trim().is_empty(), "kubectl auth can-i: {err}");
    out.trim().to_string()
}

/// The objects each kubectl creates (names end in `v`, the kubectl's minor) and what is read
/// back from them.
fn create_and_check(k: &Kubectl, v: &str) {
    let created = |what: &str, args: &[&str]| {
        let mut all = vec!["create"];
        all.extend_from_slice(args);
        assert_eq!(k.ok(&all).trim(), format!("{what} created"), "{args:?}");
    };
    let get = |what: &str, path: &str| {
        k.ok(&["get", what, "-o", &format!("jsonpath={path}")])
            .trim()
            .to_string()
    };

    let d = format!("mi-deploy-{v}");
    created(
        &format!("deployment.apps/{d}"),
        &[
            "deployment",
            &d,
            "--image=fedek3/workshop-uns:v0.2.0",
            "--replicas=3",
            "--port=80",
        ],
    );
    assert_eq!(
        get(
            &format!("deployment/{d}"),
            "{.spec.replicas},{.spec.template.spec.containers[0].image},{.spec.template.spec.containers[0].ports[0].containerPort},{.spec.selector.matchLabels.app}"
        ),
        format!("3,fedek3/workshop-uns:v0.2.0,80,{d}")
    );
    // A pointer set to zero stays zero (not defaulted to 1 as an absent one is).
    let z = format!("zero-{v}");
    created(
        &format!("deployment.apps/{z}"),
        &["deployment", &z, "--image=nginx", "--replicas=0"],
    );
    assert_eq!(get(&format!("deployment/{z}"), "{.spec.replicas}"), "0");

    let cm = format!("cm-{v}");
    created(
        &format!("configmap/{cm}"),
        &["configmap", &cm, "--from-literal=a=b"],
    );
    assert_eq!(get(&format!("configmap/{cm}"), "{.data.a}"), "b");

    let s = format!("s-{v}");
    created(
        &format!("secret/{s}"),
        &["secret", "generic", &s, "--from-literal=k=v"],
    );
    assert_eq!(get(&format!("secret/{s}"), "{.data.k}"), "dg==");

    let svc = format!("n-{v}");
    created(
        &format!("service/{svc}"),
        &["service", "nodeport", &svc, "--tcp=80:8080"],
    );
    assert_eq!(
        get(
            &format!("service/{svc}"),
            "{.spec.type},{.spec.ports[0].port},{.spec.ports[0].targetPort}"
        ),
        "NodePort,80,8080"
    );

    let ns = format!("ns-{v}");
    created(&format!("namespace/{ns}"), &["namespace", &ns]);
    assert_eq!(get(&format!("namespace/{ns}"), "{.metadata.name}"), ns);

    let r = format!("r-{v}");
    created(
        &format!("role.rbac.authorization.k8s.io/{r}"),
        &["role", &r, "--verb=get,list", "--resource=pods"],
    );
    assert_eq!(
        get(&format!("role/{r}"), "{.rules[0].verbs}"),
        r#"["get","list"]"#
    );
    let rb = format!("rb-{v}");
    created(
        &format!("rolebinding.rbac.authorization.k8s.io/{rb}"),
        &["rolebinding", &rb, &format!("--role={r}"), "--user=alice"],
    );
    assert_eq!(
        get(
            &format!("rolebinding/{rb}"),
            "{.roleRef.kind}/{.roleRef.name},{.subjects[0].name}"
        ),
        format!("Role/{r},alice")
    );

    let cr = format!("cr-{v}");
    created(
        &format!("clusterrole.rbac.authorization.k8s.io/{cr}"),
        &["clusterrole", &cr, "--verb=get", "--resource=nodes"],
    );
    let crb = format!("crb-{v}");
    created(
        &format!("clusterrolebinding.rbac.authorization.k8s.io/{crb}"),
        &[
            "clusterrolebinding",
            &crb,
            &format!("--clusterrole={cr}"),
            "--group=ops",
        ],
    );
    assert_eq!(
        get(
            &format!("clusterrolebinding/{crb}"),
            "{.roleRef.name},{.subjects[0].kind}/{.subjects[0].name}"
        ),
        format!("{cr},Group/ops")
    );

    let ing = format!("ing-{v}");
    created(
        &format!("ingress.networking.k8s.io/{ing}"),
        &[
            "ingress",
            &ing,
            &format!("--rule=foo.com/bar=svc1:8080,tls=cert-{v}"),
        ],
    );
    assert_eq!(
        get(
            &format!("ingress/{ing}"),
            "{.spec.rules[0].host}{.spec.rules[0].http.paths[0].path},{.spec.rules[0].http.paths[0].pathType},{.spec.rules[0].http.paths[0].backend.service.port.number},{.spec.tls[0].secretName}"
        ),
        format!("foo.com/bar,Exact,8080,cert-{v}")
    );

    assert_eq!(can_i(k, &["get", "pods"]), "yes");
    assert_eq!(can_i(k, &["create", "deployments.apps", "-n", &ns]), "yes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_and_auth_can_i_send_protobuf_that_corral_reads() {
    skip_unless_e2e!();
    let Some(bin) = kubectl::on_path() else {
        eprintln!("SKIPPED: kubectl is not installed");
        return;
    };
    let cluster = TestCluster::create("kcreate", 0).await;
    let admin = cluster
        .state
        .layout
        .dir
        .join("controlplane")
        .join("admin.kubeconfig");

    create_and_check(&Kubectl::new(&bin, &admin), "133");
    if let Some(v132) = kubectl::v1_32() {
        create_and_check(&Kubectl::new(&v132, &admin), "132");
    } else {
        eprintln!("kubectl 1.32 is not installed: only the PATH kubectl was run");
    }

    // A user who may only view: the access review answers "no", and a protobuf create is
    // refused by the same authorization as a JSON one. (Corral does not impersonate, so this
    // is a real user's kubeconfig rather than `--as`.)
    let dir = tempfile::tempdir().expect("temp dir");
    let viewer_config = dir.path().join("viewer.kubeconfig");
    let (out, err, ok) = corral(
        &cluster.server(),
        &[
            "config",
            "create-user",
            "viewer",
            "--role",
            "view",
            "--output-file",
            viewer_config.to_str().expect("utf-8 path"),
        ],
    );
    assert!(ok, "corral config create-user: {out}\n{err}");
    let viewer = Kubectl::new(&bin, &viewer_config);
    assert_eq!(can_i(&viewer, &["get", "pods"]), "yes");
    assert_eq!(can_i(&viewer, &["create", "deployments.apps"]), "no");
    let (_, err, ok) = viewer.run(&["create", "configmap", "nope", "--from-literal=a=b"]);
    assert!(
        !ok && err.contains(
            r#"configmaps is forbidden: User "viewer" cannot create resource "configmaps""#
        ),
        "{err}"
    );
}
