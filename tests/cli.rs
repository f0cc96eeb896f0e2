//! The `waf-admission` binary as users run it: real files, real stdin,
//! real exit codes and the JSON contract of DESIGN.md.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_waf-admission"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn run(args: &[&str]) -> Output {
    bin().args(args).current_dir(root()).output().unwrap()
}

fn run_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = bin()
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn result<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no result for {name}"))
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("waf-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn write(&self, name: &str, body: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, body).unwrap();
        p.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn compliant_examples_exit_zero() {
    let out = run(&["check", "examples/good"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("✓ Deployment ml/llm  allowed"));
}

#[test]
fn bad_examples_exit_one_with_every_rule_named() {
    let out = run(&["check", "-f", "examples/bad"]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    for rule in [
        "zone-spread (Reliability)",
        "autoscaler (Performance Efficiency)",
        "resources (Cost Optimization)",
        "gpu-placement (Cost Optimization)",
        "image-provenance (Security)",
        "workload-identity (Security)",
        "shared-memory (Performance Efficiency)",
        "rollout-strategy (Reliability)",
        "model-fit (Performance Efficiency)",
        "gpu-right-size (Cost Optimization)",
        "autoscaler-metric (Performance Efficiency)",
    ] {
        assert!(t.contains(rule), "missing {rule} in:\n{t}");
    }
    assert!(!t.contains('\x1b'), "colour written to a pipe");
}

#[test]
fn json_output_follows_the_contract() {
    let out = run(&[
        "check",
        "-o",
        "json",
        "examples/bad/zone-spread.yaml",
        "examples/good/web-frontend.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    let chat = result(&report, "chat");
    assert_eq!(chat["source"], "examples/bad/zone-spread.yaml#0");
    assert_eq!(chat["kind"], "Deployment");
    assert_eq!(chat["namespace"], "ml");
    assert_eq!(chat["inference"], true);
    assert_eq!(
        chat["inferenceReason"],
        "container \"llm\" requests nvidia.com/gpu"
    );
    assert_eq!(chat["allowed"], false);
    let v = &chat["violations"][1];
    assert_eq!(v["rule"], "zone-spread");
    assert_eq!(v["pillar"], "Reliability");
    assert_eq!(v["action"], "deny");
    assert_eq!(v["patched"], true);
    assert_eq!(v["path"], "/spec/template/spec/topologySpreadConstraints");
    assert!(
        v["fix"]
            .as_str()
            .unwrap()
            .contains("topologyKey: topology.kubernetes.io/zone")
    );
    assert_eq!(chat["patch"][0]["op"], "add");
    assert_eq!(
        chat["patch"][0]["path"],
        "/spec/template/spec/topologySpreadConstraints"
    );
    // The replica count is not patchable, so the workload stays denied.
    assert_eq!(chat["violations"][0]["patched"], false);

    let web = result(&report, "web");
    assert_eq!(web["inference"], false);
    assert_eq!(web["allowed"], true);
    assert_eq!(web["violations"], Value::Array(vec![]));
    assert_eq!(web["patch"], Value::Array(vec![]));
    assert!(
        web["notGoverned"]
            .as_str()
            .unwrap()
            .starts_with("not model serving")
    );
}

#[test]
fn a_patch_that_fixes_every_denial_makes_the_workload_allowed() {
    let out = run(&["check", "-o", "json", "examples/bad/gpu-placement.yaml"]);
    assert_eq!(out.status.code(), Some(0));
    let vision = result(&json(&out), "vision").clone();
    assert_eq!(vision["allowed"], true);
    assert_eq!(vision["violations"][0]["action"], "deny");
    assert_eq!(vision["violations"][0]["patched"], true);
}

#[test]
fn reads_stdin_multi_document_yaml_and_lists() {
    let input = format!(
        "{}\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {{name: p, namespace: ml}}\n  spec:\n    containers: [{{name: c, image: 'ollama/ollama'}}]\n",
        std::fs::read_to_string(root().join("examples/good/llm-gpu.yaml")).unwrap()
    );
    let out = run_stdin(&["check", "-o", "json", "-"], &input);
    let report = json(&out);
    let sources: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    // llm-gpu.yaml holds four documents: Deployment, HPA, Service, PodDisruptionBudget.
    assert_eq!(sources, ["<stdin>#0", "<stdin>#4/items/0"]);
    let pod = result(&report, "p");
    assert_eq!(
        pod["inferenceReason"],
        "container \"c\" runs Ollama (ollama/ollama)"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bad_yaml_exits_two_naming_file_document_and_line() {
    let dir = TempDir::new("badyaml");
    let f = dir.write("broken.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x\n");
    let out = run(&["check", &f]);
    assert_eq!(out.status.code(), Some(2));
    // Errors go to stderr, with their count; the verdicts stay on stdout.
    let t = stderr(&out);
    assert!(t.contains(&format!("{f}#1: ")), "{t}");
    assert!(
        t.contains("1 error(s): those documents were not judged"),
        "{t}"
    );
    assert!(!text(&out).contains("error"), "{}", text(&out));
    // The line of the `{` never closed, the line kubectl names too.
    assert!(t.contains("line 7 column 11: unclosed bracket"), "{t}");
}

#[test]
fn a_mistyped_field_exits_two_naming_the_field() {
    let dir = TempDir::new("badfield");
    let f = dir.write(
        "d.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x, namespace: ml}\nspec:\n  replicas: two\n  selector: {matchLabels: {a: b}}\n  template: {spec: {containers: [{name: c, image: i}]}}\n",
    );
    let out = run(&["check", "-o", "json", &f]);
    assert_eq!(out.status.code(), Some(2));
    let report = json(&out);
    let err = report["errors"][0].as_str().unwrap();
    assert!(
        err.starts_with(&format!(
            "{f}#0: Deployment ml/x: field spec.replicas: invalid type"
        )),
        "{err}"
    );
    assert!(stderr(&out).contains("spec.replicas"));
}

#[test]
fn an_octal_default_mode_is_read_as_kubectl_reads_it_and_judged() {
    // GKE's JetStream manifests mount their token with `defaultMode: 0400`:
    // octal 256 to kubectl, a valid int32, so the workload is judged.
    let f = "tests/fixtures/yaml/jetstream-secret-default-mode-octal.yaml";
    let out = run(&["check", "-o", "json", f]);
    let report = json(&out);
    assert_eq!(report["errors"], serde_json::json!([]), "{}", stderr(&out));
    assert_ne!(out.status.code(), Some(2));
    let r = result(&report, "maxengine-server");
    assert_eq!(r["source"], format!("{f}#0"));
}

/// `check` on one fixture: its exit code and JSON report, with no input
/// errors (exit 2 would mean a manifest kubectl reads was refused).
fn read_without_errors(f: &str) -> (Option<i32>, Value) {
    // Some fixtures hold no workload (a Secret alone): nothing to judge is
    // no error here.
    let out = run(&["check", "--allow-empty", "-o", "json", f]);
    let report = json(&out);
    assert_eq!(
        report["errors"],
        serde_json::json!([]),
        "{f}: {}",
        stderr(&out)
    );
    assert_ne!(out.status.code(), Some(2), "{f}");
    (out.status.code(), report)
}

fn rules_and_messages(r: &Value) -> Vec<(String, String)> {
    r["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let field = |f: &str| v[f].as_str().unwrap().to_owned();
            (field("rule"), field("message"))
        })
        .collect()
}

#[test]
fn flow_sequences_closed_left_of_their_key_are_read_and_judged() {
    // vLLM's documented Deployment: `args: [` ... `]` with the `]` at the
    // column of `args`; a strict YAML 1.2 reader stopped the file there.
    let f = "tests/fixtures/yaml/vllm-docs-deployment-flow-args.yaml";
    let (code, report) = read_without_errors(f);
    assert_eq!(code, Some(1), "the GPU server is denied on its merits");
    let r = result(&report, "mistral-7b");
    assert_eq!(r["source"], format!("{f}#2"));
    let found = rules_and_messages(r);
    // Read past the flow sequence: the probes after it were seen.
    assert!(
        found.iter().all(|(_, m)| !m.contains("no readinessProbe")),
        "{found:?}"
    );
    assert!(found.iter().any(|(rule, _)| rule == "gpu-placement"));
    // Istio's SPIRE quickstart style: `]` at its key's column and left of it.
    let f = "tests/fixtures/yaml/istio-spire-quickstart-flow-sequence.yaml";
    let (code, report) = read_without_errors(f);
    assert_eq!(code, Some(0));
    let names: Vec<_> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["source"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("spire-server", &*format!("{f}#2")),
            ("spire-agent", &*format!("{f}#3"))
        ]
    );
    // GKE samples style: continuation lines of `args: [...]` left of `args`.
    let f = "tests/fixtures/yaml/gke-samples-tgi-deployment-hpa.yaml";
    let (code, report) = read_without_errors(f);
    assert_eq!(code, Some(1));
    let found = rules_and_messages(result(&report, "tgi-gemma-deployment"));
    // The HPA after the Deployment was read too.
    assert!(
        found.contains(&(
            "autoscaler".to_owned(),
            "HorizontalPodAutoscaler tgi-gemma-hpa has minReplicas 1; the policy needs at least 2"
                .to_owned()
        )),
        "{found:?}"
    );
}

#[test]
fn a_kuberay_style_file_with_block_scalars_is_read() {
    let f = "tests/fixtures/yaml/kuberay-rayservice-block-scalars.yaml";
    let (code, report) = read_without_errors(f);
    assert_eq!(code, Some(0));
    assert_eq!(result(&report, "ray-client")["source"], format!("{f}#1"));
    let out = run(&["check", f]);
    assert!(
        text(&out).contains("other objects: 1 RayService"),
        "{}",
        text(&out)
    );
}

#[test]
fn an_autoscaling_v1_hpa_is_read_as_v1_and_its_min_replicas_judged() {
    let f = "tests/fixtures/yaml/hpa-autoscaling-v1.yaml";
    let (code, report) = read_without_errors(f);
    assert_eq!(code, Some(1));
    let found = rules_and_messages(result(&report, "llm"));
    assert!(
        found.contains(&(
            "autoscaler".to_owned(),
            "HorizontalPodAutoscaler llm has minReplicas 1; the policy needs at least 2".to_owned()
        )),
        "{found:?}"
    );
    assert!(
        !found
            .iter()
            .any(|(_, m)| m.starts_with("no HorizontalPodAutoscaler")),
        "{found:?}"
    );
}

#[test]
fn secret_data_wrapped_over_lines_is_read_as_the_apiserver_reads_it() {
    let f = "tests/fixtures/yaml/secret-wrapped-base64.yaml";
    let (code, _) = read_without_errors(f);
    assert_eq!(code, Some(0));
    // Other whitespace is an error in Go's decoder too: refused, named.
    let dir = TempDir::new("secret-space");
    let bad = dir.write(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata:\n  token: aGVs bG8=\n",
    );
    let out = run(&["check", "-o", "json", &bad]);
    assert_eq!(out.status.code(), Some(2));
    let err = json(&out)["errors"][0].as_str().unwrap().to_owned();
    assert!(err.starts_with(&format!("{bad}#1: ")), "{err}");
    assert!(err.contains("data.token"), "{err}");
    assert!(err.contains("only line breaks"), "{err}");
}

#[test]
fn an_unquoted_yes_env_value_is_refused_naming_file_document_field_and_line() {
    // kubectl reads `value: yes` as the boolean true, which the apiserver
    // refuses for EnvVar.value: check refuses it as bad input.
    let f = "tests/fixtures/yaml/env-value-unquoted-yes.yaml";
    let out = run(&["check", "-o", "json", f]);
    assert_eq!(out.status.code(), Some(2));
    let report = json(&out);
    assert_eq!(report["results"], serde_json::json!([]));
    let err = report["errors"][0].as_str().unwrap();
    assert!(
        err.starts_with(&format!(
            "{f}#0: Deployment ml/llm: field spec.template.spec.containers[0].env[0].value: \
             invalid type: boolean `true`, expected a string (line 24); "
        )),
        "{err}"
    );
    assert!(err.contains("quote the value"), "{err}");
    assert!(stderr(&out).contains("env[0].value"));
}

#[test]
fn policy_files_are_read_as_kubectl_reads_them() {
    // kubectl applies `mutate: yes` as true; a policy given to check reads
    // the same, and a quoted "yes" is the string kubectl would refuse.
    let dir = TempDir::new("policy-yaml11");
    let yes = dir.write(
        "yes.yaml",
        "apiVersion: waf-admission.dev/v1alpha1\nkind: WellArchitectedPolicy\nmetadata: {name: p}\nspec:\n  rules:\n    zoneSpread: {mutate: yes}\n",
    );
    let out = run(&[
        "check",
        "-o",
        "json",
        "--policy",
        &yes,
        "examples/bad/zone-spread.yaml",
    ]);
    assert_ne!(out.status.code(), Some(2), "{}", stderr(&out));
    let quoted = dir.write(
        "quoted.yaml",
        "apiVersion: waf-admission.dev/v1alpha1\nkind: WellArchitectedPolicy\nmetadata: {name: p}\nspec:\n  rules:\n    zoneSpread: {mutate: \"yes\"}\n",
    );
    let out = run(&["check", "--policy", &quoted, "examples/good"]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(e.contains("spec.rules.zoneSpread.mutate"), "{e}");
}

#[test]
fn no_input_is_a_usage_error() {
    let out = run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    // One usage form, the README's: positional paths.
    assert!(
        stderr(&out).contains("name the manifests to check: waf-admission check PATH..."),
        "{}",
        stderr(&out)
    );
    let help = text(&run(&["check", "--help"]));
    assert!(
        help.contains("helm template llm ./chart | waf-admission check -"),
        "{help}"
    );
}

#[test]
fn an_input_with_no_workload_is_exit_two_unless_allowed() {
    let dir = TempDir::new("empty");
    let empty = dir.0.to_string_lossy().into_owned();
    for out in [run(&["check", &empty]), run_stdin(&["check", "-"], "")] {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("no Kubernetes workload in"),
            "{}",
            stderr(&out)
        );
    }
    // Objects that are no workload are nothing to judge either.
    let hpa = dir.write(
        "hpa.yaml",
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: a, namespace: ml}\nspec: {scaleTargetRef: {kind: Deployment, name: a}, maxReplicas: 3}\n",
    );
    assert_eq!(run(&["check", &hpa]).status.code(), Some(2));
    let out = run(&["check", "--allow-empty", &empty, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["results"], serde_json::json!([]));
}

#[test]
fn a_helm_chart_is_named_with_the_command_that_renders_it() {
    let dir = TempDir::new("chart");
    std::fs::create_dir_all(dir.0.join("chart/templates")).unwrap();
    dir.write(
        "chart/Chart.yaml",
        "apiVersion: v2\nname: llm\nversion: 0.1.0\n",
    );
    dir.write("chart/values.yaml", "replicas: 2\n");
    let template = dir.write(
        "chart/templates/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  replicas: {{ .Values.replicas }}\n",
    );
    let good = dir.write(
        "llm.yaml",
        &std::fs::read_to_string(
            root().join("tests/fixtures/workloads/compliant-gpu-deployment.yaml"),
        )
        .unwrap(),
    );
    let chart = dir.0.join("chart").to_string_lossy().into_owned();
    // The chart inside a folder, the chart's folder, and one of its
    // templates: each named once, never read as YAML; the rest is judged.
    let everything = dir.0.to_string_lossy().into_owned();
    for inputs in [
        vec![everything.as_str()],
        vec![chart.as_str(), good.as_str()],
        vec![template.as_str(), good.as_str()],
    ] {
        let input = inputs.join(" ");
        let mut args = vec!["check", "-o", "json"];
        args.extend(inputs);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{input}: {}", stderr(&out));
        let errors = json(&out)["errors"].clone();
        assert_eq!(
            errors.as_array().map(Vec::len),
            Some(1),
            "{input}: {errors}"
        );
        let e = errors[0].as_str().unwrap();
        assert!(
            e.starts_with(&format!("{chart}: a Helm chart"))
                && e.contains(&format!(
                    "helm template RELEASE {chart} | waf-admission check -"
                )),
            "{e}"
        );
        let report = json(&out);
        let names: Vec<&Value> = report["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["name"])
            .collect();
        assert_eq!(names, [&Value::from("llm")], "{input}");
    }
}

#[test]
fn a_reader_that_closes_the_pipe_ends_the_output_quietly() {
    // `waf-admission crd | head -1`: the reader goes before the writer is
    // done. Closing our end at once makes the first write fail as it would.
    for args in [
        &["crd"][..],
        &["crd", "--docs"],
        &["baseline"],
        &["check", "-o", "json", "examples/"],
        &["check", "examples/"],
    ] {
        let mut child = bin()
            .args(args)
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
        // The check's verdict stands (examples/ holds denied workloads).
        let want = if args[0] == "check" { 1 } else { 0 };
        assert_eq!(out.status.code(), Some(want), "{args:?}: {err}");
    }
}

#[test]
fn a_missing_file_is_named() {
    let out = run(&["check", "no/such/file.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no/such/file.yaml: No such file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_refused_policy_applies_nothing_and_names_file_and_field() {
    let dir = TempDir::new("badpolicy");
    let p = dir.write(
        "p.yaml",
        "apiVersion: waf-admission.dev/v1alpha1\nkind: WellArchitectedPolicy\nmetadata: {name: p}\nspec:\n  rules:\n    imageProvenance: {allowedRegistries: []}\n    resources: {defaults: {requests: {cpu: lots}}}\n",
    );
    let out = run(&["check", "--policy", &p, "examples/good"]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(
        e.contains(&format!("{p}#0: WellArchitectedPolicy p refused:")),
        "{e}"
    );
    assert!(
        e.contains("spec.rules.imageProvenance.allowedRegistries"),
        "{e}"
    );
    assert!(
        e.contains("spec.rules.resources.defaults.requests.cpu"),
        "{e}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing judged under a broken policy"
    );
}

#[test]
fn unknown_policy_fields_and_bad_enums_are_refused() {
    let dir = TempDir::new("typo");
    let typo = dir.write(
        "typo.yaml",
        "apiVersion: waf-admission.dev/v1alpha1\nkind: WellArchitectedPolicy\nmetadata: {name: p}\nspec:\n  rules:\n    zoneSpread: {maxSkw: 2}\n",
    );
    let e = stderr(&run(&["check", "--policy", &typo, "examples/good"]));
    assert!(
        e.contains("spec.rules.zoneSpread") && e.contains("unknown field `maxSkw`"),
        "{e}"
    );
    let bad_enum = dir.write(
        "enum.yaml",
        "apiVersion: waf-admission.dev/v1alpha1\nkind: WellArchitectedPolicy\nmetadata: {name: p}\nspec:\n  action: Block\n",
    );
    let e = stderr(&run(&["check", "--policy", &bad_enum, "examples/good"]));
    assert!(
        e.contains("spec.action") && e.contains("unknown variant `Block`"),
        "{e}"
    );
}

#[test]
fn several_policies_combine_and_the_strictest_action_wins() {
    let dir = TempDir::new("combine");
    let warn = dir.write(
        "warn.yaml",
        "apiVersion: waf-admission.dev/v1alpha1\nkind: WellArchitectedPolicy\nmetadata: {name: a-warn}\nspec:\n  action: Warn\n",
    );
    let deny_images = dir.write(
        "deny.yaml",
        "apiVersion: waf-admission.dev/v1alpha1\nkind: WellArchitectedPolicy\nmetadata: {name: b-images}\nspec:\n  action: Audit\n  rules:\n    imageProvenance: {action: Deny}\n",
    );
    let only_warn = run(&[
        "check",
        "-o",
        "json",
        "--policy",
        &warn,
        "examples/bad/image-provenance.yaml",
    ]);
    assert_eq!(only_warn.status.code(), Some(0));
    assert_eq!(
        result(&json(&only_warn), "ollama")["violations"][0]["action"],
        "warn"
    );

    let both = run(&[
        "check",
        "-o",
        "json",
        "--policy",
        &warn,
        "--policy",
        &deny_images,
        "examples/bad/image-provenance.yaml",
        "examples/bad/autoscaler.yaml",
    ]);
    assert_eq!(both.status.code(), Some(1));
    let report = json(&both);
    let ollama = result(&report, "ollama");
    assert_eq!(
        ollama["governedBy"],
        serde_json::json!(["a-warn", "b-images"])
    );
    assert_eq!(ollama["violations"][0]["action"], "deny");
    assert_eq!(ollama["violations"][0]["policy"], "b-images");
    // Where both flag the autoscaler, Warn beats Audit.
    assert_eq!(
        result(&report, "summarize")["violations"][0]["action"],
        "warn"
    );
}

#[test]
fn exceptions_exempt_until_they_expire() {
    let dir = TempDir::new("exceptions");
    // The example holds the workload and the exception that exempts it.
    let example = "examples/exceptions/ollama-research.yaml";
    let active = std::fs::read_to_string(root().join(example)).unwrap();
    let expired = active
        .replace("ollama-mirror-pending", "old-one")
        .replace("2099-01-01T00:00:00Z", "2020-01-01T00:00:00Z");
    let x = dir.write("expired.yaml", &expired);

    let out = run(&["check", "-o", "json", example]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let ollama = result(&json(&out), "ollama-research").clone();
    assert_eq!(ollama["violations"], Value::Array(vec![]));
    assert_eq!(ollama["exemptions"][0]["rule"], "image-provenance");
    assert_eq!(
        ollama["exemptions"][0]["exception"],
        "ml/ollama-mirror-pending"
    );
    // One finding: the registry and the floating tag have one fix.
    assert_eq!(ollama["exemptions"][0]["suppressed"], 1);
    // The exemption points at the exception's rules, where it says so.
    let rules_line = active
        .lines()
        .position(|l| l.starts_with("  rules:"))
        .unwrap()
        + 1;
    assert_eq!(ollama["exemptions"][0]["line"], rules_line, "{ollama:#}");
    assert!(
        ollama["exemptions"][0]["source"]
            .as_str()
            .unwrap()
            .starts_with(example)
    );

    let out = run(&["check", "-o", "json", &x]);
    assert_eq!(out.status.code(), Some(1));
    let ollama = result(&json(&out), "ollama-research").clone();
    assert_eq!(ollama["violations"][0]["rule"], "image-provenance");
    assert!(
        ollama["expiredExceptions"][0]
            .as_str()
            .unwrap()
            .starts_with("ml/old-one (expired 2020-01-01")
    );
}

#[test]
fn examples_show_what_their_folders_say_and_a_name_twice_is_said() {
    // bad/ only denies or warns, good/ only passes, exceptions/ passes by
    // an exemption; no workload is defined twice across examples/.
    let out = run(&["check", "-o", "json", "examples/"]);
    let report = json(&out);
    assert!(report.get("notes").is_none(), "{report:#}");
    for r in report["results"].as_array().unwrap() {
        let source = r["source"].as_str().unwrap();
        let violations = r["violations"].as_array().unwrap();
        if source.starts_with("examples/bad/") {
            assert!(!violations.is_empty(), "{source} passes");
        } else if source.starts_with("examples/good/") {
            assert!(
                violations.is_empty() && r["allowed"] == true,
                "{source}: {r:#}"
            );
        } else {
            assert!(source.starts_with("examples/exceptions/"), "{source}");
            assert!(
                violations.is_empty() && r.get("exemptions").is_some(),
                "{r:#}"
            );
        }
    }
    let dir = TempDir::new("twice");
    let copy = dir.write(
        "copy.yaml",
        &std::fs::read_to_string(root().join("examples/bad/probes.yaml")).unwrap(),
    );
    let out = run(&["check", "examples/bad/probes.yaml", &copy]);
    assert!(
        text(&out).contains(&format!(
            "note: Deployment ml/translate is in both examples/bad/probes.yaml#0 and {copy}#0: \
             kubectl apply keeps the last"
        )),
        "{}",
        text(&out)
    );
}

#[test]
fn an_exception_without_reason_is_refused() {
    let dir = TempDir::new("exc-reason");
    let e = dir.write(
        "e.yaml",
        "apiVersion: waf-admission.dev/v1alpha1\nkind: WellArchitectedException\nmetadata: {name: e, namespace: ml}\nspec:\n  workloads: [{kind: Deployment, name: ollama}]\n  rules: [image-provenance]\n  reason: ''\n  expires: '2099-01-01T00:00:00Z'\n",
    );
    let out = run(&["check", "examples/bad/image-provenance.yaml", &e]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("spec.reason: say why the exception is needed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn namespace_labels_in_the_input_feed_namespace_selectors() {
    let dir = TempDir::new("ns");
    let ns = dir.write("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: ml, labels: {environment: production}}\n");
    let strict = run(&[
        "check",
        "-o",
        "json",
        "--policy",
        "manifests/policies/strict.yaml",
        "examples/good/llm-gpu.yaml",
        &ns,
    ]);
    let llm = result(&json(&strict), "llm").clone();
    assert_eq!(llm["governedBy"], serde_json::json!(["strict"]));
    // strict wants 3 replicas and CPU limits.
    assert_eq!(llm["allowed"], false);
    let without_ns = run(&[
        "check",
        "-o",
        "json",
        "--policy",
        "manifests/policies/strict.yaml",
        "examples/good/llm-gpu.yaml",
    ]);
    let llm = result(&json(&without_ns), "llm").clone();
    assert!(
        llm["notGoverned"]
            .as_str()
            .unwrap()
            .starts_with("no policy covers Deployment in namespace ml")
    );
    assert_eq!(llm["allowed"], true);
}

#[test]
fn a_namespace_label_that_is_not_a_string_is_refused_not_dropped() {
    // `gpu: yes` is a boolean to kubectl and the apiserver refuses it; before,
    // check dropped every label of that Namespace without a word.
    let dir = TempDir::new("ns-bool");
    let ns = dir.write(
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ml\n  labels:\n    gpu: yes\n",
    );
    let out = run(&["check", "-o", "json", &ns, "examples/good/llm-gpu.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let report = json(&out);
    let err = report["errors"][0].as_str().unwrap();
    assert!(
        err.starts_with(&format!(
            "{ns}#0: field metadata.labels.gpu: invalid type: boolean"
        )),
        "{err}"
    );
    assert!(err.contains("(line 6)"), "{err}");
}

#[test]
fn the_dev_policy_lets_a_model_server_scale_to_zero_which_the_baseline_reports() {
    let dir = TempDir::new("dev");
    let ns = dir.write(
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: ml, labels: {environment: dev}}\n",
    );
    let keda = "tests/fixtures/rules/autoscaler/fail-keda-scale-to-zero.yaml";
    let dev = run(&[
        "check",
        "-o",
        "json",
        "--policy",
        "manifests/policies/dev-scale-to-zero.yaml",
        keda,
        &ns,
    ]);
    let llm = result(&json(&dev), "llm").clone();
    assert_eq!(llm["governedBy"], serde_json::json!(["dev-scale-to-zero"]));
    assert_eq!(llm["violations"], serde_json::json!([]), "{llm:#}");
    let baseline = run(&["check", "-o", "json", keda, &ns]);
    let llm = result(&json(&baseline), "llm").clone();
    let rules: Vec<&str> = llm["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["rule"].as_str().unwrap())
        .collect();
    assert!(
        rules.contains(&"autoscaler") && rules.contains(&"zone-spread"),
        "{rules:?}"
    );
}

#[test]
fn the_strict_policy_holds_models_to_lineage_which_the_baseline_leaves_off() {
    let dir = TempDir::new("lineage");
    let ns = dir.write(
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: ml, labels: {environment: production}}\n",
    );
    let actions = |args: &[&str]| -> Vec<(String, String)> {
        let out = run(args);
        result(&json(&out), "llm")["violations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["rule"].as_str().unwrap().to_owned(),
                    v["action"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let strict = actions(&[
        "check",
        "-o",
        "json",
        "--policy",
        "manifests/policies/strict.yaml",
        "examples/good/llm-gpu.yaml",
        &ns,
    ]);
    let has = |list: &[(String, String)], rule: &str, action: &str| {
        list.iter().any(|(r, a)| r == rule && a == action)
    };
    assert!(has(&strict, "model-lineage", "deny"), "{strict:?}");
    assert!(has(&strict, "graceful-termination", "warn"), "{strict:?}");
    let baseline = actions(&["check", "-o", "json", "examples/good/llm-gpu.yaml", &ns]);
    assert!(
        !baseline
            .iter()
            .any(|(r, _)| r == "model-lineage" || r == "graceful-termination"),
        "{baseline:?}"
    );
}

#[test]
fn non_kubernetes_documents_are_reported_as_skipped() {
    let dir = TempDir::new("skip");
    let f = dir.write("values.yaml", "replicaCount: 2\nimage: {repository: x}\n");
    // Alone, it is nothing to judge: exit 2, unless that is allowed.
    assert_eq!(run(&["check", &f]).status.code(), Some(2));
    let out = run(&["check", "--allow-empty", "-o", "json", &f]);
    assert_eq!(out.status.code(), Some(0));
    let report = json(&out);
    assert_eq!(report["skipped"][0]["source"], format!("{f}#0"));
    assert!(text(&run(&["check", &f])).contains("skipped"));
}

#[test]
fn baseline_prints_the_embedded_policy_which_check_accepts() {
    let out = run(&["baseline"]);
    assert_eq!(out.status.code(), Some(0));
    let dir = TempDir::new("baseline");
    let p = dir.write("baseline.yaml", &text(&out));
    let with_file = run(&["check", "-o", "json", "--policy", &p, "examples"]);
    let without = run(&["check", "-o", "json", "examples"]);
    assert_eq!(json(&with_file), json(&without));
}

#[test]
fn crd_prints_both_custom_resource_definitions() {
    let out = run(&["crd"]);
    assert_eq!(out.status.code(), Some(0));
    let t = text(&out);
    assert!(t.contains("name: wellarchitectedpolicies.waf-admission.dev"));
    assert!(t.contains("name: wellarchitectedexceptions.waf-admission.dev"));
    assert!(t.contains("- wap"));
    assert!(t.contains("- wae"));
}

#[test]
fn a_folder_of_third_party_manifests_gets_a_verdict_per_workload() {
    let corpus = root().join("tests/fixtures/corpus");
    if !corpus.exists() {
        panic!("tests/fixtures/corpus is missing");
    }
    let out = run(&["check", "-o", "json", corpus.to_str().unwrap()]);
    let code = out.status.code();
    assert!(
        matches!(code, Some(0..=2)),
        "crashed: {:?} {}",
        out.status,
        stderr(&out)
    );
    let report = json(&out);
    // Every workload document, found independently of the tool's loader,
    // must get a result or an error that names its source.
    let workload = |kind: &str| {
        matches!(
            kind,
            "Deployment" | "StatefulSet" | "Pod" | "ReplicaSet" | "Job" | "CronJob"
        )
    };
    let mut expected = Vec::new();
    for file in walk(&corpus) {
        use serde::Deserialize;
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let source = format!("{}#{i}", file.display());
            let Ok(doc) = Value::deserialize(doc) else {
                // Unreadable YAML: reported there, and the rest of the file with it.
                expected.push(source);
                break;
            };
            let kind = doc["kind"].as_str().unwrap_or_default();
            if workload(kind) {
                expected.push(source);
            } else if kind.ends_with("List") {
                for (j, item) in doc["items"].as_array().into_iter().flatten().enumerate() {
                    if workload(item["kind"].as_str().unwrap_or_default()) {
                        expected.push(format!("{source}/items/{j}"));
                    }
                }
            }
        }
    }
    let results = report["results"].as_array().unwrap();
    let errors: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(expected.len() >= 8, "corpus too small: {}", expected.len());
    for source in &expected {
        let judged = results.iter().any(|r| r["source"] == source.as_str());
        let reported = errors.iter().any(|e| e.starts_with(&format!("{source}: ")));
        assert!(judged || reported, "{source}: neither judged nor reported");
    }
    assert_eq!(
        results.len(),
        results.iter().filter(|r| r["allowed"].is_boolean()).count()
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
    out
}

#[test]
fn under_warn_check_patches_nothing_and_says_what_deny_would_patch() {
    let policy = run(&["baseline"]).stdout;
    let policy = String::from_utf8(policy)
        .unwrap()
        .replace("  action: Deny\n", "  action: Warn\n");
    assert!(policy.contains("  action: Warn\n"));
    let dir = std::env::temp_dir().join(format!("waf-cli-warn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("warn.yaml");
    std::fs::write(&file, policy).unwrap();
    let file = file.to_str().unwrap();
    let out = run(&["check", "--policy", file, "examples/bad/zone-spread.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let t = text(&out);
    assert!(
        t.lines()
            .any(|l| l.contains("zone-spread") && l.contains("[Deny would patch]")),
        "{t}"
    );
    let out = run(&["check", "--policy", file, "-o", "json", "examples/bad/"]);
    let report = json(&out);
    for r in report["results"].as_array().unwrap() {
        assert_eq!(r["patch"], serde_json::json!([]), "{}", r["name"]);
        assert_eq!(r["allowed"], true, "{}", r["name"]);
    }
}

#[test]
fn literal_credentials_are_reported_but_never_repeated_in_text_or_json() {
    let inputs = [
        "examples/bad/secret-env.yaml",
        "tests/fixtures/rules/secret-env/fail-literal-hf-token.yaml",
        "tests/fixtures/rules/secret-env/fail-api-key-in-args.yaml",
        "tests/fixtures/rules/secret-env/fail-storage-connection-string.yaml",
    ];
    // Fragments of the made-up credentials in those files.
    let secrets = [
        "QmFkRXhhbXBsZU5vdEFSZWFsVG9rZW5BdEFsbA",
        "made-up-key-for-this-fixture",
        "bWFkZS11cC1rZXktbm90LXJlYWwt",
    ];
    for format in ["text", "json"] {
        let mut args = vec!["check", "-o", format];
        args.extend(inputs);
        let out = run(&args);
        let all = format!("{}{}", text(&out), stderr(&out));
        assert!(
            all.matches("secret-env").count() >= inputs.len(),
            "every input reported: {all}"
        );
        for s in secrets {
            assert!(
                !all.contains(s),
                "{format} output repeats a credential: {all}"
            );
        }
    }
}

/// GPUs that no resource name `nvidia.com/gpu` shows: a DRA claim through a
/// ResourceClaimTemplate in the same input, and a time-sliced GPU renamed
/// `nvidia.com/gpu.shared`. Under an image name no detection knows, each is
/// governed as a GPU workload and denied without GPU placement; the fixed
/// versions pass.
#[test]
fn dra_claims_and_time_sliced_gpus_are_gpu_workloads_denied_without_gpu_placement() {
    let dir = TempDir::new("gpu-forms");
    let policy = dir.write(
        "deny.yaml",
        "apiVersion: waf-admission.dev/v1alpha1\nkind: WellArchitectedPolicy\n\
         metadata: {name: gpus}\nspec:\n  action: Deny\n  rules:\n    \
         zoneSpread: {action: \"Off\"}\n    autoscaler: {action: \"Off\"}\n    \
         resources: {action: \"Off\"}\n    imageProvenance: {action: \"Off\"}\n    \
         rolloutStrategy: {action: \"Off\"}\n    sharedMemory: {action: \"Off\"}\n    \
         workloadIdentity: {action: \"Off\"}\n    probes: {action: \"Off\"}\n    \
         disruptionBudget: {action: \"Off\"}\n    secretEnv: {action: \"Off\"}\n    \
         hostIsolation: {action: \"Off\"}\n",
    );
    let fixtures = "tests/fixtures/rules/gpu-placement";
    let dra = "the pod claims a GPU through DRA (ResourceClaimTemplate \"one-gpu\", \
               device class gpu.nvidia.com)";
    for (file, reason) in [
        ("dra-claim-without-gpu-placement", dra),
        (
            "time-sliced-gpu-without-placement",
            "container \"engine\" requests nvidia.com/gpu.shared",
        ),
    ] {
        let path = format!("{fixtures}/fail-{file}.yaml");
        let out = run(&["check", "-o", "json", "--policy", &policy, &path]);
        assert_eq!(out.status.code(), Some(1), "{file}: {}", stderr(&out));
        let chat = result(&json(&out), "chat").clone();
        assert_eq!(chat["inferenceReason"], reason, "{file}");
        assert_eq!(chat["allowed"], false, "{file}");
        let messages: Vec<&str> = chat["violations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["rule"] == "gpu-placement" && v["action"] == "deny")
            .map(|v| v["message"].as_str().unwrap())
            .collect();
        assert_eq!(messages.len(), 2, "{file}: {chat:#}");
        assert!(
            messages.iter().all(|m| m.starts_with(reason)),
            "{file}: {messages:?}"
        );
        // The baseline (mutate: true) patches in the nodeSelector and toleration.
        let out = run(&["check", "-o", "json", &path]);
        assert_eq!(out.status.code(), Some(0), "{file}");
        let chat = result(&json(&out), "chat").clone();
        assert_eq!(chat["allowed"], true);
        assert!(!chat["patch"].as_array().unwrap().is_empty(), "{file}");
    }
    for file in ["dra-claim-on-gpu-nodes", "time-sliced-gpu-on-gpu-nodes"] {
        let path = format!("{fixtures}/pass-{file}.yaml");
        let out = run(&["check", "-o", "json", "--policy", &policy, &path]);
        assert_eq!(out.status.code(), Some(0), "{file}: {}", text(&out));
        let chat = result(&json(&out), "chat").clone();
        assert_eq!(chat["governedBy"], serde_json::json!(["gpus"]), "{file}");
        assert_eq!(chat["violations"], serde_json::json!([]), "{file}");
    }
    // Without its ResourceClaimTemplate in the input, nothing says GPU.
    let text_in = std::fs::read_to_string(root().join(format!(
        "{fixtures}/fail-dra-claim-without-gpu-placement.yaml"
    )))
    .unwrap();
    let deployment = text_in.split("---\n").nth(1).unwrap();
    let out = run_stdin(
        &["check", "-o", "json", "--policy", &policy, "-"],
        deployment,
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(result(&json(&out), "chat")["inference"], false);
}

/// A policy pinned to a release denies only on that release's rules: an
/// upgrade that brings `probes` warns on it until the policy sets its action.
#[test]
fn a_pinned_rule_set_keeps_newer_rules_at_warn_until_their_action_is_set() {
    let dir = TempDir::new("rule-set");
    let policy = |name: &str, extra: &str| {
        dir.write(
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: waf-admission.dev/v1alpha1\nkind: WellArchitectedPolicy\nmetadata: {{name: {name}}}\nspec:\n  action: Deny\n{extra}"
            ),
        )
    };
    let judge = |policy: &str| {
        let out = run(&[
            "check",
            "-o",
            "json",
            "--policy",
            policy,
            "examples/bad/probes.yaml",
        ]);
        let report = json(&out);
        let actions: Vec<(String, String)> = report["results"][0]["violations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["rule"].as_str().unwrap().into(),
                    v["action"].as_str().unwrap().into(),
                )
            })
            .collect();
        (out.status.code(), actions, report["policies"][0].clone())
    };
    let probes = |action: &str| vec![("probes".to_owned(), action.to_owned())];

    let (code, actions, applied) = judge(&policy("pinned", "  ruleSet: \"0.1\"\n"));
    assert_eq!((code, actions), (Some(0), probes("warn")));
    assert_eq!(applied["ruleSet"], "0.1");
    assert!(
        applied["newerRules"]
            .as_array()
            .unwrap()
            .contains(&"probes".into()),
        "{applied}"
    );

    // Settings alone leave it at Warn; an action of its own opts it in.
    let (code, actions, _) = judge(&policy(
        "configured",
        "  ruleSet: \"0.1\"\n  rules:\n    probes: {startupGraceSeconds: 300}\n",
    ));
    assert_eq!((code, actions), (Some(0), probes("warn")));
    let (code, actions, applied) = judge(&policy(
        "named",
        "  ruleSet: \"0.1\"\n  rules:\n    probes: {action: Deny}\n",
    ));
    assert_eq!((code, actions), (Some(1), probes("deny")));
    assert!(
        !applied["newerRules"]
            .as_array()
            .unwrap()
            .contains(&"probes".into())
    );

    for (name, extra) in [("unpinned", ""), ("latest", "  ruleSet: latest\n")] {
        let (code, actions, applied) = judge(&policy(name, extra));
        assert_eq!((code, actions), (Some(1), probes("deny")), "{name}");
        assert_eq!(
            applied["ruleSet"],
            format!(
                "latest ({})",
                env!("CARGO_PKG_VERSION").rsplit_once('.').unwrap().0
            ),
            "{name}"
        );
    }

    // SARIF carries it in the run's property bag.
    let pinned = policy("pinned", "  ruleSet: \"0.1\"\n");
    let sarif = json(&run(&[
        "check",
        "-o",
        "sarif",
        "--policy",
        &pinned,
        "examples/bad/probes.yaml",
    ]));
    assert_eq!(
        sarif["runs"][0]["properties"]["policies"][0]["ruleSet"],
        "0.1"
    );

    // The text output says which rule set applied.
    let out = run(&[
        "check",
        "--policy",
        &policy("pinned", "  ruleSet: \"0.1\"\n"),
        "examples/bad/probes.yaml",
    ]);
    assert!(
        text(&out).contains(
            "policy pinned: rule set 0.1; newer rules at most warn unless their action is set: rollout-strategy,"
        ),
        "{}",
        text(&out)
    );
}

#[test]
fn a_rule_set_that_is_not_a_release_is_refused_naming_the_field() {
    let dir = TempDir::new("rule-set-bad");
    let p = dir.write(
        "p.yaml",
        "apiVersion: waf-admission.dev/v1alpha1\nkind: WellArchitectedPolicy\nmetadata: {name: p}\nspec:\n  ruleSet: newest\n",
    );
    let out = run(&["check", "--policy", &p, "examples/good/llm-gpu.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(r#"spec.ruleSet: "newest" is not a release (0.1, 0.2, …) or latest"#),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_version_is_the_crates_and_the_changelogs_newest_release() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    let printed = text(&out);
    assert!(
        printed.starts_with(&format!(
            "waf-admission {} (git ",
            env!("CARGO_PKG_VERSION")
        )),
        "{printed}"
    );
    let changelog = std::fs::read_to_string(root().join("CHANGELOG.md")).unwrap();
    let newest = changelog
        .lines()
        .filter_map(|l| l.strip_prefix("## ["))
        .filter_map(|l| l.split(']').next())
        .find(|release| *release != "Unreleased");
    assert_eq!(
        newest,
        Some(env!("CARGO_PKG_VERSION")),
        "CHANGELOG.md's newest release"
    );
}
