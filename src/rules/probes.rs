//! `probes` (Reliability): every serving container reports readiness (so a
//! replica that is loading or broken leaves the Service), has a liveness
//! probe unless the policy says otherwise (so a hung engine is restarted),
//! and no liveness probe can restart it before `startupGraceSeconds`: model
//! servers take minutes to load their weights, and a liveness kill during
//! that time restarts the load forever. WAF: "self-healing … report
//! application health"; AKS: "readiness, liveness and startup probes".
//!
//! App containers are judged, and native sidecars (init containers with
//! `restartPolicy: Always`) where the policy asks; ordinary init containers
//! cannot have probes. Jobs
//! and CronJobs serve nothing and are not judged. Only presence and timing
//! are judged: ports written as `$(VAR)` or names are never resolved.
//!
//! The patch (opt-in) adds a startupProbe that copies the liveness
//! probe's handler (the same endpoint, so nothing is guessed), or lengthens
//! an existing startupProbe. Missing probes are never patched: the
//! endpoint would have to be guessed.

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Edit, Finding, Outcome, PolicyFacts, Rule, Subject, add, pointer, replace, secret_env, yes,
};
use crate::release::Release;
use crate::rule_list::{Action, Pillar, RuleId};
use crate::workload::WorkloadKind;

/// Kubernetes' own defaults for an omitted field.
const DEFAULT_PERIOD: i32 = 10;
const DEFAULT_FAILURE_THRESHOLD: i32 = 3;

/// The startupProbe the patch writes checks every this many seconds.
const PATCH_PERIOD: i32 = 10;

/// `probes` (Reliability): every serving container reports readiness, a
/// hung one is restarted (liveness), and no liveness probe restarts a
/// model server that is still loading its weights.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probes {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Add a startupProbe that copies the liveness probe's handler where
    /// liveness could fire too early, through the mutating webhook.
    #[serde(default)]
    pub mutate: bool,
    /// Require a livenessProbe on every serving container.
    #[serde(default = "yes")]
    pub require_liveness: bool,
    /// Seconds a container may take to start (load its model) before a
    /// liveness probe may restart it: counted from the startupProbe
    /// (`initialDelaySeconds + failureThreshold × periodSeconds`), or from
    /// the liveness probe's own delay when there is no startupProbe.
    #[serde(default = "default_startup_grace")]
    #[schemars(range(min = 0))]
    pub startup_grace_seconds: i32,
    /// The fewest seconds of failed liveness checks
    /// (`failureThreshold × periodSeconds`) before a restart, so a busy
    /// engine that answers slowly is not reloaded. 0: not checked.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub min_liveness_failure_seconds: i32,
    /// Readiness probe handlers accepted. Leave out `tcpSocket` to require
    /// a probe that asks the server whether the model is ready.
    #[serde(default = "default_probe_handlers")]
    #[schemars(length(min = 1))]
    pub readiness_handlers: Vec<ProbeHandler>,
    /// Containers not judged: a container name (`istio-proxy`), or an image
    /// prefix ending in `*` (`docker.io/istio/proxyv2*`).
    #[serde(default)]
    pub exempt_containers: Vec<String>,
    /// Also judge native sidecars (init containers with `restartPolicy:
    /// Always`), which serve the model server rather than requests.
    #[serde(default)]
    pub include_sidecars: bool,
}

impl Default for Probes {
    fn default() -> Self {
        Probes {
            action: None,
            mutate: false,
            require_liveness: yes(),
            startup_grace_seconds: default_startup_grace(),
            min_liveness_failure_seconds: 0,
            readiness_handlers: default_probe_handlers(),
            exempt_containers: Vec::new(),
            include_sidecars: false,
        }
    }
}

/// How a probe asks the container.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ProbeHandler {
    HttpGet,
    Grpc,
    Exec,
    TcpSocket,
}

impl ProbeHandler {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeHandler::HttpGet => "httpGet",
            ProbeHandler::Grpc => "grpc",
            ProbeHandler::Exec => "exec",
            ProbeHandler::TcpSocket => "tcpSocket",
        }
    }
}

