//! What the engine knows about models and GPUs: two data files shipped in
//! the binary (`data/models.yaml`, `data/gpus.yaml`), every entry with its
//! source, and the lookups the model-aware rules make.
//!
//! Invariants:
//! - A number is in the catalog only if its source states it; what a source
//!   does not give is `None`, and a lookup that finds nothing is `None`:
//!   "unknown", which the rules turn into no verdict, never a guess.
//! - The built-in data are parsed once. Should they ever fail to parse
//!   (the tests here make sure they do not), the built-in catalog is empty:
//!   every lookup answers "unknown", which can only cost a verdict, never
//!   cause a wrong deny.
//! - A policy's entries (`Catalog::with`) come before the built-in ones, so
//!   a policy can correct or add a model or a VM size.

use std::collections::HashMap;
use std::sync::LazyLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `data/models.yaml`.
pub const MODELS_YAML: &str = include_str!("../data/models.yaml");
/// `data/gpus.yaml`.
pub const GPUS_YAML: &str = include_str!("../data/gpus.yaml");

/// Dense or mixture-of-experts.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Dense,
    Moe,
}

/// A model by its Hugging Face id, with what its published configuration
/// and weights say.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Model {
    /// The Hugging Face id (`meta-llama/Llama-3.1-8B-Instruct`); matched
    /// case-insensitively, with or without the organisation.
    pub id: String,
    /// Where the values come from: a URL or a repository path.
    pub source: String,
    /// Dense or mixture-of-experts (`dense`, `moe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Architecture>,
    /// Total parameters, in billions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params_b: Option<f64>,
    /// Parameters active per token (mixture-of-experts), in billions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_params_b: Option<f64>,
    /// The size of the published weight files, in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "weightGiB")]
    pub weight_gib: Option<f64>,
    /// `num_hidden_layers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<u32>,
    /// `num_attention_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_heads: Option<u32>,
    /// `num_key_value_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_heads: Option<u32>,
    /// `hidden_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_size: Option<u32>,
    /// `head_dim`, where the configuration sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<u32>,
    /// `kv_lora_rank` (multi-head latent attention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_lora_rank: Option<u32>,
    /// `qk_rope_head_dim` (multi-head latent attention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qk_rope_head_dim: Option<u32>,
    /// The default context: `max_position_embeddings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<u64>,
    /// How the published weights are quantized (`mxfp4`, `fp8`, `awq`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
    /// Bits per weight of that quantization, where the source says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits: Option<f64>,
}

impl Model {
    /// The attention head size: `head_dim`, else `hidden_size /
    /// num_attention_heads` (what transformers and KAITO's preset generator
    /// take when `head_dim` is absent).
    pub fn head_size(&self) -> Option<u32> {
        self.head_dim
            .or_else(|| match (self.hidden_size, self.attention_heads) {
                (Some(h), Some(n)) if n > 0 && h % n == 0 => Some(h / n),
                _ => None,
            })
    }

    /// The id without its organisation (`Llama-3.1-8B-Instruct`).
    pub fn name(&self) -> &str {
        short(&self.id)
    }
}

/// An Azure VM size, as `node.kubernetes.io/instance-type` names it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmSize {
    /// `Standard_NC24ads_A100_v4`; matched case-insensitively.
    pub name: String,
    /// Other spellings of the same size (KAITO writes
    /// `Standard_ND96asr_A100_v4` for `Standard_ND96asr_v4`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The GPU, as the vendor names it.
    pub gpu: String,
    /// GPUs the size gives a node.
    pub gpus: u32,
    /// Memory per GPU in GB, as the vendor states it (nominal).
    #[serde(rename = "memoryPerGpuGB")]
    pub memory_per_gpu_gb: f64,
    /// The share of one GPU a partial size gets (`1/6`); its memory is that
    /// share's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_share: Option<String>,
    /// The extended resource its GPUs are (`nvidia.com/gpu` unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Its `nvidia.com/gpu.product` label, where a source gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Where the values come from: a URL or a repository path.
    pub source: String,
}

impl VmSize {
    /// The extended resource its GPUs are.
    pub fn resource(&self) -> &str {
        self.resource.as_deref().unwrap_or("nvidia.com/gpu")
    }
}

