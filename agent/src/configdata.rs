//! ConfigMaps and Secrets consumed by a pod, as the kubelet consumes them: environment
//! variables (`env[].valueFrom.configMapKeyRef|secretKeyRef`, `envFrom`) and `configMap` /
//! `secret` volumes written as files with kubelet's atomic `..data` symlink layout.
//!
//! The planning is pure (which objects a pod needs, which variables and files they give);
//! `fetch` and `write_volume` are the thin side effects.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Pod, Secret, Volume};

/// The ConfigMaps and Secrets of a pod's namespace that the pod refers to (missing ones absent).
#[derive(Debug, Default, Clone)]
pub struct ConfigData {
    pub namespace: String,
    pub configmaps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
}

/// Names of the ConfigMaps and Secrets a pod refers to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct References {
    pub configmaps: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
}

impl References {
    pub fn is_empty(&self) -> bool {
        self.configmaps.is_empty() && self.secrets.is_empty()
    }
}

/// Every ConfigMap and Secret named by the pod's containers (env, envFrom) and volumes.
pub fn references(pod: &Pod) -> References {
    let mut r = References::default();
    let Some(spec) = pod.spec.as_ref() else {
        return r;
    };
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in containers {
        for e in c.env.iter().flatten() {
            let Some(from) = &e.value_from else { continue };
            if let Some(k) = &from.config_map_key_ref {
                r.configmaps.insert(k.name.clone());
            }
            if let Some(k) = &from.secret_key_ref {
                r.secrets.insert(k.name.clone());
            }
        }
        for f in c.env_from.iter().flatten() {
            if let Some(cm) = &f.config_map_ref {
                r.configmaps.insert(cm.name.clone());
            }
            if let Some(s) = &f.secret_ref {
                r.secrets.insert(s.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(cm) = &v.config_map {
            r.configmaps.insert(cm.name.clone());
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            r.secrets.insert(s);
        }
        for p in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &p.config_map {
                r.configmaps.insert(cm.name.clone());
            }
            if let Some(s) = &p.secret {
                r.secrets.insert(s.name.clone());
            }
        }
    }
    r.configmaps.retain(|n| !n.is_empty());
    r.secrets.retain(|n| !n.is_empty());
    r
}

/// One key's value from a ConfigMap (text or binary data) as bytes.
fn configmap_value(cm: &ConfigMap, key: &str) -> Option<Vec<u8>> {
    cm.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|s| s.as_bytes().to_vec())
        .or_else(|| {
            cm.binary_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|b| b.0.clone())
        })
}

fn configmap_entries(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        out.insert(k.clone(), v.0.clone());
    }
    out
}

fn secret_entries(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    s.data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

/// Environment a container gets from ConfigMaps and Secrets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfigEnv {
    /// From `envFrom`, in order (a later source wins on a shared name).
    pub from: Vec<(String, String)>,
    /// Values of `env[i]` entries whose `valueFrom` names a ConfigMap or Secret key; an
    /// optional reference to something missing has no entry (the variable is not set).
    pub values: BTreeMap<usize, String>,
}

