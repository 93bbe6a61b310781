//! The API server's errors, each mapped to one gRPC code in `server.rs`.

use crate::store::StoreError;
use crate::validate::FieldError;
use corral_api::decode::DecodeError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    #[error("Operation cannot be fulfilled on {what}: {reason}")]
    Conflict { what: String, reason: String },
    #[error("{what} is invalid: {}", join(.errors))]
    Invalid {
        what: String,
        errors: Vec<FieldError>,
    },
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    BadRequest(String),
    #[error("the server doesn't have a resource type {0:?}")]
    UnknownResource(String),
    #[error("the server does not allow this method on the requested resource: {0}")]
    MethodNotAllowed(String),
    #[error("too old resource version: {0}")]
    Gone(String),
    #[error("storage: {0}")]
    Store(#[source] StoreError),
    #[error("{0}")]
    Unavailable(String),
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Compacted { .. } | StoreError::WatchLagged => ApiError::Gone(e.to_string()),
            other => ApiError::Store(other),
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        use tonic::Code;
        let code = match &e {
            ApiError::NotFound { .. } => Code::NotFound,
            ApiError::AlreadyExists { .. } => Code::AlreadyExists,
            ApiError::Conflict { .. } => Code::Aborted,
            ApiError::Invalid { .. }
            | ApiError::Decode(_)
            | ApiError::BadRequest(_)
            | ApiError::UnknownResource(_) => Code::InvalidArgument,
            ApiError::MethodNotAllowed(_) => Code::FailedPrecondition,
            ApiError::Gone(_) => Code::OutOfRange,
            ApiError::Store(_) => Code::Internal,
            ApiError::Unavailable(_) => Code::Unavailable,
        };
        tonic::Status::new(code, e.to_string())
    }
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;
