//! The ways around a policy, as the webhook sees them: every pod-template
//! kind is judged; a Pod is judged whoever claims to own it, unless the
//! authenticated requester is the core controller that makes it; replica
//! floors hold through the scale subresource and through autoscalers
//! judged against the workload they target. The router is called
//! in-process with the baseline in Deny and a workload cache standing in
//! for the cluster's reflectors. The same paths on the real control plane,
//! as a user with `edit`: tests/cluster/test_enforcement.py.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use waf_admission::PolicySet;
use waf_admission::state::{State, WorkloadIndex};
use waf_admission::webhook::{self, App, metrics::Metrics};
use waf_admission::workload::WorkloadKind;

use common::*;

/// The cluster's workloads, as the reflectors would hold them; those in
/// `late` reach the cache only after `late_reads` lookups missed them (a
/// watch event still on its way).
#[derive(Default)]
struct Cache {
    objects: HashMap<(WorkloadKind, String, String), String>,
    late: std::sync::Mutex<usize>,
}

impl WorkloadIndex for Cache {
    fn text(&self, kind: WorkloadKind, namespace: &str, name: &str) -> Option<String> {
        let mut late = self.late.lock().unwrap();
        if *late > 0 {
            *late -= 1;
            return None;
        }
        self.objects
            .get(&(kind, namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}

fn router(cached: &[&Value]) -> axum::Router {
    router_late(cached, 0)
}

fn router_late(cached: &[&Value], late_reads: usize) -> axum::Router {
    let state = State::standalone(PolicySet::baseline().unwrap());
    let mut cache = Cache {
        late: std::sync::Mutex::new(late_reads),
        ..Cache::default()
    };
    for w in cached {
        let kind = WorkloadKind::ALL
            .into_iter()
            .find(|k| k.as_str() == w["kind"])
            .unwrap();
        let meta = &w["metadata"];
        cache.objects.insert(
            (
                kind,
                meta["namespace"].as_str().unwrap().to_owned(),
                meta["name"].as_str().unwrap().to_owned(),
            ),
            w.to_string(),
        );
    }
    state.set_workloads(Arc::new(cache));
    webhook::router(Arc::new(App {
        state: Arc::new(state),
        metrics: Arc::new(Metrics::new()),
        registry: None,
    }))
}

async fn post(router: &axum::Router, path: &str, review: &Value) -> Value {
    let req = axum::http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(review).unwrap()))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

fn allowed(body: &Value) -> bool {
    body["response"]["allowed"].as_bool().unwrap()
}

fn message(body: &Value) -> &str {
    body["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default()
}

/// The compliant vLLM Deployment of examples/good.
fn good() -> Value {
    yaml_file("examples/good/llm-gpu.yaml").remove(0)
}

/// Its pod template with an image from Docker Hub on :latest and no GPU
/// placement: image-provenance and gpu-placement deny it.
fn bad_template() -> Value {
    let mut t = good()["spec"]["template"].clone();
    t["spec"]["containers"][0]["image"] = json!("docker.io/vllm/vllm-openai:latest");
    let spec = t["spec"].as_object_mut().unwrap();
    spec.remove("nodeSelector");
    spec.remove("tolerations");
    t
}

/// `kind` carrying the bad template where that kind keeps its template.
fn with_bad_template(kind: &str) -> Value {
    let template = bad_template();
    let meta = json!({"name": "llm", "namespace": "ml", "labels": {"app": "llm"}});
    let selector = json!({"matchLabels": {"app": "llm"}});
    match kind {
        "Pod" => json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": template["spec"]}),
        "ReplicationController" => json!({"apiVersion": "v1", "kind": kind, "metadata": meta,
            "spec": {"replicas": 2, "selector": {"app": "llm"}, "template": template}}),
        "Job" => {
            let mut t = template;
            t["spec"]["restartPolicy"] = json!("Never");
            json!({"apiVersion": "batch/v1", "kind": kind, "metadata": meta,
                "spec": {"template": t}})
        }
        "CronJob" => {
            let mut t = template;
            t["spec"]["restartPolicy"] = json!("Never");
            json!({"apiVersion": "batch/v1", "kind": kind, "metadata": meta,
                "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": t}}}})
        }
        // The AI-serving resources, each with the template where it keeps one.
        "InferenceService" => {
            let mut predictor = template["spec"].clone();
            predictor["minReplicas"] = json!(2);
            json!({"apiVersion": "serving.kserve.io/v1beta1", "kind": kind, "metadata": meta,
                "spec": {"predictor": predictor}})
        }
        "LLMInferenceService" => json!({"apiVersion": "serving.kserve.io/v1alpha1", "kind": kind,
            "metadata": meta, "spec": {"replicas": 2, "template": template["spec"]}}),
        "LeaderWorkerSet" => json!({"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": kind,
            "metadata": meta,
            "spec": {"replicas": 2, "leaderWorkerTemplate": {"size": 1, "workerTemplate": template}}}),
        "Workspace" => json!({"apiVersion": "kaito.sh/v1beta1", "kind": kind, "metadata": meta,
            "resource": {"instanceType": "Standard_NC24ads_A100_v4",
                "labelSelector": {"matchLabels": {"apps": "llm"}}},
            "inference": {"template": template}}),
        "InferenceSet" => json!({"apiVersion": "kaito.sh/v1beta1", "kind": kind, "metadata": meta,
            "spec": {"replicas": 2, "labelSelector": {"matchLabels": {"apps": "llm"}},
                "template": {"resource": {"instanceType": "Standard_NC24ads_A100_v4"},
                    "inference": {"template": template}}}}),
        _ => json!({"apiVersion": "apps/v1", "kind": kind, "metadata": meta,
            "spec": {"replicas": 2, "selector": selector, "template": template}}),
    }
}

