//! `shared-memory` (Performance Efficiency): a container that spans several
//! GPUs — at least `minGpus` of a GPU resource, or tensor parallelism above
//! 1 (vLLM `--tensor-parallel-size`/`-tp`, TGI `--num-shard`/`NUM_SHARD`,
//! SGLang `--tp-size`/`--tp`, `$(VAR)` expanded from the container's env) —
//! mounts an emptyDir with `medium: Memory` at /dev/shm. NCCL and PyTorch
//! workers exchange tensors there; the runtime's default is 64 MiB. A
//! `sizeLimit` is optional (the memory limit caps the tmpfs), but when set
//! it is at least `minSizeLimit` and within the container's memory limit:
//! tmpfs pages count against the memory cgroup, so an over-large limit
//! OOM-kills the container instead of failing the write. `hostIPC` also
//! gives shared memory (`host-isolation`'s concern, not this rule's).

use k8s_openapi::api::core::v1::{Container, Volume};
use serde_json::json;

use super::command_line::{flag_value, literal_env, words};
use super::gpu_placement::GpuResources;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Finding, Outcome, PolicyFacts, Rule, Subject, add, pointer, two};
use crate::quantity::Quantity;
use crate::release::Release;
use crate::rule_list::{Action, Pillar, RuleId};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

pub const SHM_PATH: &str = "/dev/shm";

/// Flags that set tensor parallelism, per server, as `--flag N` or `--flag=N`.
const TP_FLAGS: [&str; 5] = [
    "--tensor-parallel-size",
    "-tp",
    "--num-shard",
    "--tp-size",
    "--tp",
];
/// Env variables that set it (TGI reads its flags from env too).
const TP_ENV: [&str; 1] = ["NUM_SHARD"];

/// `shared-memory` (Performance Efficiency): a container that spans
/// several GPUs (NCCL, tensor parallelism) mounts a Memory emptyDir at
/// /dev/shm; the container runtime's default of 64 MiB makes it crash or crawl.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SharedMemory {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Add the emptyDir volume and its /dev/shm mount through the mutating webhook.
    #[serde(default)]
    pub mutate: bool,
    /// The GPU count (of a `gpuPlacement.resourceNames` resource) from which
    /// a container needs shared memory. Tensor parallelism above 1
    /// (`--tensor-parallel-size`, `--num-shard`, `--tp-size`) triggers it too.
    #[serde(default = "two")]
    #[schemars(range(min = 1))]
    pub min_gpus: i32,
    /// The smallest `sizeLimit` accepted on the /dev/shm emptyDir (no
    /// sizeLimit is accepted: the pod's memory limit caps it).
    #[serde(default = "default_min_shm")]
    pub min_size_limit: K8sQuantity,
    /// The `sizeLimit` the patch writes; absent: none (capped by the memory limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_size_limit: Option<K8sQuantity>,
}

impl Default for SharedMemory {
    fn default() -> Self {
        SharedMemory {
            action: None,
            mutate: false,
            min_gpus: two(),
            min_size_limit: default_min_shm(),
            default_size_limit: None,
        }
    }
}
fn default_min_shm() -> K8sQuantity {
    K8sQuantity("1Gi".into())
}

impl Rule for SharedMemory {
    const ID: RuleId = RuleId::SharedMemory;
    const PILLAR: Pillar = Pillar::PerformanceEfficiency;
    const SUMMARY: &'static str =
        "Multi-GPU and tensor-parallel containers mount a Memory emptyDir at /dev/shm";
    const SINCE: Release = Release::V0_2;

    type Settings = Settings;

    fn mutate(&self) -> bool {
        self.mutate
    }

