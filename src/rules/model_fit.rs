//! `model-fit` (Performance Efficiency): the model server can load its
//! model on the GPUs its container gets. A violation only where the server
//! certainly fails at start:
//!
//! 1. it spreads the model over more GPUs (tensor × pipeline × data
//!    parallel) than the container requests (vLLM asserts
//!    `local_world_size … must be less than or equal to the number of
//!    visible devices`; TGI's extra shards find no device);
//! 2. the weights per GPU exceed one GPU's memory × the server's memory
//!    fraction (vLLM: "No available memory for the cache blocks");
//! 3. for a server that reserves the KV cache of one full sequence at start
//!    (vLLM, KServe's server on vLLM), where the catalog knows the
//!    architecture: weights + activations + the KV cache of one sequence of
//!    the served context exceed it ("To serve at least one request with the
//!    model's max seq len …").
//!
//! Every figure is a lower bound of what the server needs and an upper
//! bound of what it gets, so a violation holds on every release and every
//! GPU the pod may land on: weights from the catalog or the name's
//! parameter count (dense names only) at the fewest bytes the precision
//! allows; GPU memory read as GiB where vendors say GB; activations at the
//! smallest measured figure; an unknown memory fraction read as the whole
//! GPU. Unknown model, unknown GPU, an unknown setting, or a server that
//! runs what does not fit on the CPU (llama.cpp, Ollama): no verdict.
//! The arithmetic and its sources: docs/model-fit.md.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Container;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::serving::{Launch, Parallel, Setting, Why, launch};
use super::{Finding, Outcome, PolicyFacts, Rule, Subject};
use crate::catalog::{self, Architecture, Catalog, Gpus, Model};
use crate::gpu::GpuResources;
use crate::gpu_memory::{GpuMemory, gpu_memory};
use crate::release::Release;
use crate::rule_list::{Action, Pillar, RuleId};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Activation memory per GPU that vLLM reserves at start, GiB: the
/// smallest figure measured (KAITO's sizing guide, vLLM v0.10.1: 1.7 GiB;
/// llm-d's planner takes 5.5 for dense models and a measured H100 run
/// 4.76 for Llama-3.1-8B). The smallest keeps every verdict certain.
pub const ACTIVATIONS_GIB: f64 = 1.7;

/// Names of models whose attention is not full on every layer (sliding
/// window, or linear attention in a hybrid): the KV cache of a full
/// sequence is smaller than the formula gives, so no context verdict.
/// Their configs set `sliding_window`, `layer_types` or linear-attention
/// layers (Gemma 2–4, gpt-oss, Mistral 7B v0.1, Mixtral, Phi-3-small,
/// Qwen3-Next and Qwen 3.5+, Nemotron-H, Falcon-H1, Jamba).
const NOT_FULL_ATTENTION: &[&str] = &[
    "gemma",
    "gpt-oss",
    "mistral-7b-v0.1",
    "mistral-7b-instruct-v0.1",
    "mixtral",
    "ministral",
    "phi-3-small",
    "phi-4-mini-flash",
    "qwen3-next",
    "qwen3.5",
    "qwen3.6",
    "qwen3.8",
    "nemotron-h",
    "nemotron-3",
    "falcon-h1",
    "jamba",
    "mamba",
];

/// `model-fit` (Performance Efficiency): the model server can load its model
/// on the GPUs its container gets.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelFit {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Models the built-in catalog lacks (private fine-tunes, new
    /// releases), or corrections to its entries: an entry with the id of a
    /// built-in one replaces it. Each names its source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<Model>,
    /// VM sizes, GPU feature discovery products and MIG profiles the
    /// built-in catalog lacks (new sizes, private clouds); they come before
    /// the built-in ones.
    #[serde(default, skip_serializing_if = "no_gpus")]
    pub gpus: Gpus,
}

fn no_gpus(g: &Gpus) -> bool {
    g.vm_sizes.is_empty() && g.products.is_empty() && g.mig_profiles.is_empty()
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The built-in catalog with the policy's entries in front.
    pub catalog: Arc<Catalog>,
    pub gpus: GpuResources,
}

impl Rule for ModelFit {
    const ID: RuleId = RuleId::ModelFit;
    const PILLAR: Pillar = Pillar::PerformanceEfficiency;
    const SUMMARY: &'static str =
        "The model server can load its model on the GPUs its container gets";
    const SINCE: Release = Release::V0_3;

    type Settings = Settings;

