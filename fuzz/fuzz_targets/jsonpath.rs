//! `-o jsonpath` templates (`cli/src/jsonpath.rs`): any template renders or is refused, over
//! any JSON document; a bare path renders as the values `values` selects, joined by spaces.
//!
//! Input: the template, then optionally a NUL byte and the JSON document to render (a pod
//! list when absent or not JSON).
#![no_main]

use corral_cli::jsonpath;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fn default_root() -> &'static Value {
    static ROOT: OnceLock<Value> = OnceLock::new();
    ROOT.get_or_init(|| json!({"kind": "List", "items": [
        {"metadata": {"name": "a", "labels": {"app": "web", "k.e.y": "v"}},
         "spec": {"containers": [{"name": "c", "image": "nginx"}, {"name": "d", "image": "busybox"}]},
         "status": {"conditions": [{"type": "Ready", "status": "True"}], "podIP": "10.42.0.5"}},
        {"metadata": {"name": "b"}, "status": {"conditions": [{"type": "Ready", "status": "False"}], "phase": 3}}
    ]}))
}

fuzz_target!(|data: &[u8]| {
    let (template, doc) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(template) = std::str::from_utf8(template) else {
        return;
    };
    let parsed: Option<Value> = doc.and_then(|d| serde_json::from_slice(d).ok());
    let root = parsed.as_ref().unwrap_or_else(|| default_root());
    let rendered = jsonpath::render(template, root);
    let values = jsonpath::values(template, root);
    // A bare path in braces renders what `values` selects.
    let bare = template.trim();
    if bare.starts_with('.') && !bare.contains(['{', '}', '"', '\'']) && bare.trim_end() == bare {
        let wrapped = jsonpath::render(&format!("{{{bare}}}"), root);
        match (&values, &wrapped) {
            (Ok(v), Ok(w)) => {
                let joined: Vec<String> = v.iter().map(jsonpath::show_value).collect();
                assert_eq!(&joined.join(" "), w, "{bare:?}");
            }
            (Err(_), Err(_)) => {}
            _ => panic!("{bare:?}: values {values:?} but render {wrapped:?}"),
        }
    }
    let _ = rendered;
});
