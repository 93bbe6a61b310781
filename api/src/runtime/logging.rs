//! How every Corral binary logs: `tracing` to stderr (the journal under systemd), filtered by
//! `RUST_LOG` (default `info`; the DNS server's per-query lines only when it names hickory), with colour only when stderr is a terminal.

use std::io::IsTerminal;

/// Installs the process-wide subscriber; a second call is a no-op.
pub fn init() {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let mut filter =
        tracing_subscriber::EnvFilter::try_new(&spec).unwrap_or_else(|_| "info".into());
    if !spec.contains("hickory") {
        // The DNS server logs every query at info: thousands a second on a busy node.
        if let Ok(quiet) = "hickory_server=warn".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
