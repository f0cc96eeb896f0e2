//! `graceful-termination` (Reliability): a model server gets time after
//! SIGTERM to finish the generations it is streaming (tens of seconds to
//! minutes), and a preStop delay first, so that the load balancer drops
//! the endpoint before the server stops accepting (vLLM stops at SIGTERM).
//! WAF AKS: "use preStop hooks and an appropriate
//! terminationGracePeriodSeconds". Checked: the pod's grace period is at
//! least `minGracePeriodSeconds`; every serving container (app containers
//! that declare a port, or every app container when none does) has a
//! `lifecycle.preStop` where `requirePreStop`; and a preStop sleep leaves
//! at least `minDrainSeconds` of the grace period. Jobs are not judged: they
//! run to completion, nothing routes to them. Off in the baseline: the
//! right values depend on the workload.

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use serde_json::json;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Finding, Outcome, PolicyFacts, Rule, Subject, add, pointer, yes};
use crate::release::Release;
use crate::rule_list::{Action, Pillar, RuleId};
use crate::workload::{Workload, WorkloadKind};

/// What Kubernetes gives a pod that sets no grace period.
pub const DEFAULT_GRACE: i64 = 30;

/// `graceful-termination` (Reliability): pods get long enough after
/// SIGTERM to finish in-flight generations, behind a preStop delay that
/// lets the load balancer drop the endpoint first. Off unless `action` is
/// set: the right values depend on the workload.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GracefulTermination {
    /// This rule's action. Unset: Off (it does not take the policy's action).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Raise the grace period and add the preStop sleep through the
    /// mutating webhook (`preStop.sleep` needs Kubernetes 1.30 or later).
    #[serde(default)]
    pub mutate: bool,
    /// The shortest `terminationGracePeriodSeconds` accepted (Kubernetes' default is 30).
    #[serde(default = "default_min_grace")]
    #[schemars(range(min = 1))]
    pub min_grace_period_seconds: i64,
    /// Require a `lifecycle.preStop` hook (sleep or exec) on every serving container.
    #[serde(default = "yes")]
    pub require_pre_stop: bool,
    /// The preStop sleep the patch adds.
    #[serde(default = "default_pre_stop")]
    #[schemars(range(min = 1))]
    pub pre_stop_seconds: i64,
    /// Seconds of the grace period that must remain after a preStop sleep,
    /// for the server itself to drain.
    #[serde(default = "default_min_drain")]
    #[schemars(range(min = 0))]
    pub min_drain_seconds: i64,
}

impl Default for GracefulTermination {
    fn default() -> Self {
        GracefulTermination {
            action: None,
            mutate: false,
            min_grace_period_seconds: default_min_grace(),
            require_pre_stop: yes(),
            pre_stop_seconds: default_pre_stop(),
            min_drain_seconds: default_min_drain(),
        }
    }
}
fn default_min_grace() -> i64 {
    60
}
fn default_pre_stop() -> i64 {
    10
}
fn default_min_drain() -> i64 {
    15
}

impl Rule for GracefulTermination {
    const ID: RuleId = RuleId::GracefulTermination;
    const PILLAR: Pillar = Pillar::Reliability;
    const SUMMARY: &'static str =
        "The grace period lets in-flight generations finish, after a shorter preStop delay";
    const SINCE: Release = Release::V0_2;
    const OFF_UNLESS_SET: bool = true;

    type Settings = Settings;

    fn mutate(&self) -> bool {
        self.mutate
    }

    fn compile(&self, _policy: &PolicyFacts, at: &str, problems: &mut Vec<String>) -> Settings {
        let spec = self;
        for (field, v, min) in [
            ("minGracePeriodSeconds", spec.min_grace_period_seconds, 1),
            ("preStopSeconds", spec.pre_stop_seconds, 1),
            ("minDrainSeconds", spec.min_drain_seconds, 0),
        ] {
            if v < min {
                problems.push(format!("{at}.{field}: must be at least {min}"));
            }
        }
        Settings {
            min_grace_period_seconds: spec.min_grace_period_seconds,
            require_pre_stop: spec.require_pre_stop,
            pre_stop_seconds: spec.pre_stop_seconds,
            min_drain_seconds: spec.min_drain_seconds,
        }
    }

