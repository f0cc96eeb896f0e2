//! What AI teams apply, judged in its own fields by `check` (the real
//! control plane does the same at `kubectl apply`: tests/cluster/
//! test_ai_resources.py). Every fixture of tests/fixtures/ai follows a
//! published example of its project (its first line names it). A `fail-*`
//! fixture is denied with each `# expect: <rule> <json-pointer>` it lists,
//! the pointer inside the resource; a `pass-*` fixture is admitted. They
//! are judged with the baseline and tests/fixtures/ai/policy.yaml (an
//! allow-list of GPU VM sizes), an InferenceService with the
//! ServingRuntime of its folder.

use std::path::{Path, PathBuf};

use waf_admission::PolicySet;
use waf_admission::check::{self, Loaded, Report};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ai")
}

fn policies() -> PolicySet {
    let mut all = PolicySet::baseline().unwrap().policies().to_vec();
    let own = check::load_policies(&[root().join("policy.yaml")]).unwrap();
    all.extend(own.policies().iter().cloned());
    PolicySet::new(all)
}

/// Every fixture, by folder.
fn fixtures(prefix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(root()).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            {
                out.push(f);
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no {prefix}* fixtures");
    out
}

/// The fixture and, for an InferenceService, the runtime it names.
fn judge(path: &Path, extra: &[&str]) -> Report {
    let mut paths = vec![path.to_path_buf()];
    let runtime = path.parent().unwrap().join("servingruntime.yaml");
    if runtime.exists() {
        paths.push(runtime);
    }
    let mut loaded: Loaded = check::load(&paths);
    for (i, text) in extra.iter().enumerate() {
        check::load::parse_text(text, &format!("extra#{i}"), &mut loaded);
    }
    check::run(&policies(), loaded, jiff::Timestamp::now())
}

fn expected(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .filter_map(|l| {
            let (rule, pointer) = l.split_once(' ')?;
            Some((rule.to_owned(), pointer.trim().to_owned()))
        })
        .collect()
}

#[test]
fn each_failing_resource_is_denied_at_paths_in_its_own_fields() {
    for path in fixtures("fail-") {
        let name = path.display().to_string();
        let report = judge(&path, &[]);
        assert!(report.errors.is_empty(), "{name}: {:?}", report.errors);
        let r = &report.results[0];
        assert!(!r.allowed, "{name}: admitted");
        let want = expected(&path);
        assert!(!want.is_empty(), "{name}: no `# expect:` line");
        for (rule, pointer) in want {
            assert!(
                r.violations
                    .iter()
                    .any(|v| v.rule == rule && v.path == pointer && v.action == "deny"),
                "{name}: no {rule} denial at {pointer}: {:#?}",
                r.violations
            );
        }
        // Never a pointer outside the resource's own fields.
        let (own, kind) = (r.kind.as_str(), r.kind.as_str());
        for v in r.violations.iter().filter(|v| v.object.is_none()) {
            let inside = match own {
                "Workspace" => ["/resource/", "/inference/"]
                    .iter()
                    .any(|p| v.path.starts_with(p)),
                _ => v.path.starts_with("/spec/"),
            };
            assert!(inside, "{name}: {kind} path {}", v.path);
        }
        // Read as sentences: no source indentation spilled into them.
        for v in &r.violations {
            assert!(
                !v.message.contains("  ") && !v.fix.contains("  "),
                "{name}: a run of spaces in {v:#?}"
            );
        }
        // Never patched: the operator merges what it runs.
        assert!(r.patch.is_empty(), "{name}: {:?}", r.patch);
    }
}

#[test]
fn each_passing_resource_is_admitted() {
    for path in fixtures("pass-") {
        let name = path.display().to_string();
        let report = judge(&path, &[]);
        assert!(report.errors.is_empty(), "{name}: {:?}", report.errors);
        let r = &report.results[0];
        assert!(r.allowed, "{name}: {:#?}", r.violations);
        assert!(r.inference, "{name}: not seen as model serving");
        assert!(!r.governed_by.is_empty(), "{name}");
    }
}

/// The Deployment KServe makes for an InferenceService in Standard mode:
/// owned by it, with its labels.
fn predictor_deployment(uid: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: qwen-isvc-single-predictor
  labels: {{serving.kserve.io/inferenceservice: qwen-isvc-single, component: predictor}}
  ownerReferences:
  - {{apiVersion: serving.kserve.io/v1beta1, kind: InferenceService, name: qwen-isvc-single,
     uid: {uid}, controller: true}}
spec:
  selector: {{matchLabels: {{app: isvc.qwen-isvc-single-predictor}}}}
  template:
    metadata:
      labels: {{app: isvc.qwen-isvc-single-predictor, serving.kserve.io/inferenceservice: qwen-isvc-single}}
    spec:
      containers:
      - name: kserve-container
        image: kserve/huggingfaceserver:latest-gpu
        resources: {{limits: {{nvidia.com/gpu: "1"}}}}
"#
    )
}

