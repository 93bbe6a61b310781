//! Names, labels and annotations: `metadata.name` as a DNS-1123 subdomain or label (DNS-1035
//! for Services), label keys as qualified names and label values, annotation keys as
//! qualified names and at most 256 KiB of annotations, with Kubernetes' messages.

use corral_api::kinds::ResourceInfo;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Errors;

pub(super) const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
pub(super) const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

pub use corral_api::rules::names::{is_dns1123_label, is_dns1123_subdomain, is_label_value};

fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// Kubernetes' limit on the total size of an object's annotations (keys and values).
const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns1123_subdomain) && !name.is_empty() && is_label_value(name)
}

pub(super) fn validate_meta(info: &ResourceInfo, meta: &ObjectMeta, errs: &mut Errors) {
    let name = meta.name.as_deref().unwrap_or("");
    if name.is_empty() {
        errs.required("metadata.name");
    } else if info.group == super::rbac::RBAC_GROUP {
        // RBAC names are path segments (`system:node-proxier`), not DNS names.
        if let Some(why) = super::rbac::path_segment_problem(name) {
            errs.invalid("metadata.name", format!("{name:?}"), &why);
        }
    } else {
        let (ok, msg) = match info.plural {
            "namespaces" => (is_dns1123_label(name), DNS1123_LABEL_MSG),
            "services" => (is_dns1035_label(name), DNS1035_LABEL_MSG),
            _ => (is_dns1123_subdomain(name), DNS1123_SUBDOMAIN_MSG),
        };
        if !ok {
            errs.invalid("metadata.name", format!("{name:?}"), msg);
        }
    }
    for (k, v) in meta.labels.iter().flatten() {
        if !is_qualified_name(k) {
            errs.invalid("metadata.labels", format!("{k:?}"), QUALIFIED_NAME_MSG);
        }
        if !is_label_value(v) {
            errs.invalid(
                format!("metadata.labels[{k}]"),
                format!("{v:?}"),
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            );
        }
    }
    let mut total = 0;
    for (k, v) in meta.annotations.iter().flatten() {
        if !is_qualified_name(&k.to_ascii_lowercase()) {
            errs.invalid("metadata.annotations", format!("{k:?}"), QUALIFIED_NAME_MSG);
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE {
        errs.too_long("metadata.annotations", TOTAL_ANNOTATION_SIZE);
    }
}