/// A GPU as GPU feature discovery's `nvidia.com/gpu.product` label names it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GpuProduct {
    /// The label's value (`Tesla-T4`); matched case-insensitively.
    pub product: String,
    /// The GPU, as the vendor names it.
    pub gpu: String,
    /// Its memory in GB, as the vendor states it (nominal).
    #[serde(rename = "memoryGB")]
    pub memory_gb: f64,
    /// Where the values come from: a URL or a repository path.
    pub source: String,
}

/// The MIG profiles one GPU offers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MigGpu {
    /// The GPU (`NVIDIA A100 80GB`).
    pub gpu: String,
    /// The whole GPU's memory in GB.
    #[serde(rename = "memoryGB")]
    pub memory_gb: f64,
    /// Profile names (`1g.10gb`, `3g.40gb`); the resource is
    /// `nvidia.com/mig-<profile>`.
    pub profiles: Vec<String>,
    /// Where the values come from: a URL or a repository path.
    pub source: String,
}

/// The GPU half of the catalog, as `data/gpus.yaml` (and a policy) writes
/// it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gpus {
    #[serde(default)]
    pub vm_sizes: Vec<VmSize>,
    #[serde(default)]
    pub products: Vec<GpuProduct>,
    #[serde(default)]
    pub mig_profiles: Vec<MigGpu>,
}

/// The model half, as `data/models.yaml` writes it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Models {
    models: Vec<Model>,
}

/// A MIG slice by its resource name.
#[derive(Clone, Debug, PartialEq)]
pub struct MigProfile {
    /// `3g.40gb`.
    pub profile: String,
    /// Compute slices (`3` in `3g.40gb`).
    pub slices: u32,
    /// Its memory in GB: the `<GB>gb` part of the name, which NVIDIA's MIG
    /// naming and GPU feature discovery (`mig-<slice_count>g.<memory_size>gb`)
    /// define as the slice's memory.
    pub memory_gb: f64,
    /// The GPUs the catalog lists it for; empty when the name is read by
    /// its format alone.
    pub gpus: Vec<String>,
}

/// Models and GPUs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    models: Vec<Model>,
    gpus: Gpus,
    /// Lower-cased id, and name without organisation, to the first entry
    /// that has it: the lookups run on the webhook's request path.
    by_id: HashMap<String, usize>,
    by_name: HashMap<String, usize>,
    /// Lower-cased VM size names and aliases to the first size.
    by_size: HashMap<String, usize>,
}

static BUILTIN: LazyLock<Catalog> = LazyLock::new(|| Catalog::parse().unwrap_or_default());

/// The catalog shipped in the binary.
pub fn builtin() -> &'static Catalog {
    &BUILTIN
}

/// [`Catalog::model`] on the built-in catalog.
pub fn model(id: &str) -> Option<&'static Model> {
    builtin().model(id)
}

/// [`Catalog::vm_size`] on the built-in catalog.
pub fn vm_size(name: &str) -> Option<&'static VmSize> {
    builtin().vm_size(name)
}

/// [`Catalog::gpu_product`] on the built-in catalog.
pub fn gpu_product(label: &str) -> Option<&'static GpuProduct> {
    builtin().gpu_product(label)
}

/// [`Catalog::mig_profile`] on the built-in catalog.
pub fn mig_profile(resource: &str) -> Option<MigProfile> {
    builtin().mig_profile(resource)
}

/// [`Catalog::lower_bound_params`] on the built-in catalog.
pub fn lower_bound_params(id: &str) -> Option<f64> {
    builtin().lower_bound_params(id)
}

impl Catalog {
    /// Parses the shipped data files.
    pub fn parse() -> Result<Catalog, String> {
        let models: Models = from_yaml("data/models.yaml", MODELS_YAML)?;
        let gpus: Gpus = from_yaml("data/gpus.yaml", GPUS_YAML)?;
        Ok(Catalog::indexed(models.models, gpus))
    }

    /// This catalog with a policy's models and GPUs in front: they win over
    /// the entries they share an id or a name with.
    pub fn with(&self, extra_models: &[Model], extra_gpus: &Gpus) -> Catalog {
        fn front<T: Clone>(first: &[T], then: &[T]) -> Vec<T> {
            first.iter().chain(then).cloned().collect()
        }
        Catalog::indexed(
            front(extra_models, &self.models),
            Gpus {
                vm_sizes: front(&extra_gpus.vm_sizes, &self.gpus.vm_sizes),
                products: front(&extra_gpus.products, &self.gpus.products),
                mig_profiles: front(&extra_gpus.mig_profiles, &self.gpus.mig_profiles),
            },
        )
    }

