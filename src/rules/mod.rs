//! The rules: one file per rule id. A rule reads the workload view and its
//! settings and returns what is wrong (findings) and, when the policy lets
//! it mutate, the JSON Patch operations that fix what can be fixed. It does
//! not know whether it runs in `check`, the webhook or the audit, and it
//! does not decide the action: the policy does (see `decision.rs`).
//!
//! A rule is its file: the policy spec type named as its [`RuleId`]
//! variant (serde and schemars: the CRD's `spec.rules.<key>`, its defaults
//! and docs), its compiled `Settings`, and its `impl Rule` (id, pillar,
//! summary, release, compile, check), with its tests. The list in
//! `rule_list.rs` makes the rest: the modules, [`Rules`], [`Compiled`] and
//! the dispatch below. Adding a rule: copy `autoscaler.rs` (the smallest),
//! then add its line to `for_each_rule!`.

use std::fmt;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::{Context, PdbRef, ScalerRef};
use crate::gpu::GpuResources;
use crate::provenance::Facts;
use crate::release::Release;
use crate::rule_list::{Action, Pillar, RuleId, for_each_rule};
use crate::workload::Workload;

pub mod command_line;
pub mod serving;

/// What a rule judges: one workload, with what the cluster holds around it.
#[derive(Clone, Copy)]
pub struct Subject<'a> {
    pub workload: &'a Workload,
    pub ctx: &'a Context,
    /// The autoscalers that target the workload.
    pub scalers: &'a [&'a ScalerRef],
    /// The PodDisruptionBudgets that select its pods, by name.
    pub pdbs: &'a [&'a PdbRef],
    /// The registry's answers: digests and signatures.
    pub facts: &'a Facts,
    /// When it is judged: what a price table's age is measured against.
    pub now: jiff::Timestamp,
}

/// What compiling a rule's settings may read of the policy besides the
/// rule's own spec.
pub struct PolicyFacts<'a> {
    /// What the policy counts as a GPU (its gpuPlacement.resourceNames and
    /// deviceClasses).
    pub gpus: &'a GpuResources,
    /// The replicas the policy's zone-spread and autoscaler rules, where
    /// on, ask of a replicated workload (0: neither is on).
    pub replica_floor: i32,
    /// Where fixes that scale on a model server's queue read it
    /// (`autoscaler.prometheusServer`).
    pub prometheus_server: &'a str,
    /// The region whose prices say what a workload costs
    /// (`costBudget.region`, set whether or not that rule is on; empty:
    /// the price table's only region, if it has one).
    pub price_region: &'a str,
}

/// One rule: implemented by its policy spec type, which has an `action:
/// Option<Action>` field (the rule's own action; `for_each_rule!` reads
/// it).
pub trait Rule:
    Serialize + DeserializeOwned + JsonSchema + Default + Clone + fmt::Debug + PartialEq
{
    const ID: RuleId;
    const PILLAR: Pillar;
    /// What the rule holds workloads to, in one sentence (SARIF's rule
    /// descriptions, reports).
    const SUMMARY: &'static str;
    /// The release that introduced the rule: what a policy's
    /// `spec.ruleSet` is compared with.
    const SINCE: Release;
    /// Workload-level rules read the workload around the pod (replicas,
    /// autoscalers, disruption budgets, rollout strategy) and hold at the
    /// workload kinds where those mean something; pod-level rules read
    /// only the pod spec and hold at every pod template and every Pod.
    const WORKLOAD_LEVEL: bool = false;
    /// Off unless the policy sets this rule's `action`: the rule does not
    /// take the policy's.
    const OFF_UNLESS_SET: bool = false;

    /// The spec compiled: parsed, checked, ready for the hot path.
    type Settings: Clone + fmt::Debug + PartialEq + Send + Sync;

    /// Whether the policy lets this rule patch (through the mutating
    /// webhook).
    fn mutate(&self) -> bool {
        false
    }
    /// Checks and parses the spec, pushing every problem (prefixed with
    /// `at`, the spec's path in the policy) rather than stopping at one.
    fn compile(&self, policy: &PolicyFacts, at: &str, problems: &mut Vec<String>)
    -> Self::Settings;
    /// Judges one workload; `mutate` says whether to write the patch.
    fn check(on: &Subject, settings: &Self::Settings, mutate: bool) -> Outcome;
}

