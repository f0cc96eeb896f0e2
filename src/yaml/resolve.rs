//! go-yaml v2's scalar rules, as kubectl 1.32 applies them through
//! sigs.k8s.io/yaml (its `goyaml.v2` fork of go-yaml v2.4.0): what a
//! scalar becomes (`resolve.go`), what a map key becomes once
//! sigs.k8s.io/yaml turns it into a JSON key (`yaml.go`,
//! `convertToJSONableObject`), and what a value becomes once Go's
//! `encoding/json` has written it and the next reader has parsed it.
//!
//! Invariants:
//! - A scalar that is quoted or a block (`|`, `>`), with no tag, is a string.
//! - A plain scalar with no tag goes through the YAML 1.1 table: the case
//!   variants listed in [`lookup`] only (`yes`, `Yes`, `YES`, never `yEs`),
//!   then Go's `strconv.ParseInt(s, 0, 64)` with every `_` removed (so `0400`
//!   is octal 256, `0x1F` hex, `0b101` and `0o17` too), then
//!   `ParseUint`, then YAML-style floats. Anything else is a string; so is a
//!   timestamp (go-yaml keeps it as its text when decoding into `interface{}`).
//! - An explicit core tag (`!!str`, `!!int`, ...) resolves the text the same
//!   way and must agree with it, except that `!!float` takes an integer.
//!   Other tags (`!foo`, `!`, `!!map` on a scalar) leave the text a string;
//!   `!!binary` is base64, decoded.
//! - Each function here is total: it returns a [`ScalarError`], never panics.

use std::fmt;

use granit_parser::ScalarStyle;
use serde_json::{Number, Value};

/// A scalar as go-yaml v2 types it when decoding into `interface{}`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scalar {
    Null,
    Bool(bool),
    /// Go `int` (64-bit).
    Int(i64),
    /// Go `uint64`: an integer above `i64::MAX`.
    Uint(u64),
    Float(f64),
    Str(String),
}

/// The core-schema tags go-yaml resolves (`tag:yaml.org,2002:...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    Bool,
    Int,
    Float,
    Str,
    Timestamp,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Null => "!!null",
            Kind::Bool => "!!bool",
            Kind::Int => "!!int",
            Kind::Float => "!!float",
            Kind::Str => "!!str",
            Kind::Timestamp => "!!timestamp",
        })
    }
}

const CORE: &str = "tag:yaml.org,2002:";

/// Why kubectl would refuse a scalar. The Display text is the message the
/// user sees, with what kubectl itself says in parentheses.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub(crate) enum ScalarError {
    /// An explicit core tag that the text does not resolve to.
    #[error(
        "`{text}` is a {got}, not the {want} its tag asks for (kubectl refuses it: cannot decode {got} as a {want})"
    )]
    TagMismatch { text: String, got: Kind, want: Kind },
    /// `!!binary` text that Go's base64 decoder refuses.
    #[error("!!binary value contains invalid base64 data (kubectl refuses it)")]
    InvalidBase64,
    /// An infinity or NaN, which Go's JSON encoder refuses.
    #[error(
        "{} is not a number JSON can hold (kubectl refuses it: json: unsupported value)",
        go_float_key(*.0)
    )]
    NonFiniteFloat(f64),
    /// A null map key.
    #[error(
        "a null key (`~`, `null` or nothing before the colon) cannot be a JSON key \
         (kubectl refuses it: unsupported map key of type <nil>)"
    )]
    NullKey,
    /// A map key that only fits in `uint64`.
    #[error(
        "the key {0} is an integer above int64 (kubectl refuses it: unsupported map key of type uint64)"
    )]
    UintKey(u64),
}

/// Whether a mapping key is go-yaml's merge key: a `<<` that is plain and
/// untagged (or tagged `!`), or tagged `!!merge`. A quoted `"<<"` or an
/// alias to a `<<` is an ordinary key.
pub(crate) fn is_merge_key(text: &str, style: ScalarStyle, tag: Option<&str>) -> bool {
    text == "<<" && (implicit(style, tag) || tag == Some("tag:yaml.org,2002:merge"))
}

