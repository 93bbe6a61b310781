//! Table tests: fixture objects shaped like the workshop's, printed and compared line by line
//! with the output kubectl gives for them.

use crate::kinds::{self, ResourceInfo};
use jiff::Timestamp;
use serde_json::{json, Value};

use super::{table, PrintOptions};

fn now() -> Timestamp {
    "2026-01-01T12:00:00Z".parse().unwrap()
}

/// A timestamp `secs` seconds before `now()`.
fn ago(secs: i64) -> String {
    let t = now() - jiff::SignedDuration::from_secs(secs);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn opts() -> PrintOptions {
    PrintOptions::new(now())
}

fn render(info: &ResourceInfo, objs: &[Value], o: &PrintOptions) -> String {
    table(info, objs, o).unwrap().render(true)
}

fn running_pod(name: &str, age: i64, ip: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": ago(age),
                     "labels": {"app": "mi-app"}},
        "spec": {"nodeName": node, "containers": [{"name": "mi-pod", "image": "fedek3/workshop-uns:v0.2.0"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "mi-pod", "ready": true, "restartCount": 0, "image": "", "imageID": "",
                                          "state": {"running": {"startedAt": ago(age)}}}]}
    })
}

fn creating_pod(name: &str, age: i64, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": ago(age)},
        "spec": {"nodeName": node, "containers": [{"name": "mi-pod", "image": "fedek3/workshop-uns:v0.2.0"}]},
        "status": {"phase": "Pending",
                   "containerStatuses": [{"name": "mi-pod", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                                          "state": {"waiting": {"reason": "ContainerCreating"}}}]}
    })
}

#[test]
fn get_pods_prints_the_workshops_running_pod() {
    let got = render(
        &kinds::PODS,
        &[running_pod("mi-pod", 84 * 60, "10.42.1.10", "n")],
        &opts(),
    );
    assert_eq!(
        got,
        "NAME     READY   STATUS    RESTARTS   AGE\n\
         mi-pod   1/1     Running   0          84m\n"
    );
}

#[test]
fn get_pods_shows_container_creating_for_new_daemonset_pods() {
    let pods = [
        creating_pod("mi-app-tr8jm", 5, "a"),
        creating_pod("mi-app-5g74m", 4, "b"),
    ];
    assert_eq!(
        render(&kinds::PODS, &pods, &opts()),
        "NAME           READY   STATUS              RESTARTS   AGE\n\
         mi-app-tr8jm   0/1     ContainerCreating   0          5s\n\
         mi-app-5g74m   0/1     ContainerCreating   0          4s\n"
    );
}

#[test]
fn get_pods_wide_matches_the_workshop_including_none_ips() {
    let mut o = opts();
    o.wide = true;
    let pods = [
        running_pod(
            "mi-app-57krf",
            7 * 60 + 21,
            "10.42.1.11",
            "k3d-mi-cluster-agent-0",
        ),
        creating_pod("mi-app-gshwz", 5, "k3d-mi-cluster-server-0"),
    ];
    assert_eq!(
        render(&kinds::PODS, &pods, &o),
        "NAME           READY   STATUS              RESTARTS   AGE     IP           NODE                      NOMINATED NODE   READINESS GATES\n\
         mi-app-57krf   1/1     Running             0          7m21s   10.42.1.11   k3d-mi-cluster-agent-0    <none>           <none>\n\
         mi-app-gshwz   0/1     ContainerCreating   0          5s      <none>       k3d-mi-cluster-server-0   <none>           <none>\n"
    );
}

fn status_of(pod: Value) -> (String, String, String) {
    let row = super::row(&kinds::PODS, &pod, &opts()).unwrap();
    (row[1].clone(), row[2].clone(), row[3].clone())
}

