//! A pod's /etc/resolv.conf as kubelet writes it: `dnsPolicy` (ClusterFirst, ClusterFirstWithHostNet,
//! Default, None) over the node's resolv.conf and the cluster DNS (`--cluster-dns`,
//! `--cluster-domain`), then the pod's `dnsConfig` merged in. Pure.

use k8s_openapi::api::core::v1::Pod;

/// What the node knows of cluster DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    /// The kube-dns Service's ClusterIP(s); empty: ClusterFirst falls back to Default, as
    /// kubelet does without `--cluster-dns`.
    pub servers: Vec<String>,
    pub domain: String,
}

impl Default for ClusterDns {
    fn default() -> Self {
        Self {
            servers: vec!["10.43.0.10".into()],
            domain: "cluster.local".into(),
        }
    }
}

/// glibc reads at most three nameservers; kubelet keeps the first three.
const MAX_NAMESERVERS: usize = 3;
/// Kubernetes' limit on search domains (glibc ≥ 2.26).
const MAX_SEARCHES: usize = 32;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Resolv {
    nameservers: Vec<String>,
    searches: Vec<String>,
    /// `name` or `name:value`, in order.
    options: Vec<String>,
}

fn parse(text: &str) -> Resolv {
    let mut r = Resolv::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => r.nameservers.extend(words.next().map(String::from)),
            // The last search/domain line wins, as in the resolver.
            Some("search") | Some("domain") => r.searches = words.map(String::from).collect(),
            Some("options") => r.options.extend(words.map(String::from)),
            _ => {}
        }
    }
    r
}

fn push_unique(into: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for i in items {
        if !into.contains(&i) {
            into.push(i);
        }
    }
}

/// Options merge by name; a later one replaces the value of an earlier one (kubelet's
/// `mergeDNSOptions`).
fn merge_options(into: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for opt in items {
        let name = opt.split(':').next().unwrap_or_default().to_string();
        match into
            .iter_mut()
            .find(|o| o.split(':').next() == Some(name.as_str()))
        {
            Some(existing) => *existing = opt,
            None => into.push(opt),
        }
    }
}