/// libyaml's `plain_implicit`: a plain scalar with no tag, or any scalar
/// with the non-specific tag `!`.
fn implicit(style: ScalarStyle, tag: Option<&str>) -> bool {
    match tag {
        None => style == ScalarStyle::Plain,
        Some(t) => t == "!",
    }
}

/// What go-yaml v2 makes of one scalar. `tag` is the full tag
/// (`tag:yaml.org,2002:int`, `!foo`, `!`), as the parser resolved it.
pub(crate) fn scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&str>,
) -> Result<Scalar, ScalarError> {
    let Some(tag) = tag else {
        if style != ScalarStyle::Plain {
            return Ok(Scalar::Str(text.to_owned()));
        }
        return Ok(untagged(None, text).1);
    };
    let want = match tag.strip_prefix(CORE) {
        Some("str") => Kind::Str,
        Some("bool") => Kind::Bool,
        Some("int") => Kind::Int,
        Some("float") => Kind::Float,
        Some("null") => Kind::Null,
        Some("timestamp") => Kind::Timestamp,
        Some("binary") => return binary(text),
        // `!`, local tags, `!!map` or `!!seq` on a scalar, `!!merge` as a
        // value: go-yaml does not resolve them and keeps the text.
        _ => return Ok(Scalar::Str(text.to_owned())),
    };
    let (got, value) = untagged(Some(want), text);
    match (want, got, value) {
        (Kind::Str, _, _) => Ok(Scalar::Str(text.to_owned())),
        (w, g, v) if w == g => Ok(v),
        (Kind::Float, Kind::Int, Scalar::Int(i)) => Ok(Scalar::Float(i as f64)),
        (want, got, _) => Err(ScalarError::TagMismatch {
            text: text.to_owned(),
            got,
            want,
        }),
    }
}

/// go-yaml's `resolve` body: the kind and value of `text`, read with the
/// YAML 1.1 rules. `tag` is the explicit core tag, if any; it only decides
/// whether timestamps are looked for and whether `!!str` skips everything.
fn untagged(tag: Option<Kind>, text: &str) -> (Kind, Scalar) {
    let string = || (Kind::Str, Scalar::Str(text.to_owned()));
    if tag == Some(Kind::Str) {
        return string();
    }
    // go-yaml looks only at scalars whose first byte hints at a non-string.
    let hint = match text.as_bytes().first() {
        None => b'N',
        Some(b'+' | b'-') => b'S',
        Some(b'0'..=b'9') => b'D',
        Some(b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O' | b'~') => b'M',
        Some(b'.') => b'.',
        Some(_) => return string(),
    };
    if let Some(found) = lookup(text) {
        return found;
    }
    match hint {
        b'.' => {
            if let Some(f) = parse_float_from_dot(text) {
                return (Kind::Float, Scalar::Float(f));
            }
        }
        b'D' | b'S' => {
            if matches!(tag, None | Some(Kind::Timestamp)) && is_timestamp(text) {
                // Decoded into interface{}, a timestamp stays its text.
                return (Kind::Timestamp, Scalar::Str(text.to_owned()));
            }
            let plain = text.replace('_', "");
            if let Ok(i) = parse_int(&plain, 0) {
                return (Kind::Int, Scalar::Int(i));
            }
            if let Ok(u) = parse_uint(&plain, 0) {
                return (Kind::Int, Scalar::Uint(u));
            }
            if is_yaml_float(&plain)
                && let Some(f) = finite(plain.parse::<f64>().ok())
            {
                return (Kind::Float, Scalar::Float(f));
            }
            // go-yaml's own binary fallbacks. Base-0 parsing above already
            // read every `0b` number except one with a sign after the prefix
            // (`0b-101` is -5), which only this explicit base-2 parse takes.
            if let Some(rest) = plain.strip_prefix("0b") {
                if let Ok(i) = parse_int(rest, 2) {
                    return (Kind::Int, Scalar::Int(i));
                }
                if let Ok(u) = parse_uint(rest, 2) {
                    return (Kind::Int, Scalar::Uint(u));
                }
            } else if let Some(rest) = plain.strip_prefix("-0b")
                && let Ok(i) = parse_int(&format!("-{rest}"), 2)
            {
                return (Kind::Int, Scalar::Int(i));
            }
        }
        _ => {} // 'M' and 'N': the table was all there was.
    }
    string()
}

/// go-yaml v2's table of special plain scalars: exactly these spellings.
fn lookup(text: &str) -> Option<(Kind, Scalar)> {
    Some(match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            (Kind::Bool, Scalar::Bool(true))
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            (Kind::Bool, Scalar::Bool(false))
        }
        "" | "~" | "null" | "Null" | "NULL" => (Kind::Null, Scalar::Null),
        ".nan" | ".NaN" | ".NAN" => (Kind::Float, Scalar::Float(f64::NAN)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            (Kind::Float, Scalar::Float(f64::INFINITY))
        }
        "-.inf" | "-.Inf" | "-.INF" => (Kind::Float, Scalar::Float(f64::NEG_INFINITY)),
        _ => return None,
    })
}

