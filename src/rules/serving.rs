//! The model server a container runs, read from its command, args and env
//! as the kubelet and the server would read them: vLLM, TGI, SGLang,
//! KServe's Hugging Face server, llama.cpp and Ollama. Pure: one
//! `Container` in, a [`Launch`] out, for the rules that judge whether the
//! model fits its GPUs and uses them all.
//!
//! Invariants: a value is [`Setting::Given`] only when the pod spec states
//! it (a flag, a literal env var, a GGUF file name), with the words that
//! gave it; [`Setting::Default`] only where the server documents the
//! default; everything else is [`Setting::Unknown`] with the reason. A value
//! from a Secret, ConfigMap or field (`valueFrom`, `envFrom`) is unknown,
//! never guessed. A `--config` file hides every setting not given on the
//! command line (vLLM and SGLang: the command line overrides the file), and
//! a word known only at run time (`$EXTRA_ARGS`) hides the flags before it,
//! since it may repeat them and the last one wins.
//!
//! Flags and defaults: `design/model-aware-rules.md` A.1 and its sources
//! ([S6]–[S18]); where a source disagrees with the page, the comment says
//! which one this follows.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::core::v1::Container;

use super::command_line::{expand, literal_env, runtime_env, shell_commands};

/// The servers this module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Vllm,
    /// Hugging Face Text Generation Inference.
    Tgi,
    Sglang,
    /// KServe's Hugging Face server (`python -m huggingfaceserver`).
    KserveHuggingface,
    LlamaCpp,
    Ollama,
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Server::Vllm => "vLLM",
            Server::Tgi => "TGI",
            Server::Sglang => "SGLang",
            Server::KserveHuggingface => "KServe huggingfaceserver",
            Server::LlamaCpp => "llama.cpp",
            Server::Ollama => "Ollama",
        })
    }
}

/// One setting of the server, and how it is known.
#[derive(Debug, Clone, PartialEq)]
pub enum Setting<T> {
    /// Stated in the pod spec; `from` is what stated it, for messages:
    /// `--tensor-parallel-size 4`, `NUM_SHARD=2`, `-m /models/x.Q4_K_M.gguf`.
    Given { value: T, from: String },
    /// Not stated: the server's documented default.
    Default(T),
    /// Not knowable from the pod spec.
    Unknown(Why),
}

impl<T> Setting<T> {
    /// The value, given or by default.
    pub fn value(&self) -> Option<&T> {
        match self {
            Setting::Given { value, .. } | Setting::Default(value) => Some(value),
            Setting::Unknown(_) => None,
        }
    }

    /// What stated the value, when the pod spec did.
    pub fn stated_by(&self) -> Option<&str> {
        match self {
            Setting::Given { from, .. } => Some(from),
            _ => None,
        }
    }
}

/// Why a setting is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// It comes from a Secret, ConfigMap or field when the pod starts: the
    /// env var `var` (`valueFrom`, or not set literally while `envFrom` is).
    Runtime { var: String },
    /// A `--config` file (`file`) may set it.
    ConfigFile { file: String },
    /// A word known only at run time (`$EXTRA_ARGS`) may set it.
    Hidden { word: String },
    /// The server reads it from the model (its config.json, or the
    /// quantization a checkpoint declares).
    ModelConfig,
    /// The server decides when it runs (memory it finds free, its default
    /// model, layers it offloads), or its default changed between releases.
    ServerDecides,
    /// TGI without `NUM_SHARD`: it shards over every GPU it sees.
    EveryGpu,
    /// Stated, but not as a value the server would read here: `from`.
    Unreadable { from: String },
}

/// The model server a container runs and what its command line says.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub server: Server,
    /// The model id, path or file.
    pub model: Setting<String>,
    /// `auto`, `bfloat16`, `float16`, … as the server spells it.
    pub dtype: Setting<String>,
    /// `fp8`, `awq`, `gptq`, `bitsandbytes`, … or a GGUF type (`Q4_K_M`).
    pub quantization: Setting<String>,
    pub tensor_parallel: Setting<u32>,
    pub pipeline_parallel: Setting<u32>,
    pub data_parallel: Setting<u32>,
    /// The fraction of each GPU's memory the server budgets for itself.
    pub memory_fraction: Setting<f64>,
    /// The longest sequence it serves, in tokens.
    pub max_context: Setting<u64>,
    /// Weights kept in CPU memory, GiB per GPU (vLLM, SGLang).
    pub cpu_offload_gb: Setting<f64>,
    /// llama.cpp's `-ngl` as written (a count, `auto` or `all`); None for
    /// other servers.
    pub gpu_layers: Option<Setting<String>>,
    /// The server runs what does not fit on the CPU (llama.cpp, Ollama):
    /// too little GPU memory makes it slow, not failed.
    pub spills_to_cpu: bool,
    /// The KV cache's type (`auto`: the model's dtype; `fp8`, …).
    pub kv_cache_dtype: Setting<String>,
    /// The server refuses to start unless its KV cache holds one sequence
    /// of its full context (vLLM: "To serve at least one request with the
    /// model's max seq len …" [S24]); KServe's server with `--backend vllm`.
    pub kv_cache_at_start: bool,
}

/// How many GPUs a server spreads one copy of its model over (tensor ×
/// pipeline parallel) and uses in all (× data parallel), with the words
/// that say so.
#[derive(Debug, Clone, PartialEq)]
pub struct Parallel {
    pub shards: u32,
    pub total: u32,
    /// `--tensor-parallel-size 4`, `NUM_SHARD=2 × …`, or what the default is.
    pub how: String,
}

impl Launch {
    /// The GPUs the server uses in a container that gets `gpus` of them;
    /// None where a setting is unknown (or the server decides, as llama.cpp
    /// and Ollama do).
    pub fn parallel(&self, gpus: u32) -> Option<Parallel> {
        if self.server == Server::Tgi
            && matches!(self.tensor_parallel, Setting::Unknown(Why::EveryGpu))
        {
            return Some(Parallel {
                shards: gpus,
                total: gpus,
                how: "TGI shards over every GPU it sees (no NUM_SHARD)".into(),
            });
        }
        let tp = *self.tensor_parallel.value()?;
        let pp = *self.pipeline_parallel.value()?;
        let dp = *self.data_parallel.value()?;
        let shards = tp.checked_mul(pp)?;
        let total = shards.checked_mul(dp)?;
        let stated: Vec<&str> = [
            &self.tensor_parallel,
            &self.pipeline_parallel,
            &self.data_parallel,
        ]
        .into_iter()
        .filter_map(Setting::stated_by)
        .collect();
        let how = if stated.is_empty() {
            format!("{} 1 by default", self.server.flags().tensor_parallel)
        } else {
            stated.join(" × ")
        };
        Some(Parallel { shards, total, how })
    }
}

