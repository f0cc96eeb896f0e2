//! The `waf-admission` binary: thin calls into the library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use waf_admission::check;
use waf_admission::policy::baseline;
use waf_admission::serve;

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

const CHECK_EXAMPLES: &str = "\
Examples:
  waf-admission check deploy/                       a folder (recursively: *.yaml, *.yml, *.json)
  waf-admission check llm.yaml --policy policy.yaml  against your policy instead of the baseline
  helm template llm ./chart | waf-admission check -  what a Helm chart renders, from stdin
  kubectl get deploy -A -o yaml | waf-admission check -   what a cluster runs
  waf-admission check deploy/ -o sarif > waf.sarif  for a code-scanning tab (-o junit: a test tab)

Exit status: 0 everything allowed (warnings too), 1 something denied,
2 bad input or usage (errors on stderr), or nothing to judge without --allow-empty.";

#[derive(Subcommand)]
enum Command {
    /// Judge manifests offline, with the verdicts the cluster would give.
    #[command(after_help = CHECK_EXAMPLES)]
    Check(Box<CheckArgs>),
    /// Run the HTTPS admission webhook.
    Serve(Box<serve::Args>),
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
    /// Fetch one region's GPU VM prices from the Azure Retail Prices API:
    /// the price table cost-budget judges with.
    #[command(after_help = PRICES_EXAMPLES)]
    Prices(Box<PricesArgs>),
}

const PRICES_EXAMPLES: &str = "\
Examples:
  waf-admission prices --region eastus --out prices.yaml     the table, for check --prices
  waf-admission prices --region eastus --configmap waf-gpu-prices --namespace waf-admission
                                                             the ConfigMap, to kubectl apply -f -
  ... --configmap waf-gpu-prices --namespace waf-admission --apply   applied (the chart's CronJob)

Only Linux pay-as-you-go hourly meters (type Consumption, unitOfMeasure 1 Hour) of the GPU
VM sizes the catalog knows are kept: no Spot, Low Priority, Windows or reservation prices.";

#[derive(clap::Args)]
struct PricesArgs {
    /// The region, as the API names it (armRegionName: eastus, westeurope).
    #[arg(long)]
    region: String,
    /// Write to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The API's address.
    #[arg(long, value_name = "URL", default_value = waf_admission::prices::API)]
    api: String,
    /// Write a whole ConfigMap of this name (the data under prices.yaml).
    #[arg(long, value_name = "NAME")]
    configmap: Option<String>,
    /// The ConfigMap's namespace.
    #[arg(
        long,
        value_name = "NS",
        requires = "configmap",
        default_value = "waf-admission"
    )]
    namespace: String,
    /// Server-side apply the ConfigMap to the cluster (in-cluster
    /// ServiceAccount or kubeconfig) instead of printing it.
    #[arg(long, requires = "configmap")]
    apply: bool,
    /// Each page's timeout.
    #[arg(long, default_value = "30s", value_parser = waf_admission::duration::parse)]
    timeout: std::time::Duration,
    /// Pages followed at most (the API answers 100 items a page).
    #[arg(long, default_value_t = 1000)]
    max_pages: usize,
    /// PEM CA certificates to trust beside the system's (repeatable): the
    /// container image has none of its own.
    #[arg(long, value_name = "FILE")]
    ca: Vec<PathBuf>,
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
    /// Exit 0 when the input holds no workload at all (by default that is
    /// exit 2: a wrong path in CI should not pass).
    #[arg(long)]
    allow_empty: bool,
    /// Ask the registries the policies trust: pin tags (resolveDigests) and
    /// verify signatures. Without it check never touches the network.
    /// Pull secrets and key Secrets the policies name are read from the input.
    #[arg(long)]
    resolve_digests: bool,
    /// VM prices for cost-budget (repeatable): the table `waf-admission
    /// prices` writes (or its ConfigMap), or Azure Retail Prices API JSON
    /// pages.
    #[arg(long = "prices", value_name = "FILE")]
    prices: Vec<PathBuf>,
    #[command(flatten)]
    registry: serve::RegistryArgs,
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
            print_out(&waf_admission::policy::crd::reference_markdown())
        }
        Command::Crd { out_dir, .. } => print_crds(out_dir),
        Command::Baseline => print_out(baseline::BASELINE_YAML),
        Command::Prices(args) => run_prices(*args),
    }
}

fn run_prices(args: PricesArgs) -> ExitCode {
    use waf_admission::prices::fetch;
    let mut extra_roots = Vec::new();
    for path in &args.ca {
        match std::fs::read(path) {
            Ok(pem) => extra_roots.push(pem),
            Err(e) => {
                eprintln!("error: --ca {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    let opts = fetch::FetchOptions {
        api: args.api,
        region: args.region,
        timeout: args.timeout,
        max_pages: args.max_pages,
        extra_roots,
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the HTTP client: {e}");
            return ExitCode::from(2);
        }
    };
    let table = match runtime.block_on(fetch::fetch(&opts, jiff::Timestamp::now())) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!("{} GPU VM size(s) priced in {}", table.len(), opts.region);
    let text = match &args.configmap {
        Some(name) if args.apply => {
            return match runtime.block_on(fetch::apply(&table, name, &args.namespace)) {
                Ok(()) => {
                    eprintln!("applied ConfigMap {}/{name}", args.namespace);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            };
        }
        Some(name) => {
            serde_yaml_ng::to_string(&table.to_configmap(name, &args.namespace)).unwrap_or_default()
        }
        None => table.to_yaml(),
    };
    match args.out {
        None => print_out(&text),
        Some(path) => match std::fs::write(&path, text) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                ExitCode::from(2)
            }
        },
    }
}

/// Writes `text` to stdout. A reader that has gone (`| head -1`) ends the
/// output quietly, as `head` expects, rather than with a panic.
fn print_out(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing to stdout: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_check(args: CheckArgs) -> ExitCode {
    let mut inputs = args.filenames;
    inputs.extend(args.paths);
    if inputs.is_empty() {
        eprintln!(
            "error: name the manifests to check: waf-admission check PATH... (a file, a folder, or - for stdin); see waf-admission check --help"
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
    let prices = match check::read_prices(&args.prices) {
        Ok(table) => table.map(std::sync::Arc::new),
        Err(errors) => {
            for e in errors {
                eprintln!("error: --prices {e}");
            }
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
            runtime.block_on(async { waf_admission::provenance::registry::Registry::new(config) })
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
        check::run_priced(&set, loaded, jiff::Timestamp::now(), Some(&gather), prices)
    } else {
        check::run_priced(&set, loaded, jiff::Timestamp::now(), None, prices)
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
    // Results on stdout, errors on stderr, in every format.
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    if !report.errors.is_empty() {
        eprintln!(
            "{} error(s): those documents were not judged (exit 2)",
            report.errors.len()
        );
    }
    if report.results.is_empty() && report.errors.is_empty() && !args.allow_empty {
        let named: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        eprintln!(
            "error: no Kubernetes workload in {}: nothing was judged (a wrong path? --allow-empty accepts it)",
            named.join(", ")
        );
        return ExitCode::from(2);
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
        None => match crd::crd_yaml() {
            Ok(yaml) => return print_out(&yaml),
            Err(e) => Err(e),
        },
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

fn run_serve(args: serve::Args) -> ExitCode {
    let (_log_flushed_at_exit, log) = match serve::init_logging(args.log_format) {
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
    match runtime.block_on(serve::run(args, Some(log))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(2)
        }
    }
}
