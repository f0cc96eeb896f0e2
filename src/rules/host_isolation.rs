//! `host-isolation` (Security): the pod template meets Pod Security
//! Standards "Baseline" — no privileged container, no host network, PID or
//! IPC namespace, no hostPath outside the allow-list (and those read-only),
//! no hostPort outside the allow-list, no capability beyond Baseline's set
//! and the allow-list, no unconfined seccomp or AppArmor, no unmasked
//! /proc, only safe sysctls — and a container that requests no GPU does
//! not set `NVIDIA_VISIBLE_DEVICES`, through which the NVIDIA container
//! runtime can hand it GPUs the scheduler gave to other pods.
//!
//! Why judge the template when Pod Security Admission exists: PSA enforces
//! on Pods only and merely warns on Deployments, so a Deployment is admitted
//! and its ReplicaSet then silently fails to create pods. Here the failure
//! comes at `kubectl apply`, offline in CI, with this project's exceptions.
//! The fixes know GPU workloads: shared memory through a Memory emptyDir
//! instead of hostIPC, the RDMA device plugin instead of hostNetwork,
//! `IPC_LOCK` on the allow-list for InfiniBand. Nothing is patched:
//! removing host access changes what the workload does.

use k8s_openapi::api::core::v1::{Capabilities, ContainerPort, EnvVar, SecurityContext};

use super::gpu_placement::GpuResources;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Finding, Outcome, PolicyFacts, Rule, Subject, yes};
use crate::quantity::Quantity;
use crate::release::Release;
use crate::rule_list::{Action, Pillar, RuleId};
use crate::workload::Workload;

/// Capabilities Pod Security Baseline lets a container add.
const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Sysctls Pod Security Baseline accepts (the "safe" set).
const SAFE_SYSCTLS: [&str; 10] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

pub const NVIDIA_VISIBLE_DEVICES: &str = "NVIDIA_VISIBLE_DEVICES";

/// `host-isolation` (Security): the pod template meets Pod Security
/// Baseline (no privileged containers, host namespaces, hostPath or
/// hostPort outside the allow-lists, added capabilities, unconfined
/// seccomp or AppArmor, unsafe sysctls), and a container that requests no
/// GPU does not reach the node's GPUs through `NVIDIA_VISIBLE_DEVICES`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostIsolation {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// hostPath prefixes accepted (`/mnt/models`), when every mount of the
    /// volume is `readOnly`.
    #[serde(default)]
    pub allowed_host_paths: Vec<String>,
    /// hostPorts accepted.
    #[serde(default)]
    pub allowed_host_ports: Vec<i32>,
    /// Capabilities accepted beyond Pod Security Baseline's (`IPC_LOCK`
    /// for RDMA over InfiniBand).
    #[serde(default)]
    pub allowed_capabilities: Vec<String>,
    /// Report a container that requests no GPU but sets `NVIDIA_VISIBLE_DEVICES`.
    #[serde(default = "yes")]
    pub flag_nvidia_visible_devices: bool,
}

impl Default for HostIsolation {
    fn default() -> Self {
        HostIsolation {
            action: None,
            allowed_host_paths: Vec::new(),
            allowed_host_ports: Vec::new(),
            allowed_capabilities: Vec::new(),
            flag_nvidia_visible_devices: yes(),
        }
    }
}

impl Rule for HostIsolation {
    const ID: RuleId = RuleId::HostIsolation;
    const PILLAR: Pillar = Pillar::Security;
    const SUMMARY: &'static str =
        "The pod template meets Pod Security Baseline and reaches no GPU it did not request";
    const SINCE: Release = Release::V0_2;

    type Settings = Settings;

