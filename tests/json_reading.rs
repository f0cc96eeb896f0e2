//! The webhook reads `request.object` straight from JSON text; `check` reads
//! a parsed tree. Both roads must give the same workload, and the same error
//! naming the same field, for every manifest we have and for broken ones.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use waf_admission::workload::Workload;

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

fn objects() -> Vec<(String, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    yaml_files(&root.join("tests/fixtures"), &mut files);
    yaml_files(&root.join("examples"), &mut files);
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let Ok(value) = <Value as serde::Deserialize>::deserialize(doc) else {
                continue; // broken YAML fixtures are check's business, not this test's
            };
            if value.is_object() {
                out.push((format!("{} document {}", file.display(), i + 1), value));
            }
        }
    }
    out
}

fn both_roads(value: &Value) -> (String, String) {
    let text = serde_json::to_string(value).unwrap();
    let tree = format!("{:?}", Workload::from_value(value.clone(), "ns"));
    let json = format!("{:?}", Workload::from_json(&text, "ns"));
    (tree, json)
}

#[test]
fn every_manifest_reads_the_same_from_text_and_from_a_tree() {
    let objects = objects();
    assert!(objects.len() > 100, "only {} objects found", objects.len());
    let mut workloads = 0;
    for (at, value) in &objects {
        let (tree, json) = both_roads(value);
        assert_eq!(tree, json, "{at}");
        workloads += usize::from(tree.starts_with("Ok(Some("));
    }
    assert!(
        workloads > 50,
        "only {workloads} workloads among the objects"
    );
}

#[test]
fn broken_workloads_get_the_same_error_on_both_roads() {
    let good = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "llm", "namespace": "ml"},
        "spec": {"selector": {"matchLabels": {"app": "llm"}},
                 "template": {"metadata": {"labels": {"app": "llm"}},
                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}
    });
    let mut cases = Vec::new();
    let mut replicas = good.clone();
    replicas["spec"]["replicas"] = json!("two");
    cases.push(("replicas as a string", replicas, "spec.replicas"));
    let mut containers = good.clone();
    containers["spec"]["template"]["spec"]["containers"] = json!(5);
    cases.push((
        "containers not a list",
        containers,
        "spec.template.spec.containers",
    ));
    let mut metadata = good.clone();
    metadata["metadata"] = json!(3);
    cases.push(("metadata not an object", metadata, "metadata"));
    let mut retired = good.clone();
    retired["apiVersion"] = json!("extensions/v1beta1");
    cases.push(("retired apiVersion", retired, "no longer served"));
    for (what, value, needle) in cases {
        let (tree, json) = both_roads(&value);
        assert_eq!(tree, json, "{what}");
        assert!(tree.starts_with("Err("), "{what}: {tree}");
        assert!(tree.contains(needle), "{what}: {tree}");
    }
    // Not a workload kind, or no kind at all: not judged, on both roads.
    for value in [json!({"apiVersion": "v1", "kind": "Service"}), json!({})] {
        let (tree, json) = both_roads(&value);
        assert_eq!(tree, "Ok(None)");
        assert_eq!(json, "Ok(None)");
    }
    // Text that is not JSON at all is an error naming the object.
    let err = Workload::from_json("{\"kind\":", "ns").unwrap_err();
    assert!(err.to_string().contains("not JSON"), "{err}");
}

/// What `kubectl apply` adds to an object and the engine never reads —
/// `managedFields`, the last-applied annotation, `status` — changes nothing
/// in the workload on either road, even when it is not what k8s-openapi
/// would accept; every other annotation is kept.
#[test]
fn what_kubectl_apply_adds_changes_nothing_in_the_workload() {
    let review: Value =
        serde_json::from_str(include_str!("fixtures/reviews/gpu-deployment-apply.json")).unwrap();
    let applied = review["request"]["object"].clone();
    assert!(applied["metadata"]["managedFields"].is_array());
    let mut plain = applied.clone();
    let meta = plain["metadata"].as_object_mut().unwrap();
    meta.remove("managedFields");
    meta["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
    plain.as_object_mut().unwrap().remove("status");
    let mut odd = applied.clone();
    odd["metadata"]["managedFields"] = json!("not a list");
    odd["metadata"]["creationTimestamp"] = json!(5);
    odd["status"] = json!(["not", "a", "status"]);

    let expected = both_roads(&plain);
    assert!(expected.0.starts_with("Ok(Some("), "{}", expected.0);
    assert_eq!(both_roads(&applied), expected);
    assert_eq!(both_roads(&odd), expected);

    // A bare Pod's annotations are its template's: kept, but for kubectl's copy.
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": \"copy\"}",
            "waf.azure.com/model-source": "oci://acr/model@sha256:abc"}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    let w = Workload::from_value(pod.clone(), "ns").unwrap().unwrap();
    let keys: Vec<&str> = w.template_annotations.keys().map(String::as_str).collect();
    assert_eq!(keys, ["waf.azure.com/model-source"]);
    assert_eq!(both_roads(&pod).0, both_roads(&pod).1);
}

/// The webhook reads `request.object` as the type `request.kind` names.
/// Told the object's own type, or a wrong one, it reads what `from_json`
/// reads: the type is checked in the same pass, never trusted.
#[test]
fn told_its_type_or_a_wrong_one_an_object_reads_the_same() {
    let mut told = 0;
    for (at, value) in &objects() {
        let text = serde_json::to_string(value).unwrap();
        let expected = format!("{:?}", Workload::from_json(&text, "ns"));
        let own = (
            value["apiVersion"].as_str().unwrap_or_default(),
            value["kind"].as_str().unwrap_or_default(),
        );
        for (api_version, kind) in [own, ("apps/v1", "Deployment"), ("v1", "Pod")] {
            let got = format!(
                "{:?}",
                Workload::from_json_as(&text, "ns", api_version, kind)
            );
            assert_eq!(got, expected, "{at} sent as {api_version} {kind}");
        }
        told += usize::from(expected.starts_with("Ok(Some("));
    }
    assert!(told > 50, "only {told} workloads among the fixtures");
}