    fn compile(&self, policy: &PolicyFacts, at: &str, problems: &mut Vec<String>) -> Settings {
        for (i, m) in self.models.iter().enumerate() {
            let at = format!("{at}.models[{i}]");
            if m.id.trim().is_empty() {
                problems.push(format!("{at}.id: must not be empty"));
            }
            for (field, v) in [
                ("paramsB", m.params_b),
                ("activeParamsB", m.active_params_b),
                ("weightGiB", m.weight_gib),
                ("bits", m.bits),
            ] {
                if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                    problems.push(format!("{at}.{field}: must be above zero"));
                }
            }
        }
        for (i, v) in self.gpus.vm_sizes.iter().enumerate() {
            if v.gpus == 0 {
                problems.push(format!("{at}.gpus.vmSizes[{i}].gpus: must be at least 1"));
            }
            if !(v.memory_per_gpu_gb.is_finite() && v.memory_per_gpu_gb > 0.0) {
                problems.push(format!(
                    "{at}.gpus.vmSizes[{i}].memoryPerGpuGB: must be above zero"
                ));
            }
        }
        for (i, p) in self.gpus.products.iter().enumerate() {
            if !(p.memory_gb.is_finite() && p.memory_gb > 0.0) {
                problems.push(format!(
                    "{at}.gpus.products[{i}].memoryGB: must be above zero"
                ));
            }
        }
        let catalog = if self.models.is_empty() && no_gpus(&self.gpus) {
            catalog::builtin().clone()
        } else {
            catalog::builtin().with(&self.models, &self.gpus)
        };
        Settings {
            catalog: Arc::new(catalog),
            gpus: policy.gpus.clone(),
        }
    }

    fn check(on: &Subject, s: &Settings, _mutate: bool) -> Outcome {
        let w = on.workload;
        let mut out = Outcome::default();
        for (i, c) in w.pod.containers.iter().enumerate() {
            let cpath = w.container_path(i);
            if let Some(f) = judge(on, s, c, &cpath) {
                out.findings.push(f);
            }
        }
        out
    }
}

/// The one finding for a container, if it certainly fails at start.
fn judge(on: &Subject, s: &Settings, c: &Container, cpath: &str) -> Option<Finding> {
    let l = launch(c)?;
    if l.spills_to_cpu {
        return None;
    }
    let (gpus, resource) = s.gpus.count_in(c)?;
    let who = format!("container \"{}\"", c.name);
    let p = l.parallel(gpus)?;
    if p.total > gpus {
        return Some(too_parallel(&who, &l, &p, gpus, &resource, cpath));
    }
    let model_id = l.model.value()?;
    let model = s.catalog.model(model_id);
    let weights = weights(model_id, model, &l, &s.catalog)?;
    let memory = gpu_memory(&on.workload.pod, c, on.ctx, &s.catalog)?;
    let fraction = Fraction::of(&l)?;
    let offload = *l.cpu_offload_gb.value().unwrap_or(&0.0);
    let kv = Kv::of(&l, model);
    let fit = Fit {
        who,
        launch: &l,
        weights,
        memory,
        fraction,
        offload,
        shards: p.shards,
        resource,
        path: if c.args.as_ref().is_some_and(|a| !a.is_empty()) {
            format!("{cpath}/args")
        } else {
            cpath.to_owned()
        },
        catalog: &s.catalog,
        kv,
    };
    fit.weights_too_large().or_else(|| fit.context_too_long())
}

/// The KV cache one sequence of the served context needs, for a server
/// that reserves it at start and a model whose architecture the catalog
/// knows.
#[derive(Debug, Clone, PartialEq)]
struct Kv {
    /// Bytes per token over all GPUs.
    per_token: f64,
    context: u64,
    /// `--max-model-len 32768`, or the default it is.
    how: String,
}

impl Kv {
    fn of(l: &Launch, model: Option<&Model>) -> Option<Kv> {
        if !l.kv_cache_at_start {
            return None;
        }
        let model = model?;
        let id = model.id.to_ascii_lowercase();
        if NOT_FULL_ATTENTION.iter().any(|n| id.contains(n)) {
            return None;
        }
        let (context, how) = match &l.max_context {
            Setting::Given { value, from } => (*value, from.clone()),
            Setting::Unknown(Why::ModelConfig) => (
                model.context?,
                format!(
                    "{} by default: the model's context",
                    l.server.flags().context
                ),
            ),
            _ => return None,
        };
        // `auto` is the model's dtype: 16 bits at least; an fp8 or unknown
        // cache type, 1 byte.
        let bytes = match l.kv_cache_dtype.value().map(|d| d.to_ascii_lowercase()) {
            Some(d) if matches!(d.as_str(), "auto" | "bfloat16" | "float16" | "half") => 2.0,
            _ => 1.0,
        };
        Some(Kv {
            per_token: kv_per_token(model, bytes)?,
            context,
            how,
        })
    }

    /// GiB on each of `n` GPUs for a sequence of `context` tokens.
    fn gib(&self, context: u64, n: u32) -> f64 {
        self.per_token * context as f64 / f64::from(n) / GIB
    }
}

/// R1: more GPUs in the server's parallelism than the container gets.
fn too_parallel(
    who: &str,
    l: &Launch,
    p: &Parallel,
    gpus: u32,
    resource: &str,
    cpath: &str,
) -> Finding {
    let tp = l.server.flags().tensor_parallel;
    Finding::new(
        format!(
            "{who} runs {} over {} GPUs ({}) but requests {gpus} {resource}: the server stops at \
             start, since it sees only {gpus}",
            l.server, p.total, p.how
        ),
        format!(
            "request {} {resource} (limits), or lower {tp} so that tensor × pipeline × data \
             parallel is at most {gpus}",
            p.total
        ),
        format!("{cpath}/resources"),
    )
}