/// The flags a fix names, as each server spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    pub tensor_parallel: &'static str,
    pub quantization: &'static str,
    pub context: &'static str,
    pub memory_fraction: &'static str,
}

impl Server {
    pub fn flags(self) -> Flags {
        match self {
            Server::Tgi => Flags {
                tensor_parallel: "--num-shard",
                quantization: "--quantize",
                context: "--max-total-tokens",
                memory_fraction: "--cuda-memory-fraction",
            },
            Server::Sglang => Flags {
                tensor_parallel: "--tp",
                quantization: "--quantization",
                context: "--context-length",
                memory_fraction: "--mem-fraction-static",
            },
            Server::LlamaCpp => Flags {
                tensor_parallel: "--split-mode",
                quantization: "-m (a smaller GGUF)",
                context: "--ctx-size",
                memory_fraction: "-ngl",
            },
            Server::Ollama => Flags {
                tensor_parallel: "OLLAMA_SCHED_SPREAD",
                quantization: "a smaller tag",
                context: "OLLAMA_CONTEXT_LENGTH",
                memory_fraction: "OLLAMA_GPU_OVERHEAD",
            },
            Server::Vllm | Server::KserveHuggingface => Flags {
                tensor_parallel: "--tensor-parallel-size",
                quantization: "--quantization",
                context: "--max-model-len",
                memory_fraction: "--gpu-memory-utilization",
            },
        }
    }
}

/// The model server `c` runs, or None when it runs none this module knows.
pub fn launch(c: &Container) -> Option<Launch> {
    let mut env = Env::of(c);
    let k8s_env = literal_env(c);
    // The kubelet expands `$(VAR)` but does not split: one element, one word.
    let words: Vec<String> = c
        .command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .map(|a| expand(a, &k8s_env))
        .collect();
    let no_command = c.command.as_ref().is_none_or(Vec::is_empty);
    let image = c.image.as_deref().unwrap_or_default();
    let (server, rest, positional, pulled) = match entrypoint(image).filter(|_| no_command) {
        Some(server) => (server, words, server == Server::Vllm, None),
        None => {
            let (argv, pulled) = command(words, &k8s_env, &mut env)?;
            let (server, skip, positional) = identify(&argv)?;
            (server, argv[skip..].to_vec(), positional, pulled)
        }
    };
    let args = Args::new(server, rest, positional, &env);
    Some(match server {
        Server::Vllm => vllm(&args),
        Server::Tgi => tgi(&args),
        Server::Sglang => sglang(&args),
        Server::KserveHuggingface => kserve(&args),
        Server::LlamaCpp => llama_cpp(&args),
        Server::Ollama => ollama(&args, pulled),
    })
}

/// The container's env as the server sees it: literal values, and the
/// names only known at run time.
struct Env {
    literal: BTreeMap<String, String>,
    runtime: BTreeSet<String>,
    env_from: bool,
}

impl Env {
    fn of(c: &Container) -> Env {
        Env {
            literal: literal_env(c)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            runtime: runtime_env(c).into_iter().map(str::to_owned).collect(),
            env_from: c.env_from.as_ref().is_some_and(|e| !e.is_empty()),
        }
    }

    fn get(&self, name: &str) -> Option<Result<&str, Why>> {
        if let Some(v) = self.literal.get(name) {
            Some(Ok(v))
        } else if self.runtime.contains(name) || self.env_from {
            Some(Err(Why::Runtime {
                var: name.to_owned(),
            }))
        } else {
            None
        }
    }
}

/// The words that start the server, and the model an Ollama script pulls.
/// A shell's `-c` script is split as the shell would, and the command
/// that starts a server is taken; its `NAME=value` prefixes join the env.
fn command(
    words: Vec<String>,
    k8s_env: &BTreeMap<&str, String>,
    env: &mut Env,
) -> Option<(Vec<String>, Option<String>)> {
    let shell = words
        .first()
        .is_some_and(|w| matches!(basename(w), "sh" | "bash" | "dash" | "ash" | "zsh" | "ksh"));
    let c_flag = words
        .get(1)
        .is_some_and(|w| w.starts_with('-') && !w.starts_with("--") && w.ends_with('c'));
    if !(shell && c_flag) {
        return Some((words, None));
    }
    let commands = shell_commands(words.get(2)?, k8s_env)?;
    let server = commands.iter().find(|cmd| identify(&cmd.words).is_some())?;
    for (name, value) in &server.assignments {
        env.runtime.remove(name);
        env.literal.insert(name.clone(), value.clone());
    }
    // `ollama serve & sleep 5; ollama pull llama3.1:8b; wait`
    let pulled = commands.iter().find_map(|cmd| match cmd.words.as_slice() {
        [o, verb, model, ..]
            if basename(o) == "ollama" && matches!(verb.as_str(), "pull" | "run") =>
        {
            Some(model.clone())
        }
        _ => None,
    });
    Some((server.words.clone(), pulled))
}

fn basename(w: &str) -> &str {
    w.rsplit('/').next().unwrap_or(w)
}

/// The server `argv` starts, how many words its name takes (wrappers such
/// as `exec`, `env A=b` and `nohup` included), and whether a model may
/// follow as the first word (`vllm serve MODEL`).
fn identify(argv: &[String]) -> Option<(Server, usize, bool)> {
    let mut i = 0;
    while let Some(w) = argv.get(i) {
        let wrapper = matches!(basename(w), "exec" | "nohup" | "env");
        let assignment = i > 0 && w.contains('=') && !w.starts_with('-');
        if !(wrapper || assignment) {
            break;
        }
        i += 1;
    }
    let word = |n: usize| argv.get(i + n).map(String::as_str);
    let (server, len) = match word(0).map(basename)? {
        "vllm" if word(1) == Some("serve") => (Server::Vllm, 2),
        "text-generation-launcher" => (Server::Tgi, 1),
        "llama-server" => (Server::LlamaCpp, 1),
        "ollama" if word(1) == Some("serve") => (Server::Ollama, 2),
        p if p.starts_with("python") => {
            let m = argv[i..].iter().position(|w| w == "-m")?;
            let server = match word(m + 1)? {
                "vllm.entrypoints.openai.api_server" => Server::Vllm,
                "sglang.launch_server" | "sglang_router.launch_server" => Server::Sglang,
                "huggingfaceserver" => Server::KserveHuggingface,
                _ => return None,
            };
            (server, m + 2)
        }
        _ => return None,
    };
    Some((server, i + len, server == Server::Vllm && len == 2))
}

