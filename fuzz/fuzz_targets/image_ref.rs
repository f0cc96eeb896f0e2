//! Image references and registry patterns (`ImageRef::parse`,
//! `RegistryPattern::parse`, `RegistryPattern::matches`).
//!
//! The input is split at its first newline: a pattern, then a reference.
//!
//! Invariants: no panic; a refusal is an `Err` that quotes the input; a
//! parsed reference prints in a fully qualified form that parses back to
//! the same reference, with a lower-case registry; a parsed pattern prints
//! in a form that parses back to the same pattern; `*` matches every
//! parsed reference's registry; `*.domain` never matches the domain
//! itself nor a host that merely ends in the same letters; an exact
//! pattern matches the registry it was parsed from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waf_admission::image::{ImageError, ImageRef, RegistryPattern};

fn reference(input: &str) -> Option<ImageRef> {
    match ImageRef::parse(input) {
        Ok(r) => {
            assert_eq!(r.registry, r.registry.to_ascii_lowercase(), "{input:?}");
            assert!(!r.repository.is_empty(), "{input:?}");
            let printed = r.to_string();
            let again = ImageRef::parse(&printed)
                .unwrap_or_else(|e| panic!("{input:?} printed as {printed:?}, which fails: {e}"));
            assert_eq!(again, r, "{input:?} printed as {printed:?}");
            assert!(RegistryPattern::Any.matches(&r.registry), "{input:?}");
            Some(r)
        }
        Err(ImageError::InvalidReference { input: quoted, .. }) => {
            assert_eq!(quoted, input);
            None
        }
        Err(other) => panic!("a reference refused as a pattern: {other}"),
    }
}

fn pattern(input: &str) -> Option<RegistryPattern> {
    match RegistryPattern::parse(input) {
        Ok(p) => {
            let printed = p.to_string();
            let again = RegistryPattern::parse(&printed)
                .unwrap_or_else(|e| panic!("{input:?} printed as {printed:?}, which fails: {e}"));
            assert_eq!(again, p, "{input:?} printed as {printed:?}");
            match &p {
                RegistryPattern::Any => {}
                RegistryPattern::Exact(host) => {
                    assert!(p.matches(host), "{input:?} does not match its own host");
                    assert!(p.matches(&host.to_ascii_uppercase()), "{input:?}: case");
                }
                RegistryPattern::Subdomain(suffix) => {
                    assert!(!p.matches(suffix), "{input:?} matches its bare domain");
                    assert!(
                        !p.matches(&format!("evil{suffix}")),
                        "{input:?} matches a look-alike"
                    );
                    // A host that goes on past the domain is not under it
                    // (unless the domain happens to end in the same label).
                    if !suffix.ends_with(".zz-evil") && suffix != "zz-evil" {
                        assert!(
                            !p.matches(&format!("a.{suffix}.zz-evil")),
                            "{input:?} matches a longer domain"
                        );
                    }
                }
            }
            Some(p)
        }
        Err(ImageError::InvalidPattern { input: quoted, .. }) => {
            assert_eq!(quoted, input);
            None
        }
        Err(other) => panic!("a pattern refused as a reference: {other}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (p, r) = text.split_once('\n').unwrap_or((text, text));
    let p = pattern(p);
    let r = reference(r);
    if let (Some(p), Some(r)) = (p, r) {
        // Matching reads only the host: the same answer for the host as
        // written in any case.
        assert_eq!(
            p.matches(&r.registry),
            p.matches(&r.registry.to_ascii_uppercase()),
            "{p} vs {r}"
        );
        if let RegistryPattern::Subdomain(suffix) = &p
            && p.matches(&r.registry)
        {
            let host = r.registry.split(':').next().unwrap_or_default();
            assert!(
                host.ends_with(&format!(".{suffix}"))
                    || r.registry.ends_with(&format!(".{suffix}")),
                "{p} matched {r}"
            );
        }
    }
});