/// The weights the server loads, in GiB at least, and how that is known.
#[derive(Debug, Clone, PartialEq)]
struct Weights {
    gib: f64,
    /// `bf16 weights (70B parameters, from its name)`.
    how: String,
    /// Bytes per parameter, where the parameter count is known (to price a
    /// move to fp8).
    params_b: Option<f64>,
    bytes: f64,
}

/// The weights `model_id` (`m`: its catalog entry, looked up once by the
/// caller) takes in the precision the server loads it in, at least; None
/// where the model, its precision or the quantization is unknown.
fn weights(model_id: &str, m: Option<&Model>, l: &Launch, catalog: &Catalog) -> Option<Weights> {
    let float32 = l
        .dtype
        .value()
        .is_some_and(|d| matches!(d.to_ascii_lowercase().as_str(), "float32" | "float"));
    // Parameters, in billions: the catalog's count, the size of its 16-bit
    // files, or a dense name's count.
    let (params_b, params_from) = match m {
        Some(m) if m.params_b.is_some() => (m.params_b, "catalog"),
        Some(m) if m.quantization.is_none() && m.weight_gib.is_some() => (
            m.weight_gib.map(|g| g * GIB / 2.0 / 1e9),
            "catalog, from its 16-bit files",
        ),
        _ => (catalog.lower_bound_params(model_id), "from its name"),
    };
    let name = m.map_or(model_id, |m| m.name());
    match &l.quantization {
        Setting::Given { value, from } => {
            let bytes = quantized_bytes(value)?;
            if let Some(m) = m.filter(|m| m.quantization.is_some()) {
                // Already quantized: its own files, whatever the flag says.
                return published(m);
            }
            let p = params_b?;
            Some(Weights {
                gib: p * 1e9 * bytes / GIB,
                how: format!(
                    "{} weights ({from}; {} parameters, {params_from})",
                    precision(bytes),
                    billions(p)
                ),
                params_b: Some(p),
                bytes,
            })
        }
        Setting::Unknown(Why::ModelConfig) | Setting::Default(_) => {
            if let Some(m) = m {
                if m.quantization.is_some() {
                    return published(m);
                }
                if let Some(files) = m.weight_gib {
                    let (gib, bytes) = if float32 {
                        (files * 2.0, 4.0)
                    } else {
                        (files, 2.0)
                    };
                    return Some(Weights {
                        gib,
                        how: format!(
                            "{} weights ({name}'s published files{})",
                            precision(bytes),
                            if float32 { ", in float32" } else { "" }
                        ),
                        params_b,
                        bytes,
                    });
                }
            }
            let p = params_b?;
            let mut bytes = match m {
                Some(_) => 2.0,
                None => catalog.name_weight_bytes(model_id),
            };
            if float32 && bytes == 2.0 {
                bytes = 4.0;
            }
            Some(Weights {
                gib: p * 1e9 * bytes / GIB,
                how: format!(
                    "{} weights ({} parameters, {params_from})",
                    precision(bytes),
                    billions(p)
                ),
                params_b: Some(p),
                bytes,
            })
        }
        // A config file, a run-time word or variable may quantize it.
        Setting::Unknown(_) => None,
    }
}

/// The files of a model published quantized: the smaller of their size
/// and its parameters at its stated bits (file sums can overstate: gpt-oss
/// ships more than vLLM loads).
fn published(m: &Model) -> Option<Weights> {
    let at_bits = match (m.params_b, m.bits) {
        (Some(p), Some(b)) => Some(p * 1e9 * b / 8.0 / GIB),
        _ => None,
    };
    let gib = match (m.weight_gib, at_bits) {
        (Some(f), Some(b)) => f.min(b),
        (f, b) => f.or(b)?,
    };
    let q = m.quantization.as_deref().unwrap_or("quantized");
    Some(Weights {
        gib,
        how: format!("{q} weights ({}'s published checkpoint)", m.name()),
        params_b: m.params_b,
        bytes: m.bits.map_or(0.5, |b| b / 8.0),
    })
}

/// Bytes per parameter a quantization method stores at least; None for a
/// method whose bits vary (compressed-tensors, hqq, exl2, AQLM, GGUF).
fn quantized_bytes(method: &str) -> Option<f64> {
    let m = method.to_ascii_lowercase().replace('-', "_");
    match m.as_str() {
        "fp8" | "fbgemm_fp8" | "ptpc_fp8" | "fp8_e4m3" | "fp8_e5m2" | "experts_int8" | "int8"
        | "eetq" | "w8a8" | "modelopt" => Some(1.0),
        "awq" | "awq_marlin" | "marlin" | "bitsandbytes" | "bitsandbytes_nf4"
        | "bitsandbytes_fp4" | "nf4" | "fp4" | "mxfp4" | "nvfp4" | "modelopt_fp4" => Some(0.5),
        // GPTQ stores 2, 3, 4 or 8 bits.
        "gptq" | "gptq_marlin" | "gptq_marlin_24" => Some(0.25),
        _ => None,
    }
}

fn precision(bytes: f64) -> &'static str {
    match bytes {
        b if b >= 4.0 => "float32",
        b if b >= 2.0 => "16-bit",
        b if b >= 1.0 => "8-bit",
        b if b >= 0.5 => "4-bit",
        _ => "2-bit",
    }
}

