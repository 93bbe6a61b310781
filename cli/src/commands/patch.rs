//! `corral patch` (JSON merge patch, applied client-side with a compare-and-swap update) and
//! `corral set image`.

use corral_api::kinds::ResourceInfo;
use corral_api::object;
use serde_json::Value;

use super::{errln, outln, single_target, Ctx};
use crate::args::PatchArgs;
use crate::error::{local, CliError, Result};

/// RFC 7386: objects merge key by key, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => {
            let mut p = p.clone();
            // A patch object applied to a non-object starts from an empty object.
            if let Value::Object(_) = p {
                let mut empty = Value::Object(Default::default());
                merge_patch(&mut empty, &p);
                p = empty;
            }
            *t = p;
        }
    }
}

/// Read, change, write with the read's resourceVersion; retried on conflict. Returns whether
/// anything changed.
pub async fn modify(
    ctx: &Ctx,
    info: &ResourceInfo,
    name: &str,
    mut f: impl FnMut(&mut Value) -> std::result::Result<(), String>,
) -> Result<bool> {
    let ns = ctx.ns_for(info);
    for _ in 0..10 {
        let before = ctx
            .client
            .get_value(info, &ns, name)
            .await
            .map_err(|e| ctx.about(info, name, &e))?;
        let mut obj = before.clone();
        f(&mut obj).map_err(local)?;
        if obj == before {
            return Ok(false);
        }
        match ctx.client.update_value(info, &ns, &obj, false).await {
            Ok(_) => return Ok(true),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(ctx.about(info, name, &e)),
        }
    }
    Err(local(format!(
        "{}/{name}: too many conflicting updates, try again",
        info.qualified()
    )))
}

pub async fn run(ctx: &Ctx, a: &PatchArgs) -> Result<()> {
    let (info, name) = single_target(&a.resources)?;
    if !matches!(a.patch_type.as_str(), "merge" | "strategic") {
        return Err(local(format!(
            "--type must be \"merge\" or \"strategic\", not {:?}",
            a.patch_type
        )));
    }
    let patch: Value = serde_yaml::from_str(&a.patch)
        .map_err(|e| local(format!("unable to parse {:?}: {e}", a.patch)))?;
    if !patch.is_object() {
        return Err(local("the patch must be a JSON object"));
    }
    let changed = modify(ctx, info, &name, |obj| {
        merge_patch(obj, &patch);
        Ok(())
    })
    .await?;
    let note = if changed {
        "patched"
    } else {
        "patched (no change)"
    };
    outln(&format!("{}/{name} {note}", info.qualified()))
}

/// `corral edit`: the object as YAML in an editor; saved back with its resourceVersion, so
/// a concurrent change is reported as a conflict rather than overwritten.
pub async fn edit(ctx: &Ctx, args: &[String]) -> Result<()> {
    let (info, name) = single_target(args)?;
    let ns = ctx.ns_for(info);
    let obj = ctx
        .client
        .get_value(info, &ns, &name)
        .await
        .map_err(|e| ctx.about(info, &name, &e))?;
    let original = crate::printers::output::yaml(&obj);
    let dir = std::env::temp_dir().join(format!("corral-edit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| local(format!("creating {}: {e}", dir.display())))?;
    let path = dir.join(format!("{}-{name}.yaml", info.singular));
    let result = edit_file(&path, &original);
    let _ = std::fs::remove_dir_all(&dir);
    let edited = result?;
    if edited == original {
        errln("Edit cancelled, no changes made.");
        return Ok(());
    }
    let src = super::Source {
        name: path.display().to_string(),
        text: edited,
    };
    let mut manifests =
        super::decode_source(&src).map_err(|errors| CliError::Message(errors.join("\n")))?;
    if manifests.len() != 1
        || manifests[0].info != info
        || object::name(&manifests[0].object) != name
    {
        return Err(local(format!(
            "the edited file must still hold exactly {}/{name}",
            info.qualified()
        )));
    }
    let edited = manifests.remove(0).object;
    ctx.client
        .update_value(info, &ns, &edited, false)
        .await
        .map_err(|e| ctx.about(info, &name, &e))?;
    outln(&format!("{}/{name} edited", info.qualified()))
}

fn edit_file(path: &std::path::Path, text: &str) -> Result<String> {
    std::fs::write(path, text).map_err(|e| local(format!("writing {}: {e}", path.display())))?;
    let editor = std::env::var("CORRAL_EDITOR")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    // The editor may carry arguments (`code --wait`); run it through the shell as kubectl does.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(path)
        .status()
        .map_err(|e| local(format!("running the editor {editor:?}: {e}")))?;
    if !status.success() {
        return Err(local(format!("the editor {editor:?} exited with {status}")));
    }
    std::fs::read_to_string(path).map_err(|e| local(format!("reading {}: {e}", path.display())))
}

/// The pod spec inside an object: a Pod's own, or a controller's template.
fn pod_spec(obj: &mut Value) -> Option<&mut Value> {
    if obj.get("kind").and_then(Value::as_str) == Some("Pod") {
        obj.get_mut("spec")
    } else {
        obj.pointer_mut("/spec/template/spec")
    }
}

pub async fn set_image(ctx: &Ctx, args: &[String]) -> Result<()> {
    let (targets, pairs): (Vec<String>, Vec<String>) =
        args.iter().cloned().partition(|a| !a.contains('='));
    if pairs.is_empty() {
        return Err(local("at least one CONTAINER=IMAGE pair is required"));
    }
    let (info, name) = single_target(&targets)?;
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .filter_map(|p| {
            p.split_once('=')
                .map(|(c, i)| (c.to_string(), i.to_string()))
        })
        .collect();
    let changed = modify(ctx, info, &name, |obj| {
        let spec = pod_spec(obj).ok_or("the object has no pod template")?;
        for (container, image) in &pairs {
            let mut found = false;
            for key in ["containers", "initContainers"] {
                for c in spec
                    .get_mut(key)
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if container == "*" || c.get("name").and_then(Value::as_str) == Some(container)
                    {
                        c["image"] = Value::String(image.clone());
                        found = true;
                    }
                }
            }
            if !found {
                return Err(format!("unable to find container named {container:?}"));
            }
        }
        Ok(())
    })
    .await?;
    if changed {
        outln(&format!("{}/{name} image updated", info.qualified()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(
            &mut doc,
            &json!({"a": "z", "c": {"f": null}, "l": [3], "n": {"x": 1}}),
        );
        assert_eq!(
            doc,
            json!({"a": "z", "c": {"d": "e"}, "l": [3], "n": {"x": 1}})
        );
        let mut scalar = json!(1);
        merge_patch(&mut scalar, &json!({"a": null, "b": 2}));
        assert_eq!(scalar, json!({"b": 2}));
    }
}
