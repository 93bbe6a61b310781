//! One claim key per allocated ClusterIP and NodePort, shared by every server on the store (as
//! Kubernetes keeps one IPAddress object per allocated IP): created only if absent, naming the
//! owning service. The pure part decides which claims a write must secure or may release; the
//! executors are thin store calls.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use corral_api::object;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{debug, warn};

use super::Used;
use crate::store::{Revision, Store, StoreError};

/// Where the claims live: under `/registry/` (so `migrate` copies them and they share the
/// store's history), under a name no resource's plural can take (plurals have no dots).
pub const IP_PREFIX: &str = "/registry/corral.io/serviceips/";
pub const NODE_PORT_PREFIX: &str = "/registry/corral.io/servicenodeports/";

/// An address one service may hold at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Address {
    Ip(Ipv4Addr),
    NodePort(u16),
}

impl Address {
    pub fn key(&self) -> String {
        match self {
            Address::Ip(ip) => format!("{IP_PREFIX}{ip}"),
            Address::NodePort(p) => format!("{NODE_PORT_PREFIX}{p}"),
        }
    }

    pub fn from_key(key: &str) -> Option<Address> {
        if let Some(ip) = key.strip_prefix(IP_PREFIX) {
            return ip.parse().ok().map(Address::Ip);
        }
        key.strip_prefix(NODE_PORT_PREFIX)?
            .parse()
            .ok()
            .map(Address::NodePort)
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Ip(ip) => write!(f, "clusterIP {ip}"),
            Address::NodePort(p) => write!(f, "nodePort {p}"),
        }
    }
}

/// The service a claim belongs to. The uid tells a service from an earlier one of that name.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Owner {
    pub fn of(service: &Value) -> Owner {
        Owner {
            namespace: object::namespace(service).to_string(),
            name: object::name(service).to_string(),
            uid: object::uid(service).to_string(),
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} (uid {})", self.namespace, self.name, self.uid)
    }
}

/// A claim as stored: its address (from the key), owner and revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub address: Address,
    /// Default (empty) when the value cannot be read: nobody owns it, repair releases it.
    pub owner: Owner,
    pub revision: Revision,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    #[serde(flatten)]
    owner: Owner,
    /// For people reading the store; decisions go by revisions, never by clocks.
    claimed_at: String,
}

fn encode(owner: &Owner) -> Vec<u8> {
    let stored = Stored {
        owner: owner.clone(),
        claimed_at: jiff::Timestamp::now().to_string(),
    };
    serde_json::to_vec(&stored).expect("claims serialize")
}

/// The addresses a stored service holds: its ClusterIP (not `None`) and node ports.
pub fn addresses(service: &Value) -> BTreeSet<Address> {
    let mut out = BTreeSet::new();
    if let Some(ip) = object::str_at(service, "/spec/clusterIP").and_then(|s| s.parse().ok()) {
        out.insert(Address::Ip(ip));
    }
    for port in service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(p) = port
            .get("nodePort")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
        {
            out.insert(Address::NodePort(p));
        }
    }
    out
}

/// What the claims in the store leave for a service owned by `owner`.
pub fn used_by_others(claims: &[Claim], owner: &Owner) -> Used {
    let mut used = Used::default();
    used.extend(
        claims
            .iter()
            .filter(|c| &c.owner != owner)
            .map(|c| c.address),
    );
    used
}

/// One step towards holding an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secure {
    /// Nobody claims it: create the claim.
    Create(Address),
    /// The service claims it already: rewrite the claim at this revision, so that a release
    /// decided earlier (a delete at the old revision) fails instead of taking it away.
    Bump(Address, Revision),
    /// Another service claims it: the write must choose again.
    Taken(Address),
}

/// How `owner` comes to hold each of `needed` (addresses its write adds). Pure.
pub fn plan_secure(claims: &[Claim], owner: &Owner, needed: &BTreeSet<Address>) -> Vec<Secure> {
    needed
        .iter()
        .map(|a| match claims.iter().find(|c| c.address == *a) {
            None => Secure::Create(*a),
            Some(c) if &c.owner == owner => Secure::Bump(*a, c.revision),
            Some(_) => Secure::Taken(*a),
        })
        .collect()
}

/// The claims `owner` gives up when its service goes from holding `before` to holding `after`:
/// its own claims of addresses it no longer holds, at the revision seen (a claim rewritten
/// since by a write that holds it again is then kept). Pure.
pub fn plan_release(
    claims: &[Claim],
    owner: &Owner,
    before: &BTreeSet<Address>,
    after: &BTreeSet<Address>,
) -> Vec<Claim> {
    claims
        .iter()
        .filter(|c| &c.owner == owner && before.contains(&c.address) && !after.contains(&c.address))
        .cloned()
        .collect()
}

/// Every claim in the store.
pub async fn list(store: &dyn Store) -> Result<Vec<Claim>, StoreError> {
    let mut out = Vec::new();
    for prefix in [IP_PREFIX, NODE_PORT_PREFIX] {
        let (kvs, _) = store.list(prefix).await?;
        out.extend(kvs.iter().filter_map(|kv| {
            let address = Address::from_key(&kv.key)?;
            let owner = serde_json::from_slice::<Stored>(&kv.value)
                .map(|s| s.owner)
                .unwrap_or_default();
            Some(Claim {
                address,
                owner,
                revision: kv.mod_revision,
            })
        }));
    }
    Ok(out)
}

/// Performs `plan` for `owner`. `Ok(Err(address))`: lost `address` to another writer (the
/// claims secured until then are returned for release by the caller through `secured`).
pub async fn secure(
    store: &dyn Store,
    owner: &Owner,
    plan: &[Secure],
    secured: &mut Vec<Claim>,
) -> Result<Result<(), Address>, StoreError> {
    for step in plan {
        let (address, written) = match step {
            Secure::Taken(a) => return Ok(Err(*a)),
            Secure::Create(a) => (*a, store.create(&a.key(), encode(owner)).await),
            Secure::Bump(a, rev) => (*a, store.update(&a.key(), encode(owner), *rev).await),
        };
        match written {
            Ok(kv) => secured.push(Claim {
                address,
                owner: owner.clone(),
                revision: kv.mod_revision,
            }),
            Err(
                StoreError::AlreadyExists { .. }
                | StoreError::Conflict { .. }
                | StoreError::NotFound { .. },
            ) => {
                debug!(%address, owner = %owner, "lost a claim to another writer");
                return Ok(Err(address));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Ok(()))
}

/// Deletes `claims` at their revisions. Best effort: a claim changed since is someone's now,
/// and one this cannot delete is left for the repair loop.
pub async fn release(store: &dyn Store, claims: &[Claim]) {
    for c in claims {
        match store.delete(&c.address.key(), Some(c.revision)).await {
            Ok(_) => debug!(address = %c.address, owner = %c.owner, "released"),
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
            Err(e) => {
                warn!(address = %c.address, owner = %c.owner, error = %e, "releasing a claim failed; the repair loop will")
            }
        }
    }
}

/// Creates the claim of an address a stored service holds without one (a service stored
/// before claims existed). `Ok(false)`: someone claims it already.
pub async fn backfill(
    store: &dyn Store,
    owner: &Owner,
    address: Address,
) -> Result<bool, StoreError> {
    match store.create(&address.key(), encode(owner)).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}
