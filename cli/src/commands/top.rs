//! `corral top nodes|pods`: metrics.k8s.io through the `Metrics` RPC, printed as `kubectl top`
//! prints it (millicores rounded up, memory in whole Mi rounded down, node percentages of
//! allocatable). The table rules are pure and table-tested; `run` only fetches and prints.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use corral_api::kinds;
use corral_api::printers::table::Table;
use corral_api::rules::quantity::Quantity;
use corral_proto as pb;
use serde_json::Value;

use super::{errln, out, warn, Ctx};
use crate::error::{local, Result};

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(subcommand)]
    pub what: TopWhat,
}

#[derive(Debug, Subcommand)]
pub enum TopWhat {
    /// CPU and memory of nodes (NAME CPU(cores) CPU(%) MEMORY(bytes) MEMORY(%)).
    #[command(visible_alias = "node", alias = "no")]
    Nodes(TopNodeArgs),
    /// CPU and memory of pods (NAME CPU(cores) MEMORY(bytes)).
    #[command(visible_alias = "pod", alias = "po")]
    Pods(TopPodArgs),
}

#[derive(Debug, Args)]
pub struct TopNodeArgs {
    /// One node.
    pub name: Option<String>,
    /// Label selector (`-l role=db`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// `cpu` or `memory`: largest first.
    #[arg(long, value_parser = ["cpu", "memory"])]
    pub sort_by: Option<String>,
    #[arg(long)]
    pub no_headers: bool,
}

#[derive(Debug, Args)]
pub struct TopPodArgs {
    /// One pod.
    pub name: Option<String>,
    /// Pods of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// One line per container.
    #[arg(long)]
    pub containers: bool,
    /// Label selector (`-l app=web`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// `cpu` or `memory`: largest first.
    #[arg(long, value_parser = ["cpu", "memory"])]
    pub sort_by: Option<String>,
    #[arg(long)]
    pub no_headers: bool,
}

/// One measured thing: CPU in nanocores, memory in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub nanocores: i64,
    pub bytes: i64,
}

impl Figures {
    fn add(self, o: Figures) -> Figures {
        Figures {
            nanocores: self.nanocores.saturating_add(o.nanocores),
            bytes: self.bytes.saturating_add(o.bytes),
        }
    }
}

/// A `usage` map (`{"cpu": "123456n", "memory": "1234Ki"}`); absent or bad values count 0.
pub fn usage(u: &Value) -> Figures {
    let q = |k: &str| {
        u.get(k)
            .and_then(Value::as_str)
            .and_then(|s| Quantity::parse(s).ok())
    };
    Figures {
        nanocores: q("cpu").and_then(|q| q.nano_value()).unwrap_or(0),
        bytes: q("memory").and_then(|q| q.value()).unwrap_or(0),
    }
}

/// Millicores, rounded up as kubectl's `MilliValue` (saturating: figures come from nodes).
fn millicores(nanocores: i64) -> i64 {
    nanocores.saturating_add(999_999).div_euclid(1_000_000)
}

/// kubectl's CPU cell: millicores, rounded up.
pub fn cpu_cell(nanocores: i64) -> String {
    format!("{}m", millicores(nanocores))
}

/// kubectl's memory cell: whole MiB, rounded down.
pub fn memory_cell(bytes: i64) -> String {
    format!("{}Mi", bytes / (1024 * 1024))
}

/// kubectl's percentage: used over available (both in thousandths), truncated.
pub fn percent_cell(used_milli: i64, available_milli: i64) -> String {
    if available_milli <= 0 {
        return "<unknown>".into();
    }
    format!(
        "{}%",
        (used_milli as f64 / available_milli as f64 * 100.0) as i64
    )
}

/// A node's allocatable (cpu in millicores, memory in bytes).
pub fn allocatable(node: &Value) -> Option<(i64, i64)> {
    let a = node.pointer("/status/allocatable")?;
    let q = |k: &str| Quantity::parse(a.get(k)?.as_str()?).ok();
    Some((q("cpu")?.milli_value()?, q("memory")?.value()?))
}

