//! The cluster CA shared by every server on one datastore (issue 16), as k3s shares its
//! bootstrap data: the first server stores its CA certificate and key in the store, sealed
//! with AES-256-GCM under a key derived from the server token (PBKDF2-HMAC-SHA256); the next
//! servers, given the same token, unseal it into their own TLS directory before loading it.

use std::num::NonZeroU32;
use std::path::Path;

use aws_lc_rs::{aead, pbkdf2, rand};
use base64::Engine;
use serde_json::{json, Value};
use tracing::info;

use super::{write_private, PkiError};
use crate::store::{Store, StoreError};

/// Where the sealed CA lives in the store.
pub const KEY: &str = "/corral/bootstrap/ca";
const ITERATIONS: u32 = 100_000;
const FILES: [&str; 2] = ["ca.crt", "ca.key"];

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("the cluster CA in the datastore could not be unsealed: the server token is not this cluster's")]
    WrongToken,
    #[error("the cluster CA in the datastore is malformed: {0}")]
    Malformed(String),
    #[error("this server's CA ({dir}) is not the cluster's CA in the datastore: remove {dir}/ca.crt and ca.key to take the cluster's, or point --datastore-endpoint at this server's cluster")]
    Differs { dir: String },
    #[error("the datastore: {0}")]
    Store(#[from] StoreError),
    #[error("this datastore already holds a cluster: give its server token (--token or --token-file; the first server keeps it in DATA_DIR/server-token)")]
    NoToken,
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("sealing the CA: {0}")]
    Crypto(String),
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn key_for(token: &str, salt: &[u8]) -> Result<aead::LessSafeKey, BootstrapError> {
    let mut key = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(ITERATIONS).expect("non-zero"),
        salt,
        token.as_bytes(),
        &mut key,
    );
    let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, &key)
        .map_err(|e| BootstrapError::Crypto(e.to_string()))?;
    Ok(aead::LessSafeKey::new(unbound))
}

/// `plain` sealed under `token`: JSON with the salt, the nonce and the ciphertext.
pub fn seal(plain: &[u8], token: &str) -> Result<Vec<u8>, BootstrapError> {
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; aead::NONCE_LEN];
    rand::fill(&mut salt).map_err(|e| BootstrapError::Crypto(e.to_string()))?;
    rand::fill(&mut nonce).map_err(|e| BootstrapError::Crypto(e.to_string()))?;
    let key = key_for(token, &salt)?;
    let mut data = plain.to_vec();
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::from(KEY.as_bytes()),
        &mut data,
    )
    .map_err(|e| BootstrapError::Crypto(e.to_string()))?;
    Ok(
        json!({"v": 1, "salt": b64().encode(salt), "nonce": b64().encode(nonce),
               "data": b64().encode(data)})
        .to_string()
        .into_bytes(),
    )
}

/// What [`seal`] sealed, given the same token.
pub fn unseal(sealed: &[u8], token: &str) -> Result<Vec<u8>, BootstrapError> {
    let v: Value =
        serde_json::from_slice(sealed).map_err(|e| BootstrapError::Malformed(e.to_string()))?;
    let field = |name: &str| -> Result<Vec<u8>, BootstrapError> {
        v[name]
            .as_str()
            .and_then(|s| b64().decode(s).ok())
            .ok_or_else(|| BootstrapError::Malformed(format!("field {name:?}")))
    };
    let (salt, nonce, mut data) = (field("salt")?, field("nonce")?, field("data")?);
    let nonce: [u8; aead::NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| BootstrapError::Malformed("field \"nonce\": wrong length".into()))?;
    let key = key_for(token, &salt)?;
    let plain = key
        .open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(KEY.as_bytes()),
            &mut data,
        )
        .map_err(|_| BootstrapError::WrongToken)?;
    Ok(plain.to_vec())
}

/// The CA files of `dir`, when both are there.
fn local(dir: &Path) -> Option<Value> {
    let mut files = serde_json::Map::new();
    for f in FILES {
        files.insert(f.into(), json!(std::fs::read_to_string(dir.join(f)).ok()?));
    }
    Some(Value::Object(files))
}

/// Before the PKI loads: takes the cluster's CA from the store into `dir` (refusing a
/// different local one). Returns whether the store had one.
pub async fn download(store: &dyn Store, dir: &Path, token: &str) -> Result<bool, BootstrapError> {
    let Some(kv) = store.get(KEY).await? else {
        return Ok(false);
    };
    let files: Value = serde_json::from_slice(&unseal(&kv.value, token)?)
        .map_err(|e| BootstrapError::Malformed(e.to_string()))?;
    match local(dir) {
        Some(mine) if mine == files => return Ok(true),
        Some(_) => {
            return Err(BootstrapError::Differs {
                dir: dir.display().to_string(),
            })
        }
        None => {}
    }
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for (f, mode) in [("ca.crt", 0o644), ("ca.key", 0o600)] {
        let pem = files[f]
            .as_str()
            .ok_or_else(|| BootstrapError::Malformed(format!("no {f}")))?;
        write_private(&dir.join(f), pem.as_bytes(), mode)?;
    }
    info!(dir = %dir.display(), "took the cluster CA from the datastore");
    Ok(true)
}

