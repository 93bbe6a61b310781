use super::*;
use crate::model::testutil::*;
use crate::model::{service_ports, ServicePortInfo};

fn ports(eps: &[&str], node_port: i32) -> Vec<ServicePortInfo> {
    let ty = if node_port != 0 {
        "NodePort"
    } else {
        "ClusterIP"
    };
    let svcs = vec![service("web", ty, "10.43.0.10", &[("http", 80, node_port)])];
    service_ports(
        &svcs,
        &by_key(&[endpoints("web", eps, &[], &[("http", 8080)])]),
    )
}

/// A save text where the proxy already ran once with `ports`.
fn after(ports: &[ServicePortInfo]) -> Existing {
    let text = plan(ports, &Existing::default());
    // What iptables-save shows after that restore: every declared chain, every -A, and the
    // inserted jumps appended to their built-in chains.
    let mut save = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("-I ") {
            save.push_str(&format!("-A {rest}\n"));
        } else if !line.starts_with("-X") {
            save.push_str(line);
            save.push('\n');
        }
    }
    Existing::parse(&save)
}

fn has(text: &str, needle: &str) -> bool {
    text.lines().any(|l| l.contains(needle))
}

fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn plan_balances_over_ready_endpoints_like_kube_proxy() {
    let p = ports(&["10.42.0.2", "10.42.0.3", "10.42.0.4"], 0);
    let text = plan(&p, &Existing::default());
    let svc = svc_chain(&p[0]);
    let cases = [
        (
            "cluster IP jumps to the service chain",
            format!("-A CORRAL-SERVICES -d 10.43.0.10/32 -p tcp -m comment --comment \"default/web:http cluster IP\" -m tcp --dport 80 -j {svc}"),
            1,
        ),
        ("first of three with 1/3", "--probability 0.3333333333".into(), 1),
        ("second of three with 1/2", "--probability 0.5000000000".into(), 1),
        ("one DNAT per endpoint", "-j DNAT --to-destination 10.42.0.".into(), 3),
        ("DNAT to the target port", "--to-destination 10.42.0.4:8080".into(), 1),
        ("service traffic is marked", format!("-A {svc} -j CORRAL-MARK-MASQ"), 1),
        ("marked traffic is masqueraded", "-j MASQUERADE".into(), 1),
        ("jump from PREROUTING", "-I PREROUTING -m comment --comment \"corral service portals\" -j CORRAL-SERVICES".into(), 1),
        ("jump from OUTPUT", "-I OUTPUT -m comment --comment \"corral service portals\" -j CORRAL-SERVICES".into(), 1),
        ("filter jumps for new connections", "-m conntrack --ctstate NEW -m comment --comment \"corral service portals\"".into(), 3),
        ("jump from POSTROUTING", "-I POSTROUTING".into(), 1),
        ("node ports last, loopback excluded", "! -d 127.0.0.0/8 -m comment --comment \"corral service nodeports; must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j CORRAL-NODEPORTS".into(), 1),
        ("no reject when endpoints exist", "REJECT".into(), 0),
        ("no node port rule for a ClusterIP service", "-A CORRAL-NODEPORTS".into(), 0),
    ];
    for (what, needle, n) in cases {
        assert_eq!(count(&text, &needle), n, "{what}: {needle}\n{text}");
    }
    let last = text
        .lines()
        .rfind(|l| l.starts_with("-A CORRAL-SERVICES"))
        .unwrap();
    assert!(last.ends_with("-j CORRAL-NODEPORTS"), "{last}");
}

