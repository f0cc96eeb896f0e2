//! The fault suite: the real binary over TLS on loopback, under an attack or
//! a change, while a probe (one kept-alive HTTP/2 connection, as the
//! apiserver keeps) goes on sending /validate. Each test counts every
//! request it sends, asserts none failed and the probe's p99 stayed under
//! [`PROBE_P99`], then that the server's descriptors and memory came back to
//! their baseline. Each prints one summary line (`fault <name>: …`).
//!
//! Heavy and timing-bound, so they are `#[ignore]`d in the ordinary run and
//! run one at a time by `tests/faults/run.sh` (and so by `.ci/run`).

#[path = "../common/mod.rs"]
mod common;
mod load;
mod one_client;
mod rolling;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Pki, Server};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use load::{Held, Outcome, Pool, Probe, held, ms, settles};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use waf_admission::webhook::BODY_LIMIT;

/// The bound on the probe's p99 during any fault, on the 2-core machine
/// that runs the suite with the load generators on it.
const PROBE_P99: Duration = Duration::from_millis(50);
/// Requests per second the probe sends.
const PROBE_RATE: u32 = 50;
/// "Near the baseline": descriptors within a few (the log pipe, a timer),
/// resident memory within this much.
const FD_SLACK: usize = 3;
const RSS_SLACK_KIB: u64 = 24 * 1024;
/// After the idle floods: 1,024 held TLS connections take about 25 MiB, and
/// the allocator keeps most of it for reuse rather than returning it (the
/// test asserts the second flood adds none), so the bound is looser.
const IDLE_RSS_SLACK_KIB: u64 = 32 * 1024;

/// Serves a few hundred requests so the baseline is a warm server's.
async fn warm_up(server: &Server, pki: &Pki) -> Held {
    let pool = Pool::new(server.addr, &pki.ca_pem, 2);
    for n in 0..300 {
        let (outcome, _) = pool
            .request(
                "/validate",
                &load::uid(0xeee, n),
                Instant::now() + Duration::from_secs(5),
            )
            .await;
        assert!(
            matches!(outcome, Outcome::Answered { .. }),
            "warm-up: {outcome:?}"
        );
    }
    drop(pool);
    // The warm-up's connections close with the pool: wait until they have.
    let pid = server.child.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut base = held(pid);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = held(pid);
        if now.fds == base.fds || Instant::now() > deadline {
            return now;
        }
        base = now;
    }
}

fn check_probe(name: &str, probe: &load::Tally) {
    println!("{}", probe.line(&format!("fault {name} probe")));
    assert_eq!(
        probe.failed, 0,
        "{name}: probe failures {:?}",
        probe.failures
    );
    assert!(probe.answered > 0);
    assert!(
        probe.percentile(0.99) < PROBE_P99,
        "{name}: probe p99 {:.2} ms over {PROBE_P99:?}",
        ms(probe.percentile(0.99))
    );
}

fn report_held(name: &str, base: Held, peak: Held, after: Held) {
    println!(
        "fault {name} server: baseline rss={} KiB fds={}; during rss={} KiB fds={}; after rss={} KiB fds={}",
        base.rss_kib, base.fds, peak.rss_kib, peak.fds, after.rss_kib, after.fds
    );
}

/// A TLS ClientHello, to dribble out a byte at a time.
fn client_hello(ca_pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut conn = rustls::ClientConnection::new(
        Arc::new(config),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// Sends `bytes` one a second until the server closes the stream; returns
/// how long it took, or None if it was still open after `give_up`.
async fn dribble<S>(mut stream: S, bytes: &[u8], give_up: Duration) -> Option<Duration>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    for byte in bytes.iter().cycle() {
        if stream.write_all(&[*byte]).await.is_err() {
            return Some(started.elapsed());
        }
        let _ = stream.flush().await;
        let wait = tokio::time::sleep(Duration::from_secs(1));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return Some(started.elapsed()),
                    Ok(_) => {} // an error response; the close follows
                },
                () = &mut wait => break,
            }
        }
        if started.elapsed() > give_up {
            return None;
        }
    }
    None
}

