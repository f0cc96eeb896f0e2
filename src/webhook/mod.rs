//! `waf-admission serve`: the HTTPS admission webhook. axum routes on hyper
//! (HTTP/1.1 and HTTP/2 by ALPN) over rustls. The request path reads one
//! lock-free snapshot (see `state.rs`) and calls the pure engine; it never
//! calls the API server.

pub mod admission;
mod answer;
pub use crate::metrics;
pub mod policy_files;
mod policy_objects;
mod review;
pub mod serve;
mod slots;
pub mod tls;

pub use serve::{Limits, serve_tls};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, RawQuery, Request, State as AxumState};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

use self::admission::{BadRequest, Endpoint, Verdict};
use self::metrics::Metrics;
use crate::state::State;

/// The largest AdmissionReview accepted. etcd stores objects up to 1.5 MiB
/// and an UPDATE review carries the object twice (object and oldObject),
/// so 6 MiB leaves room for any object the apiserver can store.
pub const BODY_LIMIT: usize = 6 * 1024 * 1024;
/// The apiserver sends `?timeout=` (at most 30 s); this is the default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handlers share.
pub struct App {
    pub state: Arc<State>,
    pub metrics: Arc<Metrics>,
    /// Asks registries for digests and signatures, through its bounded
    /// cache; None: registry-dependent checks are reported as not checked.
    pub registry: Option<crate::provenance::registry::Registry>,
}

/// The webhook's routes, without TLS: tests call it in-process.
pub fn router(app: Arc<App>) -> Router {
    with_layers(routes(), app)
}

fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
}

/// The layers every route runs under: body limit, `?timeout=`, panic
/// catching, metrics. Public so tests can put a route of their own under them.
#[doc(hidden)]
pub fn with_layers(routes: Router<Arc<App>>, app: Arc<App>) -> Router {
    routes
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(honour_timeout))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

/// The plain-HTTP metrics listener's routes.
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(app)
}

async fn validate(
    AxumState(app): AxumState<Arc<App>>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(Endpoint::Validate, &app, query.as_deref(), body).await
}

async fn mutate(
    AxumState(app): AxumState<Arc<App>>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(Endpoint::Mutate, &app, query.as_deref(), body).await
}

async fn handle(
    endpoint: Endpoint,
    app: &App,
    query: Option<&str>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !app.state.is_synced() {
        // No verdict from an empty view of the cluster: the webhook's
        // failurePolicy decides (Fail refuses, Ignore admits) until it syncs.
        app.metrics.verdict(endpoint.as_str(), Verdict::Unavailable);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "waf-admission has not synced policies, exceptions, autoscalers and namespaces \
             from the API server yet: no verdict (the webhook's failurePolicy applies)\n",
        )
            .into_response();
    }
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "request body over the {} MiB limit",
                    BODY_LIMIT / (1024 * 1024)
                )
            } else {
                format!("could not read the request body: {rejection}")
            };
            tracing::warn!(endpoint = endpoint.as_str(), %status, "{message}");
            app.metrics.verdict(endpoint.as_str(), Verdict::Invalid);
            return (status, message).into_response();
        }
    };
    let deadline = registry_deadline(query, app.registry.as_ref());
    match admission::review(
        endpoint,
        &body,
        &app.state,
        &app.metrics,
        app.registry.as_ref(),
        deadline,
        jiff::Timestamp::now(),
    )
    .await
    {
        Ok(review) => match admission::encode(&review) {
            Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("encoding the response: {e}"),
            )
                .into_response(),
        },
        Err(BadRequest(message)) => {
            tracing::warn!(endpoint = endpoint.as_str(), "bad request: {message}");
            app.metrics.verdict(endpoint.as_str(), Verdict::Invalid);
            (StatusCode::BAD_REQUEST, message).into_response()
        }
    }
}

