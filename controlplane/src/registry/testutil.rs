//! For the registry's unit tests: a registry over a real SQLite store in a temporary
//! directory, with the default namespaces.

use std::sync::Arc;

use super::{Registry, ServiceAllocator};
use crate::store::sqlite::SqliteStore;

pub(crate) async fn registry(dir: &tempfile::TempDir) -> Registry {
    let store = SqliteStore::open(dir.path().join("db")).expect("store opens");
    let services = ServiceAllocator::new("10.43.0.0/16").expect("valid cidr");
    let registry = Registry::new(Arc::new(store), Default::default(), services);
    registry.bootstrap().await.expect("namespaces");
    registry
}