/// `70B`, `0.5B`, `46.7B`.
fn billions(p: f64) -> String {
    let rounded = (p * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}B")
    } else {
        format!("{rounded:.1}B")
    }
}

/// The share of each GPU's memory the server budgets, and what says so.
#[derive(Debug, Clone, PartialEq)]
struct Fraction {
    value: f64,
    how: String,
}

impl Fraction {
    fn of(l: &Launch) -> Option<Fraction> {
        let flag = l.server.flags().memory_fraction;
        Some(match &l.memory_fraction {
            Setting::Given { value, from } if *value > 0.0 && *value <= 1.0 => Fraction {
                value: *value,
                how: format!("at {from}"),
            },
            Setting::Given { .. } => return None,
            Setting::Default(v) => Fraction {
                value: *v,
                how: format!("at {flag} {v} ({}'s default)", l.server),
            },
            // Unknown: whatever it is, not more than the whole GPU.
            Setting::Unknown(Why::ServerDecides) => Fraction {
                value: 1.0,
                how: "even if the server took all of it".into(),
            },
            Setting::Unknown(_) => Fraction {
                value: 1.0,
                how: format!("even at {flag} 1.0"),
            },
        })
    }
}

/// Everything one container's verdict reads.
struct Fit<'a> {
    who: String,
    launch: &'a Launch,
    weights: Weights,
    memory: GpuMemory,
    fraction: Fraction,
    offload: f64,
    shards: u32,
    resource: String,
    path: String,
    catalog: &'a Catalog,
    kv: Option<Kv>,
}