    fn compile(&self, policy: &PolicyFacts, at: &str, problems: &mut Vec<String>) -> Settings {
        let spec = self;
        let gpus = policy.gpus.clone();
        if spec.min_gpus < 1 {
            problems.push(format!("{at}.minGpus: must be at least 1"));
        }
        let min_gpus = Quantity::parse(&spec.min_gpus.max(1).to_string()).ok();
        let mut parse = |field: &str, q: &str| match Quantity::parse(q) {
            Ok(v) if v.is_negative() || v.is_zero() => {
                problems.push(format!("{at}.{field}: must be above zero"));
                None
            }
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(format!("{at}.{field}: {e}"));
                None
            }
        };
        let min_size = parse("minSizeLimit", &spec.min_size_limit.0);
        if let Some(d) = &spec.default_size_limit
            && let Some(dv) = parse("defaultSizeLimit", &d.0)
            && min_size.is_some_and(|m| dv < m)
        {
            problems.push(format!(
                "{at}.defaultSizeLimit: {} is below minSizeLimit {}",
                d.0, spec.min_size_limit.0
            ));
        }
        Settings {
            gpus,
            min_gpus,
            min_size_limit: (min_size, spec.min_size_limit.0.clone()),
            default_size_limit: spec.default_size_limit.as_ref().map(|q| q.0.clone()),
        }
    }

    fn check(on: &Subject, s: &Settings, mutate: bool) -> Outcome {
        let w = on.workload;
        let mut out = Outcome::default();
        if w.pod.host_ipc == Some(true) {
            return out;
        }
        let volumes = w.pod.volumes.as_deref().unwrap_or(&[]);
        let volume = |name: &str| volumes.iter().enumerate().find(|(_, v)| v.name == name);
        // A Memory emptyDir another container already mounts at /dev/shm is
        // the one to share; otherwise the patch adds its own.
        let shared = w.pod.containers.iter().find_map(|c| {
            let m = c
                .volume_mounts
                .iter()
                .flatten()
                .find(|m| m.mount_path.trim_end_matches('/') == SHM_PATH)?;
            volume(&m.name)
                .filter(|(_, v)| is_memory_empty_dir(v))
                .map(|_| m.name.clone())
        });
        let new_name = ["dshm", "waf-dshm"]
            .into_iter()
            .find(|n| volume(n).is_none())
            .map(str::to_owned);
        let patch_volume = shared.clone().or_else(|| new_name.clone());
        let mut volume_added = false;
        for (i, c) in w.pod.containers.iter().enumerate() {
            let Some(why) = needs_shm(c, s) else {
                continue;
            };
            let who = format!("container \"{}\" {why}", c.name);
            let cpath = w.container_path(i);
            let mounts = c.volume_mounts.as_deref().unwrap_or(&[]);
            let Some((mi, mount)) = mounts
                .iter()
                .enumerate()
                .find(|(_, m)| m.mount_path.trim_end_matches('/') == SHM_PATH)
            else {
                let name = patch_volume.as_deref().unwrap_or("dshm");
                out.findings.push(Finding {
                    message: format!("{who} but mounts nothing at /dev/shm: NCCL gets 64 MiB"),
                    fix: format!(
                        "volumes: [{{name: {name}, emptyDir: {{medium: Memory}}}}], on container \
                     \"{}\": volumeMounts: [{{name: {name}, mountPath: /dev/shm}}]",
                        c.name
                    ),
                    path: format!("{cpath}/volumeMounts"),
                    fixable: patch_volume.is_some(),
                    object: None,
                    edit: None,
                });
                if mutate && let Some(name) = &patch_volume {
                    if shared.is_none() && !volume_added {
                        let mut empty_dir = json!({"medium": "Memory"});
                        if let Some(limit) = &s.default_size_limit {
                            empty_dir["sizeLimit"] = json!(limit);
                        }
                        let v = json!({"name": name, "emptyDir": empty_dir});
                        out.patch.push(match w.pod.volumes {
                            Some(_) => add(pointer(&w.pod_field("volumes"), &["-"]), v),
                            None => add(pointer(&w.pod_field("volumes"), &[]), json!([v])),
                        });
                        volume_added = true;
                    }
                    let m = json!({"name": name, "mountPath": SHM_PATH});
                    out.patch.push(match c.volume_mounts {
                        Some(_) => add(pointer(&cpath, &["volumeMounts", "-"]), m),
                        None => add(pointer(&cpath, &["volumeMounts"]), json!([m])),
                    });
                }
                continue;
            };
            let Some((vi, v)) = volume(&mount.name).filter(|(_, v)| is_memory_empty_dir(v)) else {
                out.findings.push(Finding {
                message: format!(
                    "{who} but volume \"{}\" at /dev/shm is not an emptyDir with medium: Memory",
                    mount.name
                ),
                fix: format!(
                    "make volume \"{}\" emptyDir: {{medium: Memory}} (tmpfs, counted in the \
                     memory limit)",
                    mount.name
                ),
                path: format!("{cpath}/volumeMounts/{mi}"),
                fixable: false,object: None, edit: None,
});
                continue;
            };
            let Some(limit) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) else {
                continue;
            };
            let limit_path = w.pod_field(&format!("volumes/{vi}/emptyDir/sizeLimit"));
            let Ok(size) = Quantity::parse(&limit.0) else {
                continue; // the apiserver refuses it
            };
            if s.min_size_limit.0.is_some_and(|min| size < min) {
                out.findings.push(Finding {
                message: format!(
                    "{who} but its /dev/shm emptyDir \"{}\" has sizeLimit {}, below the policy's {}",
                    v.name, limit.0, s.min_size_limit.1
                ),
                fix: format!(
                    "set sizeLimit: {} or more on volume \"{}\" (or leave it out: the memory \
                     limit caps it)",
                    s.min_size_limit.1, v.name
                ),
                path: limit_path.clone(),
                fixable: false,object: None, edit: None,
});
            }
            let memory_limit = c
                .resources
                .as_ref()
                .and_then(|r| r.limits.as_ref())
                .and_then(|l| l.get("memory"));
            if let Some(mem) = memory_limit
                && Quantity::parse(&mem.0).is_ok_and(|m| size > m)
            {
                out.findings.push(Finding {
                message: format!(
                    "{who} but its /dev/shm emptyDir \"{}\" has sizeLimit {} above the container's \
                     memory limit {}: filling it OOM-kills the container",
                    v.name, limit.0, mem.0
                ),
                fix: format!(
                    "lower sizeLimit on volume \"{}\" to at most {} (tmpfs pages count as the \
                     container's memory)",
                    v.name, mem.0
                ),
                path: limit_path,
                fixable: false,object: None, edit: None,
});
            }
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub gpus: GpuResources,
    /// None only for a policy that is refused anyway.
    pub min_gpus: Option<Quantity>,
    pub min_size_limit: (Option<Quantity>, String),
    pub default_size_limit: Option<String>,
}