    fn compile(&self, policy: &PolicyFacts, at: &str, problems: &mut Vec<String>) -> Settings {
        let spec = self;
        let gpus = policy.gpus.clone();
        for (i, p) in spec.allowed_host_paths.iter().enumerate() {
            if !p.starts_with('/') || p == "/" {
                problems.push(format!(
                    "{at}.allowedHostPaths[{i}]: an absolute path below / (\"/mnt/models\")"
                ));
            }
        }
        for (i, p) in spec.allowed_host_ports.iter().enumerate() {
            if !(1..=65535).contains(p) {
                problems.push(format!(
                    "{at}.allowedHostPorts[{i}]: a port from 1 to 65535"
                ));
            }
        }
        for (i, c) in spec.allowed_capabilities.iter().enumerate() {
            if c.trim().is_empty() || c == "ALL" {
                problems.push(format!(
                    "{at}.allowedCapabilities[{i}]: name one capability (IPC_LOCK), not ALL"
                ));
            }
        }
        crate::problems::duplicates(
            spec.allowed_capabilities.iter().map(String::as_str),
            &format!("{at}.allowedCapabilities"),
            problems,
        );
        Settings {
            allowed_host_paths: spec
                .allowed_host_paths
                .iter()
                .map(|p| p.trim_end_matches('/').to_owned())
                .collect(),
            allowed_host_ports: spec.allowed_host_ports.clone(),
            allowed_capabilities: spec
                .allowed_capabilities
                .iter()
                .map(|c| capability(c))
                .collect(),
            flag_nvidia_visible_devices: spec.flag_nvidia_visible_devices,
            gpus,
        }
    }

    fn check(on: &Subject, s: &Settings, _mutate: bool) -> Outcome {
        let w = on.workload;
        let mut out = Outcome::default();
        check_pod(w, s, &mut out);
        for c in views(w, s) {
            check_container(&c, s, &mut out);
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub allowed_host_paths: Vec<String>,
    pub allowed_host_ports: Vec<i32>,
    pub allowed_capabilities: Vec<String>,
    pub flag_nvidia_visible_devices: bool,
    /// Which extended resources are GPUs (from the policy's gpuPlacement).
    pub gpus: GpuResources,
}

impl Settings {
    fn path_allowed(&self, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        self.allowed_host_paths.iter().any(|p| {
            path == p
                || path
                    .strip_prefix(p.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        })
    }
}

/// `CAP_SYS_ADMIN` and `sys_admin` are `SYS_ADMIN`.
fn capability(c: &str) -> String {
    let upper = c.trim().to_uppercase();
    upper.strip_prefix("CAP_").unwrap_or(&upper).to_owned()
}

/// One container of any role, with what this rule reads of it.
struct View<'a> {
    who: String,
    path: String,
    security: Option<&'a SecurityContext>,
    ports: &'a [ContainerPort],
    env: &'a [EnvVar],
    requests_gpu: bool,
}

fn views<'a>(w: &'a Workload, s: &Settings) -> Vec<View<'a>> {
    let base = w.pod_path;
    let gpu = |r: Option<&k8s_openapi::api::core::v1::ResourceRequirements>| {
        r.is_some_and(|r| {
            r.requests
                .iter()
                .chain(r.limits.iter())
                .flatten()
                .any(|(name, q)| {
                    s.gpus.matches(name) && Quantity::parse(&q.0).map_or(true, |v| !v.is_zero())
                })
        })
    };
    let mut out = Vec::new();
    for (i, c) in w.pod.init_containers.iter().flatten().enumerate() {
        out.push(View {
            who: format!("init container \"{}\"", c.name),
            path: format!("{base}/initContainers/{i}"),
            security: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
            env: c.env.as_deref().unwrap_or_default(),
            requests_gpu: gpu(c.resources.as_ref()),
        });
    }
    for (i, c) in w.pod.containers.iter().enumerate() {
        out.push(View {
            who: format!("container \"{}\"", c.name),
            path: w.container_path(i),
            security: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
            env: c.env.as_deref().unwrap_or_default(),
            requests_gpu: gpu(c.resources.as_ref()),
        });
    }
    for (i, c) in w.pod.ephemeral_containers.iter().flatten().enumerate() {
        out.push(View {
            who: format!("ephemeral container \"{}\"", c.name),
            path: format!("{base}/ephemeralContainers/{i}"),
            security: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
            env: c.env.as_deref().unwrap_or_default(),
            requests_gpu: false,
        });
    }
    out
}

