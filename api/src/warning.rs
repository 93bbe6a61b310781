//! API warnings as Kubernetes sends them: an HTTP `Warning` header `299 - "text"` (RFC 7234
//! form, the text a quoted string), here a gRPC response metadata entry `warning`. The server
//! formats them and clients read them back through this one home.

/// The gRPC metadata key (HTTP/2 header names are lower case).
pub const METADATA_KEY: &str = "warning";

/// `299 - "text"`, the text quoted (`"` and `\` escaped) and kept to visible ASCII, which
/// header values must be: other characters are written as `\u{..}`.
pub fn header(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str("299 - \"");
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' ' => out.push(' '),
            c if c.is_ascii_graphic() => out.push(c),
            c => out.extend(c.escape_unicode()),
        }
    }
    out.push('"');
    out
}

/// The text of a `299 - "text"` header; `None` for another code or form (Kubernetes clients
/// show only code 299 warnings).
pub fn parse(header: &str) -> Option<String> {
    let rest = header.trim().strip_prefix("299 ")?;
    let (_agent, quoted) = rest.split_once(' ')?;
    let inner = quoted.trim().strip_prefix('"')?;
    let mut text = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => text.push(chars.next()?),
            '"' => return Some(text),
            c => text.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_reads_back_as_written() {
        let cases = [
            "plain",
            r#"would violate PodSecurity "restricted:latest": runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true)"#,
            r"a \ backslash",
        ];
        for text in cases {
            let h = header(text);
            assert!(h.starts_with("299 - \""), "{h}");
            assert_eq!(parse(&h).as_deref(), Some(text), "{h}");
        }
    }

    #[test]
    fn other_codes_and_unterminated_texts_are_not_warnings() {
        for h in ["199 - \"x\"", "299 - \"open", "299", "nonsense"] {
            assert_eq!(parse(h), None, "{h}");
        }
    }

    #[test]
    fn characters_outside_visible_ascii_are_escaped() {
        assert_eq!(header("é"), "299 - \"\\u{e9}\"");
    }
}
