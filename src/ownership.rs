//! Who made an object, proven rather than claimed.
//!
//! Pod-level rules hold at every pod template and at every Pod; a Pod (or
//! ReplicaSet, or Job) that a core workload controller makes from a
//! template judged at apply is not judged again, so a workload that
//! predates a move to Deny keeps rescheduling. "Made by a core controller"
//! is the authenticated requester of the admission request: the
//! controller-manager runs each controller under its own service account in
//! kube-system (`--use-service-account-credentials`, as AKS and kubeadm run
//! it), or as `system:kube-controller-manager` without that flag. An
//! object's `ownerReferences` are never proof: anyone who can create a Pod
//! can write one naming a Deployment they can read.
//!
//! Offline (`check`) and in the background audit there is no requester; an
//! owner is proven there when the owner itself is in the input (or the
//! audit's cache), of the kind that makes this kind, with the same uid
//! where both have one ([`judged_through`]).

use crate::context::Context;
use crate::workload::{Owner, Workload, WorkloadKind};

/// The identity of the controller-manager when it runs every controller
/// under its own credentials.
pub const CONTROLLER_MANAGER: &str = "system:kube-controller-manager";

/// The namespace of the controllers' service accounts.
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:kube-system:";

/// A kind a controller writes, and the subresource (None: the object).
pub type Writes = (WorkloadKind, Option<&'static str>);

/// Each core controller's service account (in kube-system) and what it
/// writes from a template or spec that was itself judged at apply:
/// (kind, subresource). Its writes of those are admitted unjudged; a user's
/// writes of the same objects are judged.
pub const CORE_CONTROLLERS: [(&str, &[Writes]); 8] = [
    // Makes and scales each rollout's ReplicaSet from the Deployment's template.
    ("deployment-controller", &[(WorkloadKind::ReplicaSet, None)]),
    ("replicaset-controller", &[(WorkloadKind::Pod, None)]),
    ("statefulset-controller", &[(WorkloadKind::Pod, None)]),
    ("daemon-set-controller", &[(WorkloadKind::Pod, None)]),
    ("replication-controller", &[(WorkloadKind::Pod, None)]),
    ("job-controller", &[(WorkloadKind::Pod, None)]),
    ("cronjob-controller", &[(WorkloadKind::Job, None)]),
    // Scales within an autoscaler's bounds, and the autoscaler was judged
    // at apply against the workload it targets.
    (
        "horizontal-pod-autoscaler",
        &[
            (WorkloadKind::Deployment, Some("scale")),
            (WorkloadKind::StatefulSet, Some("scale")),
            (WorkloadKind::ReplicaSet, Some("scale")),
            (WorkloadKind::ReplicationController, Some("scale")),
        ],
    ),
];

/// The core controller that made this write, if the requester is one and
/// the write is of what it makes from a judged template: its service
/// account's short name (`replicaset-controller`). `kind` is the kind of
/// the resource written (`deployments/scale` is a Deployment with the
/// subresource `scale`).
pub fn core_controller(
    username: &str,
    kind: WorkloadKind,
    subresource: Option<&str>,
) -> Option<&'static str> {
    let writes = |what: &[(WorkloadKind, Option<&str>)]| {
        what.iter()
            .any(|(k, sub)| *k == kind && *sub == subresource)
    };
    if username == CONTROLLER_MANAGER {
        return CORE_CONTROLLERS
            .iter()
            .find(|(_, what)| writes(what))
            .map(|_| "kube-controller-manager");
    }
    let account = username.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
    CORE_CONTROLLERS
        .iter()
        .find(|(sa, what)| *sa == account && writes(what))
        .map(|(sa, _)| *sa)
}

/// The CEL matchCondition that keeps the apiserver from sending what
/// [`core_controller`] admits anyway. The chart renders exactly this line,
/// and a test holds the two equal.
pub fn requester_match_condition() -> String {
    let mut clauses = Vec::new();
    let mut seen: Vec<(WorkloadKind, Option<&str>)> = Vec::new();
    for (_, what) in CORE_CONTROLLERS {
        for &(kind, sub) in what {
            if seen.contains(&(kind, sub)) {
                continue;
            }
            seen.push((kind, sub));
            let mut users: Vec<String> = CORE_CONTROLLERS
                .iter()
                .filter(|(_, w)| w.contains(&(kind, sub)))
                .map(|(sa, _)| format!("'{SERVICE_ACCOUNT_PREFIX}{sa}'"))
                .collect();
            users.push(format!("'{CONTROLLER_MANAGER}'"));
            let (group, resource) = kind.resource();
            let what = match sub {
                None => format!(
                    "request.resource.group == '{group}' && request.resource.resource == '{resource}' \
                     && (!has(request.subResource) || request.subResource == '')"
                ),
                Some(sub) => format!(
                    "request.resource.group == '{group}' && request.resource.resource == '{resource}' \
                     && has(request.subResource) && request.subResource == '{sub}'"
                ),
            };
            clauses.push(format!(
                "({what} && request.userInfo.username in [{}])",
                users.join(", ")
            ));
        }
    }
    format!("!({})", clauses.join(" || "))
}

