use std::os::unix::fs::PermissionsExt;

use super::*;

fn subject_of(pem: &str) -> (String, Vec<String>) {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let orgs = cert
        .subject()
        .iter_organization()
        .map(|o| o.as_str().unwrap().to_string())
        .collect();
    (cn, orgs)
}

#[test]
fn the_ca_is_made_once_with_private_keys_and_kept_across_starts() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let first = Pki::load_or_create(&tls, &["localhost".into()]).unwrap();
    let second = Pki::load_or_create(&tls, &["localhost".into()]).unwrap();
    assert_eq!(first.ca_der(), second.ca_der());
    assert_eq!(first.serving_chain, second.serving_chain);
    let mode = |p: &str| std::fs::metadata(tls.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("ca.key"), 0o600);
    assert_eq!(mode("serving.key"), 0o600);
    let dir_mode = std::fs::metadata(&tls).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    assert_eq!(first.serving_chain.len(), 2, "the chain is [leaf, CA]");
    assert_eq!(first.serving_chain[1].as_ref(), first.ca_der());
}

#[test]
fn a_changed_san_set_re_issues_the_serving_certificate_under_the_same_ca() {
    let dir = tempfile::tempdir().unwrap();
    let first = Pki::load_or_create(dir.path(), &["localhost".into()]).unwrap();
    let second = Pki::load_or_create(dir.path(), &["localhost".into(), "10.0.0.5".into()]).unwrap();
    assert_eq!(first.ca_der(), second.ca_der());
    assert_ne!(first.serving_chain[0], second.serving_chain[0]);
    let (sans, _, _) = sans_of(&second.serving_chain[0], dir.path()).unwrap();
    assert!(
        sans.contains("10.0.0.5") && sans.contains("localhost"),
        "{sans:?}"
    );
}

#[test]
fn client_certificates_carry_the_name_and_groups_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(dir.path(), &["localhost".into()]).unwrap();
    let (cert, key) = pki
        .issue_client("admin", &["system:masters"], LEAF_LIFETIME)
        .unwrap();
    assert!(key.contains("PRIVATE KEY"));
    assert_eq!(
        subject_of(&cert),
        ("admin".to_string(), vec!["system:masters".to_string()])
    );
}

#[test]
fn a_csr_is_signed_for_the_name_given_not_the_name_it_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(dir.path(), &["localhost".into()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = subject("system:node:other", &["system:masters"]);
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let cert = pki
        .sign_csr(&csr, "system:node:n1", &["system:nodes"], LEAF_LIFETIME)
        .unwrap();
    assert_eq!(
        subject_of(&cert),
        (
            "system:node:n1".to_string(),
            vec!["system:nodes".to_string()]
        )
    );
}
