//! `corral describe`: fetches the object plus what its description shows (events, owned
//! ReplicaSets, selected pods, endpoints, pods on a node) and prints kubectl's layout.

use std::collections::HashMap;

use corral_api::k8s::api::apps::v1::ReplicaSet;
use corral_api::k8s::api::core::v1::{Event, Pod};
use corral_api::kinds::{self, ResourceInfo};
use corral_api::rules::owner;
use corral_api::{object, ListParams};
use serde_json::Value;

use super::{errln, no_resources, now, out, parse_targets, report, Ctx, Targets};
use crate::args::DescribeArgs;
use crate::error::{local, CliError, Result};
use crate::printers::describe::{self, Related};

pub async fn run(ctx: &Ctx, a: &DescribeArgs) -> Result<()> {
    let mut failed = false;
    let mut objects: Vec<(&'static ResourceInfo, Value)> = Vec::new();
    match parse_targets(&a.resources)? {
        Targets::Kinds { kinds, names } if names.is_empty() => {
            for info in kinds {
                let ns = if a.all_namespaces {
                    String::new()
                } else {
                    ctx.ns_for(info)
                };
                let params = ListParams::labels(a.selector.clone().unwrap_or_default());
                let (items, _) = ctx
                    .client
                    .list_value(info, &ns, &params)
                    .await
                    .map_err(|e| ctx.err(&e))?;
                if items.is_empty() {
                    let ns = if a.all_namespaces {
                        ""
                    } else {
                        ctx.namespace.as_str()
                    };
                    errln(&no_resources(info.namespaced, ns));
                }
                objects.extend(items.into_iter().map(|o| (info, o)));
            }
        }
        Targets::Kinds { kinds, names } => {
            for info in kinds {
                for name in &names {
                    match ctx.client.get_value(info, &ctx.ns_for(info), name).await {
                        Ok(v) => objects.push((info, v)),
                        Err(e) => {
                            report(ctx.about(info, name, &e));
                            failed = true;
                        }
                    }
                }
            }
        }
        Targets::Named(list) => {
            for (info, name) in list {
                match ctx.client.get_value(info, &ctx.ns_for(info), &name).await {
                    Ok(v) => objects.push((info, v)),
                    Err(e) => {
                        report(ctx.about(info, &name, &e));
                        failed = true;
                    }
                }
            }
        }
    }

    let mut events_cache: HashMap<String, Vec<Event>> = HashMap::new();
    let mut first = true;
    for (info, obj) in &objects {
        let rel = related(ctx, info, obj, &mut events_cache).await?;
        let text = render(info, obj, &rel)?;
        if !first {
            out("\n")?;
        }
        first = false;
        out(&text)?;
    }
    if failed {
        Err(CliError::Reported)
    } else {
        Ok(())
    }
}

fn render(info: &ResourceInfo, obj: &Value, rel: &Related) -> Result<String> {
    fn typed<K: serde::de::DeserializeOwned>(v: &Value) -> Result<K> {
        serde_json::from_value(v.clone())
            .map_err(|e| local(format!("decoding {}: {e}", corral_api::decode::describe(v))))
    }
    let t = now();
    Ok(match info.plural {
        "pods" => describe::pod(&typed(obj)?, rel, t),
        "deployments" => describe::deployment(&typed(obj)?, rel, t),
        "replicasets" => describe::replicaset(&typed(obj)?, rel, t),
        "daemonsets" => describe::daemonset(&typed(obj)?, rel, t),
        "statefulsets" => describe::statefulset(&typed(obj)?, rel, t),
        "services" => describe::service(&typed(obj)?, rel, t),
        "ingresses" => describe::ingress(&typed(obj)?, rel, t),
        "nodes" => describe::node(&typed(obj)?, rel, t),
        "namespaces" => describe::namespace(&typed(obj)?),
        "configmaps" => describe::configmap(&typed(obj)?, rel, t),
        "secrets" => describe::secret(&typed(obj)?),
        _ => describe::generic(obj, rel, t),
    })
}

async fn related(
    ctx: &Ctx,
    info: &ResourceInfo,
    obj: &Value,
    events_cache: &mut HashMap<String, Vec<Event>>,
) -> Result<Related> {
    let ns = object::namespace(obj).to_string();
    let uid = object::uid(obj).to_string();
    let name = object::name(obj).to_string();
    let mut rel = Related::default();

    // Events of cluster-scoped objects may live in any namespace; list them all.
    if !events_cache.contains_key(&ns) {
        let (evs, _) = ctx
            .client
            .list::<Event>(&ns, &ListParams::default())
            .await
            .map_err(|e| ctx.err(&e))?;
        events_cache.insert(ns.clone(), evs);
    }
    rel.events = events_cache[&ns]
        .iter()
        .filter(|e| {
            let io = &e.involved_object;
            match io.uid.as_deref() {
                Some(u) if !u.is_empty() => u == uid,
                _ => {
                    io.name.as_deref() == Some(name.as_str())
                        && io.kind.as_deref() == Some(info.kind)
                        && io.namespace.clone().unwrap_or_default() == ns
                }
            }
        })
        .cloned()
        .collect();

    match info.plural {
        "deployments" => {
            let (items, _) = ctx
                .client
                .list_value(&kinds::REPLICASETS, &ns, &ListParams::default())
                .await
                .map_err(|e| ctx.err(&e))?;
            rel.replicasets = items
                .into_iter()
                .filter_map(|rs| serde_json::from_value::<ReplicaSet>(rs).ok())
                .filter(|rs| owner::is_controlled_by(&rs.metadata, &uid))
                .collect();
        }
        "replicasets" | "daemonsets" | "statefulsets" => {
            let (items, _) = ctx
                .client
                .list_value(&kinds::PODS, &ns, &ListParams::default())
                .await
                .map_err(|e| ctx.err(&e))?;
            rel.pods = items
                .into_iter()
                .filter_map(|p| serde_json::from_value::<Pod>(p).ok())
                .filter(|p| owner::is_controlled_by(&p.metadata, &uid))
                .collect();
        }
        "services" => {
            rel.endpoints = ctx
                .client
                .get_value(&kinds::ENDPOINTS, &ns, &name)
                .await
                .ok()
                .and_then(|v| serde_json::from_value(v).ok());
        }
        "ingresses" => {
            let (items, _) = ctx
                .client
                .list::<corral_api::k8s::api::core::v1::Endpoints>(&ns, &ListParams::default())
                .await
                .map_err(|e| ctx.err(&e))?;
            rel.backends = items
                .into_iter()
                .map(|ep| (ep.metadata.name.clone().unwrap_or_default(), ep))
                .collect();
        }
        "nodes" => {
            let (pods, _) = ctx
                .client
                .list::<Pod>("", &ListParams::fields(format!("spec.nodeName={name}")))
                .await
                .map_err(|e| ctx.err(&e))?;
            rel.pods = pods;
        }
        _ => {}
    }
    Ok(rel)
}