fn check_pod(w: &Workload, s: &Settings, out: &mut Outcome) {
    let pod = &w.pod;
    let mut push = |message: String, fix: String, path: String| {
        out.findings.push(Finding {
            message,
            fix,
            path,
            fixable: false,
            object: None,
            edit: None,
        })
    };
    if pod.host_network == Some(true) {
        push(
            "the pod sets hostNetwork: true: it shares the node's network and ports with every \
             pod there"
                .into(),
            "remove hostNetwork; for RDMA/InfiniBand use the RDMA device plugin or an SR-IOV \
             network, or ask for an exception"
                .into(),
            w.pod_field("hostNetwork"),
        );
    }
    if pod.host_pid == Some(true) {
        push(
            "the pod sets hostPID: true: it sees and can signal every process on the node".into(),
            "remove hostPID (GPU monitoring such as DCGM runs as a platform DaemonSet, with an \
             exception)"
                .into(),
            w.pod_field("hostPID"),
        );
    }
    if pod.host_ipc == Some(true) {
        push(
            "the pod sets hostIPC: true: it shares the node's shared memory with every pod there"
                .into(),
            "remove hostIPC; for NCCL/PyTorch shared memory mount volumes: [{name: dshm, \
             emptyDir: {medium: Memory}}] at mountPath: /dev/shm"
                .into(),
            w.pod_field("hostIPC"),
        );
    }
    for (i, v) in pod.volumes.iter().flatten().enumerate() {
        let Some(hp) = &v.host_path else { continue };
        let path = pointer_of(w, &["volumes", &i.to_string(), "hostPath"]);
        if !s.path_allowed(&hp.path) {
            push(
                format!(
                    "volume \"{}\" mounts hostPath {} from the node: the pod can read or change \
                     the node's files",
                    v.name, hp.path
                ),
                "use a PersistentVolumeClaim (for model caches, a local-NVMe StorageClass as \
                 KAITO does), or list the path in hostIsolation.allowedHostPaths and mount it \
                 readOnly: true"
                    .into(),
                path,
            );
        } else if let Some(who) = writable_mount(w, &v.name) {
            push(
                format!(
                    "{who} mounts hostPath volume \"{}\" ({}) read-write; the allow-list accepts \
                     it read-only",
                    v.name, hp.path
                ),
                format!(
                    "set readOnly: true on the volumeMount of \"{}\" in {who}",
                    v.name
                ),
                path,
            );
        }
    }
    let sc = pod.security_context.as_ref();
    for (i, sysctl) in sc
        .and_then(|c| c.sysctls.as_ref())
        .iter()
        .copied()
        .flatten()
        .enumerate()
    {
        if !SAFE_SYSCTLS.contains(&sysctl.name.as_str()) {
            push(
                format!(
                    "the pod sets sysctl {}, which Pod Security Baseline does not allow: it \
                     changes the node's kernel for every pod",
                    sysctl.name
                ),
                format!(
                    "remove {} from securityContext.sysctls (tune the node pool instead)",
                    sysctl.name
                ),
                pointer_of(w, &["securityContext", "sysctls", &i.to_string()]),
            );
        }
    }
    if sc
        .and_then(|c| c.seccomp_profile.as_ref())
        .is_some_and(|p| p.type_ == "Unconfined")
    {
        push(
            "the pod sets seccompProfile Unconfined: every system call is open to its containers"
                .into(),
            "set securityContext.seccompProfile: {type: RuntimeDefault}".into(),
            pointer_of(w, &["securityContext", "seccompProfile"]),
        );
    }
    if sc
        .and_then(|c| c.app_armor_profile.as_ref())
        .is_some_and(|p| p.type_ == "Unconfined")
    {
        push(
            "the pod sets appArmorProfile Unconfined".into(),
            "set securityContext.appArmorProfile: {type: RuntimeDefault}".into(),
            pointer_of(w, &["securityContext", "appArmorProfile"]),
        );
    }
    if sc
        .and_then(|c| c.windows_options.as_ref())
        .and_then(|o| o.host_process)
        == Some(true)
    {
        push(
            "the pod runs as a Windows HostProcess: it has the node's full access".into(),
            "remove securityContext.windowsOptions.hostProcess".into(),
            pointer_of(w, &["securityContext", "windowsOptions", "hostProcess"]),
        );
    }
}

fn pointer_of(w: &Workload, tokens: &[&str]) -> String {
    super::pointer(w.pod_path, tokens).as_str().to_owned()
}

/// The first container that mounts the volume without `readOnly: true`.
fn writable_mount(w: &Workload, volume: &str) -> Option<String> {
    let init = w
        .pod
        .init_containers
        .iter()
        .flatten()
        .map(|c| (c, "init container"));
    let app = w.pod.containers.iter().map(|c| (c, "container"));
    init.chain(app).find_map(|(c, role)| {
        c.volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == volume && m.read_only != Some(true))
            .then(|| format!("{role} \"{}\"", c.name))
    })
}

