//! Validation of container lifecycle hooks (`lifecycle.postStart`, `lifecycle.preStop`) as
//! Kubernetes 1.33 does it (validateLifecycle / validateHandler), with its wording: exactly
//! one handler, a command for exec, a valid port for httpGet and tcpSocket, a sleep that fits
//! in the grace period (zero allowed, PodLifecycleSleepActionAllowZero is on by default).

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, PodSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Errors, FieldError};

/// The lifecycle of container `c`, found at `path` (`spec.containers[0]`) in `group`.
pub(super) fn validate(c: &Container, path: &str, group: &str, spec: &PodSpec, errs: &mut Errors) {
    let Some(l) = &c.lifecycle else { return };
    let path = format!("{path}.lifecycle");
    let sidecar = c.restart_policy.as_deref() == Some("Always");
    if group == "initContainers" && !sidecar {
        errs.0.push(forbidden(
            path,
            "may not be set for init containers without restartPolicy=Always",
        ));
        return;
    }
    let grace = spec.termination_grace_period_seconds;
    for (name, h) in [("postStart", &l.post_start), ("preStop", &l.pre_stop)] {
        if let Some(h) = h {
            handler(h, &format!("{path}.{name}"), grace, errs);
        }
    }
}

fn forbidden(path: String, why: &str) -> FieldError {
    FieldError {
        path,
        detail: format!("Forbidden: {why}"),
    }
}

fn handler(h: &LifecycleHandler, path: &str, grace: Option<i64>, errs: &mut Errors) {
    let mut found = 0;
    let mut one = |kind: &str, errs: &mut Errors| {
        found += 1;
        if found > 1 {
            errs.0.push(forbidden(
                format!("{path}.{kind}"),
                "may not specify more than 1 handler type",
            ));
        }
        found == 1
    };
    if let Some(e) = &h.exec {
        if one("exec", errs) && e.command.as_ref().is_none_or(|c| c.is_empty()) {
            errs.required(format!("{path}.exec.command"));
        }
    }
    if let Some(g) = &h.http_get {
        if one("httpGet", errs) {
            let p = format!("{path}.httpGet");
            port(&g.port, &format!("{p}.port"), errs);
            let scheme = g.scheme.as_deref().unwrap_or("HTTP");
            if !["HTTP", "HTTPS"].contains(&scheme) {
                errs.unsupported(format!("{p}.scheme"), scheme, &["HTTP", "HTTPS"]);
            }
            for hdr in g.http_headers.iter().flatten() {
                if hdr.name.is_empty()
                    || !hdr
                        .name
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
                {
                    errs.invalid(
                        format!("{p}.httpHeaders"),
                        format!("{:?}", hdr.name),
                        "a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')",
                    );
                }
            }
        }
    }
    if let Some(t) = &h.tcp_socket {
        if one("tcpSocket", errs) {
            port(&t.port, &format!("{path}.tcpSocket.port"), errs);
        }
    }
    if let Some(s) = &h.sleep {
        if one("sleep", errs) {
            // An invalid grace period is reported on its own field.
            if let Some(g) = grace.filter(|g| *g >= 0) {
                if s.seconds < 0 || s.seconds > g {
                    errs.invalid(
                        format!("{path}.sleep"),
                        s.seconds,
                        &format!(
                            "must be non-negative and less than terminationGracePeriodSeconds ({g})"
                        ),
                    );
                }
            }
        }
    }
    if found == 0 {
        errs.0.push(FieldError {
            path: path.to_string(),
            detail: "Required value: must specify a handler type".into(),
        });
    }
}

/// Kubernetes' ValidatePortNumOrName.
fn port(p: &IntOrString, path: &str, errs: &mut Errors) {
    match p {
        IntOrString::Int(n) => {
            if !(1..=65535).contains(n) {
                errs.invalid(path, n, "must be between 1 and 65535, inclusive");
            }
        }
        IntOrString::String(s) => {
            for why in port_name_errors(s) {
                errs.invalid(path, format!("{s:?}"), why);
            }
        }
    }
}

