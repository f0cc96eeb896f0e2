//! One client address floods the port; another is still answered. The
//! flooder (127.0.0.1) keeps 1,500 TCP connections that never start TLS,
//! 100 handshakes begun and never finished and 100 TLS connections with an
//! HTTP/1 request begun and never finished, reopening each as the server
//! closes it. Meanwhile another address (127.0.0.2: all of 127/8 is
//! loopback on Linux) sends reviews, each on a new connection as an
//! apiserver does after a restart, and every one must be answered.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::common::{self, Pki, Server};
use crate::load::{self, Outcome, Tally, held, ms, settles};
use crate::{FD_SLACK, RSS_SLACK_KIB, client_hello, report_held, warm_up};

/// The other client: not the flooder's address.
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const IDLE: usize = 1500;
const STALLED_HANDSHAKES: usize = 100;
const STALLED_REQUESTS: usize = 100;
/// Reviews from the other address, before the flood and during it.
const REVIEWS: u64 = 200;
const REVIEW_RATE: u32 = 20;
/// How long a flooder's connection waits before it reconnects once the
/// server closed it (plus up to as much again, spread per connection so
/// the reconnects do not come in waves).
const REOPEN_AFTER: Duration = Duration::from_millis(250);
/// A connection closed sooner than this after it opened was refused at
/// accept rather than cut by a timeout.
const REFUSED_WITHIN: Duration = Duration::from_millis(100);
/// The flooded reviews' p99 may be this many times the baseline p99 (the
/// flooder's reconnects share the 2 cores), and never less than
/// [`P99_FLOOR`]: what the bound tells apart is answered at once from
/// refused, or queued behind a limit until a timeout (seconds).
const P99_FACTOR: u32 = 4;
const P99_FLOOR: Duration = Duration::from_millis(25);

/// A review of the usual fixture on a new TCP + TLS + HTTP/2 connection
/// from `from`, timed from the connect to the last byte of the answer.
async fn review_on_a_new_connection(
    from: IpAddr,
    addr: SocketAddr,
    ca_pem: &str,
    uid: &str,
) -> Outcome {
    let started = Instant::now();
    let tcp = match common::tcp_from(from, addr).await {
        Ok(t) => t,
        Err(e) => return Outcome::Failed(format!("connect: {e}")),
    };
    let _ = tcp.set_nodelay(true);
    let tls = match common::tls_over(tcp, ca_pem, &[b"h2"]).await {
        Ok(t) => t,
        Err(e) => return Outcome::Failed(format!("TLS handshake: {e}")),
    };
    let (mut send, conn) = match http2::handshake::<_, _, Full<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    {
        Ok(h) => h,
        Err(e) => return Outcome::Failed(format!("h2 handshake: {e}")),
    };
    let conn = tokio::spawn(conn);
    let req = hyper::Request::post("https://localhost/validate")
        .header("content-type", "application/json")
        .body(Full::new(load::review(uid)))
        .expect("a request");
    let outcome = match send.send_request(req).await {
        Err(e) => Outcome::Failed(format!("request: {e:?}")),
        Ok(response) => {
            let status = response.status();
            match response.into_body().collect().await {
                Err(e) => Outcome::Failed(format!("reading the answer: {e:?}")),
                Ok(body) if status != 200 => Outcome::Failed(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body.to_bytes())
                )),
                Ok(body) => {
                    let body = body.to_bytes();
                    let needle = uid.as_bytes();
                    if body.windows(needle.len()).any(|w| w == needle) {
                        Outcome::Answered {
                            latency: started.elapsed(),
                            body,
                        }
                    } else {
                        Outcome::Failed(format!("answer without uid {uid}"))
                    }
                }
            }
        }
    };
    drop(send);
    conn.abort();
    outcome
}

/// `REVIEWS` reviews from [`OTHER`] at `REVIEW_RATE`, none sent again, on
/// a thread and runtime of their own so the flooder (in this process too)
/// cannot slow the client side.
async fn reviews_from_the_other_address(addr: SocketAddr, ca_pem: &str, run: u32) -> Tally {
    let ca_pem = ca_pem.to_owned();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("reviewer runtime");
        runtime.block_on(async move {
            let mut tally = Tally::default();
            let mut tick = tokio::time::interval(Duration::from_secs(1) / REVIEW_RATE);
            for n in 0..REVIEWS {
                tick.tick().await;
                let uid = load::uid(run, n);
                let outcome = review_on_a_new_connection(OTHER, addr, &ca_pem, &uid).await;
                tally.add(outcome, 0);
            }
            tally
        })
    });
    tokio::task::spawn_blocking(move || thread.join().expect("reviewer thread"))
        .await
        .expect("reviewer join")
}

