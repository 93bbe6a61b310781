//! `corral config use-context|get-contexts|current-context|set-cluster|set-credentials|
//! set-context|view`.

use std::path::Path;

use super::{out, outln};
use crate::args::ConfigAction;
use crate::config::Config;
use crate::error::{local, Result};
use crate::printers::Table;

/// `namespace` is the global `-n`, which `set-context` stores in the context.
pub fn run(path: &Path, action: &ConfigAction, namespace: Option<&str>) -> Result<()> {
    let mut cfg = Config::load(path).map_err(local)?;
    match action {
        ConfigAction::UseContext { name } => {
            if cfg.context(name).is_none() {
                return Err(local(format!("no context exists with the name: {name:?}")));
            }
            cfg.current_context = name.clone();
            cfg.save(path).map_err(local)?;
            outln(&format!("Switched to context {name:?}."))
        }
        ConfigAction::GetContexts => {
            let mut t = Table::new(["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]);
            for c in &cfg.contexts {
                t.rows.push(vec![
                    if c.name == cfg.current_context {
                        "*".into()
                    } else {
                        String::new()
                    },
                    c.name.clone(),
                    c.context.cluster.clone(),
                    c.context.user.clone(),
                    c.context.namespace.clone().unwrap_or_default(),
                ]);
            }
            out(&t.render(true))
        }
        ConfigAction::CurrentContext => {
            if cfg.current_context.is_empty() {
                Err(local("current-context is not set"))
            } else {
                outln(&cfg.current_context)
            }
        }
        ConfigAction::SetCluster { name, server } => {
            if !server.starts_with("http://") && !server.starts_with("https://") {
                return Err(local(format!("server {server:?} must be http://HOST:PORT")));
            }
            cfg.set_cluster(name, server);
            cfg.save(path).map_err(local)?;
            outln(&format!("Cluster {name:?} set."))
        }
        ConfigAction::SetCredentials { name, token } => {
            cfg.set_credentials(name, token.clone());
            cfg.save(path).map_err(local)?;
            outln(&format!("User {name:?} set."))
        }
        ConfigAction::SetContext {
            name,
            cluster,
            user,
        } => {
            let existed = cfg.context(name).is_some();
            cfg.set_context(name, cluster.as_deref(), user.as_deref(), namespace);
            cfg.save(path).map_err(local)?;
            outln(&format!(
                "Context {name:?} {}.",
                if existed { "modified" } else { "created" }
            ))
        }
        ConfigAction::View => out(&serde_yaml::to_string(&cfg).map_err(local)?),
        // Needs the server: dispatched with the commands that connect.
        ConfigAction::CreateUser(_) => Err(local("config create-user needs a control plane")),
    }
}
