//! The floor `/validate` is measured against (`bench/compare.sh`): a
//! webhook on exactly the stack `waf-admission serve` runs — the same
//! listener, limits, TLS configuration (rustls, ring, ALPN h2 and
//! http/1.1), HTTP/2 settings, allocator and tokio runtime — that reads the
//! body, scans it for the request's uid and answers allowed, judging
//! nothing and logging nothing per request.
//!
//! With `--parse` it also reads the whole body as JSON first (serde_json,
//! every value stepped over, nothing built): the least any webhook that
//! reads its AdmissionReview pays, so the floor of a webhook that judges.
//! With `--kube` it reads the body as kube-rs's `AdmissionReview` (the
//! object as a `DynamicObject`) and answers with kube-rs's response, as the
//! skeleton of a kube-rs webhook does before it judges anything.
//!
//!   cargo run --release --example noop-webhook -- 127.0.0.1:8444 [--parse|--kube]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use waf_admission::webhook::{self, BODY_LIMIT, Limits, metrics::Metrics, tls};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The uid's value: the first `"uid":"…"` in the body, which in an
/// AdmissionReview is `request.uid` (it comes before `object`).
fn uid(body: &[u8]) -> &[u8] {
    const KEY: &[u8] = b"\"uid\":\"";
    let Some(at) = body.windows(KEY.len()).position(|w| w == KEY) else {
        return b"";
    };
    let rest = &body[at + KEY.len()..];
    let end = rest.iter().position(|b| *b == b'"').unwrap_or(rest.len());
    &rest[..end]
}

async fn validate(body: Bytes) -> impl IntoResponse {
    answer(&body)
}

async fn parse_then_validate(body: Bytes) -> axum::response::Response {
    match serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
        Ok(_) => answer(&body).into_response(),
        Err(e) => (axum::http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn kube_skeleton(body: Bytes) -> axum::response::Response {
    use kube::core::DynamicObject;
    use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (axum::http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => return (axum::http::StatusCode::BAD_REQUEST, format!("{e}")).into_response(),
    };
    match serde_json::to_vec(&AdmissionResponse::from(&request).into_review()) {
        Ok(out) => ([(header::CONTENT_TYPE, "application/json")], out).into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn answer(body: &[u8]) -> impl IntoResponse + use<> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":""#,
    );
    out.extend_from_slice(uid(body));
    out.extend_from_slice(br#"","allowed":true}}"#);
    ([(header::CONTENT_TYPE, "application/json")], out)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8444".into())
        .parse()?;
    let route = match args.next().as_deref() {
        None => post(validate),
        Some("--parse") => post(parse_then_validate),
        Some("--kube") => post(kube_skeleton),
        Some(other) => anyhow::bail!("unknown argument {other:?}: expected --parse or --kube"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let metrics = Arc::new(Metrics::new());
        let (config, _) = tls::self_signed(tls::provider(), &metrics)?;
        let router = Router::new()
            .route("/validate", route)
            .layer(DefaultBodyLimit::max(BODY_LIMIT));
        let listener = webhook::bind(addr, "noop webhook").await?;
        webhook::serve_tls(
            listener,
            config,
            router,
            Limits::default(),
            metrics,
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
            Duration::from_secs(1),
        )
        .await;
        Ok(())
    })
}
