//! The `waf-admission` binary: thin calls into the library.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use waf_admission::check;
use waf_admission::log_writer::{self, LogWriter};
use waf_admission::policy::baseline;
use waf_admission::state::State;
use waf_admission::webhook::{self, App, metrics::Metrics, tls};

// Every admission request allocates and frees a few hundred small objects
// across threads; mimalloc does that with a fraction of glibc's cost
// (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "waf-admission",
    version = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("WAF_GIT_REVISION"), ")"),
    about = "Holds AI model-serving workloads on AKS to the Azure Well-Architected Framework"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Judge manifests offline, with the verdicts the cluster would give.
    Check(Box<CheckArgs>),
    /// Run the HTTPS admission webhook.
    Serve(Box<ServeArgs>),
    /// Print the CustomResourceDefinitions generated from the Rust types.
    Crd {
        /// Write one file per CRD into this folder instead (manifests/crds).
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Print the field reference in Markdown instead (docs/crds.md).
        #[arg(long, conflicts_with = "out_dir")]
        docs: bool,
    },
    /// Print the built-in baseline policy (used when no --policy is given).
    Baseline,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// A WellArchitectedPolicy file (repeatable; all apply, the strictest
    /// action wins per rule). Default: the built-in baseline.
    #[arg(long = "policy", value_name = "FILE")]
    policies: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    output: Format,
    /// Files or folders to read (folders recursively: *.yaml, *.yml, *.json); `-` is stdin.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    filenames: Vec<PathBuf>,
    /// Files or folders to read, as with -f.
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Ask the registries the policies trust: pin tags (resolveDigests) and
    /// verify signatures. Without it check never touches the network.
    /// Pull secrets and key Secrets the policies name are read from the input.
    #[arg(long)]
    resolve_digests: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// The registry client's limits (serve, and check --resolve-digests).
#[derive(clap::Args, Clone)]
struct RegistryArgs {
    /// The longest one registry lookup (a digest, or a signature check) may
    /// take; the webhook also stays inside the apiserver's ?timeout=.
    #[arg(long, env = "WAF_REGISTRY_TIMEOUT", default_value = "4s", value_parser = waf_admission::duration::parse)]
    registry_timeout: Duration,
    /// How long a tag's digest is trusted before the registry is asked again
    /// (a tag moved in the registry is seen after at most this long).
    #[arg(long, env = "WAF_DIGEST_TTL", default_value = "5m", value_parser = waf_admission::duration::parse)]
    digest_ttl: Duration,
    /// How long a signature verdict for a digest is kept.
    #[arg(long, env = "WAF_VERDICT_TTL", default_value = "60m", value_parser = waf_admission::duration::parse)]
    verdict_ttl: Duration,
    /// How long a registry failure is remembered before the registry is asked again.
    #[arg(long, env = "WAF_REGISTRY_ERROR_TTL", default_value = "10s", value_parser = waf_admission::duration::parse)]
    registry_error_ttl: Duration,
    /// The registry cache's bound in bytes (digests and verdicts together).
    #[arg(long, env = "WAF_REGISTRY_CACHE_BYTES", default_value_t = 8 << 20)]
    registry_cache_bytes: u64,
    /// Signature manifests over this many bytes are refused.
    #[arg(long, default_value_t = 4 << 20)]
    registry_max_manifest_bytes: usize,
    /// A registry reached over plain HTTP instead of HTTPS (repeatable):
    /// for a loopback test registry, never for production.
    #[arg(long = "registry-plain-http", value_name = "HOST:PORT")]
    plain_http: Vec<String>,
    /// A PEM file of CA certificates to trust for registry TLS, beside the
    /// system's roots: a registry with a private CA (repeatable, or
    /// comma-separated; a file may hold several certificates).
    #[arg(
        long = "registry-ca",
        value_name = "FILE",
        env = "WAF_REGISTRY_CA",
        value_delimiter = ','
    )]
    registry_ca: Vec<PathBuf>,
    /// Registry credentials, a Docker config.json (`{"auths": {"HOST":
    /// {"auth": base64(user:password)}}}`, or `username` and `password`),
    /// read at start: used where a policy names no pullSecret (standalone
    /// serve, check). A policy's pullSecret wins.
    #[arg(
        long = "registry-credentials",
        value_name = "FILE",
        env = "WAF_REGISTRY_CREDENTIALS"
    )]
    registry_credentials: Option<PathBuf>,
}