/// `!!binary`: base64 as Go's `StdEncoding.DecodeString` reads it
/// ([`crate::go_base64`]), and the bytes as Go's JSON encoder writes a Go
/// string: each byte that is not part of valid UTF-8 becomes U+FFFD.
fn binary(text: &str) -> Result<Scalar, ScalarError> {
    let bytes = crate::go_base64::decode(text).map_err(|_| ScalarError::InvalidBase64)?;
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        out.extend(chunk.invalid().iter().map(|_| char::REPLACEMENT_CHARACTER));
    }
    Ok(Scalar::Str(out))
}

const TWO_63: f64 = 9_223_372_036_854_775_808.0;

/// The scalar as a JSON value, as Go's `encoding/json` writes it and the
/// apiserver reads it back: a whole float (`8.0`, or `08`, which is not
/// octal) is written without a fraction and read back as an integer.
pub(crate) fn json_value(s: Scalar) -> Result<Value, ScalarError> {
    Ok(match s {
        Scalar::Null => Value::Null,
        Scalar::Bool(b) => Value::Bool(b),
        Scalar::Int(i) => Value::from(i),
        Scalar::Uint(u) => Value::from(u),
        Scalar::Str(s) => Value::String(s),
        Scalar::Float(f) => {
            if !f.is_finite() {
                return Err(ScalarError::NonFiniteFloat(f));
            }
            // Go prints a whole float below 1e21 as digits; the reader then
            // takes it as an integer when it fits in int64.
            if f == f.trunc() && (-TWO_63..TWO_63).contains(&f) {
                Value::from(f as i64)
            } else {
                Number::from_f64(f).map_or(Value::Null, Value::Number)
            }
        }
    })
}

/// The scalar as a JSON object key, as sigs.k8s.io/yaml makes one: strings
/// as they are, `int` in decimal, bools as `true`/`false`, floats through
/// Go's `FormatFloat(f, 'g', -1, 32)`. A null key or a `uint64` key is
/// refused, as kubectl refuses it.
pub(crate) fn json_key(s: &Scalar) -> Result<String, ScalarError> {
    match s {
        Scalar::Str(s) => Ok(s.clone()),
        Scalar::Bool(b) => Ok(b.to_string()),
        Scalar::Int(i) => Ok(i.to_string()),
        Scalar::Float(f) => Ok(go_float_key(*f)),
        Scalar::Null => Err(ScalarError::NullKey),
        Scalar::Uint(u) => Err(ScalarError::UintKey(*u)),
    }
}

