//! OpenAPI: the v3 index (`/openapi/v3`) and one document per group-version with the paths
//! Corral serves and the component schemas of k8s-openapi's types (Kubernetes' descriptions,
//! so `kubectl explain` works), generated once on first use and kept as bytes with their hash
//! (kubectl caches a document by the `?hash=` of its URL, as kube-apiserver serves them). Older
//! kubectl (v1.20) reads `/openapi/v2` instead, as protobuf (`v2.rs`).

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Instant;

use bytes::Bytes;
use corral_api::kinds::{self, ResourceInfo};
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};

use super::response::{self, Body};

mod paths;
pub mod schemas;
#[cfg(test)]
mod tests;
pub mod v2;

/// A group-version as the index spells it (`api/v1`, `apis/apps/v1`).
fn group_version(k: &ResourceInfo) -> String {
    if k.group.is_empty() {
        format!("api/{}", k.version)
    } else {
        format!("apis/{}/{}", k.group, k.version)
    }
}

/// One generated document: its JSON and the hash its URL carries.
pub struct Document {
    pub json: Bytes,
    pub hash: String,
}

/// Every group-version's document, and the index naming them.
pub struct Documents {
    pub by_gv: BTreeMap<String, Document>,
    pub index: Bytes,
}

static DOCUMENTS: OnceLock<Documents> = OnceLock::new();

/// The documents, generated on the first call (not at start: a control plane nobody asks for
/// OpenAPI does not hold them).
pub fn documents() -> &'static Documents {
    DOCUMENTS.get_or_init(|| {
        let started = Instant::now();
        let docs = generate();
        let bytes: usize = docs.by_gv.values().map(|d| d.json.len()).sum();
        tracing::info!(
            documents = docs.by_gv.len(),
            bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "openapi v3 documents generated"
        );
        docs
    })
}

/// Builds every document (pure; [`documents`] keeps the result).
pub fn generate() -> Documents {
    let mut groups: BTreeMap<String, Vec<&'static ResourceInfo>> = BTreeMap::new();
    for k in kinds::ALL {
        groups.entry(group_version(k)).or_default().push(k);
    }
    let mut by_gv = BTreeMap::new();
    for (gv, kinds) in groups {
        let json = serde_json::to_vec(&document_for(&gv, &kinds)).expect("JSON values serialize");
        let hash = hex::encode_upper(Sha512::digest(&json));
        by_gv.insert(
            gv,
            Document {
                json: json.into(),
                hash,
            },
        );
    }
    let paths: Map<String, Value> = by_gv
        .iter()
        .map(|(gv, d)| {
            let url = format!("/openapi/v3/{gv}?hash={}", d.hash);
            (gv.clone(), json!({"serverRelativeURL": url}))
        })
        .collect();
    let index = serde_json::to_vec(&json!({"paths": paths})).expect("JSON values serialize");
    Documents {
        by_gv,
        index: index.into(),
    }
}

/// The document of one group-version (`gv` as the index spells it) serving `kinds`.
pub fn document_for(gv: &str, kinds: &[&'static ResourceInfo]) -> Value {
    let (components, named) = schemas::components(kinds);
    let mut paths = Map::new();
    let prefix = format!("/{gv}");
    for (info, name) in &named {
        paths::add(&mut paths, &prefix, info, name);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", super::discovery::KUBE_MINOR)},
        "paths": paths,
        "components": {"schemas": components},
    })
}

/// `/openapi/v3`.
pub fn serve_index() -> Response<Body> {
    let mut r = response::bytes(StatusCode::OK, response::JSON, documents().index.clone());
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    r
}

/// `/openapi/v3/<gv>?hash=...`: with the current hash the document may be cached for good, as
/// kube-apiserver answers; without it (or with an old one) it must be asked again.
pub fn serve_document(gv: &str, hash: Option<&str>) -> Option<Response<Body>> {
    let doc = documents().by_gv.get(gv)?;
    let mut r = response::bytes(StatusCode::OK, response::JSON, doc.json.clone());
    let cache = if hash == Some(doc.hash.as_str()) {
        "public, immutable"
    } else {
        "no-cache, private"
    };
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", doc.hash)) {
        r.headers_mut().insert(header::ETAG, etag);
    }
    Some(r)
}

/// The content type `/openapi/v2` is answered with, as kube-apiserver does: clients ask for
/// `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, but Go's media type parser
/// refuses that name in a response (client-go then fails with "mime: unexpected content").
pub const V2_PROTOBUF: &str = "application/octet-stream";
