use super::*;
use k8s_openapi::api::core::v1::Endpoints;

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

#[test]
fn leases_that_have_not_expired_list_their_servers() {
    let timing = Timing::default();
    let a: SocketAddr = "10.0.0.1:6443".parse().unwrap();
    let b: SocketAddr = "10.0.0.2:6443".parse().unwrap();
    let c: SocketAddr = "127.0.0.1:7001".parse().unwrap();
    let leases = [
        lease(b, at("2026-12-06T10:00:00Z"), timing),
        lease(a, at("2026-12-06T10:00:10Z"), timing),
        lease(c, at("2026-12-06T09:59:00Z"), timing),
        json!({"spec": {"holderIdentity": "not an address", "renewTime": "2026-12-06T10:00:00.000000Z", "leaseDurationSeconds": 15}}),
        json!({"metadata": {"name": "no spec"}}),
    ];
    assert_eq!(live(&leases, at("2026-12-06T10:00:14Z")), [a, b]);
    // b renewed at :00 for 15 s: gone at :15 exactly.
    assert_eq!(live(&leases, at("2026-12-06T10:00:15Z")), [a]);
    assert_eq!(
        live(&leases, at("2026-12-06T10:01:00Z")),
        Vec::<SocketAddr>::new()
    );
    assert_eq!(
        lease(a, at("2026-12-06T10:00:10Z"), timing)["spec"]["renewTime"],
        "2026-12-06T10:00:10.000000Z"
    );
}

#[test]
fn endpoints_group_servers_by_port() {
    let servers: Vec<SocketAddr> = ["10.0.0.1:6443", "10.0.0.2:6443", "127.0.0.1:7001"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(
        subsets(&servers),
        json!([
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]},
            {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": 7001, "protocol": "TCP"}]},
        ])
    );
    assert_eq!(subsets(&[]), json!([]));
}

#[test]
fn lease_names_are_stable_per_address_and_differ_between_them() {
    let a = lease_name("10.0.0.1:6443".parse().unwrap());
    assert_eq!(a, lease_name("10.0.0.1:6443".parse().unwrap()));
    assert_ne!(a, lease_name("10.0.0.1:6444".parse().unwrap()));
    assert_eq!(a.len(), "corral-apiserver-".len() + 10, "{a}");
}

#[test]
fn the_advertised_address_is_the_flag_else_a_named_listen_address() {
    let flag: IpAddr = "192.0.2.7".parse().unwrap();
    let listen: IpAddr = "10.0.0.1".parse().unwrap();
    assert_eq!(advertise_ip(Some(flag), listen), flag);
    assert_eq!(advertise_ip(None, listen), listen);
}

fn listed(ep: Value) -> Vec<String> {
    let ep: Endpoints = serde_json::from_value(ep).unwrap();
    corral_api::runtime::servers::addresses(&ep)
}

#[tokio::test]
async fn servers_join_and_leave_the_kubernetes_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(crate::registry::testutil::registry(&dir).await);
    let timing = Timing::default();
    let a = Reconciler::new(registry.clone(), "10.0.0.1:6443".parse().unwrap(), timing);
    let b = Reconciler::new(registry.clone(), "10.0.0.2:6443".parse().unwrap(), timing);
    a.ensure_service(Ipv4Addr::new(10, 43, 0, 1)).await;
    b.ensure_service(Ipv4Addr::new(10, 43, 0, 1)).await;
    let svc = registry
        .get(&kinds::SERVICES, NAMESPACE, NAME)
        .await
        .unwrap();
    assert_eq!(svc["spec"]["clusterIP"], "10.43.0.1");
    assert_eq!(svc["spec"]["selector"], Value::Null);

    a.step().await.unwrap();
    b.step().await.unwrap();
    let ep = registry
        .get(&kinds::ENDPOINTS, NAMESPACE, NAME)
        .await
        .unwrap();
    assert_eq!(listed(ep), ["10.0.0.1:6443", "10.0.0.2:6443"]);
    // A renewal that changes nothing leaves the Endpoints as they were.
    let before = registry
        .get(&kinds::ENDPOINTS, NAMESPACE, NAME)
        .await
        .unwrap();
    a.step().await.unwrap();
    let after = registry
        .get(&kinds::ENDPOINTS, NAMESPACE, NAME)
        .await
        .unwrap();
    assert_eq!(
        before["metadata"]["resourceVersion"],
        after["metadata"]["resourceVersion"]
    );

    b.leave().await;
    let ep = registry
        .get(&kinds::ENDPOINTS, NAMESPACE, NAME)
        .await
        .unwrap();
    assert_eq!(listed(ep), ["10.0.0.1:6443"]);
}
