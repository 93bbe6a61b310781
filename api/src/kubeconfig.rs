//! Kubeconfig files, the one parser every component and the CLI use: clusters (server, CA),
//! users (client certificate and key, token, token file), contexts tying them to a namespace.
//! [`load`] turns a file's current context into a server address and [`Credentials`];
//! [`write`] renders credentials into a file of mode 0600 (the admin's, a node's).

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::credentials::Credentials;

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
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
    #[error("{path}: current-context is not set")]
    NoCurrentContext { path: PathBuf },
    #[error("context {context:?}: cluster {cluster:?} does not exist")]
    NoCluster { context: String, cluster: String },
    #[error("context {context:?}: user {user:?} does not exist")]
    NoUser { context: String, user: String },
    #[error(
        "cluster {cluster:?}: server {server:?} must be http://HOST:PORT or https://HOST:PORT"
    )]
    BadServer { cluster: String, server: String },
    #[error("{owner:?}: {field} is not valid base64: {source}")]
    Base64 {
        owner: String,
        field: &'static str,
        #[source]
        source: base64::DecodeError,
    },
    #[error("{owner:?}: {field} {path}: {source}")]
    File {
        owner: String,
        field: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("user {user:?}: client-certificate and client-key must be given together")]
    HalfIdentity { user: String },
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferences: Option<serde_yaml::Value>,
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
    #[serde(
        rename = "certificate-authority",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate_authority: Option<String>,
    #[serde(
        rename = "certificate-authority-data",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate_authority_data: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedUser {
    pub name: String,
    #[serde(default)]
    pub user: User,
}

/// A user's credentials: a client certificate and key (files or inline base64 data), a bearer
/// token (inline or in a file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(rename = "tokenFile", default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    #[serde(
        rename = "client-certificate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_certificate: Option<String>,
    #[serde(
        rename = "client-certificate-data",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_certificate_data: Option<String>,
    #[serde(
        rename = "client-key",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_key: Option<String>,
    #[serde(
        rename = "client-key-data",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_key_data: Option<String>,
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

/// What one context says: where the server is, how to talk to it, which namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextView {
    pub server: String,
    pub credentials: Credentials,
    pub namespace: Option<String>,
}

/// Reads `path`'s current context: the server address and the credentials to reach it with.
pub fn load(path: &Path) -> Result<(String, Credentials), KubeconfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| KubeconfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let cfg = Config::parse(path, &text)?;
    if cfg.current_context.is_empty() {
        return Err(KubeconfigError::NoCurrentContext {
            path: path.to_path_buf(),
        });
    }
    let view = cfg.view(&cfg.current_context, base_dir(path))?;
    Ok((view.server, view.credentials))
}

/// Where the control plane is when nothing says otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7443";

/// A component's connection from its flags: `--kubeconfig` gives the server and credentials,
/// `--server` overrides the address; neither means plaintext to [`DEFAULT_SERVER`].
pub fn for_component(
    kubeconfig: Option<&Path>,
    server: Option<&str>,
) -> Result<(String, Credentials), KubeconfigError> {
    let (file_server, creds) = match kubeconfig {
        Some(path) => {
            let (s, c) = load(path)?;
            (Some(s), c)
        }
        None => (None, Credentials::default()),
    };
    let server = server
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or(file_server)
        .unwrap_or_else(|| DEFAULT_SERVER.to_string());
    Ok((server, creds))
}