/// `strconv.FormatFloat(f, 'g', -1, 32)`, with sigs.k8s.io/yaml's names for
/// the infinities and NaN.
fn go_float_key(f: f64) -> String {
    if f.is_nan() {
        return ".nan".to_owned();
    }
    let x = f as f32; // Go's float32(f): the nearest f32, or infinite
    if x.is_infinite() {
        return if x > 0.0 { ".inf" } else { "-.inf" }.to_owned();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0");
    }
    // Rust's `{:e}` gives the shortest digits that read back as this f32,
    // as Go's shortest formatting does: "1.234567e6".
    let e = format!("{:e}", x.abs());
    let Some((mantissa, exp)) = e.split_once('e') else {
        return e;
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let Ok(exp) = exp.parse::<i32>() else {
        return e;
    };
    let nd = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    if !(-4..6).contains(&exp) {
        // %e: d.ddde±XX, at least two exponent digits.
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{dot}{rest}e{esign}{:02}", exp.abs());
    }
    // %f with exactly the digits needed.
    let dp = exp + 1; // digits before the decimal point
    let mut out = String::from(sign);
    if dp <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', dp.unsigned_abs() as usize));
        out.push_str(&digits);
    } else if dp >= nd {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (dp - nd) as usize));
    } else {
        let (int, frac) = digits.split_at(dp as usize);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    }
    out
}

fn finite(f: Option<f64>) -> Option<f64> {
    f.filter(|f| f.is_finite())
}

#[derive(Debug, PartialEq, Eq)]
enum NumError {
    Syntax,
    Range,
}

/// Go's `strconv.ParseUint(s, base, 64)`. Base 0 reads the prefixes `0x`,
/// `0o`, `0b` (any case, only with a digit after them) and a bare leading
/// `0` as octal. Underscores are never passed in (go-yaml removes them).
fn parse_uint(s: &str, base: u32) -> Result<u64, NumError> {
    if s.is_empty() {
        return Err(NumError::Syntax);
    }
    let (base, digits) = if base != 0 {
        (base, s)
    } else if let Some(rest) = s.strip_prefix('0') {
        let prefixed = if s.len() >= 3 {
            match rest.as_bytes()[0].to_ascii_lowercase() {
                b'b' => Some(2),
                b'o' => Some(8),
                b'x' => Some(16),
                _ => None,
            }
        } else {
            None
        };
        match prefixed {
            Some(b) => (b, &rest[1..]),
            None => (8, rest),
        }
    } else {
        (10, s)
    };
    let mut n: u64 = 0;
    for c in digits.chars() {
        let d = c.to_digit(36).ok_or(NumError::Syntax)?;
        if d >= base {
            return Err(NumError::Syntax);
        }
        n = n
            .checked_mul(u64::from(base))
            .and_then(|n| n.checked_add(u64::from(d)))
            .ok_or(NumError::Range)?;
    }
    Ok(n)
}

/// Go's `strconv.ParseInt(s, base, 64)`: an optional sign, then
/// [`parse_uint`], within int64.
fn parse_int(s: &str, base: u32) -> Result<i64, NumError> {
    let (neg, rest) = match s.as_bytes().first() {
        None => return Err(NumError::Syntax),
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        Some(_) => (false, s),
    };
    let u = parse_uint(rest, base)?;
    if neg {
        if u > 1 << 63 {
            return Err(NumError::Range);
        }
        Ok(0i64.wrapping_sub_unsigned(u))
    } else {
        i64::try_from(u).map_err(|_| NumError::Range)
    }
}

/// go-yaml's `yamlStyleFloat`:
/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go's `strconv.ParseFloat(s, 64)` for a scalar that starts with `.`
/// (underscores not removed, as go-yaml passes it): `.` then digits, an
/// optional exponent, underscores only between digits. Overflow is an error
/// in Go, so it is `None` here.
fn parse_float_from_dot(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = 1; // the '.'
    let mut mantissa_digits = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'0'..=b'9' => mantissa_digits += 1,
            b'_' => {}
            _ => break,
        }
        i += 1;
    }
    if mantissa_digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !b.get(i).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
            i += 1;
        }
    }
    if i != b.len() || !underscores_ok(s) {
        return None;
    }
    finite(s.replace('_', "").parse::<f64>().ok())
}

