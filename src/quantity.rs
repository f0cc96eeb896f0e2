//! Kubernetes resource quantities (`500m`, `1`, `1Gi`, `1.5`, `2e3`, `100M`),
//! parsed as `k8s.io/apimachinery/pkg/api/resource.ParseQuantity` accepts
//! them and held exactly in nano-units, so policy code compares numbers and
//! never strings: `1Gi` > `1000Mi`, `500m` < `1`, `1G` < `1Gi`,
//! `1e3` == `1k`, `0.5` == `500m`.
//!
//! Grammar (as in Kubernetes):
//!
//! ```text
//! <quantity>        ::= <signedNumber><suffix>
//! <signedNumber>    ::= <number> | "+" <number> | "-" <number>
//! <number>          ::= <digits> | <digits> "." <digits> | <digits> "." | "." <digits>
//! <suffix>          ::= <binarySI> | <decimalSI> | <decimalExponent>
//! <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei
//! <decimalSI>       ::= n | u | m | "" | k | M | G | T | P | E
//! <decimalExponent> ::= ("e" | "E") ["+" | "-"] <digits>
//! ```
//!
//! Like Kubernetes, a value finer than a nano is rounded away from zero to the
//! next nano (`0.1n` is `1n`, `-0.1n` is `-1n`), and a binary-SI value is
//! capped, silently, at 2^63-1 units (`9Ei` is 9223372036854775807).
//!
//! Where Kubernetes is looser this parser refuses, on purpose:
//! - a quantity with no digit at all (`m`, `Gi`, `-`, `.`): Kubernetes reads
//!   some of these as zero (apimachinery issue #165), others not;
//! - an exponent outside `i32` (`1e2147483648`): Kubernetes reads it as 64
//!   bits, then truncates it to 32, so the value silently changes magnitude;
//! - a decimal value beyond `i128` nano-units (about 1.7e29), which
//!   Kubernetes keeps as a big decimal.
//!
//! Like `ParseQuantity`, surrounding whitespace is refused (`" 1"`); only
//! Kubernetes' JSON decoding trims it before parsing.
//!
//! Nothing here allocates or loops in proportion to an exponent: `1e999999`
//! is refused at once.

use std::str::FromStr;

/// Nano-units per unit, as a power of ten.
const NANO_DIGITS: i128 = 9;

/// Kubernetes caps a binary-SI quantity at 2^63-1 units; in nano-units.
const BINARY_CAP_NANOS: u128 = (i64::MAX as u128) * 1_000_000_000;

/// Decimal digits in `u128::MAX`: any integer with more cannot fit.
const U128_DIGITS: usize = 39;

/// An exact Kubernetes quantity, held in nano-units so every comparison is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    nanos: i128,
}

/// Why a string is not a Kubernetes quantity. Every message quotes the input.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum QuantityError {
    /// The input is the empty string.
    #[error("invalid quantity \"\": it is empty")]
    Empty,
    /// No digit before the suffix (`Gi`, `-`, `.`, ` 1`).
    #[error(
        "invalid quantity {input:?}: expected a number (digits, with an optional sign and decimal point) at the start"
    )]
    MissingNumber { input: String },
    /// What follows the number is not a known suffix (`1KB`, `1gi`, `1K`, `1.5.5`).
    #[error(
        "invalid quantity {input:?}: unknown suffix {suffix:?} (expected n u m k M G T P E, Ki Mi Gi Ti Pi Ei, or an exponent such as e3)"
    )]
    UnknownSuffix { input: String, suffix: String },
    /// An `e`/`E` exponent that is not a signed integer (`1e`, `1e+`, `1e3.5`).
    #[error("invalid quantity {input:?}: exponent {exponent:?} is not a signed integer")]
    InvalidExponent { input: String, exponent: String },
    /// An exponent outside the 32-bit range Kubernetes keeps (`1e2147483648`).
    #[error("invalid quantity {input:?}: exponent {exponent:?} is out of range")]
    ExponentOutOfRange { input: String, exponent: String },
    /// The value does not fit in `i128` nano-units (about ±1.7e29).
    #[error("invalid quantity {input:?}: value is too large (the limit is about ±1.7e29)")]
    TooLarge { input: String },
}

/// What the suffix multiplies the number by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Multiplier {
    /// 10^n: decimal SI suffixes and exponents.
    Pow10(i32),
    /// 2^n: binary SI suffixes; Kubernetes caps these at 2^63-1 units.
    Pow2(u32),
}

impl Quantity {
    /// Parses a quantity as Kubernetes' `resource.ParseQuantity` does (see the
    /// module documentation for the few inputs refused on purpose).
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        if s.is_empty() {
            return Err(QuantityError::Empty);
        }
        let (negative, unsigned) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (integer, rest) = split_digits(unsigned);
        let (fraction, suffix) = match rest.strip_prefix('.') {
            Some(after_point) => split_digits(after_point),
            None => ("", rest),
        };
        if integer.is_empty() && fraction.is_empty() {
            return Err(QuantityError::MissingNumber {
                input: s.to_owned(),
            });
        }
        let multiplier = interpret_suffix(s, suffix)?;