/// When registry answers are due: inside the apiserver's `?timeout=`
/// (less a fifth, at least 200 ms, for judging and the answer's way back),
/// and never later than the registry client's own timeout.
fn registry_deadline(
    query: Option<&str>,
    registry: Option<&crate::provenance::registry::Registry>,
) -> Instant {
    let now = Instant::now();
    let own = registry.map_or(Duration::from_secs(4), |r| r.config().timeout);
    let apiserver = request_timeout(query);
    let budget = match apiserver {
        Some(t) => t
            .saturating_sub((t / 5).max(Duration::from_millis(200)))
            .min(own),
        None => own,
    };
    now + budget
}

async fn readyz(AxumState(app): AxumState<Arc<App>>) -> Response {
    if app.state.is_ready() {
        "ready\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            if app.state.is_synced() {
                "not ready: shutting down\n"
            } else {
                "not ready: policies and caches have not synced\n"
            },
        )
            .into_response()
    }
}

async fn metrics_text(AxumState(app): AxumState<Arc<App>>) -> Response {
    // Read here, not pushed from every place that changes them: a scrape
    // sees what /readyz would answer at that moment.
    app.metrics
        .readiness(app.state.is_synced(), app.state.is_ready());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

async fn not_found(req: Request) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!(
            "no route for {} {}: the webhook serves POST /validate, POST /mutate, GET /healthz, /readyz, /metrics\n",
            req.method(),
            req.uri().path()
        ),
    )
        .into_response()
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked; answered 500 for that request only");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error while judging the request\n",
    )
        .into_response()
}

/// Answers before the apiserver gives up: `?timeout=10s` bounds the whole
/// request, body read included (a slow client cannot hold a worker).
async fn honour_timeout(req: Request, next: Next) -> Response {
    let limit = request_timeout(req.uri().query())
        .map(|d| d.min(Duration::from_secs(30)))
        .unwrap_or(DEFAULT_TIMEOUT);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            format!("no answer within the request's timeout of {limit:?}\n"),
        )
            .into_response(),
    }
}

/// The apiserver's `?timeout=` on an admission request.
fn request_timeout(query: Option<&str>) -> Option<Duration> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("timeout="))
        .and_then(|t| crate::duration::parse(t).ok())
        .filter(|t| !t.is_zero())
}

/// Counts every request by endpoint and status, and times it.
async fn observe(AxumState(app): AxumState<Arc<App>>, req: Request, next: Next) -> Response {
    let endpoint: &'static str = match req.uri().path() {
        "/validate" => "validate",
        "/mutate" => "mutate",
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        _ => "other",
    };
    let started = Instant::now();
    let response = next.run(req).await;
    app.metrics.request(
        endpoint,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Serves plain-HTTP metrics until `shutdown`.
pub async fn serve_metrics(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "metrics listener failed");
    }
}

/// Binds, and says where (the line tests and operators wait for).
pub async fn bind(addr: SocketAddr, what: &str) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "{what} listening");
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apiserver_timeout_is_a_positive_go_duration() {
        let timeout = |q: &str| request_timeout(Some(q));
        assert_eq!(timeout("timeout=10s"), Some(Duration::from_secs(10)));
        assert_eq!(
            timeout("dryRun=All&timeout=1m30s"),
            Some(Duration::from_secs(90))
        );
        assert_eq!(timeout("timeout=1.5s"), Some(Duration::from_millis(1500)));
        for none in [
            "timeout=0s",
            "timeout=",
            "timeout=10",
            "timeout=-1s",
            "other=1s",
        ] {
            assert_eq!(timeout(none), None, "{none}");
        }
    }

    #[test]
    fn registry_answers_are_due_well_inside_the_apiserver_timeout() {
        let due = |q: &str| registry_deadline(Some(q), None) - Instant::now();
        // 10 s from the apiserver: capped by the client's own 4 s.
        assert!(due("timeout=10s") <= Duration::from_secs(4));
        // 2 s: less a fifth.
        let d = due("timeout=2s");
        assert!(
            d <= Duration::from_millis(1600) && d > Duration::from_millis(1500),
            "{d:?}"
        );
        // 1 s: less the 200 ms floor.
        assert!(due("timeout=1s") <= Duration::from_millis(800));
    }
}
