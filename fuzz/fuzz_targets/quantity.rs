//! Quantities (`api/src/rules/quantity.rs`): any string either parses or is refused with a
//! reason, and what parses has Kubernetes' shape and consistent conversions.
#![no_main]

use corral_api::rules::quantity::{self, Quantity};
use libfuzzer_sys::fuzz_target;

/// `^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$`, Kubernetes' outer grammar.
fn kubernetes_shaped(s: &str) -> bool {
    let rest = s.strip_prefix(['+', '-']).unwrap_or(s);
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    if number_end == 0 {
        return false;
    }
    let suffix = &rest[number_end..];
    let suffix = suffix.trim_start_matches(|c: char| "eEinumkKMGTP".contains(c));
    let suffix = suffix.strip_prefix(['+', '-']).unwrap_or(suffix);
    suffix.bytes().all(|b| b.is_ascii_digit())
}

/// `ceil(|x| / 1000)` from `ceil(|x|·1000)`, with the sign.
fn value_from_milli(milli: i64) -> i64 {
    let magnitude = milli.unsigned_abs().div_ceil(1000) as i64;
    if milli < 0 {
        -magnitude
    } else {
        magnitude
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = Quantity::parse(s);
    let Ok(q) = parsed else {
        // The non-negative helpers refuse what the parser refuses.
        assert!(quantity::cpu_millis(s).is_err());
        assert!(quantity::value(s).is_err());
        return;
    };
    assert!(kubernetes_shaped(s), "{s:?} parsed but is not a quantity");
    let (milli, value) = (q.milli_value(), q.value());
    // Both round up away from zero, so Value is MilliValue / 1000 rounded up.
    if let (Some(m), Some(v)) = (milli, value) {
        assert_eq!(v, value_from_milli(m), "{s:?}: value {v} vs milli {m}");
    }
    if milli.is_some() {
        assert!(
            value.is_some(),
            "{s:?}: the milli value fits but the value does not"
        );
    }
    let f = q.as_f64();
    assert!(
        !q.is_negative() || f <= 0.0,
        "{s:?}: negative but as_f64 {f}"
    );
    assert!(
        q.is_negative() || f >= 0.0 || f.is_nan(),
        "{s:?}: as_f64 {f}"
    );
    // The helpers are the parser plus a sign check.
    let want_millis = if q.is_negative() { None } else { milli };
    assert_eq!(quantity::cpu_millis(s).ok(), want_millis, "{s:?}");
    let want_value = if q.is_negative() { None } else { value };
    assert_eq!(quantity::value(s).ok(), want_value, "{s:?}");
    // Suffixes scale exactly: `x` in units is `xm` in thousandths, `xk` is x·1000.
    let bare = s.strip_prefix(['+', '-']).unwrap_or(s);
    if bare.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let m = Quantity::parse(&format!("{s}m")).expect("a number with m is a quantity");
        assert_eq!(m.milli_value(), value, "{s:?}m vs {s:?}");
        if value.is_some() {
            assert_eq!(m.value(), value_of_thousandths(&q), "{s:?}m vs {s:?}");
        }
        let k = Quantity::parse(&format!("{s}k")).expect("a number with k is a quantity");
        assert_eq!(k.value(), milli, "{s:?}k vs {s:?}");
        assert_eq!(k.is_negative(), q.is_negative(), "{s:?}k");
    }
});

/// `x m` in whole units is `ceil(x / 1000)`: the value of `x` thousandths.
fn value_of_thousandths(q: &Quantity) -> Option<i64> {
    // Value(x m) = ceil(|x| / 1000) = ceil(ceil(|x|) / 1000) for the rounded value of x.
    q.value().map(value_from_milli)
}
