//! Admission rules beyond an object's own validity: what a cluster allows into a namespace.
//! Pod Security (`podsecurity/`, the Pod Security Standards as Kubernetes' PodSecurity
//! admission applies them) is pure here; the registry runs it (`registry/podsecurity.rs`).

pub mod podsecurity;

/// A gRPC answer carrying admission warnings as Kubernetes sends them (`Warning: 299 - "..."`
/// headers): one `warning` metadata entry per warning.
pub fn respond<T>(message: T, warnings: &[String]) -> tonic::Response<T> {
    let mut response = tonic::Response::new(message);
    for w in warnings {
        let header = corral_api::warning::header(w);
        if let Ok(value) = tonic::metadata::MetadataValue::try_from(header.as_str()) {
            response
                .metadata_mut()
                .append(corral_api::warning::METADATA_KEY, value);
        }
    }
    response
}
