use super::*;

fn node(name: &str, cidr: Option<&str>, ip: Option<&str>, mac: Option<u8>) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        pod_cidr: cidr.map(|c| c.parse().unwrap()),
        ip: ip.map(|i| i.parse().unwrap()),
        vtep_mac: mac.map(|m| [0x0a, 0, 0, 0, 0, m]),
    }
}

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn gw(dst: &str, via: &str) -> Route {
    Route {
        dst: cidr(dst),
        via: Via::Gateway(ip(via)),
    }
}

fn vx(dst: &str) -> Route {
    let dst = cidr(dst);
    Route {
        dst,
        via: Via::Vxlan(dst.addr),
    }
}

fn three() -> Vec<NodeInfo> {
    vec![
        node("a", Some("10.42.0.0/24"), Some("192.168.1.10"), Some(1)),
        node("b", Some("10.42.1.0/24"), Some("192.168.1.11"), Some(2)),
        node("c", Some("10.42.2.0/24"), Some("192.168.1.12"), Some(3)),
    ]
}

#[test]
fn host_gw_routes_lead_to_every_other_node_and_skip_incomplete_ones() {
    let scope = cidr("10.42.0.0/16");
    let mut nodes = three();
    nodes.push(node("d-no-cidr", None, Some("192.168.1.13"), None));
    nodes.push(node("e-no-ip", Some("10.42.4.0/24"), None, None));
    nodes.push(node(
        "f-outside",
        Some("10.99.0.0/24"),
        Some("192.168.1.15"),
        None,
    ));
    nodes.push(node(
        "g-same-as-c",
        Some("10.42.2.0/24"),
        Some("192.168.1.16"),
        None,
    ));
    nodes.push(node(
        "h-same-as-mine",
        Some("10.42.0.0/24"),
        Some("192.168.1.17"),
        None,
    ));
    type Case<'a> = (Option<&'a str>, &'a [Route], &'a [(&'a str, Skip)]);
    let cases: &[Case] = &[
        (
            Some("a"),
            &[
                gw("10.42.1.0/24", "192.168.1.11"),
                gw("10.42.2.0/24", "192.168.1.12"),
            ],
            &[
                ("d-no-cidr", Skip::NoPodCidr),
                ("e-no-ip", Skip::NoAddress),
                ("f-outside", Skip::OutsideScope),
                ("g-same-as-c", Skip::DuplicateCidr),
                ("h-same-as-mine", Skip::DuplicateCidr),
            ],
        ),
        // A machine that is no node (the local rig's host) routes to every node.
        (
            None,
            &[
                gw("10.42.0.0/24", "192.168.1.10"),
                gw("10.42.1.0/24", "192.168.1.11"),
                gw("10.42.2.0/24", "192.168.1.12"),
            ],
            &[
                ("d-no-cidr", Skip::NoPodCidr),
                ("e-no-ip", Skip::NoAddress),
                ("f-outside", Skip::OutsideScope),
                ("g-same-as-c", Skip::DuplicateCidr),
                ("h-same-as-mine", Skip::DuplicateCidr),
            ],
        ),
    ];
    for (this, routes, skips) in cases {
        let (d, skipped) = desired(Mode::HostGw, *this, scope, &nodes);
        assert_eq!(d.routes, routes.iter().copied().collect(), "{this:?}");
        assert!(d.fdb.is_empty() && d.neigh.is_empty());
        let skips: Vec<(String, Skip)> = skips.iter().map(|(n, s)| (n.to_string(), *s)).collect();
        assert_eq!(skipped, skips, "{this:?}");
    }
}

#[test]
fn vxlan_gives_each_remote_node_an_fdb_entry_a_neighbour_and_an_onlink_route() {
    let mut nodes = three();
    nodes[2].vtep_mac = None;
    let (d, skipped) = desired(Mode::Vxlan, Some("a"), cidr("10.42.0.0/16"), &nodes);
    assert_eq!(d.routes, [vx("10.42.1.0/24")].into_iter().collect());
    assert_eq!(
        d.fdb,
        [Fdb {
            mac: [0x0a, 0, 0, 0, 0, 2],
            remote: ip("192.168.1.11")
        }]
        .into_iter()
        .collect()
    );
    assert_eq!(
        d.neigh,
        [Neigh {
            ip: ip("10.42.1.0"),
            mac: [0x0a, 0, 0, 0, 0, 2]
        }]
        .into_iter()
        .collect()
    );
    assert_eq!(skipped, vec![("c".to_string(), Skip::NoVtepMac)]);
}

#[test]
fn mode_none_wants_nothing() {
    let (d, skipped) = desired(Mode::None, Some("a"), cidr("10.42.0.0/16"), &three());
    assert_eq!(d, Desired::default());
    assert!(skipped.is_empty());
}

#[test]
fn the_plan_is_the_exact_difference_with_deletions_first() {
    let routes = |rs: &[Route]| Desired {
        routes: rs.iter().copied().collect(),
        ..Default::default()
    };
    let r1 = gw("10.42.1.0/24", "192.168.1.11");
    let r2 = gw("10.42.2.0/24", "192.168.1.12");
    let r2_moved = gw("10.42.2.0/24", "192.168.1.99");
    let cases: &[(&[Route], &[Route], &[Action])] = &[
        (&[r1, r2], &[r1, r2], &[]),
        (
            &[r1, r2],
            &[],
            &[Action::AddRoute(r1), Action::AddRoute(r2)],
        ),
        // A node left: only its route goes.
        (&[r1], &[r1, r2], &[Action::DelRoute(r2)]),
        // A node moved to another address: delete, then add.
        (
            &[r1, r2_moved],
            &[r1, r2],
            &[Action::DelRoute(r2), Action::AddRoute(r2_moved)],
        ),
        // host-gw to VXLAN.
        (
            &[vx("10.42.1.0/24")],
            &[r1],
            &[Action::DelRoute(r1), Action::AddRoute(vx("10.42.1.0/24"))],
        ),
    ];
    for (i, (want, have, actions)) in cases.iter().enumerate() {
        assert_eq!(
            plan(&routes(want), &routes(have)),
            actions.to_vec(),
            "case {i}"
        );
    }
}

#[test]
fn vxlan_entries_are_added_before_their_route_and_removed_after_it() {
    let nodes = three();
    let (d, _) = desired(Mode::Vxlan, Some("a"), cidr("10.42.0.0/16"), &nodes);
    let add = plan(&d, &Desired::default());
    let kinds: Vec<&str> = add
        .iter()
        .map(|a| match a {
            Action::AddFdb(_) => "fdb",
            Action::AddNeigh(_) => "neigh",
            Action::AddRoute(_) => "route",
            _ => "delete",
        })
        .collect();
    assert_eq!(kinds, ["fdb", "fdb", "neigh", "neigh", "route", "route"]);
    let del = plan(&Desired::default(), &d);
    assert!(matches!(del[0], Action::DelRoute(_)));
    assert!(matches!(del.last(), Some(Action::DelFdb(_))));
    assert_eq!(del.len(), 6);
    // A node's new VTEP MAC replaces its entries and keeps its route.
    let mut moved = nodes.clone();
    moved[1].vtep_mac = Some([0x0a, 0, 0, 0, 0, 9]);
    let (d2, _) = desired(Mode::Vxlan, Some("a"), cidr("10.42.0.0/16"), &moved);
    let p = plan(&d2, &d);
    assert_eq!(p.len(), 4, "{p:?}");
    assert!(p
        .iter()
        .all(|a| !matches!(a, Action::AddRoute(_) | Action::DelRoute(_))));
}

#[test]
fn modes_parse_from_their_flag_values() {
    for (s, m) in [
        ("host-gw", Mode::HostGw),
        ("vxlan", Mode::Vxlan),
        ("none", Mode::None),
    ] {
        assert_eq!(s.parse::<Mode>().unwrap(), m);
        assert_eq!(m.to_string(), s);
    }
    assert!("flannel".parse::<Mode>().is_err());
}