/// The kubelet's environment variable names: C identifiers plus `-` and `.`, no leading digit.
fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// Resolves a container's ConfigMap and Secret variables. The error is kubelet's message for a
/// `CreateContainerConfigError` (`configmap "x" not found`, `couldn't find key k in Secret
/// ns/x`).
pub fn container_env(c: &Container, data: &ConfigData) -> Result<ConfigEnv, String> {
    let ns = &data.namespace;
    let mut env = ConfigEnv::default();
    for f in c.env_from.iter().flatten() {
        let prefix = f.prefix.clone().unwrap_or_default();
        let entries = if let Some(r) = &f.config_map_ref {
            match data.configmaps.get(&r.name) {
                Some(cm) => configmap_entries(cm),
                None if r.optional == Some(true) => continue,
                None => return Err(format!("configmap {:?} not found", r.name)),
            }
        } else if let Some(r) = &f.secret_ref {
            match data.secrets.get(&r.name) {
                Some(s) => secret_entries(s),
                None if r.optional == Some(true) => continue,
                None => return Err(format!("secret {:?} not found", r.name)),
            }
        } else {
            continue;
        };
        for (k, v) in entries {
            let name = format!("{prefix}{k}");
            // kubelet skips keys that are not valid variable names (with an event).
            if !valid_env_name(&name) {
                continue;
            }
            env.from.retain(|(n, _)| *n != name);
            env.from
                .push((name, String::from_utf8_lossy(&v).into_owned()));
        }
    }
    for (i, e) in c.env.iter().flatten().enumerate() {
        let Some(from) = &e.value_from else { continue };
        if let Some(r) = &from.config_map_key_ref {
            let optional = r.optional == Some(true);
            match data.configmaps.get(&r.name) {
                None if optional => {}
                None => return Err(format!("configmap {:?} not found", r.name)),
                Some(cm) => match configmap_value(cm, &r.key) {
                    Some(v) => {
                        env.values
                            .insert(i, String::from_utf8_lossy(&v).into_owned());
                    }
                    None if optional => {}
                    None => {
                        return Err(format!(
                            "couldn't find key {} in ConfigMap {ns}/{}",
                            r.key, r.name
                        ))
                    }
                },
            }
        } else if let Some(r) = &from.secret_key_ref {
            let optional = r.optional == Some(true);
            match data.secrets.get(&r.name) {
                None if optional => {}
                None => return Err(format!("secret {:?} not found", r.name)),
                Some(s) => match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => {
                        env.values
                            .insert(i, String::from_utf8_lossy(&v.0).into_owned());
                    }
                    None if optional => {}
                    None => {
                        return Err(format!(
                            "couldn't find key {} in Secret {ns}/{}",
                            r.key, r.name
                        ))
                    }
                },
            }
        }
    }
    Ok(env)
}

/// One file of a volume: its path inside the volume, content and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFile {
    pub path: PathBuf,
    pub content: Vec<u8>,
    pub mode: u32,
}

fn project(
    entries: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    what: &str,
    optional: bool,
) -> Result<Vec<VolumeFile>, String> {
    let Some(items) = items.filter(|i| !i.is_empty()) else {
        return Ok(entries
            .iter()
            .map(|(k, v)| VolumeFile {
                path: PathBuf::from(k),
                content: v.clone(),
                mode: default_mode,
            })
            .collect());
    };
    let mut out = Vec::new();
    for item in items {
        let Some(v) = entries.get(&item.key) else {
            if optional {
                continue;
            }
            return Err(if what == "configmap" {
                format!("configmap references non-existent config key: {}", item.key)
            } else {
                format!("references non-existent secret key: {}", item.key)
            });
        };
        out.push(VolumeFile {
            path: PathBuf::from(&item.path),
            content: v.clone(),
            mode: item.mode.map_or(default_mode, |m| m as u32),
        });
    }
    Ok(out)
}

/// The files of the ConfigMap `name` (all keys, or `items`); a missing optional one gives none.
fn configmap_files(
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    optional: Option<bool>,
    mode: u32,
    data: &ConfigData,
) -> Result<Vec<VolumeFile>, String> {
    let optional = optional == Some(true);
    match data.configmaps.get(name) {
        Some(cm) => project(&configmap_entries(cm), items, mode, "configmap", optional),
        None if optional => Ok(Vec::new()),
        None => Err(format!("configmap {name:?} not found")),
    }
}

/// The files of the Secret `name`, as [`configmap_files`].
fn secret_files(
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    optional: Option<bool>,
    mode: u32,
    data: &ConfigData,
) -> Result<Vec<VolumeFile>, String> {
    let optional = optional == Some(true);
    match data.secrets.get(name) {
        Some(s) => project(&secret_entries(s), items, mode, "secret", optional),
        None if optional => Ok(Vec::new()),
        None => Err(format!("secret {name:?} not found")),
    }
}

fn mode_or_default(mode: Option<i32>) -> u32 {
    mode.map_or(0o644, |m| m as u32)
}