    fn check(on: &Subject, s: &Settings, mutate: bool) -> Outcome {
        let w = on.workload;
        let mut out = Outcome::default();
        if matches!(w.kind, WorkloadKind::Job | WorkloadKind::CronJob) {
            return out;
        }
        let written = w.pod.termination_grace_period_seconds;
        let grace = written.unwrap_or(DEFAULT_GRACE);
        let grace_path = w.pod_field("terminationGracePeriodSeconds");
        // The grace period the patch writes: long enough for the policy and
        // for every preStop sleep (patched ones included) plus the drain.
        let mut wanted = s.min_grace_period_seconds;
        let mut grace_findings = Vec::new();
        if grace < s.min_grace_period_seconds {
            grace_findings.push(Finding {
                message: format!(
                    "terminationGracePeriodSeconds is {grace}{}: a rollout, scale-in or node drain \
                 cuts generations still streaming after {grace} s (policy needs at least {})",
                    if written.is_none() { " (not set)" } else { "" },
                    s.min_grace_period_seconds
                ),
                fix: format!(
                    "set terminationGracePeriodSeconds: {} in the pod spec (your longest \
                 generation, plus the preStop sleep)",
                    s.min_grace_period_seconds
                ),
                path: grace_path.clone(),
                fixable: true,
                object: None,
                edit: None,
            });
        }
        for (i, c) in serving(w) {
            let cpath = w.container_path(i);
            let who = format!("container \"{}\"", c.name);
            let lifecycle = c.lifecycle.as_ref();
            match lifecycle.and_then(|l| l.pre_stop.as_ref()) {
                None if s.require_pre_stop => {
                    let n = s.pre_stop_seconds;
                    out.findings.push(Finding {
                        message: format!(
                            "{who} has no lifecycle.preStop: at SIGTERM the server stops accepting \
                         before the load balancer drops the endpoint, so new requests fail"
                        ),
                        fix: format!(
                            "add to {who}: lifecycle: {{preStop: {{sleep: {{seconds: {n}}}}}}} \
                         (Kubernetes 1.30+; before that exec: {{command: [/bin/sleep, \"{n}\"]}})"
                        ),
                        path: format!("{cpath}/lifecycle/preStop"),
                        fixable: true,
                        object: None,
                        edit: None,
                    });
                    wanted = wanted.max(n + s.min_drain_seconds);
                    if mutate {
                        let hook = json!({"sleep": {"seconds": n}});
                        out.patch.push(match lifecycle {
                            Some(_) => add(pointer(&cpath, &["lifecycle", "preStop"]), hook),
                            None => add(pointer(&cpath, &["lifecycle"]), json!({"preStop": hook})),
                        });
                    }
                }
                None => {}
                Some(h) => {
                    let Some(sleep) = pre_stop_sleep(h) else {
                        continue;
                    };
                    wanted = wanted.max(sleep + s.min_drain_seconds);
                    if grace - sleep < s.min_drain_seconds {
                        grace_findings.push(Finding {
                        message: format!(
                            "{who}'s preStop sleeps {sleep} s of the {grace} s grace period: the \
                             server gets {} s to drain (policy needs {})",
                            (grace - sleep).max(0),
                            s.min_drain_seconds
                        ),
                        fix: format!(
                            "set terminationGracePeriodSeconds: {} or more, or shorten the sleep",
                            sleep + s.min_drain_seconds
                        ),
                        path: format!("{cpath}/lifecycle/preStop"),
                        fixable: true,object: None, edit: None,
});
                    }
                }
            }
        }
        if grace < wanted && (!grace_findings.is_empty() || !out.findings.is_empty()) {
            if grace_findings.is_empty() {
                // A patched preStop sleep would eat the grace period as it is.
                grace_findings.push(Finding {
                    message: format!(
                        "terminationGracePeriodSeconds is {grace}: too short for a {} s preStop \
                     sleep and {} s of draining",
                        s.pre_stop_seconds, s.min_drain_seconds
                    ),
                    fix: format!("set terminationGracePeriodSeconds: {wanted} in the pod spec"),
                    path: grace_path.clone(),
                    fixable: true,
                    object: None,
                    edit: None,
                });
            }
            if mutate {
                out.patch
                    .push(add(pointer(&grace_path, &[]), json!(wanted)));
            }
        }
        out.findings.splice(0..0, grace_findings);
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub min_grace_period_seconds: i64,
    pub require_pre_stop: bool,
    pub pre_stop_seconds: i64,
    pub min_drain_seconds: i64,
}

/// Seconds a preStop handler sleeps: `sleep.seconds`, or an exec of
/// `sleep N` (directly or in `sh -c`). None for other handlers (an HTTP
/// call, a script): their length is unknown.
pub fn pre_stop_sleep(h: &LifecycleHandler) -> Option<i64> {
    if let Some(s) = &h.sleep {
        return Some(s.seconds);
    }
    let words: Vec<&str> = h
        .exec
        .as_ref()?
        .command
        .iter()
        .flatten()
        .flat_map(|a| a.split(|c: char| c.is_whitespace() || c == ';' || c == '&'))
        .filter(|w| !w.is_empty())
        .collect();
    let at = words
        .iter()
        .position(|w| *w == "sleep" || w.ends_with("/sleep"))?;
    let n = words.get(at + 1)?;
    n.strip_suffix('s').unwrap_or(n).parse().ok()
}

/// The app containers traffic reaches: those that declare a port, or all
/// of them when none does (ports are informational, often left out).
fn serving(w: &Workload) -> Vec<(usize, &Container)> {
    let all: Vec<(usize, &Container)> = w.pod.containers.iter().enumerate().collect();
    let with_ports: Vec<(usize, &Container)> = all
        .iter()
        .copied()
        .filter(|(_, c)| c.ports.as_ref().is_some_and(|p| !p.is_empty()))
        .collect();
    if with_ports.is_empty() {
        all
    } else {
        with_ports
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::*;
    use serde_json::Value;

    fn settings() -> Settings {
        defaults::<GracefulTermination>()
    }

    fn run(obj: &serde_json::Value) -> Outcome {
        run_rule::<GracefulTermination>(obj, &settings())
    }

    fn graceful() -> Value {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(130);
        container(&mut d)["lifecycle"] = json!({"preStop": {"sleep": {"seconds": 30}}});
        d
    }

    #[test]
    fn a_long_grace_behind_a_short_sleep_passes() {
        assert!(run(&graceful()).is_clean());
    }

    #[test]
    fn the_default_grace_and_no_pre_stop_are_reported_and_patched() {
        let d = gpu_deployment();
        let out = run(&d);
        let messages: Vec<&str> = out.findings.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "terminationGracePeriodSeconds is 30 (not set): a rollout, scale-in or node \
                 drain cuts generations still streaming after 30 s (policy needs at least 60)",
                "container \"llm\" has no lifecycle.preStop: at SIGTERM the server stops \
                 accepting before the load balancer drops the endpoint, so new requests fail",
            ]
        );
        assert_eq!(
            out.findings[0].path,
            "/spec/template/spec/terminationGracePeriodSeconds"
        );
        assert_eq!(
            out.findings[1].path,
            "/spec/template/spec/containers/0/lifecycle/preStop"
        );
        let patched = apply(&d, &out.patch);
        assert!(run(&patched).is_clean(), "{:?}", run(&patched).findings);
        let spec = &patched["spec"]["template"]["spec"];
        assert_eq!(spec["terminationGracePeriodSeconds"], 60);
        assert_eq!(
            spec["containers"][0]["lifecycle"],
            json!({"preStop": {"sleep": {"seconds": 10}}})
        );
        assert!(
            GracefulTermination::check(&on(&workload(&d)), &settings(), false)
                .patch
                .is_empty()
        );
    }

