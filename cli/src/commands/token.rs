//! `corral token create|list|delete` and `corral config create-user`: the id and secret are
//! made here, only the secret's hash goes to the server (a `corral.io/token` Secret created
//! through the normal API, so RBAC on kube-system Secrets governs who may mint tokens).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use corral_api::client::{DeleteOptions, ListParams};
use corral_api::kinds;
use corral_api::token::{self, Token, TokenKind, TokenRecord};
use corral_proto::v1 as pb;
use serde_json::{json, Value};

use super::{errln, out, outln, Ctx};
use crate::error::{local, Result};
use crate::printers::Table;

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub action: TokenAction,
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a join (agent) or user token and print it (the secret is shown only here).
    Create(CreateTokenArgs),
    /// List tokens (never their secrets).
    List,
    /// Delete a token by its id.
    Delete { id: String },
}

#[derive(Debug, Args)]
pub struct CreateTokenArgs {
    /// Lifetime: `24h`, `30m`, `7d`, or `0` for a token that never expires.
    #[arg(long, default_value = "24h")]
    pub ttl: String,
    #[arg(long, default_value = "")]
    pub description: String,
    /// `agent` (may only join nodes) or `user` (authenticates as --user with --group).
    #[arg(long, default_value = "agent")]
    pub kind: String,
    /// User name of a user token.
    #[arg(long)]
    pub user: Option<String>,
    /// Group of a user token (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CreateUserArgs {
    /// The user's name.
    pub name: String,
    /// ClusterRole granted: view, edit, admin (in -n's namespace) or cluster-admin (cluster-wide).
    #[arg(long)]
    pub role: String,
    /// Lifetime of the user's token: `0` (default) never expires.
    #[arg(long, default_value = "0")]
    pub ttl: String,
    /// Write the kubeconfig to this file (mode 0600) instead of printing it.
    #[arg(long = "output-file")]
    pub output_file: Option<PathBuf>,
}

pub(super) fn expiration(ttl: &str) -> Result<Option<jiff::Timestamp>> {
    let ttl = token::parse_ttl(ttl).ok_or_else(|| {
        local(format!(
            "--ttl {ttl:?}: expected a duration such as 24h, 30m, 7d, or 0 for never"
        ))
    })?;
    ttl.map(|d| {
        let span = jiff::SignedDuration::try_from(d).map_err(local)?;
        super::now().checked_add(span).map_err(local)
    })
    .transpose()
}

/// Creates the token's Secret and returns the token.
pub(super) async fn create_token(ctx: &Ctx, record: &mut TokenRecord, token: &Token) -> Result<()> {
    record.id = token.id.clone();
    let secret = record.to_secret();
    ctx.client
        .create_value(&kinds::SECRETS, token::NAMESPACE, &secret, false)
        .await
        .map_err(|e| ctx.about(&kinds::SECRETS, &token.secret_name(), &e))?;
    Ok(())
}

pub async fn run(ctx: &Ctx, args: &TokenArgs, ca_der: Option<Vec<u8>>) -> Result<()> {
    match &args.action {
        TokenAction::Create(a) => {
            let kind = TokenKind::parse(&a.kind)
                .ok_or_else(|| local(format!("--kind {:?}: expected agent or user", a.kind)))?;
            if kind == TokenKind::User && a.user.as_deref().is_none_or(str::is_empty) {
                return Err(local("--kind user needs --user NAME"));
            }
            if kind == TokenKind::Agent && (a.user.is_some() || !a.groups.is_empty()) {
                return Err(local("--user and --group apply only to --kind user"));
            }
            let token = Token::generate(ca_der.as_deref());
            let mut record = TokenRecord::new(&token, kind, &a.description);
            record.expiration = expiration(&a.ttl)?;
            record.user = a.user.clone();
            record.groups = a.groups.clone();
            create_token(ctx, &mut record, &token).await?;
            if token.ca_hash.is_none() {
                errln("warning: no certificate-authority-data in the config: printed the short form; agents joining with it trust the first CA they see");
            }
            outln(&token.to_text())
        }
        TokenAction::List => {
            let (items, _) = ctx
                .client
                .list_value(&kinds::SECRETS, token::NAMESPACE, &ListParams::default())
                .await
                .map_err(|e| ctx.err(&e))?;
            let now = super::now();
            let mut t = Table::new(["ID", "KIND", "TTL", "EXPIRES", "USER", "DESCRIPTION"]);
            for item in &items {
                let Ok(Some(r)) = TokenRecord::from_secret(item) else {
                    continue;
                };
                let (ttl, expires) = match r.expiration {
                    None => ("<forever>".to_string(), "<never>".to_string()),
                    Some(at) if at <= now => ("<expired>".to_string(), at.to_string()),
                    Some(at) => (
                        corral_api::object::human_age(at.as_second() - now.as_second()),
                        at.to_string(),
                    ),
                };
                t.rows.push(vec![
                    r.id.clone(),
                    r.kind.as_str().to_string(),
                    ttl,
                    expires,
                    r.user.clone().unwrap_or_else(|| "<none>".into()),
                    r.description.clone(),
                ]);
            }
            if t.rows.is_empty() {
                errln("No tokens found.");
                return Ok(());
            }
            out(&t.render(true))
        }
        TokenAction::Delete { id } => {
            let name = format!("{}{id}", token::SECRET_PREFIX);
            ctx.client
                .delete_value(
                    &kinds::SECRETS,
                    token::NAMESPACE,
                    &name,
                    DeleteOptions::default(),
                )
                .await
                .map_err(|e| ctx.about(&kinds::SECRETS, &name, &e))?;
            outln(&format!("token \"{id}\" deleted"))
        }
    }
}