impl RegistryArgs {
    fn config(&self) -> waf_admission::Result<waf_admission::provenance::RegistryConfig> {
        use waf_admission::provenance::{DockerConfig, read_ca_bundle};
        let mut extra_roots = Vec::new();
        for path in &self.registry_ca {
            extra_roots.extend(read_ca_bundle(path)?);
        }
        let credentials = match &self.registry_credentials {
            Some(path) => DockerConfig::read(path)?,
            None => DockerConfig::default(),
        };
        Ok(waf_admission::provenance::RegistryConfig {
            timeout: self.registry_timeout,
            digest_ttl: self.digest_ttl,
            verdict_ttl: self.verdict_ttl,
            error_ttl: self.registry_error_ttl,
            cache_bytes: self.registry_cache_bytes,
            max_manifest_bytes: self.registry_max_manifest_bytes,
            plain_http: self.plain_http.clone(),
            extra_roots,
            credentials,
            ..Default::default()
        })
    }
}

#[derive(clap::Args)]
struct ServeArgs {
    /// HTTPS address for /validate, /mutate, /healthz, /readyz and /metrics.
    #[arg(long, env = "WAF_ADDR", default_value = "0.0.0.0:8443")]
    addr: SocketAddr,
    /// PEM certificate chain; re-read when it changes (cert-manager rotation).
    #[arg(
        long,
        env = "WAF_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "self_signed"
    )]
    tls_cert: Option<PathBuf>,
    /// PEM private key matching --tls-cert.
    #[arg(long, env = "WAF_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Make a certificate for localhost at start (local use and tests).
    #[arg(long)]
    self_signed: bool,
    /// Standalone mode: judge with these policy files or folders instead
    /// of the cluster's WellArchitectedPolicies (repeatable). They are
    /// looked at every 2 s and reloaded when they change; a change that
    /// does not compile is refused and the previous policies stay.
    #[arg(
        long = "policy",
        value_name = "FILE",
        env = "WAF_POLICY",
        value_delimiter = ','
    )]
    policies: Vec<PathBuf>,
    /// Standalone mode with the built-in baseline policy.
    #[arg(long, conflicts_with = "policies")]
    baseline: bool,
    /// Plain-HTTP address for /metrics (also served on the HTTPS port); `off` to disable.
    #[arg(long, env = "WAF_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    metrics_addr: String,
    /// Log format.
    #[arg(long, env = "WAF_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// After SIGTERM, keep serving (not ready) this long so endpoints
    /// drain before the listener closes. Example: 5s.
    #[arg(long, env = "WAF_SHUTDOWN_DELAY", default_value = "0s", value_parser = waf_admission::duration::parse)]
    shutdown_delay: Duration,
    /// This replica's name (downward API), reported on the Events it writes.
    #[arg(long, env = "WAF_POD_NAME", default_value = "waf-admission")]
    pod_name: String,
    /// The namespace this replica runs in (downward API), home of its Lease.
    #[arg(long, env = "WAF_NAMESPACE", default_value = "waf-admission")]
    namespace: String,
    /// How often the background audit judges every existing workload.
    #[arg(long, env = "WAF_AUDIT_INTERVAL", default_value = "5m", value_parser = waf_admission::duration::parse)]
    audit_interval: Duration,
    /// Cluster mode: the policy report API the background audit writes:
    /// openreports (openreports.io/v1alpha1), wgpolicyk8s
    /// (wgpolicyk8s.io/v1alpha2, for Policy Reporter on the older API) or off.
    #[arg(long, env = "WAF_REPORTS", default_value = "openreports")]
    reports: waf_admission::cluster::reports::ReportFormat,
    /// The longest in-flight requests may run on after shutdown begins.
    #[arg(long, env = "WAF_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = waf_admission::duration::parse)]
    shutdown_timeout: Duration,
    /// Cluster mode: a Secret of this namespace that policies may name as a
    /// pullSecret or signing key (repeatable, or comma-separated). Only
    /// these are watched; the chart's Role grants just them.
    #[arg(
        long = "registry-secret",
        env = "WAF_REGISTRY_SECRETS",
        value_delimiter = ','
    )]
    registry_secrets: Vec<String>,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

