//! `cost-budget` (Cost Optimization): with a price table, what a workload
//! reserves at its autoscaler's maximum stays under the policy's monthly
//! budget: replicas × the pod's share of its VM's GPUs × the VM's Linux
//! pay-as-you-go hourly price × 730 hours.
//!
//! Only a certain overspend is a violation. The VM size is the one the pod
//! pins (`node.kubernetes.io/instance-type`), else the sizes of the GPU
//! Nodes it can use; where several are possible the cheapest is priced, so
//! the budget is exceeded on every one of them. Replicas are the smallest
//! maximum of the autoscalers that target it (else `spec.replicas`). No
//! table, a table older than `maxAgeDays`, a size the catalog or the table
//! does not know, a MIG slice, a kind without a replica count (DaemonSet,
//! Job): no verdict, and the rule says nothing. The table reaches the
//! engine in its context (`check --prices`, the ConfigMap `serve` watches).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Finding, Outcome, PolicyFacts, Rule, Subject, on_scaler};
use crate::catalog;
use crate::context::ScalerRef;
use crate::gpu::GpuResources;
use crate::gpu_memory::INSTANCE_TYPE_LABELS;
use crate::placement::pinned_values;
use crate::prices::{DEFAULT_MAX_AGE_DAYS, PriceTable};
use crate::release::Release;
use crate::rule_list::{Action, Pillar, RuleId};
use crate::workload::WorkloadKind;

/// `cost-budget` (Cost Optimization): what the workload reserves at its
/// autoscaler's maximum costs at most `maxMonthly` a month, at Azure's
/// Linux pay-as-you-go list prices.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CostBudget {
    /// Off unless set: the rule needs a budget and a price table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The budget of one workload, in USD per month (730 hours), at its
    /// autoscaler's maximum. Required when the rule is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_monthly: Option<f64>,
    /// The Azure region whose prices count, as the Retail Prices API names
    /// it (`armRegionName`: `eastus`, `westeurope`). Empty: the price
    /// table's only region. `gpu-right-size` prices idle GPUs there too.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// A price table older than this many days (by its `generatedAt`)
    /// gives no verdict.
    #[serde(default = "max_age_days")]
    #[schemars(range(min = 1))]
    pub max_age_days: u32,
}

fn max_age_days() -> u32 {
    DEFAULT_MAX_AGE_DAYS
}

