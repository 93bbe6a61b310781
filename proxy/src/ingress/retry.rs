//! When a request that failed on one endpoint may go to another: nginx's
//! `proxy_next_upstream error timeout` rule. A request that never left the proxy can always
//! go elsewhere; one that was written may only be replayed when repeating it is harmless
//! (an idempotent method) and the proxy still has all of it (no body). Pure.

use http::Method;

/// How an attempt failed. Failures after the response head arrived are never retried (the
/// client already has part of the answer), so they have no variant here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made (refused, unreachable, timed out): nothing was sent.
    Connect,
    /// A pooled connection was gone before the request was written; hyper handed it back.
    NotSent,
    /// The request was (maybe partly) written, then the connection was closed or reset
    /// before a complete response head arrived.
    NoResponse,
    /// The endpoint answered with something that is not HTTP: another endpoint would not be
    /// asked (nginx's `invalid_header` is not in its default either).
    Invalid,
}

/// Methods that RFC 9110 defines as idempotent.
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Whether a request with `method` (and a body, if `has_body`) that failed with `failure`
/// may be sent to the next endpoint.
pub fn may_retry(method: &Method, has_body: bool, failure: Failure) -> bool {
    match failure {
        Failure::Connect | Failure::NotSent => true,
        // The body has been consumed and the endpoint may have acted on the request.
        Failure::NoResponse => idempotent(method) && !has_body,
        Failure::Invalid => false,
    }
}

/// Classifies an error of `SendRequest::try_send_request` whose request was not returned.
pub fn classify(e: &hyper::Error) -> Failure {
    if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() || e.is_user() {
        Failure::Invalid
    } else {
        // Closed, canceled, incomplete message, or an I/O error such as a reset.
        Failure::NoResponse
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_that_never_left_go_to_the_next_endpoint_whatever_the_method() {
        for m in [Method::GET, Method::POST, Method::PATCH, Method::PUT] {
            for body in [false, true] {
                assert!(may_retry(&m, body, Failure::Connect), "{m} body={body}");
                assert!(may_retry(&m, body, Failure::NotSent), "{m} body={body}");
            }
        }
    }

    #[test]
    fn written_requests_are_retried_only_when_idempotent_and_without_a_body() {
        let cases = [
            (Method::GET, false, true),
            (Method::HEAD, false, true),
            (Method::OPTIONS, false, true),
            (Method::PUT, false, true),
            (Method::DELETE, false, true),
            (Method::PUT, true, false),
            (Method::GET, true, false),
            (Method::POST, false, false),
            (Method::POST, true, false),
            (Method::PATCH, true, false),
            (Method::from_bytes(b"LOCK").unwrap(), false, false),
        ];
        for (m, body, want) in cases {
            assert_eq!(
                may_retry(&m, body, Failure::NoResponse),
                want,
                "{m} body={body}"
            );
        }
    }

    #[test]
    fn an_endpoint_answering_garbage_is_not_retried() {
        assert!(!may_retry(&Method::GET, false, Failure::Invalid));
    }
}
