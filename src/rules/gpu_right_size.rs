//! `gpu-right-size` (Cost Optimization): a model server container requests
//! no more GPUs than the server uses. vLLM and SGLang use tensor × pipeline
//! × data parallel GPUs, KServe's server on vLLM the same, TGI `NUM_SHARD`
//! (without it, every GPU it sees: never idle); the rest of what the
//! container requests is allocated to it, billed, and idle. llama.cpp and
//! Ollama decide at run time: no verdict, as for any setting not stated.
//! With a price table (see `cost_budget.rs`) the message says what the idle
//! GPUs cost a month at the cheapest VM size the pod may use.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cost_budget::{dollars, pod_cost};
use super::serving::launch;
use super::{Finding, Outcome, PolicyFacts, Rule, Subject};
use crate::gpu::GpuResources;
use crate::prices::DEFAULT_MAX_AGE_DAYS;
use crate::release::Release;
use crate::rule_list::{Action, Pillar, RuleId};

/// `gpu-right-size` (Cost Optimization): a model server container requests
/// no GPUs its server leaves idle.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GpuRightSize {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub gpus: GpuResources,
    /// Where idle GPUs are priced (`costBudget.region`; empty: the
    /// table's only region).
    pub region: String,
}

impl Rule for GpuRightSize {
    const ID: RuleId = RuleId::GpuRightSize;
    const PILLAR: Pillar = Pillar::CostOptimization;
    const SUMMARY: &'static str = "A model server requests no GPUs it leaves idle";
    const SINCE: Release = Release::V0_3;

    type Settings = Settings;

    fn compile(&self, policy: &PolicyFacts, _at: &str, _problems: &mut Vec<String>) -> Settings {
        Settings {
            gpus: policy.gpus.clone(),
            region: policy.price_region.to_owned(),
        }
    }