impl Default for CostBudget {
    fn default() -> Self {
        CostBudget {
            action: None,
            max_monthly: None,
            region: String::new(),
            max_age_days: max_age_days(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub max_monthly: f64,
    pub region: String,
    pub max_age_days: u32,
    pub gpus: GpuResources,
}

impl Rule for CostBudget {
    const ID: RuleId = RuleId::CostBudget;
    const PILLAR: Pillar = Pillar::CostOptimization;
    const SUMMARY: &'static str =
        "What the workload reserves at its autoscaler's maximum stays within the monthly budget";
    const SINCE: Release = Release::V0_3;
    const WORKLOAD_LEVEL: bool = true;
    const OFF_UNLESS_SET: bool = true;

    type Settings = Settings;

    fn compile(&self, policy: &PolicyFacts, at: &str, problems: &mut Vec<String>) -> Settings {
        let on = self.action.is_some_and(|a| a != Action::Off);
        match self.max_monthly {
            None if on => problems.push(format!(
                "{at}.maxMonthly: set the monthly budget in USD; the rule is on"
            )),
            Some(m) if !(m.is_finite() && m > 0.0) => {
                problems.push(format!("{at}.maxMonthly: {m} must be above zero"))
            }
            _ => {}
        }
        let region = &self.region;
        if !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            problems.push(format!(
                "{at}.region: {region:?} is not an armRegionName (eastus, westeurope: lower \
                 case, no spaces)"
            ));
        }
        if self.max_age_days == 0 {
            problems.push(format!("{at}.maxAgeDays: must be at least 1"));
        }
        Settings {
            max_monthly: self.max_monthly.unwrap_or(f64::INFINITY),
            region: self.region.clone(),
            max_age_days: self.max_age_days,
            gpus: policy.gpus.clone(),
        }
    }

    fn check(on: &Subject, s: &Settings, _mutate: bool) -> Outcome {
        let mut out = Outcome::default();
        let w = on.workload;
        let Some(cost) = pod_cost(on, &s.gpus, &s.region, s.max_age_days) else {
            return out;
        };
        let Some(replicas) = Replicas::of(on) else {
            return out;
        };
        let hours = cost.table.hours_per_month;
        let per_replica = cost.per_pod_hourly * hours;
        let monthly = f64::from(replicas.count) * per_replica;
        if monthly <= s.max_monthly {
            return out;
        }
        let message = format!(
            "{} × {} × {}/h ({}, Linux pay-as-you-go, prices of {}) × {hours} h = {}/month, \
             above costBudget.maxMonthly {}",
            replicas.how,
            cost.describe(),
            dollars_exact(cost.hourly),
            cost.region,
            cost.table.date(),
            dollars(monthly),
            dollars(s.max_monthly),
        );
        let fit = (s.max_monthly / per_replica)
            .floor()
            .min(f64::from(i32::MAX)) as i32;
        let others = "choose a smaller VM size, or raise costBudget.maxMonthly";
        let finding = match replicas.scaler {
            _ if fit < 1 => Finding::new(
                message,
                format!(
                    "one replica alone costs {}/month: {others}",
                    dollars(per_replica)
                ),
                w.pod_path,
            ),
            Some(sc) if fit < sc.min_replicas => {
                // A maximum below its floor is no autoscaler: no edit.
                let mut f = on_scaler(sc, sc.kind.max_field(), fit, message);
                f.edit = None;
                f.fix = format!(
                    "{fit} replica{} fit{} the budget ({} each a month), fewer than {} {}'s {} \
                     {}: {others}",
                    if fit == 1 { "" } else { "s" },
                    if fit == 1 { "s" } else { "" },
                    dollars(per_replica),
                    sc.kind,
                    sc.name,
                    sc.kind.min_field(),
                    sc.min_replicas
                );
                f
            }
            Some(sc) => {
                let mut f = on_scaler(sc, sc.kind.max_field(), fit, message);
                f.fix.push_str(&format!(
                    " ({fit} × {} = {}/month), {others}",
                    dollars(per_replica),
                    dollars(f64::from(fit) * per_replica)
                ));
                f
            }
            None => Finding::new(
                message,
                format!(
                    "set spec.replicas: {fit} ({fit} × {} = {}/month), {others}",
                    dollars(per_replica),
                    dollars(f64::from(fit) * per_replica)
                ),
                "/spec/replicas",
            ),
        };
        out.findings.push(finding);
        out
    }
}

/// How many replicas the workload can reach, and what says so.
struct Replicas<'a> {
    count: i32,
    how: String,
    scaler: Option<&'a ScalerRef>,
}

impl<'a> Replicas<'a> {
    fn of(on: &Subject<'a>) -> Option<Replicas<'a>> {
        let w = on.workload;
        let plural = |n: i32| if n == 1 { "" } else { "s" };
        // Two autoscalers on one workload fight; the smaller maximum is
        // the one certainly reached.
        if let Some(sc) = on.scalers.iter().min_by_key(|sc| sc.max_replicas) {
            let n = sc.max_replicas;
            return Some(Replicas {
                count: n,
                how: format!(
                    "{n} replica{} ({} {} {})",
                    plural(n),
                    sc.kind,
                    sc.name,
                    sc.kind.max_field()
                ),
                scaler: Some(sc),
            });
        }
        // An AI-serving resource's pods are its operator's to count (a
        // LeaderWorkerSet group, Knative without a ceiling): not priced yet.
        if w.kind.is_ai_resource() || w.part.is_some() || w.source.is_some() {
            return None;
        }
        let n = if w.kind.is_replicated() {
            w.replicas.unwrap_or(1)
        } else if w.kind == WorkloadKind::Pod {
            1
        } else {
            return None;
        };
        let how = if w.kind == WorkloadKind::Pod {
            "1 pod".to_owned()
        } else {
            format!("{n} replica{} (spec.replicas)", plural(n))
        };
        Some(Replicas {
            count: n,
            how,
            scaler: None,
        })
    }
}

/// What one pod reserves of the cheapest VM size it may land on, and
/// what that costs an hour.
pub(crate) struct PodCost<'a> {
    pub size: String,
    /// GPUs of the size, and of them the pod's.
    pub size_gpus: u32,
    pub pod_gpus: u32,
    /// The size's hourly price, and the pod's share of it.
    pub hourly: f64,
    pub per_pod_hourly: f64,
    /// Sizes the pod may use.
    pub choices: usize,
    pub region: &'a str,
    pub table: &'a PriceTable,
}

impl PodCost<'_> {
    /// `1 of 1 GPUs of Standard_NC24ads_A100_v4`.
    pub fn describe(&self) -> String {
        let cheapest = if self.choices > 1 {
            format!(" (the cheapest of the {} sizes it may use)", self.choices)
        } else {
            String::new()
        };
        format!(
            "{} of {} GPU{} of {}{cheapest}",
            self.pod_gpus,
            self.size_gpus,
            if self.size_gpus == 1 { "" } else { "s" },
            self.size
        )
    }

