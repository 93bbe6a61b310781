//! The `Metrics` RPC (metrics.k8s.io): authorized as kube-apiserver authorizes the aggregated
//! group (`get`/`list` on `nodes`/`pods` of `metrics.k8s.io`), then the Nodes or Pods selected
//! are read from the registry and their nodes asked for usage down their tunnels, all at once,
//! each within `top::NODE_DEADLINE`. A node that does not answer is left out and warned about.

use std::collections::BTreeMap;

use corral_api::kinds;
use corral_api::object;
use corral_api::selector::{FieldSelector, LabelSelectorExpr};
use corral_proto as pb;
use futures::future::join_all;
use serde_json::Value;
use tonic::{Request, Response, Status};
use tracing::debug;

use super::{access, ApiService};
use crate::auth::Attributes;
use crate::registry::ApiError;
use crate::top::{self, Resource};

impl ApiService {
    pub(super) async fn top(
        &self,
        req: Request<pb::MetricsRequest>,
    ) -> Result<Response<pb::MetricsResponse>, Status> {
        let user = access::user_of(&req)?;
        let req = req.into_inner();
        let resource = Resource::parse(&req.resource).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "the server doesn't have a resource type {:?} in group {}",
                req.resource,
                top::GROUP
            ))
        })?;
        let namespace = match resource {
            Resource::Nodes => String::new(),
            Resource::Pods => req.namespace.clone(),
        };
        let verb = if req.name.is_empty() { "list" } else { "get" };
        let attrs = Attributes {
            path: String::new(),
            user,
            verb: verb.into(),
            api_group: top::GROUP.into(),
            resource: resource.plural().into(),
            subresource: String::new(),
            namespace: namespace.clone(),
            name: req.name.clone(),
        };
        access::check(self.authorizer.as_ref(), attrs).await?;
        let labels = LabelSelectorExpr::parse(&req.label_selector)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let info = match resource {
            Resource::Nodes => &kinds::NODES,
            Resource::Pods => &kinds::PODS,
        };
        let objects: Vec<Value> = if req.name.is_empty() {
            self.registry
                .list(info, &namespace, &labels, &FieldSelector::default())
                .await?
                .0
        } else {
            match self.registry.get(info, &namespace, &req.name).await {
                Ok(o) if labels.matches_object(&o) => vec![o],
                Ok(_) | Err(ApiError::NotFound { .. }) => {
                    return Err(resource.not_found(&req.name).into())
                }
                Err(e) => return Err(e.into()),
            }
        };
        // The node each object's figures come from.
        let mut by_node: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
        for o in &objects {
            let node = match resource {
                Resource::Nodes => object::name(o),
                Resource::Pods => object::str_at(o, "/spec/nodeName").unwrap_or(""),
            };
            if !node.is_empty() {
                by_node.entry(node.to_string()).or_default().push(o);
            }
        }
        let asked: Vec<&String> = by_node.keys().collect();
        let answers = join_all(
            asked
                .iter()
                .map(|n| self.tunnels.stats(n, top::NODE_DEADLINE)),
        )
        .await;
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let mut items = Vec::new();
        let mut failed = Vec::new();
        for (node, answer) in asked.iter().zip(answers) {
            let summary = match answer {
                Ok(s) => s,
                Err(e) => {
                    debug!(node = %node, error = %e, "no usage from node");
                    failed.push((node.to_string(), e.to_string()));
                    continue;
                }
            };
            let objs = &by_node[*node];
            match resource {
                Resource::Nodes => items.extend(
                    objs.iter()
                        .filter_map(|n| top::node_metrics(n, &summary, &now)),
                ),
                Resource::Pods => items.extend(top::pod_metrics(objs, &summary, &now)),
            }
        }
        items.sort_by(|a, b| {
            (object::namespace(a), object::name(a)).cmp(&(object::namespace(b), object::name(b)))
        });
        if !req.name.is_empty() && items.is_empty() {
            return Err(resource.not_found(&req.name).into());
        }
        let warnings: Vec<String> = top::unavailable_warning(asked.len(), &failed)
            .into_iter()
            .collect();
        let response = pb::MetricsResponse {
            items: items
                .iter()
                .map(|v| serde_json::to_vec(v).expect("JSON values encode"))
                .collect(),
            unavailable: failed.into_iter().map(|(n, _)| n).collect(),
        };
        Ok(crate::admission::respond(response, &warnings))
    }
}
