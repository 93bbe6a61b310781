//! `corral top`'s tables: kubectl's rounding, percentages of allocatable, unknown nodes,
//! container sums and sorting.

use serde_json::json;

use super::*;

#[test]
fn cells_round_as_kubectl_does() {
    // (nanocores, cpu cell): MilliValue rounds up
    for (n, want) in [
        (0, "0m"),
        (1, "1m"),
        (999_999, "1m"),
        (1_000_000, "1m"),
        (1_000_001, "2m"),
        (250_000_000, "250m"),
        (2_000_000_000, "2000m"),
    ] {
        assert_eq!(cpu_cell(n), want, "{n}");
    }
    // (bytes, memory cell): whole MiB, rounded down
    for (b, want) in [
        (0, "0Mi"),
        ((1 << 20) - 1, "0Mi"),
        (45 << 20, "45Mi"),
        ((45 << 20) + 999, "45Mi"),
    ] {
        assert_eq!(memory_cell(b), want, "{b}");
    }
    // (used, available) in thousandths: truncated percent
    for (used, avail, want) in [
        (250, 2000, "12%"),
        (1999, 2000, "99%"),
        (2000, 2000, "100%"),
        (0, 2000, "0%"),
        (5, 0, "<unknown>"),
    ] {
        assert_eq!(percent_cell(used, avail), want, "{used}/{avail}");
    }
}

#[test]
fn usage_reads_metrics_quantities() {
    for (u, want) in [
        (
            json!({"cpu": "123456n", "memory": "1234Ki"}),
            (123_456, 1_263_616),
        ),
        (
            json!({"cpu": "250m", "memory": "3Mi"}),
            (250_000_000, 3 << 20),
        ),
        (json!({"cpu": "2", "memory": "1000"}), (2_000_000_000, 1000)),
        (json!({"cpu": "5u"}), (5_000, 0)),
        (json!({"cpu": "bad", "memory": -1}), (0, 0)),
    ] {
        let f = usage(&u);
        assert_eq!((f.nanocores, f.bytes), want, "{u}");
    }
}

fn node(name: &str, cpu: &str, mem: &str) -> Value {
    json!({"metadata": {"name": name}, "usage": {"cpu": cpu, "memory": mem}})
}

#[test]
fn node_tables_show_percent_of_allocatable_and_unknown_nodes() {
    let metrics = [
        node("b", "500000000n", "1Gi"),
        node("a", "1000001n", "512Mi"),
    ];
    let alloc = BTreeMap::from([
        ("a".to_string(), (2000, 2 << 30)),
        ("b".to_string(), (2000, 4 << 30)),
        ("c".to_string(), (1000, 1 << 30)),
    ]);
    let t = node_table(&metrics, &alloc, None);
    assert_eq!(
        t.header,
        ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    );
    assert_eq!(
        t.rows,
        vec![
            vec!["a", "2m", "0%", "512Mi", "25%"],
            vec!["b", "500m", "25%", "1024Mi", "25%"],
            vec!["c", "<unknown>", "<unknown>", "<unknown>", "<unknown>"],
        ]
    );
    let by_cpu = node_table(&metrics, &BTreeMap::new(), Some("cpu"));
    let names: Vec<&str> = by_cpu.rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["b", "a"]);
}

fn pod(ns: &str, name: &str, containers: &[(&str, &str, &str)]) -> Value {
    let cs: Vec<Value> = containers
        .iter()
        .map(|(n, cpu, mem)| json!({"name": n, "usage": {"cpu": cpu, "memory": mem}}))
        .collect();
    json!({"metadata": {"name": name, "namespace": ns}, "containers": cs})
}

#[test]
fn pod_tables_sum_containers_or_list_them() {
    let metrics = [
        pod(
            "web",
            "b",
            &[("app", "400000n", "1Mi"), ("log", "700000n", "2Mi")],
        ),
        pod("db", "z", &[("pg", "5000000n", "100Mi")]),
        pod("web", "a", &[("app", "0", "0")]),
    ];
    let t = pod_table(&metrics, false, false, None);
    assert_eq!(t.header, ["NAME", "CPU(cores)", "MEMORY(bytes)"]);
    // b: 1.1m summed, then rounded up once
    assert_eq!(
        t.rows,
        vec![
            vec!["a", "0m", "0Mi"],
            vec!["b", "2m", "3Mi"],
            vec!["z", "5m", "100Mi"]
        ]
    );
    let t = pod_table(&metrics, true, false, Some("memory"));
    assert_eq!(
        t.header,
        ["NAMESPACE", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    );
    assert_eq!(t.rows[0], ["db", "z", "5m", "100Mi"]);
    let t = pod_table(&metrics, true, true, None);
    assert_eq!(
        t.header,
        ["NAMESPACE", "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    );
    assert_eq!(
        t.rows,
        vec![
            vec!["db", "z", "pg", "5m", "100Mi"],
            vec!["web", "a", "app", "0m", "0Mi"],
            vec!["web", "b", "app", "1m", "1Mi"],
            vec!["web", "b", "log", "1m", "2Mi"],
        ]
    );
}

#[test]
fn allocatable_is_read_from_node_status() {
    let n = json!({"status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}}});
    assert_eq!(allocatable(&n), Some((2000, 4 << 30)));
    assert_eq!(allocatable(&json!({"status": {}})), None);
}
