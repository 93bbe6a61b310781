//! The cluster's identity: the data directory checked before the store opens (a new cluster
//! only in an empty one, said loudly), and the cluster ID served by `Version`: the uid of the
//! `kube-system` namespace, made once with the store (Kubernetes' cluster ID convention).

use std::path::{Path, PathBuf};

use corral_api::kinds;

use crate::registry::{ApiError, Registry};

/// The database file in the data directory.
pub const DB_FILE: &str = "corral.db";

/// What the data directory holds before the store opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDir {
    /// The cluster's database is there: open it.
    Existing,
    /// Missing or empty: a new cluster starts here.
    Empty,
    /// No database, but other files: not ours to start a cluster in.
    Foreign { found: Vec<String> },
}

/// Decides from the names in the directory (none when it does not exist). `lost+found` (a
/// freshly made filesystem mounted there) counts as empty.
pub fn classify(names: &[String]) -> DataDir {
    if names.iter().any(|n| n == DB_FILE) {
        return DataDir::Existing;
    }
    let mut found: Vec<String> = names
        .iter()
        .filter(|n| n.as_str() != "lost+found")
        .cloned()
        .collect();
    if found.is_empty() {
        return DataDir::Empty;
    }
    found.sort();
    DataDir::Foreign { found }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterIdError {
    #[error("reading data directory {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "data directory {path} has no database ({DB_FILE}) but is not empty (found: {found}): \
         refusing to start a new cluster there; point --data-dir at the cluster's directory, \
         or at an empty one for a new cluster"
    )]
    Foreign { path: PathBuf, found: String },
    #[error("reading namespace \"kube-system\" for the cluster ID: {0}")]
    Namespace(#[source] ApiError),
    #[error("namespace \"kube-system\" has no metadata.uid: the store has no cluster ID")]
    NoUid,
}

/// Looks at the data directory before the store opens.
pub fn inspect(dir: &Path) -> Result<DataDir, ClusterIdError> {
    let names = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<Vec<_>, _>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
    .map_err(|source| ClusterIdError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    match classify(&names) {
        DataDir::Foreign { found } => Err(ClusterIdError::Foreign {
            path: dir.to_path_buf(),
            found: found.join(", "),
        }),
        other => Ok(other),
    }
}

/// The cluster ID: the uid `kube-system` got when the store was first bootstrapped (the
/// namespace cannot be deleted, so it never changes for the life of the store).
pub async fn read(registry: &Registry) -> Result<String, ClusterIdError> {
    let ns = registry
        .get(&kinds::NAMESPACES, "", "kube-system")
        .await
        .map_err(ClusterIdError::Namespace)?;
    ns["metadata"]["uid"]
        .as_str()
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .ok_or(ClusterIdError::NoUid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_cluster_starts_only_in_an_empty_data_directory() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let foreign = |n: &[&str]| DataDir::Foreign { found: names(n) };
        for (what, dir, want) in [
            ("missing or empty", names(&[]), DataDir::Empty),
            ("a fresh filesystem", names(&["lost+found"]), DataDir::Empty),
            ("the database", names(&[DB_FILE]), DataDir::Existing),
            (
                "the database and its journal",
                names(&["corral.db-wal", DB_FILE, "corral.db-shm"]),
                DataDir::Existing,
            ),
            (
                "a journal without its database",
                names(&["corral.db-wal"]),
                foreign(&["corral.db-wal"]),
            ),
            (
                "another program's files",
                names(&["var", "etc", "lost+found"]),
                foreign(&["etc", "var"]),
            ),
        ] {
            assert_eq!(classify(&dir), want, "{what}");
        }
    }

    #[test]
    fn a_foreign_data_directory_is_refused_naming_its_path_and_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let e = inspect(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
        assert!(e.contains("found: notes.txt"), "{e}");
        assert_eq!(
            inspect(&dir.path().join("new")).unwrap(),
            DataDir::Empty,
            "a directory still to be made"
        );
    }
}
