//! Starting containers: which containers are due (`state::decide`), the sandbox made for a new
//! pod while its first containers are created, and each attempt's image (pull policy), spec,
//! container and task, then its start (hooks and probes follow in `hooks` and `probes`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use tracing::{debug, info, warn};

use super::waiting::{self, Retry};
use super::Worker;
use crate::pod::events::{message, reason};
use crate::pod::state::{decide, on_failure, Current, Decision, RestartPolicy};
use crate::runtime::{self as rt, CreateContainer};
use crate::spec;

/// A container record made for the next attempt, not started yet.
pub(super) struct Created {
    id: String,
    attempt: u32,
    image_id: String,
    /// The task made alongside the network setup (or why making it failed); None when
    /// `launch` makes it.
    task: Option<Result<(), rt::RuntimeError>>,
}

/// Why an attempt could not be made: a Kubernetes waiting reason and message.
pub(super) struct Failure {
    reason: &'static str,
    message: String,
    image_id: String,
    retry: Retry,
}

fn wants_pod_ip(c: &Container) -> bool {
    c.env.iter().flatten().any(|e| {
        e.value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .is_some_and(|f| f.field_path.starts_with("status.podIP"))
    })
}

impl Worker {
    /// Sets the sandbox up if the pod has none yet, then starts every container that is due.
    pub(super) async fn sync(&mut self) {
        let now = self.now();
        if self.start_time.is_none() {
            self.start_time = Some(now);
        }
        // A pod that finished (as posted before an agent restart) is never started again.
        let phase = self.pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let finished = matches!(phase, Some("Succeeded") | Some("Failed"));
        let policy = RestartPolicy::of(&self.pod);
        let to_start: Vec<Container> = self
            .containers()
            .into_iter()
            .filter(|c| {
                let rec = self.records.get(&c.name).cloned().unwrap_or_default();
                !(finished && rec.current.is_none()) && decide(&rec, policy, now) == Decision::Start
            })
            .collect();
        let host_network = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let netns = (!host_network).then(|| self.ctx.network.netns_path(&self.uid));
        if self.net.is_none() {
            if self.sandbox_retry.is_some_and(|t| t > now) {
                return self.mark_creating();
            }
            // For a new pod, containers are created while CNI runs (their spec only needs
            // the netns path), unless one wants its own IP in its environment.
            let overlap = !to_start.is_empty() && !to_start.iter().any(wants_pod_ip);
            let (net, created) = if overlap {
                // The tasks too: `runc create` joins the namespace and waits; nothing of the
                // image runs before `launch` starts it, after the network is up.
                let creates = futures::future::join_all(
                    to_start
                        .iter()
                        .map(|c| self.create_attempt(c, netns.clone(), None, true)),
                );
                let t0 = std::time::Instant::now();
                let net = async {
                    let r = self.setup_sandbox().await;
                    debug!(ms = t0.elapsed().as_millis() as u64, "sandbox ready");
                    r
                };
                let creates = async {
                    let r = creates.await;
                    debug!(ms = t0.elapsed().as_millis() as u64, "containers created");
                    r
                };
                let (net, created) = tokio::join!(net, creates);
                (net, Some(created))
            } else {
                (self.setup_sandbox().await, None)
            };
            match net {
                Ok(net) => {
                    self.net = Some(net);
                    self.sandbox_error = None;
                    self.sandbox_retry = None;
                }
                Err(message) => {
                    warn!(error = %message, "pod sandbox setup failed");
                    for c in created.into_iter().flatten().flatten() {
                        let _ = self.ctx.runtime.remove(&c.id).await;
                    }
                    self.sandbox_error = Some(message);
                    self.sandbox_retry = Some(now + Duration::from_secs(2));
                    return self.mark_creating();
                }
            }
            if let Some(created) = created {
                for (c, r) in to_start.iter().zip(created) {
                    match r {
                        Ok(created) => self.launch(c, created).await,
                        Err(f) => self.record_failure(c, f),
                    }
                }
                return;
            }
        }
        let pod_ip = self.net.as_ref().map(|n| n.ip.clone());
        for c in &to_start {
            match self
                .create_attempt(c, netns.clone(), pod_ip.clone(), false)
                .await
            {
                Ok(created) => self.launch(c, created).await,
                Err(f) => self.record_failure(c, f),
            }
        }
    }

