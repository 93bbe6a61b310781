//! Names as Kubernetes constrains them: DNS-1123 labels (container, volume and port names,
//! most object names) and subdomains. A name that passes [`is_dns1123_label`] is also safe
//! as one path component (no `/`, no `.` or `..`), which is why the agent checks it again
//! before making a directory of it.

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Dot-separated DNS-1123 labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_` and `.`, starting and ending
/// with an alphanumeric.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric())
}

/// A name from a request that is not a DNS-1123 label, refused as a path component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} name {name:?} is not a DNS-1123 label: refusing to use it as a path")]
pub struct NotALabel {
    pub what: &'static str,
    pub name: String,
}

/// `name` (a `what`: volume, container) checked to be safe as one path component.
pub fn path_component<'a>(what: &'static str, name: &'a str) -> Result<&'a str, NotALabel> {
    if is_dns1123_label(name) {
        Ok(name)
    } else {
        Err(NotALabel {
            what,
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains_as_kubernetes_checks_them() {
        // (name, label?, subdomain?)
        let cases = [
            ("web", true, true),
            ("a-1", true, true),
            ("1abc", true, true),
            ("web.default", false, true),
            ("", false, false),
            ("-a", false, false),
            ("a-", false, false),
            ("Web", false, false),
            ("/etc", false, false),
            ("../../x", false, false),
            ("..", false, false),
            ("a_b", false, false),
        ];
        for (name, label, subdomain) in cases {
            assert_eq!(is_dns1123_label(name), label, "{name:?} label");
            assert_eq!(is_dns1123_subdomain(name), subdomain, "{name:?} subdomain");
        }
        assert!(path_component("volume", "data").is_ok());
        assert!(path_component("volume", "../x").is_err());
        assert!(is_dns1123_label(&"a".repeat(63)));
        assert!(!is_dns1123_label(&"a".repeat(64)));
    }
}