fn default_startup_grace() -> i32 {
    600
}

fn default_probe_handlers() -> Vec<ProbeHandler> {
    vec![
        ProbeHandler::HttpGet,
        ProbeHandler::Grpc,
        ProbeHandler::Exec,
        ProbeHandler::TcpSocket,
    ]
}

impl Rule for Probes {
    const ID: RuleId = RuleId::Probes;
    const PILLAR: Pillar = Pillar::Reliability;
    const SUMMARY: &'static str = "Serving containers report readiness, hung ones restart, and no liveness probe kills a model still loading";
    const SINCE: Release = Release::V0_2;

    type Settings = Settings;

    fn mutate(&self) -> bool {
        self.mutate
    }

    fn compile(&self, _policy: &PolicyFacts, at: &str, problems: &mut Vec<String>) -> Settings {
        let spec = self;
        if spec.startup_grace_seconds < 0 {
            problems.push(format!("{at}.startupGraceSeconds: must not be negative"));
        }
        if spec.min_liveness_failure_seconds < 0 {
            problems.push(format!(
                "{at}.minLivenessFailureSeconds: must not be negative"
            ));
        }
        if spec.readiness_handlers.is_empty() {
            problems.push(format!("{at}.readinessHandlers: list at least one handler"));
        }
        crate::problems::duplicates(
            spec.readiness_handlers.iter().map(|h| h.as_str()),
            &format!("{at}.readinessHandlers"),
            problems,
        );
        for (i, e) in spec.exempt_containers.iter().enumerate() {
            if e.trim().is_empty() || e == "*" {
                problems.push(format!(
                    "{at}.exemptContainers[{i}]: name a container or an image prefix"
                ));
            }
        }
        Settings {
            require_liveness: spec.require_liveness,
            startup_grace_seconds: spec.startup_grace_seconds,
            min_liveness_failure_seconds: spec.min_liveness_failure_seconds,
            readiness_handlers: spec.readiness_handlers.clone(),
            exempt_containers: spec.exempt_containers.clone(),
            include_sidecars: spec.include_sidecars,
        }
    }

