//! A pod's hostname and `/etc/hosts`, as the kubelet writes them: `spec.hostname` (else the
//! pod name), the fully qualified name when `spec.subdomain` is set, and `spec.hostAliases`.

use k8s_openapi::api::core::v1::Pod;

/// The pod's hostname: `spec.hostname` when set, else its name.
pub fn hostname(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default()
}

/// The kubelet's managed hosts file for a pod with address `ip`.
pub fn hosts_file(pod: &Pod, ip: &str, cluster_domain: &str) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    let host = hostname(pod);
    let spec = pod.spec.as_ref();
    let subdomain = spec
        .and_then(|s| s.subdomain.clone())
        .filter(|s| !s.is_empty());
    match subdomain {
        Some(sub) => {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            out.push_str(&format!(
                "{ip}\t{host}.{sub}.{ns}.svc.{cluster_domain}\t{host}\n"
            ));
        }
        None => out.push_str(&format!("{ip}\t{host}\n")),
    }
    let aliases = spec.and_then(|s| s.host_aliases.as_ref());
    if let Some(aliases) = aliases.filter(|a| !a.is_empty()) {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            let names = a.hostnames.clone().unwrap_or_default().join("\t");
            out.push_str(&format!("{}\t{names}\n", a.ip));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "web-0", "namespace": "shop"},
            "spec": spec}))
        .unwrap()
    }

    #[test]
    fn a_plain_pod_gets_kubelets_file() {
        let p = pod(json!({"containers": []}));
        assert_eq!(hostname(&p), "web-0");
        assert_eq!(
            hosts_file(&p, "10.42.1.5", "cluster.local"),
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n10.42.1.5\tweb-0\n"
        );
    }

    #[test]
    fn hostname_subdomain_and_aliases_are_written() {
        let p = pod(
            json!({"containers": [], "hostname": "db", "subdomain": "nodes",
            "hostAliases": [{"ip": "10.0.0.9", "hostnames": ["foo.local", "bar.local"]}]}),
        );
        assert_eq!(hostname(&p), "db");
        let f = hosts_file(&p, "10.42.1.5", "cluster.local");
        assert!(
            f.contains("10.42.1.5\tdb.nodes.shop.svc.cluster.local\tdb\n"),
            "{f}"
        );
        assert!(
            f.ends_with("\n# Entries added by HostAliases.\n10.0.0.9\tfoo.local\tbar.local\n"),
            "{f}"
        );
    }
}
