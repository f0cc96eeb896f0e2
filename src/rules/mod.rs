//! The rules: one file per rule id. A rule reads the workload view and its
//! settings and returns what is wrong (findings) and, when the policy lets
//! it mutate, the JSON Patch operations that fix what can be fixed. It does
//! not know whether it runs in `check`, the webhook or the audit, and it
//! does not decide the action: the policy does (see `decision.rs`).

pub mod autoscaler;
pub mod command_line;
pub mod disruption_budget;
pub mod gpu_placement;
pub mod graceful_termination;
pub mod host_isolation;
pub mod image_provenance;
pub mod model_lineage;
pub mod probes;
pub mod resources;
pub mod rollout_strategy;
pub mod secret_env;
pub mod shared_memory;
pub mod workload_identity;
pub mod zone_spread;

use json_patch::PatchOperation;
use jsonptr::PointerBuf;

/// One thing wrong with a workload, as the user will read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What is wrong, naming the container and field at fault.
    pub message: String,
    /// What to write instead, pasteable: a field and value or a command.
    pub fix: String,
    /// JSON pointer to the field at fault.
    pub path: String,
    /// Whether this rule's patch (when mutation is on) fixes it.
    pub fixable: bool,
}

/// A rule's answer for one workload.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    /// Operations against the object as submitted; empty unless mutating.
    pub patch: Vec<PatchOperation>,
    /// Findings that never deny, whatever the rule's action: at most they
    /// warn (a registry failure under `onRegistryError: Allow`, a signature
    /// that is checked but not required, one that could not be checked).
    pub warnings: Vec<Finding>,
    /// Patches the rule would have made but could not, and why (the
    /// registry did not answer a tag's digest). Each also stands in
    /// `findings` or `warnings`; these are what the mutating webhook, which
    /// admits everything, says instead of a patch.
    pub unpatched: Vec<Finding>,
}

impl Outcome {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty() && self.warnings.is_empty() && self.unpatched.is_empty()
    }
}

/// A pointer from an unescaped base (`/spec/template/spec/containers/0`,
/// whose tokens never contain `/` or `~`) and further raw tokens, which
/// are escaped (`kubernetes.azure.com/accelerator` → `…~1accelerator`).
pub(crate) fn pointer(base: &str, tokens: &[&str]) -> PointerBuf {
    let mut p = PointerBuf::from_tokens(base.split('/').skip(1));
    for t in tokens {
        p.push_back(*t);
    }
    p
}

pub(crate) fn add(path: PointerBuf, value: serde_json::Value) -> PatchOperation {
    PatchOperation::Add(json_patch::AddOperation { path, value })
}

pub(crate) fn replace(path: PointerBuf, value: serde_json::Value) -> PatchOperation {
    PatchOperation::Replace(json_patch::ReplaceOperation { path, value })
}

/// A map as a one-line YAML flow mapping for messages: `{app: llm, tier: gpu}`.
pub(crate) fn flow_map<'a>(map: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let inner: Vec<String> = map.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{{}}}", inner.join(", "))
}

#[cfg(test)]
pub(crate) mod testing;
