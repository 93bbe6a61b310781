//! The errors of every containerd call Corral makes: gRPC failures naming the operation and
//! object, and the image, archive and pull failures found while reading what containerd holds.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to containerd at {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("containerd {op} {what}: {source}")]
    Grpc {
        op: &'static str,
        what: String,
        #[source]
        source: tonic::Status,
    },
    #[error("image {0:?} not found")]
    ImageNotFound(String),
    #[error("image {reference:?}: {message}")]
    BadImage { reference: String, message: String },
    #[error("image archive {path}: {message}")]
    BadArchive { path: PathBuf, message: String },
    #[error("pulling {reference:?}: {message}")]
    Pull { reference: String, message: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Grpc { source, .. } if source.code() == tonic::Code::NotFound)
    }

    /// For `map_err`: a failed gRPC call `op` on `what` (a container id, digest, reference).
    pub fn grpc(op: &'static str, what: impl Into<String>) -> impl FnOnce(tonic::Status) -> Self {
        let what = what.into();
        move |source| Error::Grpc { op, what, source }
    }

    /// For `map_err`: a failed file operation, `what` saying which and on what path.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