/// Go's `underscoreOK` for a string with no sign or base prefix: every `_`
/// sits between two digits.
fn underscores_ok(s: &str) -> bool {
    let mut prev = b'^';
    for &c in s.as_bytes() {
        if c.is_ascii_digit() {
            prev = b'0';
        } else if c == b'_' {
            if prev != b'0' {
                return false;
            }
            prev = b'_';
        } else {
            if prev == b'_' {
                return false;
            }
            prev = b'!';
        }
    }
    prev != b'_'
}

/// go-yaml's `parseTimestamp`: Go's `time.Parse` with one of the layouts
/// `2006-1-2T15:4:5.999999999Z07:00` (also with `t`),
/// `2006-1-2 15:4:5.999999999` and `2006-1-2`, dates and times in range.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let year: u32 = b[..4].iter().fold(0, |y, d| y * 10 + u32::from(d - b'0'));
    let mut p = Cursor { b, i: 5 };
    let Some(month) = p.number() else {
        return false;
    };
    if !(1..=12).contains(&month) || !p.eat(b'-') {
        return false;
    }
    let Some(day) = p.number() else {
        return false;
    };
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day < 1 || day > days {
        return false;
    }
    if p.done() {
        return true;
    }
    let zoned = if p.eat(b'T') || p.eat(b't') {
        true
    } else if p.eat(b' ') {
        while p.eat(b' ') {}
        false
    } else {
        return false;
    };
    let time = p.number().filter(|h| *h < 24).is_some()
        && p.eat(b':')
        && p.number().filter(|m| *m < 60).is_some()
        && p.eat(b':')
        && p.number().filter(|s| *s < 60).is_some();
    if !time {
        return false;
    }
    if matches!(p.peek(), Some(b'.' | b',')) && p.b.get(p.i + 1).is_some_and(u8::is_ascii_digit) {
        p.i += 1;
        while p.peek().is_some_and(|c| c.is_ascii_digit()) {
            p.i += 1;
        }
    }
    if zoned {
        if p.eat(b'Z') {
            return p.done();
        }
        let z = &p.b[p.i..];
        return z.len() == 6
            && matches!(z[0], b'+' | b'-')
            && z[1..3].iter().all(u8::is_ascii_digit)
            && z[3] == b':'
            && z[4..6].iter().all(u8::is_ascii_digit)
            && (z[1] - b'0') * 10 + (z[2] - b'0') <= 24
            && (z[4] - b'0') * 10 + (z[5] - b'0') <= 60;
    }
    p.done()
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn done(&self) -> bool {
        self.i == self.b.len()
    }
    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }
    /// Go's `getnum(s, false)`: one digit, or two when there are two.
    fn number(&mut self) -> Option<u32> {
        let first = self.peek().filter(u8::is_ascii_digit)?;
        self.i += 1;
        let mut n = u32::from(first - b'0');
        if let Some(second) = self.peek().filter(u8::is_ascii_digit) {
            self.i += 1;
            n = n * 10 + u32::from(second - b'0');
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plain(text: &str) -> Value {
        json_value(scalar(text, ScalarStyle::Plain, None).unwrap()).unwrap()
    }

    fn tagged(tag: &str, text: &str) -> Result<Value, ScalarError> {
        let full = tag.strip_prefix("!!").map(|t| format!("{CORE}{t}"));
        let full = full.as_deref().unwrap_or(tag);
        scalar(text, ScalarStyle::Plain, Some(full)).and_then(json_value)
    }

    fn key(text: &str) -> Result<String, ScalarError> {
        json_key(&scalar(text, ScalarStyle::Plain, None).unwrap())
    }

    #[test]
    fn booleans_are_exactly_go_yaml_v2s_spellings() {
        for t in [
            "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON",
        ] {
            assert_eq!(plain(t), json!(true), "{t}");
        }
        for f in [
            "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF",
        ] {
            assert_eq!(plain(f), json!(false), "{f}");
        }
        for s in ["yEs", "tRUE", "oN", "nO", "yes please", "Y2", "offline"] {
            assert_eq!(plain(s), json!(s), "{s}");
        }
    }

    #[test]
    fn nulls_are_tilde_null_and_nothing() {
        for n in ["", "~", "null", "Null", "NULL"] {
            assert_eq!(plain(n), Value::Null, "{n:?}");
        }
        assert_eq!(plain("nULL"), json!("nULL"));
    }

    #[test]
    fn integers_go_through_parse_int_base_0_without_underscores() {
        for (text, want) in [
            ("0400", json!(256)),
            ("0644", json!(420)),
            ("0o17", json!(15)),
            ("0O17", json!(15)),
            ("0x1F", json!(31)),
            ("0X1f", json!(31)),
            ("0x_1F", json!(31)),
            ("0b1010", json!(10)),
            ("0B11", json!(3)),
            ("-0b11", json!(-3)),
            ("0b-101", json!(-5)),
            ("0b+11", json!(3)),
            ("+12", json!(12)),
            ("-0", json!(0)),
            ("00", json!(0)),
            ("1_000", json!(1000)),
            ("1__0", json!(10)),
            ("9223372036854775807", json!(i64::MAX)),
            ("-9223372036854775808", json!(i64::MIN)),
            ("18446744073709551615", json!(u64::MAX)),
        ] {
            assert_eq!(plain(text), want, "{text}");
        }
        // Not integers: prefixes with nothing after them, a leading underscore.
        for s in ["0x", "0o", "0b", "_1", "0x-1", "+", "-", "1e", "12e"] {
            assert_eq!(plain(s), json!(s), "{s}");
        }
    }

    #[test]
    fn octal_lookalikes_with_8_or_9_are_decimal_floats() {
        // 08 is not octal, so ParseInt fails and the float rule reads 8.0,
        // which JSON writes as 8.
        assert_eq!(plain("08"), json!(8));
        assert_eq!(plain("0999"), json!(999));
    }

    #[test]
    fn floats_follow_the_yaml_style_rule_and_overflow_stays_a_string() {
        for (text, want) in [
            ("1.5", json!(1.5)),
            ("+.5", json!(0.5)),
            (".5", json!(0.5)),
            (".5_0", json!(0.5)),
            (".5e1_0", json!(5_000_000_000i64)),
            ("1.", json!(1)),
            ("0.", json!(0)),
            ("1e5", json!(100000)),
            ("1.5e+3", json!(1500)),
            ("6.02e+23", json!(6.02e23)),
            ("1e-400", json!(0)),
            ("-0.0", json!(0)),
            ("99999999999999999999", json!(1e20)),
            ("-99999999999999999999", json!(-1e20)),
            ("9223372036854775808", json!(9_223_372_036_854_775_808u64)),
        ] {
            assert_eq!(plain(text), want, "{text}");
        }
        for s in [
            "1e400",
            "._5",
            ".5_",
            ".e3",
            "..5",
            "1.5.6",
            "0xFFFFFFFFFFFFFFFFFFFF",
        ] {
            assert_eq!(plain(s), json!(s), "{s}");
        }
    }

    #[test]
    fn infinity_and_nan_cannot_be_json_values() {
        for t in [
            ".inf", ".Inf", ".INF", "+.inf", "-.inf", ".nan", ".NaN", ".NAN",
        ] {
            let s = scalar(t, ScalarStyle::Plain, None).unwrap();
            assert!(
                json_value(s)
                    .unwrap_err()
                    .to_string()
                    .contains("not a number JSON can hold"),
                "{t}"
            );
        }
        assert_eq!(plain(".iNf"), json!(".iNf"));
    }

    #[test]
    fn quoted_and_block_scalars_are_always_strings() {
        for style in [
            ScalarStyle::SingleQuoted,
            ScalarStyle::DoubleQuoted,
            ScalarStyle::Literal,
            ScalarStyle::Folded,
        ] {
            for t in ["yes", "0400", "~", "", "1.5", ".inf"] {
                assert_eq!(
                    json_value(scalar(t, style, None).unwrap()).unwrap(),
                    json!(t),
                    "{style:?} {t}"
                );
            }
        }
    }

    #[test]
    fn timestamps_stay_their_text() {
        assert_eq!(plain("2001-12-14"), json!("2001-12-14"));
        assert_eq!(
            plain("2001-12-14T21:59:43.10-05:00"),
            json!("2001-12-14T21:59:43.10-05:00")
        );
        for good in [
            "2001-12-14t21:59:43.10-05:00",
            "2001-12-14 21:59:43.10",
            "2001-12-14   21:59:43",
            "2001-12-14T21:59:43,5Z",
            "2001-1-2T1:2:3Z",
            "2001-12-14T21:59:43.1234567891234Z",
            "2001-12-14T21:59:43+24:60",
            "2000-02-29",
        ] {
            assert!(is_timestamp(good), "{good}");
            assert_eq!(tagged("!!timestamp", good).unwrap(), json!(good));
        }
        for bad in [
            "2001-2-30",
            "1900-02-29",
            "2001-00-10",
            "2001-12-00",
            "2001-012-14",
            "2001-12-14T25:00:00Z",
            "2001-12-14T21:59:60Z",
            "2001-12-14T21:59:43.Z",
            "2001-12-14T21:59:43+25:00",
            "2001-12-14T21:59:43",
            "2001-12-14T21:59",
            "2001-12-14 21:59:43Z",
            "2001-12-14 21:59:43 +01:00",
            "2001-12-14T21:59:43.5-0500",
            "2001-12-14T21:59:43 Z",
        ] {
            assert!(!is_timestamp(bad), "{bad}");
            assert!(tagged("!!timestamp", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn explicit_tags_resolve_and_must_agree() {
        assert_eq!(tagged("!!str", "12").unwrap(), json!("12"));
        assert_eq!(tagged("!!str", "yes").unwrap(), json!("yes"));
        assert_eq!(tagged("!!str", "").unwrap(), json!(""));
        assert_eq!(tagged("!!int", "0x10").unwrap(), json!(16));
        assert_eq!(tagged("!!float", "1").unwrap(), json!(1));
        assert_eq!(tagged("!!float", ".5").unwrap(), json!(0.5));
        assert_eq!(tagged("!!bool", "YES").unwrap(), json!(true));
        assert_eq!(tagged("!!null", "~").unwrap(), Value::Null);
        assert_eq!(tagged("!!null", "").unwrap(), Value::Null);
        assert_eq!(tagged("tag:yaml.org,2002:int", "12").unwrap(), json!(12));
        // Tags go-yaml does not resolve keep the text.
        assert_eq!(tagged("!foo", "bar").unwrap(), json!("bar"));
        assert_eq!(tagged("!", "12").unwrap(), json!("12"));
        assert_eq!(tagged("!!map", "x").unwrap(), json!("x"));
        assert_eq!(tagged("!!seq", "y").unwrap(), json!("y"));
        // A tag that disagrees with the text is refused, naming both.
        let e = tagged("!!int", "1.5").unwrap_err().to_string();
        assert!(e.contains("`1.5` is a !!float, not the !!int"), "{e}");
        let e = tagged("!!int", "").unwrap_err().to_string();
        assert!(e.contains("!!null, not the !!int"), "{e}");
        assert!(tagged("!!float", "18446744073709551615").is_err());
        assert!(tagged("!!bool", "1").is_err());
        assert!(tagged("!!null", "x").is_err());
    }

    #[test]
    fn a_tagged_quoted_scalar_is_resolved_by_its_tag() {
        let full = format!("{CORE}int");
        assert_eq!(
            scalar("0x10", ScalarStyle::SingleQuoted, Some(&full)),
            Ok(Scalar::Int(16))
        );
        let full = format!("{CORE}bool");
        assert_eq!(
            scalar("true", ScalarStyle::DoubleQuoted, Some(&full)),
            Ok(Scalar::Bool(true))
        );
    }

    #[test]
    fn binary_is_base64_as_go_reads_it() {
        assert_eq!(tagged("!!binary", "aGVsbG8=").unwrap(), json!("hello"));
        assert_eq!(tagged("!!binary", "aGVs\nbG8=\n").unwrap(), json!("hello"));
        assert_eq!(tagged("!!binary", "/w==").unwrap(), json!("\u{fffd}"));
        // A truncated UTF-8 sequence: one replacement per byte, as Go writes it.
        assert_eq!(
            tagged("!!binary", "4oJB").unwrap(),
            json!("\u{fffd}\u{fffd}A")
        );
        assert!(
            tagged("!!binary", "aGVsbG8")
                .unwrap_err()
                .to_string()
                .contains("invalid base64")
        );
        assert!(tagged("!!binary", "aGVs bG8=").is_err());
    }

    #[test]
    fn keys_become_strings_the_way_sigs_k8s_io_yaml_makes_them() {
        for (text, want) in [
            ("name", "name"),
            ("1", "1"),
            ("0x10", "16"),
            ("0400", "256"),
            ("yes", "true"),
            ("on", "true"),
            ("y", "true"),
            ("n", "false"),
            ("1.5", "1.5"),
            ("1e10", "1e+10"),
            ("1e15", "1e+15"),
            ("0.1", "0.1"),
            ("0.0001", "0.0001"),
            ("0.00001", "1e-05"),
            ("1234567.0", "1.234567e+06"),
            ("123456.0", "123456"),
            ("3.14159265358979", "3.1415927"),
            ("-0.0", "-0"),
            (".inf", ".inf"),
            ("-.inf", "-.inf"),
            (".nan", ".nan"),
            ("1e39", ".inf"),
            ("2001-12-14", "2001-12-14"),
        ] {
            assert_eq!(key(text).as_deref(), Ok(want), "{text}");
        }
        assert!(key("~").unwrap_err().to_string().contains("null key"));
        assert!(key("").unwrap_err().to_string().contains("null key"));
        assert!(
            key("18446744073709551615")
                .unwrap_err()
                .to_string()
                .contains("uint64")
        );
    }

    #[test]
    fn merge_keys_are_plain_or_tagged_merge() {
        assert!(is_merge_key("<<", ScalarStyle::Plain, None));
        assert!(is_merge_key("<<", ScalarStyle::Plain, Some("!")));
        assert!(is_merge_key(
            "<<",
            ScalarStyle::DoubleQuoted,
            Some("tag:yaml.org,2002:merge")
        ));
        assert!(!is_merge_key("<<", ScalarStyle::DoubleQuoted, None));
        assert!(!is_merge_key(
            "<<",
            ScalarStyle::Plain,
            Some("tag:yaml.org,2002:str")
        ));
        // As a value, `<<` is a string: its first byte hints at nothing.
        assert_eq!(plain("<<"), json!("<<"));
    }

    #[test]
    fn go_integer_parsing_edges() {
        assert_eq!(parse_uint("0", 0), Ok(0));
        assert_eq!(parse_uint("0x", 0), Err(NumError::Syntax));
        assert_eq!(parse_uint("0x1", 0), Ok(1));
        assert_eq!(parse_uint("", 2), Err(NumError::Syntax));
        assert_eq!(parse_uint("18446744073709551616", 0), Err(NumError::Range));
        assert_eq!(parse_int("9223372036854775808", 0), Err(NumError::Range));
        assert_eq!(parse_int("-9223372036854775809", 0), Err(NumError::Range));
        assert_eq!(parse_int("-101", 2), Ok(-5));
    }
}
