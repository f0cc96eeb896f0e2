//! `resources` (Cost Optimization): every container, init containers too,
//! requests and limits what the policy requires, no limit is below its
//! request, and GPUs are limited (they cannot be overcommitted). WAF:
//! "right-size compute … set requests and limits so the scheduler can bin-pack".

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use serde_json::{Value, json};

use super::gpu_placement::GpuResources;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Finding, Outcome, PolicyFacts, Rule, Subject, add, pointer};
use crate::quantity::Quantity;
use crate::release::Release;
use crate::rule_list::{Action, Pillar, RuleId};
use crate::workload::ContainerView;

/// `resources` (Cost Optimization): every container declares what it needs,
/// so the scheduler can pack nodes and the cluster autoscaler can size them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Fill missing requests and limits from `defaults` through the mutating webhook.
    #[serde(default)]
    pub mutate: bool,
    /// Resource names every container must request.
    #[serde(default = "default_required_requests")]
    pub require_requests: Vec<String>,
    /// Resource names every container must limit.
    #[serde(default = "default_required_limits")]
    pub require_limits: Vec<String>,
    /// Values the patch writes. A missing limit takes the container's request
    /// where it has one, so a patch never makes a limit lower than its request.
    #[serde(default = "default_resource_defaults")]
    pub defaults: ResourceDefaults,
    /// Values the patch writes into a container that requests a GPU.
    /// Absent (the default): none, since `defaults` would starve a model
    /// server (weights, KV cache, tokenizer and runtime need far more), so
    /// its missing sizes are violations the platform team sizes by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_defaults: Option<ResourceDefaults>,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            action: None,
            mutate: false,
            require_requests: default_required_requests(),
            require_limits: default_required_limits(),
            defaults: default_resource_defaults(),
            gpu_defaults: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceDefaults {
    #[serde(default)]
    pub requests: BTreeMap<String, K8sQuantity>,
    #[serde(default)]
    pub limits: BTreeMap<String, K8sQuantity>,
}

fn default_required_requests() -> Vec<String> {
    vec!["cpu".into(), "memory".into()]
}

fn default_required_limits() -> Vec<String> {
    vec!["memory".into()]
}

fn default_resource_defaults() -> ResourceDefaults {
    ResourceDefaults {
        requests: BTreeMap::from([
            ("cpu".into(), K8sQuantity("500m".into())),
            ("memory".into(), K8sQuantity("1Gi".into())),
        ]),
        limits: BTreeMap::from([("memory".into(), K8sQuantity("1Gi".into()))]),
    }
}

impl Rule for Resources {
    const ID: RuleId = RuleId::Resources;
    const PILLAR: Pillar = Pillar::CostOptimization;
    const SUMMARY: &'static str =
        "Every container requests and limits what it needs; a GPU limit equals its request";
    const SINCE: Release = Release::V0_1;

    type Settings = Settings;

    fn mutate(&self) -> bool {
        self.mutate
    }

    fn compile(&self, policy: &PolicyFacts, at: &str, problems: &mut Vec<String>) -> Settings {
        let spec = self;
        let gpus = policy.gpus.clone();
        for (field, names) in [
            ("requireRequests", &spec.require_requests),
            ("requireLimits", &spec.require_limits),
        ] {
            if names.iter().any(|n| n.trim().is_empty()) {
                problems.push(format!("{at}.{field}: resource names cannot be empty"));
            }
            crate::problems::duplicates(
                names.iter().map(String::as_str),
                &format!("{at}.{field}"),
                problems,
            );
        }
        let mut parse_all = |field: &str, map: &BTreeMap<String, K8sQuantity>| {
            map.iter()
                .filter_map(|(name, q)| match Quantity::parse(&q.0) {
                    Ok(v) if v.is_negative() => {
                        problems.push(format!("{at}.{field}.{name}: must not be negative"));
                        None
                    }
                    Ok(_) => Some((name.clone(), q.0.clone())),
                    Err(e) => {
                        problems.push(format!("{at}.{field}.{name}: {e}"));
                        None
                    }
                })
                .collect::<BTreeMap<_, _>>()
        };
        let mut parse_pair = |field: &str, d: &ResourceDefaults| {
            let requests = parse_all(&format!("{field}.requests"), &d.requests);
            let limits = parse_all(&format!("{field}.limits"), &d.limits);
            (requests, limits)
        };
        let (default_requests, default_limits) = parse_pair("defaults", &spec.defaults);
        let gpu_defaults = spec
            .gpu_defaults
            .as_ref()
            .map(|d| parse_pair("gpuDefaults", d));
        for (field, (requests, limits)) in
            std::iter::once(("defaults", (&default_requests, &default_limits)))
                .chain(gpu_defaults.iter().map(|(r, l)| ("gpuDefaults", (r, l))))
        {
            for (name, lim) in limits {
                if let (Some(req), Ok(l)) = (requests.get(name), Quantity::parse(lim))
                    && Quantity::parse(req).is_ok_and(|r| l < r)
                {
                    problems.push(format!(
                        "{at}.{field}.limits.{name}: {lim} is below {field}.requests.{name} {req}"
                    ));
                }
            }
        }
        Settings {
            require_requests: spec.require_requests.clone(),
            require_limits: spec.require_limits.clone(),
            default_requests,
            default_limits,
            gpu_defaults,
            gpus,
        }
    }

