//! The interactive RPCs (`Exec`, `Attach`, `PortForward`): authorizes the client's first
//! frame as Kubernetes does (`create` on `pods/exec`, `pods/attach`, `pods/portforward`),
//! finds the pod's node and joins the client's gRPC stream to a tunnel stream to its agent.

use std::pin::Pin;

use corral_api::kinds;
use corral_api::object;
use corral_proto as pb;
use futures::{Stream, StreamExt};
use pb::stream_frame::Msg;
use serde_json::Value;
use tonic::{Request, Response, Status, Streaming};

use super::{access, ApiService};
use crate::registry::ApiError;

pub type FrameStream = Pin<Box<dyn Stream<Item = Result<pb::StreamFrame, Status>> + Send>>;

/// Which RPC (or REST connect subresource) a stream came in on: its first frame must be of
/// the same kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Exec,
    Attach,
    PortForward,
}

impl Kind {
    fn subresource(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::Attach => "attach",
            Kind::PortForward => "portforward",
        }
    }
}

/// Every container name of a pod (regular, init and ephemeral), in spec order.
fn container_names(pod: &Value) -> Vec<String> {
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|field| {
            pod["spec"][field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str().map(String::from))
        })
        .collect()
}

/// The container a request names, or the pod's first when it names none (as kubectl and
/// the API server default it); a name the pod does not have is refused in the API server's
/// words.
fn container_of(pod: &Value, name: &str, requested: &str) -> Result<String, ApiError> {
    let names = container_names(pod);
    if requested.is_empty() {
        return names
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::BadRequest(format!("pod {name} has no containers")));
    }
    if names.iter().any(|n| n == requested) {
        Ok(requested.to_string())
    } else {
        Err(ApiError::BadRequest(format!(
            "container {requested} is not valid for pod {name}"
        )))
    }
}

/// The (namespace, pod) a first frame names, with the namespace defaulted; a frame of the
/// wrong kind or a request that cannot run is refused before anything reaches the agent.
fn target(kind: Kind, first: &mut pb::StreamFrame) -> Result<(String, String), ApiError> {
    let default_ns = |ns: &mut String| {
        if ns.is_empty() {
            *ns = "default".into();
        }
        ns.clone()
    };
    match (kind, &mut first.msg) {
        (Kind::Exec, Some(Msg::Exec(r))) => {
            if r.command.is_empty() {
                return Err(ApiError::BadRequest(
                    "you must specify at least one command for the container".into(),
                ));
            }
            Ok((default_ns(&mut r.namespace), r.pod.clone()))
        }
        (Kind::Attach, Some(Msg::Attach(r))) => Ok((default_ns(&mut r.namespace), r.pod.clone())),
        (Kind::PortForward, Some(Msg::PortForward(r))) => {
            if r.port == 0 || r.port > 65535 {
                return Err(ApiError::BadRequest(format!(
                    "invalid port {}: must be between 1 and 65535",
                    r.port
                )));
            }
            Ok((default_ns(&mut r.namespace), r.pod.clone()))
        }
        _ => Err(ApiError::BadRequest(format!(
            "the first frame of a {} stream must be its request",
            kind.subresource()
        ))),
    }
}

/// Authorizes a stream's first frame for `user` and finds the pod's node; returns the node
/// and the frame with its namespace and container filled in.
async fn prepare(
    svc: &ApiService,
    user: &crate::auth::UserInfo,
    kind: Kind,
    mut first: pb::StreamFrame,
) -> Result<(String, pb::StreamFrame), Status> {
    let (ns, name) = target(kind, &mut first)?;
    svc.check(user, "create", &kinds::PODS, kind.subresource(), &ns, &name)
        .await?;
    let pod = svc.registry.get(&kinds::PODS, &ns, &name).await?;
    let node = object::str_at(&pod, "/spec/nodeName")
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        return Err(ApiError::Precondition(format!(
            "pod {name:?} in namespace {ns:?} is not scheduled to a node yet"
        ))
        .into());
    }
    let phase = object::str_at(&pod, "/status/phase").unwrap_or("");
    if kind != Kind::PortForward && (phase == "Succeeded" || phase == "Failed") {
        return Err(ApiError::BadRequest(format!(
            "cannot {} a container in a completed pod; current phase is {phase}",
            if kind == Kind::Exec {
                "exec into"
            } else {
                "attach to"
            }
        ))
        .into());
    }
    match &mut first.msg {
        Some(Msg::Exec(r)) => r.container = container_of(&pod, &name, &r.container)?,
        Some(Msg::Attach(r)) => r.container = container_of(&pod, &name, &r.container)?,
        _ => {}
    }
    Ok((node, first))
}

/// Authorizes `first` for `user` and opens its stream to the pod's agent: frames sent on the
/// returned sender go down to the pod, the returned stream carries the pod side's frames
/// (ending with a `StreamEnd`). The gRPC RPCs and the REST connect endpoints both come here.
pub(crate) async fn join(
    svc: &ApiService,
    user: &crate::auth::UserInfo,
    kind: Kind,
    first: pb::StreamFrame,
) -> Result<(tokio::sync::mpsc::Sender<pb::StreamFrame>, FrameStream), Status> {
    let (node, first) = prepare(svc, user, kind, first).await?;
    let (to_agent, from_agent) = svc.tunnels.stream(&node, first).await?;
    Ok((
        to_agent,
        Box::pin(from_agent.map(|f| f.map_err(Status::from))),
    ))
}

