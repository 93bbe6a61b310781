//! Certificates of the embedded etcd (`install.sh server --cluster-init`): an etcd CA of its
//! own (made by the first server, handed to the next ones through the ServerJoin RPC), a
//! serving-and-peer certificate per server host, and the client certificate its control plane
//! uses. [`plan`] decides what to (re)issue; [`issue`] makes it; [`write`] puts it on disk.

use std::collections::BTreeSet;
use std::path::Path;

use rcgen::{
    CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

use super::{
    cert_err, io_err, normalise, sans_of, subject, validity, write_private, PkiError,
    LEAF_LIFETIME, RENEW_BEFORE,
};

pub const CA_CRT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
/// etcd's serving certificate, also its peer certificate (server and client usage).
pub const SERVER_CRT: &str = "server.crt";
pub const SERVER_KEY: &str = "server.key";
/// The control plane's client certificate for etcd.
pub const CLIENT_CRT: &str = "client.crt";
pub const CLIENT_KEY: &str = "client.key";
/// The common name of the control plane's etcd client certificate.
pub const CLIENT_CN: &str = "corral-controlplane";

/// The etcd CA, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdCa {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for EtcdCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdCa")
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// What a directory holds now, as [`plan`] needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Existing {
    pub ca: bool,
    /// The serving certificate's names, end, and whether the CA there signed it.
    pub server: Option<Leaf>,
    pub client: Option<Leaf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub sans: BTreeSet<String>,
    pub not_after: OffsetDateTime,
    pub from_ca: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    MakeCa,
    IssueServer,
    IssueClient,
}

/// What to make so that `dir` holds an etcd CA, a serving certificate for exactly `sans`, and
/// a client certificate, none within [`RENEW_BEFORE`] of its end. A new CA re-issues both.
pub fn plan(have: &Existing, sans: &BTreeSet<String>, now: OffsetDateTime) -> Vec<Action> {
    let fresh = |l: &Leaf| l.from_ca && l.not_after - now > RENEW_BEFORE;
    let mut out = Vec::new();
    if !have.ca {
        out.push(Action::MakeCa);
    }
    if !have.ca
        || !have
            .server
            .as_ref()
            .is_some_and(|l| fresh(l) && &l.sans == sans)
    {
        out.push(Action::IssueServer);
    }
    if !have.ca || !have.client.as_ref().is_some_and(fresh) {
        out.push(Action::IssueClient);
    }
    out
}

/// A new etcd CA (10 years).
pub fn new_ca() -> Result<EtcdCa, PkiError> {
    let (cert_pem, key) = super::self_signed_ca("corral-etcd-ca", "the etcd CA")?;
    Ok(EtcdCa {
        cert_pem,
        key_pem: key.serialize_pem(),
    })
}

fn issuer(ca: &EtcdCa) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let key = KeyPair::from_pem(&ca.key_pem).map_err(cert_err("reading the etcd CA key"))?;
    let der =
        CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).map_err(|_| PkiError::BadPem {
            path: CA_CRT.into(),
        })?;
    Issuer::from_ca_cert_der(&der, key).map_err(cert_err("reading the etcd CA"))
}

fn san(s: &str) -> Result<SanType, PkiError> {
    match s.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(SanType::IpAddress(ip)),
        Err(_) => s
            .to_string()
            .try_into()
            .map(SanType::DnsName)
            .map_err(cert_err(&format!("SAN {s:?}"))),
    }
}

/// The files (name, PEM, mode) that carry out `actions` with `ca`.
pub fn issue(
    ca: &EtcdCa,
    actions: &[Action],
    name: &str,
    sans: &BTreeSet<String>,
) -> Result<Vec<(&'static str, String, u32)>, PkiError> {
    let issuer = issuer(ca)?;
    let mut files = Vec::new();
    for action in actions {
        let (crt, key, params) = match action {
            Action::MakeCa => {
                files.push((CA_CRT, ca.cert_pem.clone(), 0o644));
                files.push((CA_KEY, ca.key_pem.clone(), 0o600));
                continue;
            }
            Action::IssueServer => {
                let mut p = CertificateParams::default();
                p.distinguished_name = subject(name, &["corral-etcd"]);
                p.subject_alt_names = sans.iter().map(|s| san(s)).collect::<Result<_, _>>()?;
                // Peers dial each other with this certificate too.
                p.extended_key_usages = vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ];
                (SERVER_CRT, SERVER_KEY, p)
            }
            Action::IssueClient => {
                let mut p = CertificateParams::default();
                p.distinguished_name = subject(CLIENT_CN, &["corral"]);
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                (CLIENT_CRT, CLIENT_KEY, p)
            }
        };
        let mut params = params;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, LEAF_LIFETIME);
        let key_pair = KeyPair::generate().map_err(cert_err("generating an etcd key"))?;
        let cert = params
            .signed_by(&key_pair, &issuer)
            .map_err(cert_err(&format!("signing etcd's {crt}")))?;
        files.push((crt, cert.pem(), 0o644));
        files.push((key, key_pair.serialize_pem(), 0o600));
    }
    Ok(files)
}

/// The CA in `dir`, when both files are there.
pub fn load_ca(dir: &Path) -> Result<Option<EtcdCa>, PkiError> {
    let (crt, key) = (dir.join(CA_CRT), dir.join(CA_KEY));
    if !crt.exists() || !key.exists() {
        return Ok(None);
    }
    Ok(Some(EtcdCa {
        cert_pem: std::fs::read_to_string(&crt).map_err(io_err(&crt))?,
        key_pem: std::fs::read_to_string(&key).map_err(io_err(&key))?,
    }))
}