fn sort_rows<T>(rows: &mut [(String, Figures, T)], sort_by: Option<&str>) {
    match sort_by {
        Some("cpu") => rows.sort_by(|a, b| {
            b.1.nanocores
                .div_euclid(1_000_000)
                .cmp(&a.1.nanocores.div_euclid(1_000_000))
                .then(a.0.cmp(&b.0))
        }),
        Some("memory") => rows.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(&b.0))),
        _ => rows.sort_by(|a, b| a.0.cmp(&b.0)),
    }
}

/// `top nodes`' table: the nodes with metrics, then `<unknown>` lines for the nodes listed in
/// `allocatable` that have none.
pub fn node_table(
    metrics: &[Value],
    allocatable: &BTreeMap<String, (i64, i64)>,
    sort_by: Option<&str>,
) -> Table {
    let mut t = Table::new(["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]);
    let mut rows: Vec<(String, Figures, ())> = metrics
        .iter()
        .map(|m| {
            let name = m
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            (name.to_string(), usage(&m["usage"]), ())
        })
        .collect();
    sort_rows(&mut rows, sort_by);
    for (name, f, ()) in &rows {
        let (cpu, mem) = allocatable.get(name).copied().unwrap_or((0, 0));
        let cpu_milli = millicores(f.nanocores);
        t.rows.push(vec![
            name.clone(),
            cpu_cell(f.nanocores),
            percent_cell(cpu_milli, cpu),
            memory_cell(f.bytes),
            percent_cell(f.bytes.saturating_mul(1000), mem.saturating_mul(1000)),
        ]);
    }
    for name in allocatable.keys() {
        if !rows.iter().any(|(n, _, _)| n == name) {
            let unknown = "<unknown>".to_string();
            t.rows.push(vec![
                name.clone(),
                unknown.clone(),
                unknown.clone(),
                unknown.clone(),
                unknown,
            ]);
        }
    }
    t
}

/// `top pods`' table: per pod (summed over its containers), or per container.
pub fn pod_table(
    metrics: &[Value],
    all_namespaces: bool,
    containers: bool,
    sort_by: Option<&str>,
) -> Table {
    let mut header: Vec<&str> = Vec::new();
    if all_namespaces {
        header.push("NAMESPACE");
    }
    if containers {
        header.push("POD");
    }
    header.extend(["NAME", "CPU(cores)", "MEMORY(bytes)"]);
    let mut t = Table::new(header);
    let meta = |m: &Value, k: &str| {
        m.pointer(&format!("/metadata/{k}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut pods: Vec<(String, Figures, &Value)> = metrics
        .iter()
        .map(|m| {
            let per: Vec<Figures> = m["containers"]
                .as_array()
                .map(|cs| cs.iter().map(|c| usage(&c["usage"])).collect())
                .unwrap_or_default();
            let total = per.into_iter().fold(Figures::default(), Figures::add);
            // Sorting by name puts namespaces first when they are shown.
            let key = if all_namespaces {
                format!("{}\0{}", meta(m, "namespace"), meta(m, "name"))
            } else {
                meta(m, "name")
            };
            (key, total, m)
        })
        .collect();
    sort_rows(&mut pods, sort_by);
    for (_, total, m) in pods {
        let mut lead: Vec<String> = Vec::new();
        if all_namespaces {
            lead.push(meta(m, "namespace"));
        }
        if !containers {
            lead.push(meta(m, "name"));
            t.rows.push(
                [
                    lead,
                    vec![cpu_cell(total.nanocores), memory_cell(total.bytes)],
                ]
                .concat(),
            );
            continue;
        }
        lead.push(meta(m, "name"));
        let mut cs: Vec<(String, Figures, ())> = m["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or("").to_string(),
                    usage(&c["usage"]),
                    (),
                )
            })
            .collect();
        sort_rows(&mut cs, sort_by);
        for (name, f, ()) in cs {
            t.rows.push(
                [
                    lead.clone(),
                    vec![name, cpu_cell(f.nanocores), memory_cell(f.bytes)],
                ]
                .concat(),
            );
        }
    }
    t
}

async fn fetch(ctx: &Ctx, req: pb::MetricsRequest) -> Result<Vec<Value>> {
    let answer = ctx
        .client
        .raw()
        .metrics(req)
        .await
        .map_err(|s| ctx.err(&s.into()))?;
    let warnings: Vec<String> = answer
        .metadata()
        .get_all(corral_api::warning::METADATA_KEY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(corral_api::warning::parse)
        .collect();
    warn(&warnings);
    answer
        .into_inner()
        .items
        .iter()
        .map(|b| {
            serde_json::from_slice(b)
                .map_err(|e| local(format!("metrics from the server do not decode: {e}")))
        })
        .collect()
}

pub async fn run(ctx: &Ctx, args: &TopArgs) -> Result<()> {
    match &args.what {
        TopWhat::Nodes(a) => nodes(ctx, a).await,
        TopWhat::Pods(a) => pods(ctx, a).await,
    }
}

async fn nodes(ctx: &Ctx, a: &TopNodeArgs) -> Result<()> {
    let selector = a.selector.clone().unwrap_or_default();
    let metrics = fetch(
        ctx,
        pb::MetricsRequest {
            resource: "nodes".into(),
            name: a.name.clone().unwrap_or_default(),
            label_selector: selector.clone(),
            ..Default::default()
        },
    )
    .await?;
    if metrics.is_empty() {
        return Err(local("metrics not available yet"));
    }
    let nodes = match &a.name {
        Some(n) => vec![ctx
            .client
            .get_value(&kinds::NODES, "", n)
            .await
            .map_err(|e| ctx.about(&kinds::NODES, n, &e))?],
        None => {
            let params = corral_api::client::ListParams::labels(selector);
            ctx.client
                .list_value(&kinds::NODES, "", &params)
                .await
                .map_err(|e| ctx.err(&e))?
                .0
        }
    };
    let allocatable: BTreeMap<String, (i64, i64)> = nodes
        .iter()
        .map(|n| {
            (
                corral_api::object::name(n).to_string(),
                allocatable(n).unwrap_or((0, 0)),
            )
        })
        .collect();
    out(&node_table(&metrics, &allocatable, a.sort_by.as_deref()).render(!a.no_headers))
}

async fn pods(ctx: &Ctx, a: &TopPodArgs) -> Result<()> {
    let namespace = if a.all_namespaces {
        String::new()
    } else {
        ctx.namespace.clone()
    };
    let selector = a.selector.clone().unwrap_or_default();
    let metrics = fetch(
        ctx,
        pb::MetricsRequest {
            resource: "pods".into(),
            namespace: namespace.clone(),
            name: a.name.clone().unwrap_or_default(),
            label_selector: selector.clone(),
        },
    )
    .await?;
    if metrics.is_empty() {
        // Pods that exist but have no figures yet are "not available yet", as kubectl says.
        let params = corral_api::client::ListParams::labels(selector);
        let (pods, _) = ctx
            .client
            .list_value(&kinds::PODS, &namespace, &params)
            .await
            .map_err(|e| ctx.err(&e))?;
        if !pods.is_empty() {
            return Err(local("metrics not available yet"));
        }
        if a.all_namespaces {
            errln("No resources found");
        } else {
            errln(&format!("No resources found in {namespace} namespace."));
        }
        return Ok(());
    }
    out(&pod_table(
        &metrics,
        a.all_namespaces,
        a.containers,
        a.sort_by.as_deref(),
    )
    .render(!a.no_headers))
}

#[cfg(test)]
mod tests;
