//! The pod workers' calls to the control plane, behind the narrow `PodApi` trait: status
//! updates, the final delete, and the objects a container start reads (Services,
//! ConfigMaps and Secrets, volume claims). `corral_api::Client` is the real one; `fake` has a
//! typed fake that records the calls, for tests that need no API server.

pub mod fake;

use std::path::PathBuf;

use async_trait::async_trait;
use corral_api::client::{DeleteOptions, Error};
use k8s_openapi::api::core::v1::Pod;

use crate::configdata::{ConfigData, References};
use crate::svcenv::ServiceEnvError;
use crate::volumes::ClaimError;

#[async_trait]
pub trait PodApi: Send + Sync + 'static {
    /// Writes the pod's status subresource.
    async fn update_status(&self, pod: &Pod) -> Result<(), Error>;
    /// Deletes the pod (for a worker, the final grace-0 delete bound to the pod's uid).
    async fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        opts: DeleteOptions,
    ) -> Result<(), Error>;
    /// The Service variables of a container of `pod` starting now (`NAME=value`).
    async fn service_env(&self, pod: &Pod) -> Result<Vec<String>, ServiceEnvError>;
    /// The ConfigMaps and Secrets `refs` names; a missing one is simply absent.
    async fn config_data(&self, namespace: &str, refs: &References) -> Result<ConfigData, Error>;
    /// The host directory of the volume bound to a PersistentVolumeClaim, created if needed.
    async fn claim_dir(&self, namespace: &str, claim: &str) -> Result<PathBuf, ClaimError>;
}

#[async_trait]
impl PodApi for corral_api::Client {
    async fn update_status(&self, pod: &Pod) -> Result<(), Error> {
        corral_api::Client::update_status(self, pod).await.map(drop)
    }

    async fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        opts: DeleteOptions,
    ) -> Result<(), Error> {
        self.delete::<Pod>(namespace, name, opts).await.map(drop)
    }

    async fn service_env(&self, pod: &Pod) -> Result<Vec<String>, ServiceEnvError> {
        crate::svcenv::for_pod(self, pod).await
    }

    async fn config_data(&self, namespace: &str, refs: &References) -> Result<ConfigData, Error> {
        crate::configdata::fetch(self, namespace, refs).await
    }

    async fn claim_dir(&self, namespace: &str, claim: &str) -> Result<PathBuf, ClaimError> {
        crate::volumes::resolve_claim(self, namespace, claim).await
    }
}