/// What one client can hold of the webhook listener (defaults: `Limits::default()`).
#[derive(clap::Args, Clone)]
struct LimitArgs {
    /// TLS connections open at once; one more is closed at accept.
    #[arg(long, env = "WAF_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Of those, the most one client address (IP) may hold; one more from
    /// it is closed at accept. Behind a mesh sidecar or a proxy every client
    /// is one address: set it to --max-connections.
    #[arg(long, env = "WAF_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 256)]
    max_connections_per_client: usize,
    /// Connections still in their TLS handshake, in all; one more is closed
    /// at accept. One address may hold the same share of these as of the
    /// connections (per client / total).
    #[arg(long, env = "WAF_MAX_PENDING_HANDSHAKES", default_value_t = 128)]
    max_pending_handshakes: usize,
    /// The longest a client may take to finish the TLS handshake.
    #[arg(long, env = "WAF_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = waf_admission::duration::parse)]
    tls_handshake_timeout: Duration,
    /// HTTP/1: the longest a client may take to send request headers, and
    /// to start the next request on a kept-alive connection.
    #[arg(long, env = "WAF_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = waf_admission::duration::parse)]
    header_read_timeout: Duration,
    /// A connection with no request in flight this long is closed (HTTP/2: GOAWAY).
    #[arg(long, env = "WAF_IDLE_TIMEOUT", default_value = "60s", value_parser = waf_admission::duration::parse)]
    idle_timeout: Duration,
    /// HTTP/2 streams one connection may have open at once.
    #[arg(long, default_value_t = 100)]
    h2_max_concurrent_streams: u32,
    /// HTTP/2 rapid reset: streams the client reset before they were
    /// served, past which the connection gets GOAWAY ENHANCE_YOUR_CALM.
    #[arg(long, default_value_t = 20)]
    h2_max_pending_accept_reset_streams: usize,
    /// HTTP/2: streams the server reset for the client's protocol errors,
    /// past which the connection is closed.
    #[arg(long, default_value_t = 256)]
    h2_max_local_error_reset_streams: usize,
}

