//! `corral get`: tables with kubectl's columns, `-o wide|yaml|json|name|jsonpath`, `-w`.

use std::pin::pin;

use corral_api::kinds::ResourceInfo;
use corral_api::{ListParams, WatchEvent};
use futures::StreamExt;
use serde_json::Value;

use super::{errln, no_resources, now, out, parse_targets, report, with_type, Ctx, Targets};
use crate::args::GetArgs;
use crate::error::{local, CliError, Result};
use crate::printers::{self, output, PrintOptions, Widths};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Table,
    Wide,
    Yaml,
    Json,
    Name,
    JsonPath(String),
    /// `custom-columns=HEADER:PATH,...`
    CustomColumns(Vec<(String, String)>),
}

/// `--sort-by`: numbers compare as numbers, everything else as text; missing values first.
pub fn sort_by_path(objects: &mut [Value], path: &str) {
    let key = |o: &Value| {
        crate::jsonpath::values(path, o)
            .ok()
            .and_then(|v| v.into_iter().next())
    };
    objects.sort_by(|a, b| match (key(a), key(b)) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(std::cmp::Ordering::Equal),
        (x, y) => {
            let text = |v: Option<Value>| v.map(|v| crate::jsonpath::show_value(&v));
            text(x).cmp(&text(y))
        }
    });
}

/// Parses `NAME:.metadata.name,IMAGE:.spec.containers[*].image`.
pub fn parse_custom_columns(spec: &str) -> Result<Vec<(String, String)>> {
    let mut cols = Vec::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let Some((header, path)) = part.split_once(':') else {
            return Err(local(format!(
                "custom-columns format must be HEADER:PATH[,HEADER:PATH...], got {part:?}"
            )));
        };
        // Checked now, so a bad path fails before anything is fetched.
        crate::jsonpath::values(path, &Value::Null).map_err(local)?;
        cols.push((header.to_string(), path.to_string()));
    }
    if cols.is_empty() {
        return Err(local("custom-columns format must name at least one column"));
    }
    Ok(cols)
}

/// One custom-columns row: values joined by commas, `<none>` when nothing matches.
pub fn custom_row(cols: &[(String, String)], obj: &Value) -> Vec<String> {
    cols.iter()
        .map(|(_, path)| {
            let vals = crate::jsonpath::values(path, obj).unwrap_or_default();
            if vals.is_empty() {
                "<none>".to_string()
            } else {
                vals.iter()
                    .map(crate::jsonpath::show_value)
                    .collect::<Vec<_>>()
                    .join(",")
            }
        })
        .collect()
}

pub fn parse_output(o: Option<&str>) -> Result<Output> {
    Ok(match o {
        None | Some("") => Output::Table,
        Some("wide") => Output::Wide,
        Some("yaml") => Output::Yaml,
        Some("json") => Output::Json,
        Some("name") => Output::Name,
        Some(other) => match other.split_once('=') {
            Some(("jsonpath", t)) => Output::JsonPath(t.to_string()),
            Some(("custom-columns", spec)) => Output::CustomColumns(parse_custom_columns(spec)?),
            _ => {
                return Err(local(format!(
                    "unable to match a printer suitable for the output format {other:?}, allowed formats are: custom-columns,json,jsonpath,name,wide,yaml"
                )))
            }
        },
    })
}

fn params(a: &GetArgs) -> ListParams {
    ListParams {
        label_selector: a.selector.clone().unwrap_or_default(),
        field_selector: a.field_selector.clone().unwrap_or_default(),
    }
}

/// Objects fetched for one kind.
struct Fetched {
    info: &'static ResourceInfo,
    objects: Vec<Value>,
    resource_version: i64,
}

