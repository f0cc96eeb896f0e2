//! Every fix leads to a pass: each example and rule fixture is judged, the
//! fixes `check -o json` gives as data (each result's `fix`: the composed
//! patch of the workload, the edits of the autoscalers and budgets it
//! names, the objects to add) are applied to the input as a tool would,
//! and the input is judged again. What is left needs something outside
//! the file (a digest, a secret, a node pool): no violation that has a fix
//! as data survives, and a workload whose violations all had one passes.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use waf_admission::PolicySet;
use waf_admission::check::report::ViolationOut;
use waf_admission::check::{self, Loaded, Report, WorkloadResult};

const FOLDER_POLICY: &str = "policy.yaml";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (policies, file): every rule fixture with its folder's policy beside
/// the baseline, and every example with the baseline.
fn inputs() -> Vec<(PolicySet, PathBuf)> {
    let baseline = || PolicySet::baseline().unwrap().policies().to_vec();
    let mut out = Vec::new();
    let rules = repo().join("tests/fixtures/rules");
    for dir in sorted(&rules) {
        let mut policies = baseline();
        let own = dir.join(FOLDER_POLICY);
        if own.exists() {
            let set = check::load_policies(std::slice::from_ref(&own)).unwrap();
            policies.extend(set.policies().iter().cloned());
        }
        for f in sorted(&dir) {
            if f.file_name().is_some_and(|n| n != FOLDER_POLICY) {
                out.push((PolicySet::new(policies.clone()), f));
            }
        }
    }
    for folder in ["examples/bad", "examples/good"] {
        for f in sorted(&repo().join(folder)) {
            out.push((PolicySet::new(baseline()), f));
        }
    }
    out
}