    /// The entries with their indices; the first of a key wins.
    fn indexed(models: Vec<Model>, gpus: Gpus) -> Catalog {
        let mut by_id = HashMap::new();
        let mut by_name = HashMap::new();
        for (i, m) in models.iter().enumerate() {
            by_id.entry(m.id.to_ascii_lowercase()).or_insert(i);
            by_name.entry(m.name().to_ascii_lowercase()).or_insert(i);
        }
        let mut by_size = HashMap::new();
        for (i, v) in gpus.vm_sizes.iter().enumerate() {
            for n in std::iter::once(&v.name).chain(&v.aliases) {
                by_size.entry(n.to_ascii_lowercase()).or_insert(i);
            }
        }
        Catalog {
            models,
            gpus,
            by_id,
            by_name,
            by_size,
        }
    }

    pub fn models(&self) -> &[Model] {
        &self.models
    }

    pub fn gpus(&self) -> &Gpus {
        &self.gpus
    }

    /// A model by its Hugging Face id, case-insensitively; an id without
    /// its organisation (`Llama-3.1-8B-Instruct`, or a local path's last
    /// part) matches the one entry of that name. A full id matches only its
    /// own organisation's entry: a fine-tune under another organisation is
    /// another model.
    pub fn model(&self, id: &str) -> Option<&Model> {
        let id = id.trim().trim_end_matches('/');
        if id.is_empty() {
            return None;
        }
        let lower = id.to_ascii_lowercase();
        if let Some(&i) = self.by_id.get(&lower) {
            return self.models.get(i);
        }
        if id.contains('/') {
            return None;
        }
        self.by_name.get(&lower).and_then(|&i| self.models.get(i))
    }

    /// A VM size by name or alias, case-insensitively.
    pub fn vm_size(&self, name: &str) -> Option<&VmSize> {
        self.by_size
            .get(&name.trim().to_ascii_lowercase())
            .and_then(|&i| self.gpus.vm_sizes.get(i))
    }

    /// A GPU by its `nvidia.com/gpu.product` label, case-insensitively. A
    /// time-sliced or MPS-shared GPU's label carries `-SHARED` (NVIDIA's
    /// GPU operator documents it); its memory is the whole GPU's.
    pub fn gpu_product(&self, label: &str) -> Option<&GpuProduct> {
        let label = label.trim();
        let find = |l: &str| {
            self.gpus
                .products
                .iter()
                .find(|p| p.product.eq_ignore_ascii_case(l))
        };
        find(label).or_else(|| strip_suffix_ignore_case(label, "-SHARED").and_then(find))
    }

    /// A MIG slice by its resource name (`nvidia.com/mig-3g.40gb`) or
    /// profile (`3g.40gb`). A profile the catalog does not list is still
    /// read when its name has NVIDIA's `<slices>g.<GB>gb` form, since the
    /// name is the memory.
    pub fn mig_profile(&self, resource: &str) -> Option<MigProfile> {
        let resource = resource.trim();
        let profile = resource.strip_prefix("nvidia.com/mig-").unwrap_or(resource);
        // A MIG single-strategy product label ends in `-MIG-<profile>`.
        let profile = match profile.rfind("-MIG-") {
            Some(at) => &profile[at + "-MIG-".len()..],
            None => profile,
        };
        let profile = strip_suffix_ignore_case(profile, "-SHARED").unwrap_or(profile);
        let (slices, memory_gb) = parse_mig(profile)?;
        let profile = profile.to_ascii_lowercase();
        let gpus = self
            .gpus
            .mig_profiles
            .iter()
            .filter(|g| g.profiles.iter().any(|p| p.eq_ignore_ascii_case(&profile)))
            .map(|g| g.gpu.clone())
            .collect();
        Some(MigProfile {
            profile,
            slices,
            memory_gb,
            gpus,
        })
    }

