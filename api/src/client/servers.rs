//! The control planes a client may reach: the addresses it was given (`--server a,b,c`) and
//! those it learned from the cluster (the `default/kubernetes` Endpoints every server keeps),
//! in the order the dialer tries them: the last that answered first, so a dead server costs
//! one failed dial and the connection moves to the next, as a k3s agent's load balancer does.

use std::sync::Arc;

use parking_lot::RwLock;

use super::{Error, Result};

/// One server address: its URL (`https://host:port`) and where to dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub host: String,
    pub port: u16,
}

impl Target {
    /// `https://host:port` or `http://host:port` (a bare `host:port` takes the scheme `tls`
    /// asks for); the scheme must agree with whether the client has a cluster CA.
    pub fn parse(server: &str, tls: bool) -> Result<Self> {
        let server = server.trim();
        let url = if server.contains("://") {
            server.to_string()
        } else if tls {
            format!("https://{server}")
        } else {
            format!("http://{server}")
        };
        let bad = |problem: &'static str| Error::BadServer {
            server: url.clone(),
            problem,
        };
        if tls && url.starts_with("http://") {
            return Err(bad(
                "the credentials hold a cluster CA, so the server must be https://",
            ));
        }
        if !tls && url.starts_with("https://") {
            return Err(bad(
                "https:// needs the cluster CA (certificate-authority-data in the kubeconfig)",
            ));
        }
        let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self {
            url: format!(
                "{}://{}",
                if tls { "https" } else { "http" },
                authority(&host, port)
            ),
            host,
            port,
        })
    }
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[derive(Debug, Default)]
struct Inner {
    given: Vec<Target>,
    learned: Vec<Target>,
    last_good: Option<String>,
}

/// The addresses one client dials, shared by its dialer and whatever keeps them current;
/// never empty (made only by [`Servers::parse`]).
#[derive(Debug, Clone)]
pub struct Servers {
    inner: Arc<RwLock<Inner>>,
    tls: bool,
}

impl Servers {
    /// A comma-separated list of server addresses (one is the common case).
    pub fn parse(list: &str, tls: bool) -> Result<Self> {
        let mut given: Vec<Target> = Vec::new();
        for part in list.split(',').filter(|p| !p.trim().is_empty()) {
            let t = Target::parse(part, tls)?;
            if !given.contains(&t) {
                given.push(t);
            }
        }
        if given.is_empty() {
            return Err(Error::BadServer {
                server: list.to_string(),
                problem: "no server address",
            });
        }
        Ok(Self {
            inner: Arc::new(RwLock::new(Inner {
                given,
                ..Inner::default()
            })),
            tls,
        })
    }

    /// The first address given: the name errors and logs use.
    pub fn first(&self) -> String {
        self.inner.read().given[0].url.clone()
    }

    /// Every address known, given ones first.
    pub fn urls(&self) -> Vec<String> {
        let inner = self.inner.read();
        union(&inner.given, &inner.learned)
            .into_iter()
            .map(|t| t.url)
            .collect()
    }

    /// The order to dial in now.
    pub fn candidates(&self) -> Vec<Target> {
        let inner = self.inner.read();
        dial_order(&inner.given, &inner.learned, inner.last_good.as_deref())
    }

    /// `target` answered: the next connection tries it first.
    pub fn answered(&self, target: &Target) {
        self.inner.write().last_good = Some(target.url.clone());
    }

    /// Replaces the learned addresses (`host:port` or URLs; the unusable are skipped). Returns
    /// whether the set changed.
    pub fn learn(&self, addresses: &[String]) -> bool {
        let mut learned: Vec<Target> = addresses
            .iter()
            .filter_map(|a| Target::parse(a, self.tls).ok())
            .collect();
        learned.sort_by(|a, b| a.url.cmp(&b.url));
        learned.dedup();
        let mut inner = self.inner.write();
        if inner.learned == learned {
            return false;
        }
        inner.learned = learned;
        true
    }
}

