//! Kubernetes resource quantities (`500m`, `1Gi`, `1.5`, `2e3`), parsed as
//! `resource.ParseQuantity` accepts them and held exactly in nano-units, so
//! that policy code compares numbers, never strings: `1Gi` > `1000Mi`,
//! `500m` < `1`, `1e3` == `1k`.

use std::str::FromStr;

/// An exact quantity in nano-units (10⁻⁹). Like Kubernetes, a value finer
/// than a nano is rounded up to the next nano.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    nanos: i128,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {input:?}: {reason}")]
pub struct QuantityError {
    pub input: String,
    pub reason: &'static str,
}

/// Beyond 10³⁸ nano-units i128 cannot hold the value; no resource is that large.
const MAX_POW10: i64 = 38;

impl Quantity {
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let fail = |reason| QuantityError {
            input: s.to_owned(),
            reason,
        };
        if s.is_empty() {
            return Err(fail("empty"));
        }
        let bytes = s.as_bytes();
        let mut pos = 0;
        let negative = match bytes[0] {
            b'-' => {
                pos += 1;
                true
            }
            b'+' => {
                pos += 1;
                false
            }
            _ => false,
        };
        let digits = |from: usize| {
            from + bytes[from..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
        };
        let int_end = digits(pos);
        let integer = &s[pos..int_end];
        pos = int_end;
        let mut fraction = "";
        if bytes.get(pos) == Some(&b'.') {
            let frac_end = digits(pos + 1);
            fraction = &s[pos + 1..frac_end];
            pos = frac_end;
        }
        let suffix = &s[pos..];
        let (exp10, exp2) = match suffix {
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
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            _ => {
                let exponent = suffix.strip_prefix(['e', 'E']).ok_or(fail(
                    "unknown suffix (use n u m k M G T P E, Ki Mi Gi Ti Pi Ei, or e<exponent>)",
                ))?;
                let body = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
                if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(fail("an exponent needs digits: 1e3, 5E-2"));
                }
                // Anything past ±1000 is far outside i128 either way; saturate.
                let magnitude: i64 = body.parse().unwrap_or(i64::MAX).min(1000);
                (
                    if exponent.starts_with('-') {
                        -magnitude
                    } else {
                        magnitude
                    },
                    0,
                )
            }
        };
        // The significant digits, as one integer, and where the point was.
        let fraction = fraction.trim_end_matches('0');
        let mut mantissa: i128 = 0;
        for b in integer.bytes().chain(fraction.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(b - b'0')))
                .ok_or(fail("too many digits"))?;
        }
        if mantissa == 0 {
            return Ok(Quantity { nanos: 0 });
        }
        let mut value = mantissa
            .checked_mul(1i128 << exp2)
            .ok_or(fail("too large"))?;
        let scale = exp10 + 9 - fraction.len() as i64;
        if scale >= 0 {
            if scale > MAX_POW10 {
                return Err(fail("too large"));
            }
            value = value
                .checked_mul(10i128.pow(scale as u32))
                .ok_or(fail("too large"))?;
        } else if -scale > MAX_POW10 {
            // Finer than a nano: rounds up to one.
            value = 1;
        } else {
            let d = 10i128.pow((-scale) as u32);
            value = value / d + i128::from(value % d != 0);
        }
        Ok(Quantity {
            nanos: if negative { -value } else { value },
        })
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn nanos(s: &str) -> i128 {
        q(s).nanos
    }

    #[test]
    fn binary_gibibyte_exceeds_thousand_mebibytes() {
        assert!(q("1Gi") > q("1000Mi"));
        assert!(q("1G") < q("1Gi"));
        assert_eq!(q("1024Mi"), q("1Gi"));
    }

    #[test]
    fn millicores_compare_with_cores() {
        assert!(q("500m") < q("1"));
        assert_eq!(q("0.5"), q("500m"));
        assert_eq!(q("1500m"), q("1.5"));
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("2E-3"), q("2m"));
        assert_eq!(q("1e+3"), q("1k"));
    }

    #[test]
    fn every_suffix_has_its_value() {
        for (s, n) in [
            ("1n", 1i128),
            ("1u", 1_000),
            ("1m", 1_000_000),
            ("1", 1_000_000_000),
            ("1k", 1_000_000_000_000),
            ("1M", 1_000_000_000_000_000),
            ("1G", 10i128.pow(18)),
            ("1T", 10i128.pow(21)),
            ("1P", 10i128.pow(24)),
            ("1E", 10i128.pow(27)),
            ("1Ki", 1024 * 10i128.pow(9)),
            ("1Mi", (1 << 20) * 10i128.pow(9)),
            ("1Gi", (1 << 30) * 10i128.pow(9)),
            ("1Ti", (1i128 << 40) * 10i128.pow(9)),
            ("1Pi", (1i128 << 50) * 10i128.pow(9)),
            ("1Ei", (1i128 << 60) * 10i128.pow(9)),
        ] {
            assert_eq!(nanos(s), n, "{s}");
        }
    }

    #[test]
    fn fractions_and_signs() {
        assert_eq!(nanos("1.5Gi"), 3 * (1i128 << 29) * 10i128.pow(9));
        assert_eq!(nanos("0.1"), 100_000_000);
        assert_eq!(nanos("-1"), -1_000_000_000);
        assert_eq!(nanos("+1"), 1_000_000_000);
        assert!(q("-1").is_negative());
        // Kubernetes accepts a bare point on either side.
        assert_eq!(q(".5"), q("500m"));
        assert_eq!(q("5."), q("5"));
        assert_eq!(q("007"), q("7"));
    }

    #[test]
    fn values_finer_than_a_nano_round_up() {
        assert_eq!(nanos("0.1n"), 1);
        assert_eq!(nanos("1.0000000001"), 1_000_000_001);
        assert_eq!(nanos("1e-20"), 1);
        assert_eq!(nanos("1e-99999"), 1);
        assert_eq!(nanos("-0.1n"), -1);
    }

    #[test]
    fn zero_in_every_form() {
        for s in ["0", "0m", "0Gi", "0.0", "-0", "0e9", "000", "0.000n"] {
            assert!(q(s).is_zero(), "{s}");
        }
    }

    #[test]
    fn large_values_up_to_the_limit_and_an_error_past_it() {
        assert_eq!(nanos("1e20"), 10i128.pow(29));
        assert_eq!(nanos("100Ei"), 100 * (1i128 << 60) * 10i128.pow(9));
        for s in [
            "1e30",
            "1e999999",
            "1e99999999999999999999",
            "99999999999999999999999999999999999999999",
        ] {
            let e = Quantity::parse(s).unwrap_err();
            assert!(
                e.reason == "too large" || e.reason == "too many digits",
                "{s}: {e}"
            );
        }
    }

    #[test]
    fn malformed_quantities_are_refused_with_the_input_quoted() {
        for s in [
            "", "1.5.5", "1KB", "1gi", "1K", "abc", "1 Gi", " 1", "1e", "1e+", "1ee3", "1Gi2",
            "--1", "1m5", "0x10", "1.5e3.2",
        ] {
            let e = Quantity::parse(s).expect_err(s);
            assert!(
                e.to_string()
                    .starts_with(&format!("invalid quantity {s:?}")),
                "{e}"
            );
        }
    }
}
