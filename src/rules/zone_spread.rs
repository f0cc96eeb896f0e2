//! `zone-spread` (Reliability): a replicated model server runs at least
//! `minReplicas` pods, spread across availability zones by a
//! topologySpreadConstraint that really selects its own pods. WAF: "design
//! for redundancy … distribute across availability zones".
//!
//! With the cluster's Nodes (the reflector, or Nodes in `check`'s input) it
//! also reads the node pools as the scheduler does: the zones the pod can
//! run in (selector, affinity, taints, and the GPU it requests in
//! allocatable) against the zones its constraint counts (eligible domains:
//! `nodeAffinityPolicy` Honor and `nodeTaintsPolicy` Ignore by default). A
//! counted zone where it cannot run holds the global minimum at 0, so under
//! DoNotSchedule each zone it can run in takes at most maxSkew replicas and
//! the rest stay Pending. Without Nodes it judges the spec alone.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{PodSpec, TopologySpreadConstraint};
use kube::core::{Selector, SelectorExt};
use serde_json::json;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Edit, Finding, Outcome, PolicyFacts, Rule, Subject, add, flow_map, on_scaler, one, pointer,
    replace, two,
};
use crate::context::ScalerRef;
use crate::gpu::GpuResources;
use crate::gpu_memory::INSTANCE_TYPE_LABELS;
use crate::placement::NodeRef;
use crate::release::Release;
use crate::rule_list::{Action, Pillar, RuleId};
use crate::workload::{Workload, WorkloadKind};

pub const ZONE_KEY: &str = "topology.kubernetes.io/zone";

/// `zone-spread` (Reliability): enough replicas, spread across availability
/// zones, so that losing one zone does not take the model offline.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneSpread {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Add the missing topologySpreadConstraint through the mutating webhook.
    #[serde(default)]
    pub mutate: bool,
    /// The largest maxSkew accepted on the zone constraint.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub max_skew: i32,
    /// The fewest replicas accepted (an autoscaler's minReplicas counts).
    #[serde(default = "two")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// DoNotSchedule requires a hard constraint; ScheduleAnyway accepts either.
    /// Also the value the patch writes.
    #[serde(default)]
    pub when_unsatisfiable: WhenUnsatisfiable,
}