const DEV: &str = "dev@example.com";
const SA: &str = "system:serviceaccount:kube-system:";

#[tokio::test]
async fn every_pod_template_kind_is_denied_with_the_rules_that_hold_at_the_pod() {
    let router = router(&[]);
    for kind in WorkloadKind::ALL {
        let object = with_bad_template(kind.as_str());
        let body = post(
            &router,
            "/validate",
            &as_user(review("CREATE", Some(&object), false), DEV),
        )
        .await;
        assert!(!allowed(&body), "{kind}: {body}");
        assert!(
            message(&body).contains("[image-provenance]"),
            "{kind}: {body}"
        );
        // KAITO places its pods itself (its node affinity and tolerations):
        // only the VM size it asks for is the user's.
        let kaito = matches!(kind, WorkloadKind::Workspace | WorkloadKind::InferenceSet);
        assert_eq!(
            message(&body).contains("[gpu-placement]"),
            !kaito,
            "{kind}: {body}"
        );
        // Workload-level rules only where they mean something: a DaemonSet,
        // a Job or a Pod has no replica floor and no autoscaler.
        // An InferenceService's autoscaler is the one KServe makes from
        // its minReplicas (2 here).
        let replicated = kind.is_replicated() && kind != WorkloadKind::InferenceService;
        assert_eq!(
            message(&body).contains("[autoscaler]")
                || body["response"]["warnings"]
                    .to_string()
                    .contains("[autoscaler]"),
            replicated,
            "{kind}: {body}"
        );
    }
}

#[tokio::test]
async fn a_pod_is_judged_whatever_owner_it_claims_unless_its_controller_made_it() {
    let router = router(&[]);
    let mut pod = with_bad_template("Pod");
    // A real Deployment's uid, readable by anyone with `edit`.
    pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "Deployment",
        "name": "llm", "uid": "2b7d4c1e-0000-4000-8000-000000000001", "controller": true}]);
    let body = post(
        &router,
        "/validate",
        &as_user(review("CREATE", Some(&pod), false), DEV),
    )
    .await;
    assert!(!allowed(&body), "{body}");
    assert!(message(&body).contains("[image-provenance]"), "{body}");
    // A look-alike service account in the user's own namespace is a user.
    let body = post(
        &router,
        "/validate",
        &as_user(
            review("CREATE", Some(&pod), false),
            "system:serviceaccount:ml:replicaset-controller",
        ),
    )
    .await;
    assert!(!allowed(&body), "{body}");
    // The controllers that make Pods from a template judged at apply: a
    // workload that predates Deny keeps rescheduling.
    for sa in [
        "replicaset-controller",
        "statefulset-controller",
        "daemon-set-controller",
        "replication-controller",
        "job-controller",
    ] {
        let body = post(
            &router,
            "/validate",
            &as_user(review("CREATE", Some(&pod), false), &format!("{SA}{sa}")),
        )
        .await;
        assert!(allowed(&body), "{sa}: {body}");
        // And never patched by the mutating webhook either.
        let body = post(
            &router,
            "/mutate",
            &as_user(review("CREATE", Some(&pod), false), &format!("{SA}{sa}")),
        )
        .await;
        assert!(body["response"]["patch"].is_null(), "{sa}: {body}");
    }
    // The deployment controller makes ReplicaSets, never Pods.
    let body = post(
        &router,
        "/validate",
        &as_user(
            review("CREATE", Some(&pod), false),
            &format!("{SA}deployment-controller"),
        ),
    )
    .await;
    assert!(!allowed(&body), "{body}");
    let rs = with_bad_template("ReplicaSet");
    let body = post(
        &router,
        "/validate",
        &as_user(
            review("CREATE", Some(&rs), false),
            &format!("{SA}deployment-controller"),
        ),
    )
    .await;
    assert!(allowed(&body), "{body}");
}

