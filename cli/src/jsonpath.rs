//! The subset of kubectl's JSONPath templates people use: `{.a.b}`, `[0]`, `[*]`, `['k.e.y']`,
//! filters `[?(@.type=="Ready")]`, `{range ...}{end}` and string literals like `{"\n"}`.

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
#[error("error {stage} jsonpath {template:?}: {reason}")]
pub struct JsonPathError {
    /// `parsing` or `executing`, as kubectl words it.
    stage: &'static str,
    template: String,
    reason: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Filter {
        path: Vec<Step>,
        negate: bool,
        literal: Value,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Path(Vec<Step>),
    Range(Vec<Step>, Vec<Node>),
}

fn err(template: &str, reason: impl Into<String>) -> JsonPathError {
    JsonPathError {
        stage: "parsing",
        template: template.to_string(),
        reason: reason.into(),
    }
}

/// Splits a template into text and `{...}` actions.
fn actions(t: &str) -> Result<Vec<(bool, String)>, JsonPathError> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '{' {
            text.push(c);
            continue;
        }
        if !text.is_empty() {
            out.push((false, std::mem::take(&mut text)));
        }
        let mut inner = String::new();
        let mut quote: Option<char> = None;
        let mut closed = false;
        for c in chars.by_ref() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' => quote = Some(c),
                None if c == '}' => {
                    closed = true;
                    break;
                }
                None => {}
            }
            inner.push(c);
        }
        if !closed {
            return Err(err(t, "unclosed action"));
        }
        out.push((true, inner.trim().to_string()));
    }
    if !text.is_empty() {
        out.push((false, text));
    }
    Ok(out)
}

/// The text between matching quotes (`'x'` or `"x"`); unbalanced quotes are kept as text.
fn unquote(s: &str) -> &str {
    for q in ['\'', '"'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    s.trim_start_matches(['\'', '"'])
}

fn unescape(s: &str) -> String {
    s.replace("\\n", "\n")
        .replace("\\t", "\t")
        .replace("\\r", "\r")
}

fn parse_literal(s: &str) -> Value {
    let s = s.trim();
    if (s.starts_with('"') && s.ends_with('"') || s.starts_with('\'') && s.ends_with('\''))
        && s.len() >= 2
    {
        Value::String(s[1..s.len() - 1].to_string())
    } else if let Ok(n) = s.parse::<i64>() {
        Value::from(n)
    } else if s == "true" || s == "false" {
        Value::Bool(s == "true")
    } else {
        Value::String(s.to_string())
    }
}

fn parse_path(t: &str, p: &str) -> Result<Vec<Step>, JsonPathError> {
    let mut steps = Vec::new();
    let mut rest = p.trim();
    rest = rest
        .strip_prefix('$')
        .or_else(|| rest.strip_prefix('@'))
        .unwrap_or(rest);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let name = &r[..end];
            if !name.is_empty() {
                steps.push(if name == "*" {
                    Step::All
                } else {
                    Step::Field(name.to_string())
                });
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(|| err(t, "unterminated ["))?;
            // A filter may hold `]` inside quotes; find the closing `)]` for filters.
            let (inner, after) = if r.starts_with("?(") {
                let close = r.find(")]").ok_or_else(|| err(t, "unterminated filter"))?;
                (&r[..close + 1], &r[close + 2..])
            } else {
                (&r[..end], &r[end + 1..])
            };
            let inner = inner.trim();
            if inner == "*" {
                steps.push(Step::All);
            } else if let Some(f) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                let (lhs, negate, rhs) = if let Some((l, r)) = f.split_once("!=") {
                    (l, true, r)
                } else if let Some((l, r)) = f.split_once("==") {
                    (l, false, r)
                } else {
                    return Err(err(t, format!("unsupported filter {f:?}")));
                };
                steps.push(Step::Filter {
                    path: parse_path(t, lhs.trim())?,
                    negate,
                    literal: parse_literal(rhs),
                });
            } else if inner.starts_with('\'') || inner.starts_with('"') {
                steps.push(Step::Field(unquote(inner).to_string()));
            } else {
                let i = inner
                    .parse::<i64>()
                    .map_err(|_| err(t, format!("unsupported index {inner:?}")))?;
                steps.push(Step::Index(i));
            }
            rest = after;
        } else {
            return Err(err(t, format!("unexpected {rest:?}")));
        }
    }
    Ok(steps)
}

fn parse(t: &str) -> Result<Vec<Node>, JsonPathError> {
    let mut stack: Vec<(Vec<Step>, Vec<Node>)> = vec![(vec![], vec![])];
    for (is_action, s) in actions(t)? {
        let top = &mut stack.last_mut().expect("stack never empty").1;
        if !is_action {
            top.push(Node::Text(s));
        } else if let Some(p) = s.strip_prefix("range ") {
            let path = parse_path(t, p)?;
            stack.push((path, vec![]));
        } else if s == "end" {
            if stack.len() < 2 {
                return Err(err(t, "{end} without {range}"));
            }
            let (path, body) = stack.pop().expect("checked");
            stack
                .last_mut()
                .expect("checked")
                .1
                .push(Node::Range(path, body));
        } else if s.starts_with('"') || s.starts_with('\'') {
            top.push(Node::Text(unescape(unquote(&s))));
        } else {
            top.push(Node::Path(parse_path(t, &s)?));
        }
    }
    if stack.len() != 1 {
        return Err(err(t, "{range} without {end}"));
    }
    Ok(stack.pop().expect("one left").1)
}

