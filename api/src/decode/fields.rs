//! Unknown and duplicate fields, the one home of the rule: a field is unknown when the typed
//! round-trip of its object drops it (k8s-openapi's types accept and drop unknown keys), and
//! duplicate when a JSON object names it twice. The gRPC API refuses both; the REST API applies
//! the request's `fieldValidation` (Strict refuses, Warn and Ignore drop) with these paths.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Where a field sits in an object: keys and list indexes from the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// Kubernetes' spelling: `spec.containers[0].bogus`.
impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl FieldPath {
    fn child(&self, s: Segment) -> FieldPath {
        let mut p = self.0.clone();
        p.push(s);
        FieldPath(p)
    }
}

/// Paths present (and not null) in `input` but dropped by the typed round-trip `canonical`.
pub(crate) fn unknown(input: &Value, canonical: &Value) -> Vec<FieldPath> {
    let mut out = Vec::new();
    walk(input, canonical, &FieldPath(Vec::new()), &mut out);
    out
}

fn walk(input: &Value, canonical: &Value, path: &FieldPath, out: &mut Vec<FieldPath>) {
    match (input, canonical) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let child = path.child(Segment::Key(key.clone()));
                match b.get(key) {
                    Some(c) => walk(value, c, &child, out),
                    None if value.is_null() => {}
                    None => out.push(child),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                walk(x, y, &path.child(Segment::Index(i)), out);
            }
        }
        _ => {}
    }
}

/// Removes the field at `path` from `object` (nothing when it is not there).
pub(crate) fn remove(object: &mut Value, path: &FieldPath) {
    let Some((last, parents)) = path.0.split_last() else {
        return;
    };
    let mut cur = object;
    for s in parents {
        let next = match (s, cur) {
            (Segment::Key(k), Value::Object(m)) => m.get_mut(k),
            (Segment::Index(i), Value::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        let Some(next) = next else {
            return;
        };
        cur = next;
    }
    if let (Segment::Key(k), Value::Object(m)) = (last, cur) {
        m.remove(k);
    }
}

/// Fields a JSON document names twice in one object, in document order (the last one wins
/// when the document is parsed). A document that is not JSON has none here: its parse
/// reports it.
pub fn duplicates(json: &[u8]) -> Vec<FieldPath> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(json);
    let seed = Seed {
        path: FieldPath(Vec::new()),
        out: &mut out,
    };
    if seed.deserialize(&mut de).is_err() {
        return Vec::new();
    }
    out
}

/// Visits any JSON value, recording the duplicate keys of every object below `path`.
struct Seed<'a> {
    path: FieldPath,
    out: &'a mut Vec<FieldPath>,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let seed = Seed {
                path: self.path.child(Segment::Index(i)),
                out: &mut *self.out,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = self.path.child(Segment::Key(key.clone()));
            if !seen.insert(key) {
                self.out.push(path.clone());
            }
            map.next_value_seed(Seed {
                path,
                out: &mut *self.out,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strings(paths: &[FieldPath]) -> Vec<String> {
        paths.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn unknown_fields_are_those_the_round_trip_dropped_and_not_null() {
        let input = json!({"a": 1, "b": {"c": [{"d": 1, "e": 2}]}, "n": null, "x.y": 3});
        let canonical = json!({"a": 1, "b": {"c": [{"d": 1}]}});
        let found = unknown(&input, &canonical);
        assert_eq!(strings(&found), ["b.c[0].e", "x.y"]);
        let mut cleaned = input.clone();
        for p in &found {
            remove(&mut cleaned, p);
        }
        assert_eq!(cleaned, json!({"a": 1, "b": {"c": [{"d": 1}]}, "n": null}));
    }

    #[test]
    fn duplicate_fields_are_found_at_every_depth() {
        for (doc, want) in [
            (r#"{"a":1,"b":2}"#, vec![]),
            (r#"{"a":1,"a":2}"#, vec!["a"]),
            (
                r#"{"spec":{"containers":[{"name":"c","name":"d"}],"replicas":1,"replicas":2}}"#,
                vec!["spec.containers[0].name", "spec.replicas"],
            ),
            (r#"not json"#, vec![]),
        ] {
            assert_eq!(strings(&duplicates(doc.as_bytes())), want, "{doc}");
        }
    }
}
