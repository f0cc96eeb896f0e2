//! Releases: this binary's, and the one each rule came in
//! (`RuleId::since`), which a policy's `spec.ruleSet` is compared with
//! (`policy::release`).

use std::fmt;

/// A release, major and minor: patch releases add no rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Release {
    pub major: u32,
    pub minor: u32,
}

impl Release {
    pub const V0_1: Release = Release::new(0, 1);
    pub const V0_2: Release = Release::new(0, 2);
    pub const V0_3: Release = Release::new(0, 3);

    /// This binary's release, from the crate's version.
    pub const CURRENT: Release = Release::new(
        digits(env!("CARGO_PKG_VERSION_MAJOR")),
        digits(env!("CARGO_PKG_VERSION_MINOR")),
    );

    pub const fn new(major: u32, minor: u32) -> Release {
        Release { major, minor }
    }

    /// `0.1`, `0.2`, …; a leading `v` and a patch (`v0.2.1`) are read too,
    /// since that is how releases are tagged.
    pub fn parse(s: &str) -> Option<Release> {
        let s = s.strip_prefix('v').unwrap_or(s);
        let mut parts = s.split('.');
        let number = |p: Option<&str>| {
            p.filter(|p| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u32>().ok())
        };
        let major = number(parts.next())?;
        let minor = number(parts.next())?;
        match parts.next() {
            None => {}
            Some(patch) => {
                number(Some(patch))?;
            }
        }
        parts.next().is_none().then_some(Release { major, minor })
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A decimal number at compile time (the crate's version parts).
const fn digits(s: &str) -> u32 {
    let bytes = s.as_bytes();
    let mut n = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        assert!(bytes[i].is_ascii_digit(), "a version part is a number");
        n = n * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_read_as_they_are_tagged_and_nothing_else() {
        for (text, want) in [
            ("0.1", Some(Release::V0_1)),
            ("v0.2", Some(Release::V0_2)),
            ("0.2.7", Some(Release::V0_2)),
            ("1.10", Some(Release::new(1, 10))),
            ("0", None),
            ("0.", None),
            (".1", None),
            ("0.1.2.3", None),
            ("0.x", None),
            ("-0.1", None),
            ("0.+1", None),
            ("", None),
            ("latest", None),
        ] {
            assert_eq!(Release::parse(text), want, "{text:?}");
        }
    }
}