/// Kubernetes' IsValidPortName (an IANA_SVC_NAME).
fn port_name_errors(s: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    if s.len() > 15 {
        out.push("must be no more than 15 characters");
    }
    if s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        out.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !s.chars().any(|c| c.is_ascii_lowercase()) {
        out.push("must contain at least one letter (a-z)");
    }
    if s.contains("--") {
        out.push("must not contain consecutive hyphens");
    }
    if s.starts_with('-') || s.ends_with('-') {
        out.push("must not begin or end with a hyphen");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{apply_defaults, validate, Defaults};
    use corral_api::kinds;
    use serde_json::{json, Value};

    fn pod(lifecycle: Value, grace: Option<i64>) -> Value {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i:1", "lifecycle": lifecycle}]}});
        if let Some(g) = grace {
            p["spec"]["terminationGracePeriodSeconds"] = json!(g);
        }
        p
    }

    fn errors(mut v: Value) -> Vec<String> {
        apply_defaults(&kinds::PODS, &mut v, &Defaults::default());
        validate(&kinds::PODS, &v)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn lifecycle_handlers_are_checked_like_kubernetes() {
        let p = "spec.containers[0].lifecycle";
        let cases: Vec<(Value, Option<i64>, Vec<String>)> = vec![
            (json!({"preStop": {"sleep": {"seconds": 5}}}), None, vec![]),
            (json!({"preStop": {"sleep": {"seconds": 0}}}), None, vec![]),
            (json!({"preStop": {"sleep": {"seconds": 10}}}), Some(10), vec![]),
            (
                json!({"postStart": {"exec": {"command": ["sh", "-c", "true"]}},
                       "preStop": {"httpGet": {"port": "http", "path": "/stop"}}}),
                None,
                vec![],
            ),
            (
                json!({"preStop": {"sleep": {"seconds": 40}}}),
                None,
                vec![format!("{p}.preStop.sleep: Invalid value: 40: must be non-negative and less than terminationGracePeriodSeconds (30)")],
            ),
            (
                json!({"preStop": {"sleep": {"seconds": 3}}}),
                Some(2),
                vec![format!("{p}.preStop.sleep: Invalid value: 3: must be non-negative and less than terminationGracePeriodSeconds (2)")],
            ),
            (
                json!({"postStart": {"sleep": {"seconds": -1}}}),
                None,
                vec![format!("{p}.postStart.sleep: Invalid value: -1: must be non-negative and less than terminationGracePeriodSeconds (30)")],
            ),
            (
                json!({"preStop": {}}),
                None,
                vec![format!("{p}.preStop: Required value: must specify a handler type")],
            ),
            (
                json!({"preStop": {"exec": {"command": ["true"]}, "sleep": {"seconds": 1}}}),
                None,
                vec![format!("{p}.preStop.sleep: Forbidden: may not specify more than 1 handler type")],
            ),
            (
                json!({"preStop": {"exec": {}}}),
                None,
                vec![format!("{p}.preStop.exec.command: Required value")],
            ),
            (
                json!({"preStop": {"httpGet": {"path": "/"}}}),
                None,
                vec![format!("{p}.preStop.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive")],
            ),
            (
                json!({"postStart": {"httpGet": {"port": 70000, "scheme": "FTP"}}}),
                None,
                vec![
                    format!("{p}.postStart.httpGet.port: Invalid value: 70000: must be between 1 and 65535, inclusive"),
                    format!("{p}.postStart.httpGet.scheme: Unsupported value: \"FTP\": supported values: \"HTTP\", \"HTTPS\""),
                ],
            ),
            (
                json!({"preStop": {"tcpSocket": {"port": "Web_1"}}}),
                None,
                vec![
                    format!("{p}.preStop.tcpSocket.port: Invalid value: \"Web_1\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"),
                ],
            ),
        ];
        for (i, (lifecycle, grace, want)) in cases.into_iter().enumerate() {
            assert_eq!(errors(pod(lifecycle, grace)), want, "case {i}");
        }
    }

    #[test]
    fn init_containers_take_lifecycle_hooks_only_as_sidecars() {
        let pod = |restart: Value| {
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "i:1"}],
                         "initContainers": [{"name": "i", "image": "i:1", "restartPolicy": restart,
                                             "lifecycle": {"preStop": {"sleep": {"seconds": 1}}}}]}})
        };
        assert_eq!(
            errors(pod(Value::Null)),
            vec!["spec.initContainers[0].lifecycle: Forbidden: may not be set for init containers without restartPolicy=Always"]
        );
        assert_eq!(errors(pod(json!("Always"))), Vec::<String>::new());
    }
}
