//! Owner references: the controller reference of an object (`controller: true`, at most one),
//! ownership by uid, the reference a controller puts on what it creates, and adoption and
//! release of dependents, as Kubernetes' controller-ref manager does them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The controller among `owners`, if any.
pub fn controller_in(owners: &[OwnerReference]) -> Option<&OwnerReference> {
    owners.iter().find(|o| o.controller == Some(true))
}

/// The controller reference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    controller_in(meta.owner_references.as_deref().unwrap_or_default())
}

/// The object is controlled by the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|o| o.uid == uid)
}

/// Some owner reference of the object (controller or not) points at `uid`.
pub fn is_owned_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references.iter().flatten().any(|o| o.uid == uid)
}

/// The controller reference pointing at `owner`, as a controller sets it on what it creates
/// (`controller` and `blockOwnerDeletion` both true).
pub fn controller_ref<K>(owner: &K) -> OwnerReference
where
    K: k8s_openapi::Resource + k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    let meta = owner.metadata();
    OwnerReference {
        api_version: K::API_VERSION.to_string(),
        kind: K::KIND.to_string(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Adoption: adds `owner` (a controller reference) to the object's owners.
pub fn adopt(meta: &mut ObjectMeta, owner: OwnerReference) {
    meta.owner_references
        .get_or_insert_with(Vec::new)
        .push(owner);
}

/// Release: drops every reference to the owner with `uid`.
pub fn release(meta: &mut ObjectMeta, uid: &str) {
    if let Some(refs) = meta.owner_references.as_mut() {
        refs.retain(|o| o.uid != uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;

    fn reference(uid: &str, controller: Option<bool>) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: format!("rs-{uid}"),
            uid: uid.into(),
            controller,
            block_owner_deletion: None,
        }
    }

    fn meta(owners: Option<Vec<OwnerReference>>) -> ObjectMeta {
        ObjectMeta {
            owner_references: owners,
            ..Default::default()
        }
    }

    #[test]
    fn only_a_reference_marked_controller_controls() {
        // (owners, controller uid, owned by "a", controlled by "a")
        let cases = [
            (None, None, false, false),
            (Some(vec![]), None, false, false),
            (Some(vec![reference("a", None)]), None, true, false),
            (Some(vec![reference("a", Some(false))]), None, true, false),
            (
                Some(vec![reference("a", Some(true))]),
                Some("a"),
                true,
                true,
            ),
            (
                Some(vec![reference("a", None), reference("b", Some(true))]),
                Some("b"),
                true,
                false,
            ),
        ];
        for (owners, controller, owned, controlled) in cases {
            let m = meta(owners.clone());
            assert_eq!(
                controller_of(&m).map(|o| o.uid.as_str()),
                controller,
                "{owners:?}"
            );
            assert_eq!(is_owned_by(&m, "a"), owned, "{owners:?}");
            assert_eq!(is_controlled_by(&m, "a"), controlled, "{owners:?}");
        }
    }

    #[test]
    fn a_controller_ref_points_at_its_owner_and_blocks_deletion() {
        let mut rs = ReplicaSet::default();
        rs.metadata.name = Some("web".into());
        rs.metadata.uid = Some("u1".into());
        let r = controller_ref(&rs);
        assert_eq!(
            (
                r.api_version.as_str(),
                r.kind.as_str(),
                r.name.as_str(),
                r.uid.as_str()
            ),
            ("apps/v1", "ReplicaSet", "web", "u1")
        );
        assert_eq!(
            (r.controller, r.block_owner_deletion),
            (Some(true), Some(true))
        );

        let mut pod = meta(Some(vec![reference("x", None)]));
        adopt(&mut pod, r);
        assert!(is_controlled_by(&pod, "u1"));
        release(&mut pod, "u1");
        assert!(!is_owned_by(&pod, "u1") && is_owned_by(&pod, "x"));
    }
}
