//! What a live cluster sends, and what must never wedge it: the UPDATE that
//! removes a finalizer from an object being deleted, `kubectl label` on an
//! object created before the policy, `kubectl debug` on an owned Pod, an
//! UPDATE of a Pod, the chart's Warn install, and a GPU model server that
//! declares only its GPU. The real binary over TLS, reviews shaped as the
//! kube-apiserver sends them (`oldObject`, `subResource`).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn first(path: &str) -> Value {
    yaml_file(path).remove(0)
}

fn start(extra: &[&str]) -> (Pki, Server) {
    install_crypto();
    let pki = Pki::new("live");
    let server = Server::start(&pki, extra);
    (pki, server)
}

/// The built-in baseline with `edit` applied, written where `serve
/// --policy` can read it.
fn baseline_with(tag: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let text = std::process::Command::new(env!("CARGO_BIN_EXE_waf-admission"))
        .arg("baseline")
        .output()
        .unwrap()
        .stdout;
    let mut policy: Value = serde_yaml_ng::from_slice(&text).unwrap();
    edit(&mut policy);
    let path = temp_dir(tag).join("policy.json");
    std::fs::write(&path, serde_json::to_vec(&policy).unwrap()).unwrap();
    path
}

fn warnings(body: &Value) -> Vec<String> {
    body["response"]["warnings"]
        .as_array()
        .map(|w| w.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

fn message(body: &Value) -> String {
    body["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn removing_the_last_finalizer_of_a_deleted_object_is_never_judged_or_patched() {
    let (pki, srv) = start(&["--baseline"]);
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let mut old = first("examples/bad/image-provenance.yaml");
    old["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
    old["metadata"]["deletionTimestamp"] = json!("2026-12-01T08:00:00Z");
    let mut new = old.clone();
    new["metadata"]["finalizers"] = json!([]);
    // Without the deletionTimestamp the same object is denied: the
    // allowance comes from the deletion, not from the object.
    let mut live = old.clone();
    live["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("deletionTimestamp");
    let (_, body) = h2
        .post("/validate", &review("CREATE", Some(&live), false))
        .await;
    assert_eq!(body["response"]["allowed"], false);

    for path in ["/validate", "/mutate"] {
        let (status, body) = h2.post(path, &update_review(&new, &old, None)).await;
        assert_eq!(status, 200);
        assert_eq!(body["response"]["allowed"], true, "{path}: {body}");
        assert!(body["response"].get("patch").is_none(), "{path}: {body}");
        assert!(warnings(&body).is_empty(), "{path}: {body}");
    }
    // The log is read from the child's stdout by a thread: wait for it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let logged = srv
            .log_lines()
            .iter()
            .filter(|l| l.contains("unjudged: being deleted"))
            .count();
        if logged == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "each webhook logs the deletion as such ({logged} of 2)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_update_that_adds_no_violation_is_admitted_and_says_what_was_already_there() {
    let (pki, srv) = start(&["--baseline"]);
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let old = first("examples/bad/image-provenance.yaml");
    // `kubectl label deployment ollama team=search`
    let mut labelled = old.clone();
    labelled["metadata"]["labels"]["team"] = json!("search");
    let (_, body) = h2
        .post("/validate", &update_review(&labelled, &old, None))
        .await;
    assert_eq!(body["response"]["allowed"], true, "{body}");
    let w = warnings(&body);
    let existing: Vec<&String> = w
        .iter()
        .filter(|l| l.starts_with("[image-provenance]"))
        .collect();
    // One warning per rule.
    assert_eq!(existing.len(), 1, "{w:?}");
    assert!(
        existing.iter().all(|l| l
            .starts_with("[image-provenance] already there before this update: container \"llm\"")),
        "{w:?}"
    );
    // The same object as a CREATE is denied: nothing was relaxed for it.
    let (_, body) = h2
        .post("/validate", &review("CREATE", Some(&labelled), false))
        .await;
    assert_eq!(body["response"]["allowed"], false);
}

#[tokio::test]
async fn an_update_that_brings_a_violation_is_denied_for_that_one_only() {
    let (pki, srv) = start(&["--baseline"]);
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    // Already non-compliant (image), and the update drops to one replica.
    let old = first("examples/bad/image-provenance.yaml");
    let mut new = old.clone();
    new["spec"]["replicas"] = json!(1);
    let (_, body) = h2.post("/validate", &update_review(&new, &old, None)).await;
    assert_eq!(body["response"]["allowed"], false, "{body}");
    let m = message(&body);
    assert!(m.contains("violates 1 Well-Architected rule"), "{m}");
    assert!(m.contains("[zone-spread]"), "{m}");
    assert!(!m.contains("[image-provenance]"), "{m}");
    assert!(
        warnings(&body)
            .iter()
            .any(|w| w.starts_with("[image-provenance] already there before this update")),
        "{body}"
    );

    // A compliant Deployment bumped to an unpinned Docker Hub image.
    let old = first("examples/good/llm-gpu.yaml");
    let mut new = old.clone();
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("vllm/vllm-openai:latest");
    let (_, body) = h2.post("/validate", &update_review(&new, &old, None)).await;
    assert_eq!(body["response"]["allowed"], false);
    assert!(message(&body).contains("[image-provenance]"));
}

#[tokio::test]
async fn updates_all_denies_what_the_old_object_already_had() {
    let policy = baseline_with("updates-all", |p| p["spec"]["updates"] = json!("All"));
    let (pki, srv) = start(&["--policy", policy.to_str().unwrap()]);
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let old = first("examples/bad/image-provenance.yaml");
    let mut labelled = old.clone();
    labelled["metadata"]["labels"]["team"] = json!("search");
    let (_, body) = h2
        .post("/validate", &update_review(&labelled, &old, None))
        .await;
    assert_eq!(body["response"]["allowed"], false, "{body}");
    assert!(message(&body).contains("[image-provenance]"));
}

/// A Pod its ReplicaSet created, whose container already breaks the
/// image rule, and the same Pod with a `kubectl debug` container added.
fn owned_pod_and_debugged(debug_image: &str) -> (Value, Value) {
    let d = first("examples/good/llm-gpu.yaml");
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "llm-5d9c7-x2x4z", "namespace": "ml",
            "labels": d["spec"]["template"]["metadata"]["labels"].clone(),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "llm-5d9c7",
                "uid": "0b6f4bb5-0b5e-4c2e-9a57-1f2b3c4d5e6f", "controller": true, "blockOwnerDeletion": true}]},
        "spec": d["spec"]["template"]["spec"].clone(),
    });
    pod["spec"]["containers"][0]["image"] = json!("vllm/vllm-openai:v0.6.3");
    let mut debugged = pod.clone();
    debugged["spec"]["ephemeralContainers"] = json!([{
        "name": "debugger", "image": debug_image, "stdin": true, "tty": true,
        "targetContainerName": "llm"}]);
    (pod, debugged)
}

