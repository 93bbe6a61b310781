//! Stored JSON without building a tree: an object's members as byte ranges (to change a few
//! fields and copy the rest), and a projection that parses only the paths a selector reads.
//! Stored values are compact JSON written by serde_json; on anything unexpected these return
//! `None` and callers take the parsing path.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// One `"key":value` of an object: the key as written (escapes untouched) and the value's range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<'a> {
    pub key: &'a [u8],
    pub value: Range<usize>,
}

fn skip_ws(json: &[u8], mut i: usize) -> usize {
    while matches!(json.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// Index just past the string that opens at `i`.
fn string_end(json: &[u8], i: usize) -> Option<usize> {
    if json.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match *json.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// Index just past the value that starts at `i`.
fn value_end(json: &[u8], i: usize) -> Option<usize> {
    match *json.get(i)? {
        b'"' => string_end(json, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *json.get(j)? {
                    b'"' => {
                        j = string_end(json, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while j < json.len()
                && !matches!(json[j], b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// The members of `json`, which must be exactly one object.
pub fn members(json: &[u8]) -> Option<Vec<Member<'_>>> {
    let mut i = skip_ws(json, 0);
    if json.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(json, i + 1);
    let mut out = Vec::new();
    if json.get(i) == Some(&b'}') {
        return (skip_ws(json, i + 1) == json.len()).then_some(out);
    }
    loop {
        let key_end = string_end(json, i)?;
        let key = &json[i + 1..key_end - 1];
        i = skip_ws(json, key_end);
        if json.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(json, i + 1);
        let end = value_end(json, start)?;
        out.push(Member {
            key,
            value: start..end,
        });
        i = skip_ws(json, end);
        match json.get(i) {
            Some(b',') => i = skip_ws(json, i + 1),
            Some(b'}') => break,
            _ => return None,
        }
    }
    (skip_ws(json, i + 1) == json.len()).then_some(out)
}

/// Writes an object from (key as written, value JSON) pairs.
pub fn write_object<'a>(members: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(b'{');
    for (i, (key, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(key);
        out.extend_from_slice(b"\":");
        out.extend_from_slice(value);
    }
    out.push(b'}');
    out
}

/// An object's members with some replaced, removed or added, keeping serde_json's key order
/// (sorted, as its maps are) so the result is what serialising the changed tree gives.
pub struct Edit<'a> {
    /// (key as written, value JSON), in the source's order.
    members: Vec<(Bytes<'a>, Bytes<'a>)>,
}

type Bytes<'a> = Cow<'a, [u8]>;

impl<'a> Edit<'a> {
    pub fn new(json: &'a [u8]) -> Option<Self> {
        let members = members(json)?;
        // serde_json never writes a key twice; a value that does is left to the parser.
        let mut keys: Vec<&[u8]> = members.iter().map(|m| m.key).collect();
        keys.sort_unstable();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return None;
        }
        let members = members
            .into_iter()
            .map(|m| (Cow::Borrowed(m.key), Cow::Borrowed(&json[m.value])))
            .collect();
        Some(Self { members })
    }

    /// The value of `key` as JSON text.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.members
            .iter()
            .find(|(k, _)| k.as_ref() == key.as_bytes())
            .map(|(_, v)| v.as_ref())
    }

    /// Parses the value of `key` (small values: names, numbers, a status).
    pub fn parse(&self, key: &str) -> Option<Value> {
        self.get(key).and_then(|v| serde_json::from_slice(v).ok())
    }

    pub fn set(&mut self, key: &'static str, value: Vec<u8>) {
        let k = key.as_bytes();
        match self.members.iter().position(|(x, _)| x.as_ref() >= k) {
            Some(i) if self.members[i].0.as_ref() == k => self.members[i].1 = Cow::Owned(value),
            Some(i) => self
                .members
                .insert(i, (Cow::Borrowed(k), Cow::Owned(value))),
            None => self.members.push((Cow::Borrowed(k), Cow::Owned(value))),
        }
    }

    pub fn remove(&mut self, key: &str) {
        self.members.retain(|(k, _)| k.as_ref() != key.as_bytes());
    }

    pub fn finish(&self) -> Vec<u8> {
        write_object(self.members.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
    }
}

/// The paths a reader needs from an object, as a tree of keys; a leaf takes the whole value.
#[derive(Debug, Default, Clone)]
pub struct Paths {
    children: BTreeMap<String, Paths>,
    whole: bool,
}

impl Paths {
    /// Adds a path given as its keys (`["metadata", "labels"]`).
    pub fn add<S: Into<String>>(&mut self, keys: impl IntoIterator<Item = S>) {
        let mut node = self;
        for key in keys {
            if node.whole {
                return;
            }
            node = node.children.entry(key.into()).or_default();
        }
        node.whole = true;
        node.children.clear();
    }

    pub fn is_empty(&self) -> bool {
        !self.whole && self.children.is_empty()
    }

    /// Parses `json` keeping only these paths: objects along a path keep just the keys on
    /// it; any other value on a path (an array, a scalar) is kept whole, so a JSON pointer
    /// along a path finds what it would in the full tree.
    pub fn project(&self, json: &[u8]) -> serde_json::Result<Value> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let v = Project(self).deserialize(&mut de)?;
        de.end()?;
        Ok(v)
    }
}

struct Project<'p>(&'p Paths);

impl<'de> DeserializeSeed<'de> for Project<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.whole {
            return serde::Deserialize::deserialize(d);
        }
        d.deserialize_any(self)
    }
}

/// A map key, borrowed from the input when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

impl<'de> Visitor<'de> for Project<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(Key)? {
            match self.0.children.get(key.as_ref()) {
                Some(child) => {
                    let v = map.next_value_seed(Project(child))?;
                    out.insert(key.into_owned(), v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_are_found_in_nested_and_escaped_json() {
        let json = br#"{"a":{"b":[1,{"c":"}"}]},"k\"q":"x\\","n":-1.5e3,"t":true,"z":null}"#;
        let m = members(json).expect("an object");
        let keys: Vec<&[u8]> = m.iter().map(|m| m.key).collect();
        assert_eq!(keys, [&b"a"[..], br#"k\"q"#, b"n", b"t", b"z"]);
        let values: Vec<&[u8]> = m.iter().map(|m| &json[m.value.clone()]).collect();
        assert_eq!(
            values,
            [
                &br#"{"b":[1,{"c":"}"}]}"#[..],
                br#""x\\""#,
                b"-1.5e3",
                b"true",
                b"null"
            ]
        );
        assert_eq!(members(b" { } ").map(|m| m.len()), Some(0));
        for bad in [
            &b"[1]"[..],
            b"{\"a\":1",
            b"{\"a\" 1}",
            b"{\"a\":1}x",
            b"{\"a\":}",
        ] {
            assert!(members(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn edits_give_what_serialising_the_changed_tree_gives() {
        let mut tree = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": [1, 2]}});
        let bytes = serde_json::to_vec(&tree).expect("serialises");
        let mut edit = Edit::new(&bytes).expect("an object");
        edit.set("status", br#"{"phase":"Pending"}"#.to_vec());
        edit.set("kind", br#""Other""#.to_vec());
        edit.set("aaa", b"1".to_vec());
        edit.remove("spec");
        tree["status"] = json!({"phase": "Pending"});
        tree["kind"] = json!("Other");
        tree["aaa"] = json!(1);
        tree.as_object_mut().expect("object").remove("spec");
        assert_eq!(
            edit.finish(),
            serde_json::to_vec(&tree).expect("serialises")
        );
        assert!(Edit::new(br#"{"a":1,"a":2}"#).is_none());
    }

    #[test]
    fn a_projection_keeps_exactly_the_paths_asked_for() {
        let full = json!({
            "metadata": {"name": "p", "labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}], "x": {"y": 1}},
            "status": "odd"
        });
        let bytes = serde_json::to_vec(&full).expect("serialises");
        let mut paths = Paths::default();
        paths.add(["metadata", "labels"]);
        paths.add(["spec", "containers", "0", "name"]);
        paths.add(["status", "phase"]);
        paths.add(["missing", "path"]);
        let projected = paths.project(&bytes).expect("valid JSON");
        assert_eq!(
            projected,
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}, "status": "odd"})
        );
        for pointer in [
            "/metadata/labels",
            "/spec/containers/0/name",
            "/status/phase",
            "/status",
        ] {
            assert_eq!(
                projected.pointer(pointer),
                full.pointer(pointer),
                "{pointer}"
            );
        }
        let mut all = Paths::default();
        all.add(Vec::<String>::new());
        assert_eq!(all.project(&bytes).expect("valid JSON"), full);
        assert!(paths.project(b"{\"a\":").is_err());
    }
}