    /// The image of `c`, pulled if its policy says so, and the Pulled event's message (recorded
    /// once the attempt's volumes are ready, so a pod waiting for them repeats no event).
    async fn ensure_image(
        &self,
        c: &Container,
    ) -> Result<(rt::ImageInfo, String), (&'static str, String)> {
        let image = c.image.clone().unwrap_or_default();
        if image.is_empty() {
            return Err((
                "InvalidImageName",
                format!("container {:?}: image is empty", c.name),
            ));
        }
        let policy = corral_api::rules::pull_policy::effective_pull_policy(
            c.image_pull_policy.as_deref(),
            &image,
        )
        .to_string();
        let present = self
            .ctx
            .runtime
            .image(&image)
            .await
            .map_err(|e| ("ErrImagePull", e.to_string()))?;
        let events = self.pod_events();
        match (policy.as_str(), present) {
            ("Never", Some(i)) | ("IfNotPresent", Some(i)) => {
                Ok((i, message::already_present(&image)))
            }
            ("Never", None) => {
                let m =
                    format!("container image {image:?} is not present with pull policy of Never");
                events.warning(
                    &c.name,
                    "ErrImageNeverPull",
                    &format!("Container image {image:?} is not present with pull policy of Never"),
                );
                Err(("ErrImageNeverPull", m))
            }
            _ => {
                info!(%image, "pulling image");
                events.normal(&c.name, reason::PULLING, &message::pulling(&image));
                let t0 = std::time::Instant::now();
                match self.ctx.runtime.pull(&image).await {
                    Ok(i) => Ok((i, message::pulled(&image, t0.elapsed()))),
                    Err(e) => {
                        let m = message::pull_failed(&image, &e.to_string());
                        events.warning(&c.name, reason::FAILED, &m);
                        events.warning(&c.name, reason::FAILED, &message::error("ErrImagePull"));
                        Err((
                            "ErrImagePull",
                            format!("failed to pull image {image:?}: {e}"),
                        ))
                    }
                }
            }
        }
    }