fn sorted(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn judge(set: &PolicySet, loaded: Loaded) -> Report {
    check::run(set, loaded, jiff::Timestamp::now())
}

fn key(v: &Value) -> (String, String, String) {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let ns = match s("/metadata/namespace") {
        "" => "default",
        ns => ns,
    };
    (s("/kind").into(), ns.into(), s("/metadata/name").into())
}

/// The input with every result's fix applied, as one YAML stream.
fn fixed(loaded: &Loaded, report: &Report) -> (String, usize) {
    let mut docs: Vec<(String, Value)> = loaded
        .documents
        .iter()
        .map(|d| (d.source.clone(), d.value.clone()))
        .collect();
    let mut applied = 0;
    for r in &report.results {
        let Some(fix) = serde_json::to_value(r).unwrap().get("fix").cloned() else {
            continue;
        };
        let patch = |target: &mut Value, ops: &Value, what: &str| {
            let ops: json_patch::Patch = serde_json::from_value(ops.clone()).unwrap();
            json_patch::patch(target, &ops)
                .unwrap_or_else(|e| panic!("{}: the fix for {what} does not apply: {e}", r.source));
        };
        if fix["patch"].as_array().is_some_and(|p| !p.is_empty()) {
            let doc = docs.iter_mut().find(|(s, _)| *s == r.source).unwrap();
            patch(&mut doc.1, &fix["patch"], &r.name);
            applied += 1;
        }
        for e in fix["edits"].as_array().into_iter().flatten() {
            let want = (
                e["kind"].as_str().unwrap().to_owned(),
                e["namespace"].as_str().unwrap().to_owned(),
                e["name"].as_str().unwrap().to_owned(),
            );
            let doc = docs
                .iter_mut()
                .find(|(_, v)| key(v) == want)
                .unwrap_or_else(|| panic!("{}: edit of {want:?}, not in the input", r.source));
            patch(&mut doc.1, &e["patch"], &want.2);
            applied += 1;
        }
        for c in fix["create"].as_array().into_iter().flatten() {
            docs.push(("created".into(), c.clone()));
            applied += 1;
        }
    }
    let text = docs
        .iter()
        .map(|(_, v)| serde_yaml_ng::to_string(v).unwrap())
        .collect::<Vec<_>>()
        .join("\n---\n");
    (text, applied)
}

/// The violation has a fix as data: its own edit, or its rule's patch.
fn has_fix(v: &ViolationOut) -> bool {
    v.edit.is_some() || v.fixable
}

fn violations(r: &WorkloadResult) -> Vec<Value> {
    serde_json::to_value(r).unwrap()["violations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn every_fix_the_file_can_hold_leads_to_a_pass() {
    let mut applied_total = 0;
    let mut rules_fixed = std::collections::BTreeSet::new();
    let mut passes_after = 0;
    for (set, file) in inputs() {
        let name = file.strip_prefix(repo()).unwrap().display().to_string();
        let first_input = check::load(std::slice::from_ref(&file));
        let loaded = check::load(std::slice::from_ref(&file));
        let before = judge(&set, first_input);
        let (text, applied) = fixed(&loaded, &before);
        if applied == 0 {
            continue;
        }
        applied_total += applied;
        let mut again = Loaded::default();
        check::load::parse_text(&text, &name, &mut again);
        let after = judge(&set, again);
        assert!(
            after.errors.is_empty(),
            "{name}: fixed input: {:?}",
            after.errors
        );
        for r in &before.results {
            let now = after
                .results
                .iter()
                .find(|a| {
                    (a.kind.as_str(), &a.namespace, &a.name)
                        == (r.kind.as_str(), &r.namespace, &r.name)
                })
                .unwrap_or_else(|| panic!("{name}: {} gone after the fix", r.name));
            let then = &r.violations;
            for v in then {
                if has_fix(v) {
                    rules_fixed.insert(v.rule.to_owned());
                }
            }
            let left = &now.violations;
            for v in left {
                assert!(
                    !has_fix(v),
                    "{name}: {} still violates {} after its fixes were applied: {}\nfixed input:\n{text}",
                    r.name,
                    v.rule,
                    v.message
                );
            }
            if !then.is_empty() && then.iter().all(has_fix) {
                let messages: Vec<&str> = left.iter().map(|v| v.message.as_str()).collect();
                assert!(
                    left.is_empty() && now.allowed,
                    "{name}: {} had only fixes the file can hold, yet: {messages:?}",
                    r.name
                );
                passes_after += 1;
            }
        }
    }
    // The test cannot pass by finding nothing to fix.
    assert!(applied_total >= 20, "only {applied_total} fixes applied");
    assert!(
        passes_after >= 10,
        "only {passes_after} workloads passed after their fixes"
    );
    for rule in [
        "autoscaler",
        "disruption-budget",
        "zone-spread",
        "gpu-placement",
        "resources",
    ] {
        assert!(
            rules_fixed.contains(rule),
            "no fix as data for {rule}: {rules_fixed:?}"
        );
    }
}

#[test]
fn a_missing_autoscaler_is_a_scaled_object_on_the_servers_queue_not_cpu() {
    let set = PolicySet::baseline().unwrap();
    let file = repo().join("examples/bad/autoscaler.yaml");
    let report = judge(&set, check::load(&[file]));
    let v = violations(&report.results[0]);
    let autoscaler = v.iter().find(|v| v["rule"] == "autoscaler").unwrap();
    let so = &autoscaler["edit"]["create"];
    assert_eq!(so["kind"], "ScaledObject", "{autoscaler}");
    assert_eq!(
        so["metadata"],
        json!({"name": "summarize", "namespace": "ml"})
    );
    assert_eq!(so["spec"]["scaleTargetRef"]["name"], "summarize");
    let trigger = &so["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "prometheus");
    assert!(
        trigger["metadata"]["query"]
            .as_str()
            .unwrap()
            .contains("vllm:num_requests_waiting{namespace=\"ml\""),
        "{trigger}"
    );
    assert!(!autoscaler["fix"].as_str().unwrap().contains("cpu"));
}

#[test]
fn a_finding_about_an_autoscaler_points_at_its_lines_in_every_output() {
    let set = PolicySet::baseline().unwrap();
    let file = repo().join("examples/bad/zone-spread.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let hpa_line = text
        .lines()
        .position(|l| l.starts_with("kind: HorizontalPodAutoscaler"))
        .unwrap() as u32;
    let report = judge(&set, check::load(&[file]));
    let r = &report.results[0];
    let on_hpa: Vec<_> = r
        .violations
        .iter()
        .filter(|v| v.object.is_some() && v.rule == "autoscaler")
        .collect();
    assert!(!on_hpa.is_empty());
    for v in &on_hpa {
        let line = v.line.unwrap();
        assert!(
            line > hpa_line,
            "{} at line {line}, the HPA starts after line {hpa_line}",
            v.message
        );
        assert_eq!(v.path, "/spec/minReplicas");
        assert!(
            text.lines()
                .nth(line as usize - 1)
                .unwrap()
                .contains("minReplicas")
        );
    }
    let sarif = check::sarif::to_sarif(&report);
    let hpa_results: Vec<_> = sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| {
            x["ruleId"] == "autoscaler"
                && x["message"]["text"]
                    .as_str()
                    .unwrap()
                    .contains("HorizontalPodAutoscaler chat")
        })
        .collect();
    assert!(!hpa_results.is_empty());
    for x in hpa_results {
        let loc = &x["locations"][0];
        assert_eq!(
            loc["physicalLocation"]["region"]["startLine"],
            json!(on_hpa[0].line.unwrap())
        );
        assert_eq!(
            loc["logicalLocations"][0]["fullyQualifiedName"],
            "HorizontalPodAutoscaler ml/chat"
        );
    }
    let junit = check::junit::to_junit(&report);
    assert!(
        junit.contains(&format!(
            "zone-spread.yaml:{} (HorizontalPodAutoscaler ml/chat)",
            on_hpa[0].line.unwrap()
        )),
        "{junit}"
    );
    let text_out = report.to_text(false);
    assert!(
        text_out.contains(&format!(
            "(HorizontalPodAutoscaler examples/bad/zone-spread.yaml#1, line {})",
            on_hpa[0].line.unwrap()
        )) || text_out.contains(&format!("#1, line {})", on_hpa[0].line.unwrap())),
        "{text_out}"
    );
}

/// Issue 24's user: a vLLM server from Docker Hub, fixed from the messages
/// in one round. The fixes agree (one image fix: import into ACR and pin
/// the copy), every other fix is data, and with the image's placeholders
/// filled as its fix says the workload passes.
#[test]
fn the_first_vllm_deployment_passes_after_one_round_of_its_own_fixes() {
    let set = PolicySet::baseline().unwrap();
    let file = repo().join("tests/fixtures/workloads/vllm-first-try.yaml");
    let loaded = check::load(std::slice::from_ref(&file));
    let before = judge(&set, check::load(std::slice::from_ref(&file)));
    let r = &before.results[0];
    assert!(!r.allowed);
    let image: Vec<&ViolationOut> = r
        .violations
        .iter()
        .filter(|v| v.rule == "image-provenance")
        .collect();
    assert_eq!(image.len(), 1, "one image fix, not two that contradict");
    for v in r.violations.iter().filter(|v| v.rule != "image-provenance") {
        assert!(has_fix(v), "{}: {} has no fix as data", v.rule, v.message);
        assert!(
            !v.fix.contains("kubectl "),
            "a fix needing a cluster: {}",
            v.fix
        );
        assert!(
            !v.fix.to_lowercase().contains("cpu"),
            "CPU scaling for a GPU server: {}",
            v.fix
        );
    }
    let fix = &image[0].fix;
    assert!(
        fix.contains(
            "az acr import --name <registry> --source docker.io/vllm/vllm-openai:<version>"
        ),
        "{fix}"
    );
    let pinned = fix
        .split("then use ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no reference to use in {fix}"))
        .replace("<registry>", "contoso")
        .replace("<version>", "v0.11.0")
        .replace("<digest>", &"a1".repeat(32));
    let (mut text, _) = fixed(&loaded, &before);
    text = text.replace("docker.io/vllm/vllm-openai:latest", &pinned);
    let mut again = Loaded::default();
    check::load::parse_text(&text, "fixed.yaml", &mut again);
    let after = judge(&set, again);
    let r = &after.results[0];
    let left: Vec<&str> = r.violations.iter().map(|v| v.message.as_str()).collect();
    assert!(r.allowed && left.is_empty(), "{left:?}\n{text}");
    assert_eq!(after.other_objects.get("ScaledObject"), Some(&1));
    assert_eq!(after.other_objects.get("PodDisruptionBudget"), Some(&1));
}
