//! Durations as Kubernetes and Go write them: `500ms`, `30s`, `5m`, `1h`,
//! `1m30s`, `1.5s`. One parser for the command-line flags and their
//! environment variables and for the apiserver's `?timeout=`, so the two
//! cannot drift: kube-core's [`kube::core::Duration`], which follows Go's
//! `time.ParseDuration` (and carries upstream's tests).
//!
//! Around it, what a duration given to this process must also be: not
//! empty, not negative, and small enough that kube-core's arithmetic cannot
//! overflow (it would panic on input-derived text otherwise).

use std::time::Duration;

/// The longest text accepted, and the most characters one number in it may
/// have: 12-digit hours, four times over, stay far inside `Duration`.
const MAX_LEN: usize = 64;
const MAX_NUMBER_LEN: usize = 12;

/// A duration this process refuses; the text names the input and the forms
/// it takes.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Empty, too long, signed, or with a number too long to be safe.
    #[error("{text:?}: expected a duration like 500ms, 30s, 5m, 1h or 1m30s")]
    Malformed { text: String },
    /// Go's grammar, as kube-core reads it, refuses it.
    #[error("{text:?}: expected a duration like 500ms, 30s, 5m, 1h or 1m30s: {source}")]
    Go {
        text: String,
        source: kube::core::duration::ParseError,
    },
}

/// Parses a Go duration. A unit is required except for `0`, as in Go.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let expected = || DurationError::Malformed { text: s.to_owned() };
    if s.is_empty() || s.len() > MAX_LEN {
        return Err(expected());
    }
    // Only digits, dots and unit letters: no sign (a negative duration
    // means nothing here, and kube-core would panic multiplying by one
    // found after the first term), and numbers short enough not to overflow.
    let mut number = 0;
    for c in s.chars() {
        if c.is_ascii_digit() || c == '.' {
            number += 1;
            if number > MAX_NUMBER_LEN {
                return Err(expected());
            }
        } else if c.is_alphabetic() {
            number = 0;
        } else {
            return Err(expected());
        }
    }
    s.parse::<kube::core::Duration>()
        .map(Duration::from)
        .map_err(|source| DurationError::Go {
            text: s.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_flags_and_the_apiserver_write() {
        let cases = [
            ("0s", Duration::ZERO),
            ("0", Duration::ZERO),
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("60m", Duration::from_secs(3600)),
            ("1h", Duration::from_secs(3600)),
            ("1m30s", Duration::from_secs(90)),
            ("1h2m3s", Duration::from_secs(3723)),
            ("1.5s", Duration::from_millis(1500)),
            ("250us", Duration::from_micros(250)),
            ("10ns", Duration::from_nanos(10)),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_duration_saying_the_value() {
        for bad in [
            "",
            "10",
            "s",
            "10x",
            "5 s",
            "5sec",
            "-1s",
            "+1s",
            "1s-1s",
            "1e9h",
            "abc",
            "9999999999999h",
            &"1h".repeat(40),
        ] {
            let err = parse(bad).expect_err(bad).to_string();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn the_largest_accepted_text_does_not_overflow() {
        let big = "999999999999h".repeat(4);
        assert!(big.len() <= MAX_LEN);
        assert!(parse(&big).is_ok());
    }
}
