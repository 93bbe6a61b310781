//! Table tests of the pure allocation (choices given the addresses in use).

use super::*;
use serde_json::json;

#[test]
fn cluster_ips_and_node_ports_are_unique() {
    let a = ServiceAllocator::new("10.43.0.0/16").unwrap();
    let mut s1 = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
    a.allocate(&mut s1, &Used::default()).unwrap();
    let mut s2 = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
    a.allocate(&mut s2, &Used::held_by(std::slice::from_ref(&s1)))
        .unwrap();
    assert_eq!(s1["spec"]["clusterIP"], "10.43.0.2");
    assert_eq!(s2["spec"]["clusterIP"], "10.43.0.3");
    assert_ne!(
        s1["spec"]["ports"][0]["nodePort"],
        s2["spec"]["ports"][0]["nodePort"]
    );
    let mut dup = json!({"spec": {"clusterIP": "10.43.0.2", "ports": [{"port": 80}]}});
    assert!(a
        .allocate(&mut dup, &Used::held_by(&[s1.clone()]))
        .unwrap_err()
        .detail
        .contains("already allocated"));
    let mut outside = json!({"spec": {"clusterIP": "192.0.2.1", "ports": [{"port": 80}]}});
    assert!(a.allocate(&mut outside, &Used::default()).is_err());
}

#[test]
fn updates_keep_change_or_drop_allocations_as_kubernetes_does() {
    let a = ServiceAllocator::new("10.43.0.0/16").unwrap();
    let mut np = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}});
    a.allocate(&mut np, &Used::default()).unwrap();
    let port = np["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    let mut other = json!({"spec": {"type": "NodePort", "ports": [{"port": 81}]}});
    a.allocate(&mut other, &Used::held_by(std::slice::from_ref(&np)))
        .unwrap();
    let others = Used::held_by(&[other.clone()]);

    // An apply that omits the allocated fields keeps them.
    let mut same =
        json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}});
    a.update_allocations(&np, &mut same, &others).unwrap();
    assert_eq!(same["spec"]["clusterIP"], np["spec"]["clusterIP"]);
    assert_eq!(same["spec"]["ports"][0]["nodePort"], port);

    // NodePort -> ClusterIP drops the server-given node port.
    let mut cip = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP", "nodePort": port}]}});
    a.update_allocations(&np, &mut cip, &others).unwrap();
    assert!(cip["spec"]["ports"][0].get("nodePort").is_none(), "{cip}");

    // ClusterIP -> NodePort allocates one.
    let mut back =
        json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}});
    a.update_allocations(&cip, &mut back, &others).unwrap();
    let new_port = back["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!(NODE_PORT_RANGE.contains(&new_port));
    assert_ne!(
        Some(new_port),
        other["spec"]["ports"][0]["nodePort"].as_i64()
    );

    // Taking another service's port or changing the cluster IP is refused.
    let taken = other["spec"]["ports"][0]["nodePort"].clone();
    let mut steal =
        json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": taken}]}});
    let err = a.update_allocations(&np, &mut steal, &others).unwrap_err();
    assert_eq!(err.path, "spec.ports[0].nodePort");
    assert!(
        err.detail.ends_with("provided port is already allocated"),
        "{}",
        err.detail
    );
    let mut moved =
        json!({"spec": {"type": "NodePort", "clusterIP": "10.43.0.3", "ports": [{"port": 80}]}});
    let err = a.update_allocations(&np, &mut moved, &others).unwrap_err();
    assert_eq!(err.path, "spec.clusterIPs[0]");
    assert_eq!(
        err.detail,
        "Invalid value: [\"10.43.0.3\"]: may not change once set"
    );
}

mod planners {
    use super::super::claims::{
        addresses, plan_release, plan_secure, used_by_others, Address, Claim, Owner, Secure,
    };
    use super::super::repair::{plan_repair, Observed, RepairAction};
    use serde_json::json;
    use std::collections::BTreeSet;
    use std::time::Duration;

