//! Port-forward's agent end: one tunnel stream per forwarded TCP connection. The pod's port
//! is dialed on 127.0.0.1 inside its network namespace (`dial.rs`, as CRI does), then bytes
//! flow both ways: `stdin` frames to the port, `stdout` frames back under the stream's
//! credit, `stdin_eof` as a TCP half-close, and a `StreamEnd` when either side is done.

mod dial;
mod stream;

pub use dial::{dial, DialError, Netns};
pub use stream::{connect, serve, ForwardError};