    #[test]
    fn a_sleep_that_eats_the_grace_period_is_reported_and_the_grace_raised() {
        let mut d = graceful();
        d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(60);
        container(&mut d)["lifecycle"] =
            json!({"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 55"]}}});
        let out = run(&d);
        assert_eq!(out.findings.len(), 1, "{:?}", out.findings);
        assert_eq!(
            out.findings[0].message,
            "container \"llm\"'s preStop sleeps 55 s of the 60 s grace period: the server gets \
             5 s to drain (policy needs 15)"
        );
        let patched = apply(&d, &out.patch);
        assert_eq!(
            patched["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
            70
        );
        assert!(run(&patched).is_clean());
    }

    #[test]
    fn a_short_policy_grace_is_raised_to_fit_the_patched_sleep() {
        let mut d = graceful();
        d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(20);
        container(&mut d)
            .as_object_mut()
            .unwrap()
            .remove("lifecycle");
        let s = Settings {
            min_grace_period_seconds: 20,
            ..settings()
        };
        let out = GracefulTermination::check(&on(&workload(&d)), &s, true);
        assert_eq!(
            out.findings[0].message,
            "terminationGracePeriodSeconds is 20: too short for a 10 s preStop sleep and 15 s \
             of draining"
        );
        let patched = apply(&d, &out.patch);
        assert_eq!(
            patched["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
            25
        );
        assert!(GracefulTermination::check(&on(&workload(&patched)), &s, true).is_clean());
    }

    #[test]
    fn a_pre_stop_on_an_existing_lifecycle_is_added_beside_post_start() {
        let mut d = graceful();
        container(&mut d)["lifecycle"] = json!({"postStart": {"exec": {"command": ["/bin/true"]}}});
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        let patched = apply(&d, &out.patch);
        let l = &patched["spec"]["template"]["spec"]["containers"][0]["lifecycle"];
        assert!(l["postStart"].is_object() && l["preStop"].is_object());
        assert!(run(&patched).is_clean());
    }

    #[test]
    fn sidecars_without_ports_need_no_pre_stop() {
        let mut d = graceful();
        let spec = &mut d["spec"]["template"]["spec"];
        spec["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "log-shipper", "image": "x"}));
        assert!(run(&d).is_clean());
    }

    #[test]
    fn pre_stop_can_be_left_optional() {
        let mut d = graceful();
        container(&mut d)
            .as_object_mut()
            .unwrap()
            .remove("lifecycle");
        let s = Settings {
            require_pre_stop: false,
            ..settings()
        };
        assert!(GracefulTermination::check(&on(&workload(&d)), &s, true).is_clean());
    }

    #[test]
    fn sleeps_are_read_from_each_handler_form() {
        let h = |v: Value| serde_json::from_value::<LifecycleHandler>(v).unwrap();
        assert_eq!(
            pre_stop_sleep(&h(json!({"sleep": {"seconds": 5}}))),
            Some(5)
        );
        assert_eq!(
            pre_stop_sleep(&h(json!({"exec": {"command": ["/bin/sleep", "20"]}}))),
            Some(20)
        );
        assert_eq!(
            pre_stop_sleep(&h(
                json!({"exec": {"command": ["sh", "-c", "sleep 7s; nginx -s quit"]}})
            )),
            Some(7)
        );
        assert_eq!(
            pre_stop_sleep(&h(json!({"httpGet": {"path": "/drain", "port": 8000}}))),
            None
        );
    }

    #[test]
    fn jobs_are_not_judged() {
        let mut j = gpu_deployment();
        j["apiVersion"] = json!("batch/v1");
        j["kind"] = json!("Job");
        j["spec"] = json!({"template": j["spec"]["template"].clone()});
        assert!(run(&j).is_clean());
    }
}
