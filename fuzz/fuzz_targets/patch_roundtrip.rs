//! JSON Patch output applied back to its object: a fuzzed manifest judged
//! with the baseline, strict and mutate-all policies, `decision.patch`
//! applied with json_patch, the result judged again.
//!
//! Invariants: no panic; the patch applies; the patched object is still a
//! workload of the same kind that reads cleanly; none of the violations
//! the patch was meant to fix (Deny, fixable) is there after it; judging
//! the patched object emits no further patch (the webhook's answer is a
//! fixed point: a second mutating pass, as reinvocation would run, changes
//! nothing); `evaluate` (what `check` reports) agrees.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use waf_admission::policy::Action;
use waf_admission::workload::Workload;
use waf_admission::{Context, evaluate, judge};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ctx = Context::default();
    let now = common::now();
    for object in common::objects(text) {
        let Ok(Some(workload)) = Workload::from_value(object.clone(), "default") else {
            continue;
        };
        for (name, set) in common::policy_sets() {
            let decision = judge(set, &workload, &ctx, now);
            let evaluation = evaluate(set, &object, "default", &ctx, now)
                .unwrap_or_else(|e| panic!("{name}: evaluate failed: {e}"))
                .expect("a workload evaluates");
            if decision.patch.is_empty() {
                assert_eq!(evaluation.allowed, !decision.denied(), "{name}");
                continue;
            }
            let mut patched = object.clone();
            json_patch::patch(&mut patched, &decision.patch).unwrap_or_else(|e| {
                panic!(
                    "{name}: the patch does not apply: {e}\npatch: {}",
                    serde_json::to_string(&decision.patch).unwrap_or_default()
                )
            });
            let after_workload = match Workload::from_value(patched.clone(), "default") {
                Ok(Some(w)) => w,
                other => panic!("{name}: the patched object is no workload: {other:?}"),
            };
            assert_eq!(after_workload.kind, workload.kind, "{name}");
            let after = judge(set, &after_workload, &ctx, now);
            for v in decision
                .violations
                .iter()
                .filter(|v| v.fixable && v.action == Action::Deny)
            {
                // By path too: two containers can share a message (a
                // duplicated name, which the apiserver refuses) and only
                // one of them be fixable.
                assert!(
                    !after
                        .violations
                        .iter()
                        .any(|a| a.rule == v.rule && a.path == v.path && a.message == v.message),
                    "{name}: [{}] {} is still there after the patch {}",
                    v.rule,
                    v.message,
                    serde_json::to_string(&decision.patch).unwrap_or_default()
                );
            }
            assert!(
                after.patch.is_empty(),
                "{name}: the patched object gets another patch: {}\nfirst: {}",
                serde_json::to_string(&after.patch).unwrap_or_default(),
                serde_json::to_string(&decision.patch).unwrap_or_default()
            );
            assert_eq!(evaluation.patched.as_ref(), Some(&patched), "{name}");
            assert_eq!(evaluation.allowed, !after.denied(), "{name}");
        }
    }
});
