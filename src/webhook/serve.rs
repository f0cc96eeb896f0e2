//! The webhook's listener: TLS handshakes, HTTP/1.1 and HTTP/2 connections,
//! and the limits on what one client can hold of them. A client reaching
//! the port needs no credentials (any pod can, unless a NetworkPolicy
//! says otherwise), so every resource a connection takes is bounded:
//!
//! - connections: at most [`Limits::max_connections`] open at once, of them
//!   at most [`Limits::max_connections_per_client`] from one address, and at
//!   most [`Limits::max_pending_handshakes`] still in their TLS handshake
//!   (one address: its share of those too); one more is closed at accept
//!   (counted in `connections_refused_total` by `reason`), so an overload
//!   fails fast instead of queueing in the kernel's backlog, and one client
//!   cannot take the slots the apiserver needs (`slots.rs`);
//! - time: a TLS handshake must finish within `tls_handshake_timeout`, HTTP/1
//!   request headers (and the wait for the next request on a kept-alive
//!   connection) within `header_read_timeout`, and a connection with no
//!   request in flight for `idle_timeout` is closed gracefully (HTTP/2
//!   GOAWAY: a client's next request is refused unprocessed and retried);
//!   the whole request, body included, is bounded by `?timeout=`
//!   (`honour_timeout` in `mod.rs`);
//! - HTTP/2: at most `h2_max_concurrent_streams` streams per connection;
//!   rapid reset (CVE-2023-44487: open a stream, reset it at once, repeat)
//!   ends the connection with GOAWAY ENHANCE_YOUR_CALM once more than
//!   `h2_max_pending_accept_reset_streams` reset streams wait to be accepted;
//!   streams the server itself resets for protocol errors (CVE-2025-8671,
//!   "MadeYouReset") are bounded by `h2_max_local_error_reset_streams`;
//!   request headers by 16 KiB (hyper's default `max_header_list_size`);
//! - bodies: [`super::BODY_LIMIT`] (413 past it).
//!
//! Shutdown: stop accepting, ask every connection to finish (GOAWAY on
//! HTTP/2, `Connection: close` on HTTP/1), then wait for all of them, at
//! most the grace period.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::slots::{Refused, Slot, Slots};
use crate::metrics::Metrics;

/// After a failed accept (out of file descriptors) the loop waits this
/// long, doubling up to the maximum, before it tries again.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What one client can hold of the server (see the module docs). Each is a
/// `serve` flag; `docs/install.md` lists them.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// Of `max_connections`, the most one client address (IP) may hold.
    /// Behind a mesh sidecar or a proxy every client is one address: then
    /// set it to `max_connections`.
    pub max_connections_per_client: usize,
    /// Connections still in their TLS handshake, in all; one address may
    /// hold the same share of these as of the connections.
    pub max_pending_handshakes: usize,
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub h2_max_concurrent_streams: u32,
    pub h2_max_pending_accept_reset_streams: usize,
    pub h2_max_local_error_reset_streams: usize,
    /// HTTP/2 PING on a connection that has been quiet this long, and the
    /// connection closed if no answer comes within the handshake timeout:
    /// finds peers that vanished without a FIN.
    pub h2_keep_alive_interval: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            // The apiserver multiplexes on a few HTTP/2 connections per
            // replica; 1,024 idle TLS connections cost about 27 MiB
            // (tests/faults), inside the chart's 256 MiB limit.
            max_connections: 1024,
            // A quarter: one address (a pod looping on connect) leaves
            // three quarters to everyone else, and it takes four addresses
            // to fill the server. The apiserver needs a few connections
            // per replica, a kubelet one per probe.
            max_connections_per_client: 256,
            // A handshake takes milliseconds, so the legitimate ones in
            // progress at once are a handful; connections that never finish
            // TLS hold at most an eighth of the slots (32 from one address).
            max_pending_handshakes: 128,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            // Below Go's 90 s IdleConnTimeout, so the server is the side that
            // closes, with a GOAWAY the apiserver's client retries on.
            idle_timeout: Duration::from_secs(60),
            // RFC 9113 advises no fewer than 100.
            h2_max_concurrent_streams: 100,
            h2_max_pending_accept_reset_streams: 20,
            h2_max_local_error_reset_streams: 256,
            h2_keep_alive_interval: Duration::from_secs(30),
        }
    }
}