impl LimitArgs {
    fn limits(&self) -> webhook::Limits {
        webhook::Limits {
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
            max_pending_handshakes: self.max_pending_handshakes,
            tls_handshake_timeout: self.tls_handshake_timeout,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            h2_max_concurrent_streams: self.h2_max_concurrent_streams,
            h2_max_pending_accept_reset_streams: self.h2_max_pending_accept_reset_streams,
            h2_max_local_error_reset_streams: self.h2_max_local_error_reset_streams,
            ..webhook::Limits::default()
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
    /// SARIF 2.1.0, for code-scanning tabs.
    Sarif,
    /// JUnit XML, for CI test tabs.
    Junit,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => run_check(*args),
        Command::Serve(args) => run_serve(*args),
        Command::Crd { docs: true, .. } => {
            print!("{}", waf_admission::policy::crd::reference_markdown());
            ExitCode::SUCCESS
        }
        Command::Crd { out_dir, .. } => print_crds(out_dir),
        Command::Baseline => {
            print!("{}", baseline::BASELINE_YAML);
            ExitCode::SUCCESS
        }
    }
}

fn run_check(args: CheckArgs) -> ExitCode {
    let mut inputs = args.filenames;
    inputs.extend(args.paths);
    if inputs.is_empty() {
        eprintln!(
            "error: name the manifests to check: waf-admission check -f PATH (a file, a folder, or - for stdin)"
        );
        return ExitCode::from(2);
    }
    let set = match check::load_policies(&args.policies) {
        Ok(set) => set,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            eprintln!("error: no policy was applied: fix the policy files above");
            return ExitCode::from(2);
        }
    };
    let loaded = check::load(&inputs);
    let report = if args.resolve_digests && set.needs_registry() {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: cannot start the registry client: {e}");
                return ExitCode::from(2);
            }
        };
        let registry = args.registry.config().and_then(|config| {
            runtime.block_on(async { waf_admission::provenance::Registry::new(config) })
        });
        let registry = match registry {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        let timeout = registry.config().timeout;
        let gather = |queries: &[waf_admission::provenance::Query]| {
            runtime.block_on(registry.gather(queries, std::time::Instant::now() + timeout))
        };
        check::run_with(&set, loaded, jiff::Timestamp::now(), Some(&gather))
    } else {
        check::run(&set, loaded, jiff::Timestamp::now())
    };
    // Buffered: stdout is line-buffered, and a pretty-printed report of
    // thousands of workloads would be a write call per line.
    let mut stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let written = match args.output {
        Format::Json => serde_json::to_writer_pretty(&mut stdout, &report.to_json())
            .map_err(json_io_error)
            .and_then(|_| writeln!(stdout)),
        Format::Sarif => {
            serde_json::to_writer_pretty(&mut stdout, &check::sarif::to_sarif(&report))
                .map_err(json_io_error)
                .and_then(|_| writeln!(stdout))
        }
        Format::Junit => stdout.write_all(check::junit::to_junit(&report).as_bytes()),
        Format::Text => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            stdout.write_all(report.to_text(colour).as_bytes())
        }
    }
    .and_then(|_| stdout.flush());
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: writing the report: {e}");
        return ExitCode::from(2);
    }
    if args.output != Format::Text {
        for e in &report.errors {
            eprintln!("error: {e}");
        }
    }
    ExitCode::from(report.exit_code() as u8)
}

/// Keeps the I/O error's kind, so a closed pipe (`| head`) stays quiet.
fn json_io_error(e: serde_json::Error) -> std::io::Error {
    match e.io_error_kind() {
        Some(kind) => std::io::Error::from(kind),
        None => std::io::Error::other(e),
    }
}

