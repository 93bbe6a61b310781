//! A decoded protobuf message as Kubernetes' JSON: its wire types (IntOrString, Quantity, Time,
//! MicroTime, Duration, RawExtension, FieldsV1, list wrappers) as their JSON forms, inlined
//! fields flattened, and zero scalars left out unless Go's JSON keeps them.

use base64::Engine;
use prost_reflect::{DynamicMessage, MapKey, ReflectMessage, Value as Pb};
use serde_json::{Map, Value};

use super::{ProtobufError, Schema, MAGIC, MAX_EMBEDDED_DEPTH};

const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";
const TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime";
const DURATION: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Duration";
const FIELDS_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1";
const RAW_EXTENSION: &str = "k8s.io.apimachinery.pkg.runtime.RawExtension";
/// Go slices wrapped in a message for protobuf (`+protobuf.nullable=true`): JSON arrays.
const LIST_WRAPPERS: &[&str] = &[
    "k8s.io.apimachinery.pkg.apis.meta.v1.Verbs",
    "k8s.io.api.authorization.v1.ExtraValue",
];

pub(super) struct Walker<'a> {
    pub schema: &'a Schema,
    /// The kind being read, for error messages.
    pub kind: &'a str,
    /// How many `RawExtension`s deep this object is.
    pub depth: usize,
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

impl Walker<'_> {
    fn field_error(&self, path: &str, message: impl Into<String>) -> ProtobufError {
        ProtobufError::Field {
            kind: self.kind.to_string(),
            path: path.to_string(),
            message: message.into(),
        }
    }

    /// A message's JSON: its special form if it has one, else an object.
    pub fn message(&self, m: &DynamicMessage, path: &str) -> Result<Value, ProtobufError> {
        let desc = m.descriptor();
        let name = desc.full_name();
        match name {
            INT_OR_STRING => self.int_or_string(m, path),
            QUANTITY => {
                let s = string_field(m, "string");
                // A zero Quantity's JSON is "0", never "".
                Ok(Value::String(if s.is_empty() { "0".into() } else { s }))
            }
            TIME => self.time(m, path, false),
            MICRO_TIME => self.time(m, path, true),
            DURATION => Ok(Value::String(go_duration(int_field(m, "duration")))),
            FIELDS_V1 => self.raw_json(&bytes_field(m, "Raw"), path),
            RAW_EXTENSION => self.raw_extension(&bytes_field(m, "raw"), path),
            n if LIST_WRAPPERS.contains(&n) => match m.get_field_by_name("items").as_deref() {
                Some(v) => self.value(v, &child(path, "items")),
                None => Ok(Value::Array(Vec::new())),
            },
            _ => Ok(Value::Object(self.object(m, path)?)),
        }
    }

    fn object(&self, m: &DynamicMessage, path: &str) -> Result<Map<String, Value>, ProtobufError> {
        let full = m.descriptor().full_name().to_string();
        let mut out = Map::new();
        for (field, value) in m.fields() {
            let name = field.name();
            let key = format!("{full}.{name}");
            let path = child(path, name);
            if let (true, Pb::Message(inner)) = (self.schema.inline.contains(&key), value) {
                out.extend(self.object(inner, &path)?);
                continue;
            }
            if !field.is_list()
                && !field.is_map()
                && is_zero(value)
                && !self.schema.keep.contains(&key)
            {
                continue;
            }
            out.insert(name.to_string(), self.value(value, &path)?);
        }
        Ok(out)
    }

    fn value(&self, v: &Pb, path: &str) -> Result<Value, ProtobufError> {
        Ok(match v {
            Pb::Bool(b) => Value::Bool(*b),
            Pb::I32(n) | Pb::EnumNumber(n) => Value::from(*n),
            Pb::I64(n) => Value::from(*n),
            Pb::U32(n) => Value::from(*n),
            Pb::U64(n) => Value::from(*n),
            Pb::F32(f) => self.float(f64::from(*f), path)?,
            Pb::F64(f) => self.float(*f, path)?,
            Pb::String(s) => Value::String(s.clone()),
            Pb::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            Pb::Message(m) => self.message(m, path)?,
            Pb::List(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.value(item, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            Pb::Map(entries) => {
                let mut out = Map::new();
                for (k, item) in entries {
                    let key = match k {
                        MapKey::String(s) => s.clone(),
                        MapKey::Bool(b) => b.to_string(),
                        MapKey::I32(n) => n.to_string(),
                        MapKey::I64(n) => n.to_string(),
                        MapKey::U32(n) => n.to_string(),
                        MapKey::U64(n) => n.to_string(),
                    };
                    let item = self.value(item, &format!("{path}[{key}]"))?;
                    out.insert(key, item);
                }
                Value::Object(out)
            }
        })
    }

    fn float(&self, f: f64, path: &str) -> Result<Value, ProtobufError> {
        serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| self.field_error(path, format!("{f} is not a JSON number")))
    }

    fn int_or_string(&self, m: &DynamicMessage, path: &str) -> Result<Value, ProtobufError> {
        match int_field(m, "type") {
            0 => Ok(Value::from(int_field(m, "intVal"))),
            1 => Ok(Value::String(string_field(m, "strVal"))),
            t => Err(self.field_error(path, format!("IntOrString of unknown type {t}"))),
        }
    }

    /// `metav1.Time` is RFC 3339 to the second, `MicroTime` to the microsecond; the zero time
    /// is `null`, as Go writes it.
    fn time(&self, m: &DynamicMessage, path: &str, micro: bool) -> Result<Value, ProtobufError> {
        let (seconds, nanos) = (int_field(m, "seconds"), int_field(m, "nanos"));
        if seconds == 0 && nanos == 0 {
            return Ok(Value::Null);
        }
        let ts = i32::try_from(nanos)
            .ok()
            .and_then(|n| jiff::Timestamp::new(seconds, n).ok())
            .ok_or_else(|| {
                self.field_error(path, format!("time {seconds}s {nanos}ns is out of range"))
            })?;
        let whole = ts.strftime("%Y-%m-%dT%H:%M:%S").to_string();
        Ok(Value::String(if micro {
            format!("{whole}.{:06}Z", ts.subsec_nanosecond() / 1000)
        } else {
            format!("{whole}Z")
        }))
    }

    fn raw_json(&self, raw: &[u8], path: &str) -> Result<Value, ProtobufError> {
        if raw.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(raw)
            .map_err(|e| self.field_error(path, format!("the raw value is not JSON: {e}")))
    }

    /// An embedded object: JSON as written, or itself protobuf-encoded with its own envelope.
    fn raw_extension(&self, raw: &[u8], path: &str) -> Result<Value, ProtobufError> {
        if !raw.starts_with(MAGIC) {
            return self.raw_json(raw, path);
        }
        if self.depth >= MAX_EMBEDDED_DEPTH {
            return Err(self.field_error(path, "embedded objects are nested too deep"));
        }
        super::any_to_json(raw, self.depth + 1)
    }
}

