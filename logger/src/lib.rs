//! Container logs on a node: the timed line format (`format.rs`, CRI's) and the copier that
//! containerd's shim runs for each container task to write it (`copier.rs`, the
//! `corral-logger` binary). The agent reads the files back through `format`.

pub mod copier;
pub mod format;

/// The copier binary's file name, looked for beside the agent's.
pub const BINARY: &str = "corral-logger";