/// Why a container needs shared memory, for the message.
fn needs_shm(c: &Container, s: &Settings) -> Option<String> {
    if let Some((n, how)) = tensor_parallel(c).filter(|(n, _)| *n > 1) {
        return Some(format!("runs tensor parallel {n} ({how})"));
    }
    let resources = c.resources.as_ref();
    let gpu = resources
        .and_then(|r| r.limits.as_ref())
        .into_iter()
        .chain(resources.and_then(|r| r.requests.as_ref()))
        .flatten()
        .find(|(name, q)| {
            s.gpus.matches(name)
                && Quantity::parse(&q.0).is_ok_and(|v| s.min_gpus.is_some_and(|m| v >= m))
        });
    gpu.map(|(name, q)| format!("requests {} {name}", q.0))
}

/// The tensor-parallel degree a container's command line or env sets, and
/// where: `(2, "--tensor-parallel-size")`.
pub fn tensor_parallel(c: &Container) -> Option<(i64, String)> {
    let env = literal_env(c);
    let words = words(c, &env);
    if let Some((v, flag)) = flag_value(&words, &TP_FLAGS)
        && let Ok(n) = v.parse::<i64>()
    {
        return Some((n, flag.to_owned()));
    }
    TP_ENV.iter().find_map(|name| {
        let n = env.get(*name)?.trim().parse::<i64>().ok()?;
        Some((n, format!("env {name}")))
    })
}