pub async fn run(ctx: &Ctx, a: &GetArgs) -> Result<()> {
    let output = parse_output(a.output.as_deref())?;
    let targets = parse_targets(&a.resources)?;
    let list_ns = |info: &ResourceInfo| {
        if a.all_namespaces {
            String::new()
        } else {
            ctx.ns_for(info)
        }
    };
    if a.watch || a.watch_only {
        return watch(ctx, a, &targets, &output).await;
    }

    let mut failed = false;
    let mut fetched: Vec<Fetched> = Vec::new();
    let mut by_name = false;
    match &targets {
        Targets::Kinds { kinds, names } if names.is_empty() => {
            for info in kinds {
                let (objects, rv) = ctx
                    .client
                    .list_value(info, &list_ns(info), &params(a))
                    .await
                    .map_err(|e| ctx.err(&e))?;
                fetched.push(Fetched {
                    info,
                    objects,
                    resource_version: rv,
                });
            }
        }
        Targets::Kinds { kinds, names } => {
            by_name = true;
            for info in kinds {
                let mut f = Fetched {
                    info,
                    objects: vec![],
                    resource_version: 0,
                };
                for name in names {
                    match ctx.client.get_value(info, &ctx.ns_for(info), name).await {
                        Ok(v) => f.objects.push(v),
                        Err(e) => {
                            report(ctx.about(info, name, &e));
                            failed = true;
                        }
                    }
                }
                fetched.push(f);
            }
        }
        Targets::Named(list) => {
            by_name = true;
            for (info, name) in list {
                match ctx.client.get_value(info, &ctx.ns_for(info), name).await {
                    Ok(v) => match fetched.iter_mut().find(|f| f.info == *info) {
                        Some(f) => f.objects.push(v),
                        None => fetched.push(Fetched {
                            info,
                            objects: vec![v],
                            resource_version: 0,
                        }),
                    },
                    Err(e) => {
                        report(ctx.about(info, name, &e));
                        failed = true;
                    }
                }
            }
        }
    }

    if let Some(path) = &a.sort_by {
        crate::jsonpath::values(path, &Value::Null).map_err(local)?;
        for f in &mut fetched {
            sort_by_path(&mut f.objects, path);
        }
    }
    let total: usize = fetched.iter().map(|f| f.objects.len()).sum();
    if total == 0 && !by_name {
        if matches!(output, Output::Yaml | Output::Json) {
            print_structured(&output, vec![], false)?;
        } else {
            let namespaced = fetched.iter().all(|f| f.info.namespaced);
            let ns = if a.all_namespaces {
                ""
            } else {
                ctx.namespace.as_str()
            };
            errln(&no_resources(namespaced, ns));
        }
        return if failed {
            Err(CliError::Reported)
        } else {
            Ok(())
        };
    }

    match &output {
        Output::Table | Output::Wide => {
            let several_kinds = fetched.iter().filter(|f| !f.objects.is_empty()).count() > 1;
            let opts = PrintOptions {
                wide: output == Output::Wide,
                show_labels: a.show_labels,
                with_namespace: a.all_namespaces,
                with_kind: a.show_kind || several_kinds,
                now: now(),
            };
            let mut first = true;
            for f in fetched.iter().filter(|f| !f.objects.is_empty()) {
                let table = printers::table(f.info, &f.objects, &opts).map_err(local)?;
                if !first {
                    out("\n")?;
                }
                first = false;
                out(&table.render(!a.no_headers))?;
            }
        }
        Output::CustomColumns(cols) => {
            let mut t = printers::Table::new(cols.iter().map(|(h, _)| h.clone()));
            for f in &fetched {
                t.rows.extend(f.objects.iter().map(|o| custom_row(cols, o)));
            }
            out(&t.render(!a.no_headers))?;
        }
        Output::Name => {
            for f in &fetched {
                for o in &f.objects {
                    out(&format!("{}\n", output::name(f.info, o)))?;
                }
            }
        }
        Output::Yaml | Output::Json | Output::JsonPath(_) => {
            let single = by_name && total == 1;
            let hide = !a.show_managed_fields && !matches!(output, Output::JsonPath(_));
            let items: Vec<Value> = fetched
                .into_iter()
                .flat_map(|f| {
                    let info = f.info;
                    let _ = f.resource_version;
                    f.objects.into_iter().map(move |o| {
                        let mut o = with_type(info, o);
                        if hide {
                            without_managed_fields(&mut o);
                        }
                        o
                    })
                })
                .collect();
            print_structured(&output, items, single)?;
        }
    }
    if failed {
        Err(CliError::Reported)
    } else {
        Ok(())
    }
}

/// kubectl's default for yaml and json: managedFields are noise to a reader.
fn without_managed_fields(o: &mut Value) {
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
}

fn print_structured(output: &Output, mut items: Vec<Value>, single: bool) -> Result<()> {
    let doc = if single {
        items.remove(0)
    } else {
        output::list(items)
    };
    match output {
        Output::Yaml => out(&output::yaml(&doc)),
        Output::Json => out(&output::json(&doc)),
        Output::JsonPath(t) => {
            let text = crate::jsonpath::render(t, &doc).map_err(local)?;
            out(&text)
        }
        _ => Ok(()),
    }
}