/// A singular scalar at its zero value, which Go's JSON leaves out under `omitempty`.
fn is_zero(v: &Pb) -> bool {
    match v {
        Pb::Bool(b) => !b,
        Pb::I32(n) | Pb::EnumNumber(n) => *n == 0,
        Pb::I64(n) => *n == 0,
        Pb::U32(n) => *n == 0,
        Pb::U64(n) => *n == 0,
        Pb::F32(f) => *f == 0.0,
        Pb::F64(f) => *f == 0.0,
        Pb::String(s) => s.is_empty(),
        Pb::Bytes(b) => b.is_empty(),
        Pb::Message(_) | Pb::List(_) | Pb::Map(_) => false,
    }
}

fn int_field(m: &DynamicMessage, name: &str) -> i64 {
    match m.get_field_by_name(name).as_deref() {
        Some(Pb::I64(n)) => *n,
        Some(Pb::I32(n)) => i64::from(*n),
        _ => 0,
    }
}

fn string_field(m: &DynamicMessage, name: &str) -> String {
    match m.get_field_by_name(name).as_deref() {
        Some(Pb::String(s)) => s.clone(),
        _ => String::new(),
    }
}

fn bytes_field(m: &DynamicMessage, name: &str) -> Vec<u8> {
    match m.get_field_by_name(name).as_deref() {
        Some(Pb::Bytes(b)) => b.to_vec(),
        _ => Vec::new(),
    }
}

/// A `time.Duration` in nanoseconds as Go's `Duration.String` writes it: `1h0m0s`, `1.5s`,
/// `300ms`, `0s`.
pub(super) fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    const SECOND: u64 = 1_000_000_000;
    if u < SECOND {
        let (unit, div, digits) = match u {
            0..1_000 => ("ns", 1, 0),
            1_000..1_000_000 => ("µs", 1_000, 3),
            _ => ("ms", 1_000_000, 6),
        };
        return format!("{sign}{}{unit}", fraction(u, div, digits));
    }
    let (hours, rest) = (u / (3600 * SECOND), u % (3600 * SECOND));
    let (minutes, nanos) = (rest / (60 * SECOND), rest % (60 * SECOND));
    let seconds = fraction(nanos, SECOND, 9);
    match (hours, minutes) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, m) => format!("{sign}{m}m{seconds}s"),
        (h, m) => format!("{sign}{h}h{m}m{seconds}s"),
    }
}

/// `v / div` with its fraction (of `digits` digits) written out and trailing zeros dropped.
fn fraction(v: u64, div: u64, digits: usize) -> String {
    let (whole, frac) = (v / div, v % div);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:0digits$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}
