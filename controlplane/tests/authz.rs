//! Authorization through the gRPC service, with identities put into requests' extensions as
//! the authenticating listener does: RBAC users, node identities, the scheduler, access
//! reviews, NodeRestriction, and requests without an identity.

use std::sync::Arc;

use corral_api::status::{ApiStatus, StatusReason};
use corral_controlplane::auth::authn::admin as admin_user;
use corral_controlplane::auth::{UserInfo, AUTHENTICATED, NODES};
use corral_controlplane::registry::{Registry, ServiceAllocator};
use corral_controlplane::server::ApiService;
use corral_controlplane::store::sqlite::SqliteStore;
use corral_controlplane::tunnel::Tunnels;
use corral_proto as pb;
use pb::api_server::Api;
use serde_json::{json, Value};
use tonic::{Code, Request, Status};

struct Cluster {
    _dir: tempfile::TempDir,
    api: ApiService,
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("db")).unwrap();
    let services = ServiceAllocator::new("10.43.0.0/16").unwrap();
    let registry = Arc::new(Registry::new(Arc::new(store), Default::default(), services));
    registry.bootstrap().await.unwrap();
    let api = ApiService::new(registry, Tunnels::default());
    Cluster { _dir: dir, api }
}

fn as_user<T>(user: &UserInfo, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.extensions_mut().insert(user.clone());
    req
}

fn person(name: &str) -> UserInfo {
    UserInfo::new(name, [AUTHENTICATED])
}

fn node(name: &str) -> UserInfo {
    UserInfo::new(format!("system:node:{name}"), [NODES, AUTHENTICATED])
}

fn json_of(obj: &pb::Object) -> Value {
    serde_json::from_slice(&obj.json).unwrap()
}

fn forbidden(status: Status) -> String {
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let data = ApiStatus::from_details(status.details()).expect("a Status in the details");
    assert_eq!(data.reason, StatusReason::Forbidden);
    status.message().to_string()
}

impl Cluster {
    async fn create(
        &self,
        user: &UserInfo,
        resource: &str,
        ns: &str,
        obj: Value,
    ) -> Result<Value, Status> {
        let req = pb::CreateRequest {
            resource: resource.into(),
            namespace: ns.into(),
            json: serde_json::to_vec(&obj).unwrap(),
            dry_run: false,
        };
        Ok(json_of(
            &self.api.create(as_user(user, req)).await?.into_inner(),
        ))
    }

    async fn seed(&self, resource: &str, ns: &str, obj: Value) -> Value {
        self.create(&admin_user(), resource, ns, obj).await.unwrap()
    }

    async fn get(
        &self,
        user: &UserInfo,
        resource: &str,
        ns: &str,
        name: &str,
    ) -> Result<Value, Status> {
        let r = pb::ObjectRef {
            resource: resource.into(),
            namespace: ns.into(),
            name: name.into(),
        };
        let req = pb::GetRequest { r#ref: Some(r) };
        Ok(json_of(
            &self.api.get(as_user(user, req)).await?.into_inner(),
        ))
    }

    async fn list(
        &self,
        user: &UserInfo,
        resource: &str,
        ns: &str,
        fields: &str,
    ) -> Result<usize, Status> {
        let req = pb::ListRequest {
            resource: resource.into(),
            namespace: ns.into(),
            field_selector: fields.into(),
            ..Default::default()
        };
        Ok(self
            .api
            .list(as_user(user, req))
            .await?
            .into_inner()
            .items
            .len())
    }

    async fn delete(
        &self,
        user: &UserInfo,
        resource: &str,
        ns: &str,
        name: &str,
    ) -> Result<(), Status> {
        let r = pb::ObjectRef {
            resource: resource.into(),
            namespace: ns.into(),
            name: name.into(),
        };
        let req = pb::DeleteRequest {
            r#ref: Some(r),
            ..Default::default()
        };
        self.api.delete(as_user(user, req)).await.map(drop)
    }

    async fn update(
        &self,
        user: &UserInfo,
        resource: &str,
        ns: &str,
        obj: &Value,
        status: bool,
    ) -> Result<Value, Status> {
        let sub = if status {
            pb::Subresource::Status
        } else {
            pb::Subresource::Main
        };
        let req = pb::UpdateRequest {
            resource: resource.into(),
            namespace: ns.into(),
            json: serde_json::to_vec(obj).unwrap(),
            subresource: sub as i32,
            dry_run: false,
        };
        Ok(json_of(
            &self.api.update(as_user(user, req)).await?.into_inner(),
        ))
    }

    async fn bind(&self, user: &UserInfo, pod: &str, node: &str) -> Result<(), Status> {
        let req = pb::BindRequest {
            namespace: "default".into(),
            name: pod.into(),
            node_name: node.into(),
            uid: String::new(),
        };
        self.api.bind(as_user(user, req)).await.map(drop)
    }

    /// `can-i`: a SelfSubjectAccessReview's answer.
    async fn can_i(&self, user: &UserInfo, verb: &str, resource: &str, ns: &str) -> bool {
        let review = json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": verb, "resource": resource, "namespace": ns}}
        });
        let answer = self
            .create(user, "selfsubjectaccessreviews", "", review)
            .await
            .unwrap();
        answer["status"]["allowed"].as_bool().unwrap()
    }
}