/// Slowloris, three ways, a byte a second each: a TLS ClientHello, HTTP/1
/// request headers after the handshake, and an HTTP/2 request body. The
/// first two are cut at the handshake and header timeouts (3 s here), the
/// third answered 504 at the request timeout (10 s, the default when the
/// apiserver sends no `?timeout=`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault suite: run by tests/faults/run.sh"]
async fn slowloris_is_cut_at_its_timeouts_while_others_are_answered() {
    common::install_crypto();
    let pki = Pki::new("fault-slowloris");
    // The timeouts are under test: the dribblers all come from one address
    // and would otherwise be refused at its share of the connections and
    // handshakes (one_client.rs tests those).
    let server = Server::start(
        &pki,
        &[
            "--baseline",
            "--tls-handshake-timeout",
            "3s",
            "--header-read-timeout",
            "3s",
            "--max-connections-per-client",
            "1024",
            "--max-pending-handshakes",
            "1024",
        ],
    );
    let pid = server.child.id();
    let base = warm_up(&server, &pki).await;
    let probe = Probe::start(server.addr, &pki.ca_pem, PROBE_RATE).await;
    const EACH: usize = 150;
    let hello = Arc::new(client_hello(&pki.ca_pem));
    let addr = server.addr;
    let mut handshakes = Vec::new();
    let mut headers = Vec::new();
    for _ in 0..EACH {
        let hello = hello.clone();
        handshakes.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            dribble(tcp, &hello, Duration::from_secs(20)).await
        }));
        let ca = pki.ca_pem.clone();
        headers.push(tokio::spawn(async move {
            let tls = common::tls_stream(addr, &ca, &[b"http/1.1"]).await.unwrap();
            let head = b"POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 5000\r\n\r\n";
            dribble(tls, head, Duration::from_secs(20)).await
        }));
    }
    // Slow bodies: 10 connections x 10 streams, each body a byte a second.
    let mut bodies = Vec::new();
    for _ in 0..10 {
        let tls = common::tls_stream(addr, &pki.ca_pem, &[b"h2"])
            .await
            .unwrap();
        let (send, conn) = hyper::client::conn::http2::handshake::<_, _, SlowBody>(
            TokioExecutor::new(),
            TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        for _ in 0..10 {
            let mut send = send.clone();
            bodies.push(tokio::spawn(async move {
                let started = Instant::now();
                let body = futures::stream::unfold(0u32, |n| async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    (n < 60).then(|| (Ok(Frame::data(Bytes::from_static(b"{"))), n + 1))
                });
                let req = hyper::Request::post("https://localhost/validate")
                    .header("content-type", "application/json")
                    .header("content-length", "5000")
                    .body(StreamBody::new(Box::pin(body) as SlowStream))
                    .unwrap();
                send.ready().await.unwrap();
                let status = send.send_request(req).await.map(|r| r.status().as_u16());
                (status.ok(), started.elapsed())
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = held(pid);
    let mut cut = [Vec::new(), Vec::new()];
    for (i, tasks) in [handshakes, headers].into_iter().enumerate() {
        for t in tasks {
            cut[i].push(t.await.unwrap());
        }
    }
    let mut slow_bodies = Vec::new();
    for t in bodies {
        slow_bodies.push(t.await.unwrap());
    }
    let after = settles(pid, base, FD_SLACK, RSS_SLACK_KIB, Duration::from_secs(15)).await;
    let probe = probe.finish().await;
    let longest = |v: &[Option<Duration>]| v.iter().flatten().max().copied().unwrap_or_default();
    let open = |v: &[Option<Duration>]| v.iter().filter(|c| c.is_none()).count();
    let answered_504 = slow_bodies.iter().filter(|(s, _)| *s == Some(504)).count();
    let body_longest = slow_bodies
        .iter()
        .map(|(_, d)| *d)
        .max()
        .unwrap_or_default();
    println!(
        "fault slowloris: handshake dribblers={EACH} cut={} longest={:.1}s; header dribblers={EACH} cut={} longest={:.1}s; slow bodies=100 answered-504={answered_504} longest={:.1}s",
        EACH - open(&cut[0]),
        longest(&cut[0]).as_secs_f64(),
        EACH - open(&cut[1]),
        longest(&cut[1]).as_secs_f64(),
        body_longest.as_secs_f64(),
    );
    report_held("slowloris", base, during, after);
    check_probe("slowloris", &probe);
    assert_eq!(open(&cut[0]), 0, "handshake dribblers left open");
    assert_eq!(open(&cut[1]), 0, "header dribblers left open");
    assert!(
        longest(&cut[0]) < Duration::from_secs(5),
        "{:?}",
        longest(&cut[0])
    );
    assert!(
        longest(&cut[1]) < Duration::from_secs(5),
        "{:?}",
        longest(&cut[1])
    );
    assert_eq!(answered_504, 100, "{slow_bodies:?}");
    assert!(body_longest < Duration::from_secs(12), "{body_longest:?}");
}

type SlowStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<Frame<Bytes>, std::convert::Infallible>> + Send>,
>;
type SlowBody = StreamBody<SlowStream>;

/// HTTP/2 rapid reset (CVE-2023-44487): connections that open a stream and
/// reset it at once, as fast as they can, for 5 s, reconnecting when the
/// server ends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault suite: run by tests/faults/run.sh"]
async fn rapid_reset_floods_are_cut_while_others_are_answered() {
    common::install_crypto();
    let pki = Pki::new("fault-rapid-reset");
    let server = Server::start(&pki, &["--baseline"]);
    let pid = server.child.id();
    let base = warm_up(&server, &pki).await;
    let probe = Probe::start(server.addr, &pki.ca_pem, PROBE_RATE).await;
    let resets = Arc::new(AtomicU64::new(0));
    let connections = Arc::new(AtomicU64::new(0));
    let calmed = Arc::new(AtomicU64::new(0));
    let endings = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let until = Instant::now() + Duration::from_secs(5);
    let mut attackers = Vec::new();
    for _ in 0..4 {
        let (resets, connections, calmed) = (resets.clone(), connections.clone(), calmed.clone());
        let endings = endings.clone();
        let (addr, ca) = (server.addr, pki.ca_pem.clone());
        attackers.push(tokio::spawn(async move {
            while Instant::now() < until {
                let Ok(tls) = common::tls_stream(addr, &ca, &[b"h2"]).await else {
                    continue;
                };
                let Ok((mut send, conn)) = h2::client::handshake(tls).await else {
                    continue;
                };
                connections.fetch_add(1, Ordering::Relaxed);
                let conn = tokio::spawn(conn);
                while Instant::now() < until {
                    send = match send.clone().ready().await {
                        Ok(s) => s,
                        Err(_) => break,
                    };
                    let req = hyper::Request::post("https://localhost/validate")
                        .header("content-type", "application/json")
                        .body(())
                        .unwrap();
                    let Ok((response, mut stream)) = send.send_request(req, false) else {
                        break;
                    };
                    stream.send_reset(h2::Reason::CANCEL);
                    drop(response);
                    if resets.fetch_add(1, Ordering::Relaxed) % 64 == 0 {
                        // Let the connection task write the frames out.
                        tokio::task::yield_now().await;
                    }
                }
                drop(send);
                let ended = match conn.await {
                    Ok(Err(e)) if e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) => {
                        calmed.fetch_add(1, Ordering::Relaxed);
                        "GOAWAY ENHANCE_YOUR_CALM".to_owned()
                    }
                    Ok(Err(e)) => format!("{e}"),
                    Ok(Ok(())) => "closed".to_owned(),
                    Err(e) => format!("{e}"),
                };
                *endings.lock().unwrap().entry(ended).or_insert(0u64) += 1;
            }
        }));
    }
    let mut during = held(pid);
    for a in attackers {
        a.await.unwrap();
        let now = held(pid);
        if now.rss_kib > during.rss_kib {
            during = now;
        }
    }
    let after = settles(pid, base, FD_SLACK, RSS_SLACK_KIB, Duration::from_secs(15)).await;
    let probe = probe.finish().await;
    println!(
        "fault rapid-reset: streams opened and reset={} attack connections={} of which ended with GOAWAY ENHANCE_YOUR_CALM={}; how they ended (broken pipe: closed by the server after its GOAWAY): {:?}",
        resets.load(Ordering::Relaxed),
        connections.load(Ordering::Relaxed),
        calmed.load(Ordering::Relaxed),
        endings.lock().unwrap(),
    );
    report_held("rapid-reset", base, during, after);
    check_probe("rapid-reset", &probe);
    assert!(
        calmed.load(Ordering::Relaxed) > 0,
        "the flood was never cut off"
    );
}

/// 10,000 idle connections, half never starting TLS and half idle after
/// the HTTP/2 preface: the connection limit closes what is past it at once,
/// the handshake and idle timeouts (3 s and 4 s here) close the rest, and a
/// new connection is served afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault suite: run by tests/faults/run.sh"]
async fn ten_thousand_idle_connections_are_bounded_while_others_are_answered() {
    common::install_crypto();
    const TOTAL: usize = 10_000;
    let fds = load::raise_fd_limit();
    assert!(
        fds as usize > TOTAL + 500,
        "open-file hard limit {fds} is too low for {TOTAL} connections"
    );
    let nofile = format!("--nofile={fds}:{fds}");
    let pki = Pki::new("fault-idle");
    let max = std::env::var("WAF_FAULT_MAX_CONNECTIONS").unwrap_or_else(|_| "1024".into());
    let server = Server::start_wrapped(
        &pki,
        &["prlimit", &nofile],
        &[
            "--baseline",
            "--tls-handshake-timeout",
            "3s",
            "--idle-timeout",
            "4s",
            "--max-connections",
            &max,
            // The total is under test: one address may take all of it, and
            // all of it may be handshaking (one_client.rs tests the shares).
            "--max-connections-per-client",
            &max,
            "--max-pending-handshakes",
            &max,
        ],
    );
    let pid = server.child.id();
    let base = warm_up(&server, &pki).await;
    let probe = Probe::start(server.addr, &pki.ca_pem, PROBE_RATE).await;
    // Twice: memory the first flood left with the allocator is reused by
    // the second, not added to.
    let first = idle_flood(&server, &pki, TOTAL, &max).await;
    let second = idle_flood(&server, &pki, TOTAL, &max).await;
    let after = settles(
        pid,
        base,
        FD_SLACK + 1,
        IDLE_RSS_SLACK_KIB,
        Duration::from_secs(15),
    )
    .await;
    let probe = probe.finish().await;
    report_held("idle", base, first.max(second), after);
    println!(
        "fault idle: after the first flood rss={} KiB, after the second rss={} KiB",
        first.after.rss_kib, after.rss_kib
    );
    check_probe("idle", &probe);
    assert!(
        after.rss_kib <= first.after.rss_kib + 4 * 1024,
        "the second flood added memory: {} then {} KiB",
        first.after.rss_kib,
        after.rss_kib
    );
}

/// What the server held during one flood, and once it was over.
#[derive(Clone, Copy)]
struct Flood {
    during: Held,
    after: Held,
}

impl Flood {
    fn max(self, other: Flood) -> Held {
        if other.during.rss_kib > self.during.rss_kib {
            other.during
        } else {
            self.during
        }
    }
}

/// Opens `total` connections, alternately plain TCP that never starts TLS
/// and TLS + HTTP/2 preface then silence, 64 in the opening at a time;
/// returns once the server has closed every one.
async fn idle_flood(server: &Server, pki: &Pki, total: usize, max: &str) -> Flood {
    let pid = server.child.id();
    let opening = Arc::new(tokio::sync::Semaphore::new(64));
    let started = Instant::now();
    let mut idlers = Vec::new();
    for i in 0..total {
        let permit = opening.clone().acquire_owned().await.unwrap();
        let (addr, ca) = (server.addr, pki.ca_pem.clone());
        idlers.push(tokio::spawn(async move {
            // How long the connection lived before the server closed it.
            let opened = Instant::now();
            if i % 2 == 0 {
                let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
                    return Duration::ZERO;
                };
                drop(permit);
                let mut buf = [0u8; 64];
                let _ = tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut buf)).await;
                opened.elapsed()
            } else {
                let Ok(tls) = common::tls_stream(addr, &ca, &[b"h2"]).await else {
                    return opened.elapsed();
                };
                let Ok((send, conn)) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
                    TokioExecutor::new(),
                    TokioIo::new(tls),
                )
                .await
                else {
                    return opened.elapsed();
                };
                drop(permit);
                let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
                drop(send);
                opened.elapsed()
            }
        }));
    }
    let opened_in = started.elapsed();
    let during = held(pid);
    let mut quick = 0;
    let mut longest = Duration::ZERO;
    for t in idlers {
        let lived = t.await.unwrap();
        if lived < Duration::from_millis(500) {
            quick += 1;
        }
        longest = longest.max(lived);
    }
    // A newcomer is served once the idlers are gone.
    let mut fresh = common::H2::connect(server.addr, &pki.ca_pem).await.unwrap();
    let (status, _) = fresh.request("GET", "/healthz", Vec::new()).await;
    drop(fresh);
    let after = held(pid);
    println!(
        "fault idle: connections={total} opened in {:.1}s; server held at most {} descriptors (limit {max} connections); closed within 0.5 s={quick}; the last closed after {:.1}s; a new connection afterwards: HTTP {status}",
        opened_in.as_secs_f64(),
        during.fds,
        longest.as_secs_f64()
    );
    assert_eq!(status, 200);
    assert!(longest < Duration::from_secs(10), "{longest:?}");
    let limit: usize = max.parse().unwrap();
    assert!(
        during.fds <= limit + 20,
        "{} descriptors held past the limit {limit}",
        during.fds
    );
    Flood { during, after }
}

