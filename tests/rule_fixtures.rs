//! Every rule's fixtures under tests/fixtures/rules/<rule-id>/: a `pass-*`
//! file passes that rule and is admitted; a `fail-*` file violates that rule
//! and no other deny rule. Every patch the engine proposes is applied with
//! json-patch and the patched object is checked again.
//!
//! Fixtures are judged with the baseline, plus the folder's own `policy.yaml`
//! where it has one (all policies apply, the strictest action wins): so a
//! rule that is Off in the baseline, a setting that is off by default, or a
//! patch that only a Deny policy applies still has failing fixtures. A
//! folder's `prices.yaml` is the price table its fixtures are judged with,
//! on the day after it was made (so it never goes stale).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use waf_admission::check::{self, Loaded};
use waf_admission::policy::RuleId;
use waf_admission::prices::PriceTable;
use waf_admission::{PolicySet, check::Report};

const FOLDER_POLICY: &str = "policy.yaml";
const FOLDER_PRICES: &str = "prices.yaml";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rules")
}

fn fixtures() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for rule_dir in std::fs::read_dir(root()).unwrap() {
        let rule_dir = rule_dir.unwrap().path();
        let rule = rule_dir.file_name().unwrap().to_str().unwrap().to_owned();
        for f in std::fs::read_dir(&rule_dir).unwrap() {
            let f = f.unwrap().path();
            if f.file_name()
                .is_some_and(|n| n != FOLDER_POLICY && n != FOLDER_PRICES)
            {
                out.push((rule.clone(), f));
            }
        }
    }
    out.sort();
    out
}

/// The baseline, with the rule folder's own policy beside it if it has one.
fn policies_for(rule: &str) -> PolicySet {
    let mut all = PolicySet::baseline().unwrap().policies().to_vec();
    let own = root().join(rule).join(FOLDER_POLICY);
    if own.exists() {
        let set = check::load_policies(std::slice::from_ref(&own))
            .unwrap_or_else(|e| panic!("{}: {e:?}", own.display()));
        all.extend(set.policies().iter().cloned());
    }
    PolicySet::new(all)
}

/// The rule folder's price table, if it has one.
fn prices_for(rule: &str) -> Option<Arc<PriceTable>> {
    let path = root().join(rule).join(FOLDER_PRICES);
    path.exists().then(|| {
        let table = check::read_prices(std::slice::from_ref(&path))
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        Arc::new(table.expect("a price table"))
    })
}

/// Judges with the folder's prices, the day after they were made; now
/// where there are none.
fn judge(rule: &str, set: &PolicySet, loaded: Loaded) -> Report {
    match prices_for(rule) {
        None => check::run(set, loaded, jiff::Timestamp::now()),
        Some(table) => {
            let now = table.generated_at + jiff::SignedDuration::from_hours(24);
            check::run_priced(set, loaded, now, None, Some(table))
        }
    }
}

fn load_text(text: &str, name: &str) -> Loaded {
    let mut loaded = Loaded::default();
    check::load::parse_text(text, name, &mut loaded);
    loaded
}

#[test]
fn every_rule_has_passing_and_failing_fixtures() {
    let all = fixtures();
    for rule in RuleId::ALL.map(RuleId::as_str) {
        let names: Vec<String> = all
            .iter()
            .filter(|(r, _)| r == rule)
            .map(|(_, p)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().any(|n| n.starts_with("pass-")),
            "{rule} has no passing fixture"
        );
        assert!(
            names.iter().any(|n| n.starts_with("fail-")),
            "{rule} has no failing fixture"
        );
    }
}

#[test]
fn fixtures_pass_or_fail_exactly_their_rule() {
    for (rule, path) in fixtures() {
        let set = policies_for(&rule);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let report = judge(&rule, &set, check::load(std::slice::from_ref(&path)));
        assert!(report.errors.is_empty(), "{name}: {:?}", report.errors);
        let r = report
            .results
            .first()
            .unwrap_or_else(|| panic!("{name}: no workload judged"));
        let of_rule: Vec<_> = r.violations.iter().filter(|v| v.rule == rule).collect();
        if name.starts_with("pass-") {
            assert!(of_rule.is_empty(), "{name}: {of_rule:#?}");
            assert!(r.allowed, "{name}: {:#?}", r.violations);
        } else {
            assert!(
                !of_rule.is_empty(),
                "{name}: expected a {rule} violation, got {:#?}",
                r.violations
            );
            // A fixture may name rules it cannot help failing too.
            let text = std::fs::read_to_string(&path).unwrap();
            let also: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("# also-fails: "))
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            let other_denials: Vec<_> = r
                .violations
                .iter()
                .filter(|v| v.rule != rule && v.action == "deny" && !also.contains(&v.rule))
                .collect();
            assert!(
                other_denials.is_empty(),
                "{name}: other rules deny too: {other_denials:#?}"
            );
            assert!(
                of_rule
                    .iter()
                    .all(|v| !v.message.is_empty() && !v.fix.is_empty())
            );
            // Read as one sentence: no source indentation spilled into it.
            for v in &of_rule {
                assert!(
                    !v.message.contains("  ") && !v.fix.contains("  "),
                    "{name}: a run of spaces in {v:#?}"
                );
            }
            assert!(of_rule.iter().all(|v| v.path.starts_with('/')), "{name}");
        }
    }
}

