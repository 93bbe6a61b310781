//! Why an API call failed, as data: Kubernetes' `metav1.Status` (reason, the object, the field
//! causes). The API server sends one, prost-encoded, in the gRPC status details of each error;
//! the client decodes it here, so callers and the CLI act on the reason and causes, not on text.

use corral_proto as pb;
use prost::Message;

/// Declares an enum of Kubernetes' string constants with their spelling, and `Other` for a
/// string this build does not know (a newer server), kept as sent.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)*
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => stringify!($variant),)*
                    Self::Other(s) => s,
                }
            }

            pub fn parse(s: &str) -> Self {
                match s {
                    $(stringify!($variant) => Self::$variant,)*
                    other => Self::Other(other.to_string()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// `metav1.StatusReason`: the machine-readable why of a failure.
    StatusReason {
        Unauthorized,
        Forbidden,
        NotFound,
        AlreadyExists,
        Conflict,
        Gone,
        Invalid,
        ServerTimeout,
        StoreReadError,
        Timeout,
        TooManyRequests,
        BadRequest,
        MethodNotAllowed,
        NotAcceptable,
        RequestEntityTooLarge,
        UnsupportedMediaType,
        InternalError,
        Expired,
        ServiceUnavailable,
    }
}

impl StatusReason {
    /// The HTTP code Kubernetes answers with for this reason.
    pub fn http_code(&self) -> i32 {
        use StatusReason::*;
        match self {
            Unauthorized => 401,
            Forbidden => 403,
            NotFound => 404,
            AlreadyExists | Conflict => 409,
            Gone | Expired => 410,
            Invalid => 422,
            Timeout => 504,
            TooManyRequests => 429,
            BadRequest => 400,
            MethodNotAllowed => 405,
            NotAcceptable => 406,
            RequestEntityTooLarge => 413,
            UnsupportedMediaType => 415,
            ServiceUnavailable => 503,
            ServerTimeout | StoreReadError | InternalError | Other(_) => 500,
        }
    }
}

string_enum! {
    /// `metav1.CauseType`: what is wrong with one field.
    CauseType {
        FieldValueNotFound,
        FieldValueRequired,
        FieldValueDuplicate,
        FieldValueInvalid,
        FieldValueNotSupported,
        FieldValueForbidden,
        FieldValueTooLong,
        FieldValueTooMany,
        InternalError,
        FieldValueTypeInvalid,
        UnexpectedServerResponse,
        FieldManagerConflict,
        ResourceVersionTooLarge,
    }
}

/// How apimachinery's `field.ErrorType` words each cause at the start of a field error
/// ("spec.replicas: Invalid value: -1: ..."); `FieldValueTypeInvalid` shares "Invalid value".
const FIELD_ERROR_WORDS: &[(&str, CauseType)] = &[
    ("Not found", CauseType::FieldValueNotFound),
    ("Required value", CauseType::FieldValueRequired),
    ("Duplicate value", CauseType::FieldValueDuplicate),
    ("Invalid value", CauseType::FieldValueInvalid),
    ("Unsupported value", CauseType::FieldValueNotSupported),
    ("Forbidden", CauseType::FieldValueForbidden),
    ("Too long", CauseType::FieldValueTooLong),
    ("Too many", CauseType::FieldValueTooMany),
    ("Internal error", CauseType::InternalError),
];

impl CauseType {
    /// The type of a field error from its body as apimachinery renders it ("Invalid value:
    /// ...", "Required value"); a body in no known words is an invalid value.
    pub fn of_field_error(body: &str) -> CauseType {
        FIELD_ERROR_WORDS
            .iter()
            .find(|(word, _)| {
                body.strip_prefix(word)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
            })
            .map_or(CauseType::FieldValueInvalid, |(_, t)| t.clone())
    }
}

/// One cause of a failure (`metav1.StatusCause`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCause {
    /// `metav1.StatusCause.Type`.
    pub kind: CauseType,
    /// The field's path: `spec.replicas`.
    pub field: String,
    /// What is wrong, as apimachinery words it: `Invalid value: -1: must be ...`.
    pub message: String,
}

/// The object a failure is about (`metav1.StatusDetails`). `kind` is the resource
/// (`deployments`) for NotFound, AlreadyExists and Conflict, and the kind (`Deployment`) for
/// Invalid, as Kubernetes fills it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusDetails {
    pub group: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub causes: Vec<StatusCause>,
}

/// A failed call (`metav1.Status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiStatus {
    /// The HTTP code Kubernetes would answer with.
    pub code: i32,
    pub reason: StatusReason,
    pub message: String,
    pub details: StatusDetails,
}

impl ApiStatus {
    pub fn new(reason: StatusReason, message: impl Into<String>) -> Self {
        Self {
            code: reason.http_code(),
            reason,
            message: message.into(),
            details: StatusDetails::default(),
        }
    }

