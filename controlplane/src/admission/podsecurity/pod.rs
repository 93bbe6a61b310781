//! The pod as the checks see it: its metadata, its spec, and every container (init,
//! regular, ephemeral, in Kubernetes' visiting order) with its security context; and the
//! wording helpers the checks share (`container "a"`, `containers "a", "b"`).

use k8s_openapi::api::core::v1::{ContainerPort, PodSpec, SecurityContext};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub struct ContainerView<'a> {
    pub name: &'a str,
    pub security: Option<&'a SecurityContext>,
    pub ports: &'a [ContainerPort],
}

pub struct PodView<'a> {
    pub meta: &'a ObjectMeta,
    pub spec: &'a PodSpec,
    pub containers: Vec<ContainerView<'a>>,
}

impl<'a> PodView<'a> {
    pub fn new(meta: &'a ObjectMeta, spec: &'a PodSpec) -> Self {
        let mut containers = Vec::new();
        for c in spec.init_containers.iter().flatten() {
            containers.push(ContainerView {
                name: &c.name,
                security: c.security_context.as_ref(),
                ports: c.ports.as_deref().unwrap_or_default(),
            });
        }
        for c in &spec.containers {
            containers.push(ContainerView {
                name: &c.name,
                security: c.security_context.as_ref(),
                ports: c.ports.as_deref().unwrap_or_default(),
            });
        }
        for c in spec.ephemeral_containers.iter().flatten() {
            containers.push(ContainerView {
                name: &c.name,
                security: c.security_context.as_ref(),
                ports: c.ports.as_deref().unwrap_or_default(),
            });
        }
        Self {
            meta,
            spec,
            containers,
        }
    }

    /// Names of the containers for which `bad` holds, in visiting order.
    pub fn containers_where(&self, bad: impl Fn(&ContainerView) -> bool) -> Vec<&'a str> {
        self.containers
            .iter()
            .filter(|c| bad(c))
            .map(|c| c.name)
            .collect()
    }

    pub fn pod_security(&self) -> Option<&'a k8s_openapi::api::core::v1::PodSecurityContext> {
        self.spec.security_context.as_ref()
    }
}

/// `"a", "b"`.
pub fn quoted(items: &[impl AsRef<str>]) -> String {
    items
        .iter()
        .map(|s| format!("{:?}", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `container "a"` or `containers "a", "b"`.
pub fn containers(names: &[&str]) -> String {
    plural("container", "containers", names)
}

/// `singular "a"` or `plural "a", "b"`.
pub fn plural(singular: &str, plural: &str, items: &[impl AsRef<str>]) -> String {
    let word = if items.len() == 1 { singular } else { plural };
    format!("{word} {}", quoted(items))
}

/// `pod`, `container "a"`, or `pod and containers "a", "b"` (`joiner` is `and` or `or`).
pub fn pod_and_containers(pod: bool, joiner: &str, names: &[&str]) -> String {
    match (pod, names.is_empty()) {
        (true, true) => "pod".to_string(),
        (false, _) => containers(names),
        (true, false) => format!("pod {joiner} {}", containers(names)),
    }
}
