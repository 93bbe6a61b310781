//! `corral-controlplane migrate --from sqlite:DIR --to etcd://...`: copies a cluster offline
//! from the embedded SQLite store to etcd: every key as it is (objects keep their uids; their
//! resourceVersions become etcd's revisions), the join and user tokens with them (they are
//! Secrets), and the cluster CA sealed with the server token so servers on etcd take it.

use std::path::{Path, PathBuf};

use tracing::info;

use crate::cluster_id::{self, DataDir};
use crate::pki::bootstrap;
use crate::store::etcd::{EtcdConfig, EtcdStore};
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("--from {spec:?}: expected sqlite:DIR (a control plane's data directory)")]
    BadSource { spec: String },
    #[error("--from {dir}: no cluster database ({}) there", cluster_id::DB_FILE)]
    NoDatabase { dir: PathBuf },
    #[error("--to: etcd already holds a cluster ({keys} keys under /registry/): refusing to mix two clusters")]
    TargetNotEmpty { keys: usize },
    #[error("{0}")]
    Inspect(#[from] cluster_id::ClusterIdError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the cluster CA: {0}")]
    Ca(#[from] bootstrap::BootstrapError),
}

/// What was copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub keys: usize,
    /// Where the server token (sealing the CA in etcd) is kept.
    pub token_file: PathBuf,
}

/// The data directory of a `sqlite:DIR` source.
pub fn source_dir(spec: &str) -> Result<PathBuf, MigrateError> {
    match spec.strip_prefix("sqlite:") {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        _ => Err(MigrateError::BadSource {
            spec: spec.to_string(),
        }),
    }
}

/// Copies the cluster in `dir` (its control plane stopped) into the empty etcd `to`.
pub async fn migrate(
    dir: &Path,
    to: &EtcdConfig,
    token: Option<&str>,
) -> Result<Migrated, MigrateError> {
    if cluster_id::inspect(dir)? != DataDir::Existing {
        return Err(MigrateError::NoDatabase {
            dir: dir.to_path_buf(),
        });
    }
    let from = SqliteStore::open(dir.join(cluster_id::DB_FILE))?;
    let etcd = EtcdStore::connect(to).await?;
    let (existing, _) = etcd.list("/registry/").await?;
    if !existing.is_empty() {
        return Err(MigrateError::TargetNotEmpty {
            keys: existing.len(),
        });
    }
    let (kvs, rev) = from.list("/").await?;
    for kv in &kvs {
        etcd.create(&kv.key, kv.value.to_vec()).await?;
    }
    info!(
        keys = kvs.len(),
        sqlite_revision = rev,
        "copied every key to etcd"
    );
    let token = bootstrap::server_token(&etcd, dir, token).await?;
    bootstrap::upload(&etcd, &dir.join("tls"), &token).await?;
    Ok(Migrated {
        keys: kvs.len(),
        token_file: dir.join(bootstrap::TOKEN_FILE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_a_sqlite_data_directory() {
        assert_eq!(
            source_dir("sqlite:/var/lib/corral/controlplane").unwrap(),
            PathBuf::from("/var/lib/corral/controlplane")
        );
        for bad in ["sqlite:", "/var/lib/corral", "etcd://h:2379"] {
            assert!(source_dir(bad).is_err(), "{bad}");
        }
    }
}
