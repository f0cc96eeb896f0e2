//! A steady 500 /validate requests a second for 60 s through haproxy (TCP
//! mode, kube-proxy in miniature) to two replicas of the real binary, while
//! the serving certificate rotates twice (a Secret volume's `..data`
//! symlink swap), each replica in turn is replaced by a new process, then
//! sent SIGTERM (a rolling update with surge), and then the policy file the
//! replicas serve with changes under them (`serve --policy FILE` follows
//! it, as a ConfigMap mount is updated in place).
//!
//! Counted: every request issued, answered, failed; retried only where the
//! server provably did not process it (GOAWAY past its last stream,
//! REFUSED_STREAM, no connection), as the apiserver's Go client retries.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

use crate::common::{self, Pki, Server};
use crate::load::{self, Outcome, Pool, Tally, ms};

const RATE: u32 = 500;
const SECONDS: u32 = 60;

/// A CA that signs a new serving certificate at each rotation.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "rolling CA");
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// (certificate PEM, key PEM, DER of the certificate)
    fn leaf(&self, name: &str) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

/// A Secret volume as the kubelet writes it: `tls.crt -> ..data/tls.crt`,
/// `..data -> ..<version>`, and an update swaps `..data` in one rename.
fn write_secret_volume(dir: &Path, version: u32, cert: &str, key: &str) {
    let versioned = dir.join(format!("..v{version}"));
    std::fs::create_dir_all(&versioned).unwrap();
    std::fs::write(versioned.join("tls.crt"), cert).unwrap();
    std::fs::write(versioned.join("tls.key"), key).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..v{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for file in ["tls.crt", "tls.key"] {
        let link = dir.join(file);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{file}"), &link).unwrap();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy(dir: &Path, port: u16, backends: &[u16]) -> Haproxy {
    let mut cfg = format!(
        "global
  maxconn 4096
defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  retries 3
  option redispatch
frontend webhook
  bind 127.0.0.1:{port}
  default_backend replicas
backend replicas
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  default-server check check-ssl verify none inter 100ms fall 1 rise 1
"
    );
    for (i, p) in backends.iter().enumerate() {
        cfg.push_str(&format!("  server replica-{i} 127.0.0.1:{p}\n"));
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy (apt-get install haproxy)");
    Haproxy(child)
}

fn replica(pki: &Pki, port: u16, policy: &Path) -> Server {
    Server::start_at(
        pki,
        &[],
        &format!("127.0.0.1:{port}"),
        &[
            "--policy",
            policy.to_str().unwrap(),
            // Out of haproxy's rotation (checks every 100 ms) before the
            // listener closes.
            "--shutdown-delay",
            "1s",
        ],
    )
}

/// SIGTERM, then the exit; the replica must exit cleanly.
fn stop(mut server: Server, name: &str) -> Duration {
    let started = Instant::now();
    server.terminate();
    let status = server.wait();
    assert!(status.success(), "{name} exited with {status}");
    started.elapsed()
}

/// One request's record: when it was issued (from the start of the run)
/// and whether the answer came from the changed policy.
struct Record {
    at: Duration,
    changed_policy: Option<bool>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault suite: run by tests/faults/run.sh"]
async fn rolling_restart_rotation_and_policy_change_lose_no_request() {
    common::install_crypto();
    let dir = common::temp_dir("fault-rolling");
    let ca = Ca::new();
    let leaves: Vec<_> = (0..3)
        .map(|i| ca.leaf(&format!("rolling leaf {i}")))
        .collect();
    let secret = dir.join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    write_secret_volume(&secret, 0, &leaves[0].0, &leaves[0].1);
    let pki = Pki {
        dir: dir.clone(),
        ca_pem: ca.pem.clone(),
        cert: secret.join("tls.crt"),
        key: secret.join("tls.key"),
    };
    let baseline = waf_admission::policy::baseline::BASELINE_YAML;
    let marker = "    modelLineage:                    # Off until a policy sets its action\n";
    assert!(
        baseline.contains(marker),
        "the baseline's modelLineage line moved"
    );
    let policy: PathBuf = dir.join("policy.yaml");
    std::fs::write(&policy, baseline).unwrap();
    let changed = baseline.replace(marker, "    modelLineage:\n      action: Warn\n");

    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let front = free_port();
    let a = replica(&pki, ports[0], &policy);
    let b = replica(&pki, ports[1], &policy);
    let _haproxy = haproxy(&dir, front, &ports);
    let front: SocketAddr = format!("127.0.0.1:{front}").parse().unwrap();
    // Up when haproxy answers through a replica.
    let deadline = Instant::now() + Duration::from_secs(20);
    let warm = Pool::new(front, &ca.pem, 1);
    loop {
        if let (Outcome::Answered { .. }, _) = warm
            .request(
                "/validate",
                &load::uid(0xa, 0),
                Instant::now() + Duration::from_millis(200),
            )
            .await
        {
            break;
        }
        assert!(Instant::now() < deadline, "haproxy never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(warm);

    let pool = Pool::new(front, &ca.pem, 4);
    let records = Arc::new(Mutex::new(Vec::<Record>::new()));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let run = Instant::now();
    let generator = {
        let (pool, records, tally) = (pool.clone(), records.clone(), tally.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut tasks = Vec::with_capacity((RATE * SECONDS) as usize);
            for n in 0..u64::from(RATE * SECONDS) {
                tick.tick().await;
                let (pool, records, tally) = (pool.clone(), records.clone(), tally.clone());
                tasks.push(tokio::spawn(async move {
                    let at = run.elapsed();
                    let id = load::uid(0x5011, n);
                    let (outcome, retries) = pool
                        .request("/validate", &id, Instant::now() + Duration::from_secs(10))
                        .await;
                    let changed_policy = match &outcome {
                        Outcome::Answered { body, .. } => {
                            Some(body.windows(15).any(|w| w == b"[model-lineage]"))
                        }
                        _ => None,
                    };
                    records.lock().unwrap().push(Record { at, changed_policy });
                    tally.lock().unwrap().add(outcome, retries);
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        })
    };
    // Which certificate a new connection through haproxy is served, twice a second.
    let (seen_tx, mut seen_rx) = tokio::sync::watch::channel(false);
    let observer = {
        let ca = ca.pem.clone();
        let ders: Vec<Vec<u8>> = leaves.iter().map(|l| l.2.clone()).collect();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                if let Ok(mut h2) = common::H2::connect(front, &ca).await {
                    let which = ders
                        .iter()
                        .position(|d| d.as_slice() == h2.peer_cert.as_ref());
                    // H2::request panics on a connection error: caught here,
                    // as a replica may be going away under this connection.
                    let asked =
                        tokio::spawn(
                            async move { h2.request("GET", "/healthz", Vec::new()).await.0 },
                        );
                    if let Ok(status) = asked.await {
                        seen.push((run.elapsed(), which, status));
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = seen_rx.wait_for(|s| *s) => return seen,
                }
            }
        })
    };

    let at = |s: u64| tokio::time::sleep_until((run + Duration::from_secs(s)).into());
    // A new replica, started off the runtime.
    let new_replica = |port: u16| {
        let (pki, policy) = (pki.clone(), policy.clone());
        tokio::task::spawn_blocking(move || replica(&pki, port, &policy))
    };
    at(10).await;
    write_secret_volume(&secret, 1, &leaves[1].0, &leaves[1].1);
    let rotated_1 = run.elapsed();
    at(15).await;
    let a2 = new_replica(ports[2]).await.unwrap();
    let a_stop = tokio::task::spawn_blocking(move || stop(a, "replica A"))
        .await
        .unwrap();
    at(30).await;
    write_secret_volume(&secret, 2, &leaves[2].0, &leaves[2].1);
    let rotated_2 = run.elapsed();
    at(35).await;
    let b2 = new_replica(ports[3]).await.unwrap();
    let b_stop = tokio::task::spawn_blocking(move || stop(b, "replica B"))
        .await
        .unwrap();
    at(45).await;
    // The policy changes as a ConfigMap update lands: a new file renamed
    // over the old one, under both running replicas.
    let staged = dir.join("policy.yaml.new");
    std::fs::write(&staged, &changed).unwrap();
    std::fs::rename(&staged, &policy).unwrap();
    let policy_changed = run.elapsed();
    let (a2, b2) = tokio::task::spawn_blocking(move || {
        for (r, name) in [(&a2, "A2"), (&b2, "B2")] {
            assert!(
                r.logged("policy files reloaded", Duration::from_secs(10)),
                "replica {name} did not reload the changed policy file"
            );
        }
        (a2, b2)
    })
    .await
    .unwrap();
    // Both have logged it (the log is read a little behind, so later than
    // the swap itself).
    let reloaded = run.elapsed();

    generator.await.unwrap();
    let _ = seen_tx.send(true);
    let seen = observer.await.unwrap();
    let elapsed = run.elapsed();
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    let records = std::mem::take(&mut *records.lock().unwrap());

    // Once both replicas reloaded only the new policy answers; before the
    // file changed only the old.
    let old_after = records
        .iter()
        .filter(|r| r.at > reloaded && r.changed_policy == Some(false))
        .count();
    let new_before = records
        .iter()
        .filter(|r| r.at < policy_changed && r.changed_policy == Some(true))
        .count();
    let by_new = records
        .iter()
        .filter(|r| r.changed_policy == Some(true))
        .count();
    // Certificates: the observer's new connections see each leaf in turn.
    let leaf_after = |from: Duration| {
        seen.iter()
            .filter(|(t, ..)| *t > from + Duration::from_secs(1))
            .filter_map(|(_, which, _)| *which)
            .min()
    };
    let leaves_seen: Vec<usize> = {
        let mut v: Vec<usize> = seen.iter().filter_map(|(_, w, _)| *w).collect();
        v.sort();
        v.dedup();
        v
    };
    println!(
        "fault rolling: rate={RATE}/s for {SECONDS}s ({:.1}s); {}; answered by the changed policy={by_new} (file changed at {:.1}s, both reloaded by {:.1}s); replicas stopped in {:.1}s and {:.1}s; new connections reconnected={}; certificates served={leaves_seen:?} (rotated at {:.1}s and {:.1}s)",
        elapsed.as_secs_f64(),
        tally.line("requests"),
        policy_changed.as_secs_f64(),
        reloaded.as_secs_f64(),
        a_stop.as_secs_f64(),
        b_stop.as_secs_f64(),
        pool.connects.load(std::sync::atomic::Ordering::Relaxed),
        rotated_1.as_secs_f64(),
        rotated_2.as_secs_f64(),
    );
    assert_eq!(tally.sent, u64::from(RATE * SECONDS));
    assert_eq!(tally.failed, 0, "failures: {:?}", tally.failures);
    assert_eq!(tally.answered, tally.sent);
    assert_eq!(
        old_after, 0,
        "the old policy answered after both replicas reloaded the file"
    );
    assert_eq!(
        new_before, 0,
        "the new policy answered before the file changed"
    );
    assert!(by_new > 0);
    assert_eq!(leaves_seen, vec![0, 1, 2], "observer saw {seen:?}");
    assert_eq!(
        leaf_after(rotated_1),
        Some(1),
        "after the first rotation: {seen:?}"
    );
    assert_eq!(
        leaf_after(rotated_2),
        Some(2),
        "after the second rotation: {seen:?}"
    );
    assert!(seen.iter().all(|(.., status)| *status == 200), "{seen:?}");
    println!(
        "fault rolling latency: p50={:.2}ms p99={:.2}ms",
        ms(tally.percentile(0.5)),
        ms(tally.percentile(0.99))
    );
    drop((a2, b2));
}
