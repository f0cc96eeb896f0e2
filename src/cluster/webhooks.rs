//! Which workload kinds the live webhook configuration sends to the webhook
//! that judges them, so a policy's status can say when it lists a kind
//! that never reaches the webhook (issue 21, "status tells the truth"): a
//! policy that governs Jobs is not in force while the configuration's rules
//! leave Jobs out.
//!
//! Pure: the controller feeds it the ValidatingWebhookConfigurations its
//! reflector holds. Rules are read as the apiserver reads them
//! (`k8s.io/apiserver/pkg/admission/plugin/webhook/predicates/rules`): a
//! kind is sent when some rule of a webhook named [`JUDGING_WEBHOOK`]
//! matches its group, version `v1`, resource and a namespaced request,
//! for CREATE and for UPDATE (in one rule or in two). The webhook's
//! namespaceSelector, objectSelector and matchConditions narrow what is
//! sent within a kind (kube-system, owned Pods judged through their
//! owner); they never leave a whole kind out, so they are not read here.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ValidatingWebhookConfiguration,
};
use kube::ResourceExt;

use crate::workload::WorkloadKind;

/// The webhook that judges workloads (the chart's webhooks.yaml): the one
/// whose rules decide whether a policy's kinds are judged at all.
pub const JUDGING_WEBHOOK: &str = "validate.waf-admission.dev";

/// What the live configurations send to [`JUDGING_WEBHOOK`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Coverage {
    /// No configuration has a webhook of that name: nothing is judged.
    Absent,
    /// The configurations that have it (sorted), and the kinds their rules
    /// send for both CREATE and UPDATE.
    Found {
        configurations: Vec<String>,
        sent: BTreeSet<WorkloadKind>,
    },
}

/// The kinds of a policy's `match.kinds` that never reach the webhook, and
/// where they would have to be added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindsNotSent {
    pub kinds: Vec<WorkloadKind>,
    /// The configurations that have the webhook; empty when none has.
    pub configurations: Vec<String>,
}

impl Coverage {
    /// Reads the configurations' rules.
    pub fn of(configurations: &[Arc<ValidatingWebhookConfiguration>]) -> Coverage {
        let mut names = BTreeSet::new();
        let mut rules = Vec::new();
        for configuration in configurations {
            for webhook in configuration.webhooks.iter().flatten() {
                if webhook.name == JUDGING_WEBHOOK {
                    names.insert(configuration.name_any());
                    rules.extend(webhook.rules.iter().flatten());
                }
            }
        }
        if names.is_empty() {
            return Coverage::Absent;
        }
        Coverage::Found {
            configurations: names.into_iter().collect(),
            sent: kinds_sent(rules),
        }
    }

    /// Of `listed` (a policy's `match.kinds`), those not sent, in the
    /// policy's order; None when every one is.
    pub fn not_sent(&self, listed: &[WorkloadKind]) -> Option<KindsNotSent> {
        let (kinds, configurations): (Vec<WorkloadKind>, &[String]) = match self {
            Coverage::Absent => (listed.to_vec(), &[]),
            Coverage::Found {
                configurations,
                sent,
            } => (
                listed
                    .iter()
                    .copied()
                    .filter(|k| !sent.contains(k))
                    .collect(),
                configurations,
            ),
        };
        (!kinds.is_empty()).then(|| KindsNotSent {
            kinds,
            configurations: configurations.to_vec(),
        })
    }
}