/// The binding `config create-user` makes (pure).
pub fn binding(user: &str, role: &str, namespace: &str) -> Result<(&'static str, Value)> {
    let subject = json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}]);
    let role_ref =
        json!({"kind": "ClusterRole", "apiGroup": "rbac.authorization.k8s.io", "name": role});
    let name = format!("corral-user-{user}-{role}");
    match role {
        "cluster-admin" => Ok((
            "clusterrolebindings",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                   "metadata": {"name": name}, "subjects": subject, "roleRef": role_ref}),
        )),
        "view" | "edit" | "admin" => Ok((
            "rolebindings",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": name, "namespace": namespace},
                   "subjects": subject, "roleRef": role_ref}),
        )),
        other => Err(local(format!(
            "--role {other:?}: expected view, edit, admin or cluster-admin"
        ))),
    }
}

/// A kubeconfig for a token user (pure).
pub fn user_kubeconfig(
    server: &str,
    ca_pem: Option<&str>,
    user: &str,
    token: &str,
    namespace: &str,
) -> String {
    let creds = corral_api::Credentials {
        ca_pem: ca_pem.map(|c| c.as_bytes().to_vec()),
        identity: None,
        token: Some(token.to_string()),
    };
    corral_api::kubeconfig::inline(user, server, &creds, Some(namespace)).to_yaml()
}

pub async fn create_user(ctx: &Ctx, a: &CreateUserArgs, ca_der: Option<Vec<u8>>) -> Result<()> {
    if !corral_api::rules::names::is_dns1123_subdomain(&a.name) {
        return Err(local(format!(
            "user name {:?}: must be lower-case letters, digits, '-' and '.'",
            a.name
        )));
    }
    let (resource, object) = binding(&a.name, &a.role, &ctx.namespace)?;
    let token = Token::generate(ca_der.as_deref());
    let mut record = TokenRecord::new(&token, TokenKind::User, &format!("user {}", a.name));
    record.expiration = expiration(&a.ttl)?;
    record.user = Some(a.name.clone());
    create_token(ctx, &mut record, &token).await?;
    // RoleBinding kinds come with the authz work; the generic create takes them as JSON.
    let req = pb::CreateRequest {
        resource: resource.to_string(),
        namespace: if resource == "rolebindings" {
            ctx.namespace.clone()
        } else {
            String::new()
        },
        json: serde_json::to_vec(&object).expect("JSON serializes"),
        dry_run: false,
    };
    if let Err(status) = ctx.client.raw().create(req).await {
        // Do not leave a token behind that grants nothing.
        let _ = ctx
            .client
            .delete_value(
                &kinds::SECRETS,
                token::NAMESPACE,
                &token.secret_name(),
                DeleteOptions::default(),
            )
            .await;
        return Err(ctx.err(&status.into()));
    }
    let ca_pem = ca_der.as_deref().map(corral_api::pin::der_to_pem);
    let kubeconfig = user_kubeconfig(
        &ctx.server,
        ca_pem.as_deref(),
        &a.name,
        &format!("{}.{}", token.id, token.secret),
        &ctx.namespace,
    );
    match &a.output_file {
        None => out(&kubeconfig),
        Some(path) => {
            corral_api::files::write_private(path, kubeconfig.as_bytes())
                .map_err(|e| local(format!("writing {}: {e}", path.display())))?;
            outln(&format!(
                "user \"{}\" ({} via {resource}) written to {}",
                a.name,
                a.role,
                path.display()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_become_namespaced_or_cluster_bindings() {
        let (r, b) = binding("alice", "view", "dev").unwrap();
        assert_eq!(r, "rolebindings");
        assert_eq!(b["metadata"]["namespace"], "dev");
        assert_eq!(b["roleRef"]["name"], "view");
        assert_eq!(b["subjects"][0]["name"], "alice");
        let (r, b) = binding("bob", "cluster-admin", "dev").unwrap();
        assert_eq!(r, "clusterrolebindings");
        assert!(b["metadata"].get("namespace").is_none());
        assert!(binding("eve", "root", "dev").is_err());
    }

    #[test]
    fn user_kubeconfigs_carry_server_ca_and_token() {
        let text = user_kubeconfig(
            "https://cp:7443",
            Some("PEM"),
            "alice",
            "abcdef.0123456789abcdef",
            "dev",
        );
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(doc["clusters"][0]["cluster"]["server"], "https://cp:7443");
        assert_eq!(
            doc["clusters"][0]["cluster"]["certificate-authority-data"],
            "UEVN"
        );
        assert_eq!(doc["users"][0]["user"]["token"], "abcdef.0123456789abcdef");
        assert_eq!(doc["contexts"][0]["context"]["namespace"], "dev");
    }
}
