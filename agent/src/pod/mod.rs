//! Pods on this node: the pure per-container state and status (`state`), one worker task per
//! pod UID (`worker`), the manager that watches the API and the runtime (`manager`), lifecycle
//! hooks (`lifecycle`), the events recorded on pods (`events`) and the workers' calls to the
//! control plane (`api`).

pub mod api;
pub mod events;
pub mod lifecycle;
pub mod manager;
pub mod state;
pub mod worker;