#[tokio::test]
async fn a_new_image_on_a_pod_its_controller_made_is_denied_on_update() {
    let router = router(&[]);
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "llm-5d9c7-x2x4z", "namespace": "ml", "labels": {"app": "llm"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "llm-5d9c7",
                "uid": "0b6f4bb5-0b5e-4c2e-9a57-1f2b3c4d5e6f", "controller": true}]},
        "spec": good()["spec"]["template"]["spec"]});
    let old = pod.clone();
    pod["spec"]["containers"][0]["image"] = json!("docker.io/vllm/vllm-openai:latest");
    // `kubectl set image pod/...` by a user.
    let body = post(
        &router,
        "/validate",
        &as_user(update_review(&pod, &old, None), DEV),
    )
    .await;
    assert!(!allowed(&body), "{body}");
    assert!(message(&body).contains("[image-provenance]"), "{body}");
    // A label on the same compliant pod changes nothing the rules read.
    let mut labelled = old.clone();
    labelled["metadata"]["labels"]["team"] = json!("search");
    let body = post(
        &router,
        "/validate",
        &as_user(update_review(&labelled, &old, None), DEV),
    )
    .await;
    assert!(allowed(&body), "{body}");
}

/// An `autoscaling/v1` Scale, as `kubectl scale` sends it to a
/// subresource.
fn scale_review(resource: &str, name: &str, replicas: i32, old: i32, user: &str) -> Value {
    let scale = |n: i32| {
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": name, "namespace": "ml"},
            "spec": {"replicas": n}})
    };
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "8a7b6c5d",
        "kind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
        "resource": {"group": "apps", "version": "v1", "resource": resource},
        "subResource": "scale",
        "requestKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
        "requestResource": {"group": "apps", "version": "v1", "resource": resource},
        "requestSubResource": "scale",
        "name": name, "namespace": "ml", "operation": "UPDATE",
        "userInfo": {"username": user},
        "object": scale(replicas), "oldObject": scale(old), "dryRun": false,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"}}})
}

#[tokio::test]
async fn scaling_below_the_floor_through_the_scale_subresource_is_denied() {
    let deployment = good();
    let router = router(&[&deployment]);
    let body = post(
        &router,
        "/validate",
        &scale_review("deployments", "llm", 1, 2, DEV),
    )
    .await;
    assert!(!allowed(&body), "{body}");
    assert!(message(&body).contains("[zone-spread]"), "{body}");
    assert!(message(&body).contains("runs 1 replica"), "{body}");
    // Up is fine (a warning may say what the new count means: the example
    // has no PodDisruptionBudget), and so is the floor itself, silently.
    let up = scale_review("deployments", "llm", 5, 2, DEV);
    assert!(allowed(&post(&router, "/validate", &up).await));
    let floor = scale_review("deployments", "llm", 2, 3, DEV);
    let body = post(&router, "/validate", &floor).await;
    assert!(allowed(&body), "{body}");
    assert!(body["response"]["warnings"].is_null(), "{body}");
    // The HPA controller scales within bounds judged at apply.
    let hpa = format!("{SA}horizontal-pod-autoscaler");
    let body = post(
        &router,
        "/validate",
        &scale_review("deployments", "llm", 1, 2, &hpa),
    )
    .await;
    assert!(allowed(&body), "{body}");
    // A workload the cache does not hold (standalone, or created a moment
    // ago) is admitted: there is nothing to judge the change against.
    let body = post(
        &router,
        "/validate",
        &scale_review("deployments", "other", 1, 2, DEV),
    )
    .await;
    assert!(allowed(&body), "{body}");
    // The mutating webhook never patches a scale.
    let body = post(
        &router,
        "/mutate",
        &scale_review("deployments", "llm", 1, 2, DEV),
    )
    .await;
    assert!(
        allowed(&body) && body["response"]["patch"].is_null(),
        "{body}"
    );
}

