//! The client configuration file (`~/.corral/config`, a kubeconfig: clusters with a server
//! address and CA, users with credentials, contexts tying them to a default namespace; parsed
//! by `corral_api::kubeconfig`) and how flags and the environment override it.

use std::path::{Path, PathBuf};

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7443";
pub const ENV_SERVER: &str = "CORRAL_SERVER";
pub const ENV_CONFIG: &str = "CORRAL_CONFIG";

/// The file is a kubeconfig: one parser for it, in `corral-api`.
pub use corral_api::kubeconfig::{
    Cluster, Config, Context, KubeconfigError as ConfigError, NamedCluster, NamedContext,
    NamedUser, User,
};
use corral_api::Credentials;

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
    /// The CA, client certificate and token of the context's cluster and user.
    pub credentials: Credentials,
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

/// Applies the precedence rules: `--server` > `CORRAL_SERVER` > the context's cluster >
/// the default address; `-n` > the context's namespace > `default`. Relative file names in
/// the file are read from `base` (the file's directory).
pub fn resolve(cfg: &Config, o: &Overrides, base: &Path) -> Result<Resolved, ConfigError> {
    let context_name = o
        .context
        .clone()
        .or_else(|| Some(cfg.current_context.clone()).filter(|c| !c.is_empty()));
    let view = context_name
        .as_deref()
        .map(|name| cfg.view(name, base))
        .transpose()?;
    let server = o
        .server
        .clone()
        .filter(|s| !s.is_empty())
        .or(o.env_server.clone().filter(|s| !s.is_empty()))
        .or(view.as_ref().map(|v| v.server.clone()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_string());
    let namespace_explicit = o.namespace.as_ref().is_some_and(|n| !n.is_empty());
    let namespace = o
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .or(view.as_ref().and_then(|v| v.namespace.clone()))
        .unwrap_or_else(|| "default".to_string());
    let credentials = view.map(|v| v.credentials).unwrap_or_default();
    Ok(Resolved {
        server,
        namespace,
        namespace_explicit,
        context: context_name,
        token: credentials.token.clone(),
        credentials,
    })
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
        let r = resolve(&sample(), &Overrides::default(), Path::new(".")).unwrap();
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
        assert_eq!(
            resolve(&cfg, &o, Path::new(".")).unwrap().server,
            "http://127.0.0.2:1"
        );
        o.server = Some("http://127.0.0.3:2".into());
        assert_eq!(
            resolve(&cfg, &o, Path::new(".")).unwrap().server,
            "http://127.0.0.3:2"
        );
    }

    #[test]
    fn context_flag_and_namespace_flag_override_the_file() {
        let o = Overrides {
            context: Some("local".into()),
            namespace: Some("kube-system".into()),
            ..Default::default()
        };
        let r = resolve(&sample(), &o, Path::new(".")).unwrap();
        assert_eq!(r.server, "http://127.0.0.1:7443");
        assert_eq!(r.namespace, "kube-system");
        assert!(r.namespace_explicit);
    }

    #[test]
    fn no_file_means_the_default_server_and_namespace() {
        let r = resolve(&Config::empty(), &Overrides::default(), Path::new(".")).unwrap();
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
            resolve(&sample(), &o, Path::new("."))
                .unwrap_err()
                .to_string(),
            "context \"nope\" does not exist"
        );
        let mut cfg = sample();
        cfg.clusters.retain(|c| c.name != "lab");
        let err = resolve(&cfg, &Overrides::default(), Path::new("."))
            .unwrap_err()
            .to_string();
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
            resolve(&back, &Overrides::default(), Path::new("."))
                .unwrap()
                .namespace,
            "ns1"
        );
    }
}
