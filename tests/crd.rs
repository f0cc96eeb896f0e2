//! The CRDs as shipped: the checked-in YAML is what the binary generates,
//! it is a valid apiextensions.k8s.io/v1 CustomResourceDefinition by
//! Kubernetes' own schemas, and the sample policies fit its schema while
//! broken ones do not.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use waf_admission::policy::crd;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

#[test]
fn checked_in_crds_match_the_generated_ones() {
    for def in crd::definitions() {
        let path = root().join("manifests/crds").join(crd::file_name(&def));
        let on_disk =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            on_disk == crd::to_yaml(&def).unwrap(),
            "{} is stale: run `cargo run -- crd --out-dir manifests/crds`",
            path.display()
        );
    }
}

#[test]
fn the_crd_reference_in_docs_is_current() {
    let on_disk = std::fs::read_to_string(root().join("docs/crds.md")).unwrap();
    assert!(
        on_disk == crd::reference_markdown(),
        "docs/crds.md is stale: run `cargo run -- crd --docs > docs/crds.md`"
    );
}

#[test]
fn the_embedded_baseline_is_the_shipped_sample() {
    let shipped = std::fs::read_to_string(root().join("manifests/policies/baseline.yaml")).unwrap();
    assert_eq!(shipped, waf_admission::policy::baseline::BASELINE_YAML);
}

#[test]
fn shipped_manifests_are_valid_for_kubernetes() {
    let available = Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install kubernetes-validate (pip)"
        );
        eprintln!("kubernetes-validate not installed: skipped");
        return;
    }
    // Every Kubernetes object shipped in manifests/; the sample policies are
    // our own kind, held to the generated schema below instead.
    let mut files: Vec<PathBuf> = crd::definitions()
        .iter()
        .map(|def| root().join("manifests/crds").join(crd::file_name(def)))
        .collect();
    files.push(root().join("manifests/rbac.yaml"));
    for path in files {
        let out = Command::new("kubernetes-validate")
            .arg("--strict")
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {text}", path.display());
        assert!(text.contains("passed"), "{text}");
    }
}

fn policy_schema() -> jsonschema::Validator {
    let schema = crd::schema_json(&crd::definitions()[0]);
    jsonschema::validator_for(&schema).unwrap()
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect()
}

#[test]
fn every_sample_policy_fits_the_generated_schema() {
    let validator = policy_schema();
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("manifests/policies")).unwrap() {
        let path = entry.unwrap().path();
        for doc in yaml_docs(&path) {
            let errors: Vec<String> = validator
                .iter_errors(&doc)
                .map(|e| format!("{} at {}", e, e.instance_path))
                .collect();
            assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} sample policies");
}

/// kubectl and Helm read YAML 1.1, where an unquoted `Off` (or `on`, `yes`,
/// `no`) is a boolean: the apiserver would then refuse `action: Off`.
#[test]
fn shipped_policies_quote_what_yaml_1_1_reads_as_a_boolean() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("manifests/policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.push(root().join("charts/waf-admission/files/baseline.yaml"));
    let bare = ["y", "n", "yes", "no", "on", "off"];
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split(" #").next().unwrap_or_default();
            for part in code.split([',', '{', '}', '[', ']']) {
                let value = part.rsplit_once(": ").map_or(part, |(_, v)| v).trim();
                assert!(
                    !bare.contains(&value.to_lowercase().as_str()),
                    "{}:{}: quote {value:?}: YAML 1.1 reads it as a boolean",
                    path.display(),
                    i + 1
                );
            }
        }
    }
}

#[test]
fn broken_policies_are_refused_by_the_schema() {
    let validator = policy_schema();
    let base = yaml_docs(&root().join("manifests/policies/baseline.yaml")).remove(0);
    let cases = [
        ("/spec/action", serde_json::json!("Block")),
        ("/spec/rules/autoscaler/action", serde_json::json!("Never")),
        ("/spec/match/workloads", serde_json::json!("Everything")),
        ("/spec/rules/zoneSpread/maxSkew", serde_json::json!("one")),
        ("/spec/rules/zoneSpread/maxSkew", serde_json::json!(0)),
        (
            "/spec/rules/imageProvenance/allowedRegistries",
            serde_json::json!("*"),
        ),
        ("/spec/match/kinds", serde_json::json!(["Daemonset"])),
        ("/spec/match/kinds", serde_json::json!(["Service"])),
    ];
    for (pointer, value) in cases {
        let mut p = base.clone();
        *p.pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{pointer}")) = value.clone();
        assert!(!validator.is_valid(&p), "{pointer} = {value} was accepted");
    }
}

