//! Kubernetes resource quantities (`100m`, `0.5`, `128Mi`, `1e3`, `1Ei`): the one parser, with
//! the grammar of apimachinery's `resource.ParseQuantity`, and the conversions its users need
//! (millicores as `MilliValue`, whole units as `Value`, both rounded up; a float for display).

use std::str::FromStr;

use thiserror::Error;

/// Kubernetes' own words for a string that is not a quantity (admission uses them).
pub const QUANTITY_FORMAT_MSG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// Significant digits kept exactly; later ones only make the value round up.
const KEPT_DIGITS: usize = 36;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid quantity {value:?}: {reason}")]
pub struct QuantityError {
    pub value: String,
    pub reason: QuantityErrorReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum QuantityErrorReason {
    #[error("empty")]
    Empty,
    #[error("not a number")]
    NotANumber,
    #[error("unknown suffix")]
    UnknownSuffix,
    #[error("bad exponent")]
    BadExponent,
    #[error("must be greater than or equal to 0")]
    Negative,
    #[error("out of range")]
    OutOfRange,
}

impl QuantityErrorReason {
    /// True when the string is not a quantity at all (as opposed to a quantity that does not
    /// fit a use): Kubernetes refuses these when it decodes the object.
    pub fn is_format(self) -> bool {
        !matches!(self, Self::Negative | Self::OutOfRange)
    }
}

/// A parsed quantity: `digits × 10^exp10 × 1024^pow1024`, with its sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    digits: u128,
    exp10: i32,
    pow1024: u32,
    /// Non-zero digits beyond [`KEPT_DIGITS`] were dropped: the value is a little larger.
    inexact: bool,
}

impl Quantity {
    /// Parses `s` exactly as `resource.ParseQuantity` does (no surrounding spaces).
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let err = |reason| QuantityError {
            value: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(err(QuantityErrorReason::Empty));
        }
        let (negative, rest) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if frac.contains('.') || (whole.is_empty() && frac.is_empty()) {
            return Err(err(QuantityErrorReason::NotANumber));
        }
        let (exp_suffix, pow1024) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 1),
            "Mi" => (0, 2),
            "Gi" => (0, 3),
            "Ti" => (0, 4),
            "Pi" => (0, 5),
            "Ei" => (0, 6),
            e if e.len() > 1 && e.starts_with(['e', 'E']) => {
                let exp = &e[1..];
                let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err(if suffix_shaped(e) {
                        QuantityErrorReason::BadExponent
                    } else {
                        QuantityErrorReason::UnknownSuffix
                    }));
                }
                let exp: i32 = exp
                    .parse()
                    .map_err(|_| err(QuantityErrorReason::OutOfRange))?;
                (exp, 0)
            }
            _ => return Err(err(QuantityErrorReason::UnknownSuffix)),
        };
        // value = int(whole ++ frac) × 10^(suffix − len(frac)); leading zeros carry no
        // precision, digits past KEPT_DIGITS only scale the value (and round it up).
        let significant = whole
            .bytes()
            .chain(frac.bytes())
            .skip_while(|b| *b == b'0')
            .map(|b| u128::from(b - b'0'));
        let mut digits: u128 = 0;
        let mut dropped: usize = 0;
        let mut inexact = false;
        for (i, d) in significant.enumerate() {
            if i < KEPT_DIGITS {
                digits = digits * 10 + d;
            } else {
                dropped += 1;
                inexact |= d != 0;
            }
        }
        let exp10 = i32::try_from(dropped)
            .ok()
            .zip(i32::try_from(frac.len()).ok())
            .and_then(|(dropped, frac)| exp_suffix.checked_add(dropped)?.checked_sub(frac))
            .ok_or_else(|| err(QuantityErrorReason::OutOfRange))?;
        Ok(Quantity {
            negative: negative && (digits != 0 || inexact),
            digits,
            exp10,
            pow1024,
            inexact,
        })
    }

    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// `MilliValue`: the value times 1000, rounded up away from zero.
    pub fn milli_value(&self) -> Option<i64> {
        self.scaled(3)
    }

    /// The value times 10^9 (nanounits: metrics' CPU), rounded up away from zero.
    pub fn nano_value(&self) -> Option<i64> {
        self.scaled(9)
    }

    /// `Value`: the value in whole units, rounded up away from zero.
    pub fn value(&self) -> Option<i64> {
        self.scaled(0)
    }

    /// The value as a float (for display and ratios; not for sums).
    pub fn as_f64(&self) -> f64 {
        let v = self.digits as f64 * 10f64.powi(self.exp10) * 1024f64.powi(self.pow1024 as i32);
        if self.negative {
            -v
        } else {
            v
        }
    }

    /// `|value| × 10^shift` rounded up, with the sign; `None` when it does not fit an i64.
    fn scaled(&self, shift: i32) -> Option<i64> {
        let mut n = self
            .digits
            .checked_mul(1024u128.checked_pow(self.pow1024)?)?;
        let exp = self.exp10.checked_add(shift)?;
        let mut exact = !self.inexact;
        if exp >= 0 {
            n = n.checked_mul(10u128.checked_pow(exp.unsigned_abs())?)?;
        } else {
            match 10u128.checked_pow(exp.unsigned_abs()) {
                Some(div) => {
                    exact &= n % div == 0;
                    n /= div;
                }
                None => {
                    exact &= n == 0;
                    n = 0;
                }
            }
        }
        if !exact {
            n = n.checked_add(1)?;
        }
        let v = i64::try_from(n).ok()?;
        Some(if self.negative { -v } else { v })
    }
}