impl KindsNotSent {
    /// The Ready condition's message: what is missing and where to add it.
    pub fn message(&self) -> String {
        let kinds = self
            .kinds
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        match self.configurations.as_slice() {
            [] => format!(
                "no ValidatingWebhookConfiguration has the webhook \"{JUDGING_WEBHOOK}\", so no \
                 {kinds} reaches it: install the chart's webhook configurations"
            ),
            [one] => format!(
                "the webhook configuration \"{one}\" does not send {kinds}: add them to its \
                 rules (the chart sends every kind by default)"
            ),
            several => format!(
                "the webhook configurations {} do not send {kinds}: add them to the rules of \
                 \"{JUDGING_WEBHOOK}\" (the chart sends every kind by default)",
                several
                    .iter()
                    .map(|c| format!("\"{c}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Where the apiserver finds a kind: (API group, version, resource).
/// The core kinds are served at v1 of their group, the AI-serving
/// resources at the version the engine names (a rule for another served
/// version sends them too, under `matchPolicy: Equivalent`).
pub fn resource_of(kind: WorkloadKind) -> (&'static str, &'static str, &'static str) {
    let (group, resource) = kind.resource();
    let version = kind
        .api_version()
        .rsplit_once('/')
        .map_or(kind.api_version(), |(_, v)| v);
    (group, version, resource)
}

/// Every kind the engine judges, for reading rules against (a test checks
/// it against the CRD schema's list of kinds).
const KINDS: &[WorkloadKind] = &WorkloadKind::ALL;

/// The kinds `rules` send for both CREATE and UPDATE.
pub fn kinds_sent<'a>(
    rules: impl IntoIterator<Item = &'a RuleWithOperations>,
) -> BTreeSet<WorkloadKind> {
    let rules: Vec<&RuleWithOperations> = rules.into_iter().collect();
    KINDS
        .iter()
        .copied()
        .filter(|&kind| {
            ["CREATE", "UPDATE"]
                .iter()
                .all(|op| rules.iter().any(|r| sends(r, kind, op)))
        })
        .collect()
}

/// Whether one rule sends a namespaced `operation` on `kind`'s resource
/// itself (not a subresource).
fn sends(rule: &RuleWithOperations, kind: WorkloadKind, operation: &str) -> bool {
    let (group, version, resource) = resource_of(kind);
    let listed = |values: &Option<Vec<String>>, value: &str| {
        values.iter().flatten().any(|v| v == "*" || v == value)
    };
    // "*" is every resource, "*/*" every resource and subresource,
    // "pods/*" every subresource of pods and (as the apiserver splits it,
    // with "*" matching the empty subresource) pods itself; "*/scale" or
    // "pods/status" a subresource only.
    let resource_listed = rule.resources.iter().flatten().any(|r| {
        let (res, sub) = r.split_once('/').unwrap_or((r, ""));
        (res == "*" || res == resource) && (sub == "*" || sub.is_empty())
    });
    // An absent scope is "*"; "Cluster" never sends a namespaced object.
    let scoped = matches!(rule.scope.as_deref(), None | Some("*" | "Namespaced"));
    listed(&rule.operations, operation)
        && listed(&rule.api_groups, group)
        && listed(&rule.api_versions, version)
        && resource_listed
        && scoped
}

#[cfg(test)]
mod tests {
    use super::*;
    use WorkloadKind::*;
    use serde_json::{Value, json};

    fn rule(value: Value) -> RuleWithOperations {
        serde_json::from_value(value).unwrap()
    }

    fn sent(rules: Value) -> Vec<WorkloadKind> {
        let rules: Vec<RuleWithOperations> = serde_json::from_value(rules).unwrap();
        kinds_sent(&rules).into_iter().collect()
    }

    fn configuration(name: &str, webhooks: Value) -> Arc<ValidatingWebhookConfiguration> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": name},
                "webhooks": webhooks}))
            .unwrap(),
        )
    }

    /// A webhook as the chart writes it, with `rules`.
    fn webhook(name: &str, rules: Value) -> Value {
        json!({"name": name, "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "clientConfig": {"service": {"name": "waf-admission", "namespace": "waf-admission"}},
            "rules": rules})
    }