/// An index past either end, as client-go's jsonpath reports it.
#[derive(Debug, PartialEq)]
struct OutOfBounds {
    index: i64,
    length: usize,
}

fn eval(steps: &[Step], root: &Value) -> Result<Vec<Value>, OutOfBounds> {
    let mut cur = vec![root.clone()];
    for step in steps {
        let mut next = Vec::new();
        for v in cur {
            match (step, &v) {
                (Step::Field(f), Value::Object(m)) => next.extend(m.get(f).cloned()),
                (Step::Index(i), Value::Array(a)) => {
                    let index = if *i < 0 { a.len() as i64 + i } else { *i };
                    let item = usize::try_from(index).ok().and_then(|at| a.get(at));
                    next.push(item.cloned().ok_or(OutOfBounds {
                        index,
                        length: a.len(),
                    })?);
                }
                (Step::All, Value::Array(a)) => next.extend(a.iter().cloned()),
                (Step::All, Value::Object(m)) => next.extend(m.values().cloned()),
                (
                    Step::Filter {
                        path,
                        negate,
                        literal,
                    },
                    Value::Array(a),
                ) => {
                    for item in a {
                        let got = eval(path, item)?;
                        let hit = got.iter().any(|g| {
                            g == literal || g.as_str().is_some_and(|s| Some(s) == literal.as_str())
                        });
                        if hit != *negate {
                            next.push(item.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        cur = next;
    }
    Ok(cur)
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn exec(nodes: &[Node], root: &Value, out: &mut String) -> Result<(), OutOfBounds> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Path(p) => {
                let vals = eval(p, root)?;
                out.push_str(&vals.iter().map(show).collect::<Vec<_>>().join(" "));
            }
            Node::Range(p, body) => {
                for item in eval(p, root)? {
                    exec(body, &item, out)?;
                }
            }
        }
    }
    Ok(())
}

/// The values a bare path (`.spec.containers[*].image`, leading dot optional) selects.
pub fn values(path: &str, root: &Value) -> Result<Vec<Value>, JsonPathError> {
    let p = path.trim().trim_start_matches('{').trim_end_matches('}');
    let p = if p.starts_with('.') || p.starts_with('[') || p.starts_with('$') || p.starts_with('@')
    {
        p.to_string()
    } else {
        format!(".{p}")
    };
    eval(&parse_path(path, &p)?, root).map_err(|e| executing(path, e))
}

fn executing(template: &str, e: OutOfBounds) -> JsonPathError {
    JsonPathError {
        stage: "executing",
        template: template.to_string(),
        reason: format!(
            "array index out of bounds: index {}, length {}",
            e.index, e.length
        ),
    }
}

/// A value as printed in a cell.
pub fn show_value(v: &Value) -> String {
    show(v)
}

/// Renders a template against an object (or a `List`).
pub fn render(template: &str, root: &Value) -> Result<String, JsonPathError> {
    let nodes = parse(template)?;
    let mut out = String::new();
    exec(&nodes, root, &mut out).map_err(|e| executing(template, e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> Value {
        json!({"kind": "List", "items": [
            {"metadata": {"name": "a"}, "status": {"conditions": [{"type": "Ready", "status": "True"}], "podIP": "10.42.0.5"}},
            {"metadata": {"name": "b"}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}
        ]})
    }

    #[test]
    fn an_index_past_either_end_is_an_error_as_in_kubectl() {
        for (template, want) in [
            ("{.items[2].metadata.name}", "index 2, length 2"),
            ("{.items[-5].metadata.name}", "index -3, length 2"),
            (
                "{range .items[*]}{.status.conditions[3]}{end}",
                "index 3, length 1",
            ),
        ] {
            let e = render(template, &list()).unwrap_err().to_string();
            assert_eq!(
                e,
                format!("error executing jsonpath {template:?}: array index out of bounds: {want}")
            );
        }
        assert!(values(".items[9]", &list()).is_err());
        assert_eq!(render("{.items[-2].metadata.name}", &list()).unwrap(), "a");
    }

    #[test]
    fn paths_wildcards_and_indexes() {
        assert_eq!(render("{.items[*].metadata.name}", &list()).unwrap(), "a b");
        assert_eq!(
            render("{.items[0].status.podIP}", &list()).unwrap(),
            "10.42.0.5"
        );
        assert_eq!(render("{.items[-1].metadata.name}", &list()).unwrap(), "b");
        assert_eq!(
            render(
                "name: {.metadata['name']}",
                &json!({"metadata": {"name": "x"}})
            )
            .unwrap(),
            "name: x"
        );
    }

    #[test]
    fn range_filters_and_literals() {
        let t = r#"{range .items[*]}{.metadata.name}{"\t"}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#;
        assert_eq!(render(t, &list()).unwrap(), "a\tTrue\nb\tFalse\n");
    }

    #[test]
    fn odd_quotes_and_non_ascii_never_panic() {
        assert!(render("{\"é}", &list()).is_err());
        assert_eq!(render("{\"é\"}", &list()).unwrap(), "é");
        assert!(render("{.metadata['é]}", &list()).is_err());
        assert_eq!(
            render("{.items[0].metadata['name']}", &list()).unwrap(),
            "a"
        );
        assert_eq!(render("{\"\\n\"}", &list()).unwrap(), "\n");
    }

    #[test]
    fn malformed_templates_are_errors() {
        assert!(render("{.items[*", &list()).is_err());
        assert!(render("{range .items[*]}{.x}", &list()).is_err());
    }
}