    fn owner(name: &str) -> Owner {
        Owner {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }
    }

    fn claim(address: Address, name: &str, revision: i64) -> Claim {
        Claim {
            address,
            owner: owner(name),
            revision,
        }
    }

    fn ip(last: u8) -> Address {
        Address::Ip(std::net::Ipv4Addr::new(10, 43, 0, last))
    }

    fn service(name: &str, ip: &str, node_ports: &[u16]) -> serde_json::Value {
        let ports: Vec<_> = node_ports
            .iter()
            .map(|p| json!({"port": 80, "nodePort": p}))
            .collect();
        json!({"metadata": {"namespace": "default", "name": name, "uid": format!("uid-{name}")},
               "spec": {"clusterIP": ip, "ports": ports}})
    }

    #[test]
    fn a_service_holds_its_cluster_ip_and_node_ports_and_headless_holds_no_ip() {
        let cases = [
            (service("a", "10.43.0.5", &[]), vec![ip(5)]),
            (
                service("a", "10.43.0.5", &[30001, 30002]),
                vec![ip(5), Address::NodePort(30001), Address::NodePort(30002)],
            ),
            (service("h", "None", &[]), vec![]),
            (json!({"spec": {"type": "ExternalName"}}), vec![]),
            (service("z", "", &[0]), vec![]),
        ];
        for (svc, want) in cases {
            assert_eq!(
                addresses(&svc),
                want.into_iter().collect::<BTreeSet<_>>(),
                "{svc}"
            );
        }
    }

    #[test]
    fn a_write_creates_free_claims_rewrites_its_own_and_loses_taken_ones() {
        let claims = [
            claim(ip(2), "mine", 10),
            claim(ip(3), "other", 11),
            claim(Address::NodePort(30000), "other", 12),
        ];
        let me = owner("mine");
        let needed: BTreeSet<_> = [ip(2), ip(4), Address::NodePort(30000)].into();
        assert_eq!(
            plan_secure(&claims, &me, &needed),
            vec![
                Secure::Bump(ip(2), 10),
                Secure::Create(ip(4)),
                Secure::Taken(Address::NodePort(30000)),
            ]
        );
        // What the others claim is what a choice must avoid; an earlier service of the same
        // name (another uid) is another owner.
        let mut earlier = owner("mine");
        earlier.uid = "uid-earlier".into();
        let used = used_by_others(&claims, &earlier);
        assert!(used.ips.contains("10.43.0.2") && used.ips.contains("10.43.0.3"));
        let used = used_by_others(&claims, &me);
        assert_eq!(used.ips, ["10.43.0.3".to_string()].into());
        assert_eq!(used.ports, [30000].into());
    }

    #[test]
    fn a_write_releases_only_its_own_claims_of_addresses_it_dropped() {
        let claims = [
            claim(ip(2), "mine", 10),
            claim(Address::NodePort(30000), "mine", 11),
            claim(Address::NodePort(30001), "other", 12),
        ];
        let me = owner("mine");
        let cases: [(&[Address], &[Address], &[i64]); 4] = [
            // NodePort -> ClusterIP: the node port goes.
            (&[ip(2), Address::NodePort(30000)], &[ip(2)], &[11]),
            // Unchanged: nothing goes.
            (
                &[ip(2), Address::NodePort(30000)],
                &[ip(2), Address::NodePort(30000)],
                &[],
            ),
            // Deleted: everything it held goes.
            (&[ip(2), Address::NodePort(30000)], &[], &[10, 11]),
            // Another's claim never goes, even for an address this service held.
            (&[Address::NodePort(30001)], &[], &[]),
        ];
        for (before, after, want) in cases {
            let before: BTreeSet<_> = before.iter().copied().collect();
            let after: BTreeSet<_> = after.iter().copied().collect();
            let got: Vec<i64> = plan_release(&claims, &me, &before, &after)
                .iter()
                .map(|c| c.revision)
                .collect();
            assert_eq!(got, want, "{before:?} -> {after:?}");
        }
    }

