//! How every Corral binary logs: `tracing` to stderr (the journal under systemd), filtered by
//! `RUST_LOG` (default `info`), with colour only when stderr is a terminal.

use std::io::IsTerminal;

/// Installs the process-wide subscriber; a second call is a no-op.
pub fn init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