#[test]
fn the_deployment_kserve_makes_is_reported_once_through_its_inference_service() {
    let path = root().join("inferenceservice/fail-single-replica.yaml");
    // The InferenceService as the cluster returns it, with its uid.
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "  name: qwen-isvc-single\n",
        "  name: qwen-isvc-single\n  uid: 7d1e0c52-0000-4000-8000-000000000027\n",
    );
    let with_uid = std::env::temp_dir().join(format!("isvc-{}.yaml", std::process::id()));
    std::fs::write(&with_uid, text).unwrap();
    let owned = predictor_deployment("7d1e0c52-0000-4000-8000-000000000027");
    let report = judge(&with_uid, &[&owned]);
    let deployment = report
        .results
        .iter()
        .find(|r| r.kind == "Deployment")
        .unwrap();
    assert!(deployment.allowed);
    assert!(
        deployment.violations.is_empty(),
        "{:#?}",
        deployment.violations
    );
    assert!(
        deployment
            .not_governed
            .as_deref()
            .is_some_and(|w| w.contains("InferenceService qwen-isvc-single")),
        "{:?}",
        deployment.not_governed
    );
    // The InferenceService carries the findings, once.
    let isvc = report
        .results
        .iter()
        .find(|r| r.kind == "InferenceService")
        .unwrap();
    assert!(!isvc.allowed);
    // Another uid (a different object of that name): judged as itself.
    let forged = predictor_deployment("00000000-0000-4000-8000-000000000000");
    let report = judge(&with_uid, &[&forged]);
    std::fs::remove_file(&with_uid).ok();
    let deployment = report
        .results
        .iter()
        .find(|r| r.kind == "Deployment")
        .unwrap();
    assert!(!deployment.allowed, "a forged owner gained something");
    assert!(
        deployment
            .violations
            .iter()
            .any(|v| v.rule == "zone-spread")
    );
}

#[test]
fn what_the_runtime_supplies_gives_no_verdict_when_the_runtime_is_unknown() {
    let path = root().join("inferenceservice/fail-single-replica.yaml");
    let loaded = check::load(std::slice::from_ref(&path));
    let report = check::run(&policies(), loaded, jiff::Timestamp::now());
    let r = &report.results[0];
    // Still denied for what the resource itself says (one replica) ...
    assert!(r.violations.iter().any(|v| v.rule == "zone-spread"));
    // ... but nothing of what only the runtime would tell.
    for rule in ["image-provenance", "probes", "gpu-placement"] {
        assert!(
            !r.violations.iter().any(|v| v.rule == rule),
            "{rule}: {:#?}",
            r.violations
        );
        assert!(
            r.not_judged
                .iter()
                .any(|n| n.rule == rule
                    && n.reason.contains("ServingRuntime kserve-huggingfaceserver")),
            "{rule}: {:?}",
            r.not_judged
        );
    }
}

