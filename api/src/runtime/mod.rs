//! The client runtime every component builds on, shaped like kube-runtime: one [`watcher`]
//! (list, then watch from the list's revision, re-list when history is gone, back off), one
//! [`reflector`] store fed by it, one aggregating event [`recorder`] and one Lease-based
//! leader [`leader`] elector. Connection concerns (credentials, several servers) belong here.

pub mod leader;
pub mod logging;
pub mod recorder;
pub mod reflector;
pub mod servers;
pub mod systemd;
pub mod watcher;

pub use leader::{LeaderConfig, LeaderElector, LostLease};
pub use recorder::Recorder;
pub use reflector::{Change, ObjectKey, Store};
pub use watcher::{watcher, Event, Watcher, WatcherConfig};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// An object's resourceVersion as the store's revision (0 when absent or malformed).
pub fn revision(meta: &ObjectMeta) -> i64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
