//! A command run inside a running container through containerd's task Exec API, as an exec
//! probe needs: the container's own process spec with other args, no stdio, exit code back.

use std::time::Duration;

use containerd_client::services::v1 as cs;
use corral_containerd::Client;

use crate::runtime::{Result, RuntimeError};

pub const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// Runs `command` in container `id`; returns its exit code. Past `timeout` the process is
/// killed and 137 is returned (a failure, as for any non-zero exit).
pub async fn exec(c: &Client, id: &str, command: &[String], timeout: Duration) -> Result<i32> {
    let mut process = container_process(c, id).await?;
    process["args"] = serde_json::json!(command);
    process["terminal"] = serde_json::json!(false);
    if let Some(p) = process.as_object_mut() {
        p.remove("consoleSize");
    }
    exec_process(c, id, process, timeout).await
}

/// The OCI process of container `id` (user, env, cwd, capabilities...): what a process
/// exec'd into it runs with, as CRI does, with only its args, terminal and size changed.
pub async fn container_process(c: &Client, id: &str) -> Result<serde_json::Value> {
    let container = c
        .containers()
        .get(c.req(cs::GetContainerRequest { id: id.to_string() }, None))
        .await
        .map_err(RuntimeError::grpc("get container", id))?
        .into_inner()
        .container
        .unwrap_or_default();
    let spec: serde_json::Value = container
        .spec
        .as_ref()
        .and_then(|s| serde_json::from_slice(&s.value).ok())
        .unwrap_or_default();
    Ok(spec
        .get("process")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({"cwd": "/", "user": {"uid": 0, "gid": 0}})))
}

async fn exec_process(
    c: &Client,
    id: &str,
    process: serde_json::Value,
    timeout: Duration,
) -> Result<i32> {
    let exec_id = format!("probe-{}", uuid::Uuid::new_v4().simple());
    let what = format!("{id} exec {exec_id}");
    c.tasks()
        .exec(c.req(
            cs::ExecProcessRequest {
                container_id: id.to_string(),
                exec_id: exec_id.clone(),
                // With no stdio at all the process gets closed descriptors and a plain
                // `cat` fails writing its output.
                stdout: "file:///dev/null".into(),
                stderr: "file:///dev/null".into(),
                terminal: false,
                spec: Some(prost_types::Any {
                    type_url: PROCESS_TYPE_URL.to_string(),
                    value: serde_json::to_vec(&process).unwrap_or_default(),
                }),
                ..Default::default()
            },
            None,
        ))
        .await
        .map_err(RuntimeError::grpc("exec", what.clone()))?;
    let run = async {
        c.tasks()
            .start(c.req(
                cs::StartRequest {
                    container_id: id.to_string(),
                    exec_id: exec_id.clone(),
                },
                None,
            ))
            .await
            .map_err(RuntimeError::grpc("start exec", what.clone()))?;
        let r = c
            .tasks()
            .wait(c.req(
                cs::WaitRequest {
                    container_id: id.to_string(),
                    exec_id: exec_id.clone(),
                },
                None,
            ))
            .await
            .map_err(RuntimeError::grpc("wait exec", what.clone()))?;
        Ok::<i32, RuntimeError>(r.into_inner().exit_status as i32)
    };
    let result = match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => {
            let _ = c
                .tasks()
                .kill(c.req(
                    cs::KillRequest {
                        container_id: id.to_string(),
                        exec_id: exec_id.clone(),
                        signal: nix::sys::signal::Signal::SIGKILL as u32,
                        all: false,
                    },
                    None,
                ))
                .await;
            let mut tasks = c.tasks();
            let reap = tasks.wait(c.req(
                cs::WaitRequest {
                    container_id: id.to_string(),
                    exec_id: exec_id.clone(),
                },
                None,
            ));
            let _ = tokio::time::timeout(Duration::from_secs(2), reap).await;
            Ok(137)
        }
    };
    // The exec process must be deleted or it stays in the shim.
    let _ = c
        .tasks()
        .delete_process(c.req(
            cs::DeleteProcessRequest {
                container_id: id.to_string(),
                exec_id,
            },
            None,
        ))
        .await;
    result
}