    fn check(on: &Subject, s: &Settings, mutate: bool) -> Outcome {
        let w = on.workload;
        let mut out = Outcome::default();
        for c in w.resourced_containers() {
            check_container(&c, s, mutate, &mut out);
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub require_requests: Vec<String>,
    pub require_limits: Vec<String>,
    pub default_requests: BTreeMap<String, String>,
    pub default_limits: BTreeMap<String, String>,
    /// Defaults for containers that request a GPU: none unless the platform
    /// team sized its GPU SKUs (`gpuDefaults`).
    pub gpu_defaults: Option<(BTreeMap<String, String>, BTreeMap<String, String>)>,
    /// Which extended resources are GPUs (from the policy's gpuPlacement).
    pub gpus: GpuResources,
}

fn check_container(c: &ContainerView<'_>, s: &Settings, mutate: bool, out: &mut Outcome) {
    let empty = BTreeMap::new();
    let requests = c
        .resources
        .and_then(|r| r.requests.as_ref())
        .unwrap_or(&empty);
    let limits = c
        .resources
        .and_then(|r| r.limits.as_ref())
        .unwrap_or(&empty);
    let who = c.describe();
    let requests_path = format!("{}/resources/requests", c.path);
    let limits_path = format!("{}/resources/limits", c.path);
    let mut add_requests: BTreeMap<String, String> = BTreeMap::new();
    let mut add_limits: BTreeMap<String, String> = BTreeMap::new();

    // A model server's sizes follow its model; a CPU default would starve
    // it (OOM-killed while loading weights). Only `gpuDefaults` fills them.
    let gpu = requests
        .keys()
        .chain(limits.keys())
        .any(|n| s.gpus.matches(n));
    let no_defaults = BTreeMap::new();
    let (default_requests, default_limits) = match (&s.gpu_defaults, gpu) {
        (Some((r, l)), true) => (r, l),
        (None, true) => (&no_defaults, &no_defaults),
        (_, false) => (&s.default_requests, &s.default_limits),
    };
    let unsized_gpu = gpu && s.gpu_defaults.is_none();
    let size_it = |field: &str, name: &str, value: Option<&str>| match value {
        Some(v) => format!("set resources.{field}.{name}: {v} on {who}"),
        None if unsized_gpu => format!(
            "size resources.{field}.{name} on {who} for its model (weights, KV cache, \
             tokenizer and runtime); no default is guessed for a GPU server"
        ),
        None => format!("set resources.{field}.{name}: <amount> on {who}"),
    };

    for name in &s.require_requests {
        // The apiserver defaults a missing request to the limit, so a limit
        // alone is a request too.
        if requests.contains_key(name) || limits.contains_key(name) {
            continue;
        }
        let default = default_requests.get(name);
        out.findings.push(Finding {
            message: format!(
                "{who} has no {name} request: the scheduler cannot place it by what it needs"
            ),
            fix: size_it("requests", name, default.map(String::as_str)),
            path: requests_path.clone(),
            fixable: default.is_some(),
            object: None,
            edit: None,
        });
        if let Some(d) = default {
            add_requests.insert(name.clone(), d.clone());
        }
    }

    for name in &s.require_limits {
        if limits.contains_key(name) {
            continue;
        }
        // A default never makes a limit lower than the request: a missing
        // limit takes the request's value where there is one.
        let value = if unsized_gpu {
            None
        } else {
            requests
                .get(name)
                .map(|q| q.0.clone())
                .or_else(|| add_requests.get(name).cloned())
                .or_else(|| default_limits.get(name).cloned())
        };
        out.findings.push(Finding {
            message: format!(
                "{who} has no {name} limit: one pod can starve its neighbours on the node"
            ),
            fix: size_it("limits", name, value.as_deref()),
            path: limits_path.clone(),
            fixable: value.is_some(),
            object: None,
            edit: None,
        });
        if let Some(v) = value {
            add_limits.insert(name.clone(), v);
        }
    }

    for (name, req) in requests {
        let is_gpu = s.gpus.matches(name);
        let Some(lim) = limits.get(name) else {
            if is_gpu && !add_limits.contains_key(name) {
                out.findings.push(Finding {
                    message: format!(
                        "{who} requests {name}: {} without a limit; GPUs cannot be overcommitted",
                        req.0
                    ),
                    fix: format!("set resources.limits.{name}: {} on {who}", req.0),
                    path: limits_path.clone(),
                    fixable: true,
                    object: None,
                    edit: None,
                });
                add_limits.insert(name.clone(), req.0.clone());
            }
            continue;
        };
        match (Quantity::parse(&req.0), Quantity::parse(&lim.0)) {
            (Ok(r), Ok(l)) if is_gpu && r != l => out.findings.push(Finding {
                message: format!(
                    "{who} requests {name}: {} but limits it to {}; a GPU request must equal its limit",
                    req.0, lim.0
                ),
                fix: format!("set resources.requests.{name} and resources.limits.{name} to the same count"),
                path: format!("{limits_path}/{}", escape(name)),
                fixable: false,object: None, edit: None,
}),
            (Ok(r), Ok(l)) if l < r => out.findings.push(Finding {
                message: format!(
                    "{who} limits {name} to {} below its request {}",
                    lim.0, req.0
                ),
                fix: format!("raise resources.limits.{name} to at least {} on {who}", req.0),
                path: format!("{limits_path}/{}", escape(name)),
                fixable: false,object: None, edit: None,
}),
            (Ok(_), Ok(_)) => {}
            (Err(e), _) | (_, Err(e)) => out.findings.push(Finding {
                message: format!("{who}: {e}"),
                fix: format!("write {name} as a Kubernetes quantity (500m, 2, 1Gi)"),
                path: format!("{}/resources", c.path),
                fixable: false,object: None, edit: None,
}),
        }
    }

    if mutate && !(add_requests.is_empty() && add_limits.is_empty()) {
        patch_container(c, &add_requests, &add_limits, out);
    }
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Adds the missing values with as few operations as the object's shape
/// allows, creating `resources`, `requests` and `limits` where absent.
fn patch_container(
    c: &ContainerView<'_>,
    add_requests: &BTreeMap<String, String>,
    add_limits: &BTreeMap<String, String>,
    out: &mut Outcome,
) {
    let as_map = |m: &BTreeMap<String, String>| -> Value {
        m.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let Some(resources) = c.resources else {
        let mut value = json!({});
        if !add_requests.is_empty() {
            value["requests"] = as_map(add_requests);
        }
        if !add_limits.is_empty() {
            value["limits"] = as_map(add_limits);
        }
        out.patch.push(add(pointer(&c.path, &["resources"]), value));
        return;
    };
    for (field, present, adds) in [
        ("requests", resources.requests.is_some(), add_requests),
        ("limits", resources.limits.is_some(), add_limits),
    ] {
        if adds.is_empty() {
            continue;
        }
        if present {
            for (name, v) in adds {
                out.patch.push(add(
                    pointer(&c.path, &["resources", field, name]),
                    Value::String(v.clone()),
                ));
            }
        } else {
            out.patch
                .push(add(pointer(&c.path, &["resources", field]), as_map(adds)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::*;

    fn settings() -> Settings {
        defaults::<Resources>()
    }

    fn run(obj: &serde_json::Value) -> Outcome {
        run_rule::<Resources>(obj, &settings())
    }

    #[test]
    fn accepts_complete_requests_and_limits() {
        assert_eq!(run(&gpu_deployment()), Outcome::default());
    }

    #[test]
    fn denies_container_without_resources_and_fills_them_from_defaults() {
        let mut d = gpu_deployment();
        container(&mut d)
            .as_object_mut()
            .unwrap()
            .remove("resources");
        let out = run(&d);
        let messages: Vec<_> = out.findings.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "container \"llm\" has no cpu request: the scheduler cannot place it by what it needs",
                "container \"llm\" has no memory request: the scheduler cannot place it by what it needs",
                "container \"llm\" has no memory limit: one pod can starve its neighbours on the node",
            ]
        );
        let patched = apply(&d, &out.patch);
        let r = &patched["spec"]["template"]["spec"]["containers"][0]["resources"];
        assert_eq!(r["requests"], json!({"cpu": "500m", "memory": "1Gi"}));
        assert_eq!(r["limits"], json!({"memory": "1Gi"}));
        assert!(run(&patched).is_clean());
    }

    #[test]
    fn a_missing_limit_takes_the_request_so_never_falls_below_it() {
        let mut d = cpu_deployment();
        let r = &mut container(&mut d)["resources"];
        r["requests"]["memory"] = json!("24Gi");
        r["limits"].as_object_mut().unwrap().remove("memory");
        let out = run(&d);
        let patched = apply(&d, &out.patch);
        assert_eq!(
            patched["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"],
            json!("24Gi")
        );
        assert!(run(&patched).is_clean());
    }

    #[test]
    fn a_limit_alone_counts_as_the_request_as_the_apiserver_defaults_it() {
        let mut d = gpu_deployment();
        let r = &mut container(&mut d)["resources"];
        r.as_object_mut().unwrap().remove("requests");
        r["limits"]["cpu"] = json!("4");
        assert!(run(&d).is_clean(), "{:?}", run(&d).findings);
    }

    #[test]
    fn compares_quantities_as_numbers_not_strings() {
        let mut d = gpu_deployment();
        let r = &mut container(&mut d)["resources"];
        r["requests"]["memory"] = json!("1000Mi");
        r["limits"]["memory"] = json!("1Gi");
        assert!(run(&d).is_clean(), "1Gi > 1000Mi");
        let r = &mut container(&mut d)["resources"];
        r["requests"]["cpu"] = json!("1");
        r["limits"]["cpu"] = json!("500m");
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert_eq!(
            out.findings[0].message,
            "container \"llm\" limits cpu to 500m below its request 1"
        );
        assert!(
            out.patch.is_empty(),
            "a limit below request is the author's to fix"
        );
    }

    #[test]
    fn init_containers_are_held_to_the_same_requirements() {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["initContainers"] = json!([{"name": "fetch-model", "image": "contoso.azurecr.io/tools/fetch@sha256:0000000000000000000000000000000000000000000000000000000000000000"}]);
        let out = run(&d);
        assert_eq!(out.findings.len(), 3);
        assert!(
            out.findings
                .iter()
                .all(|f| f.message.starts_with("init container \"fetch-model\""))
        );
        assert!(
            out.findings[0]
                .path
                .starts_with("/spec/template/spec/initContainers/0/")
        );
        assert!(run(&apply(&d, &out.patch)).is_clean());
    }

    #[test]
    fn a_gpu_request_without_limit_gets_the_limit_patched_with_an_escaped_pointer() {
        let mut d = gpu_deployment();
        let r = &mut container(&mut d)["resources"];
        r["requests"]["nvidia.com/gpu"] = json!("1");
        r["limits"]
            .as_object_mut()
            .unwrap()
            .remove("nvidia.com/gpu");
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert!(
            out.findings[0]
                .message
                .contains("GPUs cannot be overcommitted")
        );
        assert_eq!(
            out.patch[0].path().as_str(),
            "/spec/template/spec/containers/0/resources/limits/nvidia.com~1gpu"
        );
        assert!(run(&apply(&d, &out.patch)).is_clean());
    }

    #[test]
    fn gpu_request_must_equal_limit() {
        let mut d = gpu_deployment();
        let r = &mut container(&mut d)["resources"];
        r["requests"]["nvidia.com/gpu"] = json!("1");
        r["limits"]["nvidia.com/gpu"] = json!("2");
        let out = run(&d);
        assert!(
            out.findings[0]
                .message
                .contains("a GPU request must equal its limit")
        );
    }

    #[test]
    fn adds_single_keys_where_the_maps_exist() {
        let mut d = cpu_deployment();
        let r = &mut container(&mut d)["resources"];
        r["requests"].as_object_mut().unwrap().remove("cpu");
        let out = run(&d);
        assert_eq!(out.patch.len(), 1);
        assert_eq!(
            out.patch[0].path().as_str(),
            "/spec/template/spec/containers/0/resources/requests/cpu"
        );
        assert!(run(&apply(&d, &out.patch)).is_clean());
    }

    #[test]
    fn an_unparseable_quantity_is_reported_not_skipped() {
        let mut d = gpu_deployment();
        container(&mut d)["resources"]["limits"]["memory"] = json!("lots");
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert!(
            out.findings[0].message.contains("\"lots\""),
            "{}",
            out.findings[0].message
        );
    }

    /// A KAITO, vLLM or Ollama Deployment that declares only its GPU.
    fn gpu_only() -> Value {
        let mut d = gpu_deployment();
        container(&mut d)["resources"] =
            json!({"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}});
        d
    }

    #[test]
    fn a_gpu_server_gets_no_guessed_sizes_only_a_fix_that_says_to_size_it() {
        let out = run(&gpu_only());
        assert_eq!(out.findings.len(), 3, "{:?}", out.findings);
        assert!(out.findings.iter().all(|f| !f.fixable));
        assert!(out.patch.is_empty(), "{:?}", out.patch);
        assert_eq!(
            out.findings[1].fix,
            "size resources.requests.memory on container \"llm\" for its model (weights, KV cache, \
             tokenizer and runtime); no default is guessed for a GPU server"
        );
    }

    #[test]
    fn gpu_defaults_size_gpu_servers_where_the_platform_team_opts_in() {
        let spec = Resources {
            gpu_defaults: Some(ResourceDefaults {
                requests: BTreeMap::from([
                    ("cpu".into(), K8sQuantity("8".into())),
                    ("memory".into(), K8sQuantity("96Gi".into())),
                ]),
                limits: BTreeMap::new(),
            }),
            ..Resources::default()
        };
        let s = spec.compile(
            &PolicyFacts {
                gpus: &settings().gpus,
                replica_floor: 2,
                prometheus_server: "http://prometheus-operated.monitoring.svc:9090",
                price_region: "",
            },
            "r",
            &mut vec![],
        );
        let d = gpu_only();
        let out = Resources::check(&on(&workload(&d)), &s, true);
        assert!(out.findings.iter().all(|f| f.fixable), "{:?}", out.findings);
        let patched = apply(&d, &out.patch);
        let r = &patched["spec"]["template"]["spec"]["containers"][0]["resources"];
        assert_eq!(
            r["requests"],
            json!({"cpu": "8", "memory": "96Gi", "nvidia.com/gpu": "1"})
        );
        assert_eq!(
            r["limits"],
            json!({"memory": "96Gi", "nvidia.com/gpu": "1"})
        );
        assert!(Resources::check(&on(&workload(&patched)), &s, true).is_clean());
        // The CPU defaults still size CPU containers under the same policy.
        let cpu = Resources::check(&on(&workload(&cpu_deployment())), &s, true);
        assert!(cpu.is_clean());
    }

    #[test]
    fn without_a_default_the_finding_is_not_fixable() {
        let mut spec = Resources::default();
        spec.require_limits.push("ephemeral-storage".into());
        let s = spec.compile(
            &PolicyFacts {
                gpus: &GpuResources::default(),
                replica_floor: 2,
                prometheus_server: "http://prometheus-operated.monitoring.svc:9090",
                price_region: "",
            },
            "r",
            &mut vec![],
        );
        let out = Resources::check(&on(&workload(&gpu_deployment())), &s, true);
        assert_eq!(out.findings.len(), 1);
        assert!(!out.findings[0].fixable);
        assert!(out.patch.is_empty());
    }

    #[test]
    fn refuses_policy_defaults_that_do_not_parse_or_invert() {
        let mut spec = Resources::default();
        spec.defaults
            .requests
            .insert("memory".into(), K8sQuantity("2Gi".into()));
        spec.defaults
            .limits
            .insert("cpu".into(), K8sQuantity("1 core".into()));
        let mut problems = vec![];
        spec.compile(
            &PolicyFacts {
                gpus: &GpuResources::default(),
                replica_floor: 2,
                prometheus_server: "http://prometheus-operated.monitoring.svc:9090",
                price_region: "",
            },
            "spec.rules.resources",
            &mut problems,
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("spec.rules.resources.defaults.limits.cpu:"));
        assert!(problems[1].contains("1Gi is below defaults.requests.memory 2Gi"));
    }
}
