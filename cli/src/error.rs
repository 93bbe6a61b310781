//! kubectl-shaped error messages: `Error from server (NotFound): pods "x" not found`,
//! `error: the server doesn't have a resource type "gadgets"`, and the connection message.

use corral_api::client::Error as ClientError;
use corral_api::kinds::ResourceInfo;
use corral_api::status::{ApiStatus, StatusDetails, StatusReason};

/// An error that is shown to the user exactly as its text says.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Printed verbatim (already carries its `error:` or `Error from server` prefix).
    #[error("{0}")]
    Message(String),
    /// The details were already printed while the command went on; only the exit code is left.
    #[error("")]
    Reported,
    /// Exit with this code, everything already printed (`corral exec`: the remote
    /// command's exit code).
    #[error("")]
    Exit(i32),
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;

/// A local (client-side) error: `error: ...`.
pub fn local(msg: impl std::fmt::Display) -> CliError {
    CliError::Message(format!("error: {msg}"))
}

/// kubectl's resource spelling in server messages: `pods`, `deployments.apps`.
pub fn resource_name(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        info.plural.to_string()
    } else {
        format!("{}.{}", info.plural, info.group)
    }
}

/// The reason of an error the server sent no Status for (the transport made it, or a server
/// that predates them): kubectl's StatusReason for its gRPC code.
fn reason_of_code(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        Aborted => "Conflict",
        FailedPrecondition => "BadRequest",
        InvalidArgument => "BadRequest",
        OutOfRange => "Expired",
        DeadlineExceeded => "Timeout",
        PermissionDenied => "Forbidden",
        Unauthenticated => "Unauthorized",
        ResourceExhausted => "TooManyRequests",
        Unimplemented => "MethodNotAllowed",
        Unavailable => "ServiceUnavailable",
        _ => "InternalError",
    }
}

fn host_port(server: &str) -> &str {
    server
        .split("://")
        .nth(1)
        .unwrap_or(server)
        .trim_end_matches('/')
}

/// How a client error reads, from what the server said when it said something.
enum Said<'a> {
    /// No answer from a server: the connection failed.
    Refused,
    /// A validation failure, with its object and field causes.
    Invalid(&'a ApiStatus),
    /// Any other answer: its reason and message.
    Failed { reason: &'a str, message: &'a str },
    /// Not from the server at all (decoding, an unknown kind).
    Local,
}

fn said(e: &ClientError) -> Said<'_> {
    match e {
        ClientError::Connect { .. } => Said::Refused,
        ClientError::Api {
            status: Some(status),
            ..
        } if status.reason == StatusReason::Invalid => Said::Invalid(status),
        ClientError::Api {
            status: Some(status),
            ..
        } => Said::Failed {
            reason: status.reason.as_str(),
            message: &status.message,
        },
        // Unavailable with no Status from a server: the transport could not reach one.
        ClientError::Api {
            code: tonic::Code::Unavailable,
            status: None,
            ..
        } => Said::Refused,
        ClientError::Api {
            code,
            message,
            status: None,
        } => Said::Failed {
            reason: reason_of_code(*code),
            message,
        },
        _ => Said::Local,
    }
}

/// Formats a client error as kubectl would.
pub fn server(server: &str, e: &ClientError) -> CliError {
    match said(e) {
        Said::Refused => connection_refused(server),
        Said::Invalid(status) => CliError::Message(invalid_message(status)),
        Said::Failed { reason, message } => {
            CliError::Message(format!("Error from server ({reason}): {message}"))
        }
        Said::Local => local(e),
    }
}

/// `Deployment.apps "x"`: the object of a validation failure, as its message names it.
fn invalid_object(details: &StatusDetails) -> String {
    if details.group.is_empty() {
        format!("{} {:?}", details.kind, details.name)
    } else {
        format!("{}.{} {:?}", details.kind, details.group, details.name)
    }
}

/// `The Deployment "x" is invalid: ...`, with one `* path: ...` line per field cause when
/// there are several, as kubectl prints them.
pub fn invalid_message(status: &ApiStatus) -> String {
    let causes = &status.details.causes;
    if causes.len() <= 1 {
        return format!("The {}", status.message);
    }
    let bullets: Vec<String> = causes
        .iter()
        .map(|c| match c.field.as_str() {
            "" => format!("* {}", c.message),
            field => format!("* {field}: {}", c.message),
        })
        .collect();
    format!(
        "The {} is invalid: \n{}",
        invalid_object(&status.details),
        bullets.join("\n")
    )
}

/// A server error with what was being done: `Error from server (Conflict): error when
/// applying "f.yaml": ...`; a validation failure reads as the server words it.
pub fn server_doing(server_addr: &str, doing: &str, e: &ClientError) -> CliError {
    match said(e) {
        Said::Invalid(status) => CliError::Message(format!("The {}", status.message)),
        Said::Failed { reason, message } => {
            CliError::Message(format!("Error from server ({reason}): {doing}: {message}"))
        }
        Said::Refused | Said::Local => server(server_addr, e),
    }
}

fn connection_refused(server: &str) -> CliError {
    CliError::Message(format!(
        "The connection to the server {} was refused - did you specify the right host or port?",
        host_port(server)
    ))
}

/// Like [`server`], but a NotFound names the object the way kubectl does.
pub fn about(server_addr: &str, info: &ResourceInfo, name: &str, e: &ClientError) -> CliError {
    if e.is_not_found() {
        CliError::Message(format!(
            "Error from server (NotFound): {} {name:?} not found",
            resource_name(info)
        ))
    } else if e.is_already_exists() {
        CliError::Message(format!(
            "Error from server (AlreadyExists): {} {name:?} already exists",
            resource_name(info)
        ))
    } else {
        server(server_addr, e)
    }
}

