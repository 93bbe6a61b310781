//! One home for each Kubernetes rule that more than one component applies: names,
//! quantities, node selectors, taints and tolerations, the default pull policy, owner references and
//! revision hashes, size limits, the proxies' programmed-endpoints reports. Pure functions, each module with its table test.

pub mod limits;
pub mod names;
pub mod node_selector;
pub mod owner;
pub mod programmed;
pub mod pull_policy;
pub mod quantity;
pub mod revision;
pub mod taints;
