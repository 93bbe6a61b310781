//! `corral dashboard`: mints a short-lived read-only user token (group
//! `corral:dashboard-viewers`, which the control plane's default ClusterRole lets get, list and
//! watch nodes, pods and ReplicaSets) and prints the page's URL with the token in the fragment,
//! which browsers never send to a server, plus the CA file for the browser to trust.

use std::path::PathBuf;

use clap::Args;
use corral_api::token::{self, Token, TokenKind, TokenRecord};

use super::{outln, Ctx};
use crate::error::{local, Result};

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Lifetime of the read-only token the URL carries (`30m`, `8h`, `7d`).
    #[arg(long, default_value = "8h")]
    pub ttl: String,
    /// Write the cluster CA (PEM) here for the browser to trust (default: `dashboard-ca.crt`
    /// beside the config file).
    #[arg(long = "ca-file")]
    pub ca_file: Option<PathBuf>,
}

/// The user name a dashboard token authenticates as: its own, so audit and `token list` tell
/// it apart from the user who made it.
pub fn token_user(id: &str) -> String {
    format!("corral:dashboard:{id}")
}

/// The page's URL on the first of the context's servers, with the token in the fragment (pure).
pub fn url(server: &str, bearer: &str) -> Result<String> {
    let first = server.split(',').next().unwrap_or("").trim();
    let (scheme, rest) = first
        .split_once("://")
        .filter(|(s, _)| *s == "https" || *s == "http")
        .ok_or_else(|| local(format!("server {first:?}: expected https://HOST:PORT")))?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err(local(format!("server {first:?}: no host")));
    }
    Ok(format!("{scheme}://{authority}/dashboard/#token={bearer}"))
}

/// The token's record: a user token of its own user in the dashboard group only.
pub fn record(t: &Token, expiration: Option<jiff::Timestamp>) -> TokenRecord {
    let mut r = TokenRecord::new(t, TokenKind::User, "corral dashboard (read-only)");
    r.user = Some(token_user(&t.id));
    r.groups = vec![token::DASHBOARD_GROUP.to_string()];
    r.expiration = expiration;
    r
}

pub async fn run(
    ctx: &Ctx,
    a: &DashboardArgs,
    ca_der: Option<Vec<u8>>,
    default_ca_file: PathBuf,
) -> Result<()> {
    let expiration = super::token::expiration(&a.ttl)?;
    if expiration.is_none() {
        return Err(local("--ttl 0: a dashboard token must expire"));
    }
    let t = Token::generate(ca_der.as_deref());
    let bearer = format!("{}.{}", t.id, t.secret);
    let page = url(&ctx.server, &bearer)?;
    let mut rec = record(&t, expiration);
    super::token::create_token(ctx, &mut rec, &t).await?;
    outln(&format!(
        "Open the live picture of the cluster (read-only token {:?}, expires {}):\n  {page}",
        t.id,
        expiration.map(|e| e.to_string()).unwrap_or_default()
    ))?;
    if let Some(der) = ca_der {
        let path = a.ca_file.clone().unwrap_or(default_ca_file);
        let pem = corral_api::pin::der_to_pem(&der);
        corral_api::files::write_atomic(&path, pem.as_bytes(), 0o644)
            .map_err(|e| local(format!("writing {}: {e}", path.display())))?;
        outln(&format!(
            "The server's certificate is issued by the cluster CA: have the browser trust\n  {}",
            path.display()
        ))?;
    }
    outln(&format!("Revoke it with: corral token delete {}", t.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_points_at_the_first_servers_dashboard_with_the_token_in_the_fragment() {
        let cases = [
            (
                "https://127.0.0.1:7443",
                "https://127.0.0.1:7443/dashboard/#token=T",
            ),
            ("https://cp:7443/", "https://cp:7443/dashboard/#token=T"),
            ("https://a:1,https://b:2", "https://a:1/dashboard/#token=T"),
            (
                "http://127.0.0.1:8080",
                "http://127.0.0.1:8080/dashboard/#token=T",
            ),
        ];
        for (server, want) in cases {
            assert_eq!(url(server, "T").unwrap(), want, "{server}");
        }
        for bad in ["127.0.0.1:7443", "ftp://x", "https://"] {
            assert!(url(bad, "T").is_err(), "{bad}");
        }
    }

    #[test]
    fn a_dashboard_token_is_its_own_user_in_the_viewers_group_only() {
        let t = Token::parse("abcdef.0123456789abcdef").unwrap();
        let r = record(&t, Some(jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(r.kind, TokenKind::User);
        assert_eq!(r.user.as_deref(), Some("corral:dashboard:abcdef"));
        assert_eq!(r.groups, [token::DASHBOARD_GROUP]);
        assert!(r.expiration.is_some());
        assert_ne!(r.secret_sha256, t.secret, "only the hash is stored");
    }
}