#[tokio::test]
async fn kubectl_debug_is_judged_on_an_owned_pod_and_its_new_container_is_new() {
    let (pki, srv) = start(&["--baseline"]);
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let (pod, debugged) = owned_pod_and_debugged("busybox:latest");
    // Created by its ReplicaSet (the requester is the replicaset
    // controller): made from a template judged at apply, not judged again.
    let by_controller = as_user(
        review("CREATE", Some(&pod), false),
        "system:serviceaccount:kube-system:replicaset-controller",
    );
    let (_, body) = h2.post("/validate", &by_controller).await;
    assert_eq!(body["response"]["allowed"], true);
    assert!(warnings(&body).is_empty(), "{body}");
    // The same Pod created by anyone else, its ownerReferences and all, is
    // judged: a reference is a claim, not a proof.
    let (_, body) = h2
        .post("/validate", &review("CREATE", Some(&pod), false))
        .await;
    assert_eq!(body["response"]["allowed"], false, "{body}");
    assert!(message(&body).contains("[image-provenance]"), "{body}");

    let rev = update_review(&debugged, &pod, Some("ephemeralcontainers"));
    let (_, body) = h2.post("/validate", &rev).await;
    assert_eq!(body["response"]["allowed"], false, "{body}");
    let m = message(&body);
    assert!(
        m.contains("ephemeral container \"debugger\" image \"busybox:latest\""),
        "{m}"
    );
    assert!(
        !m.contains("container \"llm\""),
        "old violations do not deny: {m}"
    );
    let (_, body) = h2.post("/mutate", &rev).await;
    assert!(body["response"].get("patch").is_none(), "{body}");

    let pinned = "mcr.microsoft.com/azurelinux/busybox:1.36@sha256:4f8c1e1d36ca6a7bb3b5f4b3e6d8f2a9c0b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5";
    let (pod, debugged) = owned_pod_and_debugged(pinned);
    let (_, body) = h2
        .post(
            "/validate",
            &update_review(&debugged, &pod, Some("ephemeralcontainers")),
        )
        .await;
    assert_eq!(body["response"]["allowed"], true, "{body}");
}