    pub fn with_details(mut self, details: StatusDetails) -> Self {
        self.details = details;
        self
    }

    /// The prost-encoded form the server puts in the gRPC status details.
    pub fn to_details(&self) -> Vec<u8> {
        pb::Status::from(self).encode_to_vec()
    }

    /// Decodes the gRPC status details; `None` when there are none (an error made by the
    /// transport, not by the server) or they are not a Status.
    pub fn from_details(bytes: &[u8]) -> Option<Self> {
        if bytes.is_empty() {
            return None;
        }
        let status = pb::Status::decode(bytes).ok()?;
        (!status.reason.is_empty()).then(|| status.into())
    }
}

impl From<&ApiStatus> for pb::Status {
    fn from(s: &ApiStatus) -> Self {
        let d = &s.details;
        pb::Status {
            code: s.code,
            reason: s.reason.as_str().to_string(),
            message: s.message.clone(),
            details: Some(pb::StatusDetails {
                group: d.group.clone(),
                kind: d.kind.clone(),
                name: d.name.clone(),
                uid: d.uid.clone(),
                causes: d
                    .causes
                    .iter()
                    .map(|c| pb::StatusCause {
                        r#type: c.kind.as_str().to_string(),
                        field: c.field.clone(),
                        message: c.message.clone(),
                    })
                    .collect(),
            }),
        }
    }
}

impl From<pb::Status> for ApiStatus {
    fn from(s: pb::Status) -> Self {
        let d = s.details.unwrap_or_default();
        ApiStatus {
            code: s.code,
            reason: StatusReason::parse(&s.reason),
            message: s.message,
            details: StatusDetails {
                group: d.group,
                kind: d.kind,
                name: d.name,
                uid: d.uid,
                causes: d
                    .causes
                    .into_iter()
                    .map(|c| StatusCause {
                        kind: CauseType::parse(&c.r#type),
                        field: c.field,
                        message: c.message,
                    })
                    .collect(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_keep_their_kubernetes_spelling_and_http_code() {
        let cases = [
            ("NotFound", StatusReason::NotFound, 404),
            ("AlreadyExists", StatusReason::AlreadyExists, 409),
            ("Conflict", StatusReason::Conflict, 409),
            ("Invalid", StatusReason::Invalid, 422),
            ("BadRequest", StatusReason::BadRequest, 400),
            ("Expired", StatusReason::Expired, 410),
            ("MethodNotAllowed", StatusReason::MethodNotAllowed, 405),
            ("ServiceUnavailable", StatusReason::ServiceUnavailable, 503),
            (
                "SomethingNew",
                StatusReason::Other("SomethingNew".into()),
                500,
            ),
        ];
        for (text, reason, code) in cases {
            assert_eq!(StatusReason::parse(text), reason, "{text}");
            assert_eq!(reason.as_str(), text);
            assert_eq!(reason.http_code(), code, "{text}");
        }
    }

    #[test]
    fn a_field_error_body_gives_its_cause_type() {
        let cases = [
            (
                "Invalid value: -1: must be >= 0",
                CauseType::FieldValueInvalid,
            ),
            ("Required value", CauseType::FieldValueRequired),
            (
                "Required value: name is required for apply",
                CauseType::FieldValueRequired,
            ),
            (
                "Unsupported value: \"Never\": supported values: \"Always\"",
                CauseType::FieldValueNotSupported,
            ),
            ("Duplicate value: \"c\"", CauseType::FieldValueDuplicate),
            ("Forbidden: may not change", CauseType::FieldValueForbidden),
            ("Too long: at most 10 bytes", CauseType::FieldValueTooLong),
            ("Not found: \"v\"", CauseType::FieldValueNotFound),
            ("Internal error: range is full", CauseType::InternalError),
            ("Forbiddenish", CauseType::FieldValueInvalid),
            ("something else", CauseType::FieldValueInvalid),
        ];
        for (body, want) in cases {
            assert_eq!(CauseType::of_field_error(body), want, "{body}");
        }
    }

    #[test]
    fn a_status_survives_the_grpc_details_unchanged() {
        let status = ApiStatus::new(StatusReason::Invalid, "Pod \"p\" is invalid: ...")
            .with_details(StatusDetails {
                group: String::new(),
                kind: "Pod".into(),
                name: "p".into(),
                uid: String::new(),
                causes: vec![StatusCause {
                    kind: CauseType::FieldValueRequired,
                    field: "spec.containers".into(),
                    message: "Required value".into(),
                }],
            });
        assert_eq!(status.code, 422);
        assert_eq!(ApiStatus::from_details(&status.to_details()), Some(status));
        assert_eq!(ApiStatus::from_details(&[]), None);
    }
}
