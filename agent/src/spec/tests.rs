use super::*;
use k8s_openapi::api::core::v1::{
    Capabilities, EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec, ResourceRequirements,
    SecurityContext, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

fn pod(containers: Vec<Container>) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some("web-1".into());
    p.metadata.namespace = Some("default".into());
    p.metadata.uid = Some("u1".into());
    p.spec = Some(PodSpec {
        containers,
        ..Default::default()
    });
    p
}

fn image() -> ImageConfig {
    ImageConfig {
        entrypoint: vec!["/entry".into()],
        cmd: vec!["serve".into(), "--port=80".into()],
        env: vec!["PATH=/bin".into(), "MODE=prod".into()],
        working_dir: "/app".into(),
        user: String::new(),
    }
}

fn build_for(c: Container) -> Result<Value, SpecError> {
    let p = pod(vec![c.clone()]);
    let img = image();
    build(&SpecInput {
        pod: &p,
        container: &c,
        image: &img,
        container_id: "u1-web-0",
        netns_path: Some("/run/netns/corral-u1".into()),
        hosts_file: "/data/pods/u1/hosts".into(),
        resolv_file: "/data/pods/u1/resolv.conf".into(),
        hostname_file: "/data/pods/u1/hostname".into(),
        volume_dirs: BTreeMap::from([(
            "data".to_string(),
            PathBuf::from("/data/pods/u1/volumes/data"),
        )]),
        config_env: Default::default(),
        pod_ip: Some("10.88.0.5".into()),
        node_name: "node-1".into(),
        host_ip: "127.0.0.1".into(),
        nofile: 4096,
    })
}

fn container() -> Container {
    Container {
        name: "web".into(),
        image: Some("app:1".into()),
        ..Default::default()
    }
}

#[test]
fn command_and_args_follow_kubernetes_rules() {
    let img = image();
    let mut c = container();
    assert_eq!(process_args(&c, &img), ["/entry", "serve", "--port=80"]);
    c.args = Some(vec!["debug".into()]);
    assert_eq!(process_args(&c, &img), ["/entry", "debug"]);
    c.command = Some(vec!["/bin/sh".into()]);
    c.args = None;
    assert_eq!(process_args(&c, &img), ["/bin/sh"]);
    c.args = Some(vec!["-c".into(), "true".into()]);
    assert_eq!(process_args(&c, &img), ["/bin/sh", "-c", "true"]);
}

#[test]
fn spec_has_hostname_netns_env_and_cwd() {
    let mut c = container();
    c.env = Some(vec![
        EnvVar {
            name: "MODE".into(),
            value: Some("dev".into()),
            ..Default::default()
        },
        EnvVar {
            name: "GREETING".into(),
            value: Some("hi $(MODE) $$(MODE)".into()),
            ..Default::default()
        },
        EnvVar {
            name: "POD_IP".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "status.podIP".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    ]);
    let s = build_for(c).unwrap();
    assert_eq!(s["hostname"], "web-1");
    assert_eq!(s["process"]["cwd"], "/app");
    let env: Vec<&str> = s["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"MODE=dev"), "{env:?}");
    assert!(env.contains(&"GREETING=hi dev $(MODE)"), "{env:?}");
    assert!(env.contains(&"POD_IP=10.88.0.5"), "{env:?}");
    assert!(env.contains(&"HOSTNAME=web-1"), "{env:?}");
    let ns = s["linux"]["namespaces"].as_array().unwrap();
    assert!(ns.contains(&json!({"type": "network", "path": "/run/netns/corral-u1"})));
    assert_eq!(s["linux"]["cgroupsPath"], "/corral/podu1/u1-web-0");
    assert_eq!(
        s["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .len(),
        DEFAULT_CAPS.len()
    );
}

#[test]
fn limits_become_cgroup_settings() {
    let mut c = container();
    c.resources = Some(ResourceRequirements {
        limits: Some(BTreeMap::from([
            ("memory".to_string(), Quantity("64Mi".into())),
            ("cpu".to_string(), Quantity("500m".into())),
        ])),
        requests: Some(BTreeMap::from([(
            "cpu".to_string(),
            Quantity("250m".into()),
        )])),
        ..Default::default()
    });
    let s = build_for(c).unwrap();
    assert_eq!(s["linux"]["resources"]["memory"]["limit"], 64 * 1024 * 1024);
    assert_eq!(s["linux"]["resources"]["cpu"]["quota"], 50_000);
    assert_eq!(s["linux"]["resources"]["cpu"]["period"], 100_000);
    assert_eq!(s["linux"]["resources"]["cpu"]["shares"], 256);
}

#[test]
fn bad_quantity_names_the_field() {
    let mut c = container();
    c.resources = Some(ResourceRequirements {
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("lots".into()),
        )])),
        ..Default::default()
    });
    let e = build_for(c).unwrap_err().to_string();
    assert!(
        e.contains("resources.limits.memory") && e.contains("\"lots\""),
        "{e}"
    );
}

