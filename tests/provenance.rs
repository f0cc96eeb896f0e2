//! Image provenance against real parts on loopback: Debian's
//! docker-registry, images pushed by buildah and skopeo, models by oras,
//! signatures made by the real cosign CLI in both layouts
//! (tests/provenance/seed.sh, which checks each case with `cosign verify`
//! first). The webhook's router judges in-process with a real registry
//! client; patches are applied by kubectl. Registry failures are provoked
//! with a loopback server that answers 401, 404, 500, slowly, or too much.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use waf_admission::PolicySet;
use waf_admission::policy::compiled::Policy;
use waf_admission::policy::{RuleId, WellArchitectedPolicy};
use waf_admission::provenance::registry::{Registry, RegistryConfig};
use waf_admission::state::State;
use waf_admission::webhook::{self, App, metrics::Metrics};

/// The suite's digest TTL: long enough for a skopeo copy in between.
const DIGEST_TTL: Duration = Duration::from_secs(6);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn script(name: &str, args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(root().join("tests/provenance").join(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("bash {name}: {e}"));
    assert!(
        out.status.success(),
        "tests/provenance/{name} {args:?} failed (it names any missing tool):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().last().unwrap_or_default().trim().to_owned()
}

/// A policy document that judges only image-provenance, with `settings`.
fn policy_document(settings: Value) -> Value {
    let camel = |id: &str| {
        let mut out = String::new();
        let mut up = false;
        for c in id.chars() {
            if c == '-' {
                up = true;
            } else if up {
                out.push(c.to_ascii_uppercase());
                up = false;
            } else {
                out.push(c);
            }
        }
        out
    };
    let mut rules = serde_json::Map::new();
    for id in RuleId::ALL {
        rules.insert(camel(id.as_str()), json!({"action": "Off"}));
    }
    let mut ip = settings;
    ip["action"] = json!("Deny");
    rules.insert("imageProvenance".into(), ip);
    json!({
        "apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
        "metadata": {"name": "provenance"},
        "spec": {"match": {"workloads": "All"}, "action": "Deny", "rules": rules}})
}

/// [`policy_document`], compiled.
fn policy(settings: Value) -> PolicySet {
    let p: WellArchitectedPolicy =
        serde_json::from_value(policy_document(settings)).expect("policy reads");
    PolicySet::new(vec![Policy::compile(&p).expect("policy compiles")])
}

fn router(set: PolicySet, config: RegistryConfig) -> axum::Router {
    webhook::router(Arc::new(App {
        state: Arc::new(State::standalone(set)),
        metrics: Arc::new(Metrics::new()),
        registry: Some(Registry::new(config).expect("registry client")),
    }))
}

fn deployment(image: &str, volume: Option<&str>) -> Value {
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "llm", "namespace": "ml"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "llm"}},
            "template": {"metadata": {"labels": {"app": "llm"}},
                "spec": {"containers": [{"name": "llm", "image": image}]}}}});
    if let Some(model) = volume {
        d["spec"]["template"]["spec"]["volumes"] = json!([{"name": "weights", "image": {"reference": model, "pullPolicy": "IfNotPresent"}}]);
        d["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "weights", "mountPath": "/models"}]);
    }
    d
}

