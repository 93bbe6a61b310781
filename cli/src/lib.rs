//! `corral`: kubectl's verbs, flags and output for Corral.
//!
//! `printers` are pure (object → table/YAML/describe text), `commands` talk to the control plane
//! through `corral_api::Client`, `config` reads `~/.corral/config`. `main.rs` only parses flags.

pub mod args;
pub mod commands;
pub mod config;
pub mod error;
pub mod jsonpath;
pub use corral_api::printers;

use std::io::Write;

pub use error::CliError;

/// Runs one command line; the error, if any, is ready to print as is.
pub async fn run(cli: args::Cli) -> Result<(), CliError> {
    commands::dispatch(cli).await
}

/// Prints the error the way kubectl does and returns the process exit code.
pub fn report(result: Result<(), CliError>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(CliError::Reported) => 1,
        Err(CliError::Exit(code)) => code,
        Err(CliError::Message(m)) => {
            let _ = writeln!(std::io::stderr(), "{m}");
            1
        }
    }
}