fn view_binding(user: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": format!("{user}-view")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
    })
}

fn pod(name: &str, node: &str, secret: Option<&str>) -> Value {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox:1"}]});
    if !node.is_empty() {
        spec["nodeName"] = node.into();
    }
    if let Some(s) = secret {
        spec["volumes"] = json!([{"name": "s", "secret": {"secretName": s}}]);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

fn secret(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": {"k": "dg=="}})
}

#[tokio::test]
async fn a_view_user_reads_but_cannot_delete_and_is_told_in_kubernetes_words() {
    let c = cluster().await;
    c.seed("pods", "default", pod("web", "", None)).await;
    c.seed("clusterrolebindings", "", view_binding("vera"))
        .await;
    let vera = person("vera");
    assert_eq!(c.list(&vera, "pods", "default", "").await.unwrap(), 1);
    let denied = c.delete(&vera, "pods", "default", "web").await.unwrap_err();
    assert_eq!(
        forbidden(denied),
        r#"pods "web" is forbidden: User "vera" cannot delete resource "pods" in API group "" in the namespace "default""#
    );
    let secrets = c.list(&vera, "secrets", "default", "").await.unwrap_err();
    assert_eq!(
        forbidden(secrets),
        r#"secrets is forbidden: User "vera" cannot list resource "secrets" in API group "" in the namespace "default""#
    );
    let nobody = c
        .list(&person("nobody"), "nodes", "", "")
        .await
        .unwrap_err();
    assert_eq!(
        forbidden(nobody),
        r#"nodes is forbidden: User "nobody" cannot list resource "nodes" in API group "" at the cluster scope"#
    );
}

#[tokio::test]
async fn a_request_without_an_identity_is_unauthenticated() {
    let c = cluster().await;
    let req = Request::new(pb::ListRequest {
        resource: "secrets".into(),
        ..Default::default()
    });
    let err = c.api.list(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let version = c
        .api
        .version(Request::new(pb::VersionRequest {}))
        .await
        .unwrap_err();
    assert_eq!(version.code(), Code::Unauthenticated);
    let anyone = c
        .api
        .version(as_user(&person("anyone"), pb::VersionRequest {}))
        .await;
    assert!(anyone.is_ok());
}

#[tokio::test]
async fn node_a_cannot_write_the_status_of_node_bs_pod_but_writes_its_own() {
    let c = cluster().await;
    let mine = c.seed("pods", "default", pod("on-a", "a", None)).await;
    let theirs = c.seed("pods", "default", pod("on-b", "b", None)).await;
    let status = |mut p: Value| {
        p["status"] = json!({"phase": "Running"});
        p
    };
    let a = node("a");
    c.update(&a, "pods", "default", &status(mine.clone()), true)
        .await
        .unwrap();
    let denied = c
        .update(&a, "pods", "default", &status(theirs), true)
        .await
        .unwrap_err();
    assert_eq!(
        forbidden(denied),
        r#"pods "on-b" is forbidden: User "system:node:a" cannot update resource "pods/status" in API group "" in the namespace "default": no relationship found between node 'a' and this object"#
    );
    let delete = c.delete(&a, "pods", "default", "on-b").await.unwrap_err();
    forbidden(delete);
    c.delete(&a, "pods", "default", "on-a").await.unwrap();
    // A node may not change its pods' specs either.
    let spec = c
        .update(&a, "pods", "default", &status(mine), false)
        .await
        .unwrap_err();
    forbidden(spec);
}

#[tokio::test]
async fn a_node_reads_a_secret_its_pod_uses_and_no_other() {
    let c = cluster().await;
    c.seed("secrets", "default", secret("used")).await;
    c.seed("secrets", "default", secret("unused")).await;
    c.seed("secrets", "default", secret("b-only")).await;
    c.seed("pods", "default", pod("on-a", "a", Some("used")))
        .await;
    c.seed("pods", "default", pod("on-b", "b", Some("b-only")))
        .await;
    let a = node("a");
    let got = c.get(&a, "secrets", "default", "used").await.unwrap();
    assert_eq!(got["data"]["k"], "dg==");
    for name in ["unused", "b-only"] {
        let denied = c.get(&a, "secrets", "default", name).await.unwrap_err();
        assert_eq!(
            forbidden(denied),
            format!(
                r#"secrets "{name}" is forbidden: User "system:node:a" cannot get resource "secrets" in API group "" in the namespace "default": no relationship found between node 'a' and this object"#
            )
        );
    }
    forbidden(c.list(&a, "secrets", "default", "").await.unwrap_err());
    // A list narrowed to one name is a request for that object, as in Kubernetes.
    assert_eq!(
        c.list(&a, "secrets", "default", "metadata.name=used")
            .await
            .unwrap(),
        1
    );
    forbidden(
        c.list(&a, "secrets", "default", "metadata.name=unused")
            .await
            .unwrap_err(),
    );
}

#[tokio::test]
async fn the_scheduler_binds_and_a_node_cannot() {
    let c = cluster().await;
    c.seed("pods", "default", pod("p1", "", None)).await;
    c.seed("pods", "default", pod("p2", "", None)).await;
    c.seed(
        "nodes",
        "",
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "a"}}),
    )
    .await;
    let scheduler = person("system:kube-scheduler");
    c.bind(&scheduler, "p1", "a").await.unwrap();
    let denied = c.bind(&node("a"), "p2", "a").await.unwrap_err();
    assert_eq!(
        forbidden(denied),
        r#"pods "p2" is forbidden: User "system:node:a" cannot create resource "pods/binding" in API group "" in the namespace "default""#
    );
    forbidden(c.bind(&person("mallory"), "p2", "a").await.unwrap_err());
}