/// A rule switched on, with its resolved action and settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Enabled<S> {
    pub action: Action,
    pub mutate: bool,
    pub settings: S,
}

/// Compiles one rule and switches it on with its own action or else
/// `default`: None when that is Off.
fn enable<R: Rule>(
    spec: &R,
    own: Option<Action>,
    policy: &PolicyFacts,
    default: &dyn Fn(RuleId) -> Action,
    problems: &mut Vec<String>,
) -> Option<Enabled<R::Settings>> {
    let settings = spec.compile(policy, &format!("spec.rules.{}", R::ID.key()), problems);
    let fallback = if R::OFF_UNLESS_SET {
        Action::Off
    } else {
        default(R::ID)
    };
    let action = own.unwrap_or(fallback);
    (action != Action::Off).then(|| Enabled {
        action,
        mutate: spec.mutate(),
        settings,
    })
}

fn run<R: Rule>(
    rule: &Option<Enabled<R::Settings>>,
    on: &Subject,
    patch: bool,
) -> Option<(Action, bool, Outcome)> {
    rule.as_ref().map(|r| {
        (
            r.action,
            r.mutate,
            R::check(on, &r.settings, r.mutate || patch),
        )
    })
}

macro_rules! rules {
    ($($variant:ident $module:ident $id:literal,)*) => {
        $(pub mod $module;)*

        impl RuleId {
            pub fn summary(self) -> &'static str {
                match self {
                    $(RuleId::$variant => <$module::$variant as Rule>::SUMMARY,)*
                }
            }

            pub fn pillar(self) -> Pillar {
                match self {
                    $(RuleId::$variant => <$module::$variant as Rule>::PILLAR,)*
                }
            }

            /// The release that introduced the rule.
            pub fn since(self) -> Release {
                match self {
                    $(RuleId::$variant => <$module::$variant as Rule>::SINCE,)*
                }
            }

            /// See [`Rule::WORKLOAD_LEVEL`].
            pub fn is_workload_level(self) -> bool {
                match self {
                    $(RuleId::$variant => <$module::$variant as Rule>::WORKLOAD_LEVEL,)*
                }
            }
        }

        /// Settings of each rule.
        #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct Rules {
            $(#[serde(default)] pub $module: $module::$variant,)*
        }

        impl Rules {
            /// The action a rule's own settings give it, if any: how a policy
            /// names a rule newer than its `spec.ruleSet`. (Whether a rule's
            /// key is present cannot say it: an apiserver that served an older
            /// CRD filled every rule in from the schema's defaults; it never
            /// fills `action`.)
            pub fn action_of(&self, rule: RuleId) -> Option<Action> {
                match rule {
                    $(RuleId::$variant => self.$module.action,)*
                }
            }
        }

        /// Every rule of one policy compiled: None where it is Off.
        #[derive(Clone, Debug)]
        pub struct Compiled {
            $(pub $module: Option<Enabled<<$module::$variant as Rule>::Settings>>,)*
        }

        impl Compiled {
            /// Compiles every rule, switched on or not, so that a policy's
            /// problems are all found at once. `default` is the action of a
            /// rule that sets none.
            pub fn compile(
                rules: &Rules,
                policy: &PolicyFacts,
                default: &dyn Fn(RuleId) -> Action,
                problems: &mut Vec<String>,
            ) -> Compiled {
                Compiled {
                    $($module: enable(&rules.$module, rules.$module.action, policy, default, problems),)*
                }
            }

            /// The rules switched on.
            pub fn enabled(&self) -> Vec<RuleId> {
                let mut on = Vec::new();
                $(if self.$module.is_some() { on.push(RuleId::$variant); })*
                on
            }

            /// Runs `rule` on `on` when it is switched on: its action, whether
            /// it may patch, and what it found.
            pub fn run(&self, rule: RuleId, on: &Subject) -> Option<(Action, bool, Outcome)> {
                match rule {
                    $(RuleId::$variant => run::<$module::$variant>(&self.$module, on, false),)*
                }
            }

            /// Runs `rule` writing its patch whether or not the policy lets
            /// it mutate: the patch is then the fix `check -o json` offers
            /// (the policy's own `mutate` is still returned).
            pub fn run_patching(&self, rule: RuleId, on: &Subject) -> Option<(Action, bool, Outcome)> {
                match rule {
                    $(RuleId::$variant => run::<$module::$variant>(&self.$module, on, true),)*
                }
            }
        }
    };
}