/// The server an image's entrypoint starts, so args alone are its words:
/// vllm/vllm-openai runs `vllm serve` [S7] (the model may be the first
/// arg), TGI's image `text-generation-launcher`, llama.cpp's `:server`
/// images `llama-server`, ollama/ollama `ollama serve`, KServe's
/// huggingfaceserver `python -m huggingfaceserver`.
fn entrypoint(image: &str) -> Option<Server> {
    let path = image.split('@').next().unwrap_or(image);
    if path.contains("vllm-openai") || path.contains("vllm/") {
        Some(Server::Vllm)
    } else if path.contains("text-generation-inference") {
        Some(Server::Tgi)
    } else if path.contains("llama.cpp:server") {
        Some(Server::LlamaCpp)
    } else if path.contains("ollama/ollama") {
        Some(Server::Ollama)
    } else if path.contains("kserve/huggingfaceserver") {
        Some(Server::KserveHuggingface)
    } else {
        None
    }
}

/// The server's words after its name, with what may hide its flags.
struct Args<'a> {
    words: Vec<String>,
    env: &'a Env,
    /// The first word is the model (`vllm serve MODEL`) when not a flag.
    positional: bool,
    /// `--config FILE`.
    config: Option<String>,
    /// The last word known only at run time that stands where a flag could.
    hidden: Option<(usize, String)>,
}

/// A flag's value as found: the value, the words that gave it, where.
struct Flag<'w> {
    value: &'w str,
    from: String,
    at: usize,
}

impl<'a> Args<'a> {
    fn new(server: Server, words: Vec<String>, positional: bool, env: &'a Env) -> Args<'a> {
        // vLLM's argument parser reads `--tensor_parallel_size` as
        // `--tensor-parallel-size`; KServe's passes vLLM's flags through.
        let dashes = matches!(server, Server::Vllm | Server::KserveHuggingface);
        let words: Vec<String> = words
            .into_iter()
            .map(|w| match w.split_once('=') {
                _ if !dashes || !w.starts_with("--") => w,
                Some((flag, value)) => format!("{}={value}", flag.replace('_', "-")),
                None => w.replace('_', "-"),
            })
            .collect();
        // A word that starts unknown (`$EXTRA_ARGS`) and is not a flag's
        // value may be flags: it hides the ones before it.
        let mut hidden = None;
        for (i, w) in words.iter().enumerate() {
            let value_of_flag =
                i > 0 && words[i - 1].starts_with('-') && !words[i - 1].contains('=');
            let model = i == 0 && positional;
            if w.starts_with('$') && runtime_reference(w).is_some() && !value_of_flag && !model {
                hidden = Some((i, w.clone()));
            }
        }
        let mut args = Args {
            words,
            env,
            positional,
            config: None,
            hidden,
        };
        args.config = args.flag(&["--config"]).map(|f| f.value.to_owned());
        args
    }

    /// The last value of any of `flags` (`--flag v` or `--flag=v`): the last
    /// wins, as in argparse and clap.
    fn flag(&self, flags: &[&str]) -> Option<Flag<'_>> {
        let mut found = None;
        for (i, w) in self.words.iter().enumerate() {
            for flag in flags {
                if w == flag
                    && let Some(v) = self.words.get(i + 1)
                {
                    found = Some(Flag {
                        value: v,
                        from: format!("{w} {v}"),
                        at: i,
                    });
                } else if let Some(v) = w.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                    found = Some(Flag {
                        value: v,
                        from: w.clone(),
                        at: i,
                    });
                }
            }
        }
        found
    }

    /// A setting from `flags`, else from the env var `var` (clap and
    /// llama.cpp: the flag wins), else `otherwise`, unless something may
    /// hide it.
    fn read<T: FromStr>(
        &self,
        flags: &[&str],
        var: Option<&str>,
        otherwise: Setting<T>,
    ) -> Setting<T> {
        let hidden = |at: usize| match &self.hidden {
            Some((h, word)) if at < *h => Some(Why::Hidden { word: word.clone() }),
            _ => None,
        };
        if let Some(f) = self.flag(flags) {
            return match hidden(f.at) {
                Some(why) => Setting::Unknown(why),
                None => self.parse(f.value, f.from),
            };
        }
        if let Some(var) = var
            && let Some(v) = self.env.get(var)
        {
            return match (v, hidden(0)) {
                (_, Some(why)) | (Err(why), None) => Setting::Unknown(why),
                (Ok(v), None) => self.parse(v, format!("{var}={v}")),
            };
        }
        self.unstated(otherwise)
    }

    /// What a setting not stated is: its default, unless a config file or
    /// a run-time word may state it.
    fn unstated<T>(&self, otherwise: Setting<T>) -> Setting<T> {
        match (&self.config, &self.hidden) {
            (Some(file), _) => Setting::Unknown(Why::ConfigFile { file: file.clone() }),
            (None, Some((_, word))) => Setting::Unknown(Why::Hidden { word: word.clone() }),
            (None, None) => otherwise,
        }
    }

    fn parse<T: FromStr>(&self, value: &str, from: String) -> Setting<T> {
        if let Some(var) = runtime_reference(value) {
            let known = self.env.runtime.contains(&var) || self.env.env_from;
            return Setting::Unknown(if known {
                Why::Runtime { var }
            } else {
                Why::Unreadable { from }
            });
        }
        match value.parse() {
            Ok(value) => Setting::Given { value, from },
            Err(_) => Setting::Unknown(Why::Unreadable { from }),
        }
    }
}

/// The variable a word refers to that only the running container knows
/// (`$(VAR)` the kubelet left, `$VAR`, `${VAR}`, `$(cmd)` the shell left).
fn runtime_reference(w: &str) -> Option<String> {
    let at = w.find('$')?;
    let rest = &w[at + 1..];
    let name = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let var = if let Some(inner) = rest.strip_prefix('(').or_else(|| rest.strip_prefix('{')) {
        name(inner)
    } else {
        name(rest)
    };
    Some(if var.is_empty() { w.to_owned() } else { var })
}