fn exception_schema() -> Value {
    let exception = crd::definitions().remove(1);
    assert_eq!(exception.spec.names.kind, "WellArchitectedException");
    crd::schema_json(&exception)
}

/// The exception CRD's CEL rule, evaluated the way the apiserver does it
/// (kube's client-side CEL, schema defaults applied first): the shipped
/// exception passes; one that names no workload is refused with the message.
#[test]
fn exceptions_that_name_no_workload_are_refused_by_the_apiserver_rule() {
    let schema = exception_schema();
    let cel = kube::core::cel::Validator::new();
    let sample = yaml_docs(&root().join("examples/exceptions/ollama-research.yaml"))
        .pop()
        .unwrap();
    cel.validate(&schema, &sample, None)
        .unwrap_or_else(|e| panic!("the shipped exception is refused: {e}"));
    let mut by_selector = sample.clone();
    by_selector["spec"]
        .as_object_mut()
        .unwrap()
        .remove("workloads");
    by_selector["spec"]["selector"] = serde_json::json!({"matchLabels": {"app": "ollama"}});
    cel.validate(&schema, &by_selector, None)
        .unwrap_or_else(|e| panic!("an exception by selector is refused: {e}"));
    let mut by_owner = sample.clone();
    by_owner["spec"]
        .as_object_mut()
        .unwrap()
        .remove("workloads");
    by_owner["spec"]["owners"] = serde_json::json!([{"apiGroup": "kaito.sh", "kind": "Workspace"}]);
    cel.validate(&schema, &by_owner, None)
        .unwrap_or_else(|e| panic!("an exception by owner kind is refused: {e}"));
    for workloads in [None, Some(serde_json::json!([]))] {
        let mut nameless = sample.clone();
        let spec = nameless["spec"].as_object_mut().unwrap();
        spec.remove("workloads");
        if let Some(w) = workloads.clone() {
            spec.insert("workloads".into(), w);
        }
        let err = cel
            .validate(&schema, &nameless, None)
            .expect_err("an exception naming no workload passed the CEL rule")
            .to_string();
        assert!(
            err.contains("name the exempted workloads in `workloads`, `selector` or `owners`"),
            "workloads {workloads:?}: {err}"
        );
    }
    // Empty lists and strings are refused by the schema itself.
    let validator = jsonschema::validator_for(&schema).unwrap();
    for (pointer, value) in [
        ("/spec/rules", serde_json::json!([])),
        ("/spec/reason", serde_json::json!("")),
        ("/spec/workloads/0/name", serde_json::json!("")),
    ] {
        let mut e = sample.clone();
        *e.pointer_mut(pointer).unwrap() = value.clone();
        assert!(!validator.is_valid(&e), "{pointer} = {value} was accepted");
    }
}

/// kubectl and Helm read YAML 1.1, where a plain `Off` is the boolean
/// false: the enum must reach the apiserver as the string "Off".
#[test]
fn kubectl_reads_the_action_enum_as_strings() {
    let path = root().join("manifests/crds/waf-admission.dev_wellarchitectedpolicies.yaml");
    let out = std::process::Command::new("kubectl")
        .args([
            "patch", "--local", "--type", "merge", "-p", "{}", "-o", "json", "-f",
        ])
        .arg(&path)
        .output()
        .expect("kubectl is required (apt-get install kubernetes-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crd: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let action = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["rules"]["properties"]["zoneSpread"]["properties"]["action"]["enum"];
    // null: the field is optional (nullable).
    assert_eq!(
        action,
        &serde_json::json!(["Off", "Audit", "Warn", "Deny", null])
    );
}

/// The apiserver refuses with the CRD's pattern exactly the rule sets the
/// webhook and `check` cannot read, so a typo never reaches a replica.
#[test]
fn the_schema_and_the_reader_agree_on_what_a_rule_set_is() {
    use waf_admission::policy::release::RuleSet;
    let validator = policy_schema();
    for text in [
        "latest",
        "0.1",
        "0.2",
        "v0.2",
        "0.2.1",
        "10.20",
        "Latest",
        "0",
        "0.",
        ".1",
        "0.1.2.3",
        "0.x",
        "v",
        "",
        " 0.1",
        "0.1 ",
        "newest",
        "1234567.0",
    ] {
        let policy = serde_json::json!({
            "apiVersion": "waf-admission.dev/v1alpha1",
            "kind": "WellArchitectedPolicy",
            "metadata": {"name": "p"},
            "spec": {"ruleSet": text},
        });
        assert_eq!(
            validator.is_valid(&policy),
            RuleSet::parse(text).is_some(),
            "{text:?}"
        );
    }
}