/// Whether `user` may open `kind` streams to pod `ns/name`, and the pod exists: checked once
/// before a session that opens its streams later (port-forward), with the same rule
/// [`join`] applies to each.
pub(crate) async fn authorize(
    svc: &ApiService,
    user: &crate::auth::UserInfo,
    kind: Kind,
    ns: &str,
    name: &str,
) -> Result<(), Status> {
    svc.check(user, "create", &kinds::PODS, kind.subresource(), ns, name)
        .await?;
    svc.registry.get(&kinds::PODS, ns, name).await?;
    Ok(())
}

pub(super) async fn open(
    svc: &ApiService,
    req: Request<Streaming<pb::StreamFrame>>,
    kind: Kind,
) -> Result<Response<FrameStream>, Status> {
    let user = access::user_of(&req)?;
    let mut input = req.into_inner();
    let first = input
        .message()
        .await?
        .ok_or_else(|| ApiError::BadRequest("the stream ended before its request".into()))?;
    let (to_agent, from_agent) = join(svc, &user, kind, first).await?;
    // The client's frames, relayed as they come; the client closing its side is not the end
    // of the stream (it may still read), a client that goes away drops the response below.
    tokio::spawn(async move {
        while let Ok(Some(frame)) = input.message().await {
            if to_agent.send(frame).await.is_err() {
                break;
            }
        }
    });
    Ok(Response::new(from_agent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    use crate::auth::{authn::admin, UserInfo, AUTHENTICATED};
    use crate::registry::{Registry, ServiceAllocator};
    use crate::store::sqlite::SqliteStore;
    use crate::tunnel::Tunnels;

    async fn service(dir: &std::path::Path) -> ApiService {
        let store = SqliteStore::open(dir.join("db")).unwrap();
        let services = ServiceAllocator::new("10.43.0.0/16").unwrap();
        let registry = Arc::new(Registry::new(Arc::new(store), Default::default(), services));
        registry.bootstrap().await.unwrap();
        for (name, node) in [("web", "n1"), ("pending", "")] {
            let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"containers": [{"name": "app", "image": "busybox:1"}]}});
            if !node.is_empty() {
                pod["spec"]["nodeName"] = node.into();
            }
            registry
                .create(&kinds::PODS, "default", pod, false)
                .await
                .unwrap();
        }
        ApiService::new(registry, Tunnels::default())
    }

    fn exec_of(pod: &str) -> pb::StreamFrame {
        pb::StreamFrame {
            msg: Some(Msg::Exec(pb::ExecRequest {
                pod: pod.into(),
                command: vec!["true".into()],
                ..Default::default()
            })),
        }
    }

    #[tokio::test]
    async fn a_stream_needs_create_on_the_pods_subresource_and_a_scheduled_pod() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path()).await;
        let (node, first) = prepare(&svc, &admin(), Kind::Exec, exec_of("web"))
            .await
            .unwrap();
        assert_eq!(node, "n1");
        match first.msg {
            Some(Msg::Exec(r)) => assert_eq!(
                (r.namespace.as_str(), r.container.as_str()),
                ("default", "app")
            ),
            other => panic!("{other:?}"),
        }
        let nobody = UserInfo::new("nobody", [AUTHENTICATED]);
        for (kind, first, sub) in [
            (Kind::Exec, exec_of("web"), "pods/exec"),
            (
                Kind::PortForward,
                pb::StreamFrame {
                    msg: Some(Msg::PortForward(pb::PortForwardRequest {
                        pod: "web".into(),
                        port: 80,
                        ..Default::default()
                    })),
                },
                "pods/portforward",
            ),
        ] {
            let err = prepare(&svc, &nobody, kind, first).await.unwrap_err();
            assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
            assert!(
                err.message()
                    .contains(&format!("User \"nobody\" cannot create resource \"{sub}\"")),
                "{}",
                err.message()
            );
        }
        let err = prepare(&svc, &admin(), Kind::Exec, exec_of("pending"))
            .await
            .unwrap_err();
        assert!(err.message().contains("not scheduled"), "{}", err.message());
        let err = prepare(&svc, &admin(), Kind::Exec, exec_of("nope"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    }

    #[test]
    fn a_request_names_a_container_of_the_pod_or_gets_its_first() {
        let pod = json!({"spec": {"initContainers": [{"name": "init"}],
            "containers": [{"name": "app"}, {"name": "side"}]}});
        let cases = [
            ("", Ok("app")),
            ("side", Ok("side")),
            ("init", Ok("init")),
            ("nope", Err("container nope is not valid for pod web")),
        ];
        for (requested, want) in cases {
            let got = container_of(&pod, "web", requested).map_err(|e| e.to_string());
            match want {
                Ok(w) => assert_eq!(got.as_deref(), Ok(w), "{requested}"),
                Err(w) => assert!(got.unwrap_err().contains(w), "{requested}"),
            }
        }
    }

    #[test]
    fn a_first_frame_of_another_kind_or_without_a_command_is_refused() {
        let exec = |command: Vec<String>| pb::StreamFrame {
            msg: Some(Msg::Exec(pb::ExecRequest {
                pod: "web".into(),
                command,
                ..Default::default()
            })),
        };
        let mut ok = exec(vec!["true".into()]);
        assert_eq!(
            target(Kind::Exec, &mut ok).unwrap(),
            ("default".into(), "web".into())
        );
        assert!(target(Kind::Attach, &mut exec(vec!["true".into()])).is_err());
        let err = target(Kind::Exec, &mut exec(vec![])).unwrap_err();
        assert!(err.to_string().contains("at least one command"), "{err}");
        let mut pf = pb::StreamFrame {
            msg: Some(Msg::PortForward(pb::PortForwardRequest {
                pod: "web".into(),
                port: 70000,
                ..Default::default()
            })),
        };
        assert!(target(Kind::PortForward, &mut pf).is_err());
    }
}
