//! A typed fake of `PodApi` for tests without an API server: it records every status, delete
//! and event a worker sends, answers with no Services, with the ConfigMaps and bound claims a
//! test added (none at first), and lets a test wait (under its own deadline) until the
//! recorded calls show what it expects.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use corral_api::client::{DeleteOptions, Error};
use corral_api::runtime::recorder::EventSink;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, PodStatus};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::PodApi;
use crate::configdata::{ConfigData, References};
use crate::svcenv::ServiceEnvError;
use crate::volumes::ClaimError;

/// One delete sent to the API.
#[derive(Debug, Clone)]
pub struct Delete {
    pub namespace: String,
    pub name: String,
    pub opts: DeleteOptions,
}

/// Everything sent so far, in order.
#[derive(Debug, Clone, Default)]
pub struct Calls {
    pub statuses: Vec<PodStatus>,
    pub deletes: Vec<Delete>,
    pub events: Vec<Event>,
}

impl Calls {
    /// Phases of the statuses posted, in order.
    pub fn phases(&self) -> Vec<String> {
        self.statuses
            .iter()
            .map(|s| s.phase.clone().unwrap_or_default())
            .collect()
    }
}

pub struct FakePodApi {
    calls: watch::Sender<Calls>,
    configmaps: Mutex<BTreeMap<String, ConfigMap>>,
    /// Bound claims and their volumes' directories.
    claims: Mutex<BTreeMap<String, PathBuf>>,
}

impl Default for FakePodApi {
    fn default() -> Self {
        FakePodApi {
            calls: watch::Sender::new(Calls::default()),
            configmaps: Mutex::default(),
            claims: Mutex::default(),
        }
    }
}

impl FakePodApi {
    /// Creates (or replaces) ConfigMap `name` with `data`.
    pub fn add_configmap(&self, name: &str, data: &[(&str, &str)]) {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        cm.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        self.configmaps.lock().insert(name.into(), cm);
    }

    /// Binds claim `claim` to a volume in `dir`.
    pub fn bind_claim(&self, claim: &str, dir: PathBuf) {
        self.claims.lock().insert(claim.into(), dir);
    }

    pub fn calls(&self) -> Calls {
        self.calls.borrow().clone()
    }

    /// Waits until `f` finds what it looks for in the calls; callers bound it with a timeout.
    pub async fn wait_for<T>(&self, mut f: impl FnMut(&Calls) -> Option<T>) -> T {
        let mut rx = self.calls.subscribe();
        loop {
            if let Some(t) = f(&rx.borrow_and_update()) {
                return t;
            }
            // The sender lives in `self`, so this only ends with a change.
            let _ = rx.changed().await;
        }
    }
}

#[async_trait]
impl PodApi for FakePodApi {
    async fn update_status(&self, pod: &Pod) -> Result<(), Error> {
        let status = pod.status.clone().unwrap_or_default();
        self.calls.send_modify(|c| c.statuses.push(status));
        Ok(())
    }

    async fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        opts: DeleteOptions,
    ) -> Result<(), Error> {
        let d = Delete {
            namespace: namespace.into(),
            name: name.into(),
            opts,
        };
        self.calls.send_modify(|c| c.deletes.push(d));
        Ok(())
    }

    async fn service_env(&self, _: &Pod) -> Result<Vec<String>, ServiceEnvError> {
        Ok(Vec::new())
    }

    async fn config_data(&self, namespace: &str, refs: &References) -> Result<ConfigData, Error> {
        let have = self.configmaps.lock();
        let configmaps = refs
            .configmaps
            .iter()
            .filter_map(|n| have.get(n).map(|cm| (n.clone(), cm.clone())))
            .collect();
        Ok(ConfigData {
            namespace: namespace.into(),
            configmaps,
            ..Default::default()
        })
    }

    async fn claim_dir(&self, _: &str, claim: &str) -> Result<PathBuf, ClaimError> {
        self.claims
            .lock()
            .get(claim)
            .cloned()
            .ok_or_else(|| ClaimError::NotBound {
                claim: claim.into(),
            })
    }
}

/// Events arrive through the shared recorder: each create or replace is recorded as written.
impl EventSink for FakePodApi {
    fn create<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), Error>> {
        let event = event.clone();
        self.calls.send_modify(|c| c.events.push(event));
        Box::pin(async { Ok(()) })
    }
    fn replace<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), Error>> {
        self.create(event)
    }
}