fn print_crds(out_dir: Option<PathBuf>) -> ExitCode {
    use waf_admission::policy::crd;
    let result = match out_dir {
        None => crd::crd_yaml().map(|y| print!("{y}")),
        Some(dir) => crd::definitions().iter().try_for_each(|c| {
            let path = dir.join(crd::file_name(c));
            let yaml = crd::to_yaml(c)?;
            std::fs::write(&path, yaml).map_err(|source| waf_admission::Error::Io { path, source })
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stdout through a writer thread (`log_writer`): a request
/// formats its decision line and appends it to a bounded buffer, never
/// waiting on the pipe the container runtime reads; the thread writes what
/// has gathered in one go. The guard flushes what is queued when dropped,
/// at exit.
fn init_logging(format: LogFormat) -> std::io::Result<(log_writer::Flushed, LogWriter)> {
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
            .event_format(waf_admission::log_format::JsonLines::new())
            .init(),
        LogFormat::Text => builder.init(),
    }
    Ok((flushed, writer))
}

fn run_serve(args: ServeArgs) -> ExitCode {
    let (_log_flushed_at_exit, log) = match init_logging(args.log_format) {
        Ok(logging) => logging,
        Err(e) => {
            eprintln!("error: could not start the log writer thread: {e}");
            return ExitCode::from(2);
        }
    };
    // One crypto provider for the process, installed before any TLS use.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "could not start the async runtime");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(serve(args, log)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(2)
        }
    }
}

async fn serve(args: ServeArgs, log: LogWriter) -> anyhow::Result<()> {
    // First: a CA or credentials file that cannot be read stops the start.
    let registry = waf_admission::provenance::Registry::new(args.registry.config()?)?;
    let metrics = Arc::new(Metrics::new());
    {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                metrics.log_lines_dropped(log.dropped());
            }
        });
    }
    let provider = tls::provider();
    // `--self-signed`'s CA file lives as long as the process: removed when
    // `serve` returns, so restarts leave nothing behind in $TMPDIR.
    let mut _self_signed_ca = None;
    let tls_config = match (&args.tls_cert, &args.tls_key, args.self_signed) {
        (Some(cert), Some(key), false) => {
            let resolver = tls::ReloadingResolver::new(
                cert.clone(),
                key.clone(),
                provider.clone(),
                metrics.clone(),
            )?;
            tls::server_config(provider, Arc::new(resolver))?
        }
        (None, None, true) => {
            let (config, pem) = tls::self_signed(provider, &metrics)?;
            // A fresh file only this user can read, never a fixed name in a
            // shared /tmp that another user could have planted first.
            let mut file = tempfile::Builder::new()
                .prefix("waf-admission-localhost-")
                .suffix(".pem")
                .tempfile()?;
            std::io::Write::write_all(&mut file, pem.as_bytes())?;
            tracing::info!(ca = %file.path().display(), "self-signed certificate for localhost; trust it with curl --cacert (the file is removed at exit)");
            _self_signed_ca = Some(file);
            config
        }
        _ => anyhow::bail!("give --tls-cert and --tls-key, or --self-signed"),
    };
    // Turns true at SIGTERM; the cluster side releases its Lease then.
    let (signalled_tx, signalled_rx) = tokio::sync::watch::channel(false);
    let mut lease_released = None;
    let mut controller = None;
    let state = if args.baseline {
        Arc::new(State::standalone(waf_admission::PolicySet::baseline()?))
    } else if !args.policies.is_empty() {
        let files = webhook::policy_files::PolicyFiles::new(args.policies.clone());
        let set = files
            .load()
            .map_err(|why| anyhow::anyhow!("policy refused: {why}"))?;
        tracing::info!(
            policies = set.policies().len(),
            "standalone mode: policies from files, followed for changes"
        );
        let state = Arc::new(State::standalone(set));
        tokio::spawn(webhook::policy_files::follow(
            files,
            state.clone(),
            metrics.clone(),
            webhook::policy_files::POLL,
        ));
        state
    } else {
        // Cluster mode: policies, exceptions and autoscalers from the API
        // server, through reflectors; not ready until they have synced.
        let client = kube::Client::try_default().await.map_err(|e| {
            anyhow::anyhow!(
                "no --policy or --baseline given, so policies come from the cluster, but no cluster is reachable (in-cluster config or KUBECONFIG): {e}"
            )
        })?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let state = Arc::new(State::for_cluster(tx));
        let released = Arc::new(tokio::sync::Notify::new());
        lease_released = Some(released.clone());
        controller = Some(tokio::spawn(waf_admission::cluster::run(
            client,
            state.clone(),
            rx,
            waf_admission::cluster::ClusterOptions {
                pod_name: args.pod_name.clone(),
                namespace: args.namespace.clone(),
                lease_name: "waf-admission-controller".into(),
                audit_interval: args.audit_interval,
                stopping: signalled_rx.clone(),
                lease_released: released,
                metrics: metrics.clone(),
                reports: args.reports,
                secrets: args.registry_secrets.clone(),
            },
        )));
        tracing::info!("cluster mode: policies from WellArchitectedPolicy objects");
        state
    };
    let app = Arc::new(App {
        state: state.clone(),
        metrics: metrics.clone(),
        registry: Some(registry),
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Before the listeners are announced: a SIGTERM sent right after the
    // "listening" line must find our handler, not the default that kills.
    let termination = termination_signal();
    let listener = webhook::bind(args.addr, "webhook").await?;
    if args.metrics_addr != "off" {
        let addr: SocketAddr = args
            .metrics_addr
            .parse()
            .map_err(|e| anyhow::anyhow!("--metrics-addr {:?}: {e}", args.metrics_addr))?;
        let metrics_listener = webhook::bind(addr, "metrics").await?;
        let mut rx = stop_rx.clone();
        tokio::spawn(webhook::serve_metrics(
            metrics_listener,
            webhook::metrics_router(app.clone()),
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            },
        ));
    }
    let delay = args.shutdown_delay;
    let ready_state = state.clone();
    tokio::spawn(async move {
        termination.await;
        tracing::info!(?delay, "termination signal: no longer ready");
        ready_state.set_stopping();
        let _ = signalled_tx.send(true);
        tokio::time::sleep(delay).await;
        let _ = stop_tx.send(true);
    });
    let mut rx = stop_rx;
    let serving = webhook::serve_tls(
        listener,
        tls_config,
        webhook::router(app),
        args.limits.limits(),
        metrics,
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        },
        args.shutdown_timeout,
    );
    tokio::pin!(serving);
    if let Some(controller) = controller {
        tokio::select! {
            () = &mut serving => {}
            ended = controller => {
                let what = ended.unwrap_or_else(|e| format!("the controller task failed: {e}"));
                if !*signalled_rx.borrow() {
                    // A view that no longer follows the cluster must not go
                    // on judging: exit, and let Kubernetes restart us.
                    anyhow::bail!("background task stopped: {what}; exiting so the replica is restarted");
                }
                tracing::info!("{what} while shutting down");
                serving.await;
            }
        }
    } else {
        serving.await;
    }
    if let Some(released) = lease_released {
        // Hand the Lease over before exiting, so status and audit move to
        // another replica at once; bounded, the Lease expires anyway.
        let _ = tokio::time::timeout(Duration::from_secs(3), released.notified()).await;
    }
    Ok(())
}