#[test]
fn pod_status_column_follows_kubectls_rules() {
    // Terminating: a deletionTimestamp on a pod that has not finished.
    let mut p = running_pod("p", 60, "10.0.0.1", "n");
    p["metadata"]["deletionTimestamp"] = json!(ago(1));
    assert_eq!(status_of(p).1, "Terminating");

    // CrashLoopBackOff with restarts and the time of the last one.
    let crash = json!({
        "metadata": {"name": "c", "creationTimestamp": ago(600)},
        "spec": {"containers": [{"name": "c"}]},
        "status": {"phase": "Running", "containerStatuses": [{
            "name": "c", "ready": false, "restartCount": 3, "image": "", "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(12)}}}]}
    });
    assert_eq!(
        status_of(crash),
        (
            "0/1".into(),
            "CrashLoopBackOff".into(),
            "3 (12s ago)".into()
        )
    );

    // Completed: terminated with reason Completed.
    let done = json!({
        "metadata": {"name": "d"}, "spec": {"containers": [{"name": "c"}]},
        "status": {"phase": "Succeeded", "containerStatuses": [{
            "name": "c", "ready": false, "restartCount": 0, "image": "", "imageID": "",
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
    });
    assert_eq!(status_of(done).1, "Completed");

    // A terminated container without a reason shows its exit code.
    let failed = json!({
        "metadata": {"name": "f"}, "spec": {"containers": [{"name": "c"}]},
        "status": {"phase": "Failed", "containerStatuses": [{
            "name": "c", "ready": false, "restartCount": 0, "image": "", "imageID": "",
            "state": {"terminated": {"exitCode": 2}}}]}
    });
    assert_eq!(status_of(failed).1, "ExitCode:2");

    for reason in ["ErrImagePull", "ImagePullBackOff"] {
        let pulling = json!({
            "metadata": {"name": "i"}, "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "c", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                "state": {"waiting": {"reason": reason}}}]}
        });
        assert_eq!(status_of(pulling).1, reason);
    }

    // Unscheduled: no statuses yet.
    let pending = json!({"metadata": {"name": "u"}, "spec": {"containers": [{"name": "c"}]},
                         "status": {"phase": "Pending"}});
    assert_eq!(
        status_of(pending),
        ("0/1".into(), "Pending".into(), "0".into())
    );

    // Init containers still running.
    let init = json!({
        "metadata": {"name": "n"},
        "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "c"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [{
            "name": "i", "ready": false, "restartCount": 0, "image": "", "imageID": "",
            "state": {"running": {}}}]}
    });
    assert_eq!(status_of(init).1, "Init:0/1");
}

#[test]
fn get_replicaset_matches_the_workshop() {
    let rs = json!({
        "metadata": {"name": "mi-deploy-5575f4ff46", "creationTimestamp": ago(190)},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "mi-deploy", "pod-template-hash": "5575f4ff46"}},
                 "template": {"spec": {"containers": [{"name": "workshop-uns", "image": "fedek3/workshop-uns:v0.2.0"}]}}},
        "status": {"replicas": 3, "readyReplicas": 3, "availableReplicas": 3}
    });
    assert_eq!(
        render(&kinds::REPLICASETS, std::slice::from_ref(&rs), &opts()),
        "NAME                   DESIRED   CURRENT   READY   AGE\n\
         mi-deploy-5575f4ff46   3         3         3       3m10s\n"
    );
    let mut o = opts();
    o.wide = true;
    let row = super::row(&kinds::REPLICASETS, &rs, &o).unwrap();
    assert_eq!(
        row[5..],
        [
            "workshop-uns".to_string(),
            "fedek3/workshop-uns:v0.2.0".to_string(),
            "app=mi-deploy,pod-template-hash=5575f4ff46".to_string()
        ]
    );
}

fn endpoints(name: &str, age: i64, ips: &[&str], port: i32) -> Value {
    let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    let subsets = if ips.is_empty() {
        json!([])
    } else {
        json!([{"addresses": addresses, "ports": [{"port": port, "protocol": "TCP"}]}])
    };
    json!({"metadata": {"name": name, "creationTimestamp": ago(age)}, "subsets": subsets})
}