#[tokio::test]
async fn can_i_answers_through_access_reviews() {
    let c = cluster().await;
    c.seed("clusterrolebindings", "", view_binding("vera"))
        .await;
    let vera = person("vera");
    assert!(c.can_i(&vera, "list", "pods", "default").await);
    assert!(!c.can_i(&vera, "delete", "pods", "default").await);
    assert!(!c.can_i(&vera, "get", "secrets", "default").await);
    assert!(c.can_i(&admin_user(), "delete", "nodes", "").await);
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "vera", "resourceAttributes": {"verb": "list", "resource": "pods", "namespace": "x"}}
    });
    let answer = c.seed("subjectaccessreviews", "", review.clone()).await;
    assert_eq!(answer["status"]["allowed"], true);
    // Reviews about others are for those allowed to create them; and nothing is stored.
    forbidden(
        c.create(&vera, "subjectaccessreviews", "", review)
            .await
            .unwrap_err(),
    );
    let get = c
        .get(&admin_user(), "selfsubjectaccessreviews", "", "x")
        .await
        .unwrap_err();
    assert_eq!(get.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn node_restriction_keeps_a_node_to_its_own_node_and_lease() {
    let c = cluster().await;
    let a = node("a");
    let n = |name: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    let created = c.create(&a, "nodes", "", n("a")).await.unwrap();
    let other = c.create(&a, "nodes", "", n("b")).await.unwrap_err();
    assert_eq!(
        forbidden(other),
        r#"nodes "b" is forbidden: node "a" is not allowed to modify node "b""#
    );
    let mut labelled = created;
    labelled["metadata"]["labels"] = json!({"node-restriction.kubernetes.io/pool": "gpu"});
    let denied = c
        .update(&a, "nodes", "", &labelled, false)
        .await
        .unwrap_err();
    assert_eq!(
        forbidden(denied),
        r#"nodes "a" is forbidden: node "a" is not allowed to modify the following labels: node-restriction.kubernetes.io/pool"#
    );
    let lease = |name: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
               "spec": {"holderIdentity": name}})
    };
    c.create(&a, "leases", "kube-node-lease", lease("a"))
        .await
        .unwrap();
    forbidden(
        c.create(&a, "leases", "kube-node-lease", lease("b"))
            .await
            .unwrap_err(),
    );
}

#[tokio::test]
async fn rbac_objects_are_validated_and_a_role_ref_never_changes() {
    let c = cluster().await;
    let admin = admin_user();
    let mut bad = view_binding("x");
    bad["subjects"][0]["kind"] = "Robot".into();
    let err = c
        .create(&admin, "clusterrolebindings", "", bad)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains(r#"subjects[0].kind: Unsupported value: "Robot""#),
        "{}",
        err.message()
    );
    let mut b = c.seed("clusterrolebindings", "", view_binding("x")).await;
    b["roleRef"]["name"] = "edit".into();
    let err = c
        .update(&admin, "clusterrolebindings", "", &b, false)
        .await
        .unwrap_err();
    assert!(
        err.message().contains("roleRef: Invalid value"),
        "{}",
        err.message()
    );
    assert!(
        err.message().ends_with("cannot change roleRef"),
        "{}",
        err.message()
    );
    // The defaults are there, by their Kubernetes names.
    for role in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:kube-scheduler",
    ] {
        c.get(&admin, "clusterroles", "", role).await.unwrap();
    }
}