/// `get -w`: the table, then one line per change, aligned with the table.
async fn watch(ctx: &Ctx, a: &GetArgs, targets: &Targets, output: &Output) -> Result<()> {
    let (info, name) =
        match targets {
            Targets::Kinds { kinds, names } if kinds.len() == 1 && names.len() <= 1 => {
                (kinds[0], names.first().cloned())
            }
            Targets::Named(v) if v.len() == 1 => (v[0].0, Some(v[0].1.clone())),
            _ => return Err(local(
                "you may only specify a single resource type (and at most one name) with --watch",
            )),
        };
    let ns = if a.all_namespaces {
        String::new()
    } else {
        ctx.ns_for(info)
    };
    let mut p = params(a);
    if let Some(n) = &name {
        let sel = format!("metadata.name={n}");
        p.field_selector = if p.field_selector.is_empty() {
            sel
        } else {
            format!("{},{sel}", p.field_selector)
        };
    }
    let opts = PrintOptions {
        wide: *output == Output::Wide,
        show_labels: a.show_labels,
        with_namespace: a.all_namespaces,
        with_kind: a.show_kind,
        now: now(),
    };
    let header = match output {
        Output::CustomColumns(cols) => cols.iter().map(|(h, _)| h.clone()).collect(),
        _ => printers::headers(info, &opts),
    };
    let mut widths = Widths::default();
    let mut header_printed = false;

    let (objects, mut rv) = ctx
        .client
        .list_value(info, &ns, &p)
        .await
        .map_err(|e| ctx.err(&e))?;
    if let Some(n) = &name {
        if objects.is_empty() && !a.watch_only {
            return Err(ctx.about(
                info,
                n,
                &corral_api::client::Error::Api {
                    code: tonic::Code::NotFound,
                    message: String::new(),
                    status: None,
                },
            ));
        }
    }
    if !a.watch_only {
        if objects.is_empty() {
            errln(&no_resources(info.namespaced, &ns));
        } else {
            let table = match output {
                Output::CustomColumns(cols) => printers::Table {
                    header: header.clone(),
                    rows: objects.iter().map(|o| custom_row(cols, o)).collect(),
                },
                _ => printers::table(info, &objects, &opts).map_err(local)?,
            };
            widths = table.widths(!a.no_headers);
            out(&table.render(!a.no_headers))?;
            header_printed = true;
        }
    }

    loop {
        let stream = match ctx.client.watch_value(info, &ns, &p, rv).await {
            Ok(s) => s,
            Err(e) => return Err(ctx.err(&e)),
        };
        let mut stream = pin!(stream);
        while let Some(ev) = stream.next().await {
            let obj = match ev {
                Ok(WatchEvent::Added(o))
                | Ok(WatchEvent::Modified(o))
                | Ok(WatchEvent::Deleted(o)) => o,
                Ok(WatchEvent::Bookmark(r)) => {
                    rv = r;
                    continue;
                }
                Err(e) if e.is_gone() => {
                    // History was compacted: re-list and go on from the new revision.
                    let (_, new_rv) = ctx
                        .client
                        .list_value(info, &ns, &p)
                        .await
                        .map_err(|e| ctx.err(&e))?;
                    rv = new_rv;
                    break;
                }
                Err(e) => return Err(ctx.err(&e)),
            };
            rv = rv.max(corral_api::object::resource_version(&obj));
            let line = match output {
                Output::Table | Output::Wide | Output::CustomColumns(_) => {
                    let cells = match output {
                        Output::CustomColumns(cols) => custom_row(cols, &obj),
                        _ => {
                            let opts = PrintOptions {
                                now: now(),
                                ..opts.clone()
                            };
                            printers::row(info, &obj, &opts).map_err(local)?
                        }
                    };
                    let mut text = String::new();
                    if !header_printed && !a.no_headers {
                        widths.fit(&header);
                        widths.fit(&cells);
                        text.push_str(&widths.line(&header));
                    }
                    header_printed = true;
                    text.push_str(&widths.line(&cells));
                    text
                }
                Output::Name => format!("{}\n", output::name(info, &obj)),
                Output::Json => output::json(&with_type(info, obj)),
                Output::Yaml => format!("---\n{}", output::yaml(&with_type(info, obj))),
                Output::JsonPath(t) => crate::jsonpath::render(t, &obj).map_err(local)?,
            };
            out(&line)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_formats_parse_and_unknown_ones_are_listed() {
        assert_eq!(parse_output(Some("wide")).unwrap(), Output::Wide);
        assert_eq!(
            parse_output(Some("jsonpath={.metadata.name}")).unwrap(),
            Output::JsonPath("{.metadata.name}".into())
        );
        let cols = parse_output(Some(
            "custom-columns=NAME:.metadata.name,IMAGES:spec.containers[*].image",
        ))
        .unwrap();
        let Output::CustomColumns(cols) = cols else {
            panic!("{cols:?}")
        };
        let pod = serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [{"image": "a"}, {"image": "b"}]}});
        assert_eq!(custom_row(&cols, &pod), ["p", "a,b"]);
        assert_eq!(
            custom_row(&[("X".into(), ".status.podIP".into())], &pod),
            ["<none>"]
        );
        assert!(parse_output(Some("custom-columns=NAME")).is_err());
        let mut objs = vec![
            serde_json::json!({"n": "b", "c": 10}),
            serde_json::json!({"n": "a", "c": 9}),
            serde_json::json!({"n": "c"}),
        ];
        sort_by_path(&mut objs, ".c");
        assert_eq!(
            objs.iter()
                .map(|o| o["n"].as_str().unwrap())
                .collect::<String>(),
            "cab"
        );
        sort_by_path(&mut objs, "{.n}");
        assert_eq!(
            objs.iter()
                .map(|o| o["n"].as_str().unwrap())
                .collect::<String>(),
            "abc"
        );
        let err = parse_output(Some("xml")).unwrap_err().to_string();
        assert!(
            err.contains("allowed formats are: custom-columns,json,jsonpath,name,wide,yaml"),
            "{err}"
        );
    }
}
