//! Test harness for the webhook: certificates from rcgen, the real binary
//! on a loopback port, and an HTTP/2 client over rustls like the apiserver's.
#![allow(dead_code)] // each test file uses part of the harness

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A CA and a serving certificate it signed, written to a temp folder.
#[derive(Clone)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("waf-{tag}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A new CA with a leaf for localhost: returns (ca pem, leaf cert pem, leaf key pem).
pub fn issue(common_name: &str) -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{common_name} CA"));
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    (ca_cert.pem(), leaf.pem(), leaf_key.serialize_pem())
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        let dir = temp_dir(tag);
        let (ca_pem, cert_pem, key_pem) = issue("waf-admission test");
        let cert = dir.join("tls.crt");
        let key = dir.join("tls.key");
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        Pki {
            dir,
            ca_pem,
            cert,
            key,
        }
    }
}

/// The real binary, serving on loopback ports it picked itself.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `waf-admission serve` and returns once it logged that both
    /// listeners are bound: that log line is the readiness signal.
    pub fn start(pki: &Pki, extra: &[&str]) -> Server {
        Self::start_wrapped(pki, &[], extra)
    }

    /// [`Server::start`] under a wrapper command that execs the binary
    /// (`prlimit --nofile=64:64`), so the pid is still the server's.
    pub fn start_wrapped(pki: &Pki, wrapper: &[&str], extra: &[&str]) -> Server {
        Self::start_at(pki, wrapper, "127.0.0.1:0", extra)
    }

    /// [`Server::start_wrapped`] on a given webhook address (a replica
    /// behind a load balancer that knows its port).
    pub fn start_at(pki: &Pki, wrapper: &[&str], addr: &str, extra: &[&str]) -> Server {
        // WAF_BINARY: an optimised build to run instead of the test
        // profile's (the fault suite's timing bounds are for that).
        let built = env!("CARGO_BIN_EXE_waf-admission").to_owned();
        let binary = std::env::var("WAF_BINARY").unwrap_or(built);
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        let mut child = command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["serve", "--log-format", "json", "--addr", addr])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(&pki.cert)
            .arg("--tls-key")
            .arg(&pki.key)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<(String, SocketAddr)>();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && let (Some(msg), Some(addr)) = (v["message"].as_str(), v["addr"].as_str())
                    && msg.ends_with("listening")
                {
                    let _ = tx.send((msg.to_owned(), addr.parse().unwrap()));
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut addr = None;
        let mut metrics_addr = None;
        while addr.is_none() || metrics_addr.is_none() {
            let (what, a) = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("server did not report its listeners");
            if what.starts_with("webhook") {
                addr = Some(a);
            } else {
                metrics_addr = Some(a);
            }
        }
        Server {
            child,
            addr: addr.unwrap(),
            metrics_addr: metrics_addr.unwrap(),
            logs,
        }
    }

    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Whether a log line containing `needle` arrives within `timeout`: the
    /// log is read from the child's stdout by a thread, a little behind.
    pub fn logged(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.log_lines().iter().any(|l| l.contains(needle)) {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/2 connection over TLS, kept open like the apiserver's.
pub struct H2 {
    pub send: http2::SendRequest<Full<Bytes>>,
    pub peer_cert: CertificateDer<'static>,
    pub alpn: Option<Vec<u8>>,
}

pub async fn tls_stream(
    addr: SocketAddr,
    ca_pem: &str,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, std::io::Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tls_over(tcp, ca_pem, alpn).await
}

/// A TCP connection to `addr` from `from` (any port): on Linux all of
/// 127.0.0.0/8 is loopback, so a test can be a second client address.
pub async fn tcp_from(
    from: std::net::IpAddr,
    addr: SocketAddr,
) -> Result<tokio::net::TcpStream, std::io::Error> {
    let socket = match from {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr).await
}

/// The client side of TLS over `tcp`, trusting `ca_pem`, for localhost.
pub async fn tls_over(
    tcp: tokio::net::TcpStream,
    ca_pem: &str,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // As the apiserver's Go client: without it, Nagle holds a request's
    // DATA frame behind its HEADERS until the delayed ACK (40 ms).
    tcp.set_nodelay(true)?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

impl H2 {
    pub async fn connect(addr: SocketAddr, ca_pem: &str) -> Result<H2, std::io::Error> {
        let stream = tls_stream(addr, ca_pem, &[b"h2"]).await?;
        let (_, session) = stream.get_ref();
        let peer_cert = session.peer_certificates().unwrap()[0].clone().into_owned();
        let alpn = session.alpn_protocol().map(|p| p.to_vec());
        let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(H2 {
            send,
            peer_cert,
            alpn,
        })
    }

    pub async fn request(&mut self, method: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        self.send.ready().await.unwrap();
        let resp = self.send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, body)
    }

    pub async fn post(&mut self, path: &str, review: &Value) -> (u16, Value) {
        let (status, body) = self
            .request("POST", path, serde_json::to_vec(review).unwrap())
            .await;
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        (status, value)
    }
}

/// An AdmissionReview as the apiserver sends it.
pub fn review(operation: &str, object: Option<&Value>, dry_run: bool) -> Value {
    let kind = object
        .and_then(|o| o["kind"].as_str())
        .unwrap_or("Deployment");
    let (group, resource) = match kind {
        "Pod" => ("", "pods"),
        "ReplicationController" => ("", "replicationcontrollers"),
        "StatefulSet" => ("apps", "statefulsets"),
        "DaemonSet" => ("apps", "daemonsets"),
        "ReplicaSet" => ("apps", "replicasets"),
        "Job" => ("batch", "jobs"),
        "CronJob" => ("batch", "cronjobs"),
        "HorizontalPodAutoscaler" => ("autoscaling", "horizontalpodautoscalers"),
        "WellArchitectedPolicy" => ("waf-admission.dev", "wellarchitectedpolicies"),
        "WellArchitectedException" => ("waf-admission.dev", "wellarchitectedexceptions"),
        "InferenceService" => ("serving.kserve.io", "inferenceservices"),
        "LLMInferenceService" => ("serving.kserve.io", "llminferenceservices"),
        "ServingRuntime" => ("serving.kserve.io", "servingruntimes"),
        "LeaderWorkerSet" => ("leaderworkerset.x-k8s.io", "leaderworkersets"),
        "Workspace" => ("kaito.sh", "workspaces"),
        "InferenceSet" => ("kaito.sh", "inferencesets"),
        _ => ("apps", "deployments"),
    };
    // The object's own version where it names one in that group.
    let own_version = object
        .and_then(|o| o["apiVersion"].as_str())
        .and_then(|v| v.split_once('/'))
        .filter(|(g, _)| *g == group)
        .map(|(_, v)| v);
    let version = match (own_version, group) {
        (Some(v), _) => v,
        (None, "waf-admission.dev") => "v1alpha1",
        (None, "autoscaling") => "v2",
        _ => "v1",
    };
    let name = object
        .and_then(|o| o["metadata"]["name"].as_str())
        .unwrap_or("llm");
    let namespace = object.and_then(|o| o["metadata"]["namespace"].as_str());
    let options_kind = match operation {
        "CREATE" => "CreateOptions",
        "UPDATE" => "UpdateOptions",
        _ => "DeleteOptions",
    };
    let mut request = json!({
        "uid": format!("{:x}", rand_u64()),
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "requestResource": {"group": group, "version": version, "resource": resource},
        "name": name,
        "operation": operation,
        "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
        "object": if operation == "DELETE" { Value::Null } else { object.cloned().unwrap_or(Value::Null) },
        "oldObject": if operation == "CREATE" { Value::Null } else { object.cloned().unwrap_or(Value::Null) },
        "dryRun": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": options_kind},
    });
    if let Some(ns) = namespace {
        request["namespace"] = json!(ns);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

/// An UPDATE review with its own old object, to a subresource if given
/// (`pods/ephemeralcontainers` for `kubectl debug`).
pub fn update_review(object: &Value, old: &Value, sub_resource: Option<&str>) -> Value {
    let mut r = review("UPDATE", Some(object), false);
    r["request"]["oldObject"] = old.clone();
    if let Some(sub) = sub_resource {
        r["request"]["subResource"] = json!(sub);
        r["request"]["requestSubResource"] = json!(sub);
    }
    r
}

/// The review as sent for another requester: a core controller's service
/// account (`system:serviceaccount:kube-system:replicaset-controller`) or a
/// user.
pub fn as_user(mut review: Value, username: &str) -> Value {
    review["request"]["userInfo"] = json!({"username": username,
        "groups": ["system:serviceaccounts", "system:authenticated"]});
    review
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

pub fn yaml_file(path: &str) -> Vec<Value> {
    use serde::Deserialize;
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = std::fs::read_to_string(p).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect()
}

pub fn decode_patch(response: &Value) -> Vec<Value> {
    use base64::Engine;
    let b64 = response["response"]["patch"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}
