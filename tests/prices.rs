//! `waf-admission prices` against a loopback server that serves three
//! fixture pages of the Retail Prices API (tests/fixtures/prices), linked by
//! `NextPageLink`; and `check --prices` reading what it wrote. The real API
//! is not reachable from the test machines.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// What the server was asked: each request's path and query.
type Asked = Arc<Mutex<Vec<String>>>;

/// Serves the first page at /api/retail/prices and the others at
/// /next/<file>, rewriting each `NEXT` link to the server's address.
async fn serve(status: StatusCode) -> (SocketAddr, Asked) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let asked: Asked = Arc::default();
    let page = move |name: String| {
        let text = std::fs::read_to_string(fixtures().join("prices").join(&name)).unwrap();
        text.replace("NEXT/", &format!("http://{addr}/next/"))
    };
    let first = move |State(asked): State<Asked>, RawQuery(q): RawQuery| async move {
        asked
            .lock()
            .unwrap()
            .push(format!("/api/retail/prices?{}", q.unwrap_or_default()));
        (status, page("page1.json".into()))
    };
    let next = move |State(asked): State<Asked>, UrlPath(name): UrlPath<String>| async move {
        asked.lock().unwrap().push(format!("/next/{name}"));
        page(name)
    };
    let app = Router::new()
        .route("/api/retail/prices", get(first))
        .route("/next/{name}", get(next))
        .with_state(asked.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, asked)
}

async fn prices(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_waf-admission"))
            .arg("prices")
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn pages_through_next_links_and_keeps_linux_pay_as_you_go_gpu_sizes() {
    let (addr, asked) = serve(StatusCode::OK).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("prices.yaml");
    let run = prices(vec![
        "--region".into(),
        "eastus".into(),
        "--api".into(),
        format!("http://{addr}/api/retail/prices"),
        "--out".into(),
        out.display().to_string(),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("2 GPU VM size(s) priced in eastus"),
        "{stderr}"
    );
    assert_eq!(
        *asked.lock().unwrap(),
        [
            "/api/retail/prices?api-version=2023-01-01-preview&$filter=serviceName%20eq%20%27Virtual%20Machines%27%20and%20priceType%20eq%20%27Consumption%27%20and%20armRegionName%20eq%20%27eastus%27",
            "/next/page2.json",
            "/next/page3.json",
        ]
    );
    let written = std::fs::read_to_string(&out).unwrap();
    let table: serde_json::Value = serde_yaml_ng::from_str(&written).unwrap();
    assert_eq!(table["schema"], "waf-admission.dev/gpu-prices/v1");
    assert_eq!(table["currency"], "USD");
    assert_eq!(table["hoursPerMonth"], 730.0);
    assert!(table["generatedAt"].as_str().unwrap().starts_with("20"));
    // Spot, Low Priority, Windows, Reservation and DevTest meters dropped;
    // a CPU size is not kept.
    let eastus = table["regions"]["eastus"].as_object().unwrap();
    let kept: Vec<(&String, f64)> = eastus
        .iter()
        .map(|(size, p)| (size, p["payg"].as_f64().unwrap()))
        .collect();
    assert_eq!(
        kept,
        [
            (&"Standard_NC24ads_A100_v4".to_owned(), 3.0),
            (&"Standard_NC4as_T4_v3".to_owned(), 0.5)
        ]
    );

    // check reads it: 8 replicas × $3/h × 730 h = $17,520 a month.
    let check = tokio::task::spawn_blocking(move || {
        let rules = fixtures().join("rules/cost-budget");
        Command::new(env!("CARGO_BIN_EXE_waf-admission"))
            .arg("check")
            .arg("--policy")
            .arg(rules.join("policy.yaml"))
            .arg("--prices")
            .arg(&out)
            .arg(rules.join("fail-hpa-max-over-budget.yaml"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{text}");
    assert!(
        text.contains("× $3/h (eastus, Linux pay-as-you-go, prices of ")
            && text.contains("× 730 h = $17,520.00/month, above costBudget.maxMonthly $10,000.00"),
        "{text}"
    );
}

#[tokio::test]
async fn writes_a_whole_configmap_that_check_reads_back() {
    let (addr, _) = serve(StatusCode::OK).await;
    let run = prices(vec![
        "--region".into(),
        "eastus".into(),
        "--api".into(),
        format!("http://{addr}/api/retail/prices"),
        "--configmap".into(),
        "waf-gpu-prices".into(),
        "--namespace".into(),
        "waf".into(),
    ])
    .await;
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let cm: serde_json::Value = serde_yaml_ng::from_slice(&run.stdout).unwrap();
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "waf-gpu-prices");
    assert_eq!(cm["metadata"]["namespace"], "waf");
    let data = cm["data"]["prices.yaml"].as_str().unwrap();
    assert!(data.contains("Standard_NC4as_T4_v3"), "{data}");
}

#[tokio::test]
async fn an_api_error_is_named_and_fails() {
    let (addr, _) = serve(StatusCode::TOO_MANY_REQUESTS).await;
    let run = prices(vec![
        "--region".into(),
        "eastus".into(),
        "--api".into(),
        format!("http://{addr}/api/retail/prices"),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: GET http://{addr}/api/retail/prices?api-version="
        )) && stderr.contains("HTTP 429 Too Many Requests"),
        "{stderr}"
    );
    assert!(run.stdout.is_empty());
}

#[test]
fn check_names_a_bad_prices_file_and_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"Items": [{"armSkuName": "x", "retailPrice": "cheap"}]}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_waf-admission"))
        .arg("check")
        .arg("--prices")
        .arg(&bad)
        .arg(fixtures().join("rules/cost-budget/fail-hpa-max-over-budget.yaml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: --prices {}: field Items[0]",
            bad.display()
        )),
        "{stderr}"
    );
}