/// What one kind of flooding connection saw.
#[derive(Default)]
struct Kind {
    opened: AtomicU64,
    /// Closed by the server within [`REFUSED_WITHIN`]: refused at accept.
    refused: AtomicU64,
    /// Held longer, until a timeout closed it (or the flood ended).
    held: AtomicU64,
    /// TLS finished (stalled requests only).
    tls_done: AtomicU64,
    longest_ms: AtomicU64,
    connect_errors: AtomicU64,
}

impl Kind {
    fn line(&self, name: &str, each: usize) -> String {
        format!(
            "{name}={each} opened={} refused-at-accept={} held={} tls-done={} connect-errors={} longest-held={:.1}s",
            self.opened.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.held.load(Ordering::Relaxed),
            self.tls_done.load(Ordering::Relaxed),
            self.connect_errors.load(Ordering::Relaxed),
            self.longest_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        )
    }
}

#[derive(Clone, Copy)]
enum Stall {
    /// TCP only, never a byte.
    Idle,
    /// Half a ClientHello.
    Handshake,
    /// TLS done, half of an HTTP/1 request's headers.
    Request,
}

/// Reads until the server closes the stream.
async fn closed<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// One flooding connection, reopened until `stop`; the socket closes the
/// moment `stop` is sent.
async fn flooder(
    stall: Stall,
    spread: Duration,
    addr: SocketAddr,
    ca_pem: Arc<String>,
    hello: Arc<Vec<u8>>,
    kind: Arc<Kind>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        () = tokio::time::sleep(spread) => {}
        _ = stop.wait_for(|s| *s) => return,
    }
    loop {
        let opened = Instant::now();
        kind.opened.fetch_add(1, Ordering::Relaxed);
        // Whether a connection was made at all.
        let connection = async {
            match stall {
                Stall::Idle | Stall::Handshake => {
                    let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
                        return false;
                    };
                    if matches!(stall, Stall::Handshake) {
                        let _ = tcp.write_all(&hello[..hello.len() / 2]).await;
                    }
                    closed(&mut tcp).await;
                }
                Stall::Request => {
                    // A handshake the server ends is a refusal, counted below.
                    let Ok(mut tls) = common::tls_stream(addr, &ca_pem, &[b"http/1.1"]).await
                    else {
                        return true;
                    };
                    kind.tls_done.fetch_add(1, Ordering::Relaxed);
                    let head = b"POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n";
                    if tls.write_all(head).await.is_ok() && tls.flush().await.is_ok() {
                        closed(&mut tls).await;
                    }
                }
            }
            true
        };
        tokio::select! {
            connected = connection => {
                let lived = opened.elapsed();
                if !connected {
                    kind.connect_errors.fetch_add(1, Ordering::Relaxed);
                } else if lived < REFUSED_WITHIN {
                    kind.refused.fetch_add(1, Ordering::Relaxed);
                } else {
                    kind.held.fetch_add(1, Ordering::Relaxed);
                    let lived_ms = u64::try_from(lived.as_millis()).unwrap_or(u64::MAX);
                    kind.longest_ms.fetch_max(lived_ms, Ordering::Relaxed);
                }
            }
            _ = stop.wait_for(|s| *s) => return,
        }
        tokio::select! {
            () = tokio::time::sleep(REOPEN_AFTER + spread) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// GET /metrics on the plain-HTTP port.
async fn scrape(addr: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut response))
        .await
        .expect("/metrics within 10 s")
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.contains(" 200 "), "{head}");
    body.to_owned()
}

/// The value of one sample (`name{labels}`), which must be there.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

fn refused(text: &str, reason: &str) -> f64 {
    sample(
        text,
        &format!("waf_admission_connections_refused_total{{reason=\"{reason}\"}}"),
    )
}

