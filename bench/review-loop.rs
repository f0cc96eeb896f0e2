//! Answers one AdmissionReview N times in-process — parse, judge, encode,
//! metrics, the decision log line (JSON, to a sink) — with no network, for
//! a profiler or an instruction counter to look at the request path alone:
//!
//!   cargo build --profile image --example review-loop
//!   valgrind --tool=callgrind target/image/examples/review-loop 2000
//!   perf record -g target/image/examples/review-loop 200000
//!
//! Arguments: N (default 10000) and the review (default the GPU Deployment
//! `kubectl apply` sends, tests/fixtures/reviews/gpu-deployment-apply.json).
//! Prints the mean wall time per review.

use std::time::{Duration, Instant};

use waf_admission::PolicySet;
use waf_admission::state::State;
use waf_admission::webhook::admission::{self, Endpoint};
use waf_admission::webhook::metrics::Metrics;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let path = args
        .next()
        .unwrap_or_else(|| "tests/fixtures/reviews/gpu-deployment-apply.json".into());
    let body = std::fs::read(&path)?;
    // As `serve --log-format json` logs, to a sink instead of stdout.
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .event_format(waf_admission::log_format::JsonLines::new())
        .with_env_filter("info")
        .with_writer(std::io::sink)
        .init();
    let state = State::standalone(PolicySet::baseline()?);
    let metrics = Metrics::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let future = admission::review(
        Endpoint::Validate,
        &body,
        &state,
        &metrics,
        None,
        Instant::now(),
        jiff::Timestamp::now(),
    );
    // What each request's task holds across its await points.
    let future_bytes = std::mem::size_of_val(&future);
    drop(future);
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..n {
        let review = runtime
            .block_on(admission::review(
                Endpoint::Validate,
                &body,
                &state,
                &metrics,
                None,
                Instant::now() + Duration::from_secs(4),
                jiff::Timestamp::now(),
            ))
            .map_err(|e| anyhow::anyhow!("{path}: {}", e.0))?;
        bytes += admission::encode(&review)?.len();
    }
    let per = started.elapsed() / n as u32;
    println!(
        "{n} reviews of {path} ({} bytes): {per:?} each, {} response bytes each; \
         the review's future is {future_bytes} bytes",
        body.len(),
        bytes / n
    );
    Ok(())
}