/// `error: the server doesn't have a resource type "gadgets"`.
pub fn unknown_kind(kind: &str) -> CliError {
    local(format!("the server doesn't have a resource type {kind:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::kinds;
    use corral_api::status::{CauseType, StatusCause};

    fn from_server(code: tonic::Code, status: ApiStatus) -> ClientError {
        ClientError::Api {
            code,
            message: status.message.clone(),
            status: Some(Box::new(status)),
        }
    }

    fn invalid(group: &str, kind: &str, name: &str, causes: &[(&str, &str)]) -> ApiStatus {
        let what = if group.is_empty() {
            format!("{kind} {name:?}")
        } else {
            format!("{kind}.{group} {name:?}")
        };
        let joined: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        ApiStatus::new(
            StatusReason::Invalid,
            format!("{what} is invalid: {}", joined.join(", ")),
        )
        .with_details(StatusDetails {
            group: group.into(),
            kind: kind.into(),
            name: name.into(),
            uid: String::new(),
            causes: causes
                .iter()
                .map(|(field, message)| StatusCause {
                    kind: CauseType::of_field_error(message),
                    field: (*field).into(),
                    message: (*message).into(),
                })
                .collect(),
        })
    }

    #[test]
    fn not_found_names_the_resource_like_kubectl() {
        let e = from_server(
            tonic::Code::NotFound,
            ApiStatus::new(StatusReason::NotFound, "whatever the server says"),
        );
        assert_eq!(
            about("http://127.0.0.1:7443", &kinds::PODS, "x", &e).to_string(),
            "Error from server (NotFound): pods \"x\" not found"
        );
        assert_eq!(
            about("http://127.0.0.1:7443", &kinds::DEPLOYMENTS, "d", &e).to_string(),
            "Error from server (NotFound): deployments.apps \"d\" not found"
        );
    }

    #[test]
    fn a_validation_status_prints_as_kubectl_prints_it() {
        let cases = [
            (
                invalid(
                    "apps",
                    "ReplicaSet",
                    "Bad_Name",
                    &[
                        (
                            "metadata.name",
                            "Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain (e.g. 'example.com', regex '[a-z]')",
                        ),
                        ("spec.replicas", "Invalid value: -1: must be greater than or equal to 0"),
                        (
                            "spec.template.spec.restartPolicy",
                            "Unsupported value: \"Never\": supported values: \"Always\"",
                        ),
                    ],
                ),
                "The ReplicaSet.apps \"Bad_Name\" is invalid: \n\
                 * metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain (e.g. 'example.com', regex '[a-z]')\n\
                 * spec.replicas: Invalid value: -1: must be greater than or equal to 0\n\
                 * spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            ),
            (
                invalid(
                    "apps",
                    "Deployment",
                    "d",
                    &[("spec.replicas", "Invalid value: -1: must be greater than or equal to 0")],
                ),
                "The Deployment.apps \"d\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                // A detail with ", x: Invalid value" inside stays one cause.
                invalid(
                    "",
                    "ConfigMap",
                    "c",
                    &[
                        ("data[a, b: Invalid value]", "Invalid value: \"a, b\": a valid config key"),
                        ("data[tls.key]", "Required value"),
                    ],
                ),
                "The ConfigMap \"c\" is invalid: \n\
                 * data[a, b: Invalid value]: Invalid value: \"a, b\": a valid config key\n\
                 * data[tls.key]: Required value",
            ),
        ];
        for (status, want) in cases {
            let e = from_server(tonic::Code::InvalidArgument, status.clone());
            assert_eq!(server("x", &e).to_string(), want);
            assert_eq!(
                server_doing("x", "error when applying \"f.yaml\"", &e).to_string(),
                format!("The {}", status.message)
            );
        }
    }

    #[test]
    fn other_failures_print_their_reason_and_message() {
        let cases = [
            (
                from_server(
                    tonic::Code::InvalidArgument,
                    ApiStatus::new(StatusReason::BadRequest, "bad selector"),
                ),
                "Error from server (BadRequest): bad selector",
            ),
            (
                from_server(
                    tonic::Code::Aborted,
                    ApiStatus::new(StatusReason::Conflict, "Operation cannot be fulfilled"),
                ),
                "Error from server (Conflict): Operation cannot be fulfilled",
            ),
            (
                from_server(
                    tonic::Code::Unavailable,
                    ApiStatus::new(
                        StatusReason::ServiceUnavailable,
                        "node \"n\" has no agent connected",
                    ),
                ),
                "Error from server (ServiceUnavailable): node \"n\" has no agent connected",
            ),
            (
                ClientError::Api {
                    code: tonic::Code::DeadlineExceeded,
                    message: "deadline has elapsed".into(),
                    status: None,
                },
                "Error from server (Timeout): deadline has elapsed",
            ),
            (
                ClientError::Api {
                    code: tonic::Code::Unavailable,
                    message: "tcp connect error".into(),
                    status: None,
                },
                "The connection to the server 127.0.0.1:1 was refused - did you specify the right host or port?",
            ),
            (
                ClientError::UnknownResource("gadgets".into()),
                "error: unknown resource type \"gadgets\"",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(server("http://127.0.0.1:1", &e).to_string(), want);
        }
        let e = from_server(
            tonic::Code::Aborted,
            ApiStatus::new(StatusReason::Conflict, "the object has been modified"),
        );
        assert_eq!(
            server_doing("x", "error when applying \"f.yaml\"", &e).to_string(),
            "Error from server (Conflict): error when applying \"f.yaml\": the object has been modified"
        );
        assert_eq!(
            unknown_kind("gadgets").to_string(),
            "error: the server doesn't have a resource type \"gadgets\""
        );
    }
}