impl Fit<'_> {
    /// GiB one GPU gives the server.
    fn budget(&self) -> f64 {
        self.memory.gib() * self.fraction.value
    }

    /// Weights on one GPU over `n` of them, GiB.
    fn weights_per_gpu(&self, gib: f64, n: u32) -> f64 {
        (gib / f64::from(n) - self.offload).max(0.0)
    }

    /// `1 × 24.0 GiB GPU (Standard_NV36ads_A10_v5 …) gives 22.1 GiB at …`.
    fn gives(&self) -> String {
        format!(
            "{} × {:.1} GiB GPU ({}) gives {:.1} GiB each {}",
            self.shards,
            self.memory.gib(),
            self.memory.source,
            self.budget(),
            self.fraction.how
        )
    }

    /// Whether the model fits `n` GPUs of `budget` GiB each with `gib` of
    /// weights: the weights, and where the KV cache is known, activations
    /// and one sequence of `context` tokens.
    fn fits(&self, n: u32, gib: f64, budget: f64, context: u64) -> bool {
        let kv = self
            .kv
            .as_ref()
            .map_or(0.0, |kv| ACTIVATIONS_GIB + kv.gib(context, n));
        self.weights_per_gpu(gib, n) + kv <= budget
    }

    /// R2: the weights alone do not fit.
    fn weights_too_large(&self) -> Option<Finding> {
        let per_gpu = self.weights_per_gpu(self.weights.gib, self.shards);
        if per_gpu <= self.budget() {
            return None;
        }
        let l = self.launch;
        let spread = if self.shards == 1 {
            "on one GPU".to_owned()
        } else {
            format!("{per_gpu:.1} GiB on each of {} GPUs", self.shards)
        };
        let offload = if self.offload > 0.0 {
            format!(
                ", after {:.1} GiB per GPU offloaded to the CPU",
                self.offload
            )
        } else {
            String::new()
        };
        Some(Finding::new(
            format!(
                "{} cannot load {}: about {:.1} GiB of {} {spread}{offload}; {}. {} stops at \
                 start (no memory left for the KV cache)",
                self.who,
                self.model(),
                self.weights.gib,
                self.weights.how,
                self.gives(),
                l.server
            ),
            self.choices(None),
            self.path.clone(),
        ))
    }

    /// R3: weights, activations and one full sequence's KV cache do not
    /// fit, for a server that needs that at start.
    fn context_too_long(&self) -> Option<Finding> {
        let kv = self.kv.as_ref()?;
        let l = self.launch;
        if self.fits(self.shards, self.weights.gib, self.budget(), kv.context) {
            return None;
        }
        let weights = self.weights_per_gpu(self.weights.gib, self.shards);
        let left = self.budget() - weights - ACTIVATIONS_GIB;
        let fits = if left > 0.0 {
            (left * GIB * f64::from(self.shards) / kv.per_token).floor() as u64
        } else {
            0
        };
        let shorter = (fits >= 1024).then(|| {
            let mut c = 1024u64;
            while c * 2 <= fits {
                c *= 2;
            }
            c
        });
        Some(Finding::new(
            format!(
                "{} cannot serve {} at {} tokens ({}): one sequence's KV cache needs {:.1} GiB \
                 {}, after about {weights:.1} GiB of {} and {ACTIVATIONS_GIB} \
                 GiB of activations; {}. {} stops at start (the KV cache cannot hold one \
                 request of its max length){}",
                self.who,
                self.model(),
                thousands(kv.context),
                kv.how,
                kv.gib(kv.context, self.shards),
                if self.shards == 1 {
                    "on its GPU".to_owned()
                } else {
                    format!("on each of {} GPUs", self.shards)
                },
                self.weights.how,
                self.gives(),
                l.server,
                if fits > 0 {
                    format!("; about {} tokens fit", thousands(fits))
                } else {
                    String::new()
                }
            ),
            self.choices(shorter),
            self.path.clone(),
        ))
    }

    fn model(&self) -> String {
        self.launch.model.value().cloned().unwrap_or_default()
    }

    /// The ways out, each one that fits by the same arithmetic at the
    /// served context: a shorter context, tensor
    /// parallel over more GPUs (and a size that has them), 8-bit weights, a
    /// larger GPU.
    fn choices(&self, shorter: Option<u64>) -> String {
        let context = self.kv.as_ref().map_or(0, |kv| kv.context);
        let fits = |n: u32, gib: f64, budget: f64| self.fits(n, gib, budget, context);
        let flags = self.launch.server.flags();
        let u = self.fraction.value;
        let mut out = Vec::new();
        if let Some(c) = shorter {
            out.push(format!("{} {c}", flags.context));
        }
        let by_size = |a: &&catalog::VmSize, b: &&catalog::VmSize| {
            (a.gpus, a.memory_per_gpu_gb)
                .partial_cmp(&(b.gpus, b.memory_per_gpu_gb))
                .unwrap_or(std::cmp::Ordering::Equal)
        };
        let mig = self.resource.starts_with("nvidia.com/mig-");
        // One process sees one MIG slice: no tensor parallel over slices.
        if let Some(n) = [2u32, 4, 8]
            .into_iter()
            .filter(|_| !mig)
            .find(|n| *n > self.shards && fits(*n, self.weights.gib, self.budget()))
        {
            let size = self
                .sizes()
                .into_iter()
                .filter(|v| v.gpus >= n && fits(n, self.weights.gib, v.memory_per_gpu_gb * u))
                .min_by(by_size)
                .map(|v| format!(" on {}", v.name))
                .unwrap_or_default();
            out.push(format!(
                "tensor parallel over {n} GPUs ({} {n} with {}: {n}){size}",
                flags.tensor_parallel, self.resource
            ));
        }
        if self.weights.bytes > 1.0
            && let Some(p) = self.weights.params_b
            && fits(self.shards, p * 1e9 / GIB, self.budget())
        {
            out.push(format!(
                "{} fp8 (about {:.1} GiB of weights)",
                flags.quantization,
                p * 1e9 / GIB
            ));
        }
        if mig {
            let slice = self
                .catalog
                .gpus()
                .mig_profiles
                .iter()
                .flat_map(|g| &g.profiles)
                .filter_map(|p| self.catalog.mig_profile(p))
                .filter(|p| {
                    p.memory_gb > self.memory.gib()
                        && fits(self.shards, self.weights.gib, p.memory_gb * u)
                })
                .min_by(|a, b| {
                    (a.memory_gb, a.slices)
                        .partial_cmp(&(b.memory_gb, b.slices))
                        .unwrap_or(std::cmp::Ordering::Equal)
                });
            if let Some(p) = slice {
                out.push(format!("a larger MIG slice: nvidia.com/mig-{}", p.profile));
            }
        }
        // The fewest GPUs first (a one-GPU size before an eight-GPU one),
        // then the least memory.
        let larger = self
            .sizes()
            .into_iter()
            .filter(|v| {
                !mig && v.gpus >= self.shards
                    && v.memory_per_gpu_gb > self.memory.gib()
                    && fits(self.shards, self.weights.gib, v.memory_per_gpu_gb * u)
            })
            .min_by(by_size);
        if let Some(v) = larger {
            out.push(format!(
                "a larger GPU: {} ({} × {} GB)",
                v.name, v.gpus, v.memory_per_gpu_gb
            ));
        }
        if out.is_empty() {
            "serve a smaller or quantized model, or spread it over nodes (pipeline parallel in a \
             LeaderWorkerSet)"
                .into()
        } else {
            out.join(", or ")
        }
    }

    /// Whole-GPU sizes of the catalog (fractional A10 sizes left out) of
    /// the resource the container requests.
    fn sizes(&self) -> Vec<&catalog::VmSize> {
        self.catalog
            .gpus()
            .vm_sizes
            .iter()
            .filter(|v| v.gpu_share.is_none() && v.resource() == self.resource)
            .collect()
    }
}

/// KV cache bytes per token: 2 (K and V) × layers × KV heads × head size ×
/// bytes, or for multi-head latent attention layers × (KV rank + RoPE head
/// size) × bytes.
fn kv_per_token(m: &Model, bytes: f64) -> Option<f64> {
    let layers = f64::from(m.layers?);
    if let (Some(rank), Some(rope)) = (m.kv_lora_rank, m.qk_rope_head_dim) {
        return Some(layers * f64::from(rank + rope) * bytes);
    }
    if m.architecture == Some(Architecture::Moe) && m.kv_heads.is_none() {
        return None;
    }
    Some(2.0 * layers * f64::from(m.kv_heads?) * f64::from(m.head_size()?) * bytes)
}

