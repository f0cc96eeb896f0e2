//! Policy YAML → compiled policy (`Policy::compile`, reached as `check
//! --policy` and `serve --policy` reach it), then the compiled policy
//! judging sample workloads.
//!
//! Invariants: no panic; a policy that cannot be used is an `Err`, never a
//! panic; a policy that compiles can judge every sample workload, and the
//! patch it emits applies (`evaluate` fails if the engine's own patch does
//! not apply, or the patched object is no longer a workload).
#![no_main]

mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use waf_admission::{Context, PolicySet, evaluate};

const SAMPLES: [&str; 6] = [
    include_str!("../../examples/bad/zone-spread.yaml"),
    include_str!("../../examples/bad/resources.yaml"),
    include_str!("../../examples/bad/gpu-placement.yaml"),
    include_str!("../../examples/bad/probes.yaml"),
    include_str!("../../examples/bad/shared-memory.yaml"),
    include_str!("../../examples/good/llm-gpu.yaml"),
];

fn samples() -> &'static [Value] {
    static OBJECTS: OnceLock<Vec<Value>> = OnceLock::new();
    OBJECTS.get_or_init(|| SAMPLES.iter().flat_map(|t| common::objects(t)).collect())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policies) = common::policies_from_text(text, "policy.yaml") else {
        return;
    };
    let set = PolicySet::new(policies);
    let ctx = Context::default();
    for object in samples() {
        if let Err(e) = evaluate(&set, object, "default", &ctx, common::now()) {
            panic!("a compiled policy could not judge a sample workload: {e}");
        }
    }
});
