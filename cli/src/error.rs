//! kubectl-shaped error messages: `Error from server (NotFound): pods "x" not found`,
//! `error: the server doesn't have a resource type "gadgets"`, and the connection message.

use corral_api::client::Error as ClientError;
use corral_api::kinds::ResourceInfo;

/// An error that is shown to the user exactly as its text says.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Printed verbatim (already carries its `error:` or `Error from server` prefix).
    #[error("{0}")]
    Message(String),
    /// The details were already printed while the command went on; only the exit code is left.
    #[error("")]
    Reported,
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

/// kubectl's StatusReason for a gRPC code.
fn reason(code: tonic::Code) -> &'static str {
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

/// Formats a client error as kubectl would.
pub fn server(server: &str, e: &ClientError) -> CliError {
    match e {
        ClientError::Connect { .. } => connection_refused(server),
        ClientError::Api { code, message } if refused(*code, message) => connection_refused(server),
        ClientError::Api { code, message } if invalid(*code, message) => {
            CliError::Message(invalid_message(message))
        }
        ClientError::Api { code, message } => {
            CliError::Message(format!("Error from server ({}): {message}", reason(*code)))
        }
        other => local(other),
    }
}

/// Unavailable because no connection could be made (not a server saying it is unavailable).
fn refused(code: tonic::Code, message: &str) -> bool {
    code == tonic::Code::Unavailable
        && (message.is_empty()
            || message == "control plane unavailable"
            || message.contains("tcp connect")
            || message.contains("error trying to connect")
            || message.contains("transport error")
            || message.contains("os error"))
}

/// kubectl prints validation failures as `The Deployment "x" is invalid: ...`.
fn invalid(code: tonic::Code, message: &str) -> bool {
    code == tonic::Code::InvalidArgument && message.contains(" is invalid: ")
}

/// Field error kinds, as apimachinery words them.
const FIELD_ERRORS: &[&str] = &[
    "Invalid value",
    "Required value",
    "Unsupported value",
    "Forbidden",
    "Duplicate value",
    "Not found",
    "Too long",
    "Too many",
    "Internal error",
];

/// Whether `s` starts with `path: <field error kind>`.
fn starts_field_error(s: &str) -> bool {
    let Some((path, rest)) = s.split_once(": ") else {
        return false;
    };
    !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._[]-/".contains(c))
        && FIELD_ERRORS.iter().any(|k| rest.starts_with(k))
}

/// `The Deployment "x" is invalid: ...`, one `* path: ...` line per field error when there are
/// several, as kubectl prints them.
pub fn invalid_message(message: &str) -> String {
    let Some((head, errors)) = message.split_once(" is invalid: ") else {
        return format!("The {message}");
    };
    let mut parts: Vec<&str> = Vec::new();
    let mut start = 0;
    let mut search = 0;
    while let Some(i) = errors[search..].find(", ") {
        let at = search + i;
        if starts_field_error(&errors[at + 2..]) {
            parts.push(&errors[start..at]);
            start = at + 2;
        }
        search = at + 2;
    }
    parts.push(&errors[start..]);
    if parts.len() == 1 {
        format!("The {message}")
    } else {
        let bullets: Vec<String> = parts.iter().map(|p| format!("* {p}")).collect();
        format!("The {head} is invalid: \n{}", bullets.join("\n"))
    }
}

/// A server error with what was being done: `Error from server (Invalid): error when
/// applying "f.yaml": ...`.
pub fn server_doing(server_addr: &str, doing: &str, e: &ClientError) -> CliError {
    match e {
        ClientError::Api { code, message } if invalid(*code, message) => {
            CliError::Message(format!("The {message}"))
        }
        ClientError::Api { code, message } if !refused(*code, message) => CliError::Message(
            format!("Error from server ({}): {doing}: {message}", reason(*code)),
        ),
        other => server(server_addr, other),
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

    #[test]
    fn not_found_names_the_resource_like_kubectl() {
        let e = ClientError::Api {
            code: tonic::Code::NotFound,
            message: "whatever the server says".into(),
        };
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
    fn several_field_errors_become_kubectls_bullets() {
        let msg = "ReplicaSet.apps \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain (e.g. 'example.com', regex '[a-z]'), spec.replicas: Invalid value: -1: must be greater than or equal to 0, spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"";
        assert_eq!(
            invalid_message(msg),
            "The ReplicaSet.apps \"Bad_Name\" is invalid: \n\
             * metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain (e.g. 'example.com', regex '[a-z]')\n\
             * spec.replicas: Invalid value: -1: must be greater than or equal to 0\n\
             * spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""
        );
        let one = "Deployment \"d\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0";
        assert_eq!(invalid_message(one), format!("The {one}"));
    }

    #[test]
    fn unavailable_reads_as_connection_refused() {
        let e = ClientError::Api {
            code: tonic::Code::Unavailable,
            message: "tcp connect error".into(),
        };
        assert_eq!(
            server("http://127.0.0.1:1", &e).to_string(),
            "The connection to the server 127.0.0.1:1 was refused - did you specify the right host or port?"
        );
    }

    #[test]
    fn other_codes_carry_the_server_message_with_a_reason() {
        let e = ClientError::Api {
            code: tonic::Code::InvalidArgument,
            message: "Deployment \"d\" is invalid: spec.replicas: must be >= 0".into(),
        };
        assert_eq!(
            server("x", &e).to_string(),
            "The Deployment \"d\" is invalid: spec.replicas: must be >= 0"
        );
        let e = ClientError::Api {
            code: tonic::Code::InvalidArgument,
            message: "bad selector".into(),
        };
        assert_eq!(
            server("x", &e).to_string(),
            "Error from server (BadRequest): bad selector"
        );
        assert_eq!(
            unknown_kind("gadgets").to_string(),
            "error: the server doesn't have a resource type \"gadgets\""
        );
    }
}