fn leaf(dir: &Path, file: &str, ca_subject: Option<&[u8]>) -> Result<Option<Leaf>, PkiError> {
    let path = dir.join(file);
    let Ok(pem) = std::fs::read(&path) else {
        return Ok(None);
    };
    let Ok(der) = CertificateDer::from_pem_slice(&pem) else {
        return Ok(None);
    };
    let (sans, not_after, issuer) = sans_of(&der, &path)?;
    Ok(Some(Leaf {
        sans,
        not_after,
        from_ca: ca_subject.is_some_and(|s| s == issuer.as_slice()),
    }))
}

/// What `dir` holds, for [`plan`].
pub fn existing(dir: &Path) -> Result<Existing, PkiError> {
    let ca = load_ca(dir)?;
    let subject = match &ca {
        Some(ca) => {
            let der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).map_err(|_| {
                PkiError::BadPem {
                    path: dir.join(CA_CRT),
                }
            })?;
            let (_, cert) =
                x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::Parse {
                    path: dir.join(CA_CRT),
                    reason: e.to_string(),
                })?;
            Some(cert.subject().as_raw().to_vec())
        }
        None => None,
    };
    Ok(Existing {
        ca: ca.is_some(),
        server: leaf(dir, SERVER_CRT, subject.as_deref())?,
        client: leaf(dir, CLIENT_CRT, subject.as_deref())?,
    })
}

/// Writes `files` into `dir` (0700).
pub fn write(dir: &Path, files: &[(&'static str, String, u32)]) -> Result<(), PkiError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    for (name, pem, mode) in files {
        write_private(&dir.join(name), pem.as_bytes(), *mode)?;
    }
    Ok(())
}

/// The names etcd's serving certificate carries: loopback, `name` and the given addresses.
pub fn sans(name: &str, extra: &[String]) -> BTreeSet<String> {
    let mut all = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        name.into(),
    ];
    all.extend(extra.iter().cloned());
    normalise(&all)
}

/// Makes `dir` hold the etcd CA (`ca` when given, else the one there, else a new one) and
/// this host's certificates for `sans`. Returns what was done.
pub fn ensure(
    dir: &Path,
    ca: Option<&EtcdCa>,
    name: &str,
    sans: &BTreeSet<String>,
) -> Result<Vec<Action>, PkiError> {
    let mut have = existing(dir)?;
    let local = load_ca(dir)?;
    // A CA handed over (a joining server) replaces a different local one and its leaves.
    if let (Some(given), Some(local)) = (ca, &local) {
        if given != local {
            have = Existing::default();
        }
    }
    let actions = plan(&have, sans, OffsetDateTime::now_utc());
    let ca = match (ca, local) {
        (Some(c), _) => c.clone(),
        (None, Some(c)) if have.ca => c,
        _ => new_ca()?,
    };
    let files = issue(&ca, &actions, name, sans)?;
    write(dir, &files)?;
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn names(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_plan_issues_only_what_is_missing_stale_or_for_other_names() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let want = names(&["127.0.0.1", "s1"]);
        let good = |sans: &[&str]| Leaf {
            sans: names(sans),
            not_after: now + Duration::from_secs(300 * 86_400),
            from_ca: true,
        };
        let stale = Leaf {
            not_after: now + Duration::from_secs(10 * 86_400),
            ..good(&["127.0.0.1", "s1"])
        };
        let foreign = Leaf {
            from_ca: false,
            ..good(&["127.0.0.1", "s1"])
        };
        use Action::*;
        let cases: Vec<(&str, Existing, Vec<Action>)> = vec![
            (
                "empty",
                Existing::default(),
                vec![MakeCa, IssueServer, IssueClient],
            ),
            (
                "leaves without a CA",
                Existing {
                    ca: false,
                    server: Some(good(&["127.0.0.1", "s1"])),
                    client: Some(good(&[])),
                },
                vec![MakeCa, IssueServer, IssueClient],
            ),
            (
                "all good",
                Existing {
                    ca: true,
                    server: Some(good(&["127.0.0.1", "s1"])),
                    client: Some(good(&[])),
                },
                vec![],
            ),
            (
                "names changed",
                Existing {
                    ca: true,
                    server: Some(good(&["127.0.0.1"])),
                    client: Some(good(&[])),
                },
                vec![IssueServer],
            ),
            (
                "near its end",
                Existing {
                    ca: true,
                    server: Some(stale),
                    client: Some(good(&[])),
                },
                vec![IssueServer],
            ),
            (
                "signed by another CA",
                Existing {
                    ca: true,
                    server: Some(good(&["127.0.0.1", "s1"])),
                    client: Some(foreign),
                },
                vec![IssueClient],
            ),
        ];
        for (what, have, actions) in cases {
            assert_eq!(plan(&have, &want, now), actions, "{what}");
        }
    }

    #[test]
    fn a_joining_server_takes_the_given_ca_and_keeps_its_certificates_on_a_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let sans = sans("s2", &["10.0.0.2".into()]);
        let first = ensure(dir.path(), None, "s2", &sans).unwrap();
        assert_eq!(
            first,
            vec![Action::MakeCa, Action::IssueServer, Action::IssueClient]
        );
        assert!(ensure(dir.path(), None, "s2", &sans).unwrap().is_empty());
        let cluster = new_ca().unwrap();
        assert_eq!(
            ensure(dir.path(), Some(&cluster), "s2", &sans)
                .unwrap()
                .len(),
            3
        );
        assert_eq!(load_ca(dir.path()).unwrap(), Some(cluster.clone()));
        assert!(ensure(dir.path(), Some(&cluster), "s2", &sans)
            .unwrap()
            .is_empty());
        let have = existing(dir.path()).unwrap();
        assert_eq!(have.server.unwrap().sans, sans);
        assert!(have.client.unwrap().from_ca);
    }
}
