//! Corral's scheduler: watches unscheduled pods and nodes, runs filter and score plugins over a
//! cache fed by the watch, and binds each pod to a node. Also hosts hollow nodes (kubemark-like
//! fake nodes) used to measure the control plane and the scheduler at thousands of nodes.

pub mod algorithm;
pub mod cache;
pub mod events;
pub mod framework;
pub mod hollow;
pub mod metrics;
pub mod nodeinfo;
pub mod plugins;
pub mod podinfo;
pub mod queue;
pub mod scheduler;

pub use scheduler::{Config, Scheduler};

/// The names a pod's `spec.schedulerName` may carry for this scheduler to take it.
pub const SCHEDULER_NAMES: &[&str] = &["default-scheduler", "corral-scheduler"];

/// The Lease (in kube-system) whose holder schedules.
pub const LEADER_LEASE: &str = "corral-scheduler";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: corral_api::client::Error,
    },
    #[error("{object}: {field}: {source}")]
    Quantity {
        object: String,
        field: String,
        #[source]
        source: corral_api::rules::quantity::QuantityError,
    },
    #[error("{object}: {field}: {source}")]
    Selector {
        object: String,
        field: String,
        #[source]
        source: corral_api::selector::SelectorError,
    },
    #[error("watch of {resource} ended")]
    WatchEnded { resource: &'static str },
}

impl Error {
    pub(crate) fn api(what: impl Into<String>, source: corral_api::client::Error) -> Self {
        Error::Api {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
