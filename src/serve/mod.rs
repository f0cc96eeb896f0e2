//! `waf-admission serve`: the wiring. From the flags ([`Args`]) to the
//! running webhook: the shared state (standalone from policy files or the
//! baseline, or following the cluster), TLS, the listeners, the
//! background tasks, and shutdown.
//!
//! Every task started here runs in one supervised set ([`Tasks`]): the
//! HTTPS server, the metrics listener, the policy-file follower, the
//! cluster controller, the log-drop counter and the termination handler.
//! One that ends while the process is not shutting down ends [`run`] with
//! an error naming it, so the process exits non-zero and Kubernetes
//! restarts it, instead of serving on with policies no longer reloaded or
//! a view that no longer follows the cluster. After SIGTERM (or Ctrl-C)
//! the replica turns unready, keeps serving for `--shutdown-delay`, then
//! closes its listeners and lets requests in flight finish within
//! `--shutdown-timeout`; tasks ending then are expected.

pub mod args;

pub use crate::tasks::{Ended, Task, Tasks};
pub use args::{Args, LimitArgs, LogFormat, RegistryArgs};

use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::log_writer::{self, LogWriter};
use crate::state::State;
use crate::webhook::{self, App, metrics::Metrics, tls};
use crate::{Error, Result};

/// The HTTPS server's task: when it ends after the termination signal,
/// requests have drained and `serve` is done.
const SERVER: &str = "webhook server";

/// How long, at exit, the Lease's release is waited for (it expires anyway).
const LEASE_RELEASE_WAIT: Duration = Duration::from_secs(3);

/// Logs go to stdout through a writer thread (`log_writer`): a request
/// formats its decision line and appends it to a bounded buffer, never
/// waiting on the pipe the container runtime reads; the thread writes what
/// has gathered in one go. The guard flushes what is queued when dropped,
/// at exit.
pub fn init_logging(format: LogFormat) -> std::io::Result<(log_writer::Flushed, LogWriter)> {
    let (writer, flushed) = LogWriter::spawn(std::io::stdout())?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.clone())
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .event_format(crate::log_format::JsonLines::new())
            .init(),
        LogFormat::Text => builder.init(),
    }
    Ok((flushed, writer))
}

/// Serves until SIGTERM or Ctrl-C (then drains, and returns Ok), or until
/// a supervised task ends (an error naming it). `log`, when given, is the
/// writer whose dropped lines are counted in the metrics.
pub async fn run(args: Args, log: Option<LogWriter>) -> Result<()> {
    // Installed now, before the listeners are announced: a SIGTERM sent
    // right after the "listening" line must find our handler, not the
    // default that kills.
    let termination = termination_signal();
    run_until(args, log, termination, Vec::new()).await
}

/// [`run`], shut down when `termination` resolves instead of at a signal,
/// with `extra` tasks supervised beside serve's own: for tests, which stop
/// or break a server in-process.
#[doc(hidden)]
pub async fn run_until(
    args: Args,
    log: Option<LogWriter>,
    termination: impl Future<Output = ()> + Send + 'static,
    extra: Vec<Task>,
) -> Result<()> {
    // First: a CA or credentials file that cannot be read stops the start.
    let registry = crate::provenance::registry::Registry::new(args.registry.config()?)?;
    let metrics = Arc::new(Metrics::new());
    let mut tasks = Tasks::new();
    if let Some(log) = log {
        let metrics = metrics.clone();
        tasks.spawn("log-drop counter", async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                metrics.log_lines_dropped(log.dropped());
            }
        });
    }
    // `--self-signed`'s CA file lives as long as `run`: removed when it
    // returns, so restarts leave nothing behind in $TMPDIR.
    let (tls_config, _self_signed_ca) = tls_config(&args, &metrics)?;
    // Turns true at the termination signal; the cluster side releases its
    // Lease then, and tasks ending from then on are expected.
    let (signalled_tx, signalled_rx) = watch::channel(false);
    let (state, lease_released) = start_state(&args, &metrics, &signalled_rx, &mut tasks).await?;
    for (name, task) in extra {
        tasks.spawn(name, task);
    }
    let app = Arc::new(App {
        state: state.clone(),
        metrics: metrics.clone(),
        registry: Some(registry),
    });

    // Turns true when the listeners are to close (after --shutdown-delay).
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let listener = webhook::bind(args.addr, "webhook")
        .await
        .map_err(|e| Error::start(format!("--addr {}", args.addr), e))?;
    if args.metrics_addr != "off" {
        let addr: SocketAddr = args
            .metrics_addr
            .parse()
            .map_err(|e| Error::start(format!("--metrics-addr {:?}", args.metrics_addr), e))?;
        let metrics_listener = webhook::bind(addr, "metrics")
            .await
            .map_err(|e| Error::start(format!("--metrics-addr {addr}"), e))?;
        tasks.spawn(
            "metrics listener",
            webhook::serve_metrics(
                metrics_listener,
                webhook::metrics_router(app.clone()),
                stopped(stop_rx.clone()),
            ),
        );
    }
    let delay = args.shutdown_delay;
    let ready_state = state.clone();
    tasks.spawn("termination handler", async move {
        termination.await;
        tracing::info!(?delay, "termination signal: no longer ready");
        ready_state.set_stopping();
        let _ = signalled_tx.send(true);
        tokio::time::sleep(delay).await;
        let _ = stop_tx.send(true);
    });
    tasks.spawn(
        SERVER,
        webhook::serve_tls(
            listener,
            tls_config,
            webhook::router(app),
            args.limits.limits(),
            metrics,
            stopped(stop_rx),
            args.shutdown_timeout,
        ),
    );

    supervise(&mut tasks, &signalled_rx).await?;
    if let Some(released) = lease_released {
        // Hand the Lease over before exiting, so status and audit move to
        // another replica at once; bounded, the Lease expires anyway. The
        // cluster controller still runs (it releases the Lease) until the
        // set is dropped.
        let _ = tokio::time::timeout(LEASE_RELEASE_WAIT, released.notified()).await;
    }
    Ok(())
}