/// Installs the SIGTERM handler at once and returns what resolves when
/// SIGTERM (or Ctrl-C) arrives.
fn termination_signal() -> impl std::future::Future<Output = ()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_flags_default_to_the_librarys_limits() {
        let cli = Cli::parse_from(["waf-admission", "serve", "--self-signed", "--baseline"]);
        let Command::Serve(args) = cli.command else {
            unreachable!()
        };
        let (flags, library) = (args.limits.limits(), webhook::Limits::default());
        assert_eq!(format!("{flags:?}"), format!("{library:?}"));
    }

    #[test]
    fn duration_flags_take_go_durations_and_name_the_flag_when_refused() {
        let serve = |extra: &[&str]| {
            let base = ["waf-admission", "serve", "--self-signed", "--baseline"];
            Cli::try_parse_from(base.iter().chain(extra)).map(|cli| match cli.command {
                Command::Serve(args) => args,
                _ => unreachable!(),
            })
        };
        let args = serve(&["--shutdown-delay", "1m30s", "--audit-interval", "1h"]).unwrap();
        assert_eq!(args.shutdown_delay, Duration::from_secs(90));
        assert_eq!(args.audit_interval, Duration::from_secs(3600));
        let Err(refused) = serve(&["--shutdown-delay", "5x"]) else {
            panic!("5x was accepted");
        };
        let refused = refused.to_string();
        assert!(
            refused.contains("--shutdown-delay") && refused.contains("5x"),
            "{refused}"
        );
    }
}