fn hpa(min: i32) -> Value {
    let mut h = yaml_file("examples/good/llm-gpu.yaml").remove(1);
    h["spec"]["minReplicas"] = json!(min);
    h
}

#[tokio::test]
async fn an_autoscaler_below_the_floor_is_denied_against_the_workload_it_targets() {
    let deployment = good();
    let router = router(&[&deployment]);
    let body = post(
        &router,
        "/validate",
        &as_user(review("CREATE", Some(&hpa(1)), false), DEV),
    )
    .await;
    assert!(!allowed(&body), "{body}");
    assert!(message(&body).contains("[zone-spread]"), "{body}");
    assert!(
        message(&body).contains("HorizontalPodAutoscaler llm lets it scale down to 1"),
        "{body}"
    );
    let body = post(
        &router,
        "/validate",
        &as_user(review("CREATE", Some(&hpa(2)), false), DEV),
    )
    .await;
    assert!(allowed(&body), "{body}");
    // An UPDATE from 2 to 1 is the same change.
    let body = post(
        &router,
        "/validate",
        &as_user(update_review(&hpa(1), &hpa(2), None), DEV),
    )
    .await;
    assert!(!allowed(&body), "{body}");
    // A KEDA ScaledObject with minReplicaCount 0 (KEDA's scale to zero).
    let so = json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "llm", "namespace": "ml"},
        "spec": {"scaleTargetRef": {"name": "llm"}, "minReplicaCount": 0, "maxReplicaCount": 4,
            "triggers": [{"type": "prometheus", "metadata": {"query": "x", "threshold": "1"}}]}});
    let mut rev = as_user(review("CREATE", Some(&so), false), DEV);
    rev["request"]["kind"] =
        json!({"group": "keda.sh", "version": "v1alpha1", "kind": "ScaledObject"});
    rev["request"]["resource"] =
        json!({"group": "keda.sh", "version": "v1alpha1", "resource": "scaledobjects"});
    let body = post(&router, "/validate", &rev).await;
    assert!(!allowed(&body), "{body}");
    assert!(message(&body).contains("ScaledObject llm"), "{body}");
}

#[tokio::test]
async fn an_autoscaler_applied_with_its_workload_waits_for_it_to_reach_the_cache() {
    // `kubectl apply -f` of a Deployment and its HPA: the HPA's review
    // arrives before the Deployment's watch event (here: 5 lookups miss).
    let deployment = good();
    let router = router_late(&[&deployment], 5);
    let body = post(
        &router,
        "/validate",
        &as_user(review("CREATE", Some(&hpa(1)), false), DEV),
    )
    .await;
    assert!(!allowed(&body), "{body}");
    assert!(message(&body).contains("[zone-spread]"), "{body}");
}

#[tokio::test]
async fn a_claim_template_applied_with_its_workload_is_waited_for_and_makes_it_a_gpu_workload() {
    let docs =
        yaml_file("tests/fixtures/rules/gpu-placement/fail-dra-claim-without-gpu-placement.yaml");
    let (template, deployment) = (docs[0].clone(), docs[1].clone());
    let policies = PolicySet::baseline().unwrap();
    let state = Arc::new(State::standalone(policies.clone()));
    // Following a cluster: the snapshot is rebuilt from reflectors.
    state.set_workloads(Arc::new(Cache::default()));
    let router = webhook::router(Arc::new(App {
        state: state.clone(),
        metrics: Arc::new(Metrics::new()),
        registry: None,
    }));
    // The template's watch event lands 50 ms after the Deployment's review
    // arrived, as in one `kubectl apply -f` of both.
    let later = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut context = waf_admission::Context::default();
        context.add_device_claim(
            waf_admission::context::DeviceClaimRef::from_value(template, "ml", "template").unwrap(),
        );
        later.store(waf_admission::state::Snapshot { policies, context });
    });
    let body = post(
        &router,
        "/validate",
        &as_user(review("CREATE", Some(&deployment), false), DEV),
    )
    .await;
    assert!(!allowed(&body), "{body}");
    assert!(message(&body).contains("[gpu-placement]"), "{body}");
}