#[tokio::test]
async fn a_pod_update_is_never_patched_though_its_create_would_be() {
    let (pki, srv) = start(&["--baseline"]);
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let pod = first("tests/fixtures/rules/gpu-placement/fail-gpu-without-node-selector.yaml");
    let pod = if pod["kind"] == "Pod" {
        pod
    } else {
        let d = pod;
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "llm-0", "namespace": "ml",
                "labels": d["spec"]["template"]["metadata"]["labels"].clone()},
            "spec": d["spec"]["template"]["spec"].clone()})
    };
    let (_, created) = h2
        .post("/mutate", &review("CREATE", Some(&pod), false))
        .await;
    assert!(
        created["response"].get("patch").is_some(),
        "the CREATE is patched: {created}"
    );
    // `kubectl label pod llm-0 team=search`: nodeSelector, tolerations and
    // resources are immutable on a Pod, so a patch would fail the label.
    let mut labelled = pod.clone();
    labelled["metadata"]["labels"]["team"] = json!("search");
    let rev = update_review(&labelled, &pod, None);
    let (_, body) = h2.post("/mutate", &rev).await;
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none(), "{body}");
    let (_, body) = h2.post("/validate", &rev).await;
    assert_eq!(body["response"]["allowed"], true, "{body}");
}

#[tokio::test]
async fn the_charts_warn_install_changes_no_object_and_denies_none() {
    // What templates/policy.yaml renders with the chart's default values.
    let chart_values = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/waf-admission/values.yaml"),
    )
    .unwrap();
    let values: Value = serde_yaml_ng::from_str(&chart_values).unwrap();
    let action = values["policy"]["action"].as_str().unwrap().to_owned();
    assert_eq!(action, "Warn");
    let policy = baseline_with("chart-warn", |p| p["spec"]["action"] = json!(action));
    let (pki, srv) = start(&["--policy", policy.to_str().unwrap()]);
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("examples/bad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for rule in std::fs::read_dir(root.join("tests/fixtures/rules")).unwrap() {
        for f in std::fs::read_dir(rule.unwrap().path()).unwrap() {
            let f = f.unwrap().path();
            if f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("fail-")
            {
                files.push(f);
            }
        }
    }
    let mut warned_patch = 0;
    for file in &files {
        let rel = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for object in yaml_file(&rel) {
            if !matches!(
                object["kind"].as_str(),
                Some("Deployment" | "StatefulSet" | "Pod")
            ) {
                continue;
            }
            let rev = review("CREATE", Some(&object), false);
            let (_, m) = h2.post("/mutate", &rev).await;
            assert!(m["response"].get("patch").is_none(), "{rel}: {m}");
            let (_, v) = h2.post("/validate", &rev).await;
            assert_eq!(v["response"]["allowed"], true, "{rel}: {v}");
            warned_patch += warnings(&v)
                .iter()
                .filter(|w| w.contains("(Deny with mutate: true would add it)"))
                .count();
        }
    }
    assert!(
        warned_patch > 0,
        "warnings say what Deny with mutate would add"
    );
}

#[tokio::test]
async fn a_gpu_server_that_declares_only_its_gpu_gets_no_guessed_sizes() {
    let (pki, srv) = start(&["--baseline"]);
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let object = first("tests/fixtures/rules/resources/fail-gpu-server-without-sizes.yaml");
    let rev = review("CREATE", Some(&object), false);
    let (_, m) = h2.post("/mutate", &rev).await;
    assert!(m["response"].get("patch").is_none(), "{m}");
    let (_, v) = h2.post("/validate", &rev).await;
    assert_eq!(v["response"]["allowed"], false);
    let text = message(&v);
    assert!(
        text.contains(
            "Fix: size resources.requests.memory on container \"llm\" for its model (weights, KV cache"
        ),
        "{text}"
    );
    assert!(!text.contains("1Gi"), "{text}");
}