/// vLLM, from `vllm serve` and `python -m vllm.entrypoints.openai.api_server`
/// [S6][S8].
fn vllm(a: &Args) -> Launch {
    let positional = a
        .words
        .first()
        .filter(|w| a.positional && !w.starts_with('-'))
        .map(|m| a.parse::<String>(m, format!("vllm serve {m}")));
    let model = match positional {
        Some(m) => m,
        None => a.read(&["--model"], None, Setting::Unknown(Why::ServerDecides)),
    };
    Launch {
        server: Server::Vllm,
        model,
        dtype: a.read(&["--dtype"], None, Setting::Default("auto".into())),
        quantization: a.read(
            &["--quantization", "-q"],
            None,
            Setting::Unknown(Why::ModelConfig),
        ),
        tensor_parallel: a.read(
            &["--tensor-parallel-size", "-tp"],
            None,
            Setting::Default(1),
        ),
        pipeline_parallel: a.read(
            &["--pipeline-parallel-size", "-pp"],
            None,
            Setting::Default(1),
        ),
        data_parallel: a.read(&["--data-parallel-size", "-dp"], None, Setting::Default(1)),
        memory_fraction: a.read(
            &["--gpu-memory-utilization"],
            None,
            Setting::Default(VLLM_GPU_MEMORY_UTILIZATION),
        ),
        max_context: a.read(
            &["--max-model-len"],
            None,
            Setting::Unknown(Why::ModelConfig),
        ),
        cpu_offload_gb: a.read(&["--cpu-offload-gb"], None, Setting::Default(0.0)),
        gpu_layers: None,
        spills_to_cpu: false,
        kv_cache_dtype: a.read(&["--kv-cache-dtype"], None, Setting::Default("auto".into())),
        kv_cache_at_start: true,
    }
}

/// vLLM's default `--gpu-memory-utilization`. The issue and older docs say
/// 0.9 (v0.6.4 engine args [S8], unsloth [S9]); vLLM's source says 0.92
/// (`vllm/config/cache.py` at 002f10e0, and docs.vllm.ai stable): this
/// follows the source. It is also the lenient choice for a rule that
/// reports only certain failures: an older image budgets less, never more.
pub const VLLM_GPU_MEMORY_UTILIZATION: f64 = 0.92;

/// TGI's `--cuda-memory-fraction` default [S10].
pub const TGI_CUDA_MEMORY_FRACTION: f64 = 1.0;

/// TGI's launcher: each flag has an env var; a flag wins over its env var
/// (clap) [S10].
fn tgi(a: &Args) -> Launch {
    let every_gpu = || Setting::Unknown(Why::EveryGpu);
    let shards = match a.read(&["--num-shard"], Some("NUM_SHARD"), every_gpu()) {
        // `--sharded false` "deactivates num_shard": one shard.
        Setting::Unknown(Why::EveryGpu) => {
            match a.read::<bool>(&["--sharded"], Some("SHARDED"), Setting::Default(true)) {
                Setting::Given { value: false, from } => Setting::Given { value: 1, from },
                Setting::Unknown(why) => Setting::Unknown(why),
                _ => every_gpu(),
            }
        }
        s => s,
    };
    Launch {
        server: Server::Tgi,
        // The launcher's own default model (bigscience/bloom-560m) is never
        // what a deployment means to serve: unknown rather than named.
        model: a.read(
            &["--model-id"],
            Some("MODEL_ID"),
            Setting::Unknown(Why::ServerDecides),
        ),
        dtype: a.read(
            &["--dtype"],
            Some("DTYPE"),
            Setting::Unknown(Why::ModelConfig),
        ),
        quantization: a.read(
            &["--quantize"],
            Some("QUANTIZE"),
            Setting::Unknown(Why::ModelConfig),
        ),
        tensor_parallel: shards,
        // TGI has no pipeline or data parallelism within one launcher.
        pipeline_parallel: Setting::Default(1),
        data_parallel: Setting::Default(1),
        memory_fraction: a.read(
            &["--cuda-memory-fraction"],
            Some("CUDA_MEMORY_FRACTION"),
            Setting::Default(TGI_CUDA_MEMORY_FRACTION),
        ),
        // Default: min(what memory allows, the model's max positions).
        max_context: a.read(
            &["--max-total-tokens"],
            Some("MAX_TOTAL_TOKENS"),
            Setting::Unknown(Why::ServerDecides),
        ),
        cpu_offload_gb: Setting::Default(0.0),
        gpu_layers: None,
        spills_to_cpu: false,
        kv_cache_dtype: a.read(
            &["--kv-cache-dtype"],
            Some("KV_CACHE_DTYPE"),
            Setting::Default("auto".into()),
        ),
        kv_cache_at_start: false,
    }
}

/// SGLang's `launch_server` [S11][S12].
fn sglang(a: &Args) -> Launch {
    Launch {
        server: Server::Sglang,
        model: a.read(
            &["--model-path"],
            None,
            Setting::Unknown(Why::ServerDecides),
        ),
        dtype: a.read(&["--dtype"], None, Setting::Default("auto".into())),
        quantization: a.read(
            &["--quantization"],
            None,
            Setting::Unknown(Why::ModelConfig),
        ),
        tensor_parallel: a.read(
            &["--tp", "--tp-size", "--tensor-parallel-size"],
            None,
            Setting::Default(1),
        ),
        pipeline_parallel: a.read(
            &["--pp", "--pp-size", "--pipeline-parallel-size"],
            None,
            Setting::Default(1),
        ),
        data_parallel: a.read(
            &["--dp", "--dp-size", "--data-parallel-size"],
            None,
            Setting::Default(1),
        ),
        // The page's older docs say 0.9; `ServerArgs` has
        // `mem_fraction_static: Optional[float] = None`, sized at start from
        // the GPU [S12]: this follows the source.
        memory_fraction: a.read(
            &["--mem-fraction-static"],
            None,
            Setting::Unknown(Why::ServerDecides),
        ),
        max_context: a.read(
            &["--context-length"],
            None,
            Setting::Unknown(Why::ModelConfig),
        ),
        cpu_offload_gb: a.read(&["--cpu-offload-gb"], None, Setting::Default(0.0)),
        gpu_layers: None,
        spills_to_cpu: false,
        kv_cache_dtype: a.read(&["--kv-cache-dtype"], None, Setting::Default("auto".into())),
        kv_cache_at_start: false,
    }
}