/// A review padded to exactly `size` bytes with an annotation.
fn padded_review(size: usize) -> Bytes {
    let review = load::review(&load::uid(0xb0d, size as u64));
    let text = std::str::from_utf8(&review).unwrap();
    let at = text.find("\"annotations\":{").unwrap() + "\"annotations\":{".len();
    let empty = "\"example.com/padding\":\"\",";
    let pad = size - text.trim_end().len() - empty.len();
    let mut out = String::with_capacity(size);
    out.push_str(&text[..at]);
    out.push_str("\"example.com/padding\":\"");
    out.extend(std::iter::repeat_n('x', pad));
    out.push_str("\",");
    out.push_str(text[at..].trim_end());
    assert_eq!(out.len(), size);
    Bytes::from(out)
}

/// Bodies at the limit (judged, 200), one byte past it with a
/// content-length (413 before the body is read) and past it streamed
/// without one (413 when the limit is crossed), four at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault suite: run by tests/faults/run.sh"]
async fn bodies_at_and_past_the_limit_while_others_are_answered() {
    common::install_crypto();
    let pki = Pki::new("fault-bodies");
    let server = Server::start(&pki, &["--baseline"]);
    let pid = server.child.id();
    let base = warm_up(&server, &pki).await;
    let probe = Probe::start(server.addr, &pki.ca_pem, PROBE_RATE).await;
    let at_limit = padded_review(BODY_LIMIT);
    let past_limit = padded_review(BODY_LIMIT + 1);
    let peak = Arc::new(std::sync::Mutex::new(held(pid)));
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (addr, ca) = (server.addr, pki.ca_pem.clone());
        let (at_limit, past_limit, peak) = (at_limit.clone(), past_limit.clone(), peak.clone());
        senders.push(tokio::spawn(async move {
            let tls = common::tls_stream(addr, &ca, &[b"h2"]).await.unwrap();
            let (send, conn) = hyper::client::conn::http2::handshake::<_, _, SlowBody>(
                TokioExecutor::new(),
                TokioIo::new(tls),
            )
            .await
            .unwrap();
            tokio::spawn(conn);
            let mut statuses = Vec::new();
            for round in 0..6 {
                let (body, streamed): (Bytes, bool) = match round % 3 {
                    0 => (at_limit.clone(), false),
                    1 => (past_limit.clone(), false),
                    _ => (past_limit.clone(), true),
                };
                let mut req = hyper::Request::post("https://localhost/validate")
                    .header("content-type", "application/json");
                if !streamed {
                    req = req.header("content-length", body.len().to_string());
                }
                let chunks: Vec<Bytes> =
                    body.chunks(64 * 1024).map(Bytes::copy_from_slice).collect();
                let stream = futures::stream::iter(chunks.into_iter().map(|c| Ok(Frame::data(c))));
                let req = req
                    .body(StreamBody::new(Box::pin(stream) as SlowStream))
                    .unwrap();
                let mut send = send.clone();
                send.ready().await.unwrap();
                let response = send.send_request(req).await.unwrap();
                let status = response.status().as_u16();
                let answer = response.into_body().collect().await.unwrap().to_bytes();
                statuses.push((round % 3, status, answer.len()));
                let now = held(pid);
                let mut p = peak.lock().unwrap();
                if now.rss_kib > p.rss_kib {
                    *p = now;
                }
            }
            statuses
        }));
    }
    let mut seen = Vec::new();
    for s in senders {
        seen.extend(s.await.unwrap());
    }
    let after = settles(pid, base, FD_SLACK, RSS_SLACK_KIB, Duration::from_secs(15)).await;
    let probe = probe.finish().await;
    let count = |kind: usize, status: u16| {
        seen.iter()
            .filter(|(k, s, _)| *k == kind && *s == status)
            .count()
    };
    println!(
        "fault bodies: at the limit ({BODY_LIMIT} B)={} answered 200={}; one byte past with content-length={} answered 413={}; past, streamed without content-length={} answered 413={}",
        seen.iter().filter(|(k, ..)| *k == 0).count(),
        count(0, 200),
        seen.iter().filter(|(k, ..)| *k == 1).count(),
        count(1, 413),
        seen.iter().filter(|(k, ..)| *k == 2).count(),
        count(2, 413),
    );
    let peak = *peak.lock().unwrap();
    report_held("bodies", base, peak, after);
    check_probe("bodies", &probe);
    assert_eq!(count(0, 200), 8, "{seen:?}");
    assert_eq!(count(1, 413), 8, "{seen:?}");
    assert_eq!(count(2, 413), 8, "{seen:?}");
}