fn is_memory_empty_dir(v: &Volume) -> bool {
    v.empty_dir
        .as_ref()
        .is_some_and(|e| e.medium.as_deref() == Some("Memory"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::*;
    use serde_json::Value;

    fn settings() -> Settings {
        defaults::<SharedMemory>()
    }

    fn run(obj: &serde_json::Value) -> Outcome {
        run_rule::<SharedMemory>(obj, &settings())
    }

    fn two_gpus() -> Value {
        let mut d = gpu_deployment();
        container(&mut d)["resources"]["requests"]["nvidia.com/gpu"] = json!("2");
        container(&mut d)["resources"]["limits"]["nvidia.com/gpu"] = json!("2");
        d
    }

    #[test]
    fn a_single_gpu_server_needs_no_shared_memory() {
        assert!(run(&gpu_deployment()).is_clean());
    }

    #[test]
    fn two_gpus_without_dev_shm_are_reported_and_patched() {
        let d = two_gpus();
        let out = run(&d);
        assert_eq!(out.findings.len(), 1, "{:?}", out.findings);
        let f = &out.findings[0];
        assert_eq!(
            f.message,
            "container \"llm\" requests 2 nvidia.com/gpu but mounts nothing at /dev/shm: NCCL \
             gets 64 MiB"
        );
        assert_eq!(f.path, "/spec/template/spec/containers/0/volumeMounts");
        assert!(f.fix.contains("emptyDir: {medium: Memory}"), "{}", f.fix);
        assert!(f.fixable);
        let patched = apply(&d, &out.patch);
        assert!(run(&patched).is_clean(), "{:?}", run(&patched).findings);
        let spec = &patched["spec"]["template"]["spec"];
        assert_eq!(
            spec["volumes"],
            json!([{"name": "dshm", "emptyDir": {"medium": "Memory"}}])
        );
        assert_eq!(
            spec["containers"][0]["volumeMounts"],
            json!([{"name": "dshm", "mountPath": "/dev/shm"}])
        );
    }

    #[test]
    fn the_patch_appends_to_existing_volumes_and_avoids_a_taken_name() {
        let mut d = two_gpus();
        d["spec"]["template"]["spec"]["volumes"] =
            json!([{"name": "dshm", "persistentVolumeClaim": {"claimName": "x"}}]);
        container(&mut d)["volumeMounts"] = json!([{"name": "dshm", "mountPath": "/models"}]);
        let out = run(&d);
        let patched = apply(&d, &out.patch);
        assert!(run(&patched).is_clean());
        let spec = &patched["spec"]["template"]["spec"];
        assert_eq!(spec["volumes"][1]["name"], "waf-dshm");
        assert_eq!(spec["containers"][0]["volumeMounts"][1]["name"], "waf-dshm");
    }

    #[test]
    fn the_patch_writes_the_default_size_limit() {
        let d = two_gpus();
        let s = Settings {
            default_size_limit: Some("8Gi".into()),
            ..settings()
        };
        let out = SharedMemory::check(&on(&workload(&d)), &s, true);
        let patched = apply(&d, &out.patch);
        assert_eq!(
            patched["spec"]["template"]["spec"]["volumes"][0]["emptyDir"]["sizeLimit"],
            "8Gi"
        );
        assert!(SharedMemory::check(&on(&workload(&patched)), &s, true).is_clean());
    }

    #[test]
    fn no_patch_without_mutate() {
        let out = SharedMemory::check(&on(&workload(&two_gpus())), &settings(), false);
        assert_eq!(out.findings.len(), 1);
        assert!(out.patch.is_empty());
    }

    #[test]
    fn tensor_parallel_flags_of_each_server_trigger_it() {
        for args in [
            json!(["--model", "m", "--tensor-parallel-size", "2"]),
            json!(["--model", "m", "--tensor-parallel-size=4"]),
            json!(["serve", "m", "-tp", "2"]),
            json!(["--model-id", "m", "--num-shard", "2"]),
            json!(["--model-path", "m", "--tp-size", "2"]),
            json!([
                "-c",
                "python3 -m sglang.launch_server --model-path m --tp 2"
            ]),
            json!(["--tensor-parallel-size", "$(TP)"]),
        ] {
            let mut d = gpu_deployment();
            container(&mut d)["args"] = args.clone();
            container(&mut d)["env"] = json!([{"name": "TP", "value": "2"}]);
            let out = run(&d);
            assert_eq!(out.findings.len(), 1, "{args}");
            assert!(
                out.findings[0].message.contains("runs tensor parallel"),
                "{args}: {}",
                out.findings[0].message
            );
        }
    }

    #[test]
    fn tensor_parallel_one_or_unresolved_does_not() {
        for args in [
            json!(["--tensor-parallel-size", "1"]),
            json!(["--tensor-parallel-size", "$(UNSET)"]),
            json!(["--max-num-batched-tokens", "8192"]),
        ] {
            let mut d = gpu_deployment();
            container(&mut d)["args"] = args.clone();
            assert!(run(&d).is_clean(), "{args}");
        }
    }

    #[test]
    fn tgi_num_shard_env_triggers_it() {
        let mut d = gpu_deployment();
        container(&mut d)["env"] = json!([{"name": "NUM_SHARD", "value": "2"}]);
        let out = run(&d);
        assert!(
            out.findings[0]
                .message
                .contains("runs tensor parallel 2 (env NUM_SHARD)")
        );
    }

    #[test]
    fn a_memory_empty_dir_without_size_limit_passes() {
        let mut d = two_gpus();
        d["spec"]["template"]["spec"]["volumes"] =
            json!([{"name": "shm", "emptyDir": {"medium": "Memory"}}]);
        container(&mut d)["volumeMounts"] = json!([{"name": "shm", "mountPath": "/dev/shm"}]);
        assert!(run(&d).is_clean());
    }

    #[test]
    fn a_disk_volume_at_dev_shm_is_reported_not_patched() {
        let mut d = two_gpus();
        d["spec"]["template"]["spec"]["volumes"] = json!([{"name": "shm", "emptyDir": {}}]);
        container(&mut d)["volumeMounts"] = json!([{"name": "shm", "mountPath": "/dev/shm"}]);
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert!(
            out.findings[0]
                .message
                .contains("is not an emptyDir with medium: Memory")
        );
        assert_eq!(
            out.findings[0].path,
            "/spec/template/spec/containers/0/volumeMounts/0"
        );
        assert!(out.patch.is_empty());
    }

    #[test]
    fn size_limits_below_the_floor_or_above_the_memory_limit_are_reported() {
        for (limit, want) in [
            ("64Mi", "below the policy's 1Gi"),
            ("32Gi", "above the container's memory limit 24Gi"),
        ] {
            let mut d = two_gpus();
            d["spec"]["template"]["spec"]["volumes"] =
                json!([{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": limit}}]);
            container(&mut d)["volumeMounts"] = json!([{"name": "shm", "mountPath": "/dev/shm"}]);
            let out = run(&d);
            assert_eq!(out.findings.len(), 1, "{limit}");
            assert!(
                out.findings[0].message.contains(want),
                "{}",
                out.findings[0].message
            );
            assert_eq!(
                out.findings[0].path,
                "/spec/template/spec/volumes/0/emptyDir/sizeLimit"
            );
        }
    }

    #[test]
    fn host_ipc_provides_shared_memory() {
        let mut d = two_gpus();
        d["spec"]["template"]["spec"]["hostIPC"] = json!(true);
        assert!(run(&d).is_clean());
    }

    #[test]
    fn a_sidecar_shares_the_servers_dev_shm_volume() {
        let mut d = two_gpus();
        d["spec"]["template"]["spec"]["volumes"] =
            json!([{"name": "shm", "emptyDir": {"medium": "Memory"}}]);
        container(&mut d)["volumeMounts"] = json!([{"name": "shm", "mountPath": "/dev/shm"}]);
        let mut worker = container(&mut d).clone();
        worker["name"] = json!("worker");
        worker.as_object_mut().unwrap().remove("volumeMounts");
        d["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(worker);
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        let patched = apply(&d, &out.patch);
        assert!(run(&patched).is_clean());
        let spec = &patched["spec"]["template"]["spec"];
        assert_eq!(spec["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(spec["containers"][1]["volumeMounts"][0]["name"], "shm");
    }

    #[test]
    fn refuses_a_default_size_below_the_floor() {
        let mut problems = vec![];
        SharedMemory {
            default_size_limit: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                "512Mi".into(),
            )),
            ..Default::default()
        }
        .compile(
            &PolicyFacts {
                gpus: &GpuResources::default(),
                replica_floor: 2,
                prometheus_server: "http://prometheus-operated.monitoring.svc:9090",
                price_region: "",
            },
            "spec.rules.sharedMemory",
            &mut problems,
        );
        assert_eq!(
            problems,
            ["spec.rules.sharedMemory.defaultSizeLimit: 512Mi is below minSizeLimit 1Gi"]
        );
    }
}
