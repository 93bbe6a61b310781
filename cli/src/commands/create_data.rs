//! `create configmap` and `create secret generic|tls`: keys gathered from literals, files,
//! directories and env files as kubectl gathers them, then the object kubectl would send.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::args::DataSources;
use crate::error::{local, Result};

/// The gathered keys: text values, and file contents that are not UTF-8.
#[derive(Debug, Default, PartialEq)]
pub struct Gathered {
    pub text: BTreeMap<String, String>,
    pub binary: BTreeMap<String, Vec<u8>>,
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        && key != "."
        && !key.starts_with("..")
}

/// Reads every source; `kind` and `name` word the errors as kubectl does.
pub fn gather(src: &DataSources, kind: &str, name: &str) -> Result<Gathered> {
    if !src.from_env_file.is_empty() && (!src.from_file.is_empty() || !src.from_literal.is_empty())
    {
        return Err(local(
            "from-env-file cannot be combined with from-file or from-literal",
        ));
    }
    let mut g = Gathered::default();
    let mut add = |key: &str, value: Vec<u8>| -> Result<()> {
        check_key(key, kind)?;
        if g.text.contains_key(key) || g.binary.contains_key(key) {
            return Err(local(format!(
                "cannot add key {key:?}, another key by that name already exists in Data for {kind} {name:?}"
            )));
        }
        match String::from_utf8(value) {
            Ok(s) => g.text.insert(key.to_string(), s),
            Err(e) => g
                .binary
                .insert(key.to_string(), e.into_bytes())
                .map(|_| String::new()),
        };
        Ok(())
    };
    for lit in &src.from_literal {
        let Some((k, v)) = lit.split_once('=') else {
            return Err(local(format!(
                "invalid literal source {lit}, expected key=value"
            )));
        };
        add(k, v.as_bytes().to_vec())?;
    }
    for spec in &src.from_file {
        let (key, path) = match spec.split_once('=') {
            Some((k, p)) if !k.is_empty() => (Some(k.to_string()), p),
            _ => (None, spec.as_str()),
        };
        let p = Path::new(path);
        let meta = std::fs::metadata(p).map_err(|e| local(format!("{path}: {e}")))?;
        if meta.is_dir() {
            if key.is_some() {
                return Err(local(format!(
                    "cannot give a key name for a directory path {path}"
                )));
            }
            let mut entries: Vec<_> = std::fs::read_dir(p)
                .map_err(|e| local(format!("{path}: {e}")))?
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let k = e.file_name().to_string_lossy().into_owned();
                if !valid_key(&k) {
                    continue; // kubectl skips files whose names are not valid keys
                }
                let v = std::fs::read(e.path())
                    .map_err(|err| local(format!("{}: {err}", e.path().display())))?;
                add(&k, v)?;
            }
        } else {
            let k = key.unwrap_or_else(|| {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            let v = std::fs::read(p).map_err(|e| local(format!("{path}: {e}")))?;
            add(&k, v)?;
        }
    }
    for path in &src.from_env_file {
        let text = std::fs::read_to_string(path).map_err(|e| local(format!("{path}: {e}")))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = match line.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                // kubectl takes a bare name's value from the environment.
                None => (line.to_string(), std::env::var(line).unwrap_or_default()),
            };
            if k.is_empty() {
                return Err(local(format!(
                    "{path}: line {}: key is missing before '='",
                    n + 1
                )));
            }
            // A later line of an env file overrides an earlier one, as kubectl does.
            check_key(&k, kind)?;
            g.text.insert(k, v);
        }
    }
    Ok(g)
}

/// kubectl's error for a key that is not a valid config key.
fn check_key(key: &str, kind: &str) -> Result<()> {
    if valid_key(key) {
        return Ok(());
    }
    Err(local(format!(
        "{key:?} is not a valid key name for a {kind}: a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
    )))
}

fn skeleton(kind: &str, name: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("apiVersion".into(), json!("v1"));
    m.insert("kind".into(), json!(kind));
    m.insert(
        "metadata".into(),
        json!({"creationTimestamp": null, "name": name}),
    );
    m
}

/// kubectl's ConfigMap: text keys in `data`, others in `binaryData` (base64).
pub fn configmap(name: &str, g: &Gathered) -> Value {
    let mut m = skeleton("ConfigMap", name);
    if !g.text.is_empty() {
        m.insert("data".into(), json!(g.text));
    }
    if !g.binary.is_empty() {
        let b64: BTreeMap<&String, String> = g
            .binary
            .iter()
            .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(v)))
            .collect();
        m.insert("binaryData".into(), json!(b64));
    }
    Value::Object(m)
}