    fn check(on: &Subject, s: &Settings, mutate: bool) -> Outcome {
        let w = on.workload;
        let mut out = Outcome::default();
        if matches!(w.kind, WorkloadKind::Job | WorkloadKind::CronJob) {
            return out;
        }
        let sidecars = w
            .pod
            .init_containers
            .iter()
            .flatten()
            .enumerate()
            .filter(|(_, c)| s.include_sidecars && c.restart_policy.as_deref() == Some("Always"))
            .map(|(i, c)| (c, format!("{}/initContainers/{i}", w.pod_path), "sidecar"));
        let app = w
            .pod
            .containers
            .iter()
            .enumerate()
            .map(|(i, c)| (c, w.container_path(i), "container"));
        for (c, path, role) in app.chain(sidecars) {
            if !s.exempts(c) {
                check_container(c, &path, role, s, mutate, &mut out);
            }
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub require_liveness: bool,
    pub startup_grace_seconds: i32,
    pub min_liveness_failure_seconds: i32,
    pub readiness_handlers: Vec<ProbeHandler>,
    pub exempt_containers: Vec<String>,
    pub include_sidecars: bool,
}

impl Settings {
    fn exempts(&self, c: &Container) -> bool {
        self.exempt_containers
            .iter()
            .any(|e| match e.strip_suffix('*') {
                Some(prefix) => c.image.as_deref().is_some_and(|i| i.starts_with(prefix)),
                None => *e == c.name,
            })
    }
}

fn check_container(
    c: &Container,
    path: &str,
    role: &str,
    s: &Settings,
    mutate: bool,
    out: &mut Outcome,
) {
    let who = format!("{role} \"{}\"", c.name);
    let declared = c.ports.iter().flatten().next().map(|p| p.container_port);
    let port = declared.map_or("<port>".to_owned(), |p| p.to_string());
    // The probes the fix adds, as data, where the container declares its port.
    let http = |extra: Value| {
        declared.map(|p| {
            let mut probe = json!({"httpGet": {"path": "/health", "port": p}, "periodSeconds": 10});
            if let (Some(probe), Some(extra)) = (probe.as_object_mut(), extra.as_object()) {
                probe.extend(extra.clone());
            }
            probe
        })
    };
    let add_probes = |probes: Vec<(&str, Option<Value>)>| -> Option<Edit> {
        let ops: Option<Vec<_>> = probes
            .into_iter()
            .map(|(field, probe)| probe.map(|p| add(pointer(path, &[field]), p)))
            .collect();
        ops.map(Edit::Patch)
    };
    match &c.readiness_probe {
        None => out.findings.push(Finding {
            message: format!(
                "{who} has no readinessProbe: it receives requests while its model is still \
                 loading or after it broke"
            ),
            fix: format!(
                "add to {who}: readinessProbe: {{httpGet: {{path: /health, port: {port}}}, \
                 periodSeconds: 10}} (vLLM and TGI /health, Triton /v2/health/ready)"
            ),
            path: format!("{path}/readinessProbe"),
            fixable: false,
            object: None,
            edit: add_probes(vec![("readinessProbe", http(json!({})))]),
        }),
        Some(p) => {
            if let Some(h) = handler(p)
                && !s.readiness_handlers.contains(&h)
            {
                out.findings.push(Finding {
                    message: format!(
                        "{who} readinessProbe uses {}, which the policy does not accept \
                         (accepted: {}): an open port does not mean the model is loaded",
                        h.as_str(),
                        s.readiness_handlers
                            .iter()
                            .map(|h| h.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    fix: format!(
                        "ask the server itself: readinessProbe: {{httpGet: {{path: /health, port: \
                         {port}}}}} on {who} (Triton: /v2/health/ready)"
                    ),
                    path: format!("{path}/readinessProbe"),
                    fixable: false,
                    object: None,
                    edit: None,
                });
            }
        }
    }
    let Some(liveness) = &c.liveness_probe else {
        if s.require_liveness {
            out.findings.push(Finding {
                message: format!(
                    "{who} has no livenessProbe: a hung model server is never restarted"
                ),
                fix: format!(
                    "add to {who}: livenessProbe: {{httpGet: {{path: /health, port: {port}}}, \
                     periodSeconds: 10, failureThreshold: 3}} and startupProbe: {{httpGet: \
                     {{path: /health, port: {port}}}, periodSeconds: 10, failureThreshold: {}}}",
                    failures_for(s.startup_grace_seconds, 0)
                ),
                path: format!("{path}/livenessProbe"),
                fixable: false,
                object: None,
                edit: add_probes(vec![
                    ("livenessProbe", http(json!({"failureThreshold": 3}))),
                    (
                        "startupProbe",
                        http(json!({"failureThreshold": failures_for(s.startup_grace_seconds, 0)}))
                            .filter(|_| c.startup_probe.is_none()),
                    ),
                ]),
            });
        }
        return;
    };

    let grace = s.startup_grace_seconds;
    let tolerance = match &c.startup_probe {
        Some(sp) => budget(sp),
        None => budget(liveness),
    };
    if tolerance < grace {
        let copyable = handler(liveness).is_some() && !carries_credential(liveness);
        let (message, fix, at) = match &c.startup_probe {
            Some(sp) => {
                let delay = delay_of(sp);
                let period = period_of(sp);
                (
                    format!(
                        "{who} startupProbe gives up {tolerance} s after start, then liveness may \
                         restart it; model servers can take minutes to load (policy: \
                         startupGraceSeconds {grace})"
                    ),
                    format!(
                        "set startupProbe.failureThreshold: {} on {who} (with periodSeconds {period})",
                        failures_for(grace.saturating_sub(delay), period)
                    ),
                    format!("{path}/startupProbe"),
                )
            }
            None => (
                format!(
                    "{who} livenessProbe can restart it {tolerance} s after start; model servers \
                     can take minutes to load (policy: startupGraceSeconds {grace})"
                ),
                format!(
                    "add to {who}: startupProbe: {{{}, periodSeconds: {PATCH_PERIOD}, \
                     failureThreshold: {}}}",
                    describe_handler(liveness),
                    failures_for(grace, PATCH_PERIOD)
                ),
                format!("{path}/livenessProbe"),
            ),
        };
        let fixable = c.startup_probe.is_some() || copyable;
        out.findings.push(Finding {
            message,
            fix,
            path: at,
            fixable,
            object: None,
            edit: None,
        });
        if mutate && fixable {
            out.patch.push(startup_patch(c, liveness, path, grace));
        }
    }

    if s.min_liveness_failure_seconds > 0 {
        let failing = failures_of(liveness).saturating_mul(period_of(liveness));
        if failing < s.min_liveness_failure_seconds {
            out.findings.push(Finding {
                message: format!(
                    "{who} livenessProbe restarts it after {failing} s of failed checks; a busy \
                     engine answers slowly and every restart reloads the model (policy: at least {} s)",
                    s.min_liveness_failure_seconds
                ),
                fix: format!(
                    "raise livenessProbe.failureThreshold or periodSeconds on {who} so that \
                     failureThreshold × periodSeconds ≥ {}",
                    s.min_liveness_failure_seconds
                ),
                path: format!("{path}/livenessProbe"),
                fixable: false,object: None, edit: None,
});
        }
    }
}

/// Seconds from start until the probe has failed for good:
/// `initialDelaySeconds + failureThreshold × periodSeconds`.
fn budget(p: &Probe) -> i32 {
    delay_of(p).saturating_add(failures_of(p).saturating_mul(period_of(p)))
}

/// `initialDelaySeconds`; the apiserver refuses a negative one, so it is
/// read as none rather than as time the probe gives back.
fn delay_of(p: &Probe) -> i32 {
    p.initial_delay_seconds.unwrap_or(0).max(0)
}

/// `periodSeconds` as the kubelet runs it: the apiserver defaults an
/// omitted or zero value to 10 (and refuses a negative one). Reading 0 as
/// 0 judged a probe that never gives up as one that gives up at once, and
/// no failureThreshold could fix that (found by fuzz/patch_roundtrip).
fn period_of(p: &Probe) -> i32 {
    p.period_seconds
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_PERIOD)
}

/// `failureThreshold` as the kubelet runs it: omitted or zero is 3.
fn failures_of(p: &Probe) -> i32 {
    p.failure_threshold
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_FAILURE_THRESHOLD)
}

/// The failureThreshold that covers `seconds` at `period` (0: the patch's).
/// In 64 bits: `seconds` may be near `i32::MAX` when a manifest's delay is
/// far below zero.
fn failures_for(seconds: i32, period: i32) -> i32 {
    let period = i64::from(if period <= 0 { PATCH_PERIOD } else { period });
    let needed = (i64::from(seconds.max(0)) + period - 1) / period;
    i32::try_from(needed).unwrap_or(i32::MAX)
}

fn handler(p: &Probe) -> Option<ProbeHandler> {
    if p.http_get.is_some() {
        Some(ProbeHandler::HttpGet)
    } else if p.grpc.is_some() {
        Some(ProbeHandler::Grpc)
    } else if p.exec.is_some() {
        Some(ProbeHandler::Exec)
    } else if p.tcp_socket.is_some() {
        Some(ProbeHandler::TcpSocket)
    } else {
        None
    }
}

/// A handler that holds a credential (an exec command or an HTTP header
/// with a token) is not copied: the patch would repeat the credential in
/// every output that shows patches (see `secret-env`).
fn carries_credential(p: &Probe) -> bool {
    let exec = p
        .exec
        .iter()
        .flat_map(|e| e.command.iter().flatten())
        .map(String::as_str);
    let headers = p
        .http_get
        .iter()
        .flat_map(|h| h.http_headers.iter().flatten())
        .map(|h| h.value.as_str());
    exec.chain(headers)
        .any(|v| secret_env::credential_in(v).is_some())
}

fn port_text(p: &IntOrString) -> String {
    match p {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

/// The liveness handler as a YAML flow fragment, for the fix text. An exec
/// command is named, not repeated.
fn describe_handler(p: &Probe) -> String {
    if let Some(h) = &p.http_get {
        format!(
            "httpGet: {{path: {}, port: {}}}",
            h.path.as_deref().unwrap_or("/"),
            port_text(&h.port)
        )
    } else if let Some(g) = &p.grpc {
        format!("grpc: {{port: {}}}", g.port)
    } else if let Some(t) = &p.tcp_socket {
        format!("tcpSocket: {{port: {}}}", port_text(&t.port))
    } else if p.exec.is_some() {
        "exec: <the livenessProbe's exec>".to_owned()
    } else {
        "<the livenessProbe's handler>".to_owned()
    }
}

fn startup_patch(
    c: &Container,
    liveness: &Probe,
    path: &str,
    grace: i32,
) -> json_patch::PatchOperation {
    if let Some(sp) = &c.startup_probe {
        let delay = delay_of(sp);
        let period = period_of(sp);
        let value = json!(failures_for(grace.saturating_sub(delay), period).max(1));
        let at = pointer(path, &["startupProbe", "failureThreshold"]);
        return if sp.failure_threshold.is_some() {
            replace(at, value)
        } else {
            add(at, value)
        };
    }
    let mut probe = serde_json::Map::new();
    let copied = serde_json::to_value(liveness).unwrap_or(Value::Null);
    for field in ["httpGet", "grpc", "exec", "tcpSocket", "timeoutSeconds"] {
        if let Some(v) = copied.get(field) {
            probe.insert(field.to_owned(), v.clone());
        }
    }
    probe.insert("periodSeconds".into(), json!(PATCH_PERIOD));
    probe.insert(
        "failureThreshold".into(),
        json!(failures_for(grace, PATCH_PERIOD).max(1)),
    );
    add(pointer(path, &["startupProbe"]), Value::Object(probe))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::*;

    fn settings() -> Settings {
        defaults::<Probes>()
    }

    fn run(obj: &serde_json::Value) -> Outcome {
        run_rule::<Probes>(obj, &settings())
    }

    fn without_probes() -> Value {
        let mut d = gpu_deployment();
        let c = container(&mut d).as_object_mut().unwrap();
        for p in ["readinessProbe", "livenessProbe", "startupProbe"] {
            c.remove(p);
        }
        d
    }

    #[test]
    fn accepts_the_compliant_model_server() {
        assert_eq!(run(&gpu_deployment()), Outcome::default());
    }

    #[test]
    fn reports_missing_readiness_and_liveness_naming_container_and_field() {
        let out = run(&without_probes());
        assert_eq!(out.findings.len(), 2, "{:?}", out.findings);
        assert!(
            out.findings[0]
                .message
                .starts_with("container \"llm\" has no readinessProbe")
        );
        assert_eq!(
            out.findings[0].path,
            "/spec/template/spec/containers/0/readinessProbe"
        );
        assert!(
            out.findings[0].fix.contains("port: 8000"),
            "the declared port is used: {}",
            out.findings[0].fix
        );
        assert!(out.findings[1].message.contains("has no livenessProbe"));
        assert!(out.findings.iter().all(|f| !f.fixable));
        assert!(out.patch.is_empty(), "an endpoint is never guessed");
    }

    #[test]
    fn liveness_can_be_optional() {
        let mut s = settings();
        s.require_liveness = false;
        let mut d = without_probes();
        container(&mut d)["readinessProbe"] = json!({"httpGet": {"path": "/health", "port": 8000}});
        assert!(Probes::check(&on(&workload(&d)), &s, true).is_clean());
    }

    #[test]
    fn early_liveness_without_startup_probe_gets_a_startup_probe_copying_its_handler() {
        let mut d = without_probes();
        container(&mut d)["readinessProbe"] = json!({"httpGet": {"path": "/health", "port": 8000}});
        container(&mut d)["livenessProbe"] = json!({"httpGet": {"path": "/health", "port": 8000},
            "initialDelaySeconds": 15, "periodSeconds": 5, "timeoutSeconds": 3});
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert_eq!(
            out.findings[0].message,
            "container \"llm\" livenessProbe can restart it 30 s after start; model servers can \
             take minutes to load (policy: startupGraceSeconds 600)"
        );
        assert_eq!(
            out.findings[0].fix,
            "add to container \"llm\": startupProbe: {httpGet: {path: /health, port: 8000}, \
             periodSeconds: 10, failureThreshold: 60}"
        );
        let patched = apply(&d, &out.patch);
        let sp = &patched["spec"]["template"]["spec"]["containers"][0]["startupProbe"];
        assert_eq!(
            *sp,
            json!({"httpGet": {"path": "/health", "port": 8000}, "timeoutSeconds": 3,
                "periodSeconds": 10, "failureThreshold": 60})
        );
        assert!(run(&patched).is_clean());
    }

    #[test]
    fn a_long_liveness_delay_is_its_own_grace_as_kaito_writes_it() {
        let mut d = without_probes();
        container(&mut d)["readinessProbe"] = json!({"httpGet": {"path": "/health", "port": 5000}});
        // KAITO: 600 + 3 × 10 = 630 s.
        container(&mut d)["livenessProbe"] =
            json!({"httpGet": {"path": "/health", "port": 5000}, "initialDelaySeconds": 600});
        assert!(run(&d).is_clean());
    }

    #[test]
    fn a_short_startup_probe_is_lengthened_in_place() {
        let mut d = gpu_deployment();
        container(&mut d)["startupProbe"]["failureThreshold"] = json!(60);
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert!(
            out.findings[0]
                .message
                .contains("startupProbe gives up 62 s after start"),
            "{}",
            out.findings[0].message
        );
        assert!(out.findings[0].path.ends_with("/startupProbe"));
        let patched = apply(&d, &out.patch);
        assert_eq!(
            patched["spec"]["template"]["spec"]["containers"][0]["startupProbe"]["failureThreshold"],
            json!(598),
            "2 s delay + 598 × 1 s ≥ 600"
        );
        assert!(run(&patched).is_clean());
    }

    #[test]
    fn a_zero_period_is_the_apiservers_default_and_the_patch_converges() {
        // fuzz/patch_roundtrip: periodSeconds 0 read as 0 gave a budget the
        // patched failureThreshold could never raise.
        let mut d = gpu_deployment();
        container(&mut d)["startupProbe"]["periodSeconds"] = json!(0);
        container(&mut d)["startupProbe"]["failureThreshold"] = json!(12);
        let out = run(&d);
        assert_eq!(out.findings.len(), 1, "{:?}", out.findings);
        assert!(
            out.findings[0]
                .message
                .contains("gives up 122 s after start"),
            "2 s + 12 × 10 s (the default period): {}",
            out.findings[0].message
        );
        let patched = apply(&d, &out.patch);
        assert!(run(&patched).is_clean(), "{:?}", run(&patched).findings);
    }

    #[test]
    fn extreme_probe_numbers_neither_overflow_nor_panic() {
        let mut d = gpu_deployment();
        container(&mut d)["livenessProbe"]["failureThreshold"] = json!(i32::MAX);
        container(&mut d)["startupProbe"]["initialDelaySeconds"] = json!(i32::MIN);
        container(&mut d)["startupProbe"]["periodSeconds"] = json!(i32::MAX);
        let out = run(&d);
        let patched = apply(&d, &out.patch);
        assert!(run(&patched).is_clean(), "{:?}", run(&patched).findings);
    }

    #[test]
    fn an_exec_handler_with_a_credential_is_not_copied() {
        let mut d = without_probes();
        container(&mut d)["readinessProbe"] = json!({"exec": {"command": ["true"]}});
        container(&mut d)["livenessProbe"] = json!({"exec": {"command":
            ["curl", "-H", "Authorization: Bearer hf_abcdefghijklmnopqrstuvwxyz0123456789", "localhost:8000/health"]}});
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert!(!out.findings[0].fixable);
        assert!(out.patch.is_empty());
        assert!(
            !out.findings[0].fix.contains("hf_"),
            "{}",
            out.findings[0].fix
        );
    }

    #[test]
    fn tcp_readiness_is_refused_only_where_the_policy_says() {
        let mut d = gpu_deployment();
        container(&mut d)["readinessProbe"] = json!({"tcpSocket": {"port": 8000}});
        assert!(run(&d).is_clean());
        let mut s = settings();
        s.readiness_handlers = vec![ProbeHandler::HttpGet, ProbeHandler::Grpc];
        let out = Probes::check(&on(&workload(&d)), &s, true);
        assert_eq!(out.findings.len(), 1);
        assert!(
            out.findings[0]
                .message
                .contains("readinessProbe uses tcpSocket")
        );
    }

    #[test]
    fn an_aggressive_liveness_is_reported_when_the_policy_asks() {
        let mut d = gpu_deployment();
        // The vLLM example: 1 s × 5 failures.
        container(&mut d)["livenessProbe"]["periodSeconds"] = json!(1);
        container(&mut d)["livenessProbe"]["failureThreshold"] = json!(5);
        assert!(run(&d).is_clean(), "off by default");
        let mut s = settings();
        s.min_liveness_failure_seconds = 30;
        let out = Probes::check(&on(&workload(&d)), &s, true);
        assert_eq!(out.findings.len(), 1);
        assert!(
            out.findings[0]
                .message
                .contains("after 5 s of failed checks")
        );
    }

    #[test]
    fn exempt_containers_by_name_or_image_prefix() {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.22"}));
        assert_eq!(run(&d).findings.len(), 2);
        for exempt in ["istio-proxy", "docker.io/istio/proxyv2*"] {
            let mut s = settings();
            s.exempt_containers = vec![exempt.into()];
            assert!(
                Probes::check(&on(&workload(&d)), &s, true).is_clean(),
                "{exempt}"
            );
        }
    }

    #[test]
    fn native_sidecars_are_judged_where_the_policy_asks_and_plain_init_containers_never() {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["initContainers"] = json!([
            {"name": "fetch", "image": "x"},
            {"name": "proxy", "image": "y", "restartPolicy": "Always"}
        ]);
        assert!(run(&d).is_clean(), "sidecars are not judged by default");
        let mut s = settings();
        s.include_sidecars = true;
        let out = Probes::check(&on(&workload(&d)), &s, true);
        assert_eq!(out.findings.len(), 2, "{:?}", out.findings);
        assert!(out.findings[0].message.starts_with("sidecar \"proxy\""));
        assert!(out.findings[0].path.contains("/initContainers/1/"));
    }

    #[test]
    fn jobs_are_not_judged() {
        let mut d = without_probes();
        d["apiVersion"] = json!("batch/v1");
        d["kind"] = json!("Job");
        d["spec"].as_object_mut().unwrap().remove("replicas");
        d["spec"].as_object_mut().unwrap().remove("selector");
        assert!(run(&d).is_clean());
    }

    #[test]
    fn no_patch_without_mutate() {
        let mut d = gpu_deployment();
        container(&mut d)["startupProbe"]["failureThreshold"] = json!(6);
        let out = Probes::check(&on(&workload(&d)), &settings(), false);
        assert!(out.findings[0].fixable);
        assert!(out.patch.is_empty());
    }

    #[test]
    fn refuses_settings_that_cannot_be_meant() {
        let mut problems = vec![];
        let spec = Probes {
            startup_grace_seconds: -1,
            readiness_handlers: vec![],
            exempt_containers: vec!["*".into()],
            ..Probes::default()
        };
        spec.compile(&policy_facts(), "probes", &mut problems);
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
