use std::path::PathBuf;
use std::process::Command;

/// Kubernetes' schema for the groups Corral serves, vendored from kubernetes/api and
/// kubernetes/apimachinery (see third_party/k8s-proto/README.md).
const K8S_PROTOS: &[&str] = &[
    "k8s.io/api/core/v1/generated.proto",
    "k8s.io/api/apps/v1/generated.proto",
    "k8s.io/api/rbac/v1/generated.proto",
    "k8s.io/api/networking/v1/generated.proto",
    "k8s.io/api/coordination/v1/generated.proto",
    "k8s.io/api/authorization/v1/generated.proto",
    "k8s.io/api/policy/v1/generated.proto",
    "k8s.io/api/autoscaling/v1/generated.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure().compile_protos(
        &["proto/corral/v1/api.proto", "proto/corral/v1/join.proto"],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto");

    // Kubernetes' protos only as a descriptor set (no generated Rust types): the REST API reads
    // protobuf bodies by walking them dynamically into the JSON the rest of Corral speaks.
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("k8s-descriptors.bin");
    let protoc = std::env::var("PROTOC").unwrap_or_else(|_| "protoc".into());
    let status = Command::new(&protoc)
        .arg("--include_imports")
        .arg(format!("--descriptor_set_out={}", out.display()))
        .arg("-Ithird_party/k8s-proto")
        .args(K8S_PROTOS)
        .status()
        .map_err(|e| format!("running {protoc} for the Kubernetes descriptor set: {e}"))?;
    if !status.success() {
        return Err(format!("{protoc} failed on third_party/k8s-proto: {status}").into());
    }
    println!("cargo:rerun-if-changed=third_party/k8s-proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    Ok(())
}