#[test]
fn get_endpoints_matches_the_workshop() {
    let eps = [
        endpoints("mi-app-svc", 5 * 3600 + 22 * 60, &[], 80),
        endpoints("mi-pod", 6 * 3600 + 19 * 60, &[], 80),
        endpoints("kubernetes", 6 * 3600 + 23 * 60, &["192.168.48.3"], 6443),
        endpoints(
            "mi-deploy-svc",
            25,
            &["10.42.0.10", "10.42.1.18", "10.42.2.15"],
            80,
        ),
    ];
    assert_eq!(
        render(&kinds::ENDPOINTS, &eps, &opts()),
        "NAME            ENDPOINTS                                   AGE\n\
         mi-app-svc      <none>                                      5h22m\n\
         mi-pod          <none>                                      6h19m\n\
         kubernetes      192.168.48.3:6443                           6h23m\n\
         mi-deploy-svc   10.42.0.10:80,10.42.1.18:80,10.42.2.15:80   25s\n"
    );
}

#[test]
fn endpoints_with_only_not_ready_addresses_print_an_empty_cell_as_kubectl() {
    // kubectl's formatEndpoints: `<none>` only when there are no subsets at all.
    let not_ready = json!({"metadata": {"name": "web", "creationTimestamp": ago(5)},
        "subsets": [{"notReadyAddresses": [{"ip": "10.42.0.7"}], "ports": [{"port": 80}]}]});
    let none = json!({"metadata": {"name": "idle", "creationTimestamp": ago(5)}});
    assert_eq!(
        render(&kinds::ENDPOINTS, &[not_ready, none], &opts()),
        "NAME   ENDPOINTS   AGE\n\
         web                5s\n\
         idle   <none>      5s\n"
    );
}

#[test]
fn more_than_three_endpoints_are_summarised() {
    let ep = endpoints(
        "web",
        1,
        &["10.42.0.10", "10.42.1.18", "10.42.2.15", "10.42.3.4"],
        80,
    );
    let row = super::row(&kinds::ENDPOINTS, &ep, &opts()).unwrap();
    assert_eq!(
        row[1],
        "10.42.0.10:80,10.42.1.18:80,10.42.2.15:80 + 1 more..."
    );
}

#[test]
fn get_ingress_matches_the_workshop() {
    let ing = |name: &str, age: i64| {
        json!({
            "metadata": {"name": name, "creationTimestamp": ago(age)},
            "spec": {"rules": [{"host": "mi-app.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "mi-deploy-svc", "port": {"number": 80}}}}]}}]},
            "status": {"loadBalancer": {"ingress": [
                {"ip": "192.168.48.3"}, {"ip": "192.168.48.2"}, {"ip": "192.168.48.4"}, {"ip": "192.168.48.5"}]}}
        })
    };
    assert_eq!(
        render(&kinds::INGRESSES, &[ing("mi-app-ingress", 29 * 3600), ing("mi-deploy-ingress", 4)], &opts()),
        "NAME                CLASS    HOSTS        ADDRESS                                               PORTS   AGE\n\
         mi-app-ingress      <none>   mi-app.com   192.168.48.2,192.168.48.3,192.168.48.4,192.168.48.5   80      29h\n\
         mi-deploy-ingress   <none>   mi-app.com   192.168.48.2,192.168.48.3,192.168.48.4,192.168.48.5   80      4s\n"
    );
}

#[test]
fn get_deployments_and_daemonsets_and_statefulsets() {
    let d = json!({
        "metadata": {"name": "mi-deploy", "creationTimestamp": ago(41)},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "mi-deploy"}}, "template": {}},
        "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2}
    });
    assert_eq!(
        render(&kinds::DEPLOYMENTS, &[d], &opts()),
        "NAME        READY   UP-TO-DATE   AVAILABLE   AGE\n\
         mi-deploy   2/3     3            2           41s\n"
    );
    let ds = json!({
        "metadata": {"name": "mi-app", "creationTimestamp": ago(48)},
        "spec": {"selector": {"matchLabels": {"app": "mi-app"}}, "template": {}},
        "status": {"desiredNumberScheduled": 4, "currentNumberScheduled": 4, "numberReady": 4,
                   "numberMisscheduled": 0, "updatedNumberScheduled": 4, "numberAvailable": 4}
    });
    assert_eq!(
        render(&kinds::DAEMONSETS, &[ds], &opts()),
        "NAME     DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE   NODE SELECTOR   AGE\n\
         mi-app   4         4         4       4            4           <none>          48s\n"
    );
    let sts = json!({
        "metadata": {"name": "db", "creationTimestamp": ago(3600)},
        "spec": {"replicas": 2, "selector": {}, "serviceName": "db", "template": {}},
        "status": {"replicas": 2, "readyReplicas": 1}
    });
    assert_eq!(
        render(&kinds::STATEFULSETS, &[sts], &opts()),
        "NAME   READY   AGE\ndb     1/2     60m\n"
    );
}

