//! What the fuzz targets share: a fixed clock, the policies they judge with,
//! and the text → objects → policies readers `check` and `serve --policy`
//! use. Each target includes this with `mod common;`.
#![allow(dead_code)] // each target uses part of it

use std::sync::OnceLock;

use serde_json::Value;
use waf_admission::check::load::{Loaded, parse_text};
use waf_admission::policy::WellArchitectedPolicy;
use waf_admission::{Policy, PolicySet};

/// The engine takes `now`; a fixed one keeps a crash reproducible.
pub fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000).expect("a fixed timestamp in range")
}

/// The strict sample policy as shipped.
const STRICT: &str = include_str!("../../../manifests/policies/strict.yaml");

/// Every rule on, in Deny, with `mutate: true` wherever a rule can patch.
const MUTATE_ALL: &str = include_str!("../../../tests/fixtures/policies/mutate-all.yaml");

/// Policies read from text the way `check --policy` reads them: every
/// document must be a WellArchitectedPolicy that compiles.
pub fn policies_from_text(text: &str, name: &str) -> Result<Vec<Policy>, String> {
    let mut loaded = Loaded::default();
    parse_text(text, name, &mut loaded);
    if let Some(e) = loaded.errors.first() {
        return Err(e.to_string());
    }
    let mut out = Vec::new();
    for doc in loaded.documents {
        let p: WellArchitectedPolicy =
            serde_json::from_value(doc.value).map_err(|e| format!("{}: {e}", doc.source))?;
        out.push(Policy::compile(&p).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// The policy sets the engine is fuzzed against: the baseline (what
/// `check` applies with no `--policy`), strict, and mutate-all.
pub fn policy_sets() -> &'static [(&'static str, PolicySet)] {
    static SETS: OnceLock<Vec<(&'static str, PolicySet)>> = OnceLock::new();
    SETS.get_or_init(|| {
        let set = |text, name| {
            PolicySet::new(policies_from_text(text, name).expect("a shipped policy compiles"))
        };
        vec![
            (
                "baseline",
                PolicySet::baseline().expect("the baseline compiles"),
            ),
            ("strict", set(STRICT, "strict.yaml")),
            ("mutate-all", set(MUTATE_ALL, "mutate-all")),
        ]
    })
}

/// The objects in a text, as `check` reads them (JSON or YAML, many
/// documents, Lists unpacked).
pub fn objects(text: &str) -> Vec<Value> {
    let mut loaded = Loaded::default();
    parse_text(text, "fuzz", &mut loaded);
    loaded.documents.into_iter().map(|d| d.value).collect()
}