#[test]
fn plan_covers_node_ports_and_services_without_endpoints() {
    type Case<'a> = (&'a str, Vec<ServicePortInfo>, Vec<&'a str>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "node port marks for masquerade, then balances",
            ports(&["10.42.0.2"], 30080),
            vec![
                "-A CORRAL-NODEPORTS -p tcp -m comment --comment \"default/web:http\" -m tcp --dport 30080 -j CORRAL-EXT-",
                "-j CORRAL-MARK-MASQ",
                "--to-destination 10.42.0.2:8080",
            ],
            vec!["REJECT", "--probability"],
        ),
        (
            "no ready endpoint rejects cluster IP and node port",
            ports(&[], 30080),
            vec![
                "-A CORRAL-SERVICES -d 10.43.0.10/32 -p tcp -m comment --comment \"default/web:http has no endpoints\" -m tcp --dport 80 -j REJECT",
                "-m addrtype --dst-type LOCAL -m tcp --dport 30080 -j REJECT",
            ],
            vec!["DNAT", "CORRAL-SVC-", "-A CORRAL-NODEPORTS"],
        ),
    ];
    for (what, p, want, not) in cases {
        let text = plan(&p, &Existing::default());
        for w in want {
            assert!(has(&text, w), "{what}: missing {w}\n{text}");
        }
        for n in not {
            assert!(!has(&text, n), "{what}: unexpected {n}\n{text}");
        }
    }
}

#[test]
fn replanning_over_its_own_rules_adds_no_duplicates_and_drops_stale_chains() {
    let two = ports(&["10.42.0.2", "10.42.0.3"], 0);
    let one = ports(&["10.42.0.3"], 0);
    let existing = after(&two);
    // Same state: no jump inserted again, no chain deleted.
    let same = plan(&two, &existing);
    assert!(!has(&same, "-I "), "{same}");
    assert!(!has(&same, "-D "), "{same}");
    assert!(!has(&same, "-X "), "{same}");
    // One endpoint gone: its SEP chain is flushed and deleted.
    let shrunk = plan(&one, &existing);
    assert_eq!(count(&shrunk, "-X CORRAL-SEP-"), 1, "{shrunk}");
    // The service gone: its SVC chain too.
    let gone = plan(&[], &existing);
    assert_eq!(count(&gone, "-X CORRAL-SVC-"), 1, "{gone}");
    assert_eq!(count(&gone, "-X CORRAL-SEP-"), 2, "{gone}");
    assert!(!has(&gone, "DNAT"));
    // A duplicated jump (from some earlier crash) is removed, keeping one.
    let mut dup = existing.clone();
    let nat = dup.tables.get_mut("nat").unwrap();
    let jump = nat
        .rules
        .iter()
        .find(|r| r.starts_with("-A OUTPUT"))
        .unwrap()
        .clone();
    nat.rules.push(jump);
    let fixed = plan(&two, &dup);
    assert_eq!(
        count(
            &fixed,
            "-D OUTPUT -m comment --comment \"corral service portals\""
        ),
        1,
        "{fixed}"
    );
    assert!(!has(&fixed, "-I OUTPUT"));
}

#[test]
fn cleanup_removes_jumps_then_chains_and_nothing_when_clean() {
    let existing = after(&ports(&["10.42.0.2"], 30080));
    let text = cleanup(&existing);
    for w in [
        "-D PREROUTING -m comment --comment \"corral service portals\" -j CORRAL-SERVICES",
        "-D OUTPUT -m conntrack --ctstate NEW",
        "-D POSTROUTING",
        "-X CORRAL-SERVICES",
        "-X CORRAL-SEP-",
        "-X CORRAL-EXT-",
    ] {
        assert!(has(&text, w), "missing {w}\n{text}");
    }
    // Within each table, jumps go before the chains they point to.
    for block in text.split("COMMIT") {
        let lines: Vec<&str> = block.lines().collect();
        let last_d = lines.iter().rposition(|l| l.starts_with("-D"));
        let first_x = lines.iter().position(|l| l.starts_with("-X"));
        if let (Some(d), Some(x)) = (last_d, first_x) {
            assert!(d < x, "{block}");
        }
    }
    let unrelated = Existing::parse(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n-A PREROUTING -j DOCKER\nCOMMIT\n",
    );
    assert_eq!(cleanup(&unrelated), "");
}