#[test]
fn get_services_shows_types_ports_and_pending_load_balancers() {
    let svc = |name: &str, typ: &str, ports: Value| {
        json!({"metadata": {"name": name, "creationTimestamp": ago(25)},
               "spec": {"type": typ, "clusterIP": "10.43.0.12", "clusterIPs": ["10.43.0.12"], "ports": ports,
                        "selector": {"app": "mi-deploy"}}})
    };
    let list = [
        svc(
            "mi-deploy-svc",
            "ClusterIP",
            json!([{"port": 80, "protocol": "TCP", "targetPort": 80}]),
        ),
        svc(
            "np",
            "NodePort",
            json!([{"port": 80, "nodePort": 30080, "protocol": "TCP"}]),
        ),
        svc("lb", "LoadBalancer", json!([{"port": 443}])),
    ];
    assert_eq!(
        render(&kinds::SERVICES, &list, &opts()),
        "NAME            TYPE           CLUSTER-IP   EXTERNAL-IP   PORT(S)        AGE\n\
         mi-deploy-svc   ClusterIP      10.43.0.12   <none>        80/TCP         25s\n\
         np              NodePort       10.43.0.12   <none>        80:30080/TCP   25s\n\
         lb              LoadBalancer   10.43.0.12   <pending>     443/TCP        25s\n"
    );
}

#[test]
fn load_balancer_addresses_are_not_clipped() {
    // The server renders kubectl's tables wide, so EXTERNAL-IP is never cut to 16 bytes.
    let lb = json!({"metadata": {"name": "lb", "creationTimestamp": ago(25)},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.12", "ports": [{"port": 443, "protocol": "TCP"}],
                 "externalIPs": ["203.0.113.9"]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.48.3"}, {"ip": "192.168.48.2"},
                                                {"hostname": "lb.example.com"}, {"ip": "192.168.48.2"}]}}});
    let row = super::row(&kinds::SERVICES, &lb, &opts()).unwrap();
    assert_eq!(
        row[3],
        "192.168.48.2,192.168.48.3,lb.example.com,203.0.113.9"
    );
}