fn check_container(c: &View<'_>, s: &Settings, out: &mut Outcome) {
    let who = &c.who;
    let mut push = |message: String, fix: String, path: String| {
        out.findings.push(Finding {
            message,
            fix,
            path,
            fixable: false,
            object: None,
            edit: None,
        })
    };
    if let Some(sc) = c.security {
        if sc.privileged == Some(true) {
            push(
                format!("{who} is privileged: it has every device and capability of the node"),
                "remove securityContext.privileged: the NVIDIA device plugin gives a container \
                 its GPUs without it (profilers and DCGM: an exception)"
                    .into(),
                format!("{}/securityContext/privileged", c.path),
            );
        }
        let added = extra_capabilities(sc.capabilities.as_ref(), s);
        if !added.is_empty() {
            let ipc_lock = added.iter().any(|a| a == "IPC_LOCK");
            push(
                format!(
                    "{who} adds capabilit{} {} beyond Pod Security Baseline",
                    if added.len() == 1 { "y" } else { "ies" },
                    added.join(", ")
                ),
                format!(
                    "remove {} from securityContext.capabilities.add{}",
                    added.join(", "),
                    if ipc_lock {
                        " (IPC_LOCK for RDMA/NCCL over InfiniBand: list it in \
                         hostIsolation.allowedCapabilities)"
                    } else {
                        ""
                    }
                ),
                format!("{}/securityContext/capabilities/add", c.path),
            );
        }
        if sc
            .seccomp_profile
            .as_ref()
            .is_some_and(|p| p.type_ == "Unconfined")
        {
            push(
                format!("{who} sets seccompProfile Unconfined: every system call is open to it"),
                format!("set securityContext.seccompProfile: {{type: RuntimeDefault}} on {who}"),
                format!("{}/securityContext/seccompProfile", c.path),
            );
        }
        if sc
            .app_armor_profile
            .as_ref()
            .is_some_and(|p| p.type_ == "Unconfined")
        {
            push(
                format!("{who} sets appArmorProfile Unconfined"),
                format!("set securityContext.appArmorProfile: {{type: RuntimeDefault}} on {who}"),
                format!("{}/securityContext/appArmorProfile", c.path),
            );
        }
        if sc.proc_mount.as_deref() == Some("Unmasked") {
            push(
                format!("{who} sets procMount Unmasked: it sees the node's /proc unmasked"),
                format!("remove securityContext.procMount from {who}"),
                format!("{}/securityContext/procMount", c.path),
            );
        }
        if sc.windows_options.as_ref().and_then(|o| o.host_process) == Some(true) {
            push(
                format!("{who} runs as a Windows HostProcess: it has the node's full access"),
                format!("remove securityContext.windowsOptions.hostProcess from {who}"),
                format!("{}/securityContext/windowsOptions/hostProcess", c.path),
            );
        }
    }
    for (i, p) in c.ports.iter().enumerate() {
        let Some(host_port) = p.host_port.filter(|h| *h != 0) else {
            continue;
        };
        if !s.allowed_host_ports.contains(&host_port) {
            push(
                format!(
                    "{who} binds hostPort {host_port} on the node: one such pod per node, \
                     reachable from outside the cluster network"
                ),
                format!("remove hostPort from ports[{i}] of {who} and reach it through a Service"),
                format!("{}/ports/{i}/hostPort", c.path),
            );
        }
    }
    if s.flag_nvidia_visible_devices && !c.requests_gpu {
        for (i, var) in c.env.iter().enumerate() {
            if var.name != NVIDIA_VISIBLE_DEVICES {
                continue;
            }
            let Some(value) = var.value.as_deref() else {
                continue;
            };
            if matches!(value.trim().to_lowercase().as_str(), "" | "void" | "none") {
                continue;
            }
            push(
                format!(
                    "{who} requests no GPU but sets {NVIDIA_VISIBLE_DEVICES}={}: it can reach GPUs \
                     the scheduler gave to other pods",
                    short(value)
                ),
                format!(
                    "remove {NVIDIA_VISIBLE_DEVICES} from {who} and request the GPU it needs \
                     (resources.limits: {{nvidia.com/gpu: 1}}), or set it to void"
                ),
                format!("{}/env/{i}", c.path),
            );
        }
    }
}