/// The kinds whose objects a core controller makes as `kind`'s children:
/// Deployment → ReplicaSet, CronJob → Job, and the five that make Pods.
pub fn makes(owner: &Owner, child: WorkloadKind) -> Option<WorkloadKind> {
    let parent = match (owner.group.as_str(), owner.kind.as_str()) {
        ("apps", "Deployment") => WorkloadKind::Deployment,
        ("apps", "ReplicaSet") => WorkloadKind::ReplicaSet,
        ("apps", "StatefulSet") => WorkloadKind::StatefulSet,
        ("apps", "DaemonSet") => WorkloadKind::DaemonSet,
        ("", "ReplicationController") => WorkloadKind::ReplicationController,
        ("batch", "Job") => WorkloadKind::Job,
        ("batch", "CronJob") => WorkloadKind::CronJob,
        _ => return None,
    };
    let pair = matches!(
        (parent, child),
        (WorkloadKind::Deployment, WorkloadKind::ReplicaSet)
            | (WorkloadKind::CronJob, WorkloadKind::Job)
            | (
                WorkloadKind::ReplicaSet
                    | WorkloadKind::StatefulSet
                    | WorkloadKind::DaemonSet
                    | WorkloadKind::ReplicationController
                    | WorkloadKind::Job,
                WorkloadKind::Pod
            )
    );
    pair.then_some(parent)
}

/// The owner `w` is judged through, offline or in the audit: its
/// controller, when that owner makes objects of `w`'s kind and is itself
/// known to the context (in `check`'s input, or the audit's cache) with
/// the uid the reference names. A claimed owner that is not there, or that
/// never makes this kind (a Pod "owned" by a Deployment), proves nothing,
/// and `w` is judged itself.
pub fn judged_through<'a>(w: &'a Workload, ctx: &Context) -> Option<&'a Owner> {
    let owner = w.controller()?;
    let parent = makes(owner, w.kind)?;
    ctx.knows_workload(parent, &w.namespace, &owner.name, &owner.uid)
        .then_some(owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(name: &str) -> String {
        format!("{SERVICE_ACCOUNT_PREFIX}{name}")
    }

    #[test]
    fn each_controller_is_recognised_only_for_what_it_makes() {
        let rs = sa("replicaset-controller");
        assert_eq!(
            core_controller(&rs, WorkloadKind::Pod, None),
            Some("replicaset-controller")
        );
        assert_eq!(core_controller(&rs, WorkloadKind::ReplicaSet, None), None);
        let deploy = sa("deployment-controller");
        assert_eq!(
            core_controller(&deploy, WorkloadKind::ReplicaSet, None),
            Some("deployment-controller")
        );
        assert_eq!(core_controller(&deploy, WorkloadKind::Pod, None), None);
        assert_eq!(
            core_controller(&sa("cronjob-controller"), WorkloadKind::Job, None),
            Some("cronjob-controller")
        );
        let hpa = sa("horizontal-pod-autoscaler");
        assert!(core_controller(&hpa, WorkloadKind::Deployment, Some("scale")).is_some());
        assert!(core_controller(&hpa, WorkloadKind::Deployment, None).is_none());
        assert!(core_controller(&rs, WorkloadKind::Pod, Some("ephemeralcontainers")).is_none());
        assert_eq!(
            core_controller(CONTROLLER_MANAGER, WorkloadKind::Pod, None),
            Some("kube-controller-manager")
        );
    }

    #[test]
    fn users_and_other_service_accounts_are_never_core_controllers() {
        for user in [
            "dev@example.com",
            "system:serviceaccount:ml:replicaset-controller",
            "system:serviceaccount:kube-system:default",
            "system:serviceaccount:kube-system:replicaset-controller-x",
            "system:admin",
            "",
        ] {
            for kind in WorkloadKind::ALL {
                assert_eq!(core_controller(user, kind, None), None, "{user} {kind}");
            }
        }
    }

    fn workload(kind: &str, api_version: &str, owner: Option<(&str, &str, &str)>) -> Workload {
        let template = serde_json::json!({"metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "contoso.azurecr.io/x:1"}]}});
        let spec = if kind == "Pod" {
            template["spec"].clone()
        } else {
            serde_json::json!({"selector": {"matchLabels": {"app": "x"}}, "template": template})
        };
        let mut o = serde_json::json!({"apiVersion": api_version, "kind": kind,
            "metadata": {"name": "x", "namespace": "ml"}, "spec": spec});
        if let Some((api_version, kind, uid)) = owner {
            o["metadata"]["ownerReferences"] = serde_json::json!([{"apiVersion": api_version,
                "kind": kind, "name": "owner", "uid": uid, "controller": true}]);
        }
        Workload::from_value(o, "ml").unwrap().unwrap()
    }

    #[test]
    fn an_owner_is_proven_only_by_being_there_with_its_uid_and_making_this_kind() {
        let mut ctx = Context::default();
        ctx.add_workload(WorkloadKind::ReplicaSet, "ml", "owner", Some("u1".into()));
        ctx.add_workload(WorkloadKind::Deployment, "ml", "owner", Some("u2".into()));
        let pod = workload("Pod", "v1", Some(("apps/v1", "ReplicaSet", "u1")));
        assert!(judged_through(&pod, &ctx).is_some());
        // Another uid: a different object of the same name.
        let forged = workload("Pod", "v1", Some(("apps/v1", "ReplicaSet", "other")));
        assert!(judged_through(&forged, &ctx).is_none());
        // A Deployment never makes Pods itself.
        let forged = workload("Pod", "v1", Some(("apps/v1", "Deployment", "u2")));
        assert!(judged_through(&forged, &ctx).is_none());
        // An owner not in the input proves nothing.
        let orphan = workload("Pod", "v1", Some(("apps/v1", "StatefulSet", "u3")));
        assert!(judged_through(&orphan, &ctx).is_none());
        let rs = workload(
            "ReplicaSet",
            "apps/v1",
            Some(("apps/v1", "Deployment", "u2")),
        );
        assert!(judged_through(&rs, &ctx).is_some());
        // A workload kind that no controller makes is always judged.
        let d = workload(
            "Deployment",
            "apps/v1",
            Some(("apps/v1", "Deployment", "u2")),
        );
        assert!(judged_through(&d, &ctx).is_none());
    }
}