    /// The chart's default rules before every kind was sent.
    /// Rules that send Deployments, StatefulSets and Pods only (the
    /// chart's before every kind was sent).
    fn three_kinds() -> Value {
        json!([
            {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
             "resources": ["deployments", "statefulsets"], "scope": "Namespaced"},
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
             "resources": ["pods", "pods/ephemeralcontainers"], "scope": "Namespaced"}
        ])
    }

    fn chart_rules() -> Value {
        json!([
            {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
             "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"], "scope": "Namespaced"},
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
             "resources": ["pods", "pods/ephemeralcontainers", "replicationcontrollers"], "scope": "Namespaced"},
            {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
             "resources": ["jobs", "cronjobs"], "scope": "Namespaced"}
        ])
        .as_array()
        .into_iter()
        .flatten()
        .chain(ai_rules().as_array().into_iter().flatten())
        .cloned()
        .collect()
    }

    /// The chart's rules for the AI-serving resources.
    fn ai_rules() -> Value {
        json!([
            {"apiGroups": ["serving.kserve.io"], "apiVersions": ["v1beta1", "v1alpha1", "v1alpha2"],
             "operations": ["CREATE", "UPDATE"],
             "resources": ["inferenceservices", "llminferenceservices"], "scope": "Namespaced"},
            {"apiGroups": ["leaderworkerset.x-k8s.io"], "apiVersions": ["v1"],
             "operations": ["CREATE", "UPDATE"], "resources": ["leaderworkersets"], "scope": "Namespaced"},
            {"apiGroups": ["kaito.sh"], "apiVersions": ["v1beta1", "v1alpha1"],
             "operations": ["CREATE", "UPDATE"], "resources": ["workspaces", "inferencesets"], "scope": "Namespaced"},
        ])
    }

    #[test]
    fn the_charts_rules_send_every_kind() {
        assert_eq!(sent(chart_rules()), KINDS);
    }

    #[test]
    fn every_kind_is_sent_by_explicit_rules_for_its_own_group() {
        let rules = json!([
            {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
             "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"]},
            {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
             "resources": ["jobs", "cronjobs"]},
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
             "resources": ["pods", "replicationcontrollers"]}
        ]);
        let rules: Value = rules
            .as_array()
            .into_iter()
            .flatten()
            .chain(ai_rules().as_array().into_iter().flatten())
            .cloned()
            .collect();
        assert_eq!(
            sent(rules),
            KINDS
                .iter()
                .copied()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_resource_in_the_wrong_group_is_not_sent() {
        // batch has no deployments; the core group has no jobs.
        let rules = json!([
            {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["*"],
             "resources": ["deployments"]},
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["*"],
             "resources": ["jobs"]}
        ]);
        assert!(sent(rules).is_empty());
    }

    #[test]
    fn wildcards_in_groups_versions_resources_and_operations_send_everything() {
        let all = KINDS.iter().copied().collect::<BTreeSet<_>>();
        let all: Vec<_> = all.into_iter().collect();
        for rules in [
            json!([{"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"], "resources": ["*"]}]),
            json!([{"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"], "resources": ["*/*"], "scope": "*"}]),
        ] {
            assert_eq!(sent(rules.clone()), all, "{rules}");
        }
        // Every version's `*` but one version: the kinds served at v1 (the
        // AI-serving resources are at v1beta1 and v1alpha1, but for
        // LeaderWorkerSet).
        let v1 = json!([{"apiGroups": ["*"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["*"]}]);
        let at_v1: Vec<_> = all
            .iter()
            .copied()
            .filter(|k| resource_of(*k).1 == "v1")
            .collect();
        assert_eq!(sent(v1), at_v1);
        assert_eq!(at_v1.len(), 9);
        assert_eq!(
            sent(
                json!([{"apiGroups": ["batch"], "apiVersions": ["*"], "operations": ["*"], "resources": ["*"]}])
            ),
            [Job, CronJob]
        );
    }

    #[test]
    fn a_subresource_alone_does_not_send_the_object() {
        for resources in [
            json!(["*/scale"]),
            json!(["deployments/scale"]),
            json!(["pods/ephemeralcontainers", "*/status"]),
        ] {
            let rules = json!([{"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"], "resources": resources}]);
            assert!(sent(rules).is_empty(), "{resources}");
        }
    }

    #[test]
    fn a_resource_with_every_subresource_sends_the_object_too_as_the_apiserver_splits_it() {
        let rules = json!([{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["*"],
            "resources": ["deployments/*"]}]);
        assert_eq!(sent(rules), [Deployment]);
    }

    #[test]
    fn a_kind_needs_create_and_update_in_one_rule_or_two() {
        let only = |ops: Value| json!([{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ops, "resources": ["deployments"]}]);
        assert!(
            sent(only(json!(["DELETE"]))).is_empty(),
            "DELETE alone does not count"
        );
        assert!(
            sent(only(json!(["CREATE"]))).is_empty(),
            "an UPDATE would escape"
        );
        assert!(sent(only(json!(["UPDATE", "DELETE", "CONNECT"]))).is_empty());
        assert!(sent(only(json!([]))).is_empty());
        assert_eq!(sent(only(json!(["*"]))), [Deployment]);
        let split = json!([
            {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["deployments"]},
            {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["deployments"]}
        ]);
        assert_eq!(sent(split), [Deployment]);
        // CREATE for one kind and UPDATE for another sends neither.
        let crossed = json!([
            {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["deployments"]},
            {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["statefulsets"]}
        ]);
        assert!(sent(crossed).is_empty());
    }

    #[test]
    fn a_version_that_is_not_v1_or_a_cluster_scope_sends_nothing() {
        let base = |version: &str, scope: &str| {
            json!([{"apiGroups": ["apps"], "apiVersions": [version], "operations": ["*"],
                "resources": ["deployments"], "scope": scope}])
        };
        assert!(sent(base("v1beta1", "*")).is_empty());
        assert!(sent(base("v1", "Cluster")).is_empty());
        assert_eq!(sent(base("v1", "Namespaced")), [Deployment]);
        assert_eq!(sent(base("v1", "*")), [Deployment]);
    }

    #[test]
    fn missing_fields_send_nothing() {
        assert!(kinds_sent(&[rule(json!({}))]).is_empty());
        assert!(
            sent(json!([{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["*"]}]))
                .is_empty()
        );
    }

    #[test]
    fn only_the_judging_webhook_counts_and_configurations_add_up() {
        let everything = json!([{"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"], "resources": ["*"]}]);
        let coverage = Coverage::of(&[
            configuration(
                "waf-admission",
                json!([
                    webhook(JUDGING_WEBHOOK, three_kinds()),
                    webhook("policies.waf-admission.dev", everything.clone()),
                ]),
            ),
            configuration(
                "someone-else",
                json!([webhook("validate.example.com", everything)]),
            ),
            configuration(
                "waf-admission-batch",
                json!([webhook(
                    JUDGING_WEBHOOK,
                    json!([
                        {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["jobs"]}
                    ])
                )]),
            ),
        ]);
        assert_eq!(
            coverage,
            Coverage::Found {
                configurations: vec!["waf-admission".into(), "waf-admission-batch".into()],
                sent: [Deployment, StatefulSet, Pod, Job].into_iter().collect(),
            }
        );
        assert_eq!(coverage.not_sent(&[Deployment, Job, Pod]), None);
    }

    #[test]
    fn a_policy_listing_kinds_not_sent_names_them_and_the_configuration() {
        let coverage = Coverage::of(&[configuration(
            "waf-admission",
            json!([webhook(JUDGING_WEBHOOK, three_kinds())]),
        )]);
        assert_eq!(coverage.not_sent(&[Deployment, StatefulSet, Pod]), None);
        let missing = coverage.not_sent(&[Deployment, Job, ReplicaSet]).unwrap();
        assert_eq!(missing.kinds, [Job, ReplicaSet], "in the policy's order");
        assert_eq!(
            missing.message(),
            "the webhook configuration \"waf-admission\" does not send Job, ReplicaSet: add \
             them to its rules (the chart sends every kind by default)"
        );
    }

    #[test]
    fn several_configurations_are_all_named() {
        let coverage = Coverage::of(&[
            configuration("b", json!([webhook(JUDGING_WEBHOOK, three_kinds())])),
            configuration("a", json!([webhook(JUDGING_WEBHOOK, json!([]))])),
        ]);
        let missing = coverage.not_sent(&[CronJob]).unwrap();
        assert_eq!(missing.configurations, ["a", "b"]);
        assert!(
            missing
                .message()
                .starts_with("the webhook configurations \"a\", \"b\" do not send CronJob: "),
            "{}",
            missing.message()
        );
    }

    #[test]
    fn without_the_webhook_every_listed_kind_is_not_sent_and_the_message_says_so() {
        for configurations in [
            vec![],
            vec![configuration(
                "other",
                json!([webhook("validate.example.com", three_kinds())]),
            )],
            vec![configuration("empty", Value::Null)],
        ] {
            let coverage = Coverage::of(&configurations);
            assert_eq!(coverage, Coverage::Absent);
            let missing = coverage.not_sent(&[Deployment, Pod]).unwrap();
            assert_eq!(missing.kinds, [Deployment, Pod]);
            assert_eq!(
                missing.message(),
                "no ValidatingWebhookConfiguration has the webhook \
                 \"validate.waf-admission.dev\", so no Deployment, Pod reaches it: install the \
                 chart's webhook configurations"
            );
        }
    }

    #[test]
    fn every_kind_a_policy_can_list_is_read_against_the_rules() {
        fn strings(v: &Value, out: &mut BTreeSet<String>) {
            match v {
                Value::Object(o) => {
                    if let Some(Value::Array(values)) = o.get("enum") {
                        out.extend(values.iter().filter_map(|s| s.as_str().map(str::to_owned)));
                    }
                    o.values().for_each(|v| strings(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
                _ => {}
            }
        }
        let schema = serde_json::to_value(schemars::schema_for!(WorkloadKind)).unwrap();
        let mut listable = BTreeSet::new();
        strings(&schema, &mut listable);
        let read: BTreeSet<String> = KINDS.iter().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(listable, read);
    }

    #[test]
    fn every_kind_maps_to_a_resource_of_its_api_version() {
        for &kind in KINDS {
            let (group, version, resource) = resource_of(kind);
            let api_version = if group.is_empty() {
                version.to_owned()
            } else {
                format!("{group}/{version}")
            };
            assert_eq!(api_version, kind.api_version(), "{kind:?}");
            assert_eq!(
                resource,
                format!("{}s", kind.as_str().to_lowercase()),
                "{kind:?}"
            );
        }
    }
}
