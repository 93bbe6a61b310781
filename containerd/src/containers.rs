//! Container records and their tasks as containerd reports them, and their teardown: listing
//! with task state, signalling every process, and removing task, record and rootfs snapshot.
//! Creating and starting containers is the agent's (it owns the OCI spec and the logs).

use std::collections::HashMap;
use std::time::Duration;

use containerd_client::services::v1 as cs;
use containerd_client::services::v1::snapshots as ss;
use containerd_client::types::v1::Status as ProcStatus;
use jiff::Timestamp;

use crate::{Client, Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum TaskState {
    /// Container record exists, no task (created, or its task was deleted).
    Created,
    Running {
        pid: u32,
    },
    Exited {
        exit_code: i32,
        finished_at: Timestamp,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    pub labels: HashMap<String, String>,
    pub state: TaskState,
}

/// How a task ended, as containerd's Wait reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskExit {
    pub exit_code: i32,
    pub finished_at: Timestamp,
}

/// A containerd timestamp, or now when it is missing or out of range.
fn timestamp(t: Option<prost_types::Timestamp>) -> Timestamp {
    t.and_then(|t| Timestamp::new(t.seconds, t.nanos).ok())
        .unwrap_or_else(Timestamp::now)
}

fn not_found_ok(
    r: std::result::Result<(), tonic::Status>,
) -> std::result::Result<(), tonic::Status> {
    match r {
        Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
        other => other,
    }
}

impl Client {
    /// The container's task process, if it has a task.
    async fn task(&self, id: &str) -> Result<Option<containerd_client::types::v1::Process>> {
        match self
            .tasks()
            .get(self.req(
                cs::GetRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                },
                None,
            ))
            .await
        {
            Ok(r) => Ok(r.into_inner().process),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(Error::grpc("get task", id)(s)),
        }
    }

    /// Waits for the container's task to exit.
    pub async fn wait_task(&self, id: &str) -> Result<TaskExit> {
        let r = self
            .tasks()
            .wait(self.req(
                cs::WaitRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                },
                None,
            ))
            .await
            .map_err(Error::grpc("wait task", id))?
            .into_inner();
        Ok(TaskExit {
            exit_code: r.exit_status as i32,
            finished_at: timestamp(r.exited_at),
        })
    }

    /// Sends a signal to every process of the container; a missing task is not an error.
    pub async fn kill(&self, id: &str, signal: i32) -> Result<()> {
        let r = self
            .tasks()
            .kill(self.req(
                cs::KillRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                    signal: signal as u32,
                    all: true,
                },
                None,
            ))
            .await
            .map(|_| ());
        not_found_ok(r).map_err(Error::grpc("kill task", id))
    }

    /// Removes the task (killing it first), the container and its snapshot; missing pieces are
    /// not an error.
    pub async fn remove(&self, id: &str) -> Result<()> {
        if let Some(task) = self.task(id).await? {
            if task.status != ProcStatus::Stopped as i32 {
                self.kill(id, nix::sys::signal::Signal::SIGKILL as i32)
                    .await?;
                let _ = tokio::time::timeout(Duration::from_secs(10), self.wait_task(id)).await;
            }
            let r = self
                .tasks()
                .delete(self.req(
                    cs::DeleteTaskRequest {
                        container_id: id.to_string(),
                    },
                    None,
                ))
                .await
                .map(|_| ());
            not_found_ok(r).map_err(Error::grpc("delete task", id))?;
        }
        let r = self
            .containers()
            .delete(self.req(cs::DeleteContainerRequest { id: id.to_string() }, None))
            .await
            .map(|_| ());
        not_found_ok(r).map_err(Error::grpc("delete container", id))?;
        let r = self
            .snapshots()
            .remove(self.req(
                ss::RemoveSnapshotRequest {
                    snapshotter: self.snapshotter.clone(),
                    key: id.to_string(),
                },
                None,
            ))
            .await
            .map(|_| ());
        not_found_ok(r).map_err(Error::grpc("remove snapshot", id))
    }

    /// Every container in the namespace, with its task state.
    pub async fn list(&self) -> Result<Vec<ContainerInfo>> {
        let containers = self
            .containers()
            .list(self.req(cs::ListContainersRequest { filters: vec![] }, None))
            .await
            .map_err(Error::grpc("list containers", ""))?
            .into_inner()
            .containers;
        let tasks = self
            .tasks()
            .list(self.req(
                cs::ListTasksRequest {
                    filter: String::new(),
                },
                None,
            ))
            .await
            .map_err(Error::grpc("list tasks", ""))?
            .into_inner()
            .tasks;
        let tasks: HashMap<String, _> = tasks.into_iter().map(|t| (t.id.clone(), t)).collect();
        Ok(containers
            .into_iter()
            .map(|c| {
                let state = match tasks.get(&c.id) {
                    None => TaskState::Created,
                    Some(t) if t.status == ProcStatus::Stopped as i32 => TaskState::Exited {
                        exit_code: t.exit_status as i32,
                        finished_at: timestamp(t.exited_at),
                    },
                    Some(t) if t.status == ProcStatus::Created as i32 => TaskState::Created,
                    Some(t) => TaskState::Running { pid: t.pid },
                };
                ContainerInfo {
                    id: c.id,
                    labels: c.labels,
                    state,
                }
            })
            .collect())
    }
}