/// The pod's resolv.conf from the node's (`node_resolv`, its text) and the cluster DNS.
pub fn resolv_conf(pod: &Pod, node_resolv: &str, dns: &ClusterDns) -> String {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network) == Some(true);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host = parse(node_resolv);
    let cluster_first = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    } && !dns.servers.is_empty();
    let mut r = match policy {
        "None" => Resolv::default(),
        _ if cluster_first => {
            let d = &dns.domain;
            let mut searches = vec![
                format!("{namespace}.svc.{d}"),
                format!("svc.{d}"),
                d.clone(),
            ];
            // kubelet keeps the node's search domains after the cluster's.
            push_unique(&mut searches, host.searches);
            Resolv {
                nameservers: dns.servers.clone(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        _ => host,
    };
    if let Some(c) = spec.and_then(|s| s.dns_config.as_ref()) {
        push_unique(&mut r.nameservers, c.nameservers.iter().flatten().cloned());
        push_unique(&mut r.searches, c.searches.iter().flatten().cloned());
        merge_options(
            &mut r.options,
            c.options.iter().flatten().filter_map(|o| {
                let name = o.name.clone()?;
                Some(match &o.value {
                    Some(v) => format!("{name}:{v}"),
                    None => name,
                })
            }),
        );
    }
    r.nameservers.truncate(MAX_NAMESERVERS);
    r.searches.truncate(MAX_SEARCHES);
    let mut out = String::new();
    for ns in &r.nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !r.searches.is_empty() {
        out.push_str(&format!("search {}\n", r.searches.join(" ")));
    }
    if !r.options.is_empty() {
        out.push_str(&format!("options {}\n", r.options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    const NODE: &str =
        "# from DHCP\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch lan\noptions edns0\n";

    fn pod(policy: Option<&str>, host_network: bool, config: Option<PodDNSConfig>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some("shop".into()),
                name: Some("p".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                dns_policy: policy.map(String::from),
                host_network: Some(host_network),
                dns_config: config,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn config(ns: &[&str], search: &[&str], opts: &[(&str, Option<&str>)]) -> PodDNSConfig {
        PodDNSConfig {
            nameservers: Some(ns.iter().map(|s| s.to_string()).collect()),
            searches: Some(search.iter().map(|s| s.to_string()).collect()),
            options: Some(
                opts.iter()
                    .map(|(n, v)| PodDNSConfigOption {
                        name: Some(n.to_string()),
                        value: v.map(String::from),
                    })
                    .collect(),
            ),
        }
    }

    const CLUSTER: &str = "nameserver 10.43.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local lan\noptions ndots:5\n";
    const DEFAULT: &str =
        "nameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch lan\noptions edns0\n";

    #[test]
    fn each_dns_policy_writes_what_kubelet_writes() {
        let cases: Vec<(&str, Pod, &str)> = vec![
            ("no policy is ClusterFirst", pod(None, false, None), CLUSTER),
            (
                "ClusterFirst",
                pod(Some("ClusterFirst"), false, None),
                CLUSTER,
            ),
            (
                "ClusterFirst on the host network is Default",
                pod(Some("ClusterFirst"), true, None),
                DEFAULT,
            ),
            (
                "ClusterFirstWithHostNet on the host network",
                pod(Some("ClusterFirstWithHostNet"), true, None),
                CLUSTER,
            ),
            (
                "ClusterFirstWithHostNet off the host network",
                pod(Some("ClusterFirstWithHostNet"), false, None),
                CLUSTER,
            ),
            ("Default is the node's", pod(Some("Default"), false, None), DEFAULT),
            (
                "None with only dnsConfig",
                pod(
                    Some("None"),
                    false,
                    Some(config(&["1.1.1.1"], &["example.test"], &[("ndots", Some("2"))])),
                ),
                "nameserver 1.1.1.1\nsearch example.test\noptions ndots:2\n",
            ),
            ("None without dnsConfig is empty", pod(Some("None"), false, None), ""),
            (
                "dnsConfig merges into ClusterFirst: options by name, duplicates dropped",
                pod(
                    None,
                    false,
                    Some(config(
                        &["10.43.0.10", "192.0.2.99"],
                        &["cluster.local", "corp.test"],
                        &[("ndots", Some("2")), ("edns0", None)],
                    )),
                ),
                "nameserver 10.43.0.10\nnameserver 192.0.2.99\nsearch shop.svc.cluster.local svc.cluster.local cluster.local lan corp.test\noptions ndots:2 edns0\n",
            ),
            (
                "at most three nameservers",
                pod(
                    Some("Default"),
                    false,
                    Some(config(&["192.0.2.1", "192.0.2.2"], &[], &[])),
                ),
                "nameserver 192.0.2.53\nnameserver 192.0.2.54\nnameserver 192.0.2.1\nsearch lan\noptions edns0\n",
            ),
        ];
        for (why, pod, want) in cases {
            assert_eq!(
                resolv_conf(&pod, NODE, &ClusterDns::default()),
                want,
                "{why}"
            );
        }
    }

    #[test]
    fn without_a_cluster_dns_cluster_first_falls_back_to_the_nodes() {
        let dns = ClusterDns {
            servers: vec![],
            domain: "cluster.local".into(),
        };
        assert_eq!(resolv_conf(&pod(None, false, None), NODE, &dns), DEFAULT);
    }

    #[test]
    fn another_cluster_domain_is_used_in_the_search_path() {
        let dns = ClusterDns {
            servers: vec!["10.96.0.10".into()],
            domain: "corp.internal".into(),
        };
        assert_eq!(
            resolv_conf(&pod(None, false, None), "", &dns),
            "nameserver 10.96.0.10\nsearch shop.svc.corp.internal svc.corp.internal corp.internal\noptions ndots:5\n"
        );
    }
}
