//! Pods on this node: the pure per-container state and status (`state`), one worker task per
//! pod UID (`worker`), the manager that watches the API and the runtime (`manager`), lifecycle
//! hooks (`lifecycle`) and the events recorded on pods (`events`).

pub mod events;
pub mod lifecycle;
pub mod manager;
pub mod state;
pub mod worker;