        // The number is D * 10^-len(fraction), D being all its digits; in nanos
        // it is D * 10^(9 - len(fraction)) times the suffix's multiplier.
        let significant: Vec<u8> = integer
            .bytes()
            .chain(fraction.bytes())
            .skip_while(|&b| b == b'0')
            .map(|b| b - b'0')
            .collect();
        let fraction_len = i128::try_from(fraction.len()).unwrap_or(i128::MAX);
        let (digits, exponent) = match multiplier {
            Multiplier::Pow10(e) => (significant, i128::from(e) + NANO_DIGITS - fraction_len),
            Multiplier::Pow2(b) => (times_pow2(&significant, b), NANO_DIGITS - fraction_len),
        };
        let magnitude = match (ceil_scaled(&digits, exponent), multiplier) {
            (Some(m), Multiplier::Pow10(_)) => m,
            (Some(m), Multiplier::Pow2(_)) => m.min(BINARY_CAP_NANOS),
            (None, Multiplier::Pow2(_)) => BINARY_CAP_NANOS,
            (None, Multiplier::Pow10(_)) => {
                return Err(QuantityError::TooLarge {
                    input: s.to_owned(),
                });
            }
        };
        let nanos = if negative {
            0i128.checked_sub_unsigned(magnitude)
        } else {
            i128::try_from(magnitude).ok()
        };
        nanos
            .map(|nanos| Quantity { nanos })
            .ok_or_else(|| QuantityError::TooLarge {
                input: s.to_owned(),
            })
    }

    /// Whether the quantity is zero, in any spelling (`0`, `0m`, `-0Gi`).
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Whether the quantity is below zero (`-0` is not).
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

/// Splits off the leading ASCII digits.
fn split_digits(s: &str) -> (&str, &str) {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    // Digits are ASCII, so `n` is a character boundary.
    s.split_at(n)
}

/// Reads a suffix as Kubernetes' suffixer does: the fixed SI tables first
/// (so a lone `E` is exa), then `e`/`E` followed by a signed integer.
fn interpret_suffix(input: &str, suffix: &str) -> Result<Multiplier, QuantityError> {
    let multiplier = match suffix {
        "n" => Multiplier::Pow10(-9),
        "u" => Multiplier::Pow10(-6),
        "m" => Multiplier::Pow10(-3),
        "" => Multiplier::Pow10(0),
        "k" => Multiplier::Pow10(3),
        "M" => Multiplier::Pow10(6),
        "G" => Multiplier::Pow10(9),
        "T" => Multiplier::Pow10(12),
        "P" => Multiplier::Pow10(15),
        "E" => Multiplier::Pow10(18),
        "Ki" => Multiplier::Pow2(10),
        "Mi" => Multiplier::Pow2(20),
        "Gi" => Multiplier::Pow2(30),
        "Ti" => Multiplier::Pow2(40),
        "Pi" => Multiplier::Pow2(50),
        "Ei" => Multiplier::Pow2(60),
        _ => match suffix.strip_prefix(['e', 'E']) {
            Some(exponent) if !exponent.is_empty() => {
                Multiplier::Pow10(parse_exponent(input, exponent)?)
            }
            _ => {
                return Err(QuantityError::UnknownSuffix {
                    input: input.to_owned(),
                    suffix: suffix.to_owned(),
                });
            }
        },
    };
    Ok(multiplier)
}

/// Parses `[+-]digits` as an `i32`, leading zeros allowed, in time linear in
/// the text and without ever building a large number.
fn parse_exponent(input: &str, exponent: &str) -> Result<i32, QuantityError> {
    let (negative, digits) = match exponent.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, exponent.strip_prefix('+').unwrap_or(exponent)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QuantityError::InvalidExponent {
            input: input.to_owned(),
            exponent: exponent.to_owned(),
        });
    }
    let out_of_range = || QuantityError::ExponentOutOfRange {
        input: input.to_owned(),
        exponent: exponent.to_owned(),
    };
    let significant = digits.trim_start_matches('0');
    // i32 has at most 10 digits; beyond that it cannot fit.
    if significant.len() > 10 {
        return Err(out_of_range());
    }
    let magnitude = significant
        .bytes()
        .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0'));
    i32::try_from(if negative { -magnitude } else { magnitude }).map_err(|_| out_of_range())
}

/// The decimal digits of `digits * 2^bits` (`bits` <= 60), most significant
/// first, without leading zeros.
fn times_pow2(digits: &[u8], bits: u32) -> Vec<u8> {
    let factor = 1u128 << bits;
    let mut out = Vec::with_capacity(digits.len() + 20);
    let mut carry = 0u128;
    for &d in digits.iter().rev() {
        let t = u128::from(d) * factor + carry;
        out.push((t % 10) as u8);
        carry = t / 10;
    }
    while carry > 0 {
        out.push((carry % 10) as u8);
        carry /= 10;
    }
    out.reverse();
    out
}