/// The files of a `configMap`, `secret` or `projected` volume; `None` for other kinds. The
/// error is the kubelet's `MountVolume.SetUp failed` reason.
pub fn volume_files(v: &Volume, data: &ConfigData) -> Option<Result<Vec<VolumeFile>, String>> {
    if let Some(src) = &v.config_map {
        let mode = mode_or_default(src.default_mode);
        return Some(configmap_files(
            &src.name,
            src.items.as_ref(),
            src.optional,
            mode,
            data,
        ));
    }
    if let Some(src) = &v.secret {
        let name = src.secret_name.clone().unwrap_or_default();
        let mode = mode_or_default(src.default_mode);
        return Some(secret_files(
            &name,
            src.items.as_ref(),
            src.optional,
            mode,
            data,
        ));
    }
    let p = v.projected.as_ref()?;
    let mode = mode_or_default(p.default_mode);
    let mut files = Vec::new();
    for s in p.sources.iter().flatten() {
        let part = if let Some(cm) = &s.config_map {
            configmap_files(&cm.name, cm.items.as_ref(), cm.optional, mode, data)
        } else if let Some(sec) = &s.secret {
            secret_files(&sec.name, sec.items.as_ref(), sec.optional, mode, data)
        } else {
            Ok(Vec::new())
        };
        match part {
            Ok(f) => files.extend(f),
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok(files))
}

/// Fetches the objects `refs` names from the API; a missing one is simply absent.
pub async fn fetch(
    client: &corral_api::Client,
    namespace: &str,
    refs: &References,
) -> Result<ConfigData, corral_api::client::Error> {
    let mut data = ConfigData {
        namespace: namespace.to_string(),
        ..Default::default()
    };
    for name in &refs.configmaps {
        if let Some(cm) = client.get_opt::<ConfigMap>(namespace, name).await? {
            data.configmaps.insert(name.clone(), cm);
        }
    }
    for name in &refs.secrets {
        if let Some(s) = client.get_opt::<Secret>(namespace, name).await? {
            data.secrets.insert(name.clone(), s);
        }
    }
    Ok(data)
}

/// Writes a volume's files under `dir` the kubelet's way, so a change appears atomically to
/// the container: the files go into a fresh `..<generation>` directory, the `..data` symlink
/// is swapped to it with a rename, and each top-level entry is a symlink through `..data`.
/// Returns false when the content was already there (nothing written).
pub fn write_volume(dir: &Path, files: &[VolumeFile]) -> std::io::Result<bool> {
    use std::os::unix::fs::{symlink, PermissionsExt};
    std::fs::create_dir_all(dir)?;
    let data_link = dir.join("..data");
    if let Ok(current) = std::fs::read_link(&data_link) {
        if same_content(&dir.join(&current), files) {
            return Ok(false);
        }
    }
    let generation = format!(
        "..{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    let fresh = dir.join(&generation);
    std::fs::create_dir_all(&fresh)?;
    for f in files {
        // Item paths are validated by the API server (relative, no `..`); stay inside anyway.
        if f.path.is_absolute() || f.path.components().any(|c| c.as_os_str() == "..") {
            continue;
        }
        let target = fresh.join(&f.path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, &f.content)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(f.mode & 0o777))?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    symlink(&generation, &tmp_link)?;
    let old = std::fs::read_link(&data_link).ok();
    std::fs::rename(&tmp_link, &data_link)?;
    // Top-level names point through ..data; names that went away are removed.
    let wanted: BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.path.components().next())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !wanted.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    for name in &wanted {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(name), &link)?;
        }
    }
    if let Some(old) = old.filter(|o| *o != Path::new(&generation)) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

fn same_content(current: &Path, files: &[VolumeFile]) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let mut count = 0;
    let ok = files.iter().all(|f| {
        let p = current.join(&f.path);
        count += 1;
        std::fs::read(&p).is_ok_and(|c| c == f.content)
            && std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o777 == f.mode & 0o777)
    });
    ok && count_files(current) == count
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        count_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