fn union(given: &[Target], learned: &[Target]) -> Vec<Target> {
    let mut all = given.to_vec();
    for t in learned {
        if !all.contains(t) {
            all.push(t.clone());
        }
    }
    all
}

/// Given then learned addresses (each once), rotated so the last that answered comes first.
pub fn dial_order(given: &[Target], learned: &[Target], last_good: Option<&str>) -> Vec<Target> {
    let mut all = union(given, learned);
    if let Some(i) = last_good.and_then(|url| all.iter().position(|t| t.url == url)) {
        all.rotate_left(i);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(url: &str) -> Target {
        Target::parse(url, true).unwrap()
    }

    #[test]
    fn addresses_parse_to_urls_with_ports() {
        let cases = [
            (
                "10.0.0.1:6443",
                true,
                "https://10.0.0.1:6443",
                "10.0.0.1",
                6443,
            ),
            ("https://cp.lab", true, "https://cp.lab:443", "cp.lab", 443),
            (
                "http://127.0.0.1:7000",
                false,
                "http://127.0.0.1:7000",
                "127.0.0.1",
                7000,
            ),
            (
                "https://[::1]:6443/",
                true,
                "https://[::1]:6443",
                "::1",
                6443,
            ),
            (" 127.0.0.1:1 ", false, "http://127.0.0.1:1", "127.0.0.1", 1),
        ];
        for (input, tls, url, host, port) in cases {
            let got = Target::parse(input, tls).unwrap();
            assert_eq!(
                (got.url.as_str(), got.host.as_str(), got.port),
                (url, host, port),
                "{input}"
            );
        }
        for (input, tls) in [
            ("http://a:1", true),
            ("https://a:1", false),
            ("https://:1", true),
        ] {
            assert!(Target::parse(input, tls).is_err(), "{input}");
        }
    }

    #[test]
    fn a_list_is_split_on_commas_and_keeps_each_address_once() {
        let s = Servers::parse("https://a:1, https://b:2,,https://a:1", true).unwrap();
        assert_eq!(s.urls(), ["https://a:1", "https://b:2"]);
        assert_eq!(s.first(), "https://a:1");
        assert!(Servers::parse(" , ", true).is_err());
    }

    #[test]
    fn the_dial_order_starts_at_the_last_server_that_answered() {
        let given = [t("https://a:1")];
        let learned = [t("https://a:1"), t("https://b:2"), t("https://c:3")];
        let urls = |v: Vec<Target>| v.into_iter().map(|t| t.url).collect::<Vec<_>>();
        assert_eq!(
            urls(dial_order(&given, &learned, None)),
            ["https://a:1", "https://b:2", "https://c:3"]
        );
        assert_eq!(
            urls(dial_order(&given, &learned, Some("https://b:2"))),
            ["https://b:2", "https://c:3", "https://a:1"]
        );
        // A server that answered but is no longer known does not change the order.
        assert_eq!(
            urls(dial_order(&given, &learned, Some("https://gone:9"))),
            ["https://a:1", "https://b:2", "https://c:3"]
        );
    }

    #[test]
    fn learning_replaces_what_was_learned_and_keeps_what_was_given() {
        let s = Servers::parse("https://lb:443", true).unwrap();
        assert!(s.learn(&[
            "10.0.0.2:6443".into(),
            "10.0.0.1:6443".into(),
            "bad://".into()
        ]));
        assert_eq!(
            s.urls(),
            [
                "https://lb:443",
                "https://10.0.0.1:6443",
                "https://10.0.0.2:6443"
            ]
        );
        assert!(!s.learn(&["10.0.0.1:6443".into(), "10.0.0.2:6443".into()]));
        assert!(s.learn(&["10.0.0.3:6443".into()]));
        assert_eq!(s.urls(), ["https://lb:443", "https://10.0.0.3:6443"]);
    }
}