#[test]
fn every_patch_applies_and_the_patched_object_passes_what_it_fixed() {
    let mut patched_count = 0;
    for (rule, path) in fixtures() {
        let set = policies_for(&rule);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let report = judge(&rule, &set, load_text(&text, &name));
        for r in report.results.iter().filter(|r| !r.patch.is_empty()) {
            patched_count += 1;
            // Apply the patch to the document as written, as the apiserver would.
            let docs: Vec<serde_json::Value> = {
                use serde::Deserialize;
                serde_yaml_ng::Deserializer::from_str(&text)
                    .map(|d| serde_json::Value::deserialize(d).unwrap())
                    .collect()
            };
            let index: usize = r.source.rsplit('#').next().unwrap().parse().unwrap();
            let mut object = docs[index].clone();
            json_patch::patch(&mut object, &r.patch)
                .unwrap_or_else(|e| panic!("{name}: patch does not apply: {e}"));
            let mut again = docs.clone();
            again[index] = object;
            let yaml: String = again
                .iter()
                .map(|d| format!("---\n{}", serde_yaml_ng::to_string(d).unwrap()))
                .collect();
            let second = judge(&rule, &set, load_text(&yaml, &name));
            let after = second
                .results
                .iter()
                .find(|a| a.source == r.source)
                .unwrap();
            for fixed in r.violations.iter().filter(|v| v.patched) {
                assert!(
                    !after
                        .violations
                        .iter()
                        .any(|a| a.rule == fixed.rule && a.message == fixed.message),
                    "{name}: patched violation still there: {}",
                    fixed.message
                );
            }
            assert!(
                after.patch.is_empty(),
                "{name}: a second patch after the first: {:?}",
                after.patch
            );
            assert_eq!(
                after.allowed, r.allowed,
                "{name}: verdict after patch differs"
            );
        }
    }
    assert!(
        patched_count >= 13,
        "only {patched_count} fixtures produced patches"
    );
}

#[test]
fn a_folder_policy_is_what_makes_its_failing_fixtures_fail() {
    // probes/policy.yaml asks for minLivenessFailureSeconds, off in the baseline.
    let path = root().join("probes/fail-liveness-restarts-a-busy-engine.yaml");
    let of_probes = |set: &PolicySet| {
        judge("probes", set, check::load(std::slice::from_ref(&path))).results[0]
            .violations
            .iter()
            .filter(|v| v.rule == "probes")
            .count()
    };
    assert_eq!(of_probes(&PolicySet::baseline().unwrap()), 0);
    assert_eq!(of_probes(&policies_for("probes")), 1);
}

#[test]
fn cost_budget_judges_only_with_a_fresh_price_table() {
    let path = root().join("cost-budget/fail-hpa-max-over-budget.yaml");
    let set = policies_for("cost-budget");
    let table = prices_for("cost-budget").unwrap();
    let cost = |report: &Report| {
        report.results[0]
            .violations
            .iter()
            .filter(|v| v.rule == "cost-budget")
            .count()
    };
    let day = jiff::SignedDuration::from_hours(24);
    let load = || check::load(std::slice::from_ref(&path));
    let fresh = check::run_priced(
        &set,
        load(),
        table.generated_at + day,
        None,
        Some(table.clone()),
    );
    assert_eq!(cost(&fresh), 1);
    assert!(
        fresh.notes.iter().all(|n| !n.contains("price table")),
        "{:?}",
        fresh.notes
    );
    // 46 days on, past the default maxAgeDays of 45: no verdict, and a note.
    let stale = check::run_priced(
        &set,
        load(),
        table.generated_at + day * 46,
        None,
        Some(table),
    );
    assert_eq!(cost(&stale), 0);
    assert!(
        stale
            .notes
            .iter()
            .any(|n| n.starts_with("cost-budget judged nothing: the price table of 2026-12-01")),
        "{:?}",
        stale.notes
    );
    let none = check::run(&set, load(), jiff::Timestamp::now());
    assert_eq!(cost(&none), 0);
    assert!(
        none.notes
            .iter()
            .any(|n| n.contains("no price table was given")),
        "{:?}",
        none.notes
    );
}
