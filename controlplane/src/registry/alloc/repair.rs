//! Mends the claims against the stored services, as kube-apiserver's allocation repair loop
//! does: a claim no service holds (a server crashed between claim and write, or a release
//! failed) goes once this server has seen it unchanged for a grace period (on its own clock,
//! so clock skew between servers does not matter), and an address a service holds without a
//! claim (stored before claims existed) is claimed for it. Every server runs it: each step is
//! a compare-and-swap, so two servers repairing at once do no harm.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use corral_api::kinds;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::claims::{self, Address, Claim, Owner};
use crate::registry::{decode_kv, prefix};
use crate::store::{Revision, Store, StoreError};

/// How long a claim nobody holds must stay unchanged before it is released: longer than any
/// write takes between its claim and its service write.
pub const GRACE: Duration = Duration::from_secs(60);
pub const INTERVAL: Duration = Duration::from_secs(30);

/// Claims seen without a holder: the revision seen and when it was first seen so.
#[derive(Debug, Clone, Default)]
pub struct Observed(BTreeMap<Address, (Revision, Instant)>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairAction {
    /// No stored service holds it, and it was seen unchanged for the grace period.
    Release(Claim),
    /// A stored service holds it and nobody claims it.
    Backfill(Owner, Address),
    /// A stored service holds an address another owner claims: reported, left as it is
    /// (deleting either service is the way out, which only a person may choose).
    Conflict {
        address: Address,
        holder: Owner,
        claimant: Owner,
    },
}

/// What to repair, given the stored services and the claims (listed after them). Pure.
pub fn plan_repair(
    services: &[Value],
    claims: &[Claim],
    observed: &mut Observed,
    now: Instant,
    grace: Duration,
) -> Vec<RepairAction> {
    let mut held: BTreeMap<Address, Vec<Owner>> = BTreeMap::new();
    for s in services {
        for a in claims::addresses(s) {
            held.entry(a).or_default().push(Owner::of(s));
        }
    }
    let mut actions = Vec::new();
    for c in claims {
        if held.get(&c.address).is_some_and(|o| o.contains(&c.owner)) {
            observed.0.remove(&c.address);
            continue;
        }
        match observed.0.get(&c.address) {
            Some((rev, since)) if *rev == c.revision => {
                if now.saturating_duration_since(*since) >= grace {
                    actions.push(RepairAction::Release(c.clone()));
                }
            }
            _ => {
                observed.0.insert(c.address, (c.revision, now));
            }
        }
    }
    observed
        .0
        .retain(|a, _| claims.iter().any(|c| c.address == *a));
    for (address, holders) in held {
        let claimant = claims.iter().find(|c| c.address == address);
        let owner = match claimant {
            Some(c) => c.owner.clone(),
            None => {
                actions.push(RepairAction::Backfill(holders[0].clone(), address));
                holders[0].clone()
            }
        };
        for h in holders.into_iter().filter(|h| *h != owner) {
            actions.push(RepairAction::Conflict {
                address,
                holder: h,
                claimant: owner.clone(),
            });
        }
    }
    actions
}

/// The repair loop's state on one server.
#[derive(Debug, Clone)]
pub struct Repairer {
    observed: Observed,
    grace: Duration,
}

impl Repairer {
    pub fn new(grace: Duration) -> Self {
        Self {
            observed: Observed::default(),
            grace,
        }
    }

    /// One pass: lists services then claims, and performs the plan. Returns what it planned.
    pub async fn pass(
        &mut self,
        store: &dyn Store,
        now: Instant,
    ) -> Result<Vec<RepairAction>, StoreError> {
        let (kvs, _) = store.list(&prefix(&kinds::SERVICES, "")).await?;
        let services: Vec<Value> = kvs.iter().map(decode_kv).collect();
        let all = claims::list(store).await?;
        let actions = plan_repair(&services, &all, &mut self.observed, now, self.grace);
        for action in &actions {
            match action {
                RepairAction::Release(c) => {
                    info!(address = %c.address, owner = %c.owner, "releasing a claim no service holds");
                    claims::release(store, std::slice::from_ref(c)).await;
                }
                RepairAction::Backfill(owner, address) => {
                    if claims::backfill(store, owner, *address).await? {
                        info!(%address, service = %owner, "claimed an address the service held without a claim");
                    }
                }
                RepairAction::Conflict {
                    address,
                    holder,
                    claimant,
                } => {
                    warn!(%address, service = %holder, claimed_by = %claimant, "two services hold one address; delete one of them")
                }
            }
        }
        Ok(actions)
    }
}

/// Runs the repair loop every [`INTERVAL`] for as long as the task lives.
pub fn spawn(store: Arc<dyn Store>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut repairer = Repairer::new(GRACE);
        let mut tick = tokio::time::interval(INTERVAL);
        loop {
            tick.tick().await;
            if let Err(e) = repairer.pass(store.as_ref(), Instant::now()).await {
                warn!(error = %e, "repairing the service address claims failed");
            }
        }
    })
}
