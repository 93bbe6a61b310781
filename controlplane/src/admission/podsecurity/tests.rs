//! Table tests: one row per check of the standard, passing and failing, with Kubernetes'
//! wording; then the namespace labels.

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{json, Value};

use super::*;

/// A pod that passes `restricted`, with `patch` merged over it (objects merge, arrays and
/// scalars replace; `null` removes).
fn pod(patch: Value) -> (ObjectMeta, PodSpec) {
    let mut base = json!({
        "metadata": {"name": "p"},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "busybox",
                "securityContext": {"allowPrivilegeEscalation": false,
                                    "capabilities": {"drop": ["ALL"]}}}]
        }
    });
    merge(&mut base, patch);
    (
        serde_json::from_value(base["metadata"].clone()).expect("metadata"),
        serde_json::from_value(base["spec"].clone()).expect("spec"),
    )
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p,
    }
}

fn violations(level: Level, patch: Value) -> String {
    let (meta, spec) = pod(patch);
    check(level, &meta, &spec)
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn container(security: Value) -> Value {
    json!({"containers": [{"name": "c", "image": "busybox", "securityContext": security}]})
}

const RESTRICTED_OK: &str =
    r#"{"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}"#;

fn restricted_container(extra: Value) -> Value {
    let mut sc: Value = serde_json::from_str(RESTRICTED_OK).expect("json");
    merge(&mut sc, extra);
    json!({"spec": container(sc)})
}

#[test]
fn each_baseline_check_passes_the_default_pod_and_fails_its_field() {
    let rows: Vec<(&str, Value, &str)> = vec![
        ("plain pod", json!({}), ""),
        (
            "host namespaces",
            json!({"spec": {"hostNetwork": true, "hostPID": true, "hostIPC": false}}),
            "host namespaces (hostNetwork=true, hostPID=true)",
        ),
        (
            "privileged",
            restricted_container(json!({"privileged": true})),
            r#"privileged (container "c" must not set securityContext.privileged=true)"#,
        ),
        (
            "privileged=false",
            restricted_container(json!({"privileged": false})),
            "",
        ),
        (
            "capabilities beyond the default set",
            json!({"spec": container(json!({"capabilities": {"add": ["NET_ADMIN", "CHOWN", "SYS_ADMIN"]}}))}),
            r#"non-default capabilities (container "c" must not include "NET_ADMIN", "SYS_ADMIN" in securityContext.capabilities.add)"#,
        ),
        (
            "default capabilities",
            json!({"spec": container(json!({"capabilities": {"add": ["CHOWN", "KILL"]}}))}),
            "",
        ),
        (
            "hostPath volumes",
            json!({"spec": {"volumes": [{"name": "root", "hostPath": {"path": "/"}}, {"name": "e", "emptyDir": {}}]}}),
            r#"hostPath volumes (volume "root")"#,
        ),
        (
            "host ports",
            json!({"spec": {"containers": [{"name": "c", "image": "b", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}),
            r#"hostPort (container "c" uses hostPort 8080)"#,
        ),
        (
            "container ports without host ports",
            json!({"spec": {"containers": [{"name": "c", "image": "b", "ports": [{"containerPort": 80}]}]}}),
            "",
        ),
        (
            "windows host process",
            json!({"spec": {"securityContext": {"windowsOptions": {"hostProcess": true}}}}),
            "hostProcess (pod must not set securityContext.windowsOptions.hostProcess=true)",
        ),
        (
            "unmasked /proc",
            restricted_container(json!({"procMount": "Unmasked"})),
            r#"procMount (container "c" must not set securityContext.procMount to "Unmasked")"#,
        ),
        (
            "default /proc",
            restricted_container(json!({"procMount": "Default"})),
            "",
        ),
        (
            "AppArmor unconfined annotation",
            json!({"metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}}}),
            r#"forbidden AppArmor profile (annotation "container.apparmor.security.beta.kubernetes.io/c"="unconfined")"#,
        ),
        (
            "AppArmor unconfined field",
            json!({"spec": {"securityContext": {"appArmorProfile": {"type": "Unconfined"}}}}),
            r#"forbidden AppArmor profile (pod must not set securityContext.appArmorProfile.type to "Unconfined")"#,
        ),
        (
            "AppArmor runtime default",
            json!({"metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/c": "runtime/default"}},
                   "spec": {"securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}}}}),
            "",
        ),
        (
            "SELinux type and user",
            json!({"spec": {"securityContext": {"seLinuxOptions": {"type": "spc_t", "user": "root"}}}}),
            r#"seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: type "spc_t"; user "root")"#,
        ),
        (
            "SELinux container type and level",
            json!({"spec": {"securityContext": {"seLinuxOptions": {"type": "container_t", "level": "s0:c1"}}}}),
            "",
        ),
        (
            "seccomp unconfined",
            restricted_container(json!({"seccompProfile": {"type": "Unconfined"}})),
            r#"seccompProfile (container "c" must not set securityContext.seccompProfile.type to "Unconfined")"#,
        ),
        (
            "unsafe sysctls",
            json!({"spec": {"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}, {"name": "net.ipv4.tcp_syncookies", "value": "1"}]}}}),
            "forbidden sysctls (kernel.msgmax)",
        ),
    ];
    for (what, patch, want) in rows {
        // Baseline rows start from a plain (not restricted) pod so only the row's field counts.
        let mut plain = json!({"spec": {"securityContext": null, "containers": [{"name": "c", "image": "busybox"}]}});
        merge(&mut plain, patch);
        assert_eq!(violations(Level::Baseline, plain.clone()), want, "{what}");
        assert_eq!(
            violations(Level::Privileged, plain),
            "",
            "{what}: privileged allows all"
        );
    }
}

#[test]
fn each_restricted_check_passes_the_hardened_pod_and_fails_its_field() {
    let rows: Vec<(&str, Value, &str)> = vec![
        ("hardened pod", json!({}), ""),
        (
            "allowPrivilegeEscalation unset",
            json!({"spec": container(json!({"capabilities": {"drop": ["ALL"]}}))}),
            r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false)"#,
        ),
        (
            "capabilities not dropped",
            json!({"spec": container(json!({"allowPrivilegeEscalation": false}))}),
            r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"])"#,
        ),
        (
            "a default capability added",
            restricted_container(json!({"capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}})),
            r#"unrestricted capabilities (container "c" must not include "CHOWN" in securityContext.capabilities.add)"#,
        ),
        (
            "NET_BIND_SERVICE added",
            restricted_container(
                json!({"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}),
            ),
            "",
        ),
        (
            "runAsNonRoot unset",
            json!({"spec": {"securityContext": {"runAsNonRoot": null}}}),
            r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true)"#,
        ),
        (
            "runAsNonRoot on the container only",
            json!({"spec": {"securityContext": {"runAsNonRoot": null},
                            "containers": [{"name": "c", "image": "b", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": true}}]}}),
            "",
        ),
        (
            "runAsNonRoot false on a container",
            restricted_container(json!({"runAsNonRoot": false})),
            r#"runAsNonRoot != true (container "c" must not set securityContext.runAsNonRoot=false)"#,
        ),
        (
            "runAsUser 0",
            json!({"spec": {"securityContext": {"runAsUser": 0}}}),
            "runAsUser=0 (pod must not set runAsUser=0)",
        ),
        (
            "runAsUser 1000",
            json!({"spec": {"securityContext": {"runAsUser": 1000}}}),
            "",
        ),
        (
            "no seccomp profile",
            json!({"spec": {"securityContext": {"seccompProfile": null}}}),
            r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#,
        ),
        (
            "seccomp on the container",
            json!({"spec": {"securityContext": {"seccompProfile": null},
                            "containers": [{"name": "c", "image": "b", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}}]}}),
            "",
        ),
        (
            "restricted volume types replace the hostPath check",
            json!({"spec": {"volumes": [{"name": "root", "hostPath": {"path": "/"}}, {"name": "n", "nfs": {"server": "s", "path": "/"}},
                                        {"name": "ok", "configMap": {"name": "c"}}]}}),
            r#"restricted volume types (volumes "root", "n" use restricted volume types "hostPath", "nfs")"#,
        ),
        (
            "allowed volume types",
            json!({"spec": {"volumes": [{"name": "a", "emptyDir": {}}, {"name": "b", "secret": {"secretName": "s"}},
                                        {"name": "c", "persistentVolumeClaim": {"claimName": "x"}}, {"name": "d", "projected": {"sources": []}}]}}),
            "",
        ),
        (
            "baseline still applies",
            json!({"spec": {"hostNetwork": true}}),
            "host namespaces (hostNetwork=true)",
        ),
    ];
    for (what, patch, want) in rows {
        assert_eq!(violations(Level::Restricted, patch.clone()), want, "{what}");
    }
}

#[test]
fn violations_are_listed_in_kubernetes_order_in_one_message() {
    let (meta, spec) = pod(json!({"spec": {
        "hostNetwork": true,
        "securityContext": null,
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
        "containers": [{"name": "c", "image": "b", "securityContext": {"privileged": true}}]
    }}));
    let policy = Policy::latest(Level::Baseline);
    let found = check(Level::Baseline, &meta, &spec);
    assert_eq!(
        message(policy, &found, false),
        r#"violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true), hostPath volumes (volume "root"), privileged (container "c" must not set securityContext.privileged=true)"#
    );
    let (meta, spec) = pod(
        json!({"spec": {"securityContext": null, "containers": [{"name": "c", "image": "b"}]}}),
    );
    assert_eq!(
        message(
            Policy::latest(Level::Restricted),
            &check(Level::Restricted, &meta, &spec),
            true
        ),
        r#"would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
    );
    // At restricted, baseline violations come first, then restricted ones, each by ID.
    let (meta, spec) = pod(
        json!({"spec": {"hostNetwork": true, "securityContext": {"runAsNonRoot": null},
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}}),
    );
    let reasons: Vec<String> = check(Level::Restricted, &meta, &spec)
        .into_iter()
        .map(|v| v.reason)
        .collect();
    assert_eq!(
        reasons,
        [
            "host namespaces",
            "restricted volume types",
            "runAsNonRoot != true"
        ]
    );
}

#[test]
fn several_containers_are_named_together() {
    let (meta, spec) = pod(json!({"spec": {"securityContext": null,
        "initContainers": [{"name": "init", "image": "b", "securityContext": {"privileged": true}}],
        "containers": [{"name": "a", "image": "b", "securityContext": {"privileged": true}},
                       {"name": "b", "image": "b", "ports": [{"containerPort": 1, "hostPort": 80}, {"containerPort": 2, "hostPort": 443}]}]}}));
    let found: Vec<String> = check(Level::Baseline, &meta, &spec)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        found,
        [
            r#"hostPort (container "b" uses hostPorts 80, 443)"#,
            r#"privileged (containers "init", "a" must not set securityContext.privileged=true)"#,
        ]
    );
}

fn labels(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().expect("object").clone()
}

#[test]
fn namespace_labels_choose_each_mode_and_missing_ones_take_the_defaults() {
    let defaults = Defaults {
        enforce: Policy::latest(Level::Baseline),
        ..Default::default()
    };
    let rows: Vec<(Value, NamespacePolicy)> = vec![
        (
            json!({}),
            NamespacePolicy {
                enforce: Policy::latest(Level::Baseline),
                ..Default::default()
            },
        ),
        (
            json!({ENFORCE: "restricted", "pod-security.kubernetes.io/enforce-version": "v1.30", WARN: "baseline"}),
            NamespacePolicy {
                enforce: Policy {
                    level: Level::Restricted,
                    version: Version::V1(30),
                },
                warn: Policy::latest(Level::Baseline),
                audit: Policy::default(),
            },
        ),
        (
            json!({ENFORCE: "privileged", AUDIT: "bogus"}),
            NamespacePolicy {
                enforce: Policy::latest(Level::Privileged),
                warn: Policy::default(),
                audit: Policy::latest(Level::Restricted),
            },
        ),
    ];
    for (l, want) in rows {
        assert_eq!(
            namespace_policy(Some(&labels(l.clone())), &defaults),
            want,
            "{l}"
        );
    }
    assert_eq!(
        Policy {
            level: Level::Restricted,
            version: Version::V1(30)
        }
        .to_string(),
        "restricted:v1.30"
    );
}

#[test]
fn invalid_label_values_are_field_errors_naming_the_label() {
    let rows: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({ENFORCE: "baseline", "pod-security.kubernetes.io/warn-version": "latest", AUDIT: "restricted"}),
            vec![],
        ),
        (
            json!({"pod-security.kubernetes.io/enforce-version": "v1.29"}),
            vec![],
        ),
        (
            json!({ENFORCE: "strict"}),
            vec![
                r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#,
            ],
        ),
        (
            json!({"pod-security.kubernetes.io/warn-version": "v2.0", "pod-security.kubernetes.io/audit-version": "1.30"}),
            vec![
                r#"metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "v2.0": must be "latest" or "v1.x""#,
                r#"metadata.labels[pod-security.kubernetes.io/audit-version]: Invalid value: "1.30": must be "latest" or "v1.x""#,
            ],
        ),
    ];
    for (l, want) in rows {
        let got: Vec<String> = validate_labels(Some(&labels(l.clone())))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, want, "{l}");
    }
}

#[test]
fn levels_and_versions_parse_as_kubernetes_spells_them() {
    assert_eq!("baseline".parse(), Ok(Level::Baseline));
    assert!("Baseline".parse::<Level>().is_err());
    assert_eq!("latest".parse(), Ok(Version::Latest));
    assert_eq!("v1.33".parse(), Ok(Version::V1(33)));
    for bad in ["v1.", "v1.x", "1.30", "v2.1", "v1.-1", ""] {
        assert!(bad.parse::<Version>().is_err(), "{bad}");
    }
}