/// Polls until `done` holds, or panics naming `what` at the deadline.
async fn until(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done().await {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The case, at the default limits: one address holding 1,500 idle
/// connections and 200 stalled TLS ones cannot starve another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault suite: run by tests/faults/run.sh"]
async fn one_address_flooding_leaves_slots_for_another() {
    common::install_crypto();
    let flooding = IDLE + STALLED_HANDSHAKES + STALLED_REQUESTS;
    let fds = load::raise_fd_limit();
    assert!(
        fds as usize > flooding + 500,
        "open-file hard limit {fds} is too low for {flooding} connections"
    );
    let nofile = format!("--nofile={fds}:{fds}");
    let pki = Pki::new("fault-one-client");
    // The default limits: 1,024 connections, 256 per address, 128 pending
    // handshakes (32 per address), 10 s to finish TLS or send headers.
    let server = Server::start_wrapped(&pki, &["prlimit", &nofile], &["--baseline"]);
    let pid = server.child.id();
    let base = warm_up(&server, &pki).await;

    let baseline = reviews_from_the_other_address(server.addr, &pki.ca_pem, 0xba5e).await;
    println!(
        "{}",
        baseline.line("fault one-client reviews from 127.0.0.2, no flood")
    );
    assert_eq!(baseline.failed, 0, "baseline: {:?}", baseline.failures);

    let (stop, stopped) = watch::channel(false);
    let ca = Arc::new(pki.ca_pem.clone());
    let hello = Arc::new(client_hello(&pki.ca_pem));
    let kinds: [Arc<Kind>; 3] = Default::default();
    let mut flood = Vec::new();
    let mut start = |stall: Stall, count: usize, kind: &Arc<Kind>| {
        for i in 0..count {
            // Spread over REOPEN_AFTER, the same for a connection each time.
            let spread = REOPEN_AFTER * u32::try_from(i * 7919 % 256).unwrap() / 256;
            flood.push(tokio::spawn(flooder(
                stall,
                spread,
                server.addr,
                ca.clone(),
                hello.clone(),
                kind.clone(),
                stopped.clone(),
            )));
        }
    };
    // The stalled requests first, so they get in before the idle ones take
    // the address's share of the pending handshakes.
    start(Stall::Request, STALLED_REQUESTS, &kinds[2]);
    until(
        "the stalled requests finish TLS",
        Duration::from_secs(10),
        async || kinds[2].tls_done.load(Ordering::Relaxed) >= STALLED_REQUESTS as u64,
    )
    .await;
    start(Stall::Handshake, STALLED_HANDSHAKES, &kinds[1]);
    start(Stall::Idle, IDLE, &kinds[0]);
    // Flooding: the address is at its share and being refused.
    let metrics_addr = server.metrics_addr;
    until(
        "the flooder refused per client",
        Duration::from_secs(10),
        async || refused(&scrape(metrics_addr).await, "per_client") > 100.0,
    )
    .await;

    let reviewing = tokio::spawn({
        let (addr, ca) = (server.addr, pki.ca_pem.clone());
        async move { reviews_from_the_other_address(addr, &ca, 0xf100d).await }
    });
    let mut during = held(pid);
    let mut open_peak = 0.0f64;
    while !reviewing.is_finished() {
        let now = held(pid);
        if now.fds > during.fds {
            during = now;
        }
        open_peak = open_peak.max(sample(
            &scrape(metrics_addr).await,
            "waf_admission_connections_open",
        ));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let flooded = reviewing.await.unwrap();
    let text = scrape(metrics_addr).await;
    let _ = stop.send(true);
    for f in flood {
        f.await.unwrap();
    }
    let after = settles(pid, base, FD_SLACK, RSS_SLACK_KIB, Duration::from_secs(15)).await;
    until(
        "connections_open back to 0",
        Duration::from_secs(15),
        async || {
            sample(
                &scrape(metrics_addr).await,
                "waf_admission_connections_open",
            ) == 0.0
        },
    )
    .await;

    println!(
        "{}",
        flooded.line("fault one-client reviews from 127.0.0.2, flooded")
    );
    println!(
        "fault one-client flood from 127.0.0.1: {}; {}; {}",
        kinds[0].line("idle", IDLE),
        kinds[1].line("stalled-handshakes", STALLED_HANDSHAKES),
        kinds[2].line("stalled-requests", STALLED_REQUESTS),
    );
    println!(
        "fault one-client refused at accept: per_client={} total={} handshakes={}; connections open at most={open_peak}",
        refused(&text, "per_client"),
        refused(&text, "total"),
        refused(&text, "handshakes"),
    );
    report_held("one-client", base, during, after);
    let bound = (baseline.percentile(0.99) * P99_FACTOR).max(P99_FLOOR);
    println!(
        "fault one-client p99: baseline={:.2}ms flooded={:.2}ms bound={:.2}ms",
        ms(baseline.percentile(0.99)),
        ms(flooded.percentile(0.99)),
        ms(bound),
    );

    assert_eq!(flooded.failed, 0, "flooded: {:?}", flooded.failures);
    assert_eq!(flooded.answered, REVIEWS);
    assert!(
        flooded.percentile(0.99) <= bound,
        "flooded p99 {:.2} ms over {:.2} ms (baseline p99 {:.2} ms)",
        ms(flooded.percentile(0.99)),
        ms(bound),
        ms(baseline.percentile(0.99)),
    );
    // Only the flooder's share was refused; the server was never full.
    assert_eq!(refused(&text, "total"), 0.0, "{text}");
    assert_eq!(refused(&text, "handshakes"), 0.0, "{text}");
    assert!(
        open_peak <= 256.0 + 8.0,
        "{open_peak} connections open: more than one address's share"
    );
}
