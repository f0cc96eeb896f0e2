//! The `waf-admission` binary: thin calls into the library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use kube::CustomResourceExt;
use waf_admission::check;
use waf_admission::policy::{WellArchitectedException, WellArchitectedPolicy, baseline};

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
    Check(CheckArgs),
    /// Print the CustomResourceDefinitions generated from the Rust types.
    Crd,
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
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => run_check(args),
        Command::Crd => print_crds(),
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
    let report = check::run(&set, loaded, jiff::Timestamp::now());
    let mut stdout = std::io::stdout().lock();
    let written = match args.output {
        Format::Json => serde_json::to_writer_pretty(&mut stdout, &report.to_json())
            .map_err(std::io::Error::other)
            .and_then(|_| writeln!(stdout)),
        Format::Text => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            stdout.write_all(report.to_text(colour).as_bytes())
        }
    };
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: writing the report: {e}");
        return ExitCode::from(2);
    }
    if args.output == Format::Json {
        for e in &report.errors {
            eprintln!("error: {e}");
        }
    }
    ExitCode::from(report.exit_code() as u8)
}

fn print_crds() -> ExitCode {
    let docs = [
        WellArchitectedPolicy::crd(),
        WellArchitectedException::crd(),
    ];
    let mut out = String::new();
    for crd in docs {
        match serde_yaml_ng::to_string(&crd) {
            Ok(y) => {
                out.push_str("---\n");
                out.push_str(&y);
            }
            Err(e) => {
                eprintln!("error: rendering the CRD: {e}");
                return ExitCode::from(2);
            }
        }
    }
    print!("{out}");
    ExitCode::SUCCESS
}