/// `ceil(D * 10^exponent)` for the decimal digits `D` (no leading zeros), or
/// `None` when it does not fit in `u128`.
fn ceil_scaled(digits: &[u8], exponent: i128) -> Option<u128> {
    if digits.is_empty() {
        return Some(0);
    }
    let len = i128::try_from(digits.len()).ok()?;
    if exponent >= 0 {
        // D followed by `exponent` zeros: refuse anything over 39 digits
        // before doing any arithmetic, so a huge exponent costs nothing.
        if len + exponent > U128_DIGITS as i128 {
            return None;
        }
        let scale = 10u128.checked_pow(u32::try_from(exponent).ok()?)?;
        accumulate(digits)?.checked_mul(scale)
    } else {
        let below_nano = -exponent;
        if below_nano >= len {
            // 0 < value < 1 nano (D is non-zero): rounds up to one nano.
            return Some(1);
        }
        let split = usize::try_from(len - below_nano).ok()?;
        let (whole, rest) = digits.split_at(split);
        let whole = accumulate(whole)?;
        if rest.iter().any(|&d| d != 0) {
            whole.checked_add(1)
        } else {
            Some(whole)
        }
    }
}

/// The integer spelled by decimal digit values, or `None` past `u128::MAX`.
fn accumulate(digits: &[u8]) -> Option<u128> {
    if digits.len() > U128_DIGITS {
        return None;
    }
    digits.iter().try_fold(0u128, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u128::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const NANO: i128 = 1;
    const MICRO: i128 = 1_000;
    const MILLI: i128 = 1_000_000;
    const UNIT: i128 = 1_000_000_000;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn nanos(s: &str) -> i128 {
        q(s).nanos
    }

    fn err(s: &str) -> QuantityError {
        match Quantity::parse(s) {
            Ok(v) => panic!("{s:?} should be refused, got {v:?}"),
            Err(e) => e,
        }
    }

    fn pow10(n: u32) -> i128 {
        10i128.pow(n)
    }

    fn binary_cap() -> i128 {
        i128::from(i64::MAX) * UNIT
    }

    #[test]
    fn binary_gibibyte_exceeds_thousand_mebibytes() {
        assert!(q("1Gi") > q("1000Mi"));
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert!(q("1023Mi") < q("1Gi"));
    }

    #[test]
    fn half_a_core_is_below_one_core() {
        assert!(q("500m") < q("1"));
        assert_eq!(q("0.5"), q("500m"));
        assert_eq!(q("1500m"), q("1.5"));
        assert!(q("999m") < q("1"));
        assert!(q("1001m") > q("1"));
    }

    #[test]
    fn decimal_gigabyte_is_below_binary_gibibyte() {
        assert!(q("1G") < q("1Gi"));
        assert!(q("1k") < q("1Ki"));
        assert!(q("1E") < q("1Ei"));
        assert_eq!(q("1000M"), q("1G"));
    }

    #[test]
    fn exponent_form_equals_decimal_suffix() {
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("1E3"), q("1k"));
        assert_eq!(q("1e+3"), q("1k"));
        assert_eq!(q("2e-3"), q("2m"));
        assert_eq!(q("2E-3"), q("2m"));
        assert_eq!(q("1e-9"), q("1n"));
        assert_eq!(q("1e0"), q("1"));
        assert_eq!(q("1e9"), q("1G"));
        assert_eq!(q("1E18"), q("1E"));
        assert_eq!(q("2e3"), q("2000"));
        assert_eq!(q("1.2e3"), q("1200"));
        assert_eq!(q("1.3E+6"), q("1300000"));
        assert_eq!(q("0.5e-2"), q("5m"));
    }

    #[test]
    fn every_decimal_suffix_is_its_power_of_ten() {
        for (s, n) in [
            ("7n", 7 * NANO),
            ("7u", 7 * MICRO),
            ("7m", 7 * MILLI),
            ("7", 7 * UNIT),
            ("7k", 7 * pow10(12)),
            ("7M", 7 * pow10(15)),
            ("7G", 7 * pow10(18)),
            ("7T", 7 * pow10(21)),
            ("7P", 7 * pow10(24)),
            ("7E", 7 * pow10(27)),
        ] {
            assert_eq!(nanos(s), n, "{s}");
        }
    }

    #[test]
    fn every_binary_suffix_is_its_power_of_two() {
        for (s, bits) in [
            ("3Ki", 10),
            ("3Mi", 20),
            ("3Gi", 30),
            ("3Ti", 40),
            ("3Pi", 50),
            ("3Ei", 60),
        ] {
            assert_eq!(nanos(s), 3 * (1i128 << bits) * UNIT, "{s}");
        }
    }

    /// Values from Kubernetes' own `TestQuantityParse` table, in nano-units.
    #[test]
    fn kubernetes_parse_table_values() {
        let table: &[(&str, i128)] = &[
            ("0", 0),
            ("0n", 0),
            ("0u", 0),
            ("0m", 0),
            ("0Ki", 0),
            ("0k", 0),
            ("0Mi", 0),
            ("0M", 0),
            ("0Gi", 0),
            ("0G", 0),
            ("0Ti", 0),
            ("0T", 0),
            ("1", UNIT),
            ("1Ki", 1024 * UNIT),
            ("8Ki", 8 * 1024 * UNIT),
            ("7Mi", 7 * (1 << 20) * UNIT),
            ("6Gi", 6 * (1 << 30) * UNIT),
            ("5Ti", 5 * (1i128 << 40) * UNIT),
            ("4Pi", 4 * (1i128 << 50) * UNIT),
            ("3Ei", 3 * (1i128 << 60) * UNIT),
            ("10Ti", 10 * (1i128 << 40) * UNIT),
            ("100Ti", 100 * (1i128 << 40) * UNIT),
            ("5n", 5),
            ("4u", 4 * MICRO),
            ("3m", 3 * MILLI),
            ("9", 9 * UNIT),
            ("8k", 8 * pow10(12)),
            ("50k", 5 * pow10(13)),
            ("7M", 7 * pow10(15)),
            ("6G", 6 * pow10(18)),
            ("5T", 5 * pow10(21)),
            ("40T", 4 * pow10(22)),
            ("300T", 3 * pow10(23)),
            ("2P", 2 * pow10(24)),
            ("1E", pow10(27)),
            ("1E-3", MILLI),
            ("1e3", pow10(12)),
            ("1E6", pow10(15)),
            ("1e9", pow10(18)),
            ("1E12", pow10(21)),
            ("1e13", pow10(22)),
            ("1e14", pow10(23)),
            ("1e15", pow10(24)),
            ("1E18", pow10(27)),
            ("100.035k", 100_035 * UNIT),
            ("0.001", MILLI),
            ("0.0005k", 500 * MILLI),
            ("0.005", 5 * MILLI),
            ("0.05", 50 * MILLI),
            ("0.5", 500 * MILLI),
            ("0.00050k", 500 * MILLI),
            ("0.00500", 5 * MILLI),
            ("0.05000", 50 * MILLI),
            ("0.50000", 500 * MILLI),
            ("0.5e0", 500 * MILLI),
            ("0.5e-1", 50 * MILLI),
            ("0.5e-2", 5 * MILLI),
            ("10.035M", 10_035 * pow10(12)),
            ("1.2e3", 1_200 * UNIT),
            ("1.3E+6", 1_300_000 * UNIT),
            ("1.40e9", 14 * pow10(17)),
            ("1.53E12", 153 * pow10(19)),
            ("1.6e15", 16 * pow10(23)),
            ("1.7E18", 17 * pow10(26)),
            ("9.01", 9_010 * MILLI),
            ("8.1k", 8_100 * UNIT),
            ("7.123456M", 7_123_456 * UNIT),
            ("6.987654321G", 6_987_654_321 * UNIT),
            ("5.444T", 5_444 * pow10(18)),
            ("40.1T", 401 * pow10(20)),
            ("300.2T", 3_002 * pow10(20)),
            ("2.5P", 25 * pow10(23)),
            ("1.01E", 101 * pow10(25)),
            ("3.001n", 4),
            ("1.1E-9", 2),
            ("0.0000000001", 1),
            ("0.0000000005", 1),
            ("0.00000000050", 1),
            ("0.5e-9", 1),
            ("0.9n", 1),
            ("0.00000012345", 124),
            ("0.00000012354", 124),
            ("12E", 12 * pow10(27)),
            ("100.035Ki", 10_243_584 * pow10(7)),
            ("0.5Mi", 524_288 * UNIT),
            ("0.05Gi", 536_870_912 * pow10(8)),
            ("0.025Ti", 274_877_906_944 * pow10(8)),
            ("0.000000000001Ki", 2),
            (".001", MILLI),
            (".0001k", 100 * MILLI),
            ("1.", UNIT),
            ("1.G", pow10(18)),
        ];
        for &(s, want) in table {
            assert_eq!(nanos(s), want, "{s}");
            // Kubernetes' table is also run with an explicit sign on each.
            assert_eq!(nanos(&format!("+{s}")), want, "+{s}");
            assert_eq!(nanos(&format!("-{s}")), -want, "-{s}");
        }
    }

    #[test]
    fn valid_inputs_have_their_exact_values() {
        let table: &[(&str, i128)] = &[
            ("500m", 500 * MILLI),
            ("1", UNIT),
            ("1Gi", (1 << 30) * UNIT),
            ("1000Mi", 1000 * (1 << 20) * UNIT),
            ("1.5", 1_500 * MILLI),
            ("2e3", 2_000 * UNIT),
            ("100M", 100 * pow10(15)),
            ("0.1", 100 * MILLI),
            ("250m", 250 * MILLI),
            ("128974848", 128_974_848 * UNIT),
            ("129e6", 129 * pow10(15)),
            ("129M", 129 * pow10(15)),
            ("123Mi", 123 * (1 << 20) * UNIT),
            ("1.5Gi", 1_610_612_736 * UNIT),
            ("1536Mi", 1_610_612_736 * UNIT),
            ("0.5Ki", 512 * UNIT),
            (".5Ki", 512 * UNIT),
            ("1.Ki", 1024 * UNIT),
            ("1.e3", 1000 * UNIT),
            ("12345.6789", 12_345_678_900_000),
            ("1.000000001", UNIT + 1),
            ("1.0000000010", UNIT + 1),
            ("0.000001", MICRO),
            ("1u", MICRO),
            ("1000n", MICRO),
            ("1000u", MILLI),
            ("0.001k", UNIT),
            ("1.5m", 1_500_000),
            ("2.5u", 2_500),
            ("4n", 4),
        ];
        for &(s, want) in table {
            assert_eq!(nanos(s), want, "{s}");
        }
    }

    #[test]
    fn values_finer_than_a_nano_round_up_to_the_next_nano() {
        for (s, want) in [
            ("0.1n", 1),
            ("0.5n", 1),
            ("0.9n", 1),
            ("1.0001n", 2),
            ("1.1n", 2),
            ("0.0000000001", 1),
            ("1.0000000001", UNIT + 1),
            ("1.0000000000000000000000000000000000000000001", UNIT + 1),
            ("1.000000000000000000000000000000000000000000", UNIT),
            ("1e-10", 1),
            ("1e-20", 1),
            ("1e-99999", 1),
            ("1E-2147483648", 1),
            ("0.000000000001Ki", 2),
            ("0.000000000000001Ei", 1_152_921_504_607),
            ("1.5e-9", 2),
            ("999.0000000001m", 999 * MILLI + 1),
        ] {
            assert_eq!(nanos(s), want, "{s}");
        }
    }

    #[test]
    fn negative_values_finer_than_a_nano_round_away_from_zero() {
        assert_eq!(nanos("-0.1n"), -1);
        assert_eq!(nanos("-1.1n"), -2);
        assert_eq!(nanos("-1e-30"), -1);
        assert_eq!(nanos("-0.00000012345"), -124);
        assert_eq!(nanos("-1.0000000001"), -UNIT - 1);
    }

    #[test]
    fn zero_in_every_spelling_is_zero_and_not_negative() {
        for s in [
            "0",
            "0m",
            "0Gi",
            "0n",
            "0Ei",
            "0E",
            "-0",
            "+0",
            "-0m",
            "-0Gi",
            "00",
            "000",
            "0.0",
            "0.",
            ".0",
            "-.0",
            "0.000n",
            "0e9",
            "0E-9",
            "0e2147483647",
            "0e-2147483648",
            "0000000000000000000000000000000000000000000000000000",
            "0.000000000000000000000000000000000000000000000000000",
        ] {
            let v = q(s);
            assert!(v.is_zero(), "{s}");
            assert!(!v.is_negative(), "{s}");
            assert_eq!(v, q("0"), "{s}");
        }
    }

    #[test]
    fn zero_predicates_and_sign_predicates() {
        assert!(!q("1n").is_zero());
        assert!(!q("-1n").is_zero());
        assert!(q("-1n").is_negative());
        assert!(q("-1e-30").is_negative());
        assert!(!q("1").is_negative());
        assert!(!q("+1").is_negative());
    }

    #[test]
    fn signs_apply_once_to_the_whole_number() {
        assert_eq!(q("+1"), q("1"));
        assert_eq!(nanos("-1"), -UNIT);
        assert_eq!(nanos("-1Gi"), -(1 << 30) * UNIT);
        assert_eq!(nanos("-500m"), -500 * MILLI);
        assert_eq!(nanos("-1e-3"), -MILLI);
        assert_eq!(nanos("-.5"), -500 * MILLI);
        assert_eq!(nanos("+.5"), 500 * MILLI);
        assert_eq!(nanos("-5."), -5 * UNIT);
        assert!(q("-1") < q("0"));
        assert!(q("-2") < q("-1"));
        assert!(q("-1Gi") < q("-1G"));
        for s in ["+-1", "-+1", "--1", "++1", "1-", "1+", "- 1", "−1", "1-3"] {
            assert!(Quantity::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn bare_decimal_point_on_either_side_is_accepted() {
        assert_eq!(q(".5"), q("500m"));
        assert_eq!(q("5."), q("5"));
        assert_eq!(q("1.G"), q("1G"));
        assert_eq!(q(".5Gi"), q("512Mi"));
        assert_eq!(q("5.e-3"), q("5m"));
    }

    #[test]
    fn leading_zeros_are_ignored() {
        assert_eq!(q("007"), q("7"));
        assert_eq!(q("0000.5"), q("500m"));
        assert_eq!(q("00001Ki"), q("1Ki"));
        let long = format!("{}1", "0".repeat(10_000));
        assert_eq!(q(&long), q("1"));
        let long_fraction = format!("0.{}1", "0".repeat(10_000));
        assert_eq!(nanos(&long_fraction), 1);
    }

    #[test]
    fn values_up_to_the_i128_limit_are_exact() {
        assert_eq!(nanos("1e20"), pow10(29));
        assert_eq!(nanos("1.7e29"), 17 * pow10(37));
        assert_eq!(nanos("100000000000000000000000000000"), pow10(38));
        assert_eq!(nanos("170141183460469231731687303715.884105727"), i128::MAX);
        assert_eq!(
            nanos("-170141183460469231731687303715.884105727"),
            -i128::MAX
        );
        // The negative side reaches one nano further.
        assert_eq!(
            nanos("-170141183460469231731687303715.884105728"),
            i128::MIN
        );
        assert_eq!(nanos("170141183460469231731687303715884105727n"), i128::MAX);
        assert_eq!(
            nanos("170141183460469231731687303.715884105727k"),
            i128::MAX
        );
        // Decimal values are not capped at 2^63-1 units, as in Kubernetes.
        assert_eq!(nanos("10E"), pow10(28));
        assert_eq!(
            nanos("18446744073709551616"),
            18_446_744_073_709_551_616 * UNIT
        );
    }

    #[test]
    fn values_past_the_i128_limit_are_errors() {
        for s in [
            "170141183460469231731687303715.884105728",
            "170141183460469231731687303715.8841057271",
            "-170141183460469231731687303715.884105729",
            "-170141183460469231731687303715.8841057281",
            "170141183460469231731687303715884105728n",
            "1.8e29",
            "2e29",
            "1e30",
            "-1e30",
            "1000000000000E",
            "1e38",
            "1e39",
            "1e40",
            "1e999999",
            "1E2147483647",
            "0.1e2147483647",
            "99999999999999999999999999999999999999999",
            "340282366920938463463374607431768211456n",
            "340282366920938463463374607431768211455n",
            "3402823669209384634633746074317682114560n",
        ] {
            assert_eq!(
                err(s),
                QuantityError::TooLarge {
                    input: s.to_owned()
                },
                "{s}"
            );
        }
        let many_digits = "9".repeat(100_000);
        assert!(matches!(err(&many_digits), QuantityError::TooLarge { .. }));
    }

    #[test]
    fn huge_exponents_are_refused_without_work() {
        let start = std::time::Instant::now();
        for _ in 0..1_000 {
            assert!(Quantity::parse("1e2147483647").is_err());
            assert!(Quantity::parse("9E999999999").is_err());
            assert_eq!(nanos("1e-2147483648"), 1);
            assert_eq!(nanos("0e2147483647"), 0);
        }
        // Generous: this takes well under a millisecond.
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn binary_quantities_are_capped_at_int64_max_units_like_kubernetes() {
        let cap = binary_cap();
        assert_eq!(nanos("7Ei"), 7 * (1i128 << 60) * UNIT);
        assert_eq!(nanos("7.99Ei"), 9_211_842_821_808_707_338_240_000_000);
        assert_eq!(nanos("8Ei"), cap);
        assert_eq!(nanos("9Ei"), cap);
        assert_eq!(nanos("9223372036854775807Ki"), cap);
        assert_eq!(nanos("9007199254740992Ki"), cap);
        assert_eq!(nanos("-9Ei"), -cap);
        assert_eq!(nanos(&format!("{}Ki", "9".repeat(1_000))), cap);
        assert_eq!(nanos(&format!("-{}Ei", "9".repeat(1_000))), -cap);
        // Just below the cap stays exact.
        assert_eq!(
            nanos("9007199254740991Ki"),
            9_007_199_254_740_991 * 1024 * UNIT
        );
        // The cap is binary-only: the same magnitude in decimal is not capped.
        assert!(q("10E") > q("9Ei"));
    }

    #[test]
    fn binary_fractions_are_exact_in_nanos() {
        assert_eq!(nanos("1.5Gi"), 3 * (1i128 << 29) * UNIT);
        assert_eq!(nanos("0.1Ki"), 102_400_000_000);
        assert_eq!(nanos("0.001Ki"), 1_024_000_000);
        assert_eq!(nanos(".000000001Ki"), 1_024);
        assert_eq!(nanos("0.3Mi"), 314_572_800_000_000);
        assert_eq!(q("0.5Gi"), q("512Mi"));
        assert_eq!(q("2.25Ti"), q("2304Gi"));
        assert_eq!(
            nanos("1.000000000000000000000000000000000000000000000001Ei"),
            (1i128 << 60) * UNIT + 1
        );
    }

    #[test]
    fn exponents_accept_signs_and_leading_zeros() {
        assert_eq!(q("1e0003"), q("1k"));
        assert_eq!(q("1e+03"), q("1k"));
        assert_eq!(q("1E-03"), q("1m"));
        assert_eq!(q("1e-0"), q("1"));
        assert_eq!(q("1e+0"), q("1"));
        assert_eq!(q("1e00000000000000000000000000003"), q("1k"));
        assert_eq!(q("1e-000000000000000000000000000009"), q("1n"));
    }

    #[test]
    fn exponents_outside_i32_are_errors() {
        for (s, exponent) in [
            ("1e2147483648", "2147483648"),
            ("1e-2147483649", "-2147483649"),
            ("0e2147483648", "2147483648"),
            ("1e99999999999999999999", "99999999999999999999"),
            ("1E+4294967296", "+4294967296"),
        ] {
            assert_eq!(
                err(s),
                QuantityError::ExponentOutOfRange {
                    input: s.to_owned(),
                    exponent: exponent.to_owned()
                },
                "{s}"
            );
        }
    }

    #[test]
    fn malformed_exponents_are_errors() {
        for (s, exponent) in [
            ("1e+", "+"),
            ("1e-", "-"),
            ("1E+", "+"),
            ("-3.01e-", "-"),
            ("1e3.5", "3.5"),
            ("1ee3", "e3"),
            ("1eE3", "E3"),
            ("1e3e3", "3e3"),
            ("1e3Ki", "3Ki"),
            ("1e3k", "3k"),
            ("1e 3", " 3"),
            ("1e3 ", "3 "),
            ("1e_3", "_3"),
            ("1e+-3", "+-3"),
            ("1e--3", "--3"),
            ("1e0x10", "0x10"),
            ("1ei", "i"),
            ("1Ei3", "i3"),
            ("1e３", "３"),
        ] {
            assert_eq!(
                err(s),
                QuantityError::InvalidExponent {
                    input: s.to_owned(),
                    exponent: exponent.to_owned()
                },
                "{s}"
            );
        }
    }

    #[test]
    fn unknown_suffixes_are_errors() {
        for (s, suffix) in [
            ("1KB", "KB"),
            ("1gi", "gi"),
            ("1K", "K"),
            ("1ki", "ki"),
            ("1GI", "GI"),
            ("1GB", "GB"),
            ("1Gib", "Gib"),
            ("1mi", "mi"),
            ("0.1mi", "mi"),
            ("0.1am", "am"),
            ("1i", "i"),
            (".5i", "i"),
            ("-3.01i", "i"),
            ("1e", "e"),
            ("1b", "b"),
            ("1B", "B"),
            ("1g", "g"),
            ("1t", "t"),
            ("1p", "p"),
            ("1N", "N"),
            ("1U", "U"),
            ("1µ", "µ"),
            ("1mm", "mm"),
            ("1kk", "kk"),
            ("1Mii", "Mii"),
            ("1iK", "iK"),
            ("1 Gi", " Gi"),
            ("1Gi ", "Gi "),
            ("1 ", " "),
            ("1\n", "\n"),
            ("1\t", "\t"),
            ("1Gi2", "Gi2"),
            ("1m5", "m5"),
            ("1.5.5", ".5"),
            ("1.1.M", ".M"),
            ("1..5", ".5"),
            ("1+1.0M", "+1.0M"),
            ("1,5", ",5"),
            ("1_000", "_000"),
            ("0x10", "x10"),
            ("1Ｇi", "Ｇi"),
            ("1cpu", "cpu"),
            ("1 core", " core"),
            ("5%", "%"),
            ("1/2", "/2"),
        ] {
            assert_eq!(
                err(s),
                QuantityError::UnknownSuffix {
                    input: s.to_owned(),
                    suffix: suffix.to_owned()
                },
                "{s}"
            );
        }
    }

    #[test]
    fn inputs_without_a_leading_number_are_errors() {
        for s in [
            "Gi", "Ki", "Ei", "m", "k", "E", "e3", "e-20", "-", "+", ".", "-.", "+.", "+.Ki",
            "-.e3", "abc", "aoeu", " 1", "\t1", "\n1", " ", "inf", "NaN", "Infinity", "-inf", "１",
            "٣", "−1", "x", "--", "..5", "-..5",
        ] {
            assert_eq!(
                err(s),
                QuantityError::MissingNumber {
                    input: s.to_owned()
                },
                "{s}"
            );
        }
    }

    #[test]
    fn empty_string_is_an_error() {
        assert_eq!(err(""), QuantityError::Empty);
        assert_eq!(err("").to_string(), r#"invalid quantity "": it is empty"#);
    }

    #[test]
    fn error_messages_quote_the_input() {
        assert_eq!(
            err("1.5.5").to_string(),
            "invalid quantity \"1.5.5\": unknown suffix \".5\" (expected n u m k M G T P E, Ki Mi Gi Ti Pi Ei, or an exponent such as e3)"
        );
        assert_eq!(
            err("Gi").to_string(),
            "invalid quantity \"Gi\": expected a number (digits, with an optional sign and decimal point) at the start"
        );
        assert_eq!(
            err("1e+").to_string(),
            "invalid quantity \"1e+\": exponent \"+\" is not a signed integer"
        );
        assert_eq!(
            err("1e2147483648").to_string(),
            "invalid quantity \"1e2147483648\": exponent \"2147483648\" is out of range"
        );
        assert_eq!(
            err("1e30").to_string(),
            "invalid quantity \"1e30\": value is too large (the limit is about ±1.7e29)"
        );
        // Control characters and quotes are escaped, not written raw.
        assert_eq!(
            err("1\"\n").to_string(),
            "invalid quantity \"1\\\"\\n\": unknown suffix \"\\\"\\n\" (expected n u m k M G T P E, Ki Mi Gi Ti Pi Ei, or an exponent such as e3)"
        );
        for s in [
            "1KB",
            "1gi",
            "1K",
            " 1",
            "1e",
            "1e1e1",
            "--1",
            "1e99999999999",
        ] {
            let message = err(s).to_string();
            assert!(
                message.starts_with(&format!("invalid quantity {s:?}: ")),
                "{message}"
            );
        }
    }

    #[test]
    fn from_str_parses_like_parse() {
        let v: Quantity = "1Gi".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v, q("1Gi"));
        assert_eq!("1KB".parse::<Quantity>(), Quantity::parse("1KB"));
        assert_eq!(Quantity::from_str(""), Err(QuantityError::Empty));
    }

    #[test]
    fn ordering_is_numeric_not_lexical() {
        let mut inputs = vec![
            "1Gi", "100Mi", "2", "500m", "1e3", "999", "1Ki", "-1", "0", "1G", "0.1", "10m", "1.5",
            "-1Gi", "1n",
        ];
        inputs.sort_by_key(|s| q(s));
        assert_eq!(
            inputs,
            vec![
                "-1Gi", "-1", "0", "1n", "10m", "0.1", "500m", "1.5", "2", "999", "1e3", "1Ki",
                "100Mi", "1G", "1Gi"
            ]
        );
    }

    #[test]
    fn equal_values_in_different_spellings_hash_alike() {
        let set: HashSet<Quantity> = [
            "1k", "1e3", "1000", "1000000m", "1000.0", "1E3", "+1k", ".001M",
        ]
        .into_iter()
        .map(q)
        .collect();
        assert_eq!(set.len(), 1);
    }

    /// Any text at all yields a value or an error, never a panic, and a
    /// value re-parses the same from its sign-flipped spelling.
    #[test]
    fn arbitrary_strings_never_panic() {
        const ALPHABET: [&str; 30] = [
            "0",
            "1",
            "5",
            "9",
            ".",
            "+",
            "-",
            "e",
            "E",
            "i",
            "n",
            "u",
            "m",
            "k",
            "K",
            "M",
            "G",
            "T",
            "P",
            " ",
            "x",
            "µ",
            "１",
            "\u{0}",
            "\"",
            "00000000000000000000",
            "99999999999",
            "e2147483647",
            "e-2147483648",
            "Ei",
        ];
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..50_000 {
            let len = next() % 10;
            let s: String = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            if let Ok(v) = Quantity::parse(&s)
                && !s.starts_with(['+', '-'])
                && !v.is_zero()
                && let Ok(negated) = Quantity::parse(&format!("-{s}"))
            {
                assert!(negated.is_negative(), "{s:?}");
                assert_eq!(negated.nanos.checked_neg(), Some(v.nanos), "{s:?}");
            }
        }
    }

    /// Spellings that must agree, over many pseudo-random mantissas.
    #[test]
    fn equivalent_spellings_agree_for_many_values() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2_000 {
            let m = next() % 1_000_000_000_000;
            let whole = m / 1000;
            let milli = m % 1000;
            // m milli-units, spelled four ways.
            let as_milli = q(&format!("{m}m"));
            assert_eq!(as_milli, q(&format!("{whole}.{milli:03}")), "{m}");
            assert_eq!(as_milli, q(&format!("{m}e-3")), "{m}");
            assert_eq!(as_milli, q(&format!("{}u", u128::from(m) * 1000)), "{m}");
            assert_eq!(as_milli.nanos, i128::from(m) * MILLI, "{m}");
            // Binary suffixes are exact multiples of 1024.
            let n = next() % 10_000_000;
            assert_eq!(q(&format!("{n}Ki")), q(&(u128::from(n) * 1024).to_string()));
            assert_eq!(
                q(&format!("{n}Mi")),
                q(&format!("{}Ki", u128::from(n) * 1024))
            );
            assert_eq!(
                q(&format!("{n}Gi")),
                q(&format!("{}Mi", u128::from(n) * 1024))
            );
            // Negation is symmetric.
            assert_eq!(q(&format!("-{m}m")).nanos, -as_milli.nanos);
        }
    }
}
