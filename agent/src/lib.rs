//! Corral's node agent (a mini-kubelet): registers the node, runs the pods bound to it as
//! containerd containers with CNI networking, reports their status and serves their logs.

pub mod network;
pub mod pod;
pub mod runtime;
pub mod spec;
pub mod testimages;