/// Whether `s` has the shape of a suffix in Kubernetes' grammar (`[eEinumkKMGTP]*[-+]?[0-9]*`).
fn suffix_shaped(s: &str) -> bool {
    let rest = s.trim_start_matches(|c: char| "eEinumkKMGTP".contains(c));
    let rest = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    rest.bytes().all(|b| b.is_ascii_digit())
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

fn non_negative(
    value: &str,
    convert: impl Fn(&Quantity) -> Option<i64>,
) -> Result<i64, QuantityError> {
    let q = Quantity::parse(value)?;
    let err = |reason| QuantityError {
        value: value.to_string(),
        reason,
    };
    if q.is_negative() {
        return Err(err(QuantityErrorReason::Negative));
    }
    convert(&q).ok_or_else(|| err(QuantityErrorReason::OutOfRange))
}

/// A resource amount in millicores (cpu): `MilliValue` of a non-negative quantity.
pub fn cpu_millis(value: &str) -> Result<i64, QuantityError> {
    non_negative(value, Quantity::milli_value)
}

/// A resource amount in whole units (bytes, pods): `Value` of a non-negative quantity.
pub fn value(value: &str) -> Result<i64, QuantityError> {
    non_negative(value, Quantity::value)
}

/// A count of nanounits in Kubernetes' canonical decimal form, as the API server writes a
/// quantity made at scale -9 (metrics-server's CPU): the largest of `""`, `m`, `u`, `n` that is
/// exact (`2`, `1500m`, `123456n`).
pub fn format_nano(n: u64) -> String {
    for (div, suffix) in [(1_000_000_000, ""), (1_000_000, "m"), (1_000, "u")] {
        if n.is_multiple_of(div) {
            return format!("{}{suffix}", n / div);
        }
    }
    format!("{n}n")
}

/// Bytes in Kubernetes' canonical binary form: the largest of `Ki`..`Ei` that is exact, else
/// plain bytes (`1234Ki`, `5Gi`, `1000`).
pub fn format_bytes(n: u64) -> String {
    if n == 0 {
        return "0".into();
    }
    let mut value = n;
    let mut suffix = "";
    for next in ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"] {
        if !value.is_multiple_of(1024) {
            break;
        }
        value /= 1024;
        suffix = next;
    }
    format!("{value}{suffix}")
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn formatted_quantities_are_canonical_and_parse_back() {
        for (n, want) in [
            (0, "0"),
            (2_000_000_000, "2"),
            (1_500_000_000, "1500m"),
            (123_456, "123456n"),
            (5_000, "5u"),
        ] {
            assert_eq!(format_nano(n), want);
            let q = Quantity::parse(want).unwrap();
            assert_eq!(q.as_f64() * 1e9, n as f64, "{want}");
        }
        for (n, want) in [
            (0, "0"),
            (1000, "1000"),
            (1024, "1Ki"),
            (1_263_616, "1234Ki"),
            (5 << 30, "5Gi"),
            (3 << 20, "3Mi"),
        ] {
            assert_eq!(format_bytes(n), want);
            assert_eq!(value(want).unwrap(), n as i64, "{want}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use QuantityErrorReason::*;

    #[test]
    fn quantities_parse_like_kubernetes() {
        const GI: i64 = 1 << 30;
        // (quantity, MilliValue, Value, as f64)
        let cases: &[(&str, Option<i64>, Option<i64>, f64)] = &[
            ("0", Some(0), Some(0), 0.0),
            ("1", Some(1000), Some(1), 1.0),
            ("2", Some(2000), Some(2), 2.0),
            ("100m", Some(100), Some(1), 0.1),
            ("500m", Some(500), Some(1), 0.5),
            ("0.5", Some(500), Some(1), 0.5),
            ("0.1", Some(100), Some(1), 0.1),
            (".5", Some(500), Some(1), 0.5),
            ("1.", Some(1000), Some(1), 1.0),
            ("2.5", Some(2500), Some(3), 2.5),
            ("+2", Some(2000), Some(2), 2.0),
            ("0.0001", Some(1), Some(1), 0.0001),
            ("100n", Some(1), Some(1), 1e-7),
            ("1500u", Some(2), Some(1), 0.0015),
            ("1k", Some(1_000_000), Some(1000), 1e3),
            ("1e3", Some(1_000_000), Some(1000), 1e3),
            ("1E3", Some(1_000_000), Some(1000), 1e3),
            ("1.5e-3", Some(2), Some(1), 0.0015),
            ("2M", Some(2_000_000_000), Some(2_000_000), 2e6),
            ("1G", Some(1_000_000_000_000), Some(1_000_000_000), 1e9),
            (
                "1T",
                Some(1_000_000_000_000_000),
                Some(1_000_000_000_000),
                1e12,
            ),
            (
                "1P",
                Some(1_000_000_000_000_000_000),
                Some(1_000_000_000_000_000),
                1e15,
            ),
            ("1E", None, Some(1_000_000_000_000_000_000), 1e18),
            (
                "1500Ki",
                Some(1500 * 1024 * 1000),
                Some(1500 * 1024),
                1_536_000.0,
            ),
            (
                "128Mi",
                Some((128 << 20) * 1000),
                Some(128 << 20),
                134_217_728.0,
            ),
            (
                "1.5Gi",
                Some(3 * GI / 2 * 1000),
                Some(3 * GI / 2),
                1.5 * GI as f64,
            ),
            (
                "32Gi",
                Some(32 * GI * 1000),
                Some(32 * GI),
                32.0 * GI as f64,
            ),
            ("1Ti", Some(1000 << 40), Some(1 << 40), (1u64 << 40) as f64),
            ("1Pi", Some(1000 << 50), Some(1 << 50), (1u64 << 50) as f64),
            ("1Ei", None, Some(1 << 60), (1u64 << 60) as f64),
            ("-1", Some(-1000), Some(-1), -1.0),
            ("-0.5m", Some(-1), Some(-1), -0.0005),
            ("-0", Some(0), Some(0), 0.0),
            (
                "0.000000000000000000000000000000000000000001",
                Some(1),
                Some(1),
                1e-42,
            ),
            (
                "1.0000000000000000000000000000000000000001",
                Some(1001),
                Some(2),
                1.0,
            ),
            (
                "10000000000000000000000000000000000000000",
                None,
                None,
                1e40,
            ),
        ];
        for (q, milli, value, float) in cases {
            let parsed = Quantity::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
            assert_eq!(parsed.milli_value(), *milli, "MilliValue of {q}");
            assert_eq!(parsed.value(), *value, "Value of {q}");
            assert!(
                (parsed.as_f64() - float).abs() <= float.abs() * 1e-12,
                "{q} as f64: {} != {float}",
                parsed.as_f64()
            );
        }
        assert_eq!(cpu_millis("250m"), Ok(250));
        assert_eq!(value("64Mi"), Ok(64 << 20));
    }

    #[test]
    fn strings_that_are_not_quantities_are_refused_with_a_reason() {
        for (q, reason) in [
            ("", Empty),
            ("abc", NotANumber),
            ("lots", NotANumber),
            (".", NotANumber),
            ("-", NotANumber),
            ("m", NotANumber),
            ("1.2.3", NotANumber),
            (" 1", NotANumber),
            ("1 ", UnknownSuffix),
            ("1x", UnknownSuffix),
            ("1Xi", UnknownSuffix),
            ("1ki", UnknownSuffix),
            ("1e", UnknownSuffix),
            ("1mm", UnknownSuffix),
            ("1e+", BadExponent),
            ("1e3.5", UnknownSuffix),
        ] {
            let e = Quantity::parse(q).unwrap_err();
            assert_eq!((e.value.as_str(), e.reason), (q, reason), "{q:?}");
            assert!(e.reason.is_format(), "{q:?}");
            assert!(e.to_string().starts_with("invalid quantity"), "{e}");
        }
    }

    #[test]
    fn resource_amounts_are_never_negative_and_fit_an_i64() {
        for (q, reason) in [
            ("-1", Negative),
            ("-100m", Negative),
            ("1E", OutOfRange),
            ("1e100", OutOfRange),
            ("lots", NotANumber),
        ] {
            let e = cpu_millis(q).unwrap_err();
            assert_eq!((e.value.as_str(), e.reason), (q, reason), "{q:?}");
        }
        assert_eq!(value("-0"), Ok(0));
        assert_eq!(value("1E").map(|v| v > 0), Ok(true));
    }
}
