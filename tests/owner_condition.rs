//! One rule for "made by a core controller": the chart's matchCondition is
//! the engine's list, so what the apiserver does not send is exactly what
//! the webhook would admit unjudged. The chart's CEL line is compared with
//! `requester_match_condition()`, then evaluated (kube's client-side CEL)
//! for every requester, kind and subresource, against the engine's answer.
//! The chart's rules send every kind the engine reads.

use serde_json::{Value, json};
use waf_admission::ownership::{CONTROLLER_MANAGER, core_controller, requester_match_condition};
use waf_admission::workload::WorkloadKind;

fn chart_file(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("charts/waf-admission/templates")
            .join(name),
    )
    .unwrap()
}

#[test]
fn the_charts_match_condition_is_the_engines_list() {
    let text = chart_file("_helpers.tpl");
    let start = text
        .find("{{- define \"waf-admission.requesterCondition\" -}}\n")
        .expect("the chart defines waf-admission.requesterCondition");
    let line = text[start..].lines().nth(1).unwrap();
    assert_eq!(line, requester_match_condition());
}

#[test]
fn the_chart_sends_every_kind_the_engine_judges() {
    let text = chart_file("_helpers.tpl");
    let define = |name: &str| {
        let start = text
            .find(&format!("{{{{- define \"waf-admission.{name}\" -}}}}"))
            .unwrap_or_else(|| panic!("the chart defines waf-admission.{name}"));
        text[start..start + text[start..].find("{{- end -}}").unwrap()].to_owned()
    };
    let rules = define("workloadRules") + &define("aiRules");
    for kind in WorkloadKind::ALL {
        let (group, resource) = kind.resource();
        let group = if group.is_empty() { "\"\"" } else { group };
        let sent = rules.split("- apiGroups: ").skip(1).any(|rule| {
            rule.starts_with(&format!("[{group}]"))
                && rule
                    .lines()
                    .find(|l| l.trim_start().starts_with("resources:"))
                    .is_some_and(|l| l.split(['[', ']', ',', ' ']).any(|r| r.trim() == resource))
        });
        assert!(
            sent,
            "the chart's webhook rules do not send {kind} ({resource})"
        );
    }
}

/// Whether the apiserver sends the request: the CEL expression evaluated
/// on `{request}` (as a CRD rule on `self`, the form kube's client CEL
/// evaluates).
fn sent(request: &Value) -> bool {
    let expression = requester_match_condition().replace("request.", "self.request.");
    let schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
        "x-kubernetes-validations": [{"rule": expression, "message": "not sent"}]});
    kube::core::cel::Validator::new()
        .validate(&schema, &json!({ "request": request }), None)
        .is_ok()
}

#[test]
fn the_apiserver_sends_exactly_what_the_webhook_would_judge() {
    let mut users: Vec<String> = [
        "deployment-controller",
        "replicaset-controller",
        "statefulset-controller",
        "daemon-set-controller",
        "replication-controller",
        "job-controller",
        "cronjob-controller",
        "horizontal-pod-autoscaler",
        "generic-garbage-collector",
        "default",
    ]
    .iter()
    .map(|sa| format!("system:serviceaccount:kube-system:{sa}"))
    .collect();
    users.extend(
        [
            CONTROLLER_MANAGER,
            "dev@example.com",
            "system:serviceaccount:ml:replicaset-controller",
        ]
        .map(String::from),
    );
    let mut checked = 0;
    let mut skipped = 0;
    for user in &users {
        for kind in WorkloadKind::ALL {
            for sub in [None, Some("scale"), Some("ephemeralcontainers")] {
                let (group, resource) = kind.resource();
                let mut request = json!({
                    "resource": {"group": group, "version": "v1", "resource": resource},
                    "userInfo": {"username": user},
                });
                if let Some(sub) = sub {
                    request["subResource"] = json!(sub);
                }
                let judged = core_controller(user, kind, sub).is_none();
                assert_eq!(sent(&request), judged, "{user} writes {resource} {sub:?}");
                checked += 1;
                skipped += usize::from(!judged);
            }
        }
    }
    assert_eq!(checked, users.len() * WorkloadKind::ALL.len() * 3);
    // Each controller's own writes, and the controller-manager's.
    assert_eq!(skipped, 7 + 4 + 7);
}