    /// A lower bound on a model's parameters (in billions) read from its
    /// name (`…-8B-…` → 8), for a dense model in 16 bits or more only.
    /// `None` where the name misleads: a mixture-of-experts name
    /// (`8x7B`, `30B-A3B`), an "effective" size (`E4B`), or a name of 4-bit
    /// or smaller weights (`AWQ`, `GPTQ`, `4bit`, `int4`, `nf4`, `fp4`,
    /// GGUF `Q4_K_M`…), whose files are smaller than the count suggests; and
    /// for a catalog model that is mixture-of-experts.
    pub fn lower_bound_params(&self, id: &str) -> Option<f64> {
        if self
            .model(id)
            .is_some_and(|m| m.architecture == Some(Architecture::Moe))
        {
            return None;
        }
        name_lower_bound(short(id.trim().trim_end_matches('/')))
    }
    /// Bytes per parameter a name's weights have at least, for a name
    /// [`Catalog::lower_bound_params`] reads: 1 where it names 8-bit
    /// weights (`FP8`, `INT8`, `W8A8`, `8bit`, GGUF `Q8_0`), else 2 (16
    /// bits: a 32-bit checkpoint is served in 16 unless the server is told
    /// otherwise).
    pub fn name_weight_bytes(&self, id: &str) -> f64 {
        let lower = short(id.trim().trim_end_matches('/')).to_ascii_lowercase();
        let eight_bit = lower
            .split(['-', '_', ' ', ':', '.'])
            .any(|t| EIGHT_BIT_TOKENS.contains(&t));
        if eight_bit { 1.0 } else { 2.0 }
    }
}

/// Name tokens that mean weights of 8 bits.
const EIGHT_BIT_TOKENS: &[&str] = &["fp8", "int8", "w8a8", "w8a16", "8bit", "q8", "fp8dynamic"];

/// The part of an id after its organisation.
fn short(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

fn strip_suffix_ignore_case<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let at = s.len().checked_sub(suffix.len())?;
    (s.is_char_boundary(at) && s[at..].eq_ignore_ascii_case(suffix)).then(|| &s[..at])
}

/// `3g.40gb` → (3, 40.0).
fn parse_mig(profile: &str) -> Option<(u32, f64)> {
    let lower = profile.to_ascii_lowercase();
    let (slices, memory) = lower.split_once("g.")?;
    let memory = memory.strip_suffix("gb")?;
    let slices: u32 = slices.parse().ok().filter(|s| *s > 0)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !digits(memory) {
        return None;
    }
    let memory: f64 = memory.parse().ok().filter(|m: &f64| *m > 0.0)?;
    Some((slices, memory))
}

/// Name tokens that mean weights of 4 bits or fewer.
const LOW_BIT_TOKENS: &[&str] = &[
    "awq", "gptq", "4bit", "3bit", "2bit", "int4", "w4a16", "nf4", "fp4", "nvfp4", "mxfp4", "bnb",
    "exl2", "gguf", "ggml",
];

fn name_lower_bound(name: &str) -> Option<f64> {
    let lower = name.to_ascii_lowercase();
    let tokens: Vec<&str> = lower
        .split(['-', '_', ' ', ':'])
        .filter(|t| !t.is_empty())
        .collect();
    let low_bit = tokens.iter().any(|t| {
        LOW_BIT_TOKENS.contains(t)
            // GGUF quantizations: q2_k … q6_k, iq3_xs; split on `_` above,
            // so the token is `q4`, `iq3`.
            || (t.len() >= 2
                && (t.starts_with('q') || t.starts_with("iq"))
                && t.trim_start_matches('i').trim_start_matches('q').parse::<u32>().is_ok_and(|b| b <= 6))
    });
    if low_bit {
        return None;
    }
    let mut found = None;
    for (i, t) in tokens.iter().enumerate() {
        // `8x7b`: mixture-of-experts.
        if t.contains('x') && t.ends_with('b') && t.split('x').all(|p| !p.is_empty()) {
            let (n, rest) = t.split_once('x')?;
            if n.bytes().all(|b| b.is_ascii_digit()) && count(rest).is_some() {
                return None;
            }
        }
        // `e4b`: an effective size.
        if t.starts_with('e') && count(&t[1..]).is_some() {
            return None;
        }
        // `a3b` after a count: the active parameters of a mixture-of-experts.
        if t.starts_with('a') && count(&t[1..]).is_some() && i > 0 {
            return None;
        }
        if let Some(n) = count(t) {
            if found.is_some() {
                // Two counts (`…-1B-…-8B`): which one is the model's is a guess.
                return None;
            }
            found = Some(n);
        }
    }
    found
}

