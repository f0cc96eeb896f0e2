//! The real binary over real TLS on loopback, spoken to over HTTP/2 the way
//! the kube-apiserver does: every verdict, every bad input, certificate
//! rotation with requests in flight, and graceful shutdown.

mod common;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

fn server() -> (Pki, Server) {
    install_crypto();
    let pki = Pki::new("webhook");
    let server = Server::start(&pki, &["--baseline"]);
    (pki, server)
}

fn first(path: &str) -> Value {
    yaml_file(path).remove(0)
}

#[tokio::test]
async fn a_compliant_deployment_is_allowed_over_http2_with_its_uid_echoed() {
    let (pki, srv) = server();
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]));
    let rev = review("CREATE", Some(&first("examples/good/llm-gpu.yaml")), false);
    let (status, body) = h2.post("/validate", &rev).await;
    assert_eq!(status, 200);
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(body["response"]["uid"], rev["request"]["uid"]);
    assert_eq!(body["response"]["allowed"], true);
}

#[tokio::test]
async fn a_violation_is_denied_with_403_and_one_block_per_violation() {
    let (pki, srv) = server();
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let rev = review(
        "CREATE",
        Some(&first("examples/bad/image-provenance.yaml")),
        false,
    );
    let (status, body) = h2.post("/validate", &rev).await;
    assert_eq!(status, 200, "a denial is an answer, not an HTTP error");
    let r = &body["response"];
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    assert_eq!(r["status"]["reason"], "Forbidden");
    let message = r["status"]["message"].as_str().unwrap();
    let lines: Vec<&str> = message.lines().collect();
    // The registry and the floating tag: one finding, one fix.
    assert_eq!(
        lines[0],
        "Deployment ml/ollama violates 1 Well-Architected rule (policy baseline):"
    );
    assert!(lines[1].starts_with("[image-provenance] (Security) container \"llm\" image \"ollama/ollama:latest\" comes from docker.io"));
    assert!(
        message.lines().filter(|l| l.starts_with("  Fix: ")).count() == 1,
        "{message}"
    );
    assert!(
        message
            .lines()
            .filter(|l| !l.starts_with("  Fix: "))
            .all(|l| l.chars().count() <= 100),
        "{message}"
    );
}

#[tokio::test]
async fn warn_violations_come_back_as_warnings_within_apiserver_limits() {
    let (pki, srv) = server();
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    // No autoscaler and no PodDisruptionBudget exist in standalone mode
    // (the file's own are not sent): the baseline warns, one line per rule.
    let rev = review(
        "CREATE",
        Some(&first("examples/bad/autoscaler.yaml")),
        false,
    );
    let (_, body) = h2.post("/validate", &rev).await;
    let r = &body["response"];
    assert_eq!(r["allowed"], true);
    let warnings: Vec<&str> = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("[autoscaler] no HorizontalPodAutoscaler"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].starts_with("[disruption-budget] no PodDisruptionBudget"),
        "{warnings:?}"
    );
    assert!(warnings.iter().all(|w| w.chars().count() <= 256));
}

#[tokio::test]
async fn mutate_returns_a_patch_that_makes_validate_allow_it() {
    let (pki, srv) = server();
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    for file in [
        "examples/bad/gpu-placement.yaml",
        "tests/fixtures/rules/zone-spread/fail-no-zone-constraint.yaml",
        "tests/fixtures/rules/resources/fail-no-cpu-memory.yaml",
    ] {
        let object = first(file);
        let before = h2
            .post("/validate", &review("CREATE", Some(&object), false))
            .await
            .1;
        assert_eq!(before["response"]["allowed"], false, "{file}");

        let (status, body) = h2
            .post("/mutate", &review("CREATE", Some(&object), false))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["response"]["allowed"], true);
        assert_eq!(body["response"]["patchType"], "JSONPatch");
        let ops = decode_patch(&body);
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
        let mut patched = object.clone();
        json_patch::patch(&mut patched, &patch).unwrap();
        let notes = body["response"]["warnings"].as_array().unwrap();
        assert!(notes.iter().all(|n| {
            n.as_str()
                .unwrap()
                .contains("added by the waf-admission mutating webhook")
        }));

        let after = h2
            .post("/validate", &review("CREATE", Some(&patched), false))
            .await
            .1;
        assert_eq!(
            after["response"]["allowed"], true,
            "{file}: {}",
            after["response"]["status"]
        );
    }
}