/// KServe's huggingfaceserver: its own `--model_id`, and vLLM's engine
/// flags passed through [S13]. Its default backend picks vLLM only for the
/// models vLLM supports, else Transformers: vLLM's defaults hold only with
/// `--backend vllm`.
fn kserve(a: &Args) -> Launch {
    let backend = a.flag(&["--backend"]).map(|f| f.value.to_owned());
    let vllm_backend = backend.as_deref() == Some("vllm");
    let or = |default: Setting<u32>| {
        if vllm_backend {
            default
        } else {
            Setting::Unknown(Why::ServerDecides)
        }
    };
    let model = match a.read(&["--model-id"], None, Setting::Unknown(Why::ServerDecides)) {
        Setting::Unknown(Why::ServerDecides) => {
            a.read(&["--model-dir"], None, Setting::Unknown(Why::ServerDecides))
        }
        m => m,
    };
    Launch {
        server: Server::KserveHuggingface,
        model,
        dtype: a.read(&["--dtype"], None, Setting::Default("auto".into())),
        quantization: a.read(
            &["--quantization", "-q"],
            None,
            Setting::Unknown(Why::ModelConfig),
        ),
        tensor_parallel: a.read(
            &["--tensor-parallel-size", "-tp"],
            None,
            or(Setting::Default(1)),
        ),
        pipeline_parallel: a.read(
            &["--pipeline-parallel-size", "-pp"],
            None,
            or(Setting::Default(1)),
        ),
        data_parallel: a.read(
            &["--data-parallel-size", "-dp"],
            None,
            or(Setting::Default(1)),
        ),
        memory_fraction: a.read(
            &["--gpu-memory-utilization"],
            None,
            if vllm_backend {
                Setting::Default(VLLM_GPU_MEMORY_UTILIZATION)
            } else {
                Setting::Unknown(Why::ServerDecides)
            },
        ),
        max_context: a.read(
            &["--max-model-len"],
            None,
            Setting::Unknown(Why::ModelConfig),
        ),
        cpu_offload_gb: a.read(
            &["--cpu-offload-gb"],
            None,
            if vllm_backend {
                Setting::Default(0.0)
            } else {
                Setting::Unknown(Why::ServerDecides)
            },
        ),
        gpu_layers: None,
        spills_to_cpu: false,
        kv_cache_dtype: a.read(&["--kv-cache-dtype"], None, Setting::Default("auto".into())),
        kv_cache_at_start: vllm_backend,
    }
}

/// llama.cpp's `llama-server`: flags and their `LLAMA_ARG_*` env [S16];
/// the quantization is in the GGUF file name [S17].
fn llama_cpp(a: &Args) -> Launch {
    let model = match a.read::<String>(
        &["-m", "--model"],
        Some("LLAMA_ARG_MODEL"),
        Setting::Unknown(Why::ServerDecides),
    ) {
        Setting::Unknown(Why::ServerDecides) => a.read(
            &["-hf", "-hfr", "--hf-repo"],
            Some("LLAMA_ARG_HF_REPO"),
            Setting::Unknown(Why::ServerDecides),
        ),
        m => m,
    };
    let quantization = match &model {
        Setting::Given { value, from } => match gguf_type(value) {
            Some(q) => Setting::Given {
                value: q,
                from: from.clone(),
            },
            // The file's own header says; its name does not.
            None => Setting::Unknown(Why::ModelConfig),
        },
        Setting::Default(_) => Setting::Unknown(Why::ServerDecides),
        Setting::Unknown(why) => Setting::Unknown(why.clone()),
    };
    Launch {
        server: Server::LlamaCpp,
        model,
        dtype: Setting::Unknown(Why::ModelConfig),
        quantization,
        tensor_parallel: Setting::Unknown(Why::ServerDecides),
        pipeline_parallel: Setting::Unknown(Why::ServerDecides),
        data_parallel: Setting::Unknown(Why::ServerDecides),
        memory_fraction: Setting::Unknown(Why::ServerDecides),
        max_context: a.read(
            &["-c", "--ctx-size"],
            Some("LLAMA_ARG_CTX_SIZE"),
            Setting::Unknown(Why::ServerDecides),
        ),
        cpu_offload_gb: Setting::Unknown(Why::ServerDecides),
        gpu_layers: Some(a.read(
            &["-ngl", "--gpu-layers", "--n-gpu-layers"],
            Some("LLAMA_ARG_N_GPU_LAYERS"),
            Setting::Unknown(Why::ServerDecides),
        )),
        spills_to_cpu: true,
        kv_cache_dtype: Setting::Unknown(Why::ServerDecides),
        kv_cache_at_start: false,
    }
}

/// The GGUF type a file or repo name ends with (`…-Q4_K_M.gguf`,
/// `…GGUF:Q8_0`), upper-cased, as llama.cpp's quantize names them [S17].
fn gguf_type(name: &str) -> Option<String> {
    let name = basename(name);
    let stem = name
        .strip_suffix(".gguf")
        .or_else(|| name.strip_suffix(".GGUF"))
        .unwrap_or(name);
    stem.split(['-', '.', ':'])
        .rfind(|t| is_gguf_type(&t.to_ascii_uppercase()))
        .map(str::to_ascii_uppercase)
}