/// Waits until the HTTPS server ends after the termination signal (Ok), or
/// any task ends before that signal (an error naming it).
async fn supervise(tasks: &mut Tasks, signalled: &watch::Receiver<bool>) -> Result<()> {
    while let Some((task, ended)) = tasks.next_ended().await {
        if !*signalled.borrow() {
            // A follower that no longer follows, or a view that no longer
            // follows the cluster, must not go on judging: exit, and let
            // Kubernetes restart us.
            return Err(Error::TaskEnded {
                task,
                ended: ended.to_string(),
            });
        }
        if task == SERVER {
            return Ok(());
        }
        tracing::info!(task, "{ended} while shutting down");
    }
    Ok(())
}

/// The server's TLS configuration, and `--self-signed`'s CA file, which
/// must outlive the server.
fn tls_config(
    args: &Args,
    metrics: &Arc<Metrics>,
) -> Result<(rustls::ServerConfig, Option<tempfile::NamedTempFile>)> {
    let provider = tls::provider();
    match (&args.tls_cert, &args.tls_key, args.self_signed) {
        (Some(cert), Some(key), false) => {
            let resolver = tls::ReloadingResolver::new(
                cert.clone(),
                key.clone(),
                provider.clone(),
                metrics.clone(),
            )
            .map_err(|e| Error::start("--tls-cert/--tls-key", e))?;
            let config = tls::server_config(provider, Arc::new(resolver))
                .map_err(|e| Error::start("--tls-cert/--tls-key", e))?;
            Ok((config, None))
        }
        (None, None, true) => {
            let what = "--self-signed";
            let (config, pem) =
                tls::self_signed(provider, metrics).map_err(|e| Error::start(what, e))?;
            // A fresh file only this user can read, never a fixed name in a
            // shared /tmp that another user could have planted first.
            let mut file = tempfile::Builder::new()
                .prefix("waf-admission-localhost-")
                .suffix(".pem")
                .tempfile()
                .map_err(|e| Error::start(what, e))?;
            std::io::Write::write_all(&mut file, pem.as_bytes())
                .map_err(|e| Error::start(what, e))?;
            tracing::info!(ca = %file.path().display(), "self-signed certificate for localhost; trust it with curl --cacert (the file is removed at exit)");
            Ok((config, Some(file)))
        }
        _ => Err(Error::start(
            "TLS",
            "give --tls-cert and --tls-key, or --self-signed",
        )),
    }
}

/// The state the webhook judges with, and the tasks that keep it current:
/// the built-in baseline (none), policy files (their follower), or the
/// cluster (the controller; then also what is notified when its Lease is
/// released).
async fn start_state(
    args: &Args,
    metrics: &Arc<Metrics>,
    signalled: &watch::Receiver<bool>,
    tasks: &mut Tasks,
) -> Result<(Arc<State>, Option<Arc<Notify>>)> {
    if args.baseline {
        let state = Arc::new(
            State::standalone(crate::PolicySet::baseline()?)
                .with_operators(args.operator_accounts.clone()),
        );
        return Ok((state, None));
    }
    if !args.policies.is_empty() {
        let files = webhook::policy_files::PolicyFiles::new(args.policies.clone());
        let set = files
            .load()
            .map_err(|why| Error::start("policy refused", why))?;
        tracing::info!(
            policies = set.policies().len(),
            "standalone mode: policies from files, followed for changes"
        );
        let state = Arc::new(State::standalone(set).with_operators(args.operator_accounts.clone()));
        tasks.spawn(
            "policy-file follower",
            webhook::policy_files::follow(
                files,
                state.clone(),
                metrics.clone(),
                webhook::policy_files::POLL,
            ),
        );
        return Ok((state, None));
    }
    // Cluster mode: policies, exceptions and autoscalers from the API
    // server, through reflectors; not ready until they have synced.
    let client = kube::Client::try_default().await.map_err(|e| {
        Error::start(
            "no --policy or --baseline given, so policies come from the cluster, but no cluster is reachable (in-cluster config or KUBECONFIG)",
            e,
        )
    })?;
    let prices_configmap = match args.prices_configmap.as_deref() {
        None => None,
        Some(named) => match named.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Some((ns.to_owned(), name.to_owned()))
            }
            _ => {
                return Err(Error::start(
                    "--prices-configmap",
                    format!("{named:?} is not NAMESPACE/NAME"),
                ));
            }
        },
    };
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let state = Arc::new(State::for_cluster(tx).with_operators(args.operator_accounts.clone()));
    let released = Arc::new(Notify::new());
    let options = crate::cluster::ClusterOptions {
        pod_name: args.pod_name.clone(),
        namespace: args.namespace.clone(),
        lease_name: "waf-admission-controller".into(),
        audit_interval: args.audit_interval,
        stopping: signalled.clone(),
        lease_released: released.clone(),
        metrics: metrics.clone(),
        reports: args.reports,
        secrets: args.registry_secrets.clone(),
        prices_configmap,
    };
    let controller = crate::cluster::run(client, state.clone(), rx, options);
    tasks.spawn_saying("cluster controller", async move { Some(controller.await) });
    tracing::info!("cluster mode: policies from WellArchitectedPolicy objects");
    Ok((state, Some(released)))
}

/// Installs the SIGTERM handler at once and returns what resolves when
/// SIGTERM (or Ctrl-C) arrives.
fn termination_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