#[test]
fn parse_reads_chains_and_rules_per_table() {
    let e = Existing::parse(
        "# Generated\n*filter\n:INPUT ACCEPT [0:0]\n:CORRAL-SERVICES - [0:0]\n-A INPUT -j CORRAL-SERVICES\nCOMMIT\n*nat\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
    );
    let f = &e.tables["filter"];
    assert!(f.chains.contains("CORRAL-SERVICES"));
    assert_eq!(f.rules, vec!["-A INPUT -j CORRAL-SERVICES"]);
    assert!(e.tables["nat"].rules.is_empty());
}

#[test]
fn client_ip_affinity_sends_known_clients_back_before_balancing_like_kube_proxy() {
    let eps = ["10.42.0.2", "10.42.0.3", "10.42.0.4"];
    for node_port in [0, 30080] {
        let mut p = ports(&eps, node_port);
        p[0].affinity_timeout = Some(600);
        let text = plan(&p, &Existing::default());
        let svc = svc_chain(&p[0]);
        let lines: Vec<&str> = text.lines().collect();
        let first_random = lines
            .iter()
            .position(|l| l.contains("--mode random"))
            .unwrap();
        for ep in eps {
            let ep = format!("{ep}:8080");
            let sep = sep_chain(&p[0], &ep);
            let check = format!(
                "-A {svc} -m comment --comment \"default/web:http -> {ep}\" -m recent --name {sep} --rcheck --seconds 600 --reap -j {sep}"
            );
            let at = lines.iter().position(|l| *l == check);
            assert!(
                at.is_some_and(|i| i < first_random),
                "node port {node_port}: {check} before the random jumps\n{text}"
            );
            let set = format!(
                "-A {sep} -p tcp -m comment --comment \"default/web:http\" -m recent --name {sep} --set -m tcp -j DNAT --to-destination {ep}"
            );
            assert_eq!(
                count(&text, &set),
                1,
                "node port {node_port}: {set}\n{text}"
            );
        }
        if node_port != 0 {
            // The node port path reaches the same service chain, so the same lists apply.
            assert!(has(&text, &format!("-j {svc}")), "{text}");
            assert_eq!(count(&text, "-A CORRAL-EXT-"), 2, "{text}");
        }
    }
    let plain = plan(&ports(&eps, 30080), &Existing::default());
    assert!(!has(&plain, "-m recent"), "{plain}");
}

#[test]
fn turning_affinity_on_changes_the_plan_so_the_syncer_rewrites() {
    let without = ports(&["10.42.0.2"], 0);
    let mut with = without.clone();
    with[0].affinity_timeout = Some(10_800);
    assert_ne!(without, with);
    let text = plan(&with, &after(&without));
    assert!(has(&text, "--rcheck --seconds 10800 --reap"), "{text}");
    // Same chains either way: nothing is deleted.
    assert!(!has(&text, "-X "), "{text}");
}

#[test]
fn the_agents_pod_network_chains_in_the_same_tables_are_left_alone() {
    let agent = "*nat\n:POSTROUTING ACCEPT [0:0]\n:CORRAL-POD-EGRESS - [0:0]\n-A POSTROUTING -m comment --comment \"corral pod egress\" -j CORRAL-POD-EGRESS\nCOMMIT\n*filter\n:FORWARD ACCEPT [0:0]\n:CORRAL-FORWARD - [0:0]\n-A FORWARD -m comment --comment \"corral pod forward\" -j CORRAL-FORWARD\nCOMMIT\n";
    let existing = Existing::parse(agent);
    for text in [
        plan(&ports(&["10.42.0.2"], 0), &existing),
        cleanup(&existing),
    ] {
        for chain in ["CORRAL-POD-EGRESS", "CORRAL-FORWARD"] {
            assert!(!text.contains(chain), "{chain} touched:\n{text}");
        }
    }
}