#[test]
fn get_ingressclasses_shows_controller_and_parameters() {
    let class = |name: &str, params: Value| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
               "metadata": {"name": name, "creationTimestamp": ago(90),
                            "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
               "spec": {"controller": "corral.io/ingress", "parameters": params}})
    };
    let list = [
        class("corral", Value::Null),
        class(
            "tuned",
            json!({"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}),
        ),
        class("plain", json!({"kind": "ConfigMap", "name": "cfg"})),
    ];
    assert_eq!(
        render(&kinds::INGRESSCLASSES, &list, &opts()),
        "NAME     CONTROLLER          PARAMETERS                                      AGE\n\
         corral   corral.io/ingress   <none>                                          90s\n\
         tuned    corral.io/ingress   IngressParameters.k8s.example.com/external-lb   90s\n\
         plain    corral.io/ingress   ConfigMap/cfg                                   90s\n"
    );
}

#[test]
fn get_nodes_shows_cordoned_nodes_and_roles() {
    let node = json!({
        "metadata": {"name": "k3d-mi-cluster-agent-0", "creationTimestamp": ago(86400 * 3),
                     "labels": {"node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/master": "true"}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
                   "nodeInfo": {"kubeletVersion": "v0.1.0", "architecture": "", "bootID": "", "containerRuntimeVersion": "",
                                "kernelVersion": "", "kubeProxyVersion": "", "machineID": "", "operatingSystem": "",
                                "osImage": "", "systemUUID": ""}}
    });
    assert_eq!(
        render(&kinds::NODES, &[node], &opts()),
        "NAME                     STATUS                     ROLES                  AGE   VERSION\n\
         k3d-mi-cluster-agent-0   Ready,SchedulingDisabled   control-plane,master   3d    v0.1.0\n"
    );
}

#[test]
fn get_events_names_the_object_and_all_namespaces_adds_a_column() {
    let ev = json!({
        "metadata": {"name": "mi-pod.1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "mi-pod", "namespace": "default"},
        "type": "Normal", "reason": "Scheduled", "message": "Successfully assigned default/mi-pod to n1",
        "lastTimestamp": ago(30), "firstTimestamp": ago(30), "count": 1
    });
    let mut o = opts();
    o.with_namespace = true;
    assert_eq!(
        render(&kinds::EVENTS, &[ev], &o),
        "NAMESPACE   LAST SEEN   TYPE     REASON      OBJECT       MESSAGE\n\
         default     30s         Normal   Scheduled   pod/mi-pod   Successfully assigned default/mi-pod to n1\n"
    );
}

#[test]
fn show_labels_and_show_kind_decorate_the_rows() {
    let mut o = opts();
    o.show_labels = true;
    o.with_kind = true;
    let got = render(
        &kinds::PODS,
        &[running_pod("mi-pod", 5, "10.0.0.1", "n")],
        &o,
    );
    assert_eq!(
        got,
        "NAME         READY   STATUS    RESTARTS   AGE   LABELS\n\
         pod/mi-pod   1/1     Running   0          5s    app=mi-app\n"
    );
}

#[test]
fn a_terminating_namespace_shows_its_phase_and_what_its_deletion_waits_for() {
    let ns = json!({"metadata": {"name": "big", "creationTimestamp": ago(120),
        "deletionTimestamp": ago(3)},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Terminating", "conditions": [{"type": "NamespaceContentRemaining",
            "status": "True", "lastTransitionTime": "2023-11-14T22:13:20Z", "reason": "SomeResourcesRemain",
            "message": "Some resources are remaining: configmaps. has 1390 resource instances"}]}});
    assert_eq!(
        render(&kinds::NAMESPACES, std::slice::from_ref(&ns), &opts()),
        "NAME   STATUS        AGE\nbig    Terminating   2m\n"
    );
    let described = super::describe::namespace(&serde_json::from_value(ns).unwrap());
    assert!(
        described.contains("Status:       Terminating\n"),
        "{described}"
    );
    assert!(
        described.contains("  NamespaceContentRemaining   True    Tue, 14 Nov 2023 22:13:20 +0000   SomeResourcesRemain   Some resources are remaining: configmaps. has 1390 resource instances\n"),
        "{described}"
    );
}