#[tokio::test]
async fn mutate_of_a_compliant_object_has_no_patch() {
    let (pki, srv) = server();
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let (_, body) = h2
        .post(
            "/mutate",
            &review("CREATE", Some(&first("examples/good/llm-gpu.yaml")), false),
        )
        .await;
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none());
}

#[tokio::test]
async fn dry_run_gets_the_same_answer() {
    let (pki, srv) = server();
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let object = first("examples/bad/zone-spread.yaml");
    let mut real = h2
        .post("/validate", &review("CREATE", Some(&object), false))
        .await
        .1;
    let mut dry = h2
        .post("/validate", &review("CREATE", Some(&object), true))
        .await
        .1;
    real["response"]["uid"] = json!("");
    dry["response"]["uid"] = json!("");
    assert_eq!(real, dry);
}

#[tokio::test]
async fn an_update_that_brings_a_violation_is_denied_and_delete_is_allowed() {
    let (pki, srv) = server();
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let object = first("examples/bad/resources.yaml");
    // The old object had its memory limit at its request.
    let mut old = object.clone();
    let resources = &mut old["spec"]["template"]["spec"]["containers"][0]["resources"];
    resources["limits"]["memory"] = resources["requests"]["memory"].clone();
    let update = h2
        .post("/validate", &update_review(&object, &old, None))
        .await
        .1;
    assert_eq!(update["response"]["allowed"], false);
    assert!(
        update["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("[resources]")
    );
    let delete = h2
        .post("/validate", &review("DELETE", Some(&object), false))
        .await
        .1;
    assert_eq!(delete["response"]["allowed"], true);
}

#[tokio::test]
async fn objects_of_other_kinds_are_allowed() {
    let (pki, srv) = server();
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let mut svc = review("CREATE", None, false);
    svc["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Service"});
    svc["request"]["object"] =
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {}});
    let (status, body) = h2.post("/validate", &svc).await;
    assert_eq!(
        (status, body["response"]["allowed"].clone()),
        (200, json!(true))
    );
}

#[tokio::test]
async fn a_broken_policy_is_refused_at_apply_with_the_engines_words() {
    let (pki, srv) = server();
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let broken = json!({"apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
        "metadata": {"name": "broken"},
        "spec": {"rules": {"imageProvenance": {"allowedRegistries": []}}}});
    let (_, body) = h2
        .post("/validate", &review("CREATE", Some(&broken), false))
        .await;
    assert_eq!(body["response"]["allowed"], false);
    assert_eq!(body["response"]["status"]["code"], 422);
    let msg = body["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(
            "WellArchitectedPolicy broken: spec.rules.imageProvenance.allowedRegistries"
        ),
        "{msg}"
    );
    let strict = first("manifests/policies/strict.yaml");
    let (_, body) = h2
        .post("/validate", &review("CREATE", Some(&strict), false))
        .await;
    assert_eq!(body["response"]["allowed"], true);
}

