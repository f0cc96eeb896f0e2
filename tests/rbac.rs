//! manifests/rbac.yaml grants exactly what the controller uses: every
//! (group, resource, verb) below is granted, and nothing beyond them.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

/// What the code calls: reflectors list and watch (kube's watcher also
/// gets), status is merge-patched, Events are created and patched (kube's
/// Recorder patches a repeated event), reports are applied.
const USED: &[(&str, &str, &[&str])] = &[
    (
        "waf-admission.dev",
        "wellarchitectedpolicies",
        &["get", "list", "watch"],
    ),
    (
        "waf-admission.dev",
        "wellarchitectedexceptions",
        &["get", "list", "watch"],
    ),
    (
        "waf-admission.dev",
        "wellarchitectedpolicies/status",
        &["get", "patch", "update"],
    ),
    ("", "namespaces", &["get", "list", "watch"]),
    (
        "autoscaling",
        "horizontalpodautoscalers",
        &["get", "list", "watch"],
    ),
    ("keda.sh", "scaledobjects", &["get", "list", "watch"]),
    ("policy", "poddisruptionbudgets", &["get", "list", "watch"]),
    (
        "resource.k8s.io",
        "resourceclaims",
        &["get", "list", "watch"],
    ),
    (
        "resource.k8s.io",
        "resourceclaimtemplates",
        &["get", "list", "watch"],
    ),
    // Nodes' labels, taints and allocatable: where a pod can run.
    ("", "nodes", &["get", "list", "watch"]),
    ("apps", "deployments", &["get", "list", "watch"]),
    ("apps", "statefulsets", &["get", "list", "watch"]),
    // The workload cache: every kind, for the audit and for judging a
    // scale or an autoscaler against the workload it changes.
    ("apps", "daemonsets", &["get", "list", "watch"]),
    ("apps", "replicasets", &["get", "list", "watch"]),
    ("batch", "jobs", &["get", "list", "watch"]),
    ("batch", "cronjobs", &["get", "list", "watch"]),
    ("", "pods", &["get", "list", "watch"]),
    ("", "replicationcontrollers", &["get", "list", "watch"]),
    // The AI-serving resources (the cache) and KServe's runtimes.
    (
        "serving.kserve.io",
        "inferenceservices",
        &["get", "list", "watch"],
    ),
    (
        "serving.kserve.io",
        "llminferenceservices",
        &["get", "list", "watch"],
    ),
    (
        "serving.kserve.io",
        "servingruntimes",
        &["get", "list", "watch"],
    ),
    (
        "serving.kserve.io",
        "clusterservingruntimes",
        &["get", "list", "watch"],
    ),
    (
        "leaderworkerset.x-k8s.io",
        "leaderworkersets",
        &["get", "list", "watch"],
    ),
    ("kaito.sh", "workspaces", &["get", "list", "watch"]),
    ("kaito.sh", "inferencesets", &["get", "list", "watch"]),
    // Which kinds the webhook is sent, for policy status.
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        &["get", "list", "watch"],
    ),
    ("events.k8s.io", "events", &["create", "patch"]),
    ("", "events", &["create", "patch"]),
    // Policy reports: listed by our label, server-side applied (patch,
    // create when new), stale ones deleted.
    (
        "openreports.io",
        "reports",
        &["list", "create", "patch", "delete"],
    ),
    (
        "openreports.io",
        "clusterreports",
        &["list", "create", "patch", "delete"],
    ),
    (
        "wgpolicyk8s.io",
        "policyreports",
        &["list", "create", "patch", "delete"],
    ),
    (
        "wgpolicyk8s.io",
        "clusterpolicyreports",
        &["list", "create", "patch", "delete"],
    ),
];

#[test]
fn the_cluster_role_grants_what_the_controller_uses_and_no_more() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/rbac.yaml"))
        .unwrap();
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect();
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("a ClusterRole");
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for g in rule["apiGroups"].as_array().unwrap() {
            for r in rule["resources"].as_array().unwrap() {
                for v in rule["verbs"].as_array().unwrap() {
                    let (g, r, v) = (
                        g.as_str().unwrap(),
                        r.as_str().unwrap(),
                        v.as_str().unwrap(),
                    );
                    assert!(g != "*" && r != "*" && v != "*", "wildcard in {rule}");
                    granted.insert((g.to_owned(), r.to_owned(), v.to_owned()));
                }
            }
        }
    }
    let used: BTreeSet<_> = USED
        .iter()
        .flat_map(|(g, r, vs)| {
            vs.iter()
                .map(move |v| (g.to_string(), r.to_string(), v.to_string()))
        })
        .collect();
    assert_eq!(granted, used);
    let binding = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRoleBinding")
        .unwrap();
    assert_eq!(binding["subjects"][0]["name"], "waf-admission");
    // The Lease, in the controller's own namespace only.
    let lease = docs
        .iter()
        .find(|d| d["kind"] == "Role")
        .expect("a Role for the Lease");
    assert_eq!(lease["metadata"]["namespace"], "waf-admission");
    assert_eq!(
        lease["rules"],
        serde_json::json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}])
    );
}
