use super::*;
use k8s_openapi::ByteString;
use serde_json::json;

fn data() -> ConfigData {
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "app-config"},
        "data": {"MODE": "prod", "app.properties": "color=blue\n", "bad name": "x"},
        "binaryData": {"logo.png": "AAEC"}
    }))
    .unwrap();
    let secret = Secret {
        data: Some(BTreeMap::from([
            ("user".to_string(), ByteString(b"admin".to_vec())),
            ("pass".to_string(), ByteString(b"s3cr3t".to_vec())),
        ])),
        ..Default::default()
    };
    ConfigData {
        namespace: "default".into(),
        configmaps: BTreeMap::from([("app-config".into(), cm)]),
        secrets: BTreeMap::from([("db".into(), secret)]),
    }
}

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
}

fn container(c: serde_json::Value) -> Container {
    let mut base = json!({"name": "c", "image": "i"});
    base.as_object_mut()
        .unwrap()
        .extend(c.as_object().unwrap().clone());
    serde_json::from_value(base).unwrap()
}

#[test]
fn references_cover_env_env_from_and_volumes() {
    let p = pod(json!({
        "containers": [{"name": "c", "image": "i",
            "env": [{"name": "U", "valueFrom": {"secretKeyRef": {"name": "db", "key": "user"}}},
                    {"name": "M", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "MODE"}}}],
            "envFrom": [{"configMapRef": {"name": "more"}}]}],
        "volumes": [{"name": "v", "secret": {"secretName": "tls"}},
                    {"name": "w", "projected": {"sources": [{"configMap": {"name": "proj"}}]}}]
    }));
    let r = references(&p);
    assert_eq!(
        r.configmaps.into_iter().collect::<Vec<_>>(),
        ["app-config", "more", "proj"]
    );
    assert_eq!(r.secrets.into_iter().collect::<Vec<_>>(), ["db", "tls"]);
}

#[test]
fn env_from_and_key_refs_resolve_with_prefix_and_skip_invalid_names() {
    let c = container(json!({
        "envFrom": [{"configMapRef": {"name": "app-config"}, "prefix": "CFG_"},
                    {"secretRef": {"name": "db"}}],
        "env": [{"name": "PLAIN", "value": "x"},
                {"name": "DB_USER", "valueFrom": {"secretKeyRef": {"name": "db", "key": "user"}}},
                {"name": "MAYBE", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}}]
    }));
    let env = container_env(&c, &data()).unwrap();
    let names: Vec<&str> = env.from.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "CFG_MODE",
            "CFG_app.properties",
            "CFG_logo.png",
            "pass",
            "user"
        ]
    );
    assert_eq!(env.values, BTreeMap::from([(1, "admin".to_string())]));
}

#[test]
fn missing_objects_and_keys_give_kubelets_messages() {
    let missing = |c: serde_json::Value| container_env(&container(c), &data()).unwrap_err();
    assert_eq!(
        missing(json!({"envFrom": [{"configMapRef": {"name": "nope"}}]})),
        "configmap \"nope\" not found"
    );
    assert_eq!(
        missing(
            json!({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "token"}}}]})
        ),
        "couldn't find key token in Secret default/db"
    );
    assert_eq!(
        missing(
            json!({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "K"}}}]})
        ),
        "couldn't find key K in ConfigMap default/app-config"
    );
}

#[test]
fn volumes_project_all_keys_or_the_listed_items_with_modes() {
    let vol = |v: serde_json::Value| -> Volume { serde_json::from_value(v).unwrap() };
    let all = volume_files(
        &vol(json!({"name": "v", "configMap": {"name": "app-config"}})),
        &data(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|f| f.mode == 0o644));
    let logo = all
        .iter()
        .find(|f| f.path == Path::new("logo.png"))
        .unwrap();
    assert_eq!(logo.content, vec![0, 1, 2]);
    let items = volume_files(
        &vol(json!({"name": "v", "secret": {"secretName": "db", "defaultMode": 0o400,
            "items": [{"key": "pass", "path": "db/password"}, {"key": "user", "path": "user", "mode": 0o440}]}})),
        &data(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        items,
        vec![
            VolumeFile {
                path: "db/password".into(),
                content: b"s3cr3t".to_vec(),
                mode: 0o400
            },
            VolumeFile {
                path: "user".into(),
                content: b"admin".to_vec(),
                mode: 0o440
            },
        ]
    );
    let err = volume_files(
        &vol(json!({"name": "v", "secret": {"secretName": "gone"}})),
        &data(),
    );
    assert_eq!(err.unwrap().unwrap_err(), "secret \"gone\" not found");
    let optional = volume_files(
        &vol(json!({"name": "v", "configMap": {"name": "gone", "optional": true}})),
        &data(),
    );
    assert_eq!(optional.unwrap().unwrap(), vec![]);
    assert!(volume_files(&vol(json!({"name": "v", "emptyDir": {}})), &data()).is_none());
}

#[test]
fn volume_updates_swap_atomically_and_drop_removed_keys() {
    let dir = tempfile::tempdir().unwrap();
    let f = |path: &str, content: &str| VolumeFile {
        path: path.into(),
        content: content.as_bytes().to_vec(),
        mode: 0o644,
    };
    let v1 = vec![f("MODE", "prod"), f("conf/app.properties", "color=blue\n")];
    assert!(write_volume(dir.path(), &v1).unwrap());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("MODE")).unwrap(),
        "prod"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("conf/app.properties")).unwrap(),
        "color=blue\n"
    );
    assert!(
        !write_volume(dir.path(), &v1).unwrap(),
        "unchanged content is not rewritten"
    );
    let v2 = vec![f("MODE", "dev")];
    assert!(write_volume(dir.path(), &v2).unwrap());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("MODE")).unwrap(),
        "dev"
    );
    assert!(
        !dir.path().join("conf").exists(),
        "a removed key's entry goes away"
    );
    let generations = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("..") && n != "..data"
        })
        .count();
    assert_eq!(generations, 1, "the old generation is removed");
}