#[tokio::test]
async fn readiness_is_lost_at_sigterm_while_requests_are_still_answered() {
    let (pki, srv) = start(&["--baseline", "--shutdown-delay", "5s"]);
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    assert_eq!(h2.request("GET", "/readyz", Vec::new()).await.0, 200);
    srv.terminate();
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let (status, _) = h2.request("GET", "/readyz", Vec::new()).await;
        if status == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "still ready after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Still in the shutdown delay: judged as usual.
    let (status, body) = h2
        .post(
            "/validate",
            &review("CREATE", Some(&first("examples/good/llm-gpu.yaml")), false),
        )
        .await;
    assert_eq!(
        (status, body["response"]["allowed"].clone()),
        (200, json!(true))
    );
    assert_eq!(h2.request("GET", "/readyz", Vec::new()).await.0, 503);
}

/// `serve --self-signed` with `TMPDIR` set to `tmp`, until it listens:
/// the CA file its log names, read while it runs (path, mode, PEM); then
/// SIGTERM and its exit status.
fn self_signed_run(tmp: &std::path::Path) -> (PathBuf, u32, String, std::process::ExitStatus) {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_waf-admission"))
        .args([
            "serve",
            "--self-signed",
            "--baseline",
            "--log-format",
            "json",
        ])
        .args(["--addr", "127.0.0.1:0", "--metrics-addr", "off"])
        .env("TMPDIR", tmp)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut ca = None;
    // The CA is logged before the listener; SIGTERM finds its handler
    // once "listening" is logged.
    for line in lines.by_ref() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap_or_default();
        if let Some(path) = v["ca"].as_str() {
            ca = Some(PathBuf::from(path));
        }
        if v["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("listening"))
        {
            break;
        }
    }
    let ca = ca.expect("serve --self-signed logs where its CA is");
    let mode = std::fs::metadata(&ca).unwrap().permissions().mode() & 0o777;
    let pem = std::fs::read_to_string(&ca).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Drained so a late log line never blocks the child on a full pipe.
    lines.for_each(drop);
    (ca, mode, pem, child.wait().unwrap())
}

#[test]
fn self_signed_keeps_its_pem_in_a_private_file_only_while_it_runs() {
    let tmp = temp_dir("self-signed-tmpdir");
    let a = self_signed_run(&tmp);
    let b = self_signed_run(&tmp);
    assert_ne!(a.0, b.0, "a fresh file each start, never a fixed name");
    for (path, mode, pem, status) in [&a, &b] {
        assert!(path.starts_with(&tmp), "{path:?} is under $TMPDIR");
        assert_eq!(*mode, 0o600, "{path:?}");
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{path:?}");
        assert!(status.success(), "{status}");
    }
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "two starts left {left:?} in $TMPDIR");
    std::fs::remove_dir(&tmp).unwrap();
}

/// CPU seconds (user + system) the process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::test]
async fn out_of_file_descriptors_the_accept_loop_waits_instead_of_spinning() {
    install_crypto();
    let pki = Pki::new("emfile");
    // One address may hold every slot here: the per-client shares would
    // otherwise close the flood at accept before the table fills.
    let srv = Server::start_wrapped(
        &pki,
        &["prlimit", "--nofile=64:64"],
        &[
            "--baseline",
            "--max-connections-per-client",
            "1024",
            "--max-pending-handshakes",
            "1024",
        ],
    );
    // Fill the descriptor table with connections that never finish their
    // handshake; the rest wait in the listen backlog, so accept keeps
    // failing with EMFILE.
    let mut held = Vec::new();
    for _ in 0..120 {
        if let Ok(s) = tokio::net::TcpStream::connect(srv.addr).await {
            held.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cpu_seconds(srv.child.id());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_seconds(srv.child.id()) - before;
    assert!(used < 0.5, "the accept loop used {used:.2} s of CPU in 2 s");
    assert!(
        srv.logged("accept failed; backing off", Duration::from_secs(5)),
        "EMFILE was reached and logged"
    );
    // Once descriptors free up, it serves again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut h2 = loop {
        if let Ok(h2) = H2::connect(srv.addr, &pki.ca_pem).await {
            break h2;
        }
        assert!(Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(h2.request("GET", "/healthz", Vec::new()).await.0, 200);
}