#[tokio::test]
async fn bad_requests_get_a_4xx_with_a_reason_and_the_server_stays_up() {
    let (pki, srv) = server();
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let deep = format!(
        "{{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{{\"object\":{{\"metadata\":{{}},\"spec\":{}}}}}}}",
        "[".repeat(100_000)
    );
    let mut no_request = review("CREATE", None, false);
    no_request.as_object_mut().unwrap().remove("request");
    let mut wrong_kind = review("CREATE", Some(&first("examples/good/llm-gpu.yaml")), false);
    wrong_kind["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "not JSON",
            b"hello".to_vec(),
            400,
            "body is not an AdmissionReview",
        ),
        ("empty", Vec::new(), 400, "empty body"),
        (
            "invalid UTF-8",
            vec![b'"', 0xff, 0xfe, b'"'],
            400,
            "body is not an AdmissionReview",
        ),
        (
            "deep nesting, never closed",
            deep.into_bytes(),
            400,
            "body is not an AdmissionReview",
        ),
        (
            "wrong apiVersion",
            serde_json::to_vec(&wrong_kind).unwrap(),
            400,
            "expected apiVersion admission.k8s.io/v1",
        ),
        (
            "no request",
            serde_json::to_vec(&no_request).unwrap(),
            400,
            "has no request",
        ),
        (
            "over the limit",
            vec![b' '; 7 * 1024 * 1024],
            413,
            "over the 6 MiB limit",
        ),
    ];
    for (what, body, code, needle) in cases {
        let (status, text) = h2.request("POST", "/validate", body).await;
        let text = String::from_utf8_lossy(&text);
        assert_eq!(status, code, "{what}: {text}");
        assert!(text.contains(needle), "{what}: {text}");
    }
    let (status, text) = h2.request("GET", "/nowhere", Vec::new()).await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&text).contains("POST /validate"));
    let (status, _) = h2.request("GET", "/validate", Vec::new()).await;
    assert_eq!(status, 405);
    // A well-formed review whose object carries a field nested 100,000
    // deep: skipped without recursion (the apiserver prunes unknown fields
    // anyway), and the workload is judged on the fields it has.
    let depth = 100_000;
    let deep_field = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let body = serde_json::to_string(&review(
        "CREATE",
        Some(&first("examples/bad/image-provenance.yaml")),
        false,
    ))
    .unwrap()
    .replacen("\"spec\":{", &format!("\"spec\":{{\"x\":{deep_field},"), 1);
    let (status, text) = h2.request("POST", "/validate", body.into_bytes()).await;
    assert_eq!(status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("[image-provenance]"), "{message}");
    // The same depth where a typed field is expected cannot be judged, and
    // the answer says so instead of overflowing.
    let body = serde_json::to_string(&review(
        "CREATE",
        Some(&first("examples/good/llm-gpu.yaml")),
        false,
    ))
    .unwrap()
    .replacen(
        "\"containers\":[",
        &format!("\"containers\":[{deep_field},"),
        1,
    );
    let (status, text) = h2.request("POST", "/validate", body.into_bytes()).await;
    assert_eq!(status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot judge") && message.contains("recursion limit exceeded"),
        "{message}"
    );
    // Still up, on the same connection and on a new one.
    assert_eq!(h2.request("GET", "/healthz", Vec::new()).await.0, 200);
    let mut fresh = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let ok = fresh
        .post(
            "/validate",
            &review("CREATE", Some(&first("examples/good/llm-gpu.yaml")), false),
        )
        .await;
    assert_eq!(ok.1["response"]["allowed"], true);
}

#[tokio::test]
async fn health_readiness_and_metrics_on_both_listeners() {
    let (pki, srv) = server();
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    assert_eq!(h2.request("GET", "/healthz", Vec::new()).await.0, 200);
    assert_eq!(h2.request("GET", "/readyz", Vec::new()).await.0, 200);
    h2.post(
        "/validate",
        &review(
            "CREATE",
            Some(&first("examples/bad/image-provenance.yaml")),
            false,
        ),
    )
    .await;
    let (status, body) = h2.request("GET", "/metrics", Vec::new()).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains(
            "waf_admission_violations_total{rule=\"image-provenance\",action=\"deny\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains(
        "waf_admission_admission_verdicts_total{endpoint=\"validate\",verdict=\"denied\"} 1"
    ));
    assert!(text.contains(
        "waf_admission_request_duration_seconds_bucket{le=\"0.0001\",endpoint=\"validate\"}"
    ));
    // Plain HTTP metrics listener.
    let out = std::process::Command::new("curl")
        .args(["-s", &format!("http://{}/metrics", srv.metrics_addr)])
        .output();
    if let Ok(out) = out {
        assert!(String::from_utf8_lossy(&out.stdout).contains("waf_admission_http_requests_total"));
    }
}