/// kubectl's Secret: every key base64 in `data`; `type` only when given.
pub fn secret(name: &str, g: &Gathered, type_: Option<&str>) -> Value {
    let mut m = skeleton("Secret", name);
    let data: BTreeMap<&String, String> = g
        .text
        .iter()
        .map(|(k, v)| (k, v.as_bytes()))
        .chain(g.binary.iter().map(|(k, v)| (k, v.as_slice())))
        .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(v)))
        .collect();
    if !data.is_empty() {
        m.insert("data".into(), json!(data));
    }
    if let Some(t) = type_.filter(|t| !t.is_empty()) {
        m.insert("type".into(), json!(t));
    }
    Value::Object(m)
}

/// `create secret tls`: `tls.crt` and `tls.key` from PEM files.
pub fn tls_secret(name: &str, cert: &str, key: &str) -> Result<Value> {
    let read = |p: &str| std::fs::read(p).map_err(|e| local(format!("{p}: {e}")));
    let (c, k) = (read(cert)?, read(key)?);
    for (what, bytes) in [("certificate", &c), ("key", &k)] {
        if !String::from_utf8_lossy(bytes).contains("-----BEGIN ") {
            return Err(local(format!(
                "failed to load key pair tls: failed to find any PEM data in {what} input"
            )));
        }
    }
    let mut g = Gathered::default();
    g.binary.insert("tls.crt".into(), c);
    g.binary.insert("tls.key".into(), k);
    Ok(secret(name, &g, Some("kubernetes.io/tls")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(lit: &[&str], file: &[&str], env: &[&str]) -> DataSources {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        DataSources {
            from_literal: s(lit),
            from_file: s(file),
            from_env_file: s(env),
        }
    }

    #[test]
    fn literals_files_and_directories_become_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("greeting.txt"), "hello\n").unwrap();
        std::fs::write(dir.path().join("raw.bin"), [0xff, 0x00]).unwrap();
        let f = dir.path().join("greeting.txt");
        let named = format!("saludo={}", f.display());
        let src = sources(
            &["color=blue", "eq=a=b"],
            &[named.as_str(), dir.path().to_str().unwrap()],
            &[],
        );
        let g = gather(&src, "ConfigMap", "mi-config").unwrap();
        assert_eq!(g.text["color"], "blue");
        assert_eq!(g.text["eq"], "a=b");
        assert_eq!(g.text["saludo"], "hello\n");
        assert_eq!(g.text["greeting.txt"], "hello\n");
        assert_eq!(g.binary["raw.bin"], vec![0xff, 0x00]);
        let cm = configmap("mi-config", &g);
        assert_eq!(cm["binaryData"]["raw.bin"], "/wA=");
        let s = secret("s", &g, None);
        assert_eq!(s["data"]["color"], "Ymx1ZQ==");
        assert!(s.get("type").is_none());
    }

    #[test]
    fn mistakes_get_kubectls_errors() {
        let err = |src: DataSources| gather(&src, "ConfigMap", "x").unwrap_err().to_string();
        assert_eq!(
            err(sources(&["a=1", "a=2"], &[], &[])),
            "error: cannot add key \"a\", another key by that name already exists in Data for ConfigMap \"x\""
        );
        assert!(err(sources(&["a b=1"], &[], &[]))
            .starts_with("error: \"a b\" is not a valid key name for a ConfigMap"));
        assert_eq!(
            err(sources(&["a"], &[], &[])),
            "error: invalid literal source a, expected key=value"
        );
        assert_eq!(
            err(sources(&["a=1"], &[], &["x.env"])),
            "error: from-env-file cannot be combined with from-file or from-literal"
        );
        assert!(err(sources(&[], &["/nonexistent/file"], &[])).contains("/nonexistent/file"));
    }

    #[test]
    fn env_files_skip_comments_and_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("app.env");
        std::fs::write(&p, "A=1\n# comment\n\n  B=two words\nA=3\n").unwrap();
        let g = gather(&sources(&[], &[], &[p.to_str().unwrap()]), "ConfigMap", "x").unwrap();
        assert_eq!(g.text.len(), 2);
        assert_eq!(g.text["A"], "3");
        assert_eq!(g.text["B"], "two words");
    }
}
