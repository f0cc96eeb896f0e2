//! Load-side parts of the fault suite: an HTTP/2 client pool that tells a
//! request the server never processed (safe to send again, as the
//! apiserver's Go client does) from one that failed, an open-loop load
//! generator and a probe that count every request, and the server's
//! resident memory and open descriptors from /proc.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::common;

/// The review `kubectl apply` sends for a GPU Deployment (managedFields,
/// the last-applied annotation, the apiserver's defaults filled in).
pub const REVIEW: &str = include_str!("../fixtures/reviews/gpu-deployment-apply.json");
/// The uid in [`REVIEW`], replaced per request.
pub const UID_PLACEHOLDER: &str = "00000000-0000-4000-8000-000000000000";

/// A distinct uid of the same length for request `n` of run `run`.
pub fn uid(run: u32, n: u64) -> String {
    format!("{run:08x}-0000-4000-8000-{n:012x}")
}

pub fn review(uid: &str) -> Bytes {
    Bytes::from(REVIEW.replacen(UID_PLACEHOLDER, uid, 1))
}

/// How one attempt at a request ended.
#[derive(Debug)]
pub enum Outcome {
    /// 200 with the request's uid echoed, and what the answer said.
    Answered { latency: Duration, body: Bytes },
    /// Provably not processed by the server: no connection, the request
    /// handed back unsent, a stream refused or above a GOAWAY's last
    /// stream id. Sending it again is safe.
    Unprocessed(String),
    /// Anything else: a request that may have been processed and got no
    /// good answer. The suite wants none.
    Failed(String),
}

/// Some HTTP/2 connections over TLS, reconnected when the server closes
/// them (GOAWAY at shutdown or idle).
pub struct Pool {
    addr: SocketAddr,
    ca_pem: String,
    slots: Vec<tokio::sync::Mutex<Option<http2::SendRequest<Full<Bytes>>>>>,
    next: AtomicUsize,
    pub connects: AtomicU64,
}

impl Pool {
    pub fn new(addr: SocketAddr, ca_pem: &str, connections: usize) -> Arc<Pool> {
        Arc::new(Pool {
            addr,
            ca_pem: ca_pem.to_owned(),
            slots: (0..connections)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
            connects: AtomicU64::new(0),
        })
    }

    async fn sender(&self, i: usize) -> Result<http2::SendRequest<Full<Bytes>>, String> {
        let mut slot = self.slots[i].lock().await;
        if let Some(s) = slot.as_ref()
            && !s.is_closed()
            && s.is_ready()
        {
            return Ok(s.clone());
        }
        *slot = None;
        let stream = common::tls_stream(self.addr, &self.ca_pem, &[b"h2"])
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(conn);
        self.connects.fetch_add(1, Ordering::Relaxed);
        *slot = Some(send.clone());
        Ok(send)
    }

    async fn forget(&self, i: usize) {
        *self.slots[i].lock().await = None;
    }