/// After the first server made its CA: stores it, sealed. Another server that stored one
/// first wins; this one then takes that CA (`download`) and must load it again.
pub async fn upload(store: &dyn Store, dir: &Path, token: &str) -> Result<bool, BootstrapError> {
    let files = local(dir).ok_or_else(|| BootstrapError::Malformed("no local CA".into()))?;
    let sealed = seal(files.to_string().as_bytes(), token)?;
    match store.create(KEY, sealed).await {
        Ok(_) => {
            info!("stored the cluster CA in the datastore, sealed with the server token");
            Ok(true)
        }
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The file in the data directory that keeps the server token (0600), as k3s's `token`.
pub const TOKEN_FILE: &str = "server-token";

/// The server token: the one given, else the one this server kept, else (only for a new
/// cluster) a new random one. It is kept in `data_dir` so a restart needs no flag.
pub async fn server_token(
    store: &dyn Store,
    data_dir: &Path,
    given: Option<&str>,
) -> Result<String, BootstrapError> {
    let path = data_dir.join(TOKEN_FILE);
    let token = match given.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => t.to_string(),
        None => match std::fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
            _ if store.get(KEY).await?.is_some() => return Err(BootstrapError::NoToken),
            _ => {
                let mut raw = [0u8; 24];
                rand::fill(&mut raw).map_err(|e| BootstrapError::Crypto(e.to_string()))?;
                raw.iter().map(|b| format!("{b:02x}")).collect()
            }
        },
    };
    write_private(&path, format!("{token}\n").as_bytes(), 0o600)?;
    Ok(token)
}

/// The PKI of a server on a shared datastore: the cluster's CA taken from the store, or this
/// server's new CA stored there when it is the first.
pub async fn load(
    store: &dyn Store,
    dir: &Path,
    sans: &[String],
    token: &str,
) -> Result<super::Pki, BootstrapError> {
    let stored = download(store, dir, token).await?;
    let pki = super::Pki::load_or_create(dir, sans)?;
    if stored || upload(store, dir, token).await? {
        return Ok(pki);
    }
    // Another server stored its CA first: take that one instead of ours.
    for f in FILES {
        let _ = std::fs::remove_file(dir.join(f));
    }
    download(store, dir, token).await?;
    Ok(super::Pki::load_or_create(dir, sans)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_its_token() {
        let sealed = seal(b"the CA", "s3cret").unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("the CA"));
        assert_eq!(unseal(&sealed, "s3cret").unwrap(), b"the CA");
        assert!(matches!(
            unseal(&sealed, "guess"),
            Err(BootstrapError::WrongToken)
        ));
        // Two seals of the same data differ (fresh salt and nonce).
        assert_ne!(sealed, seal(b"the CA", "s3cret").unwrap());
        for garbage in [
            &b"{}"[..],
            b"not json",
            br#"{"salt":"AA==","nonce":"AA==","data":"AA=="}"#,
        ] {
            assert!(matches!(
                unseal(garbage, "s3cret"),
                Err(BootstrapError::Malformed(_))
            ));
        }
    }

    #[tokio::test]
    async fn a_second_server_takes_the_first_servers_ca_and_refuses_another() {
        let db = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(db.path().join("db")).unwrap();
        let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        assert!(!download(&store, first.path(), "tok").await.unwrap());
        super::super::Pki::load_or_create(first.path(), &["localhost".into()]).unwrap();
        assert!(upload(&store, first.path(), "tok").await.unwrap());
        assert!(download(&store, first.path(), "tok").await.unwrap());

        assert!(download(&store, second.path(), "tok").await.unwrap());
        for f in FILES {
            assert_eq!(
                std::fs::read(first.path().join(f)).unwrap(),
                std::fs::read(second.path().join(f)).unwrap()
            );
        }
        let third = tempfile::tempdir().unwrap();
        assert!(matches!(
            download(&store, third.path(), "wrong").await,
            Err(BootstrapError::WrongToken)
        ));
        let other = tempfile::tempdir().unwrap();
        super::super::Pki::load_or_create(other.path(), &["localhost".into()]).unwrap();
        assert!(matches!(
            download(&store, other.path(), "tok").await,
            Err(BootstrapError::Differs { .. })
        ));
        assert!(!upload(&store, other.path(), "tok").await.unwrap());
    }
}