fn is_gguf_type(t: &str) -> bool {
    if matches!(t, "F16" | "BF16" | "F32" | "MXFP4" | "MXFP4_MOE") {
        return true;
    }
    // Q4_0, Q4_K_M, Q8_0, IQ2_XXS, IQ4_NL, TQ1_0, Q2_K…
    let body = t
        .strip_prefix("IQ")
        .or_else(|| t.strip_prefix("TQ"))
        .or_else(|| t.strip_prefix('Q'));
    let Some(body) = body else { return false };
    let mut parts = body.split('_');
    let bits = parts.next().unwrap_or_default();
    !bits.is_empty()
        && bits.chars().all(|c| c.is_ascii_digit())
        && parts.all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Ollama pulls its model at run time; a script may name it [S18].
fn ollama(a: &Args, pulled: Option<String>) -> Launch {
    let model = match pulled {
        Some(m) => a.parse(&m, format!("ollama pull {m}")),
        None => Setting::Unknown(Why::ServerDecides),
    };
    Launch {
        server: Server::Ollama,
        model,
        dtype: Setting::Unknown(Why::ModelConfig),
        quantization: Setting::Unknown(Why::ModelConfig),
        tensor_parallel: Setting::Unknown(Why::ServerDecides),
        pipeline_parallel: Setting::Unknown(Why::ServerDecides),
        data_parallel: Setting::Unknown(Why::ServerDecides),
        memory_fraction: Setting::Unknown(Why::ServerDecides),
        max_context: a.read(
            &[],
            Some("OLLAMA_CONTEXT_LENGTH"),
            Setting::Unknown(Why::ServerDecides),
        ),
        cpu_offload_gb: Setting::Unknown(Why::ServerDecides),
        gpu_layers: None,
        spills_to_cpu: true,
        kv_cache_dtype: Setting::Unknown(Why::ServerDecides),
        kv_cache_at_start: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn read(c: Value) -> Launch {
        let c: Container = serde_json::from_value(c).expect("a container");
        launch(&c).expect("a server")
    }

    fn given<T>(value: T, from: &str) -> Setting<T> {
        Setting::Given {
            value,
            from: from.to_owned(),
        }
    }

    #[test]
    fn vllm_serve_with_the_model_positional() {
        let l = read(json!({
            "name": "vllm",
            "image": "vllm/vllm-openai:v0.8.5",
            "command": ["vllm", "serve", "meta-llama/Llama-3.1-70B-Instruct"],
            "args": ["--tensor-parallel-size", "4", "--max-model-len=32768",
                     "--gpu-memory-utilization", "0.85", "--quantization", "fp8",
                     "--dtype", "bfloat16", "-pp", "2", "--cpu-offload-gb", "8"],
        }));
        assert_eq!(l.server, Server::Vllm);
        assert_eq!(
            l.model,
            given(
                "meta-llama/Llama-3.1-70B-Instruct".to_owned(),
                "vllm serve meta-llama/Llama-3.1-70B-Instruct"
            )
        );
        assert_eq!(l.tensor_parallel, given(4, "--tensor-parallel-size 4"));
        assert_eq!(l.pipeline_parallel, given(2, "-pp 2"));
        assert_eq!(l.data_parallel, Setting::Default(1));
        assert_eq!(l.max_context, given(32768, "--max-model-len=32768"));
        assert_eq!(
            l.memory_fraction,
            given(0.85, "--gpu-memory-utilization 0.85")
        );
        assert_eq!(
            l.quantization,
            given("fp8".to_owned(), "--quantization fp8")
        );
        assert_eq!(l.dtype, given("bfloat16".to_owned(), "--dtype bfloat16"));
        assert_eq!(l.cpu_offload_gb, given(8.0, "--cpu-offload-gb 8"));
        assert!(!l.spills_to_cpu);
        assert_eq!(l.gpu_layers, None);
    }

    #[test]
    fn vllm_defaults_are_the_documented_ones_and_unknowns_stay_unknown() {
        let l = read(json!({
            "name": "vllm",
            "image": "vllm/vllm-openai:latest",
            "command": ["vllm", "serve", "Qwen/Qwen2.5-7B-Instruct"],
        }));
        assert_eq!(l.tensor_parallel, Setting::Default(1));
        assert_eq!(l.pipeline_parallel, Setting::Default(1));
        assert_eq!(l.memory_fraction, Setting::Default(0.92));
        assert_eq!(l.dtype, Setting::Default("auto".to_owned()));
        assert_eq!(l.cpu_offload_gb, Setting::Default(0.0));
        assert_eq!(l.quantization, Setting::Unknown(Why::ModelConfig));
        assert_eq!(l.max_context, Setting::Unknown(Why::ModelConfig));
        assert_eq!(l.memory_fraction.stated_by(), None);
    }

    #[test]
    fn vllm_image_entrypoint_takes_args_alone_with_the_model_first() {
        let l = read(json!({
            "name": "llm",
            "image": "docker.io/vllm/vllm-openai:v0.10.1",
            "args": ["mistralai/Mistral-7B-Instruct-v0.3", "-tp", "2",
                     "--tensor_parallel_size=2", "--max-model-len", "8192"],
        }));
        assert_eq!(l.server, Server::Vllm);
        assert_eq!(
            l.model,
            given(
                "mistralai/Mistral-7B-Instruct-v0.3".to_owned(),
                "vllm serve mistralai/Mistral-7B-Instruct-v0.3"
            )
        );
        // Underscores read as dashes, as vLLM's parser does; the last wins.
        assert_eq!(l.tensor_parallel, given(2, "--tensor-parallel-size=2"));
        assert_eq!(l.max_context, given(8192, "--max-model-len 8192"));
    }

    #[test]
    fn vllm_python_module_reads_model_from_the_flag() {
        let l = read(json!({
            "name": "llm",
            "image": "myacr.azurecr.io/llm-runtime:1.2",
            "command": ["python3", "-m", "vllm.entrypoints.openai.api_server"],
            "args": ["--model=/models/llama", "--tensor-parallel-size=8"],
        }));
        assert_eq!(l.server, Server::Vllm);
        assert_eq!(
            l.model,
            given("/models/llama".to_owned(), "--model=/models/llama")
        );
        assert_eq!(l.tensor_parallel, given(8, "--tensor-parallel-size=8"));
    }

    #[test]
    fn vllm_in_a_shell_string_with_quotes_and_env() {
        let l = read(json!({
            "name": "llm",
            "image": "vllm/vllm-openai:v0.9.0",
            "command": ["/bin/bash", "-c"],
            "args": ["set -e; huggingface-cli login --token \"$HF_TOKEN\" && exec vllm serve \"$(MODEL)\" \
                      --chat-template '{{ messages }} x' --tensor-parallel-size ${TP} --max-model-len $CTX"],
            "env": [
                {"name": "MODEL", "value": "meta-llama/Llama-3.1-8B-Instruct"},
                {"name": "TP", "value": "2"},
                {"name": "CTX", "valueFrom": {"configMapKeyRef": {"name": "llm", "key": "ctx"}}},
                {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
            ],
        }));
        assert_eq!(l.server, Server::Vllm);
        assert_eq!(
            l.model,
            given(
                "meta-llama/Llama-3.1-8B-Instruct".to_owned(),
                "vllm serve meta-llama/Llama-3.1-8B-Instruct"
            )
        );
        assert_eq!(l.tensor_parallel, given(2, "--tensor-parallel-size 2"));
        assert_eq!(
            l.max_context,
            Setting::Unknown(Why::Runtime { var: "CTX".into() })
        );
    }

    #[test]
    fn vllm_flag_from_a_value_from_env_is_unknown() {
        let l = read(json!({
            "name": "llm",
            "image": "vllm/vllm-openai:v0.9.0",
            "args": ["$(MODEL)", "--tensor-parallel-size", "$(TP)"],
            "env": [
                {"name": "MODEL", "valueFrom": {"configMapKeyRef": {"name": "llm", "key": "model"}}},
                {"name": "TP", "valueFrom": {"configMapKeyRef": {"name": "llm", "key": "tp"}}},
            ],
        }));
        assert_eq!(
            l.model,
            Setting::Unknown(Why::Runtime {
                var: "MODEL".into()
            })
        );
        assert_eq!(
            l.tensor_parallel,
            Setting::Unknown(Why::Runtime { var: "TP".into() })
        );
        // Nothing hides the other settings: their defaults hold.
        assert_eq!(l.memory_fraction, Setting::Default(0.92));
    }

    #[test]
    fn a_config_file_hides_every_setting_not_on_the_command_line() {
        let l = read(json!({
            "name": "llm",
            "image": "vllm/vllm-openai:v0.9.0",
            "args": ["--config", "/etc/vllm/config.yaml", "--tensor-parallel-size", "2"],
        }));
        let hidden = Why::ConfigFile {
            file: "/etc/vllm/config.yaml".into(),
        };
        assert_eq!(l.tensor_parallel, given(2, "--tensor-parallel-size 2"));
        assert_eq!(l.model, Setting::Unknown(hidden.clone()));
        assert_eq!(l.pipeline_parallel, Setting::Unknown(hidden.clone()));
        assert_eq!(l.memory_fraction, Setting::Unknown(hidden.clone()));
        assert_eq!(l.max_context, Setting::Unknown(hidden));
    }

    #[test]
    fn a_run_time_word_hides_the_flags_before_it() {
        let l = read(json!({
            "name": "llm",
            "image": "vllm/vllm-openai:v0.9.0",
            "command": ["sh", "-c", "vllm serve org/m --tensor-parallel-size 2 $EXTRA_ARGS --max-model-len 4096"],
            "env": [{"name": "EXTRA_ARGS", "valueFrom": {"configMapKeyRef": {"name": "llm", "key": "args"}}}],
        }));
        let hidden = Why::Hidden {
            word: "$EXTRA_ARGS".into(),
        };
        assert_eq!(l.tensor_parallel, Setting::Unknown(hidden.clone()));
        assert_eq!(l.memory_fraction, Setting::Unknown(hidden));
        assert_eq!(l.max_context, given(4096, "--max-model-len 4096"));
        assert_eq!(l.model, given("org/m".to_owned(), "vllm serve org/m"));
    }

    #[test]
    fn tgi_reads_env_and_flags_and_the_flag_wins() {
        let l = read(json!({
            "name": "tgi",
            "image": "ghcr.io/huggingface/text-generation-inference:3.0.1",
            "args": ["--num-shard", "4"],
            "env": [
                {"name": "MODEL_ID", "value": "mistralai/Mixtral-8x7B-Instruct-v0.1"},
                {"name": "NUM_SHARD", "value": "2"},
                {"name": "QUANTIZE", "value": "awq"},
                {"name": "CUDA_MEMORY_FRACTION", "value": "0.8"},
                {"name": "MAX_TOTAL_TOKENS", "value": "8192"},
                {"name": "DTYPE", "valueFrom": {"configMapKeyRef": {"name": "tgi", "key": "dtype"}}},
            ],
        }));
        assert_eq!(l.server, Server::Tgi);
        assert_eq!(
            l.model,
            given(
                "mistralai/Mixtral-8x7B-Instruct-v0.1".to_owned(),
                "MODEL_ID=mistralai/Mixtral-8x7B-Instruct-v0.1"
            )
        );
        assert_eq!(l.tensor_parallel, given(4, "--num-shard 4"));
        assert_eq!(l.quantization, given("awq".to_owned(), "QUANTIZE=awq"));
        assert_eq!(l.memory_fraction, given(0.8, "CUDA_MEMORY_FRACTION=0.8"));
        assert_eq!(l.max_context, given(8192, "MAX_TOTAL_TOKENS=8192"));
        assert_eq!(
            l.dtype,
            Setting::Unknown(Why::Runtime {
                var: "DTYPE".into()
            })
        );
    }

    #[test]
    fn tgi_without_num_shard_uses_every_gpu_and_its_memory_default_is_one() {
        let l = read(json!({
            "name": "tgi",
            "image": "ghcr.io/huggingface/text-generation-inference:2.4.0",
            "command": ["text-generation-launcher"],
            "args": ["--model-id", "HuggingFaceH4/zephyr-7b-beta"],
            "env": [{"name": "NUM_SHARD", "value": "2"}],
        }));
        assert_eq!(l.tensor_parallel, given(2, "NUM_SHARD=2"));
        let l = read(json!({
            "name": "tgi",
            "image": "ghcr.io/huggingface/text-generation-inference:2.4.0",
            "args": ["--model-id=HuggingFaceH4/zephyr-7b-beta"],
        }));
        assert_eq!(
            l.model,
            given(
                "HuggingFaceH4/zephyr-7b-beta".to_owned(),
                "--model-id=HuggingFaceH4/zephyr-7b-beta"
            )
        );
        assert_eq!(l.tensor_parallel, Setting::Unknown(Why::EveryGpu));
        assert_eq!(l.memory_fraction, Setting::Default(1.0));
        assert_eq!(l.max_context, Setting::Unknown(Why::ServerDecides));
        let l = read(json!({
            "name": "tgi",
            "image": "ghcr.io/huggingface/text-generation-inference:2.4.0",
            "env": [{"name": "MODEL_ID", "value": "m"}, {"name": "SHARDED", "value": "false"}],
        }));
        assert_eq!(l.tensor_parallel, given(1, "SHARDED=false"));
    }

    #[test]
    fn tgi_env_from_a_config_map_leaves_unset_settings_unknown() {
        let l = read(json!({
            "name": "tgi",
            "image": "ghcr.io/huggingface/text-generation-inference:3.0.1",
            "envFrom": [{"configMapRef": {"name": "tgi-settings"}}],
            "env": [{"name": "MODEL_ID", "value": "google/gemma-2-9b-it"}],
        }));
        assert_eq!(
            l.model,
            given(
                "google/gemma-2-9b-it".to_owned(),
                "MODEL_ID=google/gemma-2-9b-it"
            )
        );
        assert_eq!(
            l.tensor_parallel,
            Setting::Unknown(Why::Runtime {
                var: "NUM_SHARD".into()
            })
        );
        assert_eq!(
            l.memory_fraction,
            Setting::Unknown(Why::Runtime {
                var: "CUDA_MEMORY_FRACTION".into()
            })
        );
    }

    #[test]
    fn tgi_prefix_assignments_in_a_script_are_its_env() {
        let l = read(json!({
            "name": "tgi",
            "image": "ghcr.io/huggingface/text-generation-inference:3.0.1",
            "command": ["sh", "-c", "NUM_SHARD=2 exec text-generation-launcher --model-id 'tiiuae/falcon-7b'"],
        }));
        assert_eq!(l.tensor_parallel, given(2, "NUM_SHARD=2"));
        assert_eq!(
            l.model,
            given("tiiuae/falcon-7b".to_owned(), "--model-id tiiuae/falcon-7b")
        );
    }

    #[test]
    fn sglang_reads_its_own_flags_and_has_no_memory_default() {
        let l = read(json!({
            "name": "sglang",
            "image": "lmsysorg/sglang:v0.4.6-cu124",
            "command": ["python3", "-m", "sglang.launch_server"],
            "args": ["--model-path", "Qwen/Qwen2.5-72B-Instruct", "--tp", "4", "--dp-size=2",
                     "--mem-fraction-static", "0.8", "--context-length", "32768", "--host", "0.0.0.0"],
        }));
        assert_eq!(l.server, Server::Sglang);
        assert_eq!(
            l.model,
            given(
                "Qwen/Qwen2.5-72B-Instruct".to_owned(),
                "--model-path Qwen/Qwen2.5-72B-Instruct"
            )
        );
        assert_eq!(l.tensor_parallel, given(4, "--tp 4"));
        assert_eq!(l.data_parallel, given(2, "--dp-size=2"));
        assert_eq!(l.pipeline_parallel, Setting::Default(1));
        assert_eq!(l.memory_fraction, given(0.8, "--mem-fraction-static 0.8"));
        assert_eq!(l.max_context, given(32768, "--context-length 32768"));
        let l = read(json!({
            "name": "sglang",
            "image": "lmsysorg/sglang:latest",
            "command": ["python", "-m", "sglang.launch_server", "--model-path", "m", "--tp-size", "2"],
        }));
        assert_eq!(l.tensor_parallel, given(2, "--tp-size 2"));
        assert_eq!(l.memory_fraction, Setting::Unknown(Why::ServerDecides));
        assert_eq!(l.max_context, Setting::Unknown(Why::ModelConfig));
    }

    #[test]
    fn kserve_huggingface_server_passes_vllm_flags_through() {
        let l = read(json!({
            "name": "kserve-container",
            "image": "kserve/huggingfaceserver:v0.15.0-gpu",
            "args": ["--model_name=llama3", "--model_id=meta-llama/Meta-Llama-3-8B-Instruct",
                     "--backend=vllm", "--tensor-parallel-size", "2", "--max-model-len=16384"],
        }));
        assert_eq!(l.server, Server::KserveHuggingface);
        assert_eq!(
            l.model,
            given(
                "meta-llama/Meta-Llama-3-8B-Instruct".to_owned(),
                "--model-id=meta-llama/Meta-Llama-3-8B-Instruct"
            )
        );
        assert_eq!(l.tensor_parallel, given(2, "--tensor-parallel-size 2"));
        assert_eq!(l.max_context, given(16384, "--max-model-len=16384"));
        assert_eq!(l.memory_fraction, Setting::Default(0.92));
        let l = read(json!({
            "name": "kserve-container",
            "image": "registry.example/serving:1",
            "command": ["python", "-m", "huggingfaceserver"],
            "args": ["--model_id", "org/m"],
        }));
        assert_eq!(l.model, given("org/m".to_owned(), "--model-id org/m"));
        // Without `--backend vllm` it may run Transformers: no vLLM default.
        assert_eq!(l.tensor_parallel, Setting::Unknown(Why::ServerDecides));
        assert_eq!(l.memory_fraction, Setting::Unknown(Why::ServerDecides));
    }

    #[test]
    fn llama_cpp_takes_its_quantization_from_the_gguf_name_and_spills_to_cpu() {
        let l = read(json!({
            "name": "llama",
            "image": "ghcr.io/ggml-org/llama.cpp:server-cuda",
            "args": ["-m", "/models/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", "-ngl", "99", "-c", "8192"],
        }));
        assert_eq!(l.server, Server::LlamaCpp);
        assert_eq!(
            l.quantization,
            given(
                "Q4_K_M".to_owned(),
                "-m /models/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf"
            )
        );
        assert_eq!(l.gpu_layers, Some(given("99".to_owned(), "-ngl 99")));
        assert_eq!(l.max_context, given(8192, "-c 8192"));
        assert_eq!(l.memory_fraction, Setting::Unknown(Why::ServerDecides));
        assert!(l.spills_to_cpu);
        let l = read(json!({
            "name": "llama",
            "image": "example/llama:1",
            "command": ["/app/llama-server", "--model", "/m/qwen2.5-7b-instruct-q8_0.gguf"],
        }));
        assert_eq!(l.quantization.value().map(String::as_str), Some("Q8_0"));
        let l = read(json!({
            "name": "llama",
            "image": "example/llama:1",
            "command": ["llama-server"],
            "env": [{"name": "LLAMA_ARG_MODEL", "value": "/m/mistral-7b-instruct-v0.2.F16.gguf"}],
        }));
        assert_eq!(
            l.quantization,
            given(
                "F16".to_owned(),
                "LLAMA_ARG_MODEL=/m/mistral-7b-instruct-v0.2.F16.gguf"
            )
        );
        let l = read(json!({
            "name": "llama",
            "image": "example/llama:1",
            "command": ["llama-server", "-m", "/m/model.gguf"],
        }));
        assert_eq!(l.quantization, Setting::Unknown(Why::ModelConfig));
    }

    #[test]
    fn gguf_types_are_read_from_names_and_never_from_sizes() {
        assert_eq!(
            gguf_type("Llama-3.2-3B-Instruct-IQ2_XXS.gguf").as_deref(),
            Some("IQ2_XXS")
        );
        assert_eq!(
            gguf_type("llama-2-7b.Q5_K_S.gguf").as_deref(),
            Some("Q5_K_S")
        );
        assert_eq!(
            gguf_type("unsloth/Qwen3-8B-GGUF:Q4_K_M").as_deref(),
            Some("Q4_K_M")
        );
        assert_eq!(
            gguf_type("gpt-oss-20b-mxfp4.gguf").as_deref(),
            Some("MXFP4")
        );
        assert_eq!(
            gguf_type("Qwen2.5-7B-Instruct-BF16.gguf").as_deref(),
            Some("BF16")
        );
        assert_eq!(gguf_type("Qwen2.5-7B-Instruct.gguf"), None);
        assert_eq!(gguf_type("Mixtral-8x7B-v0.1.gguf"), None);
    }

    #[test]
    fn ollama_spills_to_cpu_and_names_the_model_its_script_pulls() {
        let l = read(json!({
            "name": "ollama",
            "image": "ollama/ollama:0.6.8",
            "env": [{"name": "OLLAMA_CONTEXT_LENGTH", "value": "8192"}],
        }));
        assert_eq!(l.server, Server::Ollama);
        assert!(l.spills_to_cpu);
        assert_eq!(l.model, Setting::Unknown(Why::ServerDecides));
        assert_eq!(l.max_context, given(8192, "OLLAMA_CONTEXT_LENGTH=8192"));
        let l = read(json!({
            "name": "ollama",
            "image": "ollama/ollama:0.6.8",
            "command": ["/bin/sh", "-c", "ollama serve & sleep 5 && ollama pull llama3.1:8b; wait"],
        }));
        assert_eq!(
            l.model,
            given("llama3.1:8b".to_owned(), "ollama pull llama3.1:8b")
        );
    }

    #[test]
    fn containers_that_serve_no_known_model_give_none() {
        for c in [
            json!({"name": "proxy", "image": "nginx:1.27"}),
            json!({"name": "sidecar", "image": "busybox", "command": ["sh", "-c", "sleep infinity"]}),
            json!({"name": "py", "image": "python:3.12", "command": ["python", "-m", "http.server"]}),
            json!({"name": "bad", "image": "busybox", "command": ["sh", "-c", "vllm serve 'open"]}),
        ] {
            let c: Container = serde_json::from_value(c).expect("a container");
            assert_eq!(launch(&c), None, "{:?}", c.name);
        }
    }
}