/// KServe's `inferenceservice-config` with this default deployment mode.
fn kserve_config(mode: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: inferenceservice-config, namespace: kserve}}
data:
  deploy: |-
    {{"defaultDeploymentMode": "{mode}"}}
"#
    )
}

#[test]
fn check_judges_an_inference_service_in_the_mode_kserve_s_config_gives_it() {
    let path = root().join("inferenceservice/pass-ha.yaml");
    let autoscaler_warnings = |report: &Report| {
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let r = report
            .results
            .iter()
            .find(|r| r.kind == "InferenceService")
            .unwrap();
        assert!(r.allowed, "{:#?}", r.violations);
        let of_rule = r
            .violations
            .iter()
            .filter(|v| v.rule == "autoscaler-metric");
        for v in of_rule.clone() {
            assert!(v.fix.contains("autoscalerClass: keda"), "{v:#?}");
            assert!(!v.fix.contains("  "), "a run of spaces in {}", v.fix);
        }
        of_rule.map(|v| v.message.clone()).collect::<Vec<_>>()
    };
    // No config in the input: KServe's shipped default, Knative, whose
    // autoscaler follows requests in flight; and check says so.
    let report = judge(&path, &[]);
    assert!(autoscaler_warnings(&report).is_empty());
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("judged in Knative mode, KServe's shipped default")),
        "{:?}",
        report.notes
    );
    // The cluster's default is Standard (under either name): KServe's
    // defaulter would make it a CPU HPA, and check judges that one.
    for mode in ["RawDeployment", "Standard"] {
        let report = judge(&path, &[&kserve_config(mode)]);
        let warned = autoscaler_warnings(&report);
        assert!(
            warned
                .iter()
                .any(|m| m.contains("HorizontalPodAutoscaler KServe makes")),
            "{mode}: {warned:?}"
        );
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("judged in Standard mode")
                    && n.contains("inferenceservice-config")),
            "{mode}: {:?}",
            report.notes
        );
    }
    // ModelMesh makes no autoscaler of the predictor's.
    let report = judge(&path, &[&kserve_config("ModelMesh")]);
    assert!(autoscaler_warnings(&report).is_empty());
    // A mode the object names wins over the config, as in KServe.
    let annotated = std::fs::read_to_string(&path).unwrap().replace(
        "  name: qwen-isvc-ha\n",
        "  name: qwen-isvc-ha\n  annotations: {serving.kserve.io/deploymentMode: Knative}\n",
    );
    assert!(annotated.contains("deploymentMode"), "fixture changed");
    let mut loaded = check::load(&[root().join("inferenceservice/servingruntime.yaml")]);
    check::load::parse_text(&annotated, "annotated.yaml", &mut loaded);
    check::load::parse_text(&kserve_config("RawDeployment"), "config.yaml", &mut loaded);
    let report = check::run(&policies(), loaded, jiff::Timestamp::now());
    assert!(autoscaler_warnings(&report).is_empty());
    assert!(
        report.notes.iter().all(|n| !n.contains("deployment mode")),
        "{:?}",
        report.notes
    );
}

#[test]
fn a_kserve_config_kserve_would_refuse_is_an_error_naming_it() {
    let path = root().join("inferenceservice/pass-ha.yaml");
    for (config, says) in [
        (
            kserve_config("Sometimes"),
            "\"Sometimes\" is not a mode KServe knows",
        ),
        (kserve_config(""), "defaultDeploymentMode is required"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: inferenceservice-config}\n\
             data: {deploy: '{not json'}\n"
                .to_owned(),
            "data.deploy is not JSON",
        ),
    ] {
        let report = judge(&path, &[&config]);
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.to_string().contains("extra#0") && e.to_string().contains(says)),
            "{says}: {:?}",
            report.errors
        );
        // The InferenceService is still judged (with KServe's shipped default).
        assert!(report.results.iter().any(|r| r.kind == "InferenceService"));
    }
}
