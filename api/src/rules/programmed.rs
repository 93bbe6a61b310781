//! What each node's proxy reports and each agent reads so a terminating pod gets SIGTERM only
//! once every live proxy has dropped it: a Lease `kube-node-lease/corral-proxy-<node>`
//! renewed by the proxy, annotated with the Endpoints revision its rules were last programmed
//! from. One home for the name, the annotation and liveness; pure.

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

/// Where the reports live: next to the kubelets' heartbeats, which nodes may read and write.
pub const NAMESPACE: &str = "kube-node-lease";
/// The Endpoints revision (a store revision) the proxy's rules and routes were built from.
pub const ANNOTATION: &str = "proxy.corral.io/programmed-revision";
/// Labels every report, so agents watch only these Leases.
pub const LABEL: &str = "corral.io/component";
pub const LABEL_VALUE: &str = "proxy";
/// A report not renewed for this long is a dead proxy's, and nobody waits for it: about when
/// its node would turn NotReady (4 s), with room for a control plane's fail-over.
pub const LEASE_SECONDS: i32 = 8;

const PREFIX: &str = "corral-proxy-";

/// The report Lease of `node`'s proxy.
pub fn lease_name(node: &str) -> String {
    format!("{PREFIX}{node}")
}

/// The node whose proxy a Lease name reports, if it is a report's name.
pub fn node_of(lease_name: &str) -> Option<&str> {
    lease_name.strip_prefix(PREFIX).filter(|n| !n.is_empty())
}

/// The label selector of the reports.
pub fn selector() -> String {
    format!("{LABEL}={LABEL_VALUE}")
}

/// The Lease a proxy writes: `programmed` revision, renewed at `now`.
pub fn report(node: &str, programmed: i64, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(lease_name(node)),
            namespace: Some(NAMESPACE.into()),
            labels: Some([(LABEL.to_string(), LABEL_VALUE.to_string())].into()),
            annotations: Some([(ANNOTATION.to_string(), programmed.to_string())].into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.into()),
            lease_duration_seconds: Some(LEASE_SECONDS),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// A proxy's report as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub node: String,
    /// Endpoints revision programmed; 0 before the proxy's first sync.
    pub programmed: i64,
    /// When the report stops counting unless renewed.
    pub expires: Timestamp,
}

impl Report {
    /// A report Lease read back; `None` for any other Lease or a malformed one (a proxy
    /// that cannot say what it programmed is not waited for).
    pub fn parse(lease: &Lease) -> Option<Report> {
        let node = node_of(lease.metadata.name.as_deref()?)?.to_string();
        let spec = lease.spec.as_ref()?;
        // Written by that node's proxy: it names its node as the holder.
        if spec.holder_identity.as_deref() != Some(node.as_str()) {
            return None;
        }
        let renewed = spec.renew_time.as_ref()?.0;
        let seconds = i64::from(spec.lease_duration_seconds?.max(0));
        let programmed = lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION))
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        let expires = renewed
            .checked_add(jiff::SignedDuration::from_secs(seconds))
            .ok()?;
        Some(Report {
            node,
            programmed,
            expires,
        })
    }

    pub fn live(&self, now: Timestamp) -> bool {
        self.expires > now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn a_report_reads_back_as_written_and_lives_for_its_lease() {
        let r = Report::parse(&report("node-1", 42, at(0))).unwrap();
        assert_eq!(r.node, "node-1");
        assert_eq!(r.programmed, 42);
        assert!(r.live(at(7)));
        assert!(!r.live(at(8)));
    }

    #[test]
    fn other_leases_and_malformed_reports_are_not_reports() {
        let mut other = report("n", 1, at(0));
        other.metadata.name = Some("n".into());
        assert_eq!(Report::parse(&other), None);
        let mut bare = report("n", 1, at(0));
        bare.metadata.name = Some(PREFIX.into());
        assert_eq!(Report::parse(&bare), None);
        let mut no_time = report("n", 1, at(0));
        no_time.spec.as_mut().unwrap().renew_time = None;
        assert_eq!(Report::parse(&no_time), None);
        let mut other_holder = report("n", 1, at(0));
        other_holder.spec.as_mut().unwrap().holder_identity = Some("m".into());
        assert_eq!(Report::parse(&other_holder), None);
        // A garbled annotation counts as nothing programmed yet.
        let mut garbled = report("n", 1, at(0));
        garbled
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(ANNOTATION.into(), "lots".into());
        assert_eq!(Report::parse(&garbled).unwrap().programmed, 0);
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(node_of(&lease_name("a.b")), Some("a.b"));
        assert_eq!(node_of("node-1"), None);
    }
}
