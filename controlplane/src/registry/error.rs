//! The API server's errors and their one mapping to the wire: a gRPC code, the message, and
//! a `corral.v1.Status` (reason, object, field causes) in the gRPC status details.

use corral_api::decode::DecodeError;
use corral_api::kinds::ResourceInfo;
use corral_api::status::{ApiStatus, CauseType, StatusCause, StatusDetails, StatusReason};

use crate::store::StoreError;
use crate::validate::FieldError;

/// The object an error is about, as Kubernetes names it in messages: `pods "web-1"`,
/// `deployments.apps "web"` (by resource), or `Deployment.apps "web"` (by kind, in
/// validation errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub group: String,
    /// The resource (`pods`) or the kind (`Pod`).
    pub kind: String,
    pub name: String,
}

impl Subject {
    /// By resource: `deployments.apps "web"`.
    pub fn resource(info: &ResourceInfo, name: &str) -> Self {
        Self {
            group: info.group.to_string(),
            kind: info.plural.to_string(),
            name: name.to_string(),
        }
    }

    /// By kind: `Deployment.apps "web"`.
    pub fn kind(info: &ResourceInfo, name: &str) -> Self {
        Self {
            group: info.group.to_string(),
            kind: info.kind.to_string(),
            name: name.to_string(),
        }
    }