    /// Image, spec and container record for the next attempt of `c`, and its (unstarted) task
    /// when `with_task`. Runs alongside the network setup for a new pod, so it only needs the
    /// netns path.
    async fn create_attempt(
        &self,
        c: &Container,
        netns: Option<PathBuf>,
        pod_ip: Option<String>,
        with_task: bool,
    ) -> Result<Created, Failure> {
        // Service variables of the services that exist now, fetched while the image is looked
        // up; the pod's own env wins over them. An unreachable API server must not keep a
        // crashed container from restarting.
        let (image, service_vars, config_data) = tokio::join!(
            self.ensure_image(c),
            self.ctx.api.service_env(&self.pod),
            self.config_data()
        );
        let (image, pulled) = image.map_err(|(reason, message)| Failure {
            reason,
            message,
            image_id: String::new(),
            retry: Retry::Backoff,
        })?;
        let fail = |reason: &'static str, message: String| Failure {
            reason,
            message,
            image_id: image.id.clone(),
            retry: Retry::Backoff,
        };
        // Missing objects: wait for them to appear.
        let wait = |reason: &'static str, message: String| Failure {
            retry: Retry::Soon,
            ..fail(reason, message)
        };
        let rec = self.records.get(&c.name).cloned().unwrap_or_default();
        let attempt = if rec.current.is_some() {
            rec.attempt + 1
        } else {
            rec.attempt
        };
        let id = format!("{}-{}-{}", self.uid, c.name, attempt);
        let mut config = image.config.clone();
        match service_vars {
            Ok(vars) => config.env.extend(vars),
            Err(e) => warn!(container = %c.name, error = %e, "starting without service variables"),
        }
        let config_data = config_data.map_err(|m| fail("CreateContainerConfigError", m))?;
        // kubelet keeps a pod whose volumes cannot be set up in ContainerCreating.
        let volume_dirs = self
            .volume_dirs(&config_data)
            .await
            .map_err(|m| wait("ContainerCreating", m))?;
        let config_env = crate::configdata::container_env(c, &config_data)
            .map_err(|m| wait("CreateContainerConfigError", m))?;
        self.pod_events().normal(&c.name, reason::PULLED, &pulled);
        let dir = self.ctx.pod_dir(&self.uid);
        let input = spec::SpecInput {
            pod: &self.pod,
            container: c,
            image: &config,
            container_id: &id,
            netns_path: netns,
            hosts_file: dir.join("hosts"),
            resolv_file: dir.join("resolv.conf"),
            hostname_file: dir.join("hostname"),
            volume_dirs,
            config_env,
            pod_ip,
            node_name: self.ctx.node_name.clone(),
            host_ip: self.ctx.node_ip.clone(),
            nofile: self.ctx.nofile,
        };
        let oci =
            spec::build(&input).map_err(|e| fail("CreateContainerConfigError", e.to_string()))?;
        let labels = HashMap::from([
            (rt::LABEL_POD_UID.to_string(), self.uid.clone()),
            (
                rt::LABEL_POD_NAME.to_string(),
                self.pod.metadata.name.clone().unwrap_or_default(),
            ),
            (
                rt::LABEL_POD_NAMESPACE.to_string(),
                self.pod.metadata.namespace.clone().unwrap_or_default(),
            ),
            (rt::LABEL_CONTAINER_NAME.to_string(), c.name.clone()),
            (rt::LABEL_ATTEMPT.to_string(), attempt.to_string()),
            (rt::LABEL_STARTED_AT.to_string(), self.now().to_string()),
        ]);
        let create = CreateContainer {
            id: id.clone(),
            image: image.reference.clone(),
            spec: oci,
            labels,
            log_path: self.ctx.log_path(&self.uid, &c.name, attempt),
        };
        if let Err(e) = self.ctx.runtime.create(&create).await {
            // A leftover from a crash between create and start blocks the id: retry once.
            let _ = self.ctx.runtime.remove(&id).await;
            self.ctx
                .runtime
                .create(&create)
                .await
                .map_err(|_| fail("CreateContainerError", e.to_string()))?;
        }
        self.pod_events()
            .normal(&c.name, reason::CREATED, &message::created(&c.name));
        let task = if with_task {
            Some(self.ctx.runtime.create_task(&id).await)
        } else {
            None
        };
        Ok(Created {
            id,
            attempt,
            image_id: image.id,
            task,
        })
    }

    fn record_failure(&mut self, c: &Container, f: Failure) {
        let now = self.now();
        let backoff = self.ctx.backoff;
        let events = self.pod_events();
        if f.retry == Retry::Soon {
            // Waiting for a claim, ConfigMap or Secret: looked at again soon, reported as
            // kubelet does (FailedMount on the pod for volumes, Failed on the container for
            // its env) at growing intervals, so the retries aggregate into one event.
            let (key, reason, text) = if f.reason == "ContainerCreating" {
                (String::new(), reason::FAILED_MOUNT, f.message.clone())
            } else {
                (c.name.clone(), reason::FAILED, message::error(&f.message))
            };
            if let Some(r) = waiting::mount_report(self.reported.get(&key), &text, now) {
                info!(container = %c.name, reason = f.reason, message = %f.message, "waiting for volumes or config objects");
                if key.is_empty() {
                    events.pod_warning(reason, &text);
                } else {
                    events.warning(&c.name, reason, &text);
                }
                self.reported.insert(key, r);
            }
            let rec = self.records.entry(c.name.clone()).or_default();
            if !f.image_id.is_empty() {
                rec.image_id = f.image_id;
            }
            return waiting::wait_for_sources(rec, f.reason, f.message, now);
        }
        let rec = self.records.entry(c.name.clone()).or_default();
        let reason = if f.reason == "ErrImagePull" && rec.pull_failures > 0 {
            "ImagePullBackOff"
        } else {
            f.reason
        };
        if f.reason == "ErrImagePull" {
            rec.pull_failures += 1;
            if reason == "ImagePullBackOff" {
                let image = c.image.clone().unwrap_or_default();
                events.normal(&c.name, reason::BACK_OFF, &message::pull_back_off(&image));
            }
        } else if !matches!(f.reason, "ErrImageNeverPull" | "InvalidImageName") {
            events.warning(&c.name, reason::FAILED, &message::error(&f.message));
        }
        if !f.image_id.is_empty() {
            rec.image_id = f.image_id;
        }
        warn!(container = %c.name, %reason, message = %f.message, "container did not start");
        on_failure(rec, reason, f.message, now, &backoff);
    }

    /// Starts a created attempt and makes it the container's current one.
    async fn launch(&mut self, c: &Container, created: Created) {
        let Created {
            id,
            attempt,
            image_id,
            task,
        } = created;
        // A crash here leaves a created container (and, for a new pod, its created task)
        // that the next agent finds in state Created: it removes it and starts afresh.
        fail::fail_point!("agent::container-created");
        let started_at = self.now();
        let started = match task {
            None => self.ctx.runtime.start(&id).await,
            Some(Ok(())) => self.ctx.runtime.start_task(&id).await,
            Some(Err(e)) => Err(e),
        };
        if let Err(e) = started {
            let _ = self.ctx.runtime.remove(&id).await;
            return self.record_failure(
                c,
                Failure {
                    reason: "RunContainerError",
                    message: e.to_string(),
                    image_id,
                    retry: Retry::Backoff,
                },
            );
        }
        self.pod_events()
            .normal(&c.name, reason::STARTED, &message::started(&c.name));
        info!(container = %c.name, %id, attempt, start_ms = (self.now().duration_since(started_at).as_millis()) as u64, "container started");
        let rec = self.records.entry(c.name.clone()).or_default();
        // The exited attempt becomes lastState; the one before it is removed.
        let stale = rec.last.as_ref().map(|t| t.container_id.clone());
        if let Some(Current::Exited(t)) = rec.current.take() {
            rec.last = Some(t);
        }
        rec.id = Some(id.clone());
        rec.attempt = attempt;
        rec.current = Some(Current::Running { started_at });
        rec.waiting = None;
        rec.pull_failures = 0;
        rec.image_id = image_id;
        if let Some(stale) = stale.filter(|s| *s != id) {
            let rt = self.ctx.runtime.clone();
            tokio::spawn(async move {
                let _ = rt.remove(&stale).await;
            });
        }
        // Probes start once the postStart hook has passed.
        if !self.start_post_start(c, &id) {
            self.start_probers(c, &id);
        }
        self.spawn_waiter(c.name.clone(), id);
    }
}