/// `8b` → 8, `0.5b` → 0.5, `1_5b` is not one (split above), `400m` → 0.4.
fn count(token: &str) -> Option<f64> {
    let (digits, scale) = if let Some(d) = token.strip_suffix('b') {
        (d, 1.0)
    } else if let Some(d) = token.strip_suffix('m') {
        (d, 0.001)
    } else {
        return None;
    };
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        || !digits.as_bytes()[0].is_ascii_digit()
    {
        return None;
    }
    digits
        .parse::<f64>()
        .ok()
        .filter(|n| *n > 0.0)
        .map(|n| n * scale)
}

fn from_yaml<T: serde::de::DeserializeOwned>(at: &str, text: &str) -> Result<T, String> {
    let doc = crate::yaml::documents(text)
        .next()
        .ok_or_else(|| format!("{at}: no document"))?
        .map_err(|e| format!("{at}: {e}"))?;
    serde_path_to_error::deserialize(doc.value)
        .map_err(|e| format!("{at}: {}: {}", e.path(), e.inner()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn catalog() -> Catalog {
        Catalog::parse().unwrap()
    }

    #[test]
    fn the_data_files_parse() {
        let c = catalog();
        assert!(c.models().len() >= 60, "{}", c.models().len());
        assert!(!c.gpus().vm_sizes.is_empty());
        assert!(!c.gpus().products.is_empty());
        assert!(!c.gpus().mig_profiles.is_empty());
        // The built-in catalog is the parsed one, not the empty fallback.
        assert_eq!(builtin(), &c);
    }

    #[test]
    fn every_entry_names_its_source() {
        let c = catalog();
        let sources = c
            .models()
            .iter()
            .map(|m| (&m.id, &m.source))
            .chain(c.gpus().vm_sizes.iter().map(|v| (&v.name, &v.source)))
            .chain(c.gpus().products.iter().map(|p| (&p.product, &p.source)))
            .chain(c.gpus().mig_profiles.iter().map(|g| (&g.gpu, &g.source)));
        for (id, source) in sources {
            assert!(
                source.contains("https://") || source.contains('/'),
                "{id}: source {source:?}"
            );
        }
    }

    #[test]
    fn no_id_is_listed_twice() {
        let c = catalog();
        let mut seen = BTreeSet::new();
        for m in c.models() {
            assert!(seen.insert(m.id.to_ascii_lowercase()), "model {}", m.id);
        }
        // Nor a name without its organisation: the short lookup would pick
        // one of two models silently.
        let mut short = BTreeSet::new();
        for m in c.models() {
            assert!(
                short.insert(m.name().to_ascii_lowercase()),
                "name {}",
                m.name()
            );
        }
        let mut sizes = BTreeSet::new();
        for v in &c.gpus().vm_sizes {
            for n in std::iter::once(&v.name).chain(&v.aliases) {
                assert!(sizes.insert(n.to_ascii_lowercase()), "VM size {n}");
            }
        }
        let mut products = BTreeSet::new();
        for p in &c.gpus().products {
            assert!(
                products.insert(p.product.to_ascii_lowercase()),
                "{}",
                p.product
            );
        }
        for g in &c.gpus().mig_profiles {
            let mut profiles = BTreeSet::new();
            for p in &g.profiles {
                assert!(profiles.insert(p.as_str()), "{}: {p}", g.gpu);
                // Every listed profile has the documented name form.
                assert!(parse_mig(p).is_some(), "{}: {p}", g.gpu);
            }
        }
    }

    #[test]
    fn values_are_plausible() {
        let c = catalog();
        for m in c.models() {
            if let (Some(total), Some(active)) = (m.params_b, m.active_params_b) {
                assert!(active < total, "{}", m.id);
                assert_eq!(m.architecture, Some(Architecture::Moe), "{}", m.id);
            }
            if let (Some(kv), Some(heads)) = (m.kv_heads, m.attention_heads) {
                assert!(kv <= heads && heads % kv == 0, "{}", m.id);
            }
            assert!(m.weight_gib.is_none_or(|w| w > 0.0), "{}", m.id);
        }
        for v in &c.gpus().vm_sizes {
            assert!(v.gpus >= 1 && v.memory_per_gpu_gb > 0.0, "{}", v.name);
        }
    }

    // Spot checks: each value below is the one its entry's source states.

    #[test]
    fn llama_3_1_70b() {
        // vulkomilev/oumi configs/recipes/llama3_1/README.md: 80 layers,
        // 64 attention heads, 8 KV heads, hidden 8192, 131,072 max length.
        let m = model("meta-llama/Llama-3.1-70B-Instruct").unwrap();
        assert_eq!(m.layers, Some(80));
        assert_eq!(m.kv_heads, Some(8));
        assert_eq!(m.head_size(), Some(128));
        assert_eq!(m.context, Some(131_072));
    }

    #[test]
    fn llama_3_1_8b_and_3_3_70b_from_kaito() {
        // KAITO model_catalog.yaml at 056b828.
        let m = model("meta-llama/Llama-3.1-8B-Instruct").unwrap();
        assert_eq!(m.weight_gib, Some(14.96));
        assert_eq!(
            (m.layers, m.kv_heads, m.head_size()),
            (Some(32), Some(8), Some(128))
        );
        assert_eq!(m.context, Some(131_072));
        let m = model("meta-llama/Llama-3.3-70B-Instruct").unwrap();
        assert_eq!(m.weight_gib, Some(131.42));
        assert_eq!(m.layers, Some(80));
    }

    #[test]
    fn gpt_oss_is_mxfp4_mixture_of_experts() {
        let m = model("openai/gpt-oss-120b").unwrap();
        assert_eq!(m.quantization.as_deref(), Some("mxfp4"));
        assert_eq!(m.architecture, Some(Architecture::Moe));
        assert_eq!((m.params_b, m.active_params_b), (Some(117.0), Some(5.1)));
        assert_eq!(m.head_size(), Some(64));
    }

    #[test]
    fn qwen3_30b_a3b() {
        let m = model("Qwen/Qwen3-30B-A3B").unwrap();
        assert_eq!(m.architecture, Some(Architecture::Moe));
        assert_eq!(
            (m.layers, m.kv_heads, m.head_size()),
            (Some(48), Some(4), Some(128))
        );
    }

    #[test]
    fn model_ids_match_case_insensitively_and_without_the_organisation() {
        let c = catalog();
        let full = c.model("meta-llama/Llama-3.1-8B-Instruct").unwrap();
        assert_eq!(c.model("META-LLAMA/llama-3.1-8b-instruct"), Some(full));
        assert_eq!(c.model("Llama-3.1-8B-Instruct"), Some(full));
        assert_eq!(c.model("llama-3.1-8b-instruct/"), Some(full));
        // Another organisation's model of the same name is another model.
        assert_eq!(c.model("someone/Llama-3.1-8B-Instruct"), None);
        assert_eq!(c.model(""), None);
        assert_eq!(c.model("acme/private-model"), None);
    }

    #[test]
    fn vm_sizes() {
        // nca100v4-series specs: "Nvidia PCIe A100 GPU (80GB)", 1 – 4 GPUs.
        let v = vm_size("standard_nc24ads_a100_v4").unwrap();
        assert_eq!((v.gpus, v.memory_per_gpu_gb), (1, 80.0));
        assert_eq!(v.gpu, "NVIDIA A100 80GB PCIe");
        assert_eq!(vm_size("Standard_NC96ads_A100_v4").unwrap().gpus, 4);
        // KAITO's spelling of the ND A100 v4 size.
        assert_eq!(
            vm_size("Standard_ND96asr_A100_v4").unwrap().name,
            "Standard_ND96asr_v4"
        );
        let mi = vm_size("Standard_ND96isr_MI300X_v5").unwrap();
        assert_eq!(mi.resource(), "amd.com/gpu");
        assert_eq!(
            vm_size("Standard_ND96isr_H100_v5").unwrap().resource(),
            "nvidia.com/gpu"
        );
        assert_eq!(vm_size("Standard_D4s_v5"), None);
    }

    #[test]
    fn gpu_products() {
        let t4 = gpu_product("Tesla-T4").unwrap();
        assert_eq!(t4.memory_gb, 16.0);
        assert_eq!(gpu_product("TESLA-T4"), Some(t4));
        assert_eq!(gpu_product("Tesla-T4-SHARED"), Some(t4));
        assert_eq!(
            gpu_product("NVIDIA-A100-SXM4-80GB").unwrap().memory_gb,
            80.0
        );
        assert_eq!(gpu_product("GeForce-GT-710"), None);
    }

    #[test]
    fn mig_profiles() {
        let p = mig_profile("nvidia.com/mig-3g.40gb").unwrap();
        assert_eq!((p.slices, p.memory_gb), (3, 40.0));
        assert!(p.gpus.iter().any(|g| g == "NVIDIA A100 80GB"));
        assert!(p.gpus.iter().any(|g| g == "NVIDIA H100 80GB"));
        assert_eq!(mig_profile("1g.5gb").unwrap().memory_gb, 5.0);
        assert_eq!(
            mig_profile("nvidia.com/mig-7g.141gb").unwrap().memory_gb,
            141.0
        );
        // Read by its documented form though no GPU lists it.
        let unlisted = mig_profile("nvidia.com/mig-2g.30gb").unwrap();
        assert_eq!((unlisted.memory_gb, unlisted.gpus.len()), (30.0, 0));
        // A MIG single-strategy product label (GFD's documented example).
        assert_eq!(
            mig_profile("A100-SXM4-40GB-MIG-1g.5gb").unwrap().memory_gb,
            5.0
        );
        for bad in [
            "nvidia.com/gpu",
            "nvidia.com/mig-3g",
            "nvidia.com/mig-0g.5gb",
            "mig-xg.5gb",
            "3g.gb",
        ] {
            assert_eq!(mig_profile(bad), None, "{bad}");
        }
    }

    #[test]
    fn name_lower_bounds_for_dense_names_only() {
        let c = catalog();
        let lb = |id: &str| c.lower_bound_params(id);
        assert_eq!(lb("acme/Llama-3.1-8B-Instruct-finetune"), Some(8.0));
        assert_eq!(lb("Qwen/Qwen2.5-0.5B-Instruct"), Some(0.5));
        assert_eq!(lb("acme/model-70b"), Some(70.0));
        for none in [
            "mistralai/Mixtral-8x7B-Instruct-v0.1",
            "acme/Mixtral-8x22B-finetune",
            "Qwen/Qwen3-30B-A3B",
            "acme/Qwen3-30B-A3B-Instruct-2507",
            "google/gemma-3n-E4B-it",
            "Qwen/Qwen3-8B-AWQ",
            "acme/Llama-3.1-70B-Instruct-GPTQ",
            "unsloth/Llama-3.1-8B-bnb-4bit",
            "acme/Llama-3.1-8B-int4",
            "acme/llama-3.1-8b-instruct-Q4_K_M",
            "acme/Mistral-Small-4-119B-NVFP4",
            "microsoft/phi-4",
            // A catalog model that is mixture-of-experts.
            "openai/gpt-oss-120b",
        ] {
            assert_eq!(lb(none), None, "{none}");
        }
    }

    #[test]
    fn a_policy_adds_and_overrides_entries() {
        let extra_model: Model = serde_json::from_value(serde_json::json!({
            "id": "acme/private-13b", "source": "acme model registry",
            "weightGiB": 24.2, "layers": 40, "kvHeads": 8, "headDim": 128, "context": 8192
        }))
        .unwrap();
        let override_model: Model = serde_json::from_value(serde_json::json!({
            "id": "meta-llama/Llama-3.1-8B-Instruct", "source": "acme mirror", "weightGiB": 15.0
        }))
        .unwrap();
        let gpus: Gpus = serde_json::from_value(serde_json::json!({
            "vmSizes": [{"name": "Standard_NX1_Future_v9", "gpu": "Future", "gpus": 2,
                          "memoryPerGpuGB": 288, "source": "azure docs"}]
        }))
        .unwrap();
        let c = builtin().with(&[extra_model, override_model], &gpus);
        assert_eq!(c.model("private-13b").unwrap().weight_gib, Some(24.2));
        assert_eq!(
            c.model("Llama-3.1-8B-Instruct").unwrap().weight_gib,
            Some(15.0)
        );
        assert_eq!(c.vm_size("standard_nx1_future_v9").unwrap().gpus, 2);
        // The built-in entries stay.
        assert!(c.vm_size("Standard_NC24ads_A100_v4").is_some());
        // Unknown fields are refused, so a typo in a policy is an error.
        assert!(
            serde_json::from_value::<Model>(serde_json::json!({
                "id": "x", "source": "y", "layer": 3
            }))
            .is_err()
        );
    }
}