impl Default for ZoneSpread {
    fn default() -> Self {
        ZoneSpread {
            action: None,
            mutate: false,
            max_skew: one(),
            min_replicas: two(),
            when_unsatisfiable: WhenUnsatisfiable::default(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum WhenUnsatisfiable {
    #[default]
    DoNotSchedule,
    ScheduleAnyway,
}

impl WhenUnsatisfiable {
    pub fn as_str(self) -> &'static str {
        match self {
            WhenUnsatisfiable::DoNotSchedule => "DoNotSchedule",
            WhenUnsatisfiable::ScheduleAnyway => "ScheduleAnyway",
        }
    }
}

impl Rule for ZoneSpread {
    const ID: RuleId = RuleId::ZoneSpread;
    const PILLAR: Pillar = Pillar::Reliability;
    const SUMMARY: &'static str =
        "A replicated model server runs at least two replicas spread across availability zones";
    const SINCE: Release = Release::V0_1;
    const WORKLOAD_LEVEL: bool = true;

    type Settings = Settings;

    fn mutate(&self) -> bool {
        self.mutate
    }

    fn compile(&self, policy: &PolicyFacts, at: &str, problems: &mut Vec<String>) -> Settings {
        let spec = self;
        if spec.max_skew < 1 {
            problems.push(format!("{at}.maxSkew: must be at least 1"));
        }
        if spec.min_replicas < 1 {
            problems.push(format!("{at}.minReplicas: must be at least 1"));
        }
        Settings {
            max_skew: spec.max_skew,
            min_replicas: spec.min_replicas,
            when_unsatisfiable: spec.when_unsatisfiable,
            gpus: policy.gpus.clone(),
        }
    }

    fn check(on: &Subject, s: &Settings, mutate: bool) -> Outcome {
        let w = on.workload;
        let scalers = on.scalers;
        let mut out = Outcome::default();
        if !w.holds_replicas() {
            return out;
        }
        let floor = replica_floor(w, scalers);
        if floor < s.min_replicas {
            let finding = match scalers.iter().min_by_key(|sc| sc.min_replicas) {
                Some(sc) => on_scaler(
                    sc,
                    sc.kind.min_field(),
                    s.min_replicas,
                    format!(
                        "{} lets it scale down to {floor} replica{}; one zone or node failure \
                     then takes the model offline (needs at least {})",
                        sc.describe(),
                        if floor == 1 { "" } else { "s" },
                        s.min_replicas
                    ),
                ),
                None => Finding::new(
                    format!(
                        "runs {floor} {}{}{}; one zone or node failure takes the model offline \
                     (needs at least {})",
                        // A LeaderWorkerSet's replicas are its groups: one
                        // group is one model instance, however many pods.
                        if w.kind == WorkloadKind::LeaderWorkerSet {
                            "group"
                        } else {
                            "replica"
                        },
                        if floor == 1 { "" } else { "s" },
                        if w.replicas.is_none() {
                            format!(" ({} omitted)", w.replicas_field())
                        } else {
                            String::new()
                        },
                        s.min_replicas
                    ),
                    format!(
                        "set {}: {} (or let an autoscaler with minReplicas: {} manage it)",
                        w.replicas_field(),
                        s.min_replicas,
                        s.min_replicas
                    ),
                    w.replicas_path,
                )
                .edit(Edit::Patch(vec![add(
                    pointer(w.replicas_path, &[]),
                    json!(s.min_replicas),
                )])),
            };
            out.findings.push(finding);
        }

        // A KAITO preset's pods are KAITO's, and it sets no spread: the
        // zones come from the nodes it provisions, not from a field here.
        if matches!(w.kind, WorkloadKind::Workspace | WorkloadKind::InferenceSet)
            && w.pod.containers.is_empty()
        {
            return out;
        }
        let constraints = w.pod.topology_spread_constraints.as_deref().unwrap_or(&[]);
        let zonal: Vec<(usize, &TopologySpreadConstraint)> = constraints
            .iter()
            .enumerate()
            .filter(|(_, c)| c.topology_key == ZONE_KEY)
            .collect();
        let zones = Zones::of(on, s);
        if let Some(z) = zones.as_ref().filter(|z| z.one_zone_only()) {
            // No constraint or patch spreads a pod that fits one zone.
            out.findings.push(z.one_zone_finding(w));
            return out;
        }
        let mut problem: Option<(String, String)> = None;
        for (i, c) in &zonal {
            let path = pointer(&w.pod_field("topologySpreadConstraints"), &[&i.to_string()]);
            let why = if !selects_template(c, &w.template_labels) {
                Some(format!(
                    "the zone topologySpreadConstraint's labelSelector {} does not select this pod \
                 template's labels {}, so it spreads nothing",
                    describe_selector(c),
                    flow_map(&w.template_labels)
                ))
            } else if c.max_skew > s.max_skew {
                Some(format!(
                    "the zone topologySpreadConstraint allows maxSkew {} (policy allows at most {})",
                    c.max_skew, s.max_skew
                ))
            } else if s.when_unsatisfiable == WhenUnsatisfiable::DoNotSchedule
                && c.when_unsatisfiable != "DoNotSchedule"
            {
                Some(format!(
                    "the zone topologySpreadConstraint is whenUnsatisfiable: {}, a preference the \
                 scheduler may ignore (policy requires DoNotSchedule)",
                    c.when_unsatisfiable
                ))
            } else {
                None
            };
            match why {
                None => {
                    if let Some(z) = &zones
                        && c.when_unsatisfiable == "DoNotSchedule"
                    {
                        z.pending_check(w, *i, c, mutate, &mut out);
                    }
                    return out;
                }
                Some(why) => {
                    problem.get_or_insert((why, path.as_str().to_owned()));
                }
            }
        }

        let selector = patch_selector(w);
        let wanted = wanted_constraint(w, s, selector.as_ref());
        // The constraint the patch writes counts what an Honor/Honor one
        // counts; where that is more than the pod can run in, it would leave
        // replicas Pending, so the patch waits for the pod to select its
        // nodes.
        let blocked = zones.as_ref().and_then(|z| {
            let pending = z.pending(true, true);
            (s.when_unsatisfiable == WhenUnsatisfiable::DoNotSchedule && !pending.is_empty())
                .then(|| z.select_first(&pending, s.max_skew))
        });
        let (message, path) = problem.unwrap_or_else(|| {
            (
                format!(
                    "has no topologySpreadConstraint on {ZONE_KEY}: all replicas may land in one \
                 availability zone"
                ),
                w.pod_field("topologySpreadConstraints"),
            )
        });
        let add_it = format!(
            "add to {}: topologySpreadConstraints: [{}]",
            w.pod_field_name(),
            flow_constraint(&wanted)
        );
        let patchable = selector.is_some() && blocked.is_none();
        out.findings.push(Finding {
            message,
            fix: match &blocked {
                None => add_it,
                Some(first) => format!("{first}; then {add_it}"),
            },
            path,
            fixable: patchable,
            object: None,
            edit: None,
        });
        if mutate && patchable {
            out.patch.push(constraint_patch(w, s, wanted, &zonal));
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub max_skew: i32,
    pub min_replicas: i32,
    pub when_unsatisfiable: WhenUnsatisfiable,
    /// What the policy counts as a GPU: a GPU pod runs only where a node
    /// has it in allocatable.
    pub gpus: GpuResources,
}

/// The replica count the workload runs with at least: the autoscalers'
/// floor where one manages it, else `spec.replicas` (omitted means 1).
pub fn replica_floor(w: &Workload, scalers: &[&ScalerRef]) -> i32 {
    match scalers.iter().map(|s| s.min_replicas).min() {
        Some(min) => min,
        None => w.replicas.unwrap_or(1),
    }
}

fn selects_template(c: &TopologySpreadConstraint, labels: &BTreeMap<String, String>) -> bool {
    // A constraint without a labelSelector counts no pods, so it spreads nothing.
    let Some(ls) = c.label_selector.clone() else {
        return false;
    };
    match Selector::try_from(ls) {
        Ok(sel) => !sel.selects_all() && sel.matches(labels),
        Err(_) => false,
    }
}

fn describe_selector(c: &TopologySpreadConstraint) -> String {
    match c.label_selector.clone().map(Selector::try_from) {
        None => "(none)".into(),
        Some(Ok(sel)) if sel.selects_all() => "{}".into(),
        Some(Ok(sel)) => format!("\"{sel}\""),
        Some(Err(_)) => "(invalid)".into(),
    }
}

/// The labels the added constraint selects: the workload's own
/// `spec.selector.matchLabels` where that is all its selector says (the
/// labels that identify its pods across rollouts) and the template carries
/// them, else the template's labels. A selector the template does not carry
/// (an object the apiserver will refuse) would give a constraint that
/// selects nothing, which the next judgement reports again: a patch that
/// never converges (found by fuzz/patch_roundtrip).
fn patch_selector(w: &Workload) -> Option<BTreeMap<String, String>> {
    let from_selector = w.selector.as_ref().and_then(|s| {
        let no_expressions = s.match_expressions.as_ref().is_none_or(|e| e.is_empty());
        s.match_labels.clone().filter(|m| {
            no_expressions
                && !m.is_empty()
                && m.iter().all(|(k, v)| w.template_labels.get(k) == Some(v))
        })
    });
    from_selector
        .or_else(|| Some(w.template_labels.clone()))
        .filter(|m| !m.is_empty())
}

fn wanted_constraint(
    w: &Workload,
    s: &Settings,
    selector: Option<&BTreeMap<String, String>>,
) -> serde_json::Value {
    let mut c = json!({
        "maxSkew": s.max_skew,
        "topologyKey": ZONE_KEY,
        "whenUnsatisfiable": s.when_unsatisfiable.as_str(),
        "labelSelector": {"matchLabels": selector.cloned().unwrap_or_default()},
        // Zones whose nodes the pod does not tolerate (a GPU pool's taint
        // keeps it off the CPU pools' nodes only if it also selects them)
        // are not counted, so they cannot hold the global minimum at 0.
        "nodeTaintsPolicy": "Honor",
    });
    // Spread each rollout's pods on their own, so a rolling update does not
    // count the old ReplicaSet's pods against the new one.
    if w.kind == WorkloadKind::Deployment {
        c["matchLabelKeys"] = json!(["pod-template-hash"]);
    }
    c
}

fn constraint_patch(
    w: &Workload,
    s: &Settings,
    wanted: serde_json::Value,
    zonal: &[(usize, &TopologySpreadConstraint)],
) -> json_patch::PatchOperation {
    let list = w.pod_field("topologySpreadConstraints");
    // The apiserver refuses two constraints with the same topologyKey and
    // whenUnsatisfiable, so an existing one of that pair is rewritten in place.
    let same_pair = zonal
        .iter()
        .find(|(_, c)| c.when_unsatisfiable == s.when_unsatisfiable.as_str());
    match (same_pair, w.pod.topology_spread_constraints.is_some()) {
        (Some((i, existing)), _) => {
            let mut merged = serde_json::to_value(existing).unwrap_or_else(|_| json!({}));
            if let (Some(m), Some(wanted)) = (merged.as_object_mut(), wanted.as_object()) {
                for (k, v) in wanted {
                    if k != "matchLabelKeys" || !m.contains_key(k) {
                        m.insert(k.clone(), v.clone());
                    }
                }
                honor_node_affinity(m);
            }
            replace(pointer(&list, &[&i.to_string()]), merged)
        }
        (None, true) => add(pointer(&list, &["-"]), wanted),
        (None, false) => add(pointer(&list, &[]), json!([wanted])),
    }
}

/// The constraint as a one-line YAML flow mapping a user can paste.
fn flow_constraint(c: &serde_json::Value) -> String {
    let labels = c["labelSelector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    format!(
        "{{maxSkew: {}, topologyKey: {ZONE_KEY}, whenUnsatisfiable: {}, nodeTaintsPolicy: Honor, labelSelector: {{matchLabels: {{{}}}}}}}",
        c["maxSkew"],
        c["whenUnsatisfiable"].as_str().unwrap_or_default(),
        if labels.is_empty() {
            "<your pod labels>".to_owned()
        } else {
            labels
        }
    )
}

/// `nodeAffinityPolicy: Ignore` counts every node's zone; the default
/// (Honor) counts only the nodes the pod selects.
fn honor_node_affinity(c: &mut serde_json::Map<String, serde_json::Value>) {
    if c.get("nodeAffinityPolicy").and_then(|v| v.as_str()) == Some("Ignore") {
        c.insert("nodeAffinityPolicy".into(), json!("Honor"));
    }
}

/// The cluster's zones as the pod sees them. None without Nodes, or when
/// no node the pod can run on carries a zone (a pool scaled to zero, a
/// selector that matches nothing yet): then nothing is said about pools.
struct Zones<'a> {
    nodes: &'a [NodeRef],
    pod: &'a PodSpec,
    /// The GPU resource the pod requests, if it does.
    gpu: Option<String>,
    /// Zones with a node the pod can run on: selector, affinity, taints,
    /// and the GPU it requests in allocatable.
    runnable: BTreeSet<&'a str>,
    /// The nodes it can run on.
    usable: Vec<&'a NodeRef>,
}

impl<'a> Zones<'a> {
    fn of(on: &Subject<'a>, s: &Settings) -> Option<Zones<'a>> {
        let nodes = on.ctx.nodes();
        if nodes.is_empty() {
            return None;
        }
        let pod = &on.workload.pod;
        let gpu = s.gpus.requested_by(on.workload).map(|(_, r)| r);
        let usable: Vec<&NodeRef> = nodes
            .iter()
            .filter(|n| n.labels.contains_key(ZONE_KEY) && n.admits(pod))
            .filter(|n| gpu.as_deref().is_none_or(|g| n.has_allocatable(g)))
            .collect();
        let runnable: BTreeSet<&str> = usable.iter().filter_map(|n| zone(n)).collect();
        (!runnable.is_empty()).then_some(Zones {
            nodes,
            pod,
            gpu,
            runnable,
            usable,
        })
    }

    /// Every zone some node is in.
    fn all(&self) -> BTreeSet<&'a str> {
        self.nodes.iter().filter_map(|n| zone(n)).collect()
    }

    /// The pod runs in one zone while the cluster has others.
    fn one_zone_only(&self) -> bool {
        self.runnable.len() < 2 && self.all().len() > self.runnable.len()
    }

    /// Zones a constraint with these policies counts where the pod cannot
    /// run.
    fn pending(&self, honor_affinity: bool, honor_taints: bool) -> BTreeSet<&'a str> {
        self.nodes
            .iter()
            .filter(|n| n.counted_by_spread(self.pod, honor_affinity, honor_taints))
            .filter_map(|n| zone(n))
            .filter(|z| !self.runnable.contains(z))
            .collect()
    }

    /// `node pool gpu` / `node pools a, b` / `nodes n-1, n-2` (unpooled).
    fn pools(&self) -> String {
        let pools: BTreeSet<&str> = self.usable.iter().filter_map(|n| n.pool()).collect();
        if pools.is_empty() {
            let names: Vec<&str> = self.usable.iter().map(|n| n.name.as_str()).collect();
            return format!("nodes {}", names.join(", "));
        }
        let list: Vec<&str> = pools.into_iter().collect();
        format!(
            "node pool{} {}",
            if list.len() == 1 { "" } else { "s" },
            list.join(", ")
        )
    }

    /// What the pod needs of a node, for messages: `with nvidia.com/gpu`.
    fn with_gpu(&self) -> String {
        self.gpu
            .as_ref()
            .map(|g| format!(" with {g}"))
            .unwrap_or_default()
    }

    fn one_zone_finding(&self, w: &Workload) -> Finding {
        let zone = join(&self.runnable);
        let all = join(&self.all());
        let pools = self.pools();
        let message = format!(
            "can run only in zone {zone}: {pools}, the only nodes{} it can use, {} in zone \
             {zone} alone while the cluster has nodes in zones {all}; losing zone {zone} takes \
             the model offline however its replicas are spread",
            self.with_gpu(),
            if pools.starts_with("nodes ") || pools.starts_with("node pools") {
                "are"
            } else {
                "is"
            },
        );
        let fix = format!(
            "add a node pool in every zone (a pool's zones are fixed when it is created) and \
             select it: {}; or, if one zone is accepted, a WellArchitectedException for \
             zone-spread on {} {}/{}",
            self.nodepool_add(),
            w.kind,
            w.namespace,
            w.name
        );
        Finding::new(message, fix, w.pod_field("topologySpreadConstraints"))
    }

    /// `az aks nodepool add …` for a zonal copy of the pool the pod uses.
    fn nodepool_add(&self) -> String {
        let first = self.usable.first();
        let pool = first.and_then(|n| n.pool()).unwrap_or("pool");
        // AKS: Linux pool names are at most 12 lowercase letters and digits.
        let name: String = pool
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .take(11)
            .chain(['z'])
            .collect();
        let size = first
            .and_then(|n| INSTANCE_TYPE_LABELS.iter().find_map(|l| n.labels.get(*l)))
            .map_or("<vm-size>", String::as_str);
        // AKS zone labels are `<region>-<n>`; `--zones` takes the numbers.
        let numbers: Vec<&str> = self
            .all()
            .into_iter()
            .map(|z| z.rsplit('-').next().unwrap_or(z))
            .collect();
        let zones = if numbers.len() >= 2 && numbers.iter().all(|n| n.parse::<u8>().is_ok()) {
            numbers.join(" ")
        } else {
            "1 2 3".to_owned()
        };
        let taints: Vec<String> = first
            .map(|n| n.taints.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|t| t.effect != "PreferNoSchedule")
            .map(|t| {
                format!(
                    "{}={}:{}",
                    t.key,
                    t.value.as_deref().unwrap_or_default(),
                    t.effect
                )
            })
            .collect();
        format!(
            "az aks nodepool add --cluster-name <cluster> --resource-group <resource-group> \
             --name {name} --node-vm-size {size}{} --zones {zones}",
            if taints.is_empty() {
                String::new()
            } else {
                format!(" --node-taints {}", taints.join(","))
            }
        )
    }

    /// How many replicas a DoNotSchedule constraint places before the rest
    /// stay Pending, when a counted zone can take none.
    fn capacity(&self, max_skew: i32) -> i64 {
        i64::from(max_skew) * self.runnable.len() as i64
    }

    /// The fix that must come before a zone constraint can be added: the
    /// pod selects only nodes it can run on.
    fn select_first(&self, pending: &BTreeSet<&str>, max_skew: i32) -> String {
        format!(
            "first select only the nodes{} (a nodeSelector on {}): a DoNotSchedule zone \
             constraint would count zone{} {} too, where no node{} admits this pod, and \
             replicas beyond {} would stay Pending",
            self.with_gpu(),
            self.pools(),
            if pending.len() == 1 { "" } else { "s" },
            join(pending),
            self.with_gpu(),
            self.capacity(max_skew),
        )
    }

    /// (b): a DoNotSchedule constraint that counts zones where the pod
    /// cannot run.
    fn pending_check(
        &self,
        w: &Workload,
        i: usize,
        c: &TopologySpreadConstraint,
        mutate: bool,
        out: &mut Outcome,
    ) {
        let honor_affinity = c.node_affinity_policy.as_deref() != Some("Ignore");
        let honor_taints = c.node_taints_policy.as_deref() == Some("Honor");
        let pending = self.pending(honor_affinity, honor_taints);
        if pending.is_empty() {
            return;
        }
        let path = pointer(&w.pod_field("topologySpreadConstraints"), &[&i.to_string()]);
        let plural = if pending.len() == 1 { "" } else { "s" };
        let message = format!(
            "the zone topologySpreadConstraint is DoNotSchedule and counts zone{plural} {} \
             where no node{} admits this pod: replicas beyond maxSkew in each of zones {} \
             ({} in all) stay Pending",
            join(&pending),
            self.with_gpu(),
            join(&self.runnable),
            self.capacity(c.max_skew),
        );
        let field = format!("{}.topologySpreadConstraints[{i}]", w.pod_field_name());
        let honored = self.pending(true, true);
        if !honored.is_empty() {
            let fix = format!(
                "select only the nodes{} (a nodeSelector on {}): nodeTaintsPolicy: Honor alone \
                 still counts zone{} {}, whose nodes this pod tolerates but cannot run on; or \
                 whenUnsatisfiable: ScheduleAnyway on {field}",
                self.with_gpu(),
                self.pools(),
                if honored.len() == 1 { "" } else { "s" },
                join(&honored),
            );
            out.findings.push(Finding::new(message, fix, path.as_str()));
            return;
        }
        let fix = format!(
            "set nodeTaintsPolicy: Honor{} on {field}, so that zones whose nodes it does not \
             tolerate are not counted",
            if honor_affinity {
                ""
            } else {
                " and nodeAffinityPolicy: Honor"
            },
        );
        out.findings
            .push(Finding::new(message, fix, path.as_str()).fixable(true));
        if mutate {
            let mut fixed = serde_json::to_value(c).unwrap_or_else(|_| json!({}));
            if let Some(m) = fixed.as_object_mut() {
                m.insert("nodeTaintsPolicy".into(), json!("Honor"));
                honor_node_affinity(m);
            }
            out.patch.push(replace(path, fixed));
        }
    }
}

fn zone(n: &NodeRef) -> Option<&str> {
    n.labels.get(ZONE_KEY).map(String::as_str)
}

/// `1, 2`.
fn join(zones: &BTreeSet<&str>) -> String {
    zones.iter().copied().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Context;
    use crate::rules::testing::*;

    fn settings() -> Settings {
        defaults::<ZoneSpread>()
    }

    fn run(obj: &serde_json::Value) -> Outcome {
        run_rule::<ZoneSpread>(obj, &settings())
    }

    #[test]
    fn accepts_two_replicas_spread_across_zones() {
        assert_eq!(run(&gpu_deployment()), Outcome::default());
    }

    #[test]
    fn denies_single_replica_and_names_the_floor() {
        let mut d = gpu_deployment();
        d["spec"]["replicas"] = json!(1);
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].path, "/spec/replicas");
        assert!(
            out.findings[0].message.starts_with("runs 1 replica;"),
            "{:?}",
            out.findings
        );
        assert!(!out.findings[0].fixable);
    }

    #[test]
    fn omitted_replicas_count_as_one() {
        let mut d = gpu_deployment();
        d["spec"].as_object_mut().unwrap().remove("replicas");
        let out = run(&d);
        assert!(out.findings[0].message.contains("spec.replicas omitted"));
    }

    #[test]
    fn an_autoscaler_floor_of_two_satisfies_omitted_replicas() {
        let mut d = gpu_deployment();
        d["spec"].as_object_mut().unwrap().remove("replicas");
        let hpa = scaler("llm", 2, 5);
        let out = ZoneSpread::check(&with_scalers(&workload(&d), &[&hpa]), &settings(), true);
        assert!(out.is_clean(), "{:?}", out.findings);
    }

    #[test]
    fn an_autoscaler_floor_of_one_is_reported_on_the_autoscaler() {
        let hpa = scaler("llm", 1, 5);
        let out = ZoneSpread::check(
            &with_scalers(&workload(&gpu_deployment()), &[&hpa]),
            &settings(),
            true,
        );
        assert_eq!(out.findings.len(), 1);
        assert!(out.findings[0].message.contains("scale down to 1 replica;"));
        assert_eq!(
            out.findings[0].fix,
            "set spec.minReplicas: 2 on HorizontalPodAutoscaler ml/llm"
        );
    }

    #[test]
    fn bare_pods_and_jobs_are_not_judged_for_spread() {
        let pod = gpu_pod();
        assert!(run(&pod).is_clean());
    }

    #[test]
    fn denies_missing_constraint_and_patches_it_from_the_selector() {
        let mut d = gpu_deployment();
        remove_pod_field(&mut d, "topologySpreadConstraints");
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert!(
            out.findings[0]
                .message
                .contains("has no topologySpreadConstraint")
        );
        assert!(
            out.findings[0].fix.contains("matchLabels: {app: llm}"),
            "{}",
            out.findings[0].fix
        );
        let patched = apply(&d, &out.patch);
        assert!(run(&patched).is_clean());
        let c = &patched["spec"]["template"]["spec"]["topologySpreadConstraints"][0];
        assert_eq!(c["labelSelector"]["matchLabels"], json!({"app": "llm"}));
        assert_eq!(c["matchLabelKeys"], json!(["pod-template-hash"]));
    }

    #[test]
    fn a_selector_the_template_does_not_carry_patches_with_the_template_labels() {
        // fuzz/patch_roundtrip: spec.selector {app: minio}, template {app: imnio}.
        let mut d = gpu_deployment();
        remove_pod_field(&mut d, "topologySpreadConstraints");
        d["spec"]["selector"] = json!({"matchLabels": {"app": "someone-else"}});
        let out = run(&d);
        let patched = apply(&d, &out.patch);
        let c = &patched["spec"]["template"]["spec"]["topologySpreadConstraints"][0];
        assert_eq!(c["labelSelector"]["matchLabels"], json!({"app": "llm"}));
        assert!(run(&patched).is_clean(), "the patch converges");
    }

    #[test]
    fn a_constraint_selecting_other_pods_does_not_count() {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["labelSelector"] =
            json!({"matchLabels": {"app": "someone-else"}});
        let out = run(&d);
        assert!(
            out.findings[0]
                .message
                .contains("does not select this pod template's labels")
        );
        // Same key and whenUnsatisfiable: rewritten in place, never duplicated.
        let patched = apply(&d, &out.patch);
        let list = patched["spec"]["template"]["spec"]["topologySpreadConstraints"]
            .as_array()
            .unwrap();
        assert_eq!(list.len(), 1);
        assert!(run(&patched).is_clean());
    }

    #[test]
    fn match_expressions_select_the_template_too() {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["labelSelector"] =
            json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["llm", "x"]}]});
        assert!(run(&d).is_clean());
        d["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["labelSelector"] =
            json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["llm"]}]});
        assert_eq!(run(&d).findings.len(), 1);
    }

    #[test]
    fn an_empty_selector_does_not_count() {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["labelSelector"] = json!({});
        assert_eq!(run(&d).findings.len(), 1);
    }

    #[test]
    fn denies_too_large_max_skew_and_lowers_it() {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["maxSkew"] = json!(3);
        let out = run(&d);
        assert!(out.findings[0].message.contains("maxSkew 3"));
        assert!(
            out.findings[0]
                .path
                .ends_with("/topologySpreadConstraints/0")
        );
        assert!(run(&apply(&d, &out.patch)).is_clean());
    }

    #[test]
    fn schedule_anyway_is_weaker_than_required_do_not_schedule() {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["whenUnsatisfiable"] =
            json!("ScheduleAnyway");
        let out = run(&d);
        assert!(out.findings[0].message.contains("ScheduleAnyway"));
        let patched = apply(&d, &out.patch);
        // A DoNotSchedule constraint is added beside the ScheduleAnyway one.
        assert_eq!(
            patched["spec"]["template"]["spec"]["topologySpreadConstraints"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert!(run(&patched).is_clean());
    }

    #[test]
    fn hostname_constraints_do_not_count_as_zone_spread() {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["topologyKey"] =
            json!("kubernetes.io/hostname");
        let out = run(&d);
        assert!(
            out.findings[0]
                .message
                .contains("has no topologySpreadConstraint")
        );
        let patched = apply(&d, &out.patch);
        assert!(run(&patched).is_clean());
        assert_eq!(
            patched["spec"]["template"]["spec"]["topologySpreadConstraints"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn without_labels_there_is_nothing_to_select_and_no_patch() {
        let mut d = gpu_deployment();
        remove_pod_field(&mut d, "topologySpreadConstraints");
        d["spec"]["selector"] = json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]});
        d["spec"]["template"]["metadata"]["labels"] = json!({});
        let out = run(&d);
        assert!(!out.findings[0].fixable);
        assert!(out.patch.is_empty());
    }

    #[test]
    fn no_patch_without_mutate() {
        let mut d = gpu_deployment();
        remove_pod_field(&mut d, "topologySpreadConstraints");
        let out = ZoneSpread::check(&on(&workload(&d)), &settings(), false);
        assert!(out.findings[0].fixable);
        assert!(out.patch.is_empty());
    }

    /// A GPU pool tainted sku=gpu in `gpu_zones`, a CPU pool in 1, 2, 3.
    fn cluster(gpu_zones: &[&str]) -> Context {
        let mut ctx = Context::default();
        let node = |name: String, pool: &str, zone: &str, gpu: bool| {
            let mut n = json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"agentpool": pool,
                    "topology.kubernetes.io/zone": format!("eastus-{zone}"),
                    "node.kubernetes.io/instance-type":
                        if gpu { "Standard_NC24ads_A100_v4" } else { "Standard_D8s_v5" }}},
                "status": {"allocatable": {"cpu": "8"}}});
            if gpu {
                n["metadata"]["labels"]["kubernetes.azure.com/accelerator"] = json!("nvidia");
                n["spec"] =
                    json!({"taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]});
                n["status"]["allocatable"]["nvidia.com/gpu"] = json!("1");
            }
            NodeRef::from_value(n, "test").unwrap()
        };
        for z in gpu_zones {
            ctx.add_node(node(format!("aks-gpu-{z}"), "gpu", z, true));
        }
        for z in ["1", "2", "3"] {
            ctx.add_node(node(format!("aks-cpu-{z}"), "cpu", z, false));
        }
        ctx
    }

    fn judged_in(d: &serde_json::Value, ctx: &Context) -> Outcome {
        ZoneSpread::check(&in_context(&workload(d), ctx), &settings(), true)
    }

    /// The AKS GPU samples' pod: toleration and GPU request, no selector.
    fn unselected(mut d: serde_json::Value) -> serde_json::Value {
        remove_pod_field(&mut d, "nodeSelector");
        d
    }

    #[test]
    fn the_added_constraint_honors_taints() {
        let mut d = gpu_deployment();
        remove_pod_field(&mut d, "topologySpreadConstraints");
        let out = run(&d);
        assert!(
            out.findings[0].fix.contains("nodeTaintsPolicy: Honor"),
            "{}",
            out.findings[0].fix
        );
        let c = &apply(&d, &out.patch)["spec"]["template"]["spec"]["topologySpreadConstraints"][0];
        assert_eq!(c["nodeTaintsPolicy"], "Honor");
    }

    #[test]
    fn a_gpu_pool_in_one_zone_is_named_as_the_cause() {
        let out = judged_in(&gpu_deployment(), &cluster(&["1"]));
        assert_eq!(out.findings.len(), 1, "{:?}", out.findings);
        let f = &out.findings[0];
        assert_eq!(
            f.message,
            "can run only in zone eastus-1: node pool gpu, the only nodes with nvidia.com/gpu it \
             can use, is in zone eastus-1 alone while the cluster has nodes in zones eastus-1, \
             eastus-2, eastus-3; losing zone eastus-1 takes the model offline however its \
             replicas are spread"
        );
        assert!(
            f.fix.contains(
                "az aks nodepool add --cluster-name <cluster> --resource-group <resource-group> \
                 --name gpuz --node-vm-size Standard_NC24ads_A100_v4 --node-taints \
                 sku=gpu:NoSchedule --zones 1 2 3"
            ),
            "{}",
            f.fix
        );
        assert!(
            f.fix
                .ends_with("a WellArchitectedException for zone-spread on Deployment ml/llm")
        );
        assert!(!f.fixable);
        assert!(out.patch.is_empty(), "no patch spreads a one-zone pool");
    }

    #[test]
    fn a_one_zone_cluster_is_not_blamed_on_its_gpu_pool() {
        let mut ctx = Context::default();
        for n in cluster(&["1"])
            .nodes()
            .iter()
            .filter(|n| n.name.ends_with("-1"))
        {
            ctx.add_node(n.clone());
        }
        assert!(judged_in(&gpu_deployment(), &ctx).is_clean());
    }

    #[test]
    fn a_selected_gpu_pool_in_two_zones_passes_without_honor() {
        // nodeSelector accelerator: nvidia: only GPU nodes are counted.
        assert!(judged_in(&gpu_deployment(), &cluster(&["1", "2"])).is_clean());
    }

    #[test]
    fn do_not_schedule_counting_cpu_only_zones_leaves_replicas_pending() {
        // Tolerations only: the CPU pool's untainted nodes count zone 3,
        // with Ignore or Honor alike.
        let d = unselected(gpu_deployment());
        let out = judged_in(&d, &cluster(&["1", "2"]));
        assert_eq!(out.findings.len(), 1, "{:?}", out.findings);
        let f = &out.findings[0];
        assert_eq!(
            f.message,
            "the zone topologySpreadConstraint is DoNotSchedule and counts zone eastus-3 where \
             no node with nvidia.com/gpu admits this pod: replicas beyond maxSkew in each of \
             zones eastus-1, eastus-2 (2 in all) stay Pending"
        );
        assert!(
            f.fix.starts_with(
                "select only the nodes with nvidia.com/gpu (a nodeSelector on node pool gpu): \
                 nodeTaintsPolicy: Honor alone still counts zone eastus-3"
            ),
            "{}",
            f.fix
        );
        assert!(!f.fixable);
        assert!(out.patch.is_empty());
    }

    #[test]
    fn honor_fixes_a_constraint_that_counts_zones_of_pools_the_pod_does_not_tolerate() {
        // The pod selects every NVIDIA node; a pool reserved for another
        // team (tainted team=b) is the only one in zone 3.
        let mut ctx = cluster(&["1", "2"]);
        ctx.add_node(
            NodeRef::from_value(
                json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": "aks-teamb-3", "labels": {"agentpool": "teamb",
                        "kubernetes.azure.com/accelerator": "nvidia",
                        "topology.kubernetes.io/zone": "eastus-3"}},
                    "spec": {"taints": [{"key": "team", "value": "b", "effect": "NoSchedule"}]},
                    "status": {"allocatable": {"nvidia.com/gpu": "1"}}}),
                "test",
            )
            .unwrap(),
        );
        let d = gpu_deployment();
        let out = judged_in(&d, &ctx);
        assert_eq!(out.findings.len(), 1, "{:?}", out.findings);
        let f = &out.findings[0];
        assert!(
            f.message.starts_with(
                "the zone topologySpreadConstraint is DoNotSchedule and counts zone eastus-3"
            ),
            "{}",
            f.message
        );
        assert_eq!(
            f.fix,
            "set nodeTaintsPolicy: Honor on spec.template.spec.topologySpreadConstraints[0], so \
             that zones whose nodes it does not tolerate are not counted"
        );
        assert!(f.fixable);
        let patched = apply(&d, &out.patch);
        assert_eq!(
            patched["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["nodeTaintsPolicy"],
            "Honor"
        );
        assert!(judged_in(&patched, &ctx).is_clean());
    }

    #[test]
    fn node_affinity_policy_ignore_counts_every_zone() {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["nodeAffinityPolicy"] =
            json!("Ignore");
        let out = judged_in(&d, &cluster(&["1", "2"]));
        assert!(out.findings[0].message.contains("counts zone eastus-3"));
        assert!(
            out.findings[0]
                .fix
                .contains("and nodeAffinityPolicy: Honor")
        );
        let patched = apply(&d, &out.patch);
        assert!(judged_in(&patched, &cluster(&["1", "2"])).is_clean());
    }

    #[test]
    fn the_patch_waits_for_a_selector_when_it_would_leave_replicas_pending() {
        let mut d = unselected(gpu_deployment());
        remove_pod_field(&mut d, "topologySpreadConstraints");
        let out = judged_in(&d, &cluster(&["1", "2"]));
        let f = &out.findings[0];
        assert!(f.message.contains("has no topologySpreadConstraint"));
        assert!(
            f.fix
                .starts_with("first select only the nodes with nvidia.com/gpu"),
            "{}",
            f.fix
        );
        assert!(
            f.fix
                .contains("; then add to spec.template.spec: topologySpreadConstraints")
        );
        assert!(!f.fixable);
        assert!(out.patch.is_empty());
        // With the selector, the patch is made and converges.
        let mut selected = gpu_deployment();
        remove_pod_field(&mut selected, "topologySpreadConstraints");
        let out = judged_in(&selected, &cluster(&["1", "2"]));
        assert!(out.findings[0].fixable);
        assert!(judged_in(&apply(&selected, &out.patch), &cluster(&["1", "2"])).is_clean());
    }

    #[test]
    fn without_gpu_nodes_pools_are_not_judged() {
        // A GPU pool scaled to zero: nothing to say about zones.
        let mut ctx = Context::default();
        for n in cluster(&[]).nodes() {
            ctx.add_node(n.clone());
        }
        assert!(judged_in(&gpu_deployment(), &ctx).is_clean());
    }

    #[test]
    fn statefulsets_get_no_pod_template_hash_key() {
        let mut s = gpu_deployment();
        s["kind"] = json!("StatefulSet");
        remove_pod_field(&mut s, "topologySpreadConstraints");
        let out = run(&s);
        let patched = apply(&s, &out.patch);
        let c = &patched["spec"]["template"]["spec"]["topologySpreadConstraints"][0];
        assert!(c.get("matchLabelKeys").is_none());
        assert!(run(&patched).is_clean());
    }
}