/// When a connection last finished a request, and how many it has in
/// flight: the idle timer's view of it.
struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `born` when the last request finished.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// The moment after which the connection counts as idle, or None while
    /// a request is in flight.
    fn idle_from(&self, timeout: Duration) -> Option<Instant> {
        (self.in_flight.load(Ordering::Acquire) == 0).then(|| {
            self.born + Duration::from_millis(self.last_ms.load(Ordering::Acquire)) + timeout
        })
    }
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ms.store(ms, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Resolves once the connection has had nothing in flight for `timeout`.
async fn idle(activity: &Activity, timeout: Duration) {
    loop {
        match activity.idle_from(timeout) {
            Some(at) if at <= Instant::now() => return,
            Some(at) => tokio::time::sleep_until(at.into()).await,
            // Busy: look again one timeout later at the earliest.
            None => tokio::time::sleep(timeout).await,
        }
    }
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.h2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(limits.h2_max_local_error_reset_streams)
        .keep_alive_interval(limits.h2_keep_alive_interval)
        .keep_alive_timeout(limits.tls_handshake_timeout);
    builder
}

/// Serves `router` over TLS on `listener` until `shutdown` resolves, then
/// stops accepting and lets in-flight requests finish (at most `grace`).
pub async fn serve_tls(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let builder = Arc::new(builder(&limits));
    let slots = Slots::new(&limits);
    let (stop_tx, stop_rx) = watch::channel(false);
    let limits = Arc::new(limits);
    let mut refused_logged = RefusedLog::default();
    tokio::pin!(shutdown);
    let mut accept_backoff = ACCEPT_BACKOFF_MIN;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(conn) => {
                        accept_backoff = ACCEPT_BACKOFF_MIN;
                        conn
                    }
                    Err(e) => {
                        // EMFILE, ENFILE, ENOBUFS: the error repeats at once
                        // until a descriptor frees, so wait instead of
                        // spinning a core; connections in flight go on.
                        tracing::warn!(error = %e, backoff = ?accept_backoff, "accept failed; backing off");
                        tokio::time::sleep(accept_backoff).await;
                        accept_backoff = (accept_backoff * 2).min(ACCEPT_BACKOFF_MAX);
                        continue;
                    }
                };
                let slot = match slots.take(peer.ip()) {
                    Ok(slot) => slot,
                    Err(refused) => {
                        metrics.connection_refused(refused.reason());
                        refused_logged.warn(refused, peer, &limits, &slots);
                        drop(tcp);
                        continue;
                    }
                };
                metrics.connections_open(slots.open());
                let _ = tcp.set_nodelay(true);
                let connection = Connection {
                    acceptor: acceptor.clone(),
                    builder: builder.clone(),
                    router: router.clone(),
                    limits: limits.clone(),
                    metrics: metrics.clone(),
                    stop: stop_rx.clone(),
                };
                let slots = slots.clone();
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    connection.serve(tcp, peer, slot).await;
                    metrics.connections_open(slots.open());
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    let _ = stop_tx.send(true);
    tokio::select! {
        () = slots.all_closed() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!(?grace, "connections still open after the grace period; exiting"),
    }
}

/// When each kind of refusal was last logged: one line a minute at most per
/// reason, since the counter has the rate.
#[derive(Default)]
struct RefusedLog([Option<Instant>; 3]);

impl RefusedLog {
    fn warn(
        &mut self,
        refused: Refused,
        peer: std::net::SocketAddr,
        limits: &Limits,
        slots: &Slots,
    ) {
        let at = &mut self.0[refused as usize];
        if at.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
            return;
        }
        *at = Some(Instant::now());
        match refused {
            Refused::Total => tracing::warn!(
                %peer,
                max = slots.max(),
                "connection limit reached; closing new connections until some end"
            ),
            Refused::PerClient => tracing::warn!(
                %peer,
                per_client = limits.max_connections_per_client,
                pending_handshakes_per_client = slots.handshakes_per_client(),
                "one client address holds its share of the connections or of the pending TLS handshakes; closing its new connections until some end (behind a mesh sidecar or a proxy, raise --max-connections-per-client)"
            ),
            Refused::Handshakes => tracing::warn!(
                %peer,
                max_pending_handshakes = limits.max_pending_handshakes,
                "too many TLS handshakes in progress; closing new connections until some finish or time out"
            ),
        }
    }
}

/// What one connection's task needs.
struct Connection {
    acceptor: TlsAcceptor,
    builder: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    limits: Arc<Limits>,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
}

impl Connection {
    /// Serves one connection; `slot` is held to the end, its handshake
    /// permit only until TLS is over.
    async fn serve(
        mut self,
        tcp: tokio::net::TcpStream,
        peer: std::net::SocketAddr,
        mut slot: Slot,
    ) {
        let handshake =
            tokio::time::timeout(self.limits.tls_handshake_timeout, self.acceptor.accept(tcp));
        let stream = tokio::select! {
            done = handshake => match done {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    self.metrics.connection_closed("handshake_timeout");
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            },
            _ = self.stop.wait_for(|stop| *stop) => return,
        };
        slot.handshake_done();
        let activity = Arc::new(Activity::new());
        let tracked = activity.clone();
        let router = self.router.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let in_flight = tracked.begin();
            let router = router.clone();
            async move {
                let response = router.oneshot(req.map(axum::body::Body::new)).await;
                drop(in_flight);
                response
            }
        });
        let conn = self
            .builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::pin!(conn);
        let idle_timeout = self.limits.idle_timeout;
        let mut closing = false;
        loop {
            tokio::select! {
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = idle(&activity, idle_timeout), if !closing => {
                    self.metrics.connection_closed("idle_timeout");
                    tracing::debug!(%peer, ?idle_timeout, "idle connection closed");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = self.stop.wait_for(|stop| *stop), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_idle_only_with_nothing_in_flight() {
        let a = Arc::new(Activity::new());
        let timeout = Duration::from_secs(60);
        let quiet = a.idle_from(timeout).unwrap();
        assert!(quiet > Instant::now() + Duration::from_secs(59));
        let guard = a.begin();
        assert_eq!(a.idle_from(timeout), None);
        drop(guard);
        assert!(a.idle_from(timeout).unwrap() >= quiet);
    }
}
