//! Corral's control plane: the store, the API server and the controllers.

pub mod store;
pub mod tunnel;