#[tokio::test]
async fn http1_clients_are_served_too() {
    let (pki, srv) = server();
    let stream = tls_stream(srv.addr, &pki.ca_pem, &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = serde_json::to_vec(&review(
        "CREATE",
        Some(&first("examples/good/llm-gpu.yaml")),
        false,
    ))
    .unwrap();
    let req = hyper::Request::post("/validate")
        .header("host", "localhost")
        .body(http_body_util::Full::new(Bytes::from(body)))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["response"]["allowed"], true);
}

#[tokio::test]
async fn rotated_certificates_are_served_without_dropping_connections() {
    let (pki, srv) = server();
    let rev = review("CREATE", Some(&first("examples/good/llm-gpu.yaml")), false);
    let mut old = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    assert_eq!(old.post("/validate", &rev).await.0, 200);

    // Requests keep flowing on the old connection while the files change.
    let flowing_rev = rev.clone();
    let mut flowing = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let traffic = tokio::spawn(async move {
        let mut ok = 0;
        for _ in 0..200 {
            if flowing.post("/validate", &flowing_rev).await.0 == 200 {
                ok += 1;
            }
        }
        ok
    });

    let (new_ca, new_cert, new_key) = issue("rotated");
    std::fs::write(&pki.cert, &new_cert).unwrap();
    std::fs::write(&pki.key, &new_key).unwrap();

    // The next handshake sees the new pair: a client that trusts only the new CA connects.
    let mut fresh = H2::connect(srv.addr, &new_ca).await.unwrap();
    assert_ne!(fresh.peer_cert, old.peer_cert);
    assert_eq!(fresh.post("/validate", &rev).await.0, 200);
    // ... and a client that trusts only the old CA no longer can.
    assert!(H2::connect(srv.addr, &pki.ca_pem).await.is_err());
    // The old connection was never dropped.
    assert_eq!(old.post("/validate", &rev).await.0, 200);
    assert_eq!(traffic.await.unwrap(), 200);

    // A bad pair (a key that is not the certificate's) is refused; the good one stays.
    let (_, _, stray_key) = issue("stray");
    std::fs::write(&pki.key, &stray_key).unwrap();
    let mut still = H2::connect(srv.addr, &new_ca).await.unwrap();
    assert_eq!(still.post("/validate", &rev).await.0, 200);
    let wait = Duration::from_secs(10);
    assert!(
        srv.logged(
            "new TLS certificate refused; keeping the previous one",
            wait
        ),
        "{}",
        srv.log_lines().join("\n")
    );
    assert!(srv.logged("TLS certificate reloaded", wait));
}

type Chunks = futures::channel::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>;

/// An HTTP/2 connection whose request bodies the test streams by hand.
async fn streaming_connection(
    srv: &Server,
    pki: &Pki,
) -> hyper::client::conn::http2::SendRequest<StreamBody<Chunks>> {
    let stream = tls_stream(srv.addr, &pki.ca_pem, &[b"h2"]).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

#[tokio::test]
async fn the_apiservers_timeout_parameter_bounds_a_stalled_request() {
    let (pki, srv) = server();
    let mut send = streaming_connection(&srv, &pki).await;
    let (mut tx, rx) = futures::channel::mpsc::channel(4);
    let req = hyper::Request::post("https://localhost/validate?timeout=1s")
        .body(StreamBody::new(rx))
        .unwrap();
    tx.try_send(Ok(Frame::data(Bytes::from_static(b"{\"apiVersion\":"))))
        .unwrap();
    let started = Instant::now();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 504);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    drop(tx);
}

