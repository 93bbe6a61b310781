//! `pods/log` options (Kubernetes' PodLogOptions rules): one of sinceTime or sinceSeconds, each
//! well formed, and no negative limits.

use corral_proto as pb;

use super::{Errors, FieldError};

/// What is wrong with a log request's options; empty when it may be served.
pub fn log_options(req: &pb::LogsRequest) -> Vec<FieldError> {
    let mut e = Errors::default();
    if req.since_seconds < 0 {
        e.invalid("sinceSeconds", req.since_seconds, "must be greater than 0");
    }
    if !req.since_time.is_empty() {
        if req.since_seconds != 0 {
            e.0.push(FieldError {
                path: "sinceTime".into(),
                detail: "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
                    .into(),
            });
        }
        if req.since_time.parse::<jiff::Timestamp>().is_err() {
            e.invalid(
                "sinceTime",
                format!("{:?}", req.since_time),
                "must be an RFC 3339 time, e.g. 2026-12-06T17:00:00Z",
            );
        }
    }
    if req.limit_bytes < 0 {
        e.invalid("limitBytes", req.limit_bytes, "must be greater than 0");
    }
    e.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_options_are_refused_by_the_field_at_fault() {
        let paths = |req: pb::LogsRequest| -> Vec<String> {
            log_options(&req).into_iter().map(|e| e.path).collect()
        };
        assert!(paths(pb::LogsRequest::default()).is_empty());
        assert!(paths(pb::LogsRequest {
            since_time: "2026-12-06T17:00:00.5Z".into(),
            since_seconds: 0,
            ..Default::default()
        })
        .is_empty());
        assert_eq!(
            paths(pb::LogsRequest {
                since_seconds: -5,
                limit_bytes: -1,
                ..Default::default()
            }),
            ["sinceSeconds", "limitBytes"]
        );
        assert_eq!(
            paths(pb::LogsRequest {
                since_time: "yesterday".into(),
                since_seconds: 10,
                ..Default::default()
            }),
            ["sinceTime", "sinceTime"]
        );
    }
}
