use super::*;

const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn token_text_parses_into_hash_id_and_secret() {
    let long = format!("K10{HASH}::abcdef.0123456789abcdef");
    type Parts<'a> = (Option<&'a str>, &'a str, &'a str);
    let table: &[(&str, Result<Parts, TokenError>)] = &[
        (&long, Ok((Some(HASH), "abcdef", "0123456789abcdef"))),
        (
            "abcdef.0123456789abcdef",
            Ok((None, "abcdef", "0123456789abcdef")),
        ),
        (
            "abcdef.0123456789abcdef\n",
            Ok((None, "abcdef", "0123456789abcdef")),
        ),
        ("ABCDEF.0123456789abcdef", Err(TokenError::Malformed)),
        ("abcde.0123456789abcdef", Err(TokenError::Malformed)),
        ("abcdef.0123456789abcde", Err(TokenError::Malformed)),
        ("abcdef0123456789abcdef", Err(TokenError::Malformed)),
        ("", Err(TokenError::Malformed)),
        (
            "K10abc::abcdef.0123456789abcdef",
            Err(TokenError::BadCaHash),
        ),
        (
            &format!("K10{}::abcdef.0123456789abcdef", HASH.to_uppercase()),
            Err(TokenError::BadCaHash),
        ),
        (
            &format!("K10{HASH}abcdef.0123456789abcdef"),
            Err(TokenError::Malformed),
        ),
        (
            &format!("K10{HASH}::abcdef.0123456789abcdef.x"),
            Err(TokenError::Malformed),
        ),
    ];
    for (text, want) in table {
        let got = Token::parse(text);
        let got = got
            .as_ref()
            .map(|t| (t.ca_hash.as_deref(), t.id.as_str(), t.secret.as_str()))
            .map_err(Clone::clone);
        assert_eq!(got, want.clone(), "{text:?}");
    }
}

#[test]
fn generated_tokens_round_trip_through_their_text() {
    for ca in [None, Some(&b"ca der"[..])] {
        let t = Token::generate(ca);
        assert_eq!(Token::parse(&t.to_text()).unwrap(), t);
        assert_eq!(t.ca_hash.is_some(), t.to_text().starts_with("K10"));
    }
    assert_ne!(Token::generate(None).secret, Token::generate(None).secret);
}

#[test]
fn debug_output_never_shows_the_secret() {
    let t = Token::parse("abcdef.0123456789abcdef").unwrap();
    assert!(!format!("{t:?}").contains("0123456789abcdef"));
}

#[test]
fn hashes_are_sha256_hex() {
    assert_eq!(
        secret_hash("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(ca_hash(b"abc"), secret_hash("abc"));
}

#[test]
fn records_round_trip_through_their_secret_and_never_store_the_secret() {
    let t = Token::parse("abcdef.0123456789abcdef").unwrap();
    let mut user = TokenRecord::new(&t, TokenKind::User, "for alice");
    user.user = Some("alice".into());
    user.groups = vec!["dev".into(), "ops".into()];
    user.expiration = Some("2030-01-02T03:04:05Z".parse().unwrap());
    let agent = TokenRecord::new(&t, TokenKind::Agent, "");
    for rec in [user, agent] {
        let secret = rec.to_secret();
        assert!(!secret.to_string().contains("0123456789abcdef"));
        assert_eq!(secret["metadata"]["name"], "corral-token-abcdef");
        assert_eq!(TokenRecord::from_secret(&secret).unwrap(), Some(rec));
    }
}

#[test]
fn malformed_records_name_the_field() {
    let t = Token::parse("abcdef.0123456789abcdef").unwrap();
    let good = TokenRecord::new(&t, TokenKind::Agent, "").to_secret();
    let opaque = serde_json::json!({"type": "Opaque", "data": {}});
    assert_eq!(TokenRecord::from_secret(&opaque).unwrap(), None);
    let table: &[(&str, &str)] = &[
        ("token-id", "!!"),
        ("expiration", "bm90IGEgdGltZQ=="),
        ("kind", "b3RoZXI="),
        ("user", ""),
    ];
    for (key, value) in table {
        let mut s = good.clone();
        s["data"][*key] = serde_json::json!(value);
        if *key == "user" {
            s["data"]["kind"] = serde_json::json!("dXNlcg==");
        }
        match TokenRecord::from_secret(&s) {
            Err(TokenError::Record { field, .. }) => assert_eq!(field, *key),
            other => panic!("{key}: {other:?}"),
        }
    }
}

#[test]
fn ttls_parse_into_durations() {
    use std::time::Duration;
    let table: &[(&str, Option<Option<Duration>>)] = &[
        ("24h", Some(Some(Duration::from_secs(86_400)))),
        ("30m", Some(Some(Duration::from_secs(1_800)))),
        ("7d", Some(Some(Duration::from_secs(604_800)))),
        ("90s", Some(Some(Duration::from_secs(90)))),
        ("0", Some(None)),
        ("0h", None),
        ("h", None),
        ("24", None),
        ("24y", None),
        ("-1h", None),
    ];
    for (s, want) in table {
        assert_eq!(parse_ttl(s), *want, "{s:?}");
    }
}