#[test]
fn namespaces_leases_revisions_and_claims_have_their_columns() {
    let ns = json!({"metadata": {"name": "default", "creationTimestamp": ago(120)}, "status": {"phase": "Active"}});
    assert_eq!(
        render(&kinds::NAMESPACES, &[ns], &opts()),
        "NAME      STATUS   AGE\ndefault   Active   2m\n"
    );
    let lease = json!({"metadata": {"name": "n1", "creationTimestamp": ago(5)}, "spec": {"holderIdentity": "n1"}});
    assert_eq!(
        render(&kinds::LEASES, &[lease], &opts()),
        "NAME   HOLDER   AGE\nn1     n1       5s\n"
    );
    let cr = json!({"metadata": {"name": "mi-app-6d4b", "creationTimestamp": ago(5),
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "mi-app", "uid": "u", "controller": true}]},
                    "revision": 1});
    assert_eq!(
        render(&kinds::CONTROLLERREVISIONS, &[cr], &opts()),
        "NAME          CONTROLLER              REVISION   AGE\nmi-app-6d4b   daemonset.apps/mi-app   1          5s\n"
    );
    let pvc = json!({"metadata": {"name": "data", "creationTimestamp": ago(5)},
                     "spec": {"volumeName": "pv-1", "storageClassName": "local", "accessModes": ["ReadWriteOnce"]},
                     "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}});
    assert_eq!(
        render(&kinds::PVCS, &[pvc], &opts()),
        "NAME   STATUS   VOLUME   CAPACITY   ACCESS MODES   STORAGECLASS   VOLUMEATTRIBUTESCLASS   AGE\n\
         data   Bound    pv-1     1Gi        RWO            local          <unset>                 5s\n"
    );
}

#[test]
fn describe_pod_lists_images_conditions_and_events() {
    let mut pod = running_pod("mi-app-57krf", 60, "10.42.1.11", "k3d-mi-cluster-agent-0");
    pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "mi-app", "uid": "u", "controller": true}]);
    let pod: crate::k8s::api::core::v1::Pod = serde_json::from_value(pod).unwrap();
    let ev: crate::k8s::api::core::v1::Event = serde_json::from_value(json!({
        "metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "mi-app-57krf"},
        "type": "Normal", "reason": "Scheduled", "message": "Successfully assigned default/mi-app-57krf to k3d-mi-cluster-agent-0",
        "source": {"component": "default-scheduler"}, "firstTimestamp": ago(60), "lastTimestamp": ago(60)
    }))
    .unwrap();
    let rel = super::describe::Related {
        events: vec![ev],
        ..Default::default()
    };
    let text = super::describe::pod(&pod, &rel, now());
    let lines: Vec<&str> = text.lines().collect();
    // Without a service account or priority, "Annotations:" is the widest key of the block.
    assert_eq!(lines[0], "Name:         mi-app-57krf");
    assert!(lines.contains(&"Namespace:    default"), "{text}");
    assert!(
        lines.contains(&"Controlled By:  ReplicaSet/mi-app"),
        "{text}"
    );
    // The workshop greps this exact line.
    assert!(
        lines.contains(&"    Image:          fedek3/workshop-uns:v0.2.0"),
        "{text}"
    );
    // Conditions share a column block with the Volumes..Tolerations lines, as in kubectl.
    assert!(lines.contains(&"  Ready          True "), "{text}");
    assert!(lines.contains(&"Tolerations:     <none>"), "{text}");
    assert!(
        lines.contains(&"  Type    Reason     Age   From               Message"),
        "{text}"
    );
    assert!(
        lines.contains(&"  Normal  Scheduled  60s   default-scheduler  Successfully assigned default/mi-app-57krf to k3d-mi-cluster-agent-0"),
        "{text}"
    );
}

#[test]
fn describe_without_events_says_none() {
    let pod: crate::k8s::api::core::v1::Pod =
        serde_json::from_value(creating_pod("p", 5, "n")).unwrap();
    let text = super::describe::pod(&pod, &Default::default(), now());
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.last().unwrap().starts_with("Events:"), "{text}");
    assert!(lines.last().unwrap().ends_with("<none>"), "{text}");
    assert!(lines.contains(&"    State:          Waiting"), "{text}");
    assert!(
        lines.contains(&"      Reason:       ContainerCreating"),
        "{text}"
    );
}

#[test]
fn describe_pod_lists_events_of_the_same_second_in_the_order_they_happened() {
    let pod: crate::k8s::api::core::v1::Pod =
        serde_json::from_value(running_pod("web", 5, "10.42.1.11", "node-1")).unwrap();
    // The list order (by name) is not the order they happened in; lastTimestamp has whole
    // seconds, eventTime microseconds.
    let at = ago(5);
    let ev = |name: &str, micros: u32, reason: &str, from: &str| {
        serde_json::from_value::<crate::k8s::api::core::v1::Event>(json!({
            "metadata": {"name": name}, "involvedObject": {"kind": "Pod", "name": "web"},
            "type": "Normal", "reason": reason, "message": reason,
            "source": {"component": from}, "firstTimestamp": at, "lastTimestamp": at,
            "eventTime": at.replace('Z', &format!(".{micros:06}Z")),
        }))
        .unwrap()
    };
    let rel = super::describe::Related {
        events: vec![
            ev("a", 400, "Started", "kubelet"),
            ev("b", 300, "Created", "kubelet"),
            ev("c", 100, "Scheduled", "default-scheduler"),
            ev("d", 200, "Pulled", "kubelet"),
        ],
        ..Default::default()
    };
    let text = super::describe::pod(&pod, &rel, now());
    let reasons: Vec<(&str, &str)> = text
        .lines()
        .skip_while(|l| !l.starts_with("Events:"))
        .skip(3)
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[1], cols[3])
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("Scheduled", "default-scheduler"),
            ("Pulled", "kubelet"),
            ("Created", "kubelet"),
            ("Started", "kubelet")
        ],
        "{text}"
    );
}
