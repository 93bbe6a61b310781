//! `corral version`, `completion`, `api-resources`.

use clap::CommandFactory;
use corral_api::kinds;

use super::{out, outln, Ctx};
use crate::error::{local, Result};
use crate::printers::Table;

pub const CLIENT_VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

pub async fn run(ctx: &Ctx, client_only: bool) -> Result<()> {
    outln(&format!("Client Version: {CLIENT_VERSION}"))?;
    if client_only {
        return Ok(());
    }
    let v = ctx.client.version().await.map_err(|e| ctx.err(&e))?;
    let version = if v.version.starts_with('v') {
        v.version.clone()
    } else {
        format!("v{}", v.version)
    };
    let mut extra = Vec::new();
    if !v.git_commit.is_empty() {
        extra.push(format!("commit {}", v.git_commit));
    }
    if !v.store.is_empty() {
        extra.push(format!("store {}", v.store));
    }
    if extra.is_empty() {
        outln(&format!("Server Version: {version}"))
    } else {
        outln(&format!("Server Version: {version} ({})", extra.join(", ")))
    }
}

pub fn completion(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = crate::args::Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "corral", &mut buf);
    out(&String::from_utf8(buf).map_err(local)?)
}

pub fn api_resources() -> Result<()> {
    let mut t = Table::new(["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]);
    for r in kinds::ALL {
        t.rows.push(vec![
            r.plural.to_string(),
            r.short_names.join(","),
            r.api_version(),
            r.namespaced.to_string(),
            r.kind.to_string(),
        ]);
    }
    out(&t.render(true))
}
