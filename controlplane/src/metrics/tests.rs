use super::*;
use corral_api::runtime::metrics::{encode, samples};

#[test]
fn grpc_codes_become_the_http_codes_kube_apiserver_answers() {
    let cases = [
        (tonic::Code::Ok, 200),
        (tonic::Code::NotFound, 404),
        (tonic::Code::AlreadyExists, 409),
        (tonic::Code::Aborted, 409),
        (tonic::Code::PermissionDenied, 403),
        (tonic::Code::Unauthenticated, 401),
        (tonic::Code::InvalidArgument, 400),
        (tonic::Code::Unavailable, 503),
        (tonic::Code::Internal, 500),
    ];
    for (grpc, http) in cases {
        assert_eq!(http_code(grpc), http, "{grpc:?}");
    }
    let failed = http::Response::builder()
        .header("grpc-status", "5")
        .body(())
        .unwrap();
    assert_eq!(code_of(&failed), 404);
    let rest = http::Response::builder().status(422).body(()).unwrap();
    assert_eq!(code_of(&rest), 422);
}

#[tokio::test]
async fn requests_are_counted_by_the_labels_their_check_set() {
    use tower::{Layer, Service, ServiceExt};
    let mut svc = MetricsLayer.layer(tower::service_fn(|_: ()| async {
        label_request("get", "pods", "log");
        Ok::<_, std::convert::Infallible>(
            http::Response::builder()
                .header("grpc-status", "7")
                .body(())
                .unwrap(),
        )
    }));
    let key = "apiserver_request_total{verb=\"get\",resource=\"pods/log\",code=\"403\"}";
    let before = samples(&encode(&global().registry()))
        .unwrap()
        .get(key)
        .copied()
        .unwrap_or(0.0);
    svc.ready().await.unwrap().call(()).await.unwrap();
    let after = samples(&encode(&global().registry())).unwrap();
    assert_eq!(after[key], before + 1.0);
    assert!(
        after["apiserver_request_duration_seconds_count{verb=\"get\",resource=\"pods/log\"}"]
            >= 1.0
    );
}

#[test]
fn watches_count_while_open_with_their_events_and_lag_and_commits_by_group() {
    let g = global().watch_opened("metrics-test-things");
    let key = "apiserver_registered_watchers{resource=\"metrics-test-things\"}";
    assert_eq!(samples(&encode(&global().registry())).unwrap()[key], 1.0);
    // One live event 30 ms after its commit, one replayed from history (no lag measured).
    g.sent(Some(std::time::Instant::now() - Duration::from_millis(30)));
    g.sent(None);
    let events = "apiserver_watch_events_total{resource=\"metrics-test-things\"}";
    let s = samples(&encode(&global().registry())).unwrap();
    assert_eq!(s[events], 2.0);
    let lag = "apiserver_watch_event_lag_seconds_count{resource=\"metrics-test-things\"}";
    assert_eq!(s[lag], 1.0);
    let sum = "apiserver_watch_event_lag_seconds_sum{resource=\"metrics-test-things\"}";
    assert!(s[sum] >= 0.03, "{}", s[sum]);
    drop(g);
    assert_eq!(samples(&encode(&global().registry())).unwrap()[key], 0.0);
    global().commit(7, Duration::from_millis(2));
    let s = samples(&encode(&global().registry())).unwrap();
    assert!(s["apiserver_storage_commit_group_size_count"] >= 1.0);
    assert!(s["apiserver_storage_commit_duration_seconds_count"] >= 1.0);
}
