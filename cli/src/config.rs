//! The client configuration file (`~/.corral/config`, shaped like a kubeconfig: clusters with a
//! server address, users with credentials, contexts tying them to a default namespace) and how
//! flags and the environment override it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7443";
pub const ENV_SERVER: &str = "CORRAL_SERVER";
pub const ENV_CONFIG: &str = "CORRAL_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("context {0:?} does not exist")]
    NoContext(String),
    #[error("context {context:?}: cluster {cluster:?} does not exist")]
    NoCluster { context: String, cluster: String },
    #[error("context {context:?}: user {user:?} does not exist")]
    NoUser { context: String, user: String },
    #[error("cluster {cluster:?}: server {server:?} must be http://HOST:PORT")]
    BadServer { cluster: String, server: String },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(rename = "apiVersion", default = "v1")]
    pub api_version: String,
    #[serde(default = "config_kind")]
    pub kind: String,
    #[serde(rename = "current-context", default)]
    pub current_context: String,
    #[serde(default)]
    pub clusters: Vec<NamedCluster>,
    #[serde(default)]
    pub users: Vec<NamedUser>,
    #[serde(default)]
    pub contexts: Vec<NamedContext>,
}

fn v1() -> String {
    "v1".into()
}
fn config_kind() -> String {
    "Config".into()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedCluster {
    pub name: String,
    pub cluster: Cluster,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub server: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedUser {
    pub name: String,
    #[serde(default)]
    pub user: User,
}

/// Credentials. The control plane does not authenticate yet; the token is kept so that a
/// configuration written today keeps working when it does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(
        rename = "client-certificate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_certificate: Option<String>,
    #[serde(
        rename = "client-key",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_key: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedContext {
    pub name: String,
    pub context: Context,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    pub cluster: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// What the command line says, before the file is consulted.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub server: Option<String>,
    pub context: Option<String>,
    pub namespace: Option<String>,
    /// The value of `CORRAL_SERVER`.
    pub env_server: Option<String>,
}

/// The connection settings a command uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub server: String,
    pub namespace: String,
    /// Whether `-n` was given (some commands only then restrict to one namespace).
    pub namespace_explicit: bool,
    pub context: Option<String>,
    pub token: Option<String>,
}

/// Default location: `$CORRAL_CONFIG`, else `$HOME/.corral/config`.
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os(ENV_CONFIG).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".corral").join("config")
}

