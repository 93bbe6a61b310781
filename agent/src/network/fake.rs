//! A typed in-memory `Network` for tests: each pod set up gets the next address from
//! 10.88.0.2 on (the same again when set up twice), teardowns are recorded, and a test can
//! make setups fail to see how a pod waits for its sandbox.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{Network, NetworkError, PodNet, PodNetRequest, Result};

#[derive(Default)]
struct State {
    pods: BTreeMap<String, PodNet>,
    next: u32,
    teardowns: Vec<String>,
    fail_setup: Option<String>,
}

#[derive(Default)]
pub struct FakeNetwork {
    state: Mutex<State>,
}

impl FakeNetwork {
    /// Setups fail with `message` (as a plugin error) until called again with None.
    pub fn fail_setup(&self, message: Option<&str>) {
        self.state.lock().fail_setup = message.map(str::to_string);
    }

    /// Pod uids with network state now.
    pub fn pods(&self) -> Vec<String> {
        self.state.lock().pods.keys().cloned().collect()
    }

    /// Pod uids torn down so far, in order.
    pub fn teardowns(&self) -> Vec<String> {
        self.state.lock().teardowns.clone()
    }
}

#[async_trait]
impl Network for FakeNetwork {
    async fn setup(&self, req: &PodNetRequest) -> Result<PodNet> {
        let mut s = self.state.lock();
        if let Some(message) = s.fail_setup.clone() {
            return Err(NetworkError::Plugin {
                plugin: "fake".into(),
                command: "ADD",
                pod: req.uid.clone(),
                message,
            });
        }
        if let Some(net) = s.pods.get(&req.uid) {
            return Ok(net.clone());
        }
        s.next += 1;
        let net = PodNet {
            netns: self.netns_path(&req.uid),
            ip: format!("10.88.{}.{}", s.next / 250, s.next % 250 + 1),
        };
        s.pods.insert(req.uid.clone(), net.clone());
        Ok(net)
    }

    async fn teardown(&self, uid: &str) -> Result<()> {
        let mut s = self.state.lock();
        s.pods.remove(uid);
        s.teardowns.push(uid.to_string());
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>> {
        Ok(self.pods())
    }

    fn netns_path(&self, uid: &str) -> PathBuf {
        PathBuf::from("/run/netns/fake").join(uid)
    }
}
