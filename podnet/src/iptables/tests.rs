use super::*;

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

/// What `iptables-save` shows after `text` was restored onto `save` (enough for our chains).
fn apply(save: &str, text: &str) -> String {
    let mut tables: Vec<(String, Vec<String>)> = Vec::new();
    let mut cur = None;
    for line in save.lines() {
        if let Some(t) = line.strip_prefix('*') {
            tables.push((t.to_string(), Vec::new()));
            cur = Some(tables.len() - 1);
        } else if let Some(i) = cur {
            if line != "COMMIT" {
                tables[i].1.push(line.to_string());
            }
        }
    }
    let mut cur = 0;
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            cur = match tables.iter().position(|(n, _)| n == t) {
                Some(i) => i,
                None => {
                    tables.push((t.to_string(), Vec::new()));
                    tables.len() - 1
                }
            };
            continue;
        }
        let lines = &mut tables[cur].1;
        if let Some(decl) = line.strip_prefix(':') {
            let chain = decl.split_whitespace().next().unwrap();
            let prefix = format!("-A {chain} ");
            lines.retain(|l| !l.starts_with(&prefix));
            if !lines.iter().any(|l| l == line) {
                lines.insert(0, line.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("-I ") {
            let (chain, spec) = rest.split_once(" 1 ").unwrap();
            lines.push(format!("-A {chain} {spec}"));
        } else if let Some(rest) = line.strip_prefix("-D ") {
            let l = format!("-A {rest}");
            let i = lines.iter().position(|x| *x == l).unwrap();
            lines.remove(i);
        } else if let Some(chain) = line.strip_prefix("-X ") {
            lines.retain(|l| !l.starts_with(&format!(":{chain} ")));
        } else if line.starts_with("-A ") {
            lines.push(line.to_string());
        }
    }
    let mut out = String::new();
    for (n, lines) in tables {
        out.push_str(&format!("*{n}\n"));
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
        out.push_str("COMMIT\n");
    }
    out
}

const EMPTY: &str = "*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j DOCKER\nCOMMIT\n";

#[test]
fn first_sync_creates_both_chains_with_commented_rules_and_one_jump_each() {
    let text = plan(cidr("10.42.0.0/16"), Some(cidr("10.42.3.0/24")), EMPTY);
    let want = "*nat
:CORRAL-POD-EGRESS - [0:0]
-I POSTROUTING 1 -m comment --comment \"corral pod egress\" -j CORRAL-POD-EGRESS
-A CORRAL-POD-EGRESS -s 10.42.3.0/24 ! -d 10.42.0.0/16 -m comment --comment \"corral pod egress masquerade\" -j MASQUERADE
COMMIT
*filter
:CORRAL-FORWARD - [0:0]
-I FORWARD 1 -m comment --comment \"corral pod forward\" -j CORRAL-FORWARD
-A CORRAL-FORWARD -s 10.42.0.0/16 -m comment --comment \"corral forward from pods\" -j ACCEPT
-A CORRAL-FORWARD -d 10.42.0.0/16 -m comment --comment \"corral forward to pods\" -j ACCEPT
COMMIT
";
    assert_eq!(text, want);
    for line in text.lines().filter(|l| l.starts_with('-')) {
        assert!(line.contains("corral"), "{line}");
    }
}

#[test]
fn sync_is_idempotent_and_repairs_what_changed() {
    let (cluster, pod) = (cidr("10.42.0.0/16"), Some(cidr("10.42.3.0/24")));
    let once = apply(EMPTY, &plan(cluster, pod, EMPTY));
    assert_eq!(plan(cluster, pod, &once), "", "{once}");
    // The pod CIDR arrives later: only the nat table is rewritten.
    let before = apply(EMPTY, &plan(cluster, None, EMPTY));
    let text = plan(cluster, pod, &before);
    assert!(
        text.starts_with("*nat\n:CORRAL-POD-EGRESS - [0:0]\n-A "),
        "{text}"
    );
    assert!(!text.contains("*filter"));
    // A duplicated jump is removed, a deleted one put back.
    let doubled = once.replace(
        "-A FORWARD -j DOCKER",
        "-A FORWARD -j DOCKER\n-A FORWARD -m comment --comment \"corral pod forward\" -j CORRAL-FORWARD",
    );
    let fixed = apply(&doubled, &plan(cluster, pod, &doubled));
    assert_eq!(plan(cluster, pod, &fixed), "");
    assert_eq!(fixed.matches("-j CORRAL-FORWARD").count(), 1);
    let gone = once.replace(
        "-A POSTROUTING -m comment --comment \"corral pod egress\" -j CORRAL-POD-EGRESS\n",
        "",
    );
    assert_eq!(
        plan(cluster, pod, &apply(&gone, &plan(cluster, pod, &gone))),
        ""
    );
}

#[test]
fn cleanup_removes_exactly_our_chains_and_jumps() {
    let (cluster, pod) = (cidr("10.42.0.0/16"), Some(cidr("10.42.3.0/24")));
    let once = apply(EMPTY, &plan(cluster, pod, EMPTY));
    let after = apply(&once, &cleanup(&once));
    assert_eq!(after, apply(EMPTY, ""));
    assert_eq!(cleanup(&after), "");
}