#[test]
fn capabilities_and_user_from_security_context() {
    let mut c = container();
    c.security_context = Some(SecurityContext {
        run_as_user: Some(1000),
        capabilities: Some(Capabilities {
            add: Some(vec!["NET_ADMIN".into()]),
            drop: Some(vec!["MKNOD".into()]),
        }),
        ..Default::default()
    });
    let s = build_for(c).unwrap();
    assert_eq!(s["process"]["user"]["uid"], 1000);
    let caps = s["process"]["capabilities"]["effective"]
        .as_array()
        .unwrap();
    assert!(caps.contains(&json!("CAP_NET_ADMIN")));
    assert!(!caps.contains(&json!("CAP_MKNOD")));
}

#[test]
fn volume_mounts_need_a_known_volume() {
    let mut c = container();
    c.volume_mounts = Some(vec![VolumeMount {
        name: "data".into(),
        mount_path: "/data".into(),
        ..Default::default()
    }]);
    let s = build_for(c.clone()).unwrap();
    let mounts = s["mounts"].as_array().unwrap();
    assert!(mounts
        .iter()
        .any(|m| m["destination"] == "/data" && m["source"] == "/data/pods/u1/volumes/data"));
    c.volume_mounts = Some(vec![VolumeMount {
        name: "cfg".into(),
        mount_path: "/cfg".into(),
        ..Default::default()
    }]);
    let e = build_for(c).unwrap_err().to_string();
    assert!(e.contains("volumeMounts[0].name"), "{e}");
}

#[test]
fn config_variables_come_after_the_image_and_before_the_containers_own_env() {
    let mut c = container();
    c.env = Some(vec![
        EnvVar {
            name: "USER".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(k8s_openapi::api::core::v1::SecretKeySelector {
                    name: "db".into(),
                    key: "user".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        EnvVar {
            name: "MAYBE".into(),
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(k8s_openapi::api::core::v1::ConfigMapKeySelector {
                    name: "gone".into(),
                    key: "k".into(),
                    optional: Some(true),
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        EnvVar {
            name: "COLOR".into(),
            value: Some("red".into()),
            ..Default::default()
        },
    ]);
    let p = pod(vec![c.clone()]);
    let img = image();
    let spec = build(&SpecInput {
        pod: &p,
        container: &c,
        image: &img,
        container_id: "u1-web-0",
        netns_path: None,
        hosts_file: "/h".into(),
        resolv_file: "/r".into(),
        hostname_file: "/n".into(),
        volume_dirs: BTreeMap::new(),
        config_env: crate::configdata::ConfigEnv {
            from: vec![
                ("MODE".into(), "from-configmap".into()),
                ("COLOR".into(), "blue".into()),
            ],
            values: BTreeMap::from([(0, "admin".to_string())]),
        },
        pod_ip: None,
        node_name: "node-1".into(),
        host_ip: "127.0.0.1".into(),
        nofile: 4096,
    })
    .unwrap();
    let env: Vec<&str> = spec["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        env.contains(&"MODE=from-configmap"),
        "envFrom beats the image: {env:?}"
    );
    assert!(env.contains(&"USER=admin"), "{env:?}");
    assert!(
        env.contains(&"COLOR=red"),
        "the container's env beats envFrom: {env:?}"
    );
    assert!(!env.iter().any(|e| e.starts_with("MAYBE=")), "{env:?}");
}