impl Config {
    /// Reads a config file; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::empty()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::empty());
        }
        serde_yaml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn empty() -> Self {
        Self {
            api_version: v1(),
            kind: config_kind(),
            ..Default::default()
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let err = |source| ConfigError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let text = serde_yaml::to_string(self).expect("config always serializes");
        // Write then rename, so a crash never leaves half a config behind.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }

    pub fn context(&self, name: &str) -> Option<&NamedContext> {
        self.contexts.iter().find(|c| c.name == name)
    }

    /// Applies the precedence rules: `--server` > `CORRAL_SERVER` > the context's cluster >
    /// the default address; `-n` > the context's namespace > `default`.
    pub fn resolve(&self, o: &Overrides) -> Result<Resolved, ConfigError> {
        let context_name = o
            .context
            .clone()
            .or_else(|| Some(self.current_context.clone()).filter(|c| !c.is_empty()));
        let mut server_from_file = None;
        let mut namespace_from_file = None;
        let mut token = None;
        if let Some(name) = &context_name {
            let ctx = self
                .context(name)
                .ok_or_else(|| ConfigError::NoContext(name.clone()))?;
            let cluster = self
                .clusters
                .iter()
                .find(|c| c.name == ctx.context.cluster)
                .ok_or_else(|| ConfigError::NoCluster {
                    context: name.clone(),
                    cluster: ctx.context.cluster.clone(),
                })?;
            if !cluster.cluster.server.starts_with("http://")
                && !cluster.cluster.server.starts_with("https://")
            {
                return Err(ConfigError::BadServer {
                    cluster: cluster.name.clone(),
                    server: cluster.cluster.server.clone(),
                });
            }
            server_from_file = Some(cluster.cluster.server.clone());
            namespace_from_file = ctx.context.namespace.clone().filter(|n| !n.is_empty());
            if !ctx.context.user.is_empty() {
                let user = self
                    .users
                    .iter()
                    .find(|u| u.name == ctx.context.user)
                    .ok_or_else(|| ConfigError::NoUser {
                        context: name.clone(),
                        user: ctx.context.user.clone(),
                    })?;
                token = user.user.token.clone();
            }
        }
        let server = o
            .server
            .clone()
            .filter(|s| !s.is_empty())
            .or(o.env_server.clone().filter(|s| !s.is_empty()))
            .or(server_from_file)
            .unwrap_or_else(|| DEFAULT_SERVER.to_string());
        let namespace_explicit = o.namespace.as_ref().is_some_and(|n| !n.is_empty());
        let namespace = o
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .or(namespace_from_file)
            .unwrap_or_else(|| "default".to_string());
        Ok(Resolved {
            server,
            namespace,
            namespace_explicit,
            context: context_name,
            token,
        })
    }

    /// Creates or updates a cluster entry.
    pub fn set_cluster(&mut self, name: &str, server: &str) {
        match self.clusters.iter_mut().find(|c| c.name == name) {
            Some(c) => c.cluster.server = server.to_string(),
            None => self.clusters.push(NamedCluster {
                name: name.to_string(),
                cluster: Cluster {
                    server: server.to_string(),
                },
            }),
        }
    }

    pub fn set_credentials(&mut self, name: &str, token: Option<String>) {
        match self.users.iter_mut().find(|u| u.name == name) {
            Some(u) => u.user.token = token,
            None => self.users.push(NamedUser {
                name: name.to_string(),
                user: User {
                    token,
                    ..Default::default()
                },
            }),
        }
    }

    /// Creates or updates a context; fields left `None` keep their value.
    pub fn set_context(
        &mut self,
        name: &str,
        cluster: Option<&str>,
        user: Option<&str>,
        namespace: Option<&str>,
    ) {
        let idx = match self.contexts.iter().position(|c| c.name == name) {
            Some(i) => i,
            None => {
                self.contexts.push(NamedContext {
                    name: name.to_string(),
                    context: Context::default(),
                });
                self.contexts.len() - 1
            }
        };
        let ctx = &mut self.contexts[idx].context;
        if let Some(c) = cluster {
            ctx.cluster = c.to_string();
        }
        if let Some(u) = user {
            ctx.user = u.to_string();
        }
        if let Some(n) = namespace {
            ctx.namespace = Some(n.to_string()).filter(|n| !n.is_empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
apiVersion: v1
kind: Config
current-context: lab
clusters:
- name: lab
  cluster:
    server: http://10.0.0.1:7443
- name: local
  cluster:
    server: http://127.0.0.1:7443
users:
- name: admin
  user:
    token: s3cret
contexts:
- name: lab
  context:
    cluster: lab
    user: admin
    namespace: workshop
- name: local
  context:
    cluster: local
";

    fn sample() -> Config {
        Config::parse(Path::new("config"), SAMPLE).unwrap()
    }

    #[test]
    fn the_current_context_gives_server_namespace_and_token() {
        let r = sample().resolve(&Overrides::default()).unwrap();
        assert_eq!(r.server, "http://10.0.0.1:7443");
        assert_eq!(r.namespace, "workshop");
        assert_eq!(r.token.as_deref(), Some("s3cret"));
        assert!(!r.namespace_explicit);
    }

    #[test]
    fn flag_beats_environment_beats_context() {
        let cfg = sample();
        let mut o = Overrides {
            env_server: Some("http://127.0.0.2:1".into()),
            ..Default::default()
        };
        assert_eq!(cfg.resolve(&o).unwrap().server, "http://127.0.0.2:1");
        o.server = Some("http://127.0.0.3:2".into());
        assert_eq!(cfg.resolve(&o).unwrap().server, "http://127.0.0.3:2");
    }

    #[test]
    fn context_flag_and_namespace_flag_override_the_file() {
        let o = Overrides {
            context: Some("local".into()),
            namespace: Some("kube-system".into()),
            ..Default::default()
        };
        let r = sample().resolve(&o).unwrap();
        assert_eq!(r.server, "http://127.0.0.1:7443");
        assert_eq!(r.namespace, "kube-system");
        assert!(r.namespace_explicit);
    }

    #[test]
    fn no_file_means_the_default_server_and_namespace() {
        let r = Config::empty().resolve(&Overrides::default()).unwrap();
        assert_eq!(r.server, DEFAULT_SERVER);
        assert_eq!(r.namespace, "default");
    }

    #[test]
    fn a_missing_context_or_cluster_is_named_in_the_error() {
        let o = Overrides {
            context: Some("nope".into()),
            ..Default::default()
        };
        assert_eq!(
            sample().resolve(&o).unwrap_err().to_string(),
            "context \"nope\" does not exist"
        );
        let mut cfg = sample();
        cfg.clusters.retain(|c| c.name != "lab");
        let err = cfg.resolve(&Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("cluster \"lab\" does not exist"), "{err}");
    }

    #[test]
    fn a_misspelled_field_is_rejected_with_its_location() {
        let bad = SAMPLE.replace(
            "server: http://10.0.0.1:7443",
            "sever: http://10.0.0.1:7443",
        );
        let err = Config::parse(Path::new("cfg"), &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `sever`"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn set_context_then_save_and_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config");
        let mut cfg = Config::empty();
        cfg.set_cluster("c", "http://127.0.0.1:9");
        cfg.set_credentials("u", Some("t".into()));
        cfg.set_context("x", Some("c"), Some("u"), Some("ns1"));
        cfg.current_context = "x".into();
        cfg.save(&path).unwrap();
        let back = Config::load(&path).unwrap();
        assert_eq!(back, cfg);
        assert_eq!(
            back.resolve(&Overrides::default()).unwrap().namespace,
            "ns1"
        );
    }
}
