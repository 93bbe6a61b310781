//! Kubernetes resource quantities (`100m`, `0.5`, `128Mi`, `1e3`) turned into the integers the
//! scheduler adds up: millicores for cpu, bytes for memory, plain counts for the rest.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid quantity {value:?}: {reason}")]
pub struct QuantityError {
    pub value: String,
    pub reason: &'static str,
}

/// Parses a quantity and returns it multiplied by `scale` (1000 for millicores), rounded up as
/// Kubernetes does when it converts to a coarser unit.
pub fn parse_scaled(value: &str, scale: f64) -> Result<i64, QuantityError> {
    let err = |reason| QuantityError {
        value: value.to_string(),
        reason,
    };
    let s = value.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number: f64 = number.parse().map_err(|_| err("not a number"))?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().map_err(|_| err("bad exponent"))?;
            10f64.powi(exp)
        }
        _ => return Err(err("unknown suffix")),
    };
    let v = number * multiplier * scale;
    if !v.is_finite() || v < 0.0 {
        return Err(err("out of range"));
    }
    // Rounding up matches Kubernetes (`0.1m` cpu is 1m), but a float product such as
    // 0.1 * 1000 must not become 101.
    let rounded = v.round();
    let v = if (v - rounded).abs() < 1e-6 {
        rounded
    } else {
        v.ceil()
    };
    if v > i64::MAX as f64 {
        return Err(err("out of range"));
    }
    Ok(v as i64)
}

pub fn cpu_millis(value: &str) -> Result<i64, QuantityError> {
    parse_scaled(value, 1000.0)
}

pub fn value(value: &str) -> Result<i64, QuantityError> {
    parse_scaled(value, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_like_kubernetes() {
        for (q, cpu, plain) in [
            ("1", 1000, 1),
            ("100m", 100, 1),
            ("0.5", 500, 1),
            ("0.1", 100, 1),
            ("2.5", 2500, 3),
            ("1k", 1_000_000, 1000),
            ("1e3", 1_000_000, 1000),
        ] {
            assert_eq!(cpu_millis(q), Ok(cpu), "cpu {q}");
            assert_eq!(value(q), Ok(plain), "value {q}");
        }
        assert_eq!(value("128Mi"), Ok(128 * 1024 * 1024));
        assert_eq!(value("32Gi"), Ok(32 * 1024 * 1024 * 1024));
        assert_eq!(value("1G"), Ok(1_000_000_000));
        assert_eq!(value("1500Ki"), Ok(1500 * 1024));
    }

    #[test]
    fn bad_quantities_name_the_value() {
        for q in ["", "abc", "1Xi", "-1", "1e"] {
            let e = value(q).unwrap_err();
            assert_eq!(e.value, q);
            assert!(e.to_string().starts_with("invalid quantity"), "{e}");
        }
    }
}
