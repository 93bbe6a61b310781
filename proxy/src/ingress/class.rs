//! Which Ingresses this proxy serves: those of IngressClass `corral` (controller
//! `corral.io/ingress`, which the proxy creates as the cluster's default class, as k3s ships
//! traefik's) and those without a class, which Kubernetes' admission would have given the
//! default class. Ingresses of other classes belong to another controller. Pure.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressClassSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The IngressClass the proxy creates and serves.
pub const CLASS_NAME: &str = "corral";
/// `spec.controller` of the classes this proxy implements.
pub const CONTROLLER: &str = "corral.io/ingress";
/// The annotation marking the cluster's default IngressClass.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The class annotation Ingresses used before `spec.ingressClassName`.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// The IngressClass created when none named `corral` exists.
pub fn default_class() -> IngressClass {
    IngressClass {
        metadata: ObjectMeta {
            name: Some(CLASS_NAME.into()),
            annotations: Some(
                [(DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        },
        spec: Some(IngressClassSpec {
            controller: Some(CONTROLLER.into()),
            parameters: None,
        }),
    }
}

fn controller_of(class: &IngressClass) -> Option<&str> {
    class.spec.as_ref()?.controller.as_deref()
}

fn is_default(class: &IngressClass) -> bool {
    class
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// The Ingresses to serve, and the others as `(ns/name, class)`.
pub struct Selection {
    pub served: Vec<Arc<Ingress>>,
    pub ignored: Vec<(String, String)>,
}

/// Splits `ingresses` by class. A named class is ours when it is `corral` or an IngressClass
/// whose controller is ours; the legacy annotation names a class the same way. An Ingress
/// without a class is ours unless another controller's IngressClass is the default (then
/// admission would have given it that class).
pub fn select(ingresses: &[Arc<Ingress>], classes: &[Arc<IngressClass>]) -> Selection {
    let by_name: BTreeMap<&str, &IngressClass> = classes
        .iter()
        .filter_map(|c| Some((c.metadata.name.as_deref()?, c.as_ref())))
        .collect();
    let ours = |name: &str| {
        name == CLASS_NAME || by_name.get(name).and_then(|c| controller_of(c)) == Some(CONTROLLER)
    };
    let foreign_default = classes
        .iter()
        .find(|c| is_default(c) && controller_of(c) != Some(CONTROLLER))
        .and_then(|c| c.metadata.name.clone());
    let mut out = Selection {
        served: vec![],
        ignored: vec![],
    };
    for ing in ingresses {
        let named = ing
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref())
            .filter(|n| !n.is_empty());
        let legacy = ing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
            .map(String::as_str)
            .filter(|n| !n.is_empty());
        let class = match named.or(legacy) {
            Some(name) => (!ours(name)).then(|| name.to_string()),
            None => foreign_default.clone(),
        };
        match class {
            None => out.served.push(ing.clone()),
            Some(class) => out.ignored.push((
                format!(
                    "{}/{}",
                    ing.metadata.namespace.as_deref().unwrap_or(""),
                    ing.metadata.name.as_deref().unwrap_or("")
                ),
                class,
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::networking::v1::IngressSpec;

    fn ingress(name: &str, class: Option<&str>, legacy: Option<&str>) -> Arc<Ingress> {
        Arc::new(Ingress {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                name: Some(name.into()),
                annotations: legacy.map(|l| {
                    [(LEGACY_CLASS_ANNOTATION.to_string(), l.to_string())]
                        .into_iter()
                        .collect()
                }),
                ..Default::default()
            },
            spec: Some(IngressSpec {
                ingress_class_name: class.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn class(name: &str, controller: &str, default: bool) -> Arc<IngressClass> {
        let mut c = default_class();
        c.metadata.name = Some(name.into());
        c.spec.as_mut().unwrap().controller = Some(controller.into());
        if !default {
            c.metadata.annotations = None;
        }
        Arc::new(c)
    }

    #[test]
    fn serves_its_own_class_and_unclassed_ingresses_only() {
        let ours = class("corral", CONTROLLER, true);
        let also_ours = class("corral-internal", CONTROLLER, false);
        let nginx = class("nginx", "k8s.io/ingress-nginx", false);
        let nginx_default = class("nginx", "k8s.io/ingress-nginx", true);
        let all = vec![
            ingress("named", Some("corral"), None),
            ingress("unclassed", None, None),
            ingress("empty-class", Some(""), None),
            ingress("other", Some("nginx"), None),
            ingress("legacy-ours", None, Some("corral")),
            ingress("legacy-other", None, Some("nginx")),
            ingress("our-controller", Some("corral-internal"), None),
            ingress("name-beats-annotation", Some("corral"), Some("nginx")),
            ingress("unknown-class", Some("traefik"), None),
        ];
        type Case<'a> = (&'a str, Vec<Arc<IngressClass>>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "our class is the default",
                vec![ours.clone(), also_ours.clone(), nginx.clone()],
                vec![
                    "named",
                    "unclassed",
                    "empty-class",
                    "legacy-ours",
                    "our-controller",
                    "name-beats-annotation",
                ],
            ),
            (
                "no IngressClass yet: `corral` by name, unclassed as default",
                vec![],
                vec![
                    "named",
                    "unclassed",
                    "empty-class",
                    "legacy-ours",
                    "name-beats-annotation",
                ],
            ),
            (
                "another controller's class is the default",
                vec![ours, nginx_default],
                vec!["named", "legacy-ours", "name-beats-annotation"],
            ),
        ];
        for (what, classes, want) in cases {
            let sel = select(&all, &classes);
            let served: Vec<&str> = sel
                .served
                .iter()
                .map(|i| i.metadata.name.as_deref().unwrap())
                .collect();
            assert_eq!(served, want, "{what}");
            assert_eq!(
                sel.served.len() + sel.ignored.len(),
                all.len(),
                "{what}: every Ingress is served or ignored"
            );
        }
        let sel = select(&all, &[]);
        assert!(sel
            .ignored
            .contains(&("default/other".to_string(), "nginx".to_string())));
        assert!(sel
            .ignored
            .contains(&("default/legacy-other".to_string(), "nginx".to_string())));
    }

    #[test]
    fn the_created_class_is_the_default_for_our_controller() {
        let c = default_class();
        assert_eq!(c.metadata.name.as_deref(), Some("corral"));
        assert_eq!(controller_of(&c), Some("corral.io/ingress"));
        assert!(is_default(&c));
        assert!(c.spec.unwrap().parameters.is_none());
    }
}
