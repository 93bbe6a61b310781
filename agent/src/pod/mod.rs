//! Pods on this node: the pure per-container state and status (`state`), one worker task per
//! pod UID (`worker`) and the manager that watches the API and the runtime (`manager`).

pub mod manager;
pub mod state;
pub mod worker;