#[tokio::test]
async fn sigterm_finishes_requests_in_flight_then_exits_cleanly() {
    let (pki, mut srv) = server();
    let body = serde_json::to_vec(&review(
        "CREATE",
        Some(&first("examples/good/llm-gpu.yaml")),
        false,
    ))
    .unwrap();
    let (head, tail) = body.split_at(body.len() / 2);
    let mut send = streaming_connection(&srv, &pki).await;
    let (mut tx, rx) = futures::channel::mpsc::channel(4);
    let req = hyper::Request::post("https://localhost/validate")
        .body(StreamBody::new(rx))
        .unwrap();
    tx.try_send(Ok(Frame::data(Bytes::copy_from_slice(head))))
        .unwrap();
    let in_flight = tokio::spawn(send.send_request(req));

    // Wait until the server has the request, then ask it to stop.
    let deadline = Instant::now() + Duration::from_secs(10);
    srv.terminate();
    while !srv.log_lines().iter().any(|l| l.contains("shutting down")) {
        assert!(Instant::now() < deadline, "no shutdown log line");
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(5));
    }
    // No new connections once shutdown began.
    assert!(H2::connect(srv.addr, &pki.ca_pem).await.is_err());
    // The request in flight completes.
    tx.try_send(Ok(Frame::data(Bytes::copy_from_slice(tail))))
        .unwrap();
    drop(tx);
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    let status = srv.wait();
    assert!(status.success(), "{status:?}");
}

/// Issue 25: the webhook denies a model server that cannot load its model,
/// with the numbers, on vLLM, TGI, SGLang and KServe's server alike, and
/// admits the same models where they fit.
#[tokio::test]
async fn a_model_that_cannot_load_is_denied_with_its_numbers_and_one_that_fits_is_admitted() {
    install_crypto();
    let pki = Pki::new("webhook-model-fit");
    let srv = Server::start(
        &pki,
        &["--policy", "tests/fixtures/rules/model-fit/policy.yaml"],
    );
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let dir = "tests/fixtures/rules/model-fit";
    for (file, numbers) in [
        ("fail-70b-bf16-on-one-a100.yaml", "about 130.4 GiB"),
        (
            "fail-tgi-70b-on-one-a100.yaml",
            "gives 80.0 GiB each at --cuda-memory-fraction 1",
        ),
        (
            "fail-sglang-70b-on-one-a100.yaml",
            "even if the server took all of it",
        ),
        (
            "fail-kserve-70b-on-one-a100.yaml",
            "gives 73.6 GiB each at --gpu-memory-utilization 0.92",
        ),
        (
            "fail-8b-full-context-on-a10.yaml",
            "needs 16.0 GiB on its GPU",
        ),
        (
            "fail-tensor-parallel-above-gpus.yaml",
            "runs vLLM over 4 GPUs",
        ),
        (
            "fail-8b-on-mig-1g-10gb.yaml",
            "(MIG nvidia.com/mig-1g.10gb)",
        ),
    ] {
        let rev = review("CREATE", Some(&first(&format!("{dir}/{file}"))), false);
        let (_, body) = h2.post("/validate", &rev).await;
        let r = &body["response"];
        assert_eq!(r["allowed"], false, "{file}: {body}");
        // The denial wraps at 100 characters: read it as one line.
        let message = r["status"]["message"].as_str().unwrap();
        let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            message.contains("[model-fit] (Performance Efficiency)"),
            "{file}: {message}"
        );
        assert!(message.contains(numbers), "{file}: {message}");
    }
    for file in [
        "pass-70b-tensor-parallel-4.yaml",
        "pass-70b-fp8-short-context-on-h100.yaml",
        "pass-8b-short-context-on-a10.yaml",
        "pass-8b-on-mig-3g-40gb.yaml",
        "pass-sglang-70b-tp4.yaml",
        "pass-unknown-model.yaml",
    ] {
        let rev = review("CREATE", Some(&first(&format!("{dir}/{file}"))), false);
        let (_, body) = h2.post("/validate", &rev).await;
        assert_eq!(body["response"]["allowed"], true, "{file}: {body}");
    }
}