    /// What one GPU of the size costs a month.
    pub fn gpu_monthly(&self) -> f64 {
        self.hourly / f64::from(self.size_gpus) * self.table.hours_per_month
    }
}

/// The pod's cost per hour at the cheapest size it may use, or None where
/// it cannot be known for certain: no fresh table, no price for the
/// region, a size unknown to the catalog or the table, no GPU, a MIG slice.
pub(crate) fn pod_cost<'a>(
    on: &Subject<'a>,
    gpus: &GpuResources,
    region: &'a str,
    max_age_days: u32,
) -> Option<PodCost<'a>> {
    let table = on.ctx.prices()?;
    if table.is_stale(on.now, max_age_days) {
        return None;
    }
    let region = if region.is_empty() {
        table.only_region()?
    } else {
        region
    };
    let pod = &on.workload.pod;
    let mut pod_gpus = 0u32;
    let mut resource = None;
    for c in &pod.containers {
        if let Some((n, r)) = gpus.count_in(c) {
            if r.starts_with("nvidia.com/mig-") || resource.as_ref().is_some_and(|was| *was != r) {
                return None;
            }
            pod_gpus = pod_gpus.checked_add(n)?;
            resource = Some(r);
        }
    }
    let resource = resource?;
    let sizes = vm_sizes(on)?;
    let catalog = catalog::builtin();
    let mut best: Option<PodCost> = None;
    for size in &sizes {
        let vm = catalog.vm_size(size)?;
        if vm.gpus == 0 || vm.resource() != resource {
            return None;
        }
        let hourly = table.price(region, size)?.payg;
        let used = pod_gpus.min(vm.gpus);
        let per_pod_hourly = hourly * f64::from(used) / f64::from(vm.gpus);
        if best
            .as_ref()
            .is_none_or(|b| per_pod_hourly < b.per_pod_hourly)
        {
            best = Some(PodCost {
                size: vm.name.clone(),
                size_gpus: vm.gpus,
                pod_gpus: used,
                hourly,
                per_pod_hourly,
                choices: sizes.len(),
                region,
                table,
            });
        }
    }
    best
}

/// The VM sizes the pod may land on: those it pins, else those of the GPU
/// Nodes it can use (None if one of them has no size label).
fn vm_sizes(on: &Subject) -> Option<Vec<String>> {
    let pod = &on.workload.pod;
    for label in INSTANCE_TYPE_LABELS {
        if let Some(values) = pinned_values(pod, label) {
            return (!values.is_empty()).then(|| values.into_iter().collect());
        }
    }
    let mut sizes: Vec<String> = Vec::new();
    for n in on.ctx.nodes_for(on.workload) {
        let has_gpus = n.allocatable.iter().any(|(name, count)| {
            (name == "nvidia.com/gpu" || name == "amd.com/gpu")
                && count.parse::<u64>().is_ok_and(|c| c > 0)
        });
        if !has_gpus {
            continue;
        }
        let size = INSTANCE_TYPE_LABELS.iter().find_map(|l| n.labels.get(*l))?;
        if !sizes.contains(size) {
            sizes.push(size.clone());
        }
    }
    (!sizes.is_empty()).then_some(sizes)
}

/// `$21,449.32`.
pub(crate) fn dollars(x: f64) -> String {
    let cents = (x * 100.0).round() as i128;
    let (whole, frac) = (cents / 100, (cents % 100).abs());
    let digits = whole.abs().to_string();
    let mut grouped = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(d);
    }
    let sign = if whole < 0 { "-" } else { "" };
    format!("{sign}${grouped}.{frac:02}")
}