    #[test]
    fn repair_releases_a_claim_nobody_holds_only_after_it_stayed_unchanged_for_the_grace() {
        let grace = Duration::from_secs(60);
        let t0 = tokio::time::Instant::now();
        let services = [service("a", "10.43.0.2", &[30000])];
        let held = [
            claim(ip(2), "a", 5),
            claim(Address::NodePort(30000), "a", 6),
        ];
        let leaked = claim(ip(9), "crashed", 7);
        let mut claims = held.to_vec();
        claims.push(leaked.clone());
        let mut observed = Observed::default();
        let cases = [
            // First seen: only noted.
            (t0, &claims, vec![]),
            // Seen unchanged, but not for long enough.
            (t0 + grace / 2, &claims, vec![]),
            (
                t0 + grace,
                &claims,
                vec![RepairAction::Release(leaked.clone())],
            ),
        ];
        for (now, claims, want) in cases {
            assert_eq!(
                plan_repair(&services, claims, &mut observed, now, grace),
                want
            );
        }
        // A claim rewritten meanwhile (a write relies on it again) starts over.
        let mut observed = Observed::default();
        let rewritten = claim(ip(9), "crashed", 8);
        let mut again = held.to_vec();
        again.push(rewritten);
        assert!(plan_repair(&services, &claims, &mut observed, t0, grace).is_empty());
        assert!(plan_repair(&services, &again, &mut observed, t0 + grace, grace).is_empty());
        // A claim of a service that is gone, or of an earlier service of the same name
        // holding another address, is released the same way.
        let stale = claim(Address::NodePort(30005), "a", 9);
        let mut observed = Observed::default();
        let claims = [held.to_vec(), vec![stale.clone()]].concat();
        plan_repair(&services, &claims, &mut observed, t0, grace);
        assert_eq!(
            plan_repair(&services, &claims, &mut observed, t0 + grace, grace),
            vec![RepairAction::Release(stale)]
        );
    }

    #[test]
    fn repair_claims_addresses_services_hold_without_claims_and_reports_two_holders() {
        let grace = Duration::from_secs(60);
        let now = tokio::time::Instant::now();
        let legacy = service("old", "10.43.0.7", &[30100]);
        let twin = service("twin", "10.43.0.7", &[]);
        let actions = plan_repair(
            std::slice::from_ref(&legacy),
            &[],
            &mut Observed::default(),
            now,
            grace,
        );
        assert_eq!(
            actions,
            vec![
                RepairAction::Backfill(owner("old"), ip(7)),
                RepairAction::Backfill(owner("old"), Address::NodePort(30100)),
            ]
        );
        let actions = plan_repair(
            &[legacy, twin],
            &[
                claim(ip(7), "old", 3),
                claim(Address::NodePort(30100), "old", 4),
            ],
            &mut Observed::default(),
            now,
            grace,
        );
        assert_eq!(
            actions,
            vec![RepairAction::Conflict {
                address: ip(7),
                holder: owner("twin"),
                claimant: owner("old"),
            }]
        );
    }
}

/// The registry on SQLite: claims follow creates, updates and deletes; two registries on one
/// store (two servers) never hand out one address twice; repair mends leaks and old stores.
mod registry {
    use std::sync::Arc;
    use std::time::Duration;

    use corral_api::client::DeleteOptions;
    use corral_api::kinds;
    use serde_json::{json, Value};

    use super::super::claims::{self, Address};
    use super::super::repair::{RepairAction, Repairer};
    use crate::registry::testutil::registry;
    use crate::registry::{key, ApiError, Registry, ServiceAllocator};