/// A device list is short; anything longer is cut so a message stays readable.
fn short(value: &str) -> String {
    let v: String = value.chars().take(40).collect();
    if v.len() < value.len() {
        format!("{v}…")
    } else {
        v
    }
}

fn extra_capabilities(caps: Option<&Capabilities>, s: &Settings) -> Vec<String> {
    caps.and_then(|c| c.add.as_ref())
        .into_iter()
        .flatten()
        .map(|c| capability(c))
        .filter(|c| {
            !BASELINE_CAPABILITIES.contains(&c.as_str()) && !s.allowed_capabilities.contains(c)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::*;
    use serde_json::{Value, json};

    fn settings() -> Settings {
        defaults::<HostIsolation>()
    }

    fn run(obj: &serde_json::Value) -> Outcome {
        run_rule::<HostIsolation>(obj, &settings())
    }

    fn pod_spec(d: &mut Value) -> &mut Value {
        &mut d["spec"]["template"]["spec"]
    }

    #[test]
    fn accepts_the_compliant_model_server() {
        assert!(run(&gpu_deployment()).is_clean());
        assert!(run(&cpu_deployment()).is_clean());
    }

    #[test]
    fn host_ipc_points_to_a_memory_empty_dir() {
        let mut d = gpu_deployment();
        pod_spec(&mut d)["hostIPC"] = json!(true);
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].path, "/spec/template/spec/hostIPC");
        assert!(out.findings[0].fix.contains("emptyDir: {medium: Memory}"));
        assert!(out.findings[0].fix.contains("/dev/shm"));
    }

    #[test]
    fn host_network_and_pid_are_reported_with_their_own_fix() {
        let mut d = gpu_deployment();
        pod_spec(&mut d)["hostNetwork"] = json!(true);
        pod_spec(&mut d)["hostPID"] = json!(true);
        let out = run(&d);
        assert_eq!(out.findings.len(), 2);
        assert!(out.findings[0].fix.contains("RDMA device plugin"));
        assert!(out.findings[1].message.contains("hostPID"));
    }

    #[test]
    fn privileged_containers_are_told_the_device_plugin_suffices() {
        let mut d = gpu_deployment();
        pod_spec(&mut d)["containers"][0]["securityContext"] = json!({"privileged": true});
        let out = run(&d);
        assert_eq!(
            out.findings[0].message,
            "container \"llm\" is privileged: it has every device and capability of the node"
        );
        assert_eq!(
            out.findings[0].path,
            "/spec/template/spec/containers/0/securityContext/privileged"
        );
    }

    #[test]
    fn host_paths_pass_only_under_an_allowed_prefix_and_read_only() {
        let mut d = gpu_deployment();
        pod_spec(&mut d)["volumes"] =
            json!([{"name": "cache", "hostPath": {"path": "/mnt/models/llama"}}]);
        pod_spec(&mut d)["containers"][0]["volumeMounts"] =
            json!([{"name": "cache", "mountPath": "/models"}]);
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert!(
            out.findings[0]
                .message
                .starts_with("volume \"cache\" mounts hostPath /mnt/models/llama")
        );
        assert_eq!(
            out.findings[0].path,
            "/spec/template/spec/volumes/0/hostPath"
        );

        let mut s = settings();
        s.allowed_host_paths = vec!["/mnt/models".into()];
        let out = HostIsolation::check(&on(&workload(&d)), &s, false);
        assert_eq!(out.findings.len(), 1);
        assert!(
            out.findings[0].message.contains("read-write"),
            "{}",
            out.findings[0].message
        );
        pod_spec(&mut d)["containers"][0]["volumeMounts"][0]["readOnly"] = json!(true);
        assert!(HostIsolation::check(&on(&workload(&d)), &s, false).is_clean());
        // A prefix is a path prefix, not a string prefix.
        pod_spec(&mut d)["volumes"][0]["hostPath"]["path"] = json!("/mnt/models-evil");
        assert_eq!(
            HostIsolation::check(&on(&workload(&d)), &s, false)
                .findings
                .len(),
            1
        );
    }

    #[test]
    fn capabilities_beyond_baseline_and_the_allow_list() {
        let mut d = gpu_deployment();
        pod_spec(&mut d)["containers"][0]["securityContext"] =
            json!({"capabilities": {"add": ["NET_BIND_SERVICE", "CAP_IPC_LOCK", "SYS_ADMIN"]}});
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert_eq!(
            out.findings[0].message,
            "container \"llm\" adds capabilities IPC_LOCK, SYS_ADMIN beyond Pod Security Baseline"
        );
        assert!(
            out.findings[0]
                .fix
                .contains("hostIsolation.allowedCapabilities")
        );
        let mut s = settings();
        s.allowed_capabilities = vec!["IPC_LOCK".into()];
        let out = HostIsolation::check(&on(&workload(&d)), &s, false);
        assert!(out.findings[0].message.contains("capability SYS_ADMIN "));
    }

    #[test]
    fn host_ports_seccomp_apparmor_proc_mount_and_sysctls() {
        let mut d = gpu_deployment();
        pod_spec(&mut d)["containers"][0]["ports"] =
            json!([{"containerPort": 8000, "hostPort": 8000}]);
        pod_spec(&mut d)["containers"][0]["securityContext"] = json!({
            "seccompProfile": {"type": "Unconfined"}, "procMount": "Unmasked",
            "appArmorProfile": {"type": "Unconfined"}});
        pod_spec(&mut d)["securityContext"] = json!({"sysctls": [
            {"name": "net.ipv4.tcp_keepalive_time", "value": "60"},
            {"name": "kernel.shmmax", "value": "68719476736"}]});
        let out = run(&d);
        let paths: Vec<&str> = out.findings.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/spec/template/spec/securityContext/sysctls/1",
                "/spec/template/spec/containers/0/securityContext/seccompProfile",
                "/spec/template/spec/containers/0/securityContext/appArmorProfile",
                "/spec/template/spec/containers/0/securityContext/procMount",
                "/spec/template/spec/containers/0/ports/0/hostPort",
            ]
        );
        let mut s = settings();
        s.allowed_host_ports = vec![8000];
        assert_eq!(
            HostIsolation::check(&on(&workload(&d)), &s, false)
                .findings
                .len(),
            4
        );
    }

    #[test]
    fn nvidia_visible_devices_without_a_gpu_request() {
        let mut d = cpu_deployment();
        pod_spec(&mut d)["containers"][0]["env"] =
            json!([{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]);
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert_eq!(
            out.findings[0].message,
            "container \"server\" requests no GPU but sets NVIDIA_VISIBLE_DEVICES=all: it can \
             reach GPUs the scheduler gave to other pods"
        );
        assert_eq!(
            out.findings[0].path,
            "/spec/template/spec/containers/0/env/0"
        );
        for harmless in ["void", "none", ""] {
            pod_spec(&mut d)["containers"][0]["env"][0]["value"] = json!(harmless);
            assert!(run(&d).is_clean(), "{harmless}");
        }
        // A GPU container may set it (gatekeeper's nounsupportedgpu even requires it).
        let mut g = gpu_deployment();
        pod_spec(&mut g)["containers"][0]["env"] =
            json!([{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]);
        assert!(run(&g).is_clean());
        let mut s = settings();
        s.flag_nvidia_visible_devices = false;
        pod_spec(&mut d)["containers"][0]["env"][0]["value"] = json!("0,1");
        assert!(HostIsolation::check(&on(&workload(&d)), &s, false).is_clean());
    }

    #[test]
    fn bare_pods_are_judged_at_their_own_spec() {
        let mut p = gpu_pod();
        p["spec"]["hostIPC"] = json!(true);
        assert_eq!(run(&p).findings[0].path, "/spec/hostIPC");
    }

    #[test]
    fn refuses_allow_lists_that_would_allow_everything() {
        let mut problems = vec![];
        let spec = HostIsolation {
            allowed_host_paths: vec!["/".into(), "models".into()],
            allowed_host_ports: vec![0],
            allowed_capabilities: vec!["ALL".into()],
            ..HostIsolation::default()
        };
        spec.compile(
            &PolicyFacts {
                gpus: &GpuResources::builtin(),
                replica_floor: 2,
                prometheus_server: "http://prometheus-operated.monitoring.svc:9090",
                price_region: "",
            },
            "hostIsolation",
            &mut problems,
        );
        assert_eq!(problems.len(), 4, "{problems:?}");
    }
}
