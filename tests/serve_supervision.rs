//! `serve`'s supervision, in-process through the library: the real wiring
//! (HTTPS server, metrics listener, policy-file follower, termination
//! handler) with one task of the test's beside them. A task that ends
//! outside shutdown ends `serve` with an error naming it (the binary then
//! exits 2, as the last tests check); after the termination signal `serve`
//! drains and returns Ok.

use std::future::Future;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use clap::Parser;
use futures::FutureExt;
use waf_admission::policy::baseline::BASELINE_YAML;
use waf_admission::serve::{self, Args, Task};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: Args,
}

/// A loopback address with a port free a moment ago.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn args(addr: SocketAddr, extra: &[&str]) -> Args {
    let addr = addr.to_string();
    let base = [
        "serve",
        "--self-signed",
        "--addr",
        &addr,
        "--metrics-addr",
        "127.0.0.1:0",
    ];
    Cli::try_parse_from(base.iter().chain(extra)).unwrap().serve
}

/// Runs serve until it returns, within a bound.
async fn serve_until(
    args: Args,
    termination: impl Future<Output = ()> + Send + 'static,
    extra: Vec<Task>,
) -> waf_admission::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::time::timeout(
        Duration::from_secs(30),
        serve::run_until(args, None, termination, extra),
    )
    .await
    .expect("serve neither failed nor shut down within 30 s")
}

/// Waits until the webhook's port accepts a connection.
async fn listening(addr: SocketAddr) {
    for _ in 0..300 {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the webhook never listened on {addr}");
}

/// Waits until the webhook's port refuses connections: the listener is
/// dropped with its task, which an abort reaches a moment later.
async fn closed(addr: SocketAddr) -> bool {
    for _ in 0..300 {
        if TcpStream::connect(addr).is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_panics_ends_serve_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, BASELINE_YAML).unwrap();
    let addr = free_addr();
    let breaks = async move {
        // The server is up (and the follower following) when it breaks.
        listening(addr).await;
        panic!("the disk went away");
    };
    let ended = serve_until(
        args(addr, &["--policy", policy.to_str().unwrap()]),
        std::future::pending(),
        vec![("injected task", breaks.boxed())],
    )
    .await;
    let message = ended
        .expect_err("a panicked task must end serve")
        .to_string();
    assert_eq!(
        message,
        "the injected task panicked: the disk went away; exiting so the replica is restarted"
    );
    // The listeners closed with the set.
    assert!(closed(addr).await, "{addr} still accepts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_returns_before_shutdown_ends_serve_with_an_error_naming_it() {
    let addr = free_addr();
    let ended = serve_until(
        args(addr, &["--baseline"]),
        std::future::pending(),
        vec![("early task", listening(addr).boxed())],
    )
    .await;
    let message = ended
        .expect_err("a task that returned must end serve")
        .to_string();
    assert!(message.starts_with("the early task ended;"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_termination_signal_serve_drains_and_returns_ok() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, BASELINE_YAML).unwrap();
    let addr = free_addr();
    let (terminate, terminated) = tokio::sync::oneshot::channel::<()>();
    let termination = async move {
        let _ = terminated.await;
    };
    let serving = tokio::spawn(serve_until(
        args(
            addr,
            &[
                "--policy",
                policy.to_str().unwrap(),
                "--shutdown-delay",
                "200ms",
            ],
        ),
        termination,
        // Runs on until shutdown, as serve's own do: aborted, not an error.
        vec![("long task", std::future::pending().boxed())],
    ));
    listening(addr).await;
    terminate.send(()).unwrap();
    // Still accepting during --shutdown-delay.
    assert!(TcpStream::connect(addr).is_ok());
    let ended = serving.await.unwrap();
    assert!(ended.is_ok(), "{ended:?}");
    assert!(closed(addr).await, "{addr} still accepts");
}

/// What the binary does with `run`'s error: exit 2, the error logged.
#[test]
fn the_binary_exits_2_with_the_error_that_ended_serve() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_waf-admission"))
        .args([
            "serve",
            "--self-signed",
            "--baseline",
            "--addr",
            "127.0.0.1:0",
        ])
        .args(["--metrics-addr", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let logged = String::from_utf8_lossy(&out.stdout);
    assert!(logged.contains(r#"--metrics-addr "nowhere""#), "{logged}");
}

#[test]
fn a_duration_flag_that_is_no_go_duration_is_refused_by_name() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_waf-admission"))
        .args([
            "serve",
            "--self-signed",
            "--baseline",
            "--shutdown-delay",
            "5",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("--shutdown-delay") && said.contains("\"5\""),
        "{said}"
    );
}
