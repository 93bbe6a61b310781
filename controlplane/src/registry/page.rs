//! Lists in pages, as the API server serves `limit`, `continue`, `resourceVersion` and
//! `resourceVersionMatch`: every page of one list is read at the first page's revision (a
//! consistent snapshot, or 410 once that history is compacted), and a continue token names
//! that revision and the last key served.

use base64::Engine;
use serde_json::{json, Value};

use super::ApiError;
use crate::store::Revision;

/// Which revision a list is read at, and how much of it one page holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// At most this many items (0: all).
    pub limit: usize,
    /// Where a previous page stopped.
    pub continue_from: Option<Continue>,
    pub revision: RevisionChoice,
}

/// `resourceVersion` with `resourceVersionMatch`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RevisionChoice {
    /// Unset, or "0": the newest.
    #[default]
    Newest,
    /// Not older than this (the newest, once the store has reached it).
    NotOlderThan(Revision),
    /// Exactly this one (from history).
    Exact(Revision),
}

/// A continue token's content: the list's revision and the last key served, relative to the
/// list's prefix (so a token never reaches outside the listed resource and namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continue {
    pub revision: Revision,
    pub after: String,
}

impl Continue {
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"rv": self.revision, "start": self.after}).to_string())
    }

    pub fn decode(token: &str) -> Result<Continue, ApiError> {
        let bad = || ApiError::BadRequest(format!("continue key is not valid: {token:?}"));
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| bad())?;
        let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
        match (v["rv"].as_i64(), v["start"].as_str()) {
            (Some(revision), Some(after)) if revision > 0 => Ok(Continue {
                revision,
                after: after.to_string(),
            }),
            _ => Err(bad()),
        }
    }
}

impl ListOptions {
    /// The options of a request, checked as the API server checks them.
    pub fn parse(
        limit: i64,
        continue_token: &str,
        resource_version: &str,
        exact: Option<bool>,
    ) -> Result<ListOptions, ApiError> {
        let bad = |m: &str| Err(ApiError::BadRequest(m.to_string()));
        if limit < 0 {
            return bad("limit must not be negative");
        }
        let continue_from = if continue_token.is_empty() {
            None
        } else {
            if !resource_version.is_empty() && resource_version != "0" {
                return bad("specifying resource version is not allowed when using continue");
            }
            Some(Continue::decode(continue_token)?)
        };
        let rv: Option<Revision> = match resource_version {
            "" => None,
            text => Some(text.parse().map_err(|_| {
                ApiError::BadRequest(format!("invalid resource version: {text:?}"))
            })?),
        };
        let revision = match (rv, exact) {
            (None, Some(_)) => {
                return bad("resourceVersionMatch is forbidden unless resourceVersion is provided")
            }
            (Some(0), Some(true)) => {
                return bad("resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"")
            }
            (None, None) | (Some(0), _) => RevisionChoice::Newest,
            (Some(r), Some(true)) => RevisionChoice::Exact(r),
            (Some(r), _) => RevisionChoice::NotOlderThan(r),
        };
        Ok(ListOptions {
            limit: limit as usize,
            continue_from,
            revision,
        })
    }
}

/// One page of keys (in key order, with the listed prefix removed) that pass `keep`: those
/// after the continue point, at most `limit`, and the continue token when more would pass.
pub fn paginate<T>(
    items: impl IntoIterator<Item = (String, T)>,
    after: Option<&str>,
    limit: usize,
    revision: Revision,
    mut keep: impl FnMut(&T) -> bool,
) -> (Vec<T>, Option<String>) {
    let mut page = Vec::new();
    let mut last: Option<String> = None;
    for (key, item) in items {
        if after.is_some_and(|a| key.as_str() <= a) || !keep(&item) {
            continue;
        }
        if limit > 0 && page.len() == limit {
            let token = Continue {
                revision,
                after: last.unwrap_or_default(),
            };
            return (page, Some(token.encode()));
        }
        last = Some(key);
        page.push(item);
    }
    (page, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_keys_and_continue_only_when_more_would_pass() {
        let items = || {
            ["a/1", "a/2", "a/3", "b/1", "b/2"]
                .into_iter()
                .map(|k| (k.to_string(), k.to_string()))
        };
        let (first, token) = paginate(items(), None, 2, 7, |_| true);
        assert_eq!(first, ["a/1", "a/2"]);
        let token = Continue::decode(&token.unwrap()).unwrap();
        assert_eq!(
            token,
            Continue {
                revision: 7,
                after: "a/2".into()
            }
        );
        let (second, token) = paginate(items(), Some(&token.after), 2, 7, |_| true);
        assert_eq!(second, ["a/3", "b/1"]);
        let (third, token) = paginate(
            items(),
            Some(&Continue::decode(&token.unwrap()).unwrap().after),
            2,
            7,
            |_| true,
        );
        assert_eq!((third, token), (vec!["b/2".to_string()], None));
        // A filter: the page is full at the limit, with no token when nothing more passes.
        let (only_a, token) = paginate(items(), None, 3, 7, |k| k.starts_with('a'));
        assert_eq!((only_a.len(), token), (3, None));
        let (all, token) = paginate(items(), None, 0, 7, |_| true);
        assert_eq!((all.len(), token), (5, None));
    }

    #[test]
    fn list_options_are_checked_as_the_api_server_checks_them() {
        let ok = |l, c: &str, rv: &str, m| ListOptions::parse(l, c, rv, m).unwrap();
        let err =
            |l, c: &str, rv: &str, m| ListOptions::parse(l, c, rv, m).unwrap_err().to_string();
        assert_eq!(ok(0, "", "", None), ListOptions::default());
        assert_eq!(ok(0, "", "0", None).revision, RevisionChoice::Newest);
        assert_eq!(
            ok(5, "", "42", None).revision,
            RevisionChoice::NotOlderThan(42)
        );
        assert_eq!(
            ok(5, "", "42", Some(false)).revision,
            RevisionChoice::NotOlderThan(42)
        );
        assert_eq!(
            ok(5, "", "42", Some(true)).revision,
            RevisionChoice::Exact(42)
        );
        let token = Continue {
            revision: 9,
            after: "x".into(),
        }
        .encode();
        assert_eq!(ok(5, &token, "", None).continue_from.unwrap().revision, 9);
        assert!(err(5, &token, "9", None).contains("not allowed when using continue"));
        assert!(err(5, "garbage!", "", None).contains("continue key is not valid"));
        assert!(err(0, "", "", Some(true)).contains("forbidden unless resourceVersion"));
        assert!(err(0, "", "abc", None).contains("invalid resource version"));
        assert!(err(-1, "", "", None).contains("must not be negative"));
        let zero_rv =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"rv":0,"start":"x"}"#);
        assert!(err(1, &zero_rv, "", None).contains("continue key is not valid"));
    }
}