async fn call(router: &axum::Router, path: &str, object: &Value) -> Value {
    let review = common::review("CREATE", Some(object), false);
    let req = axum::http::Request::builder()
        .method("POST")
        .uri(format!("{path}?timeout=10s"))
        .body(Body::from(serde_json::to_vec(&review).unwrap()))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{path}");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// The denial message, its 100-column wrapping undone.
fn message(response: &Value) -> String {
    response["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn warnings(response: &Value) -> String {
    response["response"]["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Applies the mutating webhook's patch with kubectl's own JSON Patch code.
fn kubectl_patch(object: &Value, patch: &[Value], dir: &Path) -> Value {
    let file = dir.join("object.json");
    std::fs::write(&file, serde_json::to_vec(object).unwrap()).unwrap();
    let out = Command::new("kubectl")
        .args(["patch", "--local", "-f"])
        .arg(&file)
        .args([
            "--type=json",
            "-p",
            &serde_json::to_string(patch).unwrap(),
            "-o",
            "json",
        ])
        .output()
        .expect("kubectl is required (apt-get install kubernetes-client; .ci/run installs it)");
    assert!(
        out.status.success(),
        "kubectl patch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

struct Registryd {
    dir: PathBuf,
}

impl Drop for Registryd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(root().join("tests/provenance/registry.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_cosign_signatures_and_registry_digests_decide_admission() {
    common::install_crypto();
    let tmp = common::temp_dir("provenance");
    let reg_dir = tmp.join("registry");
    let registry_line = script("registry.sh", &["start", reg_dir.to_str().unwrap()]);
    let _registry = Registryd {
        dir: reg_dir.clone(),
    };
    let reg = registry_line
        .strip_prefix("REGISTRY=")
        .expect("registry.sh prints REGISTRY=host:port")
        .to_owned();
    let seed = tmp.join("seed");
    let cases_path = script("seed.sh", &[&reg, seed.to_str().unwrap()]);
    let cases: Value = serde_json::from_slice(&std::fs::read(&cases_path).unwrap()).unwrap();
    let trusted = std::fs::read_to_string(seed.join("trusted.pub")).unwrap();
    let settings = json!({
        "allowedRegistries": [reg], "requireDigest": true, "resolveDigests": true,
        "signatures": {"keys": [{"name": "release", "pem": trusted}]}});
    let set = policy(settings.clone());
    let config = RegistryConfig {
        plain_http: vec![reg.clone()],
        timeout: Duration::from_secs(5),
        digest_ttl: DIGEST_TTL,
        ..RegistryConfig::default()
    };
    let router = router(set.clone(), config.clone());
    let signed_server = cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tag"] == "legacy-signed")
        .expect("a legacy-signed case");
    let server_pinned = format!(
        "{}@{}",
        signed_server["reference"].as_str().unwrap(),
        signed_server["digest"].as_str().unwrap()
    );

    let mut checked = 0;
    for case in cases["cases"].as_array().unwrap() {
        let reference = case["reference"].as_str().unwrap();
        let digest = case["digest"].as_str().unwrap();
        let model = case["kind"] == "model";
        let object = if model {
            deployment(&server_pinned, Some(reference))
        } else {
            deployment(reference, None)
        };
        let started = Instant::now();
        let mutated = call(&router, "/mutate", &object).await;
        let cold = started.elapsed();
        let patch = common::decode_patch(&mutated);
        let pinned = kubectl_patch(&object, &patch, &tmp);
        let field = if model {
            &pinned["spec"]["template"]["spec"]["volumes"][0]["image"]["reference"]
        } else {
            &pinned["spec"]["template"]["spec"]["containers"][0]["image"]
        };
        // The digest the registry answered is the one skopeo read.
        assert_eq!(
            field.as_str().unwrap(),
            format!("{reference}@{digest}"),
            "{reference}: the pin applied by kubectl"
        );
        let started = Instant::now();
        let validated = call(&router, "/validate", &pinned).await;
        let warm = started.elapsed();
        let allowed = validated["response"]["allowed"].as_bool().unwrap();
        let text = message(&validated);
        let tag = case["tag"].as_str().unwrap();
        eprintln!("{reference}: mutate {cold:?} (cold), validate {warm:?} (cached): {text}");
        match case["expect"].as_str().unwrap() {
            "admit" => assert!(
                allowed,
                "{reference} ({}) must be admitted: {text}",
                case["reason"]
            ),
            _ => {
                assert!(!allowed, "{reference} ({}) must be denied", case["reason"]);
                let who = if model {
                    "volume \"weights\""
                } else {
                    "container \"llm\""
                };
                assert!(text.contains(who), "{reference}: {text}");
                let why = if tag.contains("unsigned") {
                    "has no cosign signature"
                } else if tag.starts_with("wrong-digest") {
                    "its signature is for sha256:"
                } else {
                    "verifies with the trusted keys (release (sha256:"
                };
                assert!(
                    text.contains(why),
                    "{reference}: expected {why:?} in {text}"
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} cases seeded");

    // Cold latencies, for docs/benchmarks.md: a fresh client (no cache,
    // no token, no connection) resolving one tag and verifying each layout.
    let keys = set.policies()[0]
        .rules
        .image_provenance
        .as_ref()
        .and_then(|r| r.settings.fixed_keys())
        .unwrap();
    for tag in ["legacy-signed", "bundle-signed"] {
        let cold = Registry::new(config.clone()).expect("registry client");
        let image =
            waf_admission::image::ImageRef::parse(&format!("{reg}/serving/vllm:{tag}")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let started = Instant::now();
        let digest = cold
            .digest(&image, &Default::default(), deadline)
            .await
            .unwrap();
        let resolved = started.elapsed();
        let started = Instant::now();
        let verdict = cold
            .verify(&image, &digest, &keys, &Default::default(), deadline)
            .await
            .unwrap();
        let verified = started.elapsed();
        let started = Instant::now();
        cold.verify(&image, &digest, &keys, &Default::default(), deadline)
            .await
            .unwrap();
        let cached = started.elapsed();
        assert!(
            matches!(verdict, waf_admission::provenance::Signed::Verified { .. }),
            "{verdict:?}"
        );
        eprintln!(
            "cold {tag}: resolution {resolved:?}, verification {verified:?}, cached verification {cached:?}"
        );
    }

    // A tag moved after its digest was cached: the cache answers the old
    // digest until the TTL (DIGEST_TTL here, --digest-ttl) runs out, then the new.
    let repo = format!("{reg}/serving/vllm");
    let copy = |from: &str, to: &str| {
        let st = Command::new("skopeo")
            .args([
                "copy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "--quiet",
            ])
            .arg(format!("docker://{repo}:{from}"))
            .arg(format!("docker://{repo}:{to}"))
            .status()
            .expect("skopeo is required");
        assert!(st.success(), "skopeo copy {from} {to}");
    };
    copy("legacy-signed", "moving");
    let object = deployment(&format!("{repo}:moving"), None);
    let pinned_to = |r: &Value| {
        let patch = common::decode_patch(r);
        patch[0]["value"].as_str().unwrap().to_owned()
    };
    let cached_at = Instant::now();
    let first = pinned_to(&call(&router, "/mutate", &object).await);
    assert!(
        first.ends_with(&digest_of(&cases, "legacy-signed")),
        "{first}"
    );
    copy("unsigned", "moving");
    let still = pinned_to(&call(&router, "/mutate", &object).await);
    assert!(
        cached_at.elapsed() < DIGEST_TTL,
        "the copy took longer than the TTL; raise DIGEST_TTL"
    );
    assert!(
        still.ends_with(&digest_of(&cases, "legacy-signed")),
        "within the TTL: {still}"
    );
    // The TTL is the only signal that exists here: wait it out.
    tokio::time::sleep(DIGEST_TTL.saturating_sub(cached_at.elapsed()) + Duration::from_millis(300))
        .await;
    let moved = pinned_to(&call(&router, "/mutate", &object).await);
    assert!(
        moved.ends_with(&digest_of(&cases, "unsigned")),
        "after the TTL: {moved}"
    );

    // `check --resolve-digests` asks the same registry; without the flag
    // it never does, and says what it did not check.
    let dir = tmp.join("check");
    std::fs::create_dir_all(&dir).unwrap();
    let policy_file = dir.join("policy.yaml");
    std::fs::write(
        &policy_file,
        serde_json::to_vec(&policy_document(settings)).unwrap(),
    )
    .unwrap();
    let workloads = dir.join("workloads.yaml");
    let mut unsigned = deployment(&format!("{repo}:unsigned"), None);
    unsigned["metadata"]["name"] = json!("unsigned");
    let docs = [deployment(&format!("{repo}:legacy-signed"), None), unsigned];
    let text: Vec<String> = docs
        .iter()
        .map(|d| serde_yaml_ng::to_string(d).unwrap())
        .collect();
    std::fs::write(&workloads, text.join("---\n")).unwrap();
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_waf-admission"))
            .arg("check")
            .arg("--policy")
            .arg(&policy_file)
            .args(extra)
            .args(["-o", "json"])
            .arg(&workloads)
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "check -o json: {e}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    };
    let online = run(&["--resolve-digests", "--registry-plain-http", &reg]);
    let text = online.to_string();
    assert!(text.contains("has no cosign signature"), "{text}");
    let verdicts: Vec<(String, bool)> = online["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_owned(),
                r["allowed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        vec![("llm".into(), true), ("unsigned".into(), false)],
        "{text}"
    );
    let offline = run(&[]).to_string();
    assert!(offline.contains("check runs offline"), "{offline}");
    assert!(!offline.contains("cannot reach"), "{offline}");

    // The same storage behind two more front doors: HTTPS with a private
    // CA, and Basic credentials (seeding once: seed.sh's local images have
    // fixed names, so two seeds cannot run side by side).
    let storage = reg_dir.join("storage");
    behind_a_private_ca(&tmp, &storage, &cases, &trusted).await;
    behind_htpasswd(&tmp, &storage, &cases, &trusted).await;
}

/// A seeded case's digest, by tag.
fn digest_of(cases: &Value, tag: &str) -> String {
    cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tag"] == tag)
        .and_then(|c| c["digest"].as_str())
        .unwrap_or_else(|| panic!("no seeded case {tag}"))
        .to_owned()
}

/// `registry.sh start <dir> <options>`, stopped when dropped; its host:port.
fn another_registry(dir: &Path, options: &[&str]) -> (Registryd, String) {
    let mut args = vec!["start", dir.to_str().unwrap()];
    args.extend(options);
    let line = script("registry.sh", &args);
    let host = line
        .strip_prefix("REGISTRY=")
        .expect("registry.sh prints REGISTRY=host:port")
        .to_owned();
    (
        Registryd {
            dir: dir.to_owned(),
        },
        host,
    )
}

/// A policy file pinning and verifying images from `host` with `trusted`.
fn policy_file(dir: &Path, host: &str, trusted: &str) -> PathBuf {
    let path = dir.join("policy.yaml");
    let doc = policy_document(json!({"allowedRegistries": [host], "resolveDigests": true,
        "signatures": {"keys": [{"name": "release", "pem": trusted}]}}));
    // JSON, which is YAML: YAML 1.1 readers take a bare `Off` for false.
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    path
}

/// The seeded images over HTTPS with a CA of our own: `--registry-ca`
/// makes the digest resolve and the cosign signatures verify through it;
/// without it the lookup fails, and the denial names the certificate.
async fn behind_a_private_ca(tmp: &Path, storage: &Path, cases: &Value, trusted: &str) {
    let dir = tmp.join("private-ca");
    std::fs::create_dir_all(&dir).unwrap();
    let (ca_pem, cert_pem, key_pem) = common::issue("private registry");
    let (ca, cert, key) = (dir.join("ca.pem"), dir.join("tls.crt"), dir.join("tls.key"));
    // A bundle of two CAs, ours second: every certificate in it counts.
    let (unrelated, _, _) = common::issue("unrelated");
    std::fs::write(&ca, format!("{unrelated}{ca_pem}")).unwrap();
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let (_registry, host) = another_registry(
        &dir.join("registry"),
        &[
            "--storage",
            storage.to_str().unwrap(),
            "--tls",
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
        ],
    );
    let set = policy(json!({"allowedRegistries": [host], "resolveDigests": true,
        "signatures": {"keys": [{"name": "release", "pem": trusted}]}}));
    let trusting = router(
        set.clone(),
        RegistryConfig {
            extra_roots: waf_admission::provenance::registry::read_ca_bundle(&ca).unwrap(),
            timeout: Duration::from_secs(5),
            ..RegistryConfig::default()
        },
    );
    for tag in ["legacy-signed", "bundle-signed", "unsigned"] {
        let image = format!("{host}/serving/vllm:{tag}");
        let pinned = format!("{image}@{}", digest_of(cases, tag));
        let m = call(&trusting, "/mutate", &deployment(&image, None)).await;
        assert_eq!(
            common::decode_patch(&m)[0]["value"],
            json!(pinned),
            "{tag}: pinned through the private CA"
        );
        let v = call(&trusting, "/validate", &deployment(&pinned, None)).await;
        signed_ones_verify(tag, &v, "through the private CA");
    }
    let untrusting = router(
        set,
        RegistryConfig {
            timeout: Duration::from_secs(5),
            ..RegistryConfig::default()
        },
    );
    let image = format!("{host}/serving/vllm:legacy-signed");
    let v = call(&untrusting, "/validate", &deployment(&image, None)).await;
    let text = message(&v);
    assert_eq!(v["response"]["allowed"], json!(false), "{text}");
    assert!(
        text.contains(&format!(
            "the digest lookup failed, so it cannot be pinned or verified: cannot reach {host}: "
        )) && text.contains("invalid peer certificate: UnknownIssuer"),
        "the TLS failure, named: {text}"
    );

    // The flag itself, through the binary (check --resolve-digests shares
    // serve's registry flags).
    let policy = policy_file(&dir, &host, trusted);
    let workload = dir.join("workload.yaml");
    std::fs::write(
        &workload,
        serde_yaml_ng::to_string(&deployment(&image, None)).unwrap(),
    )
    .unwrap();
    let check = |extra: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_waf-admission"))
            .args(["check", "--resolve-digests", "-o", "json", "--policy"])
            .arg(&policy)
            .args(extra)
            .arg(&workload)
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("check: {e}: {}", String::from_utf8_lossy(&out.stderr)))
    };
    let with_ca = check(&["--registry-ca".as_ref(), ca.as_os_str()]);
    assert_eq!(with_ca["results"][0]["allowed"], json!(true), "{with_ca}");
    let without = check(&[]);
    assert_eq!(without["results"][0]["allowed"], json!(false), "{without}");
    assert!(
        without
            .to_string()
            .contains("invalid peer certificate: UnknownIssuer"),
        "{without}"
    );
}

/// The seeded images behind htpasswd: standalone `serve` logs in with
/// `--registry-credentials` (a Docker config.json), for the digest and for
/// every signature read; without it the registry refuses the lookup.
async fn behind_htpasswd(tmp: &Path, storage: &Path, cases: &Value, trusted: &str) {
    use base64::Engine;
    let dir = tmp.join("htpasswd");
    std::fs::create_dir_all(&dir).unwrap();
    let (_registry, host) = another_registry(
        &dir.join("registry"),
        &[
            "--storage",
            storage.to_str().unwrap(),
            "--htpasswd",
            "puller",
            "s3cret",
        ],
    );
    let policy = policy_file(&dir, &host, trusted);
    let credentials = dir.join("config.json");
    let auth = base64::engine::general_purpose::STANDARD.encode("puller:s3cret");
    std::fs::write(
        &credentials,
        json!({"auths": {format!("http://{host}"): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let pki = common::Pki::new("serve-credentials");
    let serve = |extra: &[&str]| {
        let mut args = vec![
            "--policy",
            policy.to_str().unwrap(),
            "--registry-plain-http",
        ];
        args.push(&host);
        args.extend(extra);
        common::Server::start(&pki, &args)
    };
    let srv = serve(&["--registry-credentials", credentials.to_str().unwrap()]);
    let mut h2 = common::H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    for tag in ["bundle-signed", "unsigned"] {
        let image = format!("{host}/serving/vllm:{tag}");
        let pinned = format!("{image}@{}", digest_of(cases, tag));
        let review = common::review("CREATE", Some(&deployment(&image, None)), false);
        let (status, m) = h2.post("/mutate", &review).await;
        assert_eq!(status, 200);
        assert_eq!(
            common::decode_patch(&m)[0]["value"],
            json!(pinned),
            "{tag}: pinned with the credentials: {m}"
        );
        let review = common::review("CREATE", Some(&deployment(&pinned, None)), false);
        let (_, v) = h2.post("/validate", &review).await;
        signed_ones_verify(tag, &v, "with the credentials");
    }
    drop(srv);
    let srv = serve(&[]);
    let mut h2 = common::H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let image = format!("{host}/serving/vllm:bundle-signed");
    let review = common::review("CREATE", Some(&deployment(&image, None)), false);
    let (_, v) = h2.post("/validate", &review).await;
    assert_eq!(v["response"]["allowed"], json!(false), "{v}");
    assert!(
        message(&v).contains(&format!(
            "{host} refused the credentials (401 Unauthorized)"
        )),
        "{}",
        message(&v)
    );
}

/// A registry that answers every request the same bad way.
async fn bad_registry(answer: &'static str) -> SocketAddr {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let digest = format!("sha256:{}", "ab".repeat(32));
    let app = axum::Router::new().fallback(move |req: axum::http::Request<Body>| {
        let digest = digest.clone();
        async move {
            let path = req.uri().path().to_owned();
            match answer {
                "401" => StatusCode::UNAUTHORIZED.into_response(),
                "404" => (
                    StatusCode::NOT_FOUND,
                    r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
                )
                    .into_response(),
                "500" => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    StatusCode::OK.into_response()
                }
                // The tag resolves; the signature manifest is 5 MiB.
                "huge" if path.ends_with("/manifests/v1") || path == "/v2/" => {
                    let mut h = HeaderMap::new();
                    h.insert("Docker-Content-Digest", digest.parse().unwrap());
                    h.insert(
                        "Content-Type",
                        "application/vnd.oci.image.manifest.v1+json"
                            .parse()
                            .unwrap(),
                    );
                    (StatusCode::OK, h, "").into_response()
                }
                "huge" => {
                    let mut h = HeaderMap::new();
                    h.insert(
                        "Content-Type",
                        "application/vnd.oci.image.manifest.v1+json"
                            .parse()
                            .unwrap(),
                    );
                    let mut body =
                        String::from(r#"{"schemaVersion":2,"layers":[],"annotations":{"x":""#);
                    body.push_str(&"a".repeat(5 << 20));
                    body.push_str(r#""}}"#);
                    (StatusCode::OK, h, body).into_response()
                }
                _ => StatusCode::IM_A_TEAPOT.into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_registry_failure_is_answered_in_bounded_time_as_the_policy_says() {
    common::install_crypto();
    // A port nothing listens on: the registry is down.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let timeout = Duration::from_millis(800);
    for (answer, expected) in [
        ("down", "cannot reach"),
        ("401", "refused the credentials (401 Unauthorized)"),
        ("404", "is not in the registry (404)"),
        ("500", "answered HTTP 500"),
        ("slow", "did not answer within"),
        ("huge", "over the 4194304-byte bound"),
    ] {
        let addr = if answer == "down" {
            down
        } else {
            bad_registry(answer).await
        };
        let host = addr.to_string();
        for on_error in ["Deny", "Allow"] {
            let mut settings = json!({"allowedRegistries": [host], "resolveDigests": true,
                "onRegistryError": on_error});
            if answer == "huge" {
                // Pinned already: the signature lookup meets the manifest.
                settings["signatures"] = json!({"keys": [{"pem": test_key()}]});
            }
            let set = policy(settings);
            let router = router(
                set,
                RegistryConfig {
                    plain_http: vec![host.clone()],
                    timeout,
                    ..RegistryConfig::default()
                },
            );
            let image = if answer == "huge" {
                format!("{host}/serving/vllm:v1@sha256:{}", "ab".repeat(32))
            } else {
                format!("{host}/serving/vllm:v1")
            };
            let started = Instant::now();
            let r = call(&router, "/validate", &deployment(&image, None)).await;
            let took = started.elapsed();
            assert!(
                took < timeout + Duration::from_millis(700),
                "{answer}: answered in {took:?}, past the {timeout:?} bound"
            );
            let allowed = r["response"]["allowed"].as_bool().unwrap();
            let said = format!("{} {}", message(&r), warnings(&r));
            assert!(
                said.contains(expected),
                "{answer}/{on_error}: expected {expected:?} in {said}"
            );
            // A tag the registry could not pin is judged on the failure,
            // never as "not pinned" (resolveDigests makes pinning the
            // webhook's job, and requireDigest is on here by default).
            let tag_failed = answer != "huge";
            if tag_failed {
                assert!(
                    !said.contains("not pinned by digest"),
                    "{answer}/{on_error}: {said}"
                );
            }
            match on_error {
                "Deny" => {
                    assert!(!allowed, "{answer}: onRegistryError Deny must deny: {said}");
                    if tag_failed {
                        assert!(
                            message(&r).contains(&format!(
                                "image \"{image}\": the digest lookup failed, so it cannot be pinned: "
                            )),
                            "{answer}: {}",
                            message(&r)
                        );
                    }
                }
                _ => {
                    assert!(
                        allowed,
                        "{answer}: onRegistryError Allow must admit: {said}"
                    );
                    let w = warnings(&r);
                    assert!(w.contains(expected), "{answer}: the warning names it: {w}");
                    if tag_failed {
                        assert!(
                            w.contains(&format!("image \"{image}\" admitted by tag, unpinned")),
                            "{answer}: {w}"
                        );
                    }
                }
            }
            // The mutating webhook admits, patches nothing, and says why.
            let m = call(&router, "/mutate", &deployment(&image, None)).await;
            assert_eq!(
                m["response"]["allowed"],
                json!(true),
                "{answer}/{on_error}: {m}"
            );
            assert!(m["response"]["patch"].is_null(), "{answer}/{on_error}: {m}");
            if tag_failed {
                let w = warnings(&m);
                let outcome = if on_error == "Deny" {
                    "refused: onRegistryError Deny"
                } else {
                    "admitted by tag: onRegistryError Allow"
                };
                assert!(
                    w.contains(&format!(
                        "image \"{image}\" was not pinned ({outcome}): the digest lookup failed: "
                    )) && w.contains(expected),
                    "{answer}/{on_error}: /mutate must say why it did not pin: {w}"
                );
            }
        }
    }
}

/// A P-256 public key nobody signs with.
fn test_key() -> &'static str {
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZo2n56al0yz2J1/jeKuReQiX2CwX\ncO9q10O3PWMdlxEEb97DcL/xSjrVuYZ1RB18lfDVh4fhWiQ8/CK3TSv5zA==\n-----END PUBLIC KEY-----\n"
}

/// A registry that wants Basic credentials `puller:s3cret`.
async fn private_registry() -> SocketAddr {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let app = axum::Router::new().fallback(|req: axum::http::Request<Body>| async move {
        use base64::Engine;
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("puller:s3cret")
        );
        let authorized = req
            .headers()
            .get("authorization")
            .is_some_and(|v| v.to_str().unwrap_or_default() == want);
        if !authorized {
            let mut h = HeaderMap::new();
            h.insert(
                "WWW-Authenticate",
                "Basic realm=\"private\"".parse().unwrap(),
            );
            return (StatusCode::UNAUTHORIZED, h).into_response();
        }
        let mut h = HeaderMap::new();
        h.insert(
            "Docker-Content-Digest",
            format!("sha256:{}", "cd".repeat(32)).parse().unwrap(),
        );
        (StatusCode::OK, h).into_response()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_secret_in_the_controllers_namespace_authenticates_the_lookup() {
    use base64::Engine;
    use std::collections::BTreeMap;
    use waf_admission::context::Context;
    use waf_admission::state::Snapshot;
    common::install_crypto();
    let host = private_registry().await.to_string();
    let set = policy(json!({"allowedRegistries": [host], "resolveDigests": true,
        "pullSecret": "acr-pull"}));
    let config = RegistryConfig {
        plain_http: vec![host.clone()],
        timeout: Duration::from_secs(2),
        ..RegistryConfig::default()
    };
    let image = format!("{host}/private/llm:v1");
    let object = deployment(&image, None);

    // The Secret is not there (not listed, or not created): said so.
    let state = Arc::new(State::standalone(set.clone()));
    let app = |state: Arc<State>| {
        webhook::router(Arc::new(App {
            state,
            metrics: Arc::new(Metrics::new()),
            registry: Some(Registry::new(config.clone()).expect("registry client")),
        }))
    };
    let v = call(&app(state), "/validate", &object).await;
    assert!(
        message(&v).contains("the pull secret \"acr-pull\" is not readable by waf-admission"),
        "{}",
        message(&v)
    );

    // With the dockerconfigjson Secret in the context, the lookup logs in.
    let auth = base64::engine::general_purpose::STANDARD.encode("puller:s3cret");
    let config_json = json!({"auths": {host.clone(): {"auth": auth}}}).to_string();
    let mut ctx = Context::default();
    ctx.add_secret(
        "acr-pull",
        BTreeMap::from([(".dockerconfigjson".to_owned(), config_json.into_bytes())]),
    );
    let state = Arc::new(State::standalone(set.clone()));
    state.store(Snapshot {
        policies: set,
        context: ctx,
    });
    let r = call(&app(state), "/mutate", &object).await;
    let patch = common::decode_patch(&r);
    assert_eq!(
        patch[0]["value"],
        json!(format!("{image}@sha256:{}", "cd".repeat(32))),
        "{r}"
    );
}

/// /validate's answer for a seeded tag reached `how`: the signed ones
/// verify, the unsigned one is denied for its missing signature.
fn signed_ones_verify(tag: &str, v: &Value, how: &str) {
    let allowed = v["response"]["allowed"].as_bool().unwrap();
    if tag == "unsigned" {
        assert!(
            !allowed && message(v).contains("has no cosign signature"),
            "{v}"
        );
    } else {
        assert!(allowed, "{tag}: verified {how}: {}", message(v));
    }
}
