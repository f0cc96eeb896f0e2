//! One rule for "judged through its owner": the chart's matchCondition is
//! the engine's list, so `check` and the cluster judge the same objects.
//! The chart's CEL line is compared with `owner_match_condition()`, then
//! evaluated (kube's client-side CEL) for every owner the engine knows and
//! some it does not, against the engine's own answer.

use serde_json::{Value, json};
use waf_admission::decision::{JUDGED_THROUGH_OWNER, judged_through, owner_match_condition};
use waf_admission::workload::Workload;

fn helpers() -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("charts/waf-admission/templates/_helpers.tpl"),
    )
    .unwrap()
}

#[test]
fn the_charts_match_condition_is_the_engines_list() {
    let text = helpers();
    let start = text
        .find("{{- define \"waf-admission.ownerCondition\" -}}\n")
        .expect("the chart defines waf-admission.ownerCondition");
    let body = &text[start..];
    let line = body.lines().nth(1).unwrap();
    assert_eq!(line, owner_match_condition());
}

fn object(kind: &str, owner: Option<(&str, &str, bool)>) -> Value {
    let template = json!({"metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "contoso.azurecr.io/x:1"}]}});
    let (api_version, spec) = match kind {
        "Pod" => ("v1", template["spec"].clone()),
        "ReplicaSet" | "Deployment" | "StatefulSet" => (
            "apps/v1",
            json!({"selector": {"matchLabels": {"app": "x"}}, "template": template}),
        ),
        _ => ("batch/v1", json!({"template": template})),
    };
    let mut o = json!({"apiVersion": api_version, "kind": kind,
        "metadata": {"name": "x", "namespace": "ml"}, "spec": spec});
    if let Some((api_version, kind, controller)) = owner {
        o["metadata"]["ownerReferences"] = json!([{"apiVersion": api_version, "kind": kind,
            "name": "owner", "uid": "u", "controller": controller}]);
    }
    o
}

/// Whether the apiserver sends the request: the CEL expression evaluated
/// on `{request, object}` (as a CRD rule on `self`, the form kube's client
/// CEL evaluates).
fn sent(request: &Value, obj: &Value) -> bool {
    let expression = owner_match_condition()
        .replace("request.", "self.request.")
        .replace("object.", "self.object.");
    let schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
        "x-kubernetes-validations": [{"rule": expression, "message": "not sent"}]});
    kube::core::cel::Validator::new()
        .validate(&schema, &json!({"request": request, "object": obj}), None)
        .is_ok()
}

#[test]
fn the_apiserver_sends_exactly_what_the_engine_judges() {
    let mut owners: Vec<(String, String)> = JUDGED_THROUGH_OWNER
        .iter()
        .map(|(g, k)| (format!("{g}/v1"), (*k).to_owned()))
        .collect();
    for (a, k) in [
        ("ray.io/v1", "RayCluster"),
        ("argoproj.io/v1alpha1", "Rollout"),
        ("kubeflow.org/v1", "PyTorchJob"),
        ("kaito.sh/v1beta1", "Workspace"),
        ("example.com/v1", "Deployment"),
    ] {
        owners.push((a.into(), k.into()));
    }
    let mut checked = 0;
    for kind in ["Pod", "ReplicaSet", "Job", "Deployment", "StatefulSet"] {
        for owner in owners.iter().map(Some).chain([None]) {
            for controller in [true, false] {
                let obj = object(
                    kind,
                    owner.map(|(a, k)| (a.as_str(), k.as_str(), controller)),
                );
                let w = Workload::from_value(obj.clone(), "ml").unwrap().unwrap();
                let request = json!({"kind": {"group": "", "version": "v1", "kind": kind}});
                assert_eq!(
                    sent(&request, &obj),
                    judged_through(&w).is_none(),
                    "{kind} owned by {owner:?} (controller {controller})"
                );
                // `kubectl debug` on any Pod is always sent.
                let debug = json!({"kind": {"group": "", "version": "v1", "kind": kind},
                    "subResource": "ephemeralcontainers"});
                assert!(sent(&debug, &obj), "{kind} ephemeralcontainers");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 5 * (owners.len() + 1) * 2);
}
