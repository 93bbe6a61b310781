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

/// Which RPC a stream came in on: its first frame must be of the same kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Kind {
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

pub(super) async fn open(
    svc: &ApiService,
    req: Request<Streaming<pb::StreamFrame>>,
    kind: Kind,
) -> Result<Response<FrameStream>, Status> {
    let user = access::user_of(&req)?;
    let mut input = req.into_inner();
    let mut first = input
        .message()
        .await?
        .ok_or_else(|| ApiError::BadRequest("the stream ended before its request".into()))?;
    let (ns, name) = target(kind, &mut first)?;
    svc.check(
        &user,
        "create",
        &kinds::PODS,
        kind.subresource(),
        &ns,
        &name,
    )
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
    let (to_agent, from_agent) = svc.tunnels.stream(&node, first).await?;
    // The client's frames, relayed as they come; the client closing its side is not the end
    // of the stream (it may still read), a client that goes away drops the response below.
    tokio::spawn(async move {
        while let Ok(Some(frame)) = input.message().await {
            if to_agent.send(frame).await.is_err() {
                break;
            }
        }
    });
    Ok(Response::new(Box::pin(
        from_agent.map(|f| f.map_err(Status::from)),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