    fn check(on: &Subject, s: &Settings, _mutate: bool) -> Outcome {
        let w = on.workload;
        let mut out = Outcome::default();
        let cost = pod_cost(on, &s.gpus, &s.region, DEFAULT_MAX_AGE_DAYS);
        for (i, c) in w.pod.containers.iter().enumerate() {
            let Some(l) = launch(c).filter(|l| !l.spills_to_cpu) else {
                continue;
            };
            let Some((gpus, resource)) = s.gpus.count_in(c) else {
                continue;
            };
            let Some(p) = l.parallel(gpus).filter(|p| p.total < gpus) else {
                continue;
            };
            let idle = gpus - p.total;
            let tp = l.server.flags().tensor_parallel;
            // The other factors kept, tensor parallel over the rest.
            let others = p.total / l.tensor_parallel.value().copied().unwrap_or(p.total).max(1);
            let others = others.max(1);
            let use_all = if gpus.is_multiple_of(others) {
                format!(", or use them all: {tp} {}", gpus / others)
            } else {
                String::new()
            };
            let priced = cost.as_ref().map_or(String::new(), |cost| {
                format!(
                    ", about {}/month per replica at {}'s ${}/h for {} GPU{} ({}, Linux \
                     pay-as-you-go, prices of {})",
                    dollars(f64::from(idle) * cost.gpu_monthly()),
                    cost.size,
                    cost.hourly,
                    cost.size_gpus,
                    if cost.size_gpus == 1 { "" } else { "s" },
                    cost.region,
                    cost.table.date()
                )
            });
            out.findings.push(Finding::new(
                format!(
                    "container \"{}\" requests {gpus} {resource} but {} uses {} ({}): {idle} \
                     GPU{} allocated and idle{priced}",
                    c.name,
                    l.server,
                    p.total,
                    p.how,
                    if idle == 1 { "" } else { "s" }
                ),
                format!("request {} {resource} (limits){use_all}", p.total),
                format!("{}/resources", w.container_path(i)),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{defaults, on, workload};
    use serde_json::{Value, json};

    fn server(command: Value, args: Value, env: Value, gpus: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "llm", "namespace": "ml"},
            "spec": {
                "selector": {"matchLabels": {"app": "llm"}},
                "template": {
                    "metadata": {"labels": {"app": "llm"}},
                    "spec": {"containers": [{
                        "name": "llm", "image": "vllm/vllm-openai:v0.10.1",
                        "command": command, "args": args, "env": env,
                        "resources": {"limits": {"nvidia.com/gpu": gpus}},
                    }]},
                },
            },
        })
    }

    fn findings(obj: &Value) -> Vec<Finding> {
        GpuRightSize::check(&on(&workload(obj)), &defaults::<GpuRightSize>(), false).findings
    }

    #[test]
    fn vllm_without_tensor_parallel_leaves_three_of_four_gpus_idle() {
        let d = server(
            json!(["vllm", "serve"]),
            json!(["Qwen/Qwen2.5-7B-Instruct"]),
            json!([]),
            "4",
        );
        let f = findings(&d);
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].message,
            "container \"llm\" requests 4 nvidia.com/gpu but vLLM uses 1 (--tensor-parallel-size 1 \
             by default): 3 GPUs allocated and idle"
        );
        assert_eq!(
            f[0].fix,
            "request 1 nvidia.com/gpu (limits), or use them all: --tensor-parallel-size 4"
        );
        let tp4 = server(
            json!(["vllm", "serve"]),
            json!(["Qwen/Qwen2.5-7B-Instruct", "-tp", "4"]),
            json!([]),
            "4",
        );
        assert!(findings(&tp4).is_empty());
    }

    #[test]
    fn with_a_price_table_the_idle_gpus_have_a_monthly_cost() {
        use crate::context::Context;
        use crate::rules::testing::{on, prices_of};
        let mut d = server(
            json!(["vllm", "serve"]),
            json!(["Qwen/Qwen2.5-7B-Instruct"]),
            json!([]),
            "4",
        );
        d["spec"]["template"]["spec"]["nodeSelector"] =
            json!({"node.kubernetes.io/instance-type": "Standard_NC96ads_A100_v4"});
        let mut ctx = Context::default();
        ctx.set_prices(Some(std::sync::Arc::new(prices_of(
            "eastus",
            &[("Standard_NC96ads_A100_v4", 16.0)],
        ))));
        let w = workload(&d);
        let priced = Subject {
            ctx: &ctx,
            ..on(&w)
        };
        let f = GpuRightSize::check(&priced, &defaults::<GpuRightSize>(), false).findings;
        // 3 idle GPUs of a 4-GPU $16/h size: 3 × $4/h × 730 h.
        assert_eq!(
            f[0].message,
            "container \"llm\" requests 4 nvidia.com/gpu but vLLM uses 1 (--tensor-parallel-size 1 \
             by default): 3 GPUs allocated and idle, about $8,760.00/month per replica at \
             Standard_NC96ads_A100_v4's $16/h for 4 GPUs (eastus, Linux pay-as-you-go, prices of \
             2026-12-01)"
        );
        // Without a table, the words of before.
        assert!(
            findings(&d)[0]
                .message
                .ends_with("3 GPUs allocated and idle")
        );
    }

    #[test]
    fn tgi_shards_over_every_gpu_unless_told_fewer() {
        let env = |shards: Option<&str>| {
            let mut e = vec![json!({"name": "MODEL_ID", "value": "Qwen/Qwen2.5-7B-Instruct"})];
            if let Some(n) = shards {
                e.push(json!({"name": "NUM_SHARD", "value": n}));
            }
            json!(e)
        };
        let cmd = json!(["text-generation-launcher"]);
        assert!(findings(&server(cmd.clone(), json!([]), env(None), "4")).is_empty());
        let f = findings(&server(cmd, json!([]), env(Some("2")), "4"));
        assert_eq!(f.len(), 1);
        assert!(
            f[0].message
                .contains("but TGI uses 2 (NUM_SHARD=2): 2 GPUs allocated and idle")
        );
    }

    #[test]
    fn sglang_counts_data_parallel_and_unknowns_say_nothing() {
        let sglang = |args: Value, gpus: &str| {
            server(
                json!(["python3", "-m", "sglang.launch_server"]),
                args,
                json!([]),
                gpus,
            )
        };
        assert!(
            findings(&sglang(
                json!(["--model-path", "m", "--tp", "2", "--dp", "2"]),
                "4"
            ))
            .is_empty()
        );
        let f = findings(&sglang(json!(["--model-path", "m", "--tp", "2"]), "8"));
        assert!(
            f[0].message.contains("SGLang uses 2 (--tp 2): 6 GPUs"),
            "{f:#?}"
        );
        // A variable sets it at run time: no verdict.
        let hidden = sglang(json!(["--model-path", "m", "--tp", "$(TP)"]), "8");
        assert!(findings(&hidden).is_empty());
    }
}