    fn details(&self, causes: Vec<StatusCause>) -> StatusDetails {
        StatusDetails {
            group: self.group.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            uid: String::new(),
            causes,
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{} {:?}", self.kind, self.name)
        } else {
            write!(f, "{}.{} {:?}", self.kind, self.group, self.name)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{what} not found")]
    NotFound { what: Subject },
    #[error("{what} already exists")]
    AlreadyExists { what: Subject },
    #[error("Operation cannot be fulfilled on {what}: {reason}")]
    Conflict { what: Subject, reason: String },
    #[error("{what} is invalid: {}", join(.errors))]
    Invalid {
        what: Subject,
        errors: Vec<FieldError>,
    },
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Refused by a rule of the cluster, not by the request's form (Kubernetes' admission
    /// wording: `configmaps "c" is forbidden: unable to create new content in namespace x
    /// because it is being terminated`).
    #[error("{what} is forbidden: {reason}")]
    Forbidden {
        what: Subject,
        reason: String,
        causes: Vec<StatusCause>,
    },
    /// Refused by authorization, worded by `auth::authz::forbidden_message` (`pods "p" is
    /// forbidden: User "x" cannot delete resource "pods" in API group "" in the namespace
    /// "default"`).
    #[error("{message}")]
    Denied { what: Subject, message: String },
    /// The request carries no identity.
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the server doesn't have a resource type {0:?}")]
    UnknownResource(String),
    #[error("the server does not allow this method on the requested resource: {0}")]
    MethodNotAllowed(String),
    /// The object is not in a state the request can be served in (logs of a pod not yet on a
    /// node, or that its agent could not read).
    #[error("{0}")]
    Precondition(String),
    #[error("too old resource version: {0}")]
    Gone(String),
    /// A list's continue token names a revision whose history was compacted.
    #[error("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")]
    ContinueExpired,
    /// A list asked for a revision the store has not reached.
    #[error("Too large resource version: {wanted}, current: {current}")]
    TooNew { wanted: i64, current: i64 },
    #[error("storage: {0}")]
    Store(#[source] StoreError),
    #[error("{0}")]
    Unavailable(String),
    /// A request body or a stored object over Kubernetes' size limits.
    #[error("{what} is {size}")]
    TooLarge {
        what: String,
        #[source]
        size: corral_api::rules::limits::TooLarge,
    },
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

impl ApiError {
    /// The gRPC code (what clients that read no details go by) and the Status reason.
    fn code_and_reason(&self) -> (tonic::Code, StatusReason) {
        use tonic::Code;
        match self {
            ApiError::NotFound { .. } => (Code::NotFound, StatusReason::NotFound),
            ApiError::AlreadyExists { .. } => (Code::AlreadyExists, StatusReason::AlreadyExists),
            ApiError::Conflict { .. } => (Code::Aborted, StatusReason::Conflict),
            ApiError::Forbidden { .. } | ApiError::Denied { .. } => {
                (Code::PermissionDenied, StatusReason::Forbidden)
            }
            ApiError::Unauthenticated(_) => (Code::Unauthenticated, StatusReason::Unauthorized),
            ApiError::Invalid { .. } => (Code::InvalidArgument, StatusReason::Invalid),
            ApiError::Decode(_) | ApiError::BadRequest(_) | ApiError::UnknownResource(_) => {
                (Code::InvalidArgument, StatusReason::BadRequest)
            }
            ApiError::MethodNotAllowed(_) => {
                (Code::FailedPrecondition, StatusReason::MethodNotAllowed)
            }
            ApiError::Precondition(_) => (Code::FailedPrecondition, StatusReason::BadRequest),
            ApiError::Gone(_) | ApiError::ContinueExpired => {
                (Code::OutOfRange, StatusReason::Expired)
            }
            ApiError::TooNew { .. } => (Code::DeadlineExceeded, StatusReason::Timeout),
            ApiError::Store(_) => (Code::Internal, StatusReason::InternalError),
            ApiError::Unavailable(_) => (Code::Unavailable, StatusReason::ServiceUnavailable),
            ApiError::TooLarge { .. } => {
                (Code::InvalidArgument, StatusReason::RequestEntityTooLarge)
            }
        }
    }

    /// The error as `metav1.Status` data: the reason, the object, and each field error as a
    /// cause (its path, its type, and its text as apimachinery words it).
    pub fn status(&self) -> ApiStatus {
        let (_, reason) = self.code_and_reason();
        let status = ApiStatus::new(reason, self.to_string());
        match self {
            ApiError::NotFound { what }
            | ApiError::AlreadyExists { what }
            | ApiError::Conflict { what, .. }
            | ApiError::Denied { what, .. } => status.with_details(what.details(Vec::new())),
            ApiError::Forbidden { what, causes, .. } => {
                status.with_details(what.details(causes.clone()))
            }
            ApiError::Invalid { what, errors } => {
                let causes = errors
                    .iter()
                    .map(|e| StatusCause {
                        kind: CauseType::of_field_error(&e.detail),
                        field: e.path.clone(),
                        message: e.detail.clone(),
                    })
                    .collect();
                status.with_details(what.details(causes))
            }
            _ => status,
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        let (code, _) = e.code_and_reason();
        let details = e.status().to_details();
        tonic::Status::with_details(code, e.to_string(), details.into())
    }
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::kinds;

    #[test]
    fn each_error_keeps_its_code_and_message_and_carries_its_reason() {
        let pods = |name: &str| Subject::resource(&kinds::PODS, name);
        let cases: Vec<(ApiError, tonic::Code, StatusReason, &str)> = vec![
            (
                ApiError::NotFound { what: pods("x") },
                tonic::Code::NotFound,
                StatusReason::NotFound,
                "pods \"x\" not found",
            ),
            (
                ApiError::AlreadyExists {
                    what: Subject::resource(&kinds::DEPLOYMENTS, "d"),
                },
                tonic::Code::AlreadyExists,
                StatusReason::AlreadyExists,
                "deployments.apps \"d\" already exists",
            ),
            (
                ApiError::Conflict {
                    what: pods("x"),
                    reason: "the pod is being deleted".into(),
                },
                tonic::Code::Aborted,
                StatusReason::Conflict,
                "Operation cannot be fulfilled on pods \"x\": the pod is being deleted",
            ),
            (
                ApiError::BadRequest("bad selector".into()),
                tonic::Code::InvalidArgument,
                StatusReason::BadRequest,
                "bad selector",
            ),
            (
                ApiError::Gone("compacted".into()),
                tonic::Code::OutOfRange,
                StatusReason::Expired,
                "too old resource version: compacted",
            ),
            (
                ApiError::Precondition("pod \"p\" is not scheduled".into()),
                tonic::Code::FailedPrecondition,
                StatusReason::BadRequest,
                "pod \"p\" is not scheduled",
            ),
            (
                ApiError::Unavailable("node \"n\" has no agent connected".into()),
                tonic::Code::Unavailable,
                StatusReason::ServiceUnavailable,
                "node \"n\" has no agent connected",
            ),
        ];
        for (err, code, reason, message) in cases {
            let status = tonic::Status::from(err);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
            let data = ApiStatus::from_details(status.details()).expect("details");
            assert_eq!(data.reason, reason, "{message}");
            assert_eq!(data.message, message);
        }
    }

    #[test]
    fn a_validation_error_carries_its_object_and_field_causes() {
        let err = ApiError::Invalid {
            what: Subject::kind(&kinds::REPLICASETS, "Bad_Name"),
            errors: vec![
                FieldError {
                    path: "metadata.name".into(),
                    detail: "Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain".into(),
                },
                FieldError {
                    path: "spec.selector".into(),
                    detail: "Required value".into(),
                },
            ],
        };
        let status = err.status();
        assert_eq!(status.reason, StatusReason::Invalid);
        assert_eq!(status.code, 422);
        assert_eq!(
            status.message,
            "ReplicaSet.apps \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain, spec.selector: Required value"
        );
        assert_eq!(
            (
                status.details.group.as_str(),
                status.details.kind.as_str(),
                status.details.name.as_str()
            ),
            ("apps", "ReplicaSet", "Bad_Name")
        );
        let causes: Vec<(CauseType, &str, &str)> = status
            .details
            .causes
            .iter()
            .map(|c| (c.kind.clone(), c.field.as_str(), c.message.as_str()))
            .collect();
        assert_eq!(
            causes,
            [
                (
                    CauseType::FieldValueInvalid,
                    "metadata.name",
                    "Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"
                ),
                (
                    CauseType::FieldValueRequired,
                    "spec.selector",
                    "Required value"
                ),
            ]
        );
    }
}
