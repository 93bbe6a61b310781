//! Corral's gRPC API, generated from `proto/corral/v1/api.proto`.
//! Objects travel as Kubernetes JSON inside these envelopes.

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("corral.v1");
}

pub use v1::*;

/// Kubernetes' own protobuf schema (`generated.proto` of the groups Corral serves), vendored in
/// `third_party/k8s-proto`, for reading the protobuf bodies kubectl sends.
pub mod k8s {
    /// A `FileDescriptorSet` of Kubernetes' protos and their imports.
    pub const DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/k8s-descriptors.bin"));

    /// What the JSON form of a message depends on beyond its schema: `inline` fields and the
    /// scalars whose zero value JSON keeps (generated from the Go struct tags, see the file).
    pub const JSON_RULES: &str = include_str!("../third_party/k8s-proto/json-rules.txt");
}
