//! Corral's gRPC API, generated from `proto/corral/v1/api.proto`.
//! Objects travel as Kubernetes JSON inside these envelopes.

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("corral.v1");
}

pub use v1::*;
