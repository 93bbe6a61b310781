//! Corral's object model and client.
//!
//! Objects are Kubernetes' own types from `k8s-openapi` (re-exported as [`k8s`]); this crate adds
//! the kind table, selectors, manifest decoding with precise errors, and the typed gRPC client.

pub mod client;
pub mod credentials;
pub mod decode;
pub mod files;
pub mod kinds;
pub mod kubeconfig;
pub mod nodeip;
pub mod object;
pub mod patch;
pub mod pin;
pub mod printers;
pub mod protobuf;
pub mod rules;
pub mod runtime;
pub mod selector;
pub mod status;
pub mod tls;
pub mod token;
pub mod warning;

pub use client::{Client, DeleteOptions, ListParams, WatchEvent};
pub use credentials::Credentials;
pub use k8s_openapi as k8s;
pub use kinds::ResourceInfo;