/// `131,072`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Context;
    use crate::placement::NodeRef;
    use crate::rules::testing::{defaults, in_context, on, workload};
    use serde_json::{Value, json};

    /// A Deployment of one model server container: `args` (the image is
    /// vLLM's, whose entrypoint is `vllm serve`), `gpus` of `resource`, on
    /// the nodes `selector` picks.
    fn server(
        image: &str,
        command: Value,
        args: Value,
        env: Value,
        gpus: &str,
        selector: Value,
    ) -> Value {
        let resource = if gpus.contains(':') {
            gpus.split(':').next().unwrap_or_default().to_owned()
        } else {
            "nvidia.com/gpu".to_owned()
        };
        let count = gpus.rsplit(':').next().unwrap_or_default();
        let mut c = json!({
            "name": "llm",
            "image": image,
            "args": args,
            "env": env,
            "resources": {"limits": {resource: count}},
        });
        if !command.is_null() {
            c["command"] = command;
        }
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "llm", "namespace": "ml"},
            "spec": {
                "selector": {"matchLabels": {"app": "llm"}},
                "template": {
                    "metadata": {"labels": {"app": "llm"}},
                    "spec": {"nodeSelector": selector, "containers": [c]},
                },
            },
        })
    }

    fn vllm(args: &[&str], gpus: &str, selector: Value) -> Value {
        server(
            "vllm/vllm-openai:v0.10.1",
            Value::Null,
            json!(args),
            json!([]),
            gpus,
            selector,
        )
    }

    fn size(name: &str) -> Value {
        json!({"node.kubernetes.io/instance-type": name})
    }

    fn findings(obj: &Value) -> Vec<Finding> {
        ModelFit::check(&on(&workload(obj)), &defaults::<ModelFit>(), false).findings
    }

    fn one(obj: &Value) -> Finding {
        let f = findings(obj);
        assert_eq!(f.len(), 1, "{f:#?}");
        f.into_iter().next().unwrap()
    }

    #[test]
    fn seventy_b_in_bf16_does_not_load_on_one_a100_80gb() {
        let d = vllm(
            &["meta-llama/Llama-3.1-70B-Instruct"],
            "1",
            size("Standard_NC24ads_A100_v4"),
        );
        let f = one(&d);
        assert!(
            f.message.starts_with(
                "container \"llm\" cannot load meta-llama/Llama-3.1-70B-Instruct: about 130.4 GiB \
                 of 16-bit weights (70B parameters, from its name) on one GPU; 1 × 80.0 GiB GPU \
                 (Standard_NC24ads_A100_v4: NVIDIA A100 80GB PCIe) gives 73.6 GiB each at \
                 --gpu-memory-utilization 0.92 (vLLM's default). vLLM stops at start"
            ),
            "{}",
            f.message
        );
        // Two A100s hold the weights but not the model's 131,072-token
        // context; four do, and so does fp8 on one with a shorter context.
        assert!(
            f.fix.contains(
                "tensor parallel over 4 GPUs (--tensor-parallel-size 4 with nvidia.com/gpu: 4) \
                 on Standard_NC96ads_A100_v4"
            ),
            "{}",
            f.fix
        );
        assert_eq!(f.path, "/spec/template/spec/containers/0/args");
    }

    #[test]
    fn seventy_b_fits_where_the_fix_says() {
        let tp4 = vllm(
            &[
                "meta-llama/Llama-3.1-70B-Instruct",
                "--tensor-parallel-size",
                "4",
            ],
            "4",
            size("Standard_NC96ads_A100_v4"),
        );
        assert!(findings(&tp4).is_empty(), "{:#?}", findings(&tp4));
        let fp8 = vllm(
            &[
                "meta-llama/Llama-3.1-70B-Instruct",
                "--quantization",
                "fp8",
                "--max-model-len",
                "16384",
            ],
            "1",
            size("Standard_NC40ads_H100_v5"),
        );
        assert!(findings(&fp8).is_empty(), "{:#?}", findings(&fp8));
    }

    #[test]
    fn llama_8b_at_its_full_context_does_not_fit_an_a10() {
        let d = vllm(
            &["meta-llama/Llama-3.1-8B-Instruct"],
            "1",
            size("Standard_NV36ads_A10_v5"),
        );
        let f = one(&d);
        assert!(
            f.message.contains(
                "cannot serve meta-llama/Llama-3.1-8B-Instruct at 131,072 tokens (--max-model-len \
                 by default: the model's context): one sequence's KV cache needs 16.0 GiB on its \
                 GPU"
            ),
            "{}",
            f.message
        );
        assert!(f.message.contains("gives 22.1 GiB each"), "{}", f.message);
        assert!(f.message.contains("about 44,"), "{}", f.message);
        assert!(f.fix.starts_with("--max-model-len 32768"), "{}", f.fix);
        // The fix admits it.
        let short = vllm(
            &[
                "meta-llama/Llama-3.1-8B-Instruct",
                "--max-model-len",
                "32768",
            ],
            "1",
            size("Standard_NV36ads_A10_v5"),
        );
        assert!(findings(&short).is_empty(), "{:#?}", findings(&short));
        // So does an fp8 KV cache at 65,536 tokens, and a larger GPU.
        let fp8_kv = vllm(
            &[
                "meta-llama/Llama-3.1-8B-Instruct",
                "--max-model-len=65536",
                "--kv-cache-dtype=fp8",
            ],
            "1",
            size("Standard_NV36ads_A10_v5"),
        );
        assert!(findings(&fp8_kv).is_empty());
        let a100 = vllm(
            &["meta-llama/Llama-3.1-8B-Instruct"],
            "1",
            size("Standard_NC24ads_A100_v4"),
        );
        assert!(findings(&a100).is_empty());
    }

    #[test]
    fn more_parallel_gpus_than_the_container_gets_fails_on_every_server() {
        let d = vllm(
            &[
                "meta-llama/Llama-3.1-8B-Instruct",
                "--tensor-parallel-size",
                "4",
            ],
            "2",
            json!({}),
        );
        let f = one(&d);
        assert_eq!(
            f.message,
            "container \"llm\" runs vLLM over 4 GPUs (--tensor-parallel-size 4) but requests 2 \
             nvidia.com/gpu: the server stops at start, since it sees only 2"
        );
        assert_eq!(f.path, "/spec/template/spec/containers/0/resources");
        let tgi = server(
            "ghcr.io/huggingface/text-generation-inference:3.0.1",
            Value::Null,
            json!([]),
            json!([{"name": "MODEL_ID", "value": "meta-llama/Llama-3.1-8B-Instruct"},
                   {"name": "NUM_SHARD", "value": "4"}]),
            "2",
            json!({}),
        );
        assert!(
            one(&tgi)
                .message
                .contains("runs TGI over 4 GPUs (NUM_SHARD=4)")
        );
        let sglang = server(
            "lmsysorg/sglang:v0.4.9",
            json!(["python3", "-m", "sglang.launch_server"]),
            json!([
                "--model-path",
                "Qwen/Qwen2.5-7B-Instruct",
                "--tp",
                "2",
                "--dp",
                "2"
            ]),
            json!([]),
            "2",
            json!({}),
        );
        assert!(
            one(&sglang)
                .message
                .contains("runs SGLang over 4 GPUs (--tp 2 × --dp 2) but requests 2"),
            "{:#?}",
            findings(&sglang)
        );
    }

    #[test]
    fn tgi_sglang_and_kserve_cannot_load_seventy_b_on_one_a100() {
        let tgi = server(
            "ghcr.io/huggingface/text-generation-inference:3.0.1",
            Value::Null,
            json!([]),
            json!([{"name": "MODEL_ID", "value": "meta-llama/Llama-3.1-70B-Instruct"}]),
            "1",
            size("Standard_NC24ads_A100_v4"),
        );
        let f = one(&tgi);
        assert!(
            f.message
                .contains("gives 80.0 GiB each at --cuda-memory-fraction 1 (TGI's default)"),
            "{}",
            f.message
        );
        assert!(f.fix.contains("--num-shard 2"), "{}", f.fix);
        let sglang = server(
            "lmsysorg/sglang:v0.4.9",
            json!(["python3", "-m", "sglang.launch_server"]),
            json!(["--model-path", "meta-llama/Llama-3.1-70B-Instruct"]),
            json!([]),
            "1",
            size("Standard_NC24ads_A100_v4"),
        );
        assert!(
            one(&sglang)
                .message
                .contains("gives 80.0 GiB each even if the server took all of it"),
            "{:#?}",
            findings(&sglang)
        );
        let kserve = server(
            "kserve/huggingfaceserver:v0.15.2",
            json!(["python", "-m", "huggingfaceserver"]),
            json!([
                "--model_name=llama",
                "--model_id=meta-llama/Llama-3.1-70B-Instruct",
                "--backend=vllm"
            ]),
            json!([]),
            "1",
            size("Standard_NC24ads_A100_v4"),
        );
        assert!(
            one(&kserve)
                .message
                .contains("gives 73.6 GiB each at --gpu-memory-utilization 0.92"),
            "{:#?}",
            findings(&kserve)
        );
    }

    #[test]
    fn gpu_memory_from_a_mig_slice_a_gfd_label_or_the_nodes_the_pod_can_use() {
        // 15 GiB of Llama-3.1-8B on a 10 GB slice, then on a 40 GB one.
        let small = vllm(
            &[
                "meta-llama/Llama-3.1-8B-Instruct",
                "--max-model-len",
                "8192",
            ],
            "nvidia.com/mig-1g.10gb:1",
            json!({}),
        );
        assert!(one(&small).message.contains("(MIG nvidia.com/mig-1g.10gb)"));
        let large = vllm(
            &[
                "meta-llama/Llama-3.1-8B-Instruct",
                "--max-model-len",
                "8192",
            ],
            "nvidia.com/mig-3g.40gb:1",
            json!({}),
        );
        assert!(findings(&large).is_empty());
        // GPU feature discovery's memory label, in MiB (a T4 reads 15360).
        let t4 = vllm(
            &["meta-llama/Llama-3.1-8B-Instruct"],
            "1",
            json!({"nvidia.com/gpu.memory": "15360"}),
        );
        assert!(
            one(&t4)
                .message
                .contains("1 × 15.0 GiB GPU (nvidia.com/gpu.memory=15360)")
        );
        let product = vllm(
            &["meta-llama/Llama-3.1-70B-Instruct"],
            "1",
            json!({"nvidia.com/gpu.product": "Tesla-T4"}),
        );
        assert!(
            one(&product)
                .message
                .contains("nvidia.com/gpu.product=Tesla-T4")
        );
        // Only the Nodes say: the pod selects a pool whose Nodes carry the label.
        let d = vllm(
            &["meta-llama/Llama-3.1-70B-Instruct"],
            "1",
            json!({"agentpool": "gpu"}),
        );
        assert!(findings(&d).is_empty(), "no Nodes: unknown");
        let mut ctx = Context::default();
        for (name, pool, mib) in [("gpu-1", "gpu", "23028"), ("cpu-1", "cpu", "")] {
            let mut labels = json!({"agentpool": pool});
            if !mib.is_empty() {
                labels["nvidia.com/gpu.memory"] = json!(mib);
                labels["nvidia.com/gpu.count"] = json!("1");
            }
            let node = json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": labels},
                "status": {"allocatable": {"nvidia.com/gpu": "1"}}});
            ctx.add_node(NodeRef::from_value(node, "test").unwrap());
        }
        let w = workload(&d);
        let f = ModelFit::check(&in_context(&w, &ctx), &defaults::<ModelFit>(), false).findings;
        assert_eq!(f.len(), 1, "{f:#?}");
        assert!(
            f[0].message
                .contains("1 × 22.5 GiB GPU (nvidia.com/gpu.memory=23028 on Node gpu-1)"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn no_verdict_where_anything_is_unknown() {
        for d in [
            // A model the catalog and its name do not size.
            vllm(
                &["contoso/private-model"],
                "1",
                size("Standard_NV36ads_A10_v5"),
            ),
            // A mixture-of-experts name gives no lower bound.
            vllm(&["someone/Big-8x22B"], "1", size("Standard_NV36ads_A10_v5")),
            // No GPU memory known.
            vllm(&["meta-llama/Llama-3.1-70B-Instruct"], "1", json!({})),
            // A config file may quantize it.
            vllm(
                &[
                    "meta-llama/Llama-3.1-70B-Instruct",
                    "--config",
                    "/etc/vllm.yaml",
                ],
                "1",
                size("Standard_NV36ads_A10_v5"),
            ),
            // llama.cpp runs what does not fit on the CPU.
            server(
                "ghcr.io/ggml-org/llama.cpp:server-cuda",
                json!(["llama-server"]),
                json!(["-m", "/models/Llama-3.3-70B-Instruct-F16.gguf"]),
                json!([]),
                "1",
                size("Standard_NV36ads_A10_v5"),
            ),
        ] {
            assert!(findings(&d).is_empty(), "{d}: {:#?}", findings(&d));
        }
    }

    #[test]
    fn quantized_names_and_flags_count_their_bytes() {
        // An FP8 name: 70 GiB-ish, too much for an A10 but not for an H100 NVL.
        let fp8 = vllm(
            &[
                "someone/Llama-3.3-70B-Instruct-FP8",
                "--max-model-len",
                "8192",
            ],
            "1",
            size("Standard_NC40ads_H100_v5"),
        );
        assert!(findings(&fp8).is_empty(), "{:#?}", findings(&fp8));
        let a10 = vllm(
            &["someone/Llama-3.3-70B-Instruct-FP8"],
            "1",
            size("Standard_NV36ads_A10_v5"),
        );
        assert!(
            one(&a10)
                .message
                .contains("about 65.2 GiB of 8-bit weights")
        );
        // Offloading to the CPU lowers what the GPU holds.
        let offload = vllm(
            &[
                "meta-llama/Llama-3.1-70B-Instruct",
                "--cpu-offload-gb",
                "60",
                "--max-model-len",
                "4096",
            ],
            "1",
            size("Standard_NC24ads_A100_v4"),
        );
        assert!(findings(&offload).is_empty(), "{:#?}", findings(&offload));
    }

    #[test]
    fn a_policy_adds_models_and_sizes() {
        let spec: ModelFit = serde_yaml_ng::from_str(
            "models: [{id: contoso/private-model, source: our registry, weightGiB: 40}]\n\
             gpus: {vmSizes: [{name: Standard_Contoso_L4, gpu: NVIDIA L4, gpus: 1, \
             memoryPerGpuGB: 24, source: our docs}]}",
        )
        .unwrap();
        let s = crate::rules::testing::settings_of(&spec);
        let d = vllm(&["contoso/private-model"], "1", size("Standard_Contoso_L4"));
        let f = ModelFit::check(&on(&workload(&d)), &s, false).findings;
        assert_eq!(f.len(), 1, "{f:#?}");
        assert!(
            f[0].message.contains("about 40.0 GiB of 16-bit weights"),
            "{}",
            f[0].message
        );
        let mut problems = vec![];
        let bad: ModelFit =
            serde_yaml_ng::from_str("models: [{id: '', source: x, weightGiB: -1}]").unwrap();
        bad.compile(
            &crate::rules::testing::policy_facts(),
            "spec.rules.modelFit",
            &mut problems,
        );
        assert_eq!(
            problems,
            [
                "spec.rules.modelFit.models[0].id: must not be empty",
                "spec.rules.modelFit.models[0].weightGiB: must be above zero"
            ]
        );
    }
}
