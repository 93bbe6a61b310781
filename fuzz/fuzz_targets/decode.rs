//! Manifest decoding (`api/src/decode.rs`): any text splits into documents or fails with a
//! located YAML error; each document gets a kind or a field error; and a document that passes
//! the schema check is in canonical form, so checking the canonical form again returns it
//! unchanged (the stored object does not drift on the next read or apply).
#![no_main]

use corral_api::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(docs) = decode::documents("fuzz.yaml", text) else {
        return;
    };
    for doc in docs {
        let _ = decode::describe(&doc);
        let Ok(info) = decode::kind_of(&doc) else {
            continue;
        };
        let Ok(canonical) = decode::check_schema(info, &doc) else {
            continue;
        };
        let again = decode::check_schema(info, &canonical)
            .unwrap_or_else(|e| panic!("canonical {canonical} fails its own schema: {e}"));
        assert_eq!(again, canonical, "the canonical form is stable");
        // JSON text of the canonical form decodes as a document to the same value.
        let text = serde_json::to_string(&canonical).expect("JSON values serialize");
        let reread = decode::documents("canonical.json", &text)
            .unwrap_or_else(|e| panic!("canonical JSON {text} is not a document: {e}"));
        assert_eq!(reread, vec![canonical], "{text}");
    }
});