/// The directory relative file names in `path` are read from.
pub fn base_dir(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// Writes a kubeconfig of one context `name` (cluster, user and context all called `name`)
/// holding `creds` inline, mode 0600: it carries a private key.
pub fn write(
    path: &Path,
    name: &str,
    server: &str,
    creds: &Credentials,
) -> Result<(), KubeconfigError> {
    inline(name, server, creds, None).save(path)
}

/// A kubeconfig of one context `name` (cluster, user and context all called `name`) holding
/// `creds` inline, with `namespace` as the context's default if given.
pub fn inline(name: &str, server: &str, creds: &Credentials, namespace: Option<&str>) -> Config {
    let mut cfg = Config::empty();
    cfg.set_inline_credentials(name, server, creds);
    cfg.set_context(name, Some(name), Some(name), namespace);
    cfg.current_context = name.to_string();
    cfg
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Inline base64 data wins over a file name, as in kubectl.
fn data_or_file(
    owner: &str,
    data: &Option<String>,
    data_field: &'static str,
    file: &Option<String>,
    file_field: &'static str,
    base: &Path,
) -> Result<Option<Vec<u8>>, KubeconfigError> {
    if let Some(d) = data.as_deref().filter(|d| !d.is_empty()) {
        let clean: String = d.split_whitespace().collect();
        return base64::engine::general_purpose::STANDARD
            .decode(clean)
            .map(Some)
            .map_err(|source| KubeconfigError::Base64 {
                owner: owner.to_string(),
                field: data_field,
                source,
            });
    }
    match file.as_deref().filter(|f| !f.is_empty()) {
        Some(f) => {
            let path = base.join(f);
            std::fs::read(&path)
                .map(Some)
                .map_err(|source| KubeconfigError::File {
                    owner: owner.to_string(),
                    field: file_field,
                    path,
                    source,
                })
        }
        None => Ok(None),
    }
}

impl Config {
    /// Reads a config file; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<Self, KubeconfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::empty()),
            Err(source) => {
                return Err(KubeconfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, KubeconfigError> {
        if text.trim().is_empty() {
            return Ok(Self::empty());
        }
        serde_yaml::from_str(text).map_err(|source| KubeconfigError::Parse {
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

    /// Writes the file (mode 0600, it may hold keys and tokens) then renames it into place, so
    /// a crash never leaves half a config behind.
    pub fn save(&self, path: &Path) -> Result<(), KubeconfigError> {
        let err = |source| KubeconfigError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        crate::files::write_private(path, self.to_yaml().as_bytes()).map_err(err)
    }

    /// The file's text.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("config always serializes")
    }

    pub fn context(&self, name: &str) -> Option<&NamedContext> {
        self.contexts.iter().find(|c| c.name == name)
    }

    /// The server, credentials and namespace of context `name`; relative file names are read
    /// from `base`.
    pub fn view(&self, name: &str, base: &Path) -> Result<ContextView, KubeconfigError> {
        let ctx = self
            .context(name)
            .ok_or_else(|| KubeconfigError::NoContext(name.to_string()))?;
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.name == ctx.context.cluster)
            .ok_or_else(|| KubeconfigError::NoCluster {
                context: name.to_string(),
                cluster: ctx.context.cluster.clone(),
            })?;
        let server = &cluster.cluster.server;
        if !server.starts_with("http://") && !server.starts_with("https://") {
            return Err(KubeconfigError::BadServer {
                cluster: cluster.name.clone(),
                server: server.clone(),
            });
        }
        let mut credentials = Credentials {
            ca_pem: data_or_file(
                &cluster.name,
                &cluster.cluster.certificate_authority_data,
                "certificate-authority-data",
                &cluster.cluster.certificate_authority,
                "certificate-authority",
                base,
            )?,
            ..Default::default()
        };
        if !ctx.context.user.is_empty() {
            let named = self
                .users
                .iter()
                .find(|u| u.name == ctx.context.user)
                .ok_or_else(|| KubeconfigError::NoUser {
                    context: name.to_string(),
                    user: ctx.context.user.clone(),
                })?;
            let u = &named.user;
            let cert = data_or_file(
                &named.name,
                &u.client_certificate_data,
                "client-certificate-data",
                &u.client_certificate,
                "client-certificate",
                base,
            )?;
            let key = data_or_file(
                &named.name,
                &u.client_key_data,
                "client-key-data",
                &u.client_key,
                "client-key",
                base,
            )?;
            credentials.identity = match (cert, key) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => {
                    return Err(KubeconfigError::HalfIdentity {
                        user: named.name.clone(),
                    })
                }
            };
            credentials.token = match (&u.token, &u.token_file) {
                (Some(t), _) if !t.is_empty() => Some(t.clone()),
                (_, Some(f)) if !f.is_empty() => {
                    let path = base.join(f);
                    let t =
                        std::fs::read_to_string(&path).map_err(|source| KubeconfigError::File {
                            owner: named.name.clone(),
                            field: "tokenFile",
                            path,
                            source,
                        })?;
                    Some(t.trim().to_string())
                }
                _ => None,
            };
        }
        Ok(ContextView {
            server: server.clone(),
            credentials,
            namespace: ctx.context.namespace.clone().filter(|n| !n.is_empty()),
        })
    }

    /// Creates or updates a cluster entry's server (its CA is kept).
    pub fn set_cluster(&mut self, name: &str, server: &str) {
        match self.clusters.iter_mut().find(|c| c.name == name) {
            Some(c) => c.cluster.server = server.to_string(),
            None => self.clusters.push(NamedCluster {
                name: name.to_string(),
                cluster: Cluster {
                    server: server.to_string(),
                    ..Default::default()
                },
            }),
        }
    }

    /// Creates or updates a user's token (other credentials are kept).
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

    /// Puts `creds` into cluster `name`'s CA and user `name`'s certificate, key and token,
    /// inline, replacing what was there.
    pub fn set_inline_credentials(&mut self, name: &str, server: &str, creds: &Credentials) {
        self.set_cluster(name, server);
        if let Some(c) = self.clusters.iter_mut().find(|c| c.name == name) {
            c.cluster.certificate_authority = None;
            c.cluster.certificate_authority_data = creds.ca_pem.as_deref().map(b64);
        }
        let user = User {
            token: creds.token.clone(),
            client_certificate_data: creds.identity.as_ref().map(|(c, _)| b64(c)),
            client_key_data: creds.identity.as_ref().map(|(_, k)| b64(k)),
            ..Default::default()
        };
        match self.users.iter_mut().find(|u| u.name == name) {
            Some(u) => u.user = user,
            None => self.users.push(NamedUser {
                name: name.to_string(),
                user,
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

    #[test]
    fn written_credentials_load_back_the_same_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.kubeconfig");
        let creds = Credentials {
            ca_pem: Some(b"-----BEGIN CERTIFICATE-----\nCA\n".to_vec()),
            identity: Some((b"cert".to_vec(), b"key".to_vec())),
            token: Some("abc.def".into()),
        };
        write(&path, "corral", "https://127.0.0.1:7443", &creds).unwrap();
        let (server, back) = load(&path).unwrap();
        assert_eq!(server, "https://127.0.0.1:7443");
        assert_eq!(back, creds);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn relative_files_and_token_files_are_read_beside_the_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), "CA").unwrap();
        std::fs::write(dir.path().join("c.crt"), "C").unwrap();
        std::fs::write(dir.path().join("c.key"), "K").unwrap();
        std::fs::write(dir.path().join("tok"), "t0k\n").unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: x\nclusters:\n- name: c\n  cluster:\n    server: https://h:1\n    certificate-authority: ca.crt\nusers:\n- name: u\n  user:\n    client-certificate: c.crt\n    client-key: c.key\n    tokenFile: tok\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n",
        )
        .unwrap();
        let (_, creds) = load(&path).unwrap();
        assert_eq!(creds.ca_pem.as_deref(), Some(&b"CA"[..]));
        assert_eq!(creds.identity, Some((b"C".to_vec(), b"K".to_vec())));
        assert_eq!(creds.token.as_deref(), Some("t0k"));
    }

    #[test]
    fn bad_base64_names_the_field() {
        let cfg = Config::parse(
            Path::new("k"),
            "current-context: x\nclusters:\n- name: c\n  cluster:\n    server: https://h:1\n    certificate-authority-data: '%%%'\ncontexts:\n- name: x\n  context:\n    cluster: c\n",
        )
        .unwrap();
        let err = cfg.view("x", Path::new(".")).unwrap_err().to_string();
        assert!(err.contains("certificate-authority-data"), "{err}");
    }
}