    fn node_port(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": "default"},
               "spec": {"type": "NodePort", "selector": {"app": name},
                        "ports": [{"port": 80, "protocol": "TCP"}]}})
    }

    async fn claimed(r: &Registry) -> Vec<(Address, String)> {
        claims::list(r.store().as_ref())
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.address, c.owner.name))
            .collect()
    }

    fn held(service: &Value) -> Vec<(Address, String)> {
        let name = service["metadata"]["name"].as_str().unwrap().to_string();
        claims::addresses(service)
            .into_iter()
            .map(|a| (a, name.clone()))
            .collect()
    }

    #[tokio::test]
    async fn claims_follow_a_service_through_create_type_changes_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(&dir).await;
        let created = r
            .create(&kinds::SERVICES, "default", node_port("web"), false)
            .await
            .unwrap()
            .object;
        assert_eq!(claimed(&r).await, held(&created));
        // A dry run claims nothing.
        r.create(&kinds::SERVICES, "default", node_port("dry"), true)
            .await
            .unwrap();
        assert_eq!(claimed(&r).await.len(), 2);

        // NodePort -> ClusterIP releases the node port; back to NodePort claims one again.
        let mut cip = created.clone();
        cip["spec"]["type"] = json!("ClusterIP");
        cip["spec"]["ports"][0]["nodePort"] = Value::Null;
        cip["metadata"]["resourceVersion"] = Value::Null;
        let bytes = r
            .update(&kinds::SERVICES, "default", cip, false, false)
            .await
            .unwrap();
        let as_cip: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(claimed(&r).await, held(&as_cip));
        assert_eq!(claimed(&r).await.len(), 1);
        let (_, applied) = r.apply("default", node_port("web"), false).await.unwrap();
        assert_eq!(claimed(&r).await, held(&applied.object));
        assert_eq!(claimed(&r).await.len(), 2);

        r.delete(&kinds::SERVICES, "default", "web", DeleteOptions::default())
            .await
            .unwrap();
        assert!(claimed(&r).await.is_empty());
    }

    #[tokio::test]
    async fn an_address_claimed_by_another_service_is_already_allocated_and_a_refused_create_claims_nothing(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(&dir).await;
        let first = r
            .create(&kinds::SERVICES, "default", node_port("a"), false)
            .await
            .unwrap()
            .object;
        let mut same_ip = node_port("b");
        same_ip["spec"]["clusterIP"] = first["spec"]["clusterIP"].clone();
        match r.create(&kinds::SERVICES, "default", same_ip, false).await {
            Err(ApiError::Invalid { errors, .. }) => {
                assert_eq!(errors[0].path, "spec.clusterIP");
                assert!(errors[0]
                    .detail
                    .ends_with("provided IP is already allocated"));
            }
            other => panic!("{other:?}"),
        }
        // The same name again is AlreadyExists, not a clash with its own address.
        let again = r
            .create(&kinds::SERVICES, "default", first.clone(), false)
            .await;
        assert!(
            matches!(again, Err(ApiError::AlreadyExists { .. })),
            "{again:?}"
        );
        assert_eq!(claimed(&r).await, held(&first));
    }

    #[tokio::test]
    async fn two_registries_on_one_store_never_hand_out_one_address_twice() {
        let dir = tempfile::tempdir().unwrap();
        let one = registry(&dir).await;
        let two = Arc::new(Registry::new(
            one.store().clone(),
            Default::default(),
            ServiceAllocator::new("10.43.0.0/16").unwrap(),
        ));
        let one = Arc::new(one);
        let creates = (0..40).map(|i| {
            let r = if i % 2 == 0 { one.clone() } else { two.clone() };
            async move {
                r.create(
                    &kinds::SERVICES,
                    "default",
                    node_port(&format!("s{i}")),
                    false,
                )
                .await
                .unwrap()
                .object
            }
        });
        let made = futures::future::join_all(creates).await;
        let mut ips: Vec<_> = made
            .iter()
            .map(|s| s["spec"]["clusterIP"].clone())
            .collect();
        let mut ports: Vec<_> = made
            .iter()
            .map(|s| s["spec"]["ports"][0]["nodePort"].clone())
            .collect();
        ips.sort_by_key(|v| v.to_string());
        ips.dedup();
        ports.sort_by_key(|v| v.to_string());
        ports.dedup();
        assert_eq!((ips.len(), ports.len()), (40, 40));
    }

    #[tokio::test]
    async fn creates_of_one_name_racing_leave_only_the_winners_claims() {
        let dir = tempfile::tempdir().unwrap();
        let one = Arc::new(registry(&dir).await);
        let two = Arc::new(Registry::new(
            one.store().clone(),
            Default::default(),
            ServiceAllocator::new("10.43.0.0/16").unwrap(),
        ));
        let creates = (0..10).map(|i| {
            let r = if i % 2 == 0 { one.clone() } else { two.clone() };
            async move {
                r.create(&kinds::SERVICES, "default", node_port("same"), false)
                    .await
            }
        });
        let results = futures::future::join_all(creates).await;
        let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "{results:?}");
        for r in &results {
            assert!(
                matches!(r, Ok(_) | Err(ApiError::AlreadyExists { .. })),
                "{r:?}"
            );
        }
        // The losers' claims were released: only the winner's addresses are claimed.
        assert_eq!(claimed(&one).await, held(&won[0].object));
    }

    #[tokio::test]
    async fn repair_releases_a_leaked_claim_after_the_grace_and_claims_for_services_stored_without()
    {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(&dir).await;
        let store = r.store().clone();
        // A service stored by an older version: no claims.
        let legacy = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "legacy", "namespace": "default", "uid": "u-legacy"},
            "spec": {"type": "NodePort", "clusterIP": "10.43.0.2", "clusterIPs": ["10.43.0.2"],
                     "ports": [{"port": 80, "nodePort": 30000}]}});
        store
            .create(
                &key(&kinds::SERVICES, "default", "legacy"),
                serde_json::to_vec(&legacy).unwrap(),
            )
            .await
            .unwrap();
        // A claim left by a server that crashed before writing its service.
        let leaked = claims::Owner {
            namespace: "default".into(),
            name: "never-written".into(),
            uid: "u-gone".into(),
        };
        claims::backfill(store.as_ref(), &leaked, Address::NodePort(30001))
            .await
            .unwrap();

        let grace = Duration::from_secs(60);
        let t0 = tokio::time::Instant::now();
        let mut repairer = Repairer::new(grace);
        let first = repairer.pass(store.as_ref(), t0).await.unwrap();
        assert_eq!(first.len(), 2, "{first:?}");
        assert!(first
            .iter()
            .all(|a| matches!(a, RepairAction::Backfill(o, _) if o.name == "legacy")));
        // The legacy service's addresses are now taken for new services.
        let fresh = r
            .create(&kinds::SERVICES, "default", node_port("fresh"), false)
            .await
            .unwrap()
            .object;
        assert_ne!(fresh["spec"]["clusterIP"], "10.43.0.2");
        assert_ne!(fresh["spec"]["ports"][0]["nodePort"], 30000);
        assert_ne!(fresh["spec"]["ports"][0]["nodePort"], 30001);

        assert!(repairer
            .pass(store.as_ref(), t0 + grace / 2)
            .await
            .unwrap()
            .is_empty());
        let last = repairer.pass(store.as_ref(), t0 + grace).await.unwrap();
        assert!(
            matches!(last.as_slice(), [RepairAction::Release(c)] if c.owner == leaked),
            "{last:?}"
        );
        let names: Vec<String> = claimed(&r).await.into_iter().map(|(_, n)| n).collect();
        assert!(!names.contains(&"never-written".to_string()), "{names:?}");
        assert_eq!(names.len(), 4, "{names:?}");
    }
}