for_each_rule!(rules);

/// Serde defaults the rule specs share.
pub(crate) fn one() -> i32 {
    1
}
pub(crate) fn two() -> i32 {
    2
}
pub(crate) fn yes() -> bool {
    true
}

use json_patch::PatchOperation;
use jsonptr::PointerBuf;

/// One thing wrong with a workload, as the user will read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What is wrong, naming the container and field at fault.
    pub message: String,
    /// What to write instead, in one line: a field and value, the object
    /// to add, or a command where nothing in the file can fix it.
    pub fix: String,
    /// JSON pointer to the field at fault, in `object` when it is set.
    pub path: String,
    /// Whether this rule's patch (when mutation is on) fixes it.
    pub fixable: bool,
    /// The object at fault when it is not the workload: the autoscaler or
    /// disruption budget that targets it.
    pub object: Option<ObjectRef>,
    /// The fix as data, where the file can hold it.
    pub edit: Option<Edit>,
}

impl Finding {
    /// A finding about the workload itself, with no fix as data.
    pub fn new(message: String, fix: String, path: impl Into<String>) -> Finding {
        Finding {
            message,
            fix,
            path: path.into(),
            fixable: false,
            object: None,
            edit: None,
        }
    }

    /// Marks it as one this rule's patch fixes.
    pub fn fixable(mut self, fixable: bool) -> Finding {
        self.fixable = fixable;
        self
    }

    /// The finding is about `object`; `path` points into it.
    pub fn on(mut self, object: ObjectRef) -> Finding {
        self.object = Some(object);
        self
    }

    pub fn edit(mut self, edit: Edit) -> Finding {
        self.edit = Some(edit);
        self
    }
}

/// An object in the input or the cluster other than the workload judged.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

impl From<&ScalerRef> for ObjectRef {
    fn from(sc: &ScalerRef) -> ObjectRef {
        ObjectRef {
            kind: sc.kind.to_string(),
            namespace: sc.namespace.clone(),
            name: sc.name.clone(),
        }
    }
}

impl From<&PdbRef> for ObjectRef {
    fn from(p: &PdbRef) -> ObjectRef {
        ObjectRef {
            kind: "PodDisruptionBudget".into(),
            namespace: p.namespace.clone(),
            name: p.name.clone(),
        }
    }
}

impl Edit {
    /// A created object as YAML, to paste into the file or `kubectl apply
    /// -f -`; None for a patch.
    pub fn manifest(&self) -> Option<String> {
        match self {
            Edit::Create(object) => serde_yaml_ng::to_string(object).ok(),
            Edit::Patch(_) => None,
        }
    }
}

/// A finding about an autoscaler's `field` (`minReplicas`,
/// `maxReplicaCount`, …) whose fix sets it to `value`: on that object, at
/// its line, with the patch.
pub(crate) fn on_scaler(sc: &ScalerRef, field: &str, value: i32, message: String) -> Finding {
    // The autoscaler an operator makes from the workload's own fields is
    // fixed there.
    if let Some(fields) = sc.own {
        let path = format!("{fields}/{field}");
        return Finding::new(
            message,
            format!("set {}: {value}", sc.field_name(field)),
            path.clone(),
        )
        .edit(Edit::Patch(vec![add(
            pointer(&path, &[]),
            serde_json::json!(value),
        )]));
    }
    let path = format!("/spec/{field}");
    Finding::new(
        message,
        format!(
            "set spec.{field}: {value} on {} {}/{}",
            sc.kind, sc.namespace, sc.name
        ),
        path.clone(),
    )
    .on(ObjectRef::from(sc))
    .edit(Edit::Patch(vec![add(
        pointer(&path, &[]),
        serde_json::json!(value),
    )]))
}

/// A fix a tool can apply: `check -o json` prints it beside the words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Edit {
    /// RFC 6902 operations on the object at fault (the workload, or the
    /// finding's `object`), as submitted.
    Patch(Vec<PatchOperation>),
    /// A whole object to add beside the workload, names filled in.
    Create(serde_json::Value),
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

pub(crate) fn remove(path: PointerBuf) -> PatchOperation {
    PatchOperation::Remove(json_patch::RemoveOperation { path })
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