    /// One attempt: POST `body` to `path`, expect 200 and `uid` echoed.
    pub async fn attempt(&self, path: &str, body: Bytes, uid: &str) -> Outcome {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut send = match self.sender(i).await {
            Ok(s) => s,
            Err(e) => return Outcome::Unprocessed(e),
        };
        if let Err(e) = send.ready().await {
            self.forget(i).await;
            return Outcome::Unprocessed(format!("connection not ready: {e}"));
        }
        let req = hyper::Request::builder()
            .method("POST")
            .uri(format!("https://localhost{path}"))
            .header("content-type", "application/json")
            .body(Full::new(body))
            .expect("a request");
        let started = Instant::now();
        let response = match send.try_send_request(req).await {
            Ok(r) => r,
            Err(mut e) => {
                let unsent = e.take_message().is_some();
                let error = e.into_error();
                self.forget(i).await;
                return if unsent || unprocessed(&error) {
                    Outcome::Unprocessed(format!("{error:?}"))
                } else {
                    Outcome::Failed(format!("{error:?}"))
                };
            }
        };
        let status = response.status();
        let body = match response.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return Outcome::Failed(format!("reading the answer: {e:?}")),
        };
        let latency = started.elapsed();
        if status != 200 {
            return Outcome::Failed(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
        }
        if !contains(&body, uid.as_bytes()) {
            return Outcome::Failed(format!(
                "answer without uid {uid}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        Outcome::Answered { latency, body }
    }

    /// Attempts until answered or failed; unprocessed attempts are sent
    /// again until `deadline`. Returns the outcome and the retries taken.
    pub async fn request(&self, path: &str, uid: &str, deadline: Instant) -> (Outcome, u32) {
        let body = review(uid);
        let mut retries = 0;
        loop {
            match self.attempt(path, body.clone(), uid).await {
                Outcome::Unprocessed(why) if Instant::now() < deadline => {
                    retries += 1;
                    if retries > 1 {
                        // A second refusal in a row: the other side is
                        // changing over; give it a moment.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    let _ = why;
                }
                Outcome::Unprocessed(why) => {
                    return (
                        Outcome::Failed(format!("unprocessed until the deadline: {why}")),
                        retries,
                    );
                }
                other => return (other, retries),
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether hyper's error proves the server did not process the request:
/// RFC 9113 §8.7 — REFUSED_STREAM, or a stream above the last stream id of
/// a GOAWAY.
fn unprocessed(error: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away()
                    && h2.is_remote()
                    && h2.reason() == Some(h2::Reason::NO_ERROR));
        }
        source = e.source();
    }
    false
}

/// Counts and latencies of a run.
#[derive(Default, Debug)]
pub struct Tally {
    pub sent: u64,
    pub answered: u64,
    pub failed: u64,
    pub retried: u64,
    pub latencies: Vec<Duration>,
    pub failures: Vec<String>,
}

impl Tally {
    pub fn add(&mut self, outcome: Outcome, retries: u32) {
        self.sent += 1;
        self.retried += u64::from(retries > 0);
        match outcome {
            Outcome::Answered { latency, .. } => {
                self.answered += 1;
                self.latencies.push(latency);
            }
            Outcome::Failed(why) | Outcome::Unprocessed(why) => {
                self.failed += 1;
                if self.failures.len() < 10 {
                    self.failures.push(why);
                }
            }
        }
    }

    pub fn percentile(&self, q: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        if l.is_empty() {
            return Duration::ZERO;
        }
        let at = ((l.len() as f64 * q) as usize).min(l.len() - 1);
        l[at]
    }

    pub fn line(&self, name: &str) -> String {
        format!(
            "{name}: sent={} answered={} failed={} retried-unprocessed={} p50={:.2}ms p99={:.2}ms max={:.2}ms",
            self.sent,
            self.answered,
            self.failed,
            self.retried,
            ms(self.percentile(0.50)),
            ms(self.percentile(0.99)),
            ms(self.latencies.iter().max().copied().unwrap_or_default()),
        )
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A probe: one kept-alive HTTP/2 connection sending /validate at `rate`
/// per second until stopped, as the apiserver does beside an attack. It
/// runs on a thread and runtime of its own, so the attack's client side
/// (in the same test process) cannot slow it.
pub struct Probe {
    stop: tokio::sync::watch::Sender<bool>,
    thread: std::thread::JoinHandle<Tally>,
}

impl Probe {
    pub async fn start(addr: SocketAddr, ca_pem: &str, rate: u32) -> Probe {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let ca_pem = ca_pem.to_owned();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("probe runtime");
            runtime.block_on(async move {
                let pool = Pool::new(addr, &ca_pem, 1);
                // Connected before the fault starts, as the apiserver's would be.
                let (first, _) = pool
                    .request(
                        "/validate",
                        &uid(0xfff, 0),
                        Instant::now() + Duration::from_secs(5),
                    )
                    .await;
                let _ = ready_tx.send(format!("{first:?}"));
                let mut tally = Tally::default();
                let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut n = 1;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stopped.wait_for(|s| *s) => break,
                    }
                    let (outcome, retries) = pool
                        .request(
                            "/validate",
                            &uid(0xfff, n),
                            Instant::now() + Duration::from_secs(5),
                        )
                        .await;
                    tally.add(outcome, retries);
                    n += 1;
                }
                tally
            })
        });
        let first = ready_rx.await.expect("probe started");
        assert!(first.starts_with("Answered"), "probe: {first}");
        Probe { stop, thread }
    }

    pub async fn finish(self) -> Tally {
        let _ = self.stop.send(true);
        tokio::task::spawn_blocking(move || self.thread.join().expect("probe thread"))
            .await
            .expect("probe join")
    }
}

/// What the server process holds, from /proc.
#[derive(Clone, Copy, Debug)]
pub struct Held {
    pub rss_kib: u64,
    pub fds: usize,
}

pub fn held(pid: u32) -> Held {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc fd")
        .count();
    Held { rss_kib, fds }
}

/// Polls /proc until the server's descriptors are back within `slack` of
/// `base` and its memory within `rss_slack_kib`; returns what it holds
/// then, or panics with what it held at `timeout`.
pub async fn settles(
    pid: u32,
    base: Held,
    slack: usize,
    rss_slack_kib: u64,
    timeout: Duration,
) -> Held {
    let deadline = Instant::now() + timeout;
    loop {
        let now = held(pid);
        if now.fds <= base.fds + slack && now.rss_kib <= base.rss_kib + rss_slack_kib {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "server did not return to its baseline within {timeout:?}: {now:?}, baseline {base:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Raises this process's open-file limit to its hard limit (the test
/// opens thousands of sockets) and returns it; `prlimit` can raise the
/// hard limit only with CAP_SYS_RESOURCE, which a sandbox may not grant.
pub fn raise_fd_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    let hard: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|h| h.parse().ok())
        .unwrap_or(1024);
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={hard}:{hard}"),
        ])
        .status()
        .expect("prlimit");
    assert!(status.success(), "prlimit --nofile={hard} failed");
    hard
}
