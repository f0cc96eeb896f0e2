//! The patches the engine proposes, applied by kubectl's own JSON Patch
//! code (`kubectl patch --local`), then judged again by the binary: the
//! patched object must parse as Kubernetes and pass what the patch fixed.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_waf-admission"))
}

fn kubectl_available() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn kubectl_applies_every_patch_and_the_result_passes_what_was_patched() {
    assert!(
        kubectl_available(),
        "kubectl is required (apt-get install kubernetes-client; .ci/run installs it)"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = std::env::temp_dir().join(format!("waf-kubectl-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    // One file at a time: each file is its own little cluster (its HPAs).
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["tests/fixtures/rules", "examples/bad"] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.file_name().is_some_and(|n| n != "policy.yaml") {
                    files.push(p.strip_prefix(root).unwrap().to_owned());
                }
            }
        }
    }
    files.retain(|f| f.file_name().is_some_and(|n| n != "policy.yaml"));
    files.sort();
    // A rule folder's own policy.yaml is judged beside the baseline, as in
    // tests/rule_fixtures.rs.
    let policies = |f: &Path| -> Vec<PathBuf> {
        let own = root.join(f).with_file_name("policy.yaml");
        if own.exists() {
            vec![root.join("manifests/policies/baseline.yaml"), own]
        } else {
            Vec::new()
        }
    };
    let policy_args = |f: &Path| -> Vec<String> {
        policies(f)
            .iter()
            .flat_map(|p| ["--policy".to_owned(), p.display().to_string()])
            .collect()
    };
    let mut results = Vec::new();
    for f in &files {
        let out = bin()
            .current_dir(root)
            .args(["check", "-o", "json"])
            .args(policy_args(f))
            .arg(f)
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        results.extend(report["results"].as_array().unwrap().iter().cloned());
    }
    let mut applied = 0;
    for r in &results {
        if r["patch"].as_array().unwrap().is_empty() {
            continue;
        }
        let source = r["source"].as_str().unwrap();
        let (file, index) = source.rsplit_once('#').unwrap();
        let index: usize = index.parse().unwrap();
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let doc = text.split("\n---\n").nth(index).unwrap();
        let object_file: PathBuf = tmp.join(format!("obj-{applied}.yaml"));
        std::fs::write(&object_file, doc).unwrap();
        let patched = Command::new("kubectl")
            .args(["patch", "--local", "--type=json", "-o", "json", "-f"])
            .arg(&object_file)
            .arg("-p")
            .arg(r["patch"].to_string())
            .output()
            .unwrap();
        assert!(
            patched.status.success(),
            "{source}: kubectl refused the patch: {}",
            String::from_utf8_lossy(&patched.stderr)
        );
        let patched_file = tmp.join(format!("patched-{applied}.json"));
        std::fs::write(&patched_file, &patched.stdout).unwrap();
        // Judge again with the same context (HPAs in the same file).
        let mut context: Vec<String> = text
            .split("\n---\n")
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, d)| d.to_owned())
            .collect();
        context.retain(|d| d.contains("kind:"));
        let context_file = tmp.join(format!("context-{applied}.yaml"));
        std::fs::write(&context_file, context.join("\n---\n")).unwrap();
        let again = bin()
            .args(["check", "-o", "json"])
            .args(policy_args(Path::new(file)))
            .arg(&patched_file)
            .arg(&context_file)
            .output()
            .unwrap();
        let again: Value = serde_json::from_slice(&again.stdout).unwrap();
        assert_eq!(again["errors"], Value::Array(vec![]), "{source}");
        let after = &again["results"][0];
        for v in r["violations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["patched"] == true)
        {
            let still = after["violations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["rule"] == v["rule"] && a["message"] == v["message"]);
            assert!(
                !still,
                "{source}: still violated after kubectl applied the patch: {}",
                v["message"]
            );
        }
        assert_eq!(
            after["patch"],
            Value::Array(vec![]),
            "{source}: needs a second patch"
        );
        assert_eq!(after["allowed"], r["allowed"], "{source}");
        applied += 1;
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(applied >= 8, "only {applied} patches exercised");
}