/// A price as the table gives it, to the last digit: `$3.673`.
fn dollars_exact(x: f64) -> String {
    format!("${x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Context;
    use crate::placement::NodeRef;
    use crate::rules::testing::{
        container, gpu_deployment, on, prices_of, scaler, settings_of, workload,
    };
    use serde_json::{Value, json};
    use std::sync::Arc;

    const A100: &str = "Standard_NC24ads_A100_v4";
    const A100X4: &str = "Standard_NC96ads_A100_v4";

    fn settings(max: f64) -> Settings {
        settings_of(&CostBudget {
            action: Some(Action::Deny),
            max_monthly: Some(max),
            region: "eastus".into(),
            ..CostBudget::default()
        })
    }

    fn pinned(size: &str, gpus: &str) -> Value {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["nodeSelector"]["node.kubernetes.io/instance-type"] =
            json!(size);
        container(&mut d)["resources"]["limits"]["nvidia.com/gpu"] = json!(gpus);
        container(&mut d)["resources"]["requests"]["nvidia.com/gpu"] = json!(gpus);
        d
    }

    fn priced() -> Context {
        let mut ctx = Context::default();
        ctx.set_prices(Some(Arc::new(prices_of(
            "eastus",
            &[(A100, 4.0), (A100X4, 16.0)],
        ))));
        ctx
    }

    fn judge(obj: &Value, ctx: &Context, scalers: &[&ScalerRef], max: f64) -> Vec<Finding> {
        let w = workload(obj);
        let subject = Subject {
            ctx,
            scalers,
            ..on(&w)
        };
        CostBudget::check(&subject, &settings(max), false).findings
    }

    #[test]
    fn eight_replicas_of_a_whole_a100_node_are_over_a_20000_budget() {
        let hpa = scaler("llm", 2, 8);
        let f = judge(&pinned(A100, "1"), &priced(), &[&hpa], 20_000.0);
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].message,
            "8 replicas (HorizontalPodAutoscaler llm maxReplicas) × 1 of 1 GPU of \
             Standard_NC24ads_A100_v4 × $4/h (eastus, Linux pay-as-you-go, prices of 2026-12-01) \
             × 730 h = $23,360.00/month, above costBudget.maxMonthly $20,000.00"
        );
        // 20000 / 2920 = 6.8: six replicas fit.
        assert_eq!(
            f[0].fix,
            "set spec.maxReplicas: 6 on HorizontalPodAutoscaler ml/llm (6 × $2,920.00 = \
             $17,520.00/month), choose a smaller VM size, or raise costBudget.maxMonthly"
        );
        assert_eq!(f[0].path, "/spec/maxReplicas");
        assert!(f[0].edit.is_some());
        // Under the budget: nothing.
        assert!(judge(&pinned(A100, "1"), &priced(), &[&hpa], 23_360.0).is_empty());
    }

    #[test]
    fn a_pod_pays_its_share_of_a_larger_size() {
        // 2 of the 4 GPUs of a $16/h size: $8/h a pod, 3 replicas.
        let mut d = pinned(A100X4, "2");
        d["spec"]["replicas"] = json!(3);
        let f = judge(&d, &priced(), &[], 10_000.0);
        assert!(
            f[0].message.starts_with(
                "3 replicas (spec.replicas) × 2 of 4 GPUs of Standard_NC96ads_A100_v4 × $16/h"
            ),
            "{}",
            f[0].message
        );
        assert!(
            f[0].message.contains("= $17,520.00/month"),
            "{}",
            f[0].message
        );
        assert_eq!(f[0].path, "/spec/replicas");
        assert!(
            f[0].fix.starts_with("set spec.replicas: 1 ("),
            "{}",
            f[0].fix
        );
        // Under an autoscaler whose floor is above what fits: no edit.
        let hpa = scaler("llm", 2, 3);
        let f = judge(&pinned(A100X4, "2"), &priced(), &[&hpa], 10_000.0);
        assert_eq!(
            f[0].fix,
            "1 replica fits the budget ($5,840.00 each a month), fewer than \
             HorizontalPodAutoscaler llm's minReplicas 2: choose a smaller VM size, or raise \
             costBudget.maxMonthly"
        );
        assert!(f[0].edit.is_none());
    }

    #[test]
    fn several_sizes_are_priced_at_the_cheapest() {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["affinity"] = json!({"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "node.kubernetes.io/instance-type",
                    "operator": "In", "values": [A100, A100X4]}]}]}}});
        let hpa = scaler("llm", 2, 10);
        // One GPU: $4/h on the small size, $4/h (a quarter of $16) on the large.
        let f = judge(&d, &priced(), &[&hpa], 1_000.0);
        assert!(
            f[0].message
                .contains("(the cheapest of the 2 sizes it may use)"),
            "{}",
            f[0].message
        );
        // A size without a price: the cheapest cannot be known.
        let mut ctx = Context::default();
        ctx.set_prices(Some(Arc::new(prices_of("eastus", &[(A100X4, 16.0)]))));
        assert!(judge(&d, &ctx, &[&hpa], 1_000.0).is_empty());
    }

    #[test]
    fn the_nodes_it_can_use_give_the_size_when_none_is_pinned() {
        let mut ctx = priced();
        ctx.add_node(
            NodeRef::from_value(
                json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": "gpu-1", "labels": {
                        "kubernetes.azure.com/accelerator": "nvidia",
                        "node.kubernetes.io/instance-type": A100}},
                    "spec": {"taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]},
                    "status": {"allocatable": {"nvidia.com/gpu": "1"}}}),
                "gpu-1",
            )
            .unwrap(),
        );
        let hpa = scaler("llm", 2, 8);
        let f = judge(&gpu_deployment(), &ctx, &[&hpa], 5_000.0);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert!(f[0].message.contains("of Standard_NC24ads_A100_v4"));
        assert!(judge(&gpu_deployment(), &priced(), &[&hpa], 5_000.0).is_empty());
    }

    #[test]
    fn no_table_a_stale_one_or_another_region_give_no_verdict() {
        let hpa = scaler("llm", 2, 8);
        let d = pinned(A100, "1");
        assert!(judge(&d, &Context::default(), &[&hpa], 1.0).is_empty());
        let w = workload(&d);
        let ctx = priced();
        let stale = Subject {
            ctx: &ctx,
            scalers: &[&hpa],
            now: "2027-02-01T00:00:00Z".parse().unwrap(),
            ..on(&w)
        };
        assert!(CostBudget::check(&stale, &settings(1.0), false).is_clean());
        let mut west = settings(1.0);
        west.region = "westeurope".into();
        let fresh = Subject {
            ctx: &ctx,
            scalers: &[&hpa],
            ..on(&w)
        };
        assert!(CostBudget::check(&fresh, &west, false).is_clean());
    }

    #[test]
    fn when_not_one_replica_fits_the_fix_says_so() {
        let hpa = scaler("llm", 2, 8);
        let f = judge(&pinned(A100, "1"), &priced(), &[&hpa], 1_000.0);
        assert_eq!(
            f[0].fix,
            "one replica alone costs $2,920.00/month: choose a smaller VM size, or raise \
             costBudget.maxMonthly"
        );
    }

    #[test]
    fn the_policy_must_say_the_budget_when_the_rule_is_on() {
        let mut problems = vec![];
        CostBudget {
            action: Some(Action::Deny),
            region: "East US".into(),
            ..CostBudget::default()
        }
        .compile(
            &crate::rules::testing::policy_facts(),
            "spec.rules.costBudget",
            &mut problems,
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("spec.rules.costBudget.maxMonthly"));
        assert!(problems[1].contains("\"East US\" is not an armRegionName"));
        // Off (the baseline) it needs nothing.
        let mut none = vec![];
        CostBudget::default().compile(
            &crate::rules::testing::policy_facts(),
            "spec.rules.costBudget",
            &mut none,
        );
        assert!(none.is_empty());
    }

    #[test]
    fn dollars_are_grouped_and_rounded_to_cents() {
        assert_eq!(dollars(21449.324), "$21,449.32");
        assert_eq!(dollars(999.999), "$1,000.00");
        assert_eq!(dollars(0.5), "$0.50");
        assert_eq!(dollars(1234567.0), "$1,234,567.00");
    }
}
