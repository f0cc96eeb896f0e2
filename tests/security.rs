//! The defences docs/security.md lists, each shown from outside: the TLS
//! versions and suites the webhook accepts, nothing on a workload that
//! switches a rule off, and no object data on the metrics port or in logs.

mod common;

use std::process::Command;

use common::*;
use serde_json::{Value, json};

fn openssl(args: &[&str], addr: std::net::SocketAddr, ca: &std::path::Path) -> (bool, String) {
    let out = Command::new("openssl")
        .arg("s_client")
        .args(args)
        .args([
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
            "-CAfile",
        ])
        .arg(ca)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl is required (apt-get install openssl; .ci/run installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = text.contains("Verify return code: 0 (ok)") && !text.contains("Cipher is (NONE)");
    (ok, text)
}

#[test]
fn only_tls_1_2_and_1_3_with_forward_secret_aead_suites_are_served() {
    install_crypto();
    let pki = Pki::new("security-tls");
    let srv = Server::start(&pki, &["--baseline"]);
    let ca = pki.dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let (ok, text) = openssl(&["-tls1_3"], srv.addr, &ca);
    assert!(ok, "TLS 1.3 must be served: {text}");
    let (ok, text) = openssl(
        &[
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
        ],
        srv.addr,
        &ca,
    );
    assert!(
        ok,
        "TLS 1.2 with an ECDHE AEAD suite must be served: {text}"
    );
    for (what, args) in [
        ("TLS 1.1", vec!["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]),
        ("TLS 1.0", vec!["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"]),
        (
            "TLS 1.2 with RSA key exchange",
            vec!["-tls1_2", "-cipher", "AES128-GCM-SHA256:AES256-GCM-SHA384"],
        ),
        (
            "TLS 1.2 with CBC",
            vec![
                "-tls1_2",
                "-cipher",
                "ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA",
            ],
        ),
    ] {
        let (ok, text) = openssl(&args, srv.addr, &ca);
        // Refused by the server (it answers the hello with an alert), not
        // by openssl declining to try.
        assert!(
            !ok && (text.contains("alert handshake failure")
                || text.contains("alert protocol version")),
            "{what} must be refused by the server: {text}"
        );
    }
}

fn first(path: &str) -> Value {
    yaml_file(path).remove(0)
}

#[tokio::test]
async fn nothing_on_the_workload_switches_a_rule_off() {
    install_crypto();
    let pki = Pki::new("security-self");
    let srv = Server::start(&pki, &["--baseline"]);
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let bad = first("examples/bad/image-provenance.yaml");
    let (_, plain) = h2
        .post("/validate", &review("CREATE", Some(&bad), false))
        .await;
    assert_eq!(plain["response"]["allowed"], false);
    let verdict = |v: &Value| {
        (
            v["response"]["allowed"].clone(),
            v["response"]["status"]["message"].as_str().map(|m| {
                // The message names the object; compare the rule lines.
                m.lines()
                    .filter(|l| l.contains('['))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            }),
        )
    };
    // What a workload author might try: our own group, the usual exemption
    // spellings of other admission controllers, AKS's enforcer switch.
    let keys = [
        "waf-admission.dev/exempt",
        "waf-admission.dev/disabled",
        "waf-admission.dev/skip",
        "waf-admission.dev/rules",
        "admissions.enforcer/disabled",
        "policies.kyverno.io/exclude",
        "admission.gatekeeper.sh/ignore",
        "sidecar.istio.io/inject",
    ];
    for key in keys {
        for place in ["labels", "annotations"] {
            let mut d = bad.clone();
            d["metadata"][place][key] = json!("true");
            d["spec"]["template"]["metadata"][place][key] = json!("true");
            let (_, r) = h2
                .post("/validate", &review("CREATE", Some(&d), false))
                .await;
            assert_eq!(
                verdict(&r),
                verdict(&plain),
                "{place} {key} changed the verdict"
            );
        }
    }
}

#[tokio::test]
async fn the_metrics_port_and_the_logs_carry_no_object_data() {
    install_crypto();
    let pki = Pki::new("security-leak");
    let srv = Server::start(&pki, &["--baseline"]);
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let mut d = first("examples/bad/image-provenance.yaml");
    let marker_value = "pa55w0rd-value-that-must-not-leak";
    d["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "AZURE_OPENAI_API_KEY", "value": marker_value}]);
    d["metadata"]["annotations"] = json!({"note": "annotation-value-that-must-not-leak"});
    let (_, r) = h2
        .post("/validate", &review("CREATE", Some(&d), false))
        .await;
    assert_eq!(r["response"]["allowed"], false);
    let (status, body) = h2.request("GET", "/metrics", Vec::new()).await;
    assert_eq!(status, 200);
    let metrics = String::from_utf8(body).unwrap();
    for needle in [
        marker_value,
        "annotation-value-that-must-not-leak",
        "ollama",
        "AZURE_OPENAI",
    ] {
        assert!(!metrics.contains(needle), "/metrics carries {needle:?}");
    }
    assert!(srv.logged("admission decision", std::time::Duration::from_secs(5)));
    let logs = srv.log_lines().join("\n");
    for needle in [marker_value, "annotation-value-that-must-not-leak"] {
        assert!(
            !logs.contains(needle),
            "the log carries {needle:?}:\n{logs}"
        );
    }
    let answer = r.to_string();
    assert!(
        !answer.contains(marker_value),
        "the denial echoes the env value: {answer}"
    );
}
