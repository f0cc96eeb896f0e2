//! In the cluster: kube-runtime reflectors keep policies, exceptions,
//! namespaces, HPAs, PodDisruptionBudgets and (when KEDA is installed)
//! ScaledObjects in memory;
//! every change rebuilds the snapshot the webhook reads (see `state.rs`),
//! so the request path never calls the API server. Policy status says
//! whether each policy is in force, and deny/warn decisions become Events.
//!
//! One replica at a time (the holder of a Lease) writes policy status and
//! runs the background audit; every replica serves admission.

pub mod audit;
pub mod events;
pub mod lease;
pub mod snapshot;
pub mod status;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::{Notify, mpsc, watch};

use self::snapshot::{Builder, Inputs};
use crate::policy::{WellArchitectedException, WellArchitectedPolicy};
use crate::state::{DecisionEvent, State};

/// Bursts of changes (a `kubectl apply -f dir/`) rebuild once.
const COALESCE: Duration = Duration::from_millis(100);

pub struct ClusterOptions {
    /// This replica's name: the Lease holder identity and Events' instance.
    pub pod_name: String,
    /// The namespace the controller runs in, where its Lease lives.
    pub namespace: String,
    pub lease_name: String,
    /// How often the background audit judges every existing workload.
    pub audit_interval: Duration,
    /// Turns true when the process begins to shut down: the Lease is then
    /// released (if held) and `lease_released` notified.
    pub stopping: watch::Receiver<bool>,
    pub lease_released: Arc<Notify>,
}

/// Keeps a reflector store in sync and pokes `changed` on every event.
fn watch<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    changed: Arc<Notify>,
    what: &'static str,
) where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::warn!(error = %e, what, "watch failed; retrying with backoff, the last good view stays");
            }
            changed.notify_one();
        }
    });
}

/// Runs until the process ends.
pub async fn run(
    client: Client,
    state: Arc<State>,
    events: mpsc::Receiver<DecisionEvent>,
    opts: ClusterOptions,
) {
    let changed = Arc::new(Notify::new());
    let (policies, w) = reflector::store::<WellArchitectedPolicy>();
    watch(
        Api::all(client.clone()),
        w,
        changed.clone(),
        "WellArchitectedPolicy",
    );
    let (exceptions, w) = reflector::store::<WellArchitectedException>();
    watch(
        Api::all(client.clone()),
        w,
        changed.clone(),
        "WellArchitectedException",
    );
    let (namespaces, w) = reflector::store::<Namespace>();
    watch(Api::all(client.clone()), w, changed.clone(), "Namespace");
    let (hpas, w) = reflector::store::<HorizontalPodAutoscaler>();
    watch(
        Api::all(client.clone()),
        w,
        changed.clone(),
        "HorizontalPodAutoscaler",
    );
    let (pdbs, w) = reflector::store::<PodDisruptionBudget>();
    watch(
        Api::all(client.clone()),
        w,
        changed.clone(),
        "PodDisruptionBudget",
    );
    let scaled_objects = watch_scaled_objects(&client, changed.clone()).await;
    tokio::spawn(events::publish(
        client.clone(),
        events,
        opts.pod_name.clone(),
    ));
    let leader = Arc::new(AtomicBool::new(false));
    tokio::spawn(hold_lease(
        Api::namespaced(client.clone(), &opts.namespace),
        opts.lease_name.clone(),
        opts.pod_name.clone(),
        leader.clone(),
        changed.clone(),
        opts.stopping.clone(),
        opts.lease_released.clone(),
    ));

    // Ready only once every store has its first full list.
    let synced = async {
        policies.wait_until_ready().await.ok();
        exceptions.wait_until_ready().await.ok();
        namespaces.wait_until_ready().await.ok();
        hpas.wait_until_ready().await.ok();
        pdbs.wait_until_ready().await.ok();
        if let Some(s) = &scaled_objects {
            s.wait_until_ready().await.ok();
        }
    };
    synced.await;
    tracing::info!(keda = scaled_objects.is_some(), "caches synced");

    let policy_api: Api<WellArchitectedPolicy> = Api::all(client.clone());
    tokio::spawn(run_audit(
        client.clone(),
        state.clone(),
        policy_api.clone(),
        leader.clone(),
        opts.audit_interval,
    ));
    let mut builder = Builder::default();
    loop {
        let inputs = Inputs {
            policies: policies.state(),
            exceptions: exceptions.state(),
            namespaces: namespaces.state(),
            hpas: hpas.state(),
            scaled_objects: scaled_objects
                .as_ref()
                .map(Store::state)
                .unwrap_or_default(),
            pdbs: pdbs.state(),
        };
        let (snapshot, reports) = builder.build(&inputs);
        tracing::info!(
            policies = snapshot.policies.policies().len(),
            "policy snapshot in force"
        );
        state.store(snapshot);
        state.set_ready(true);
        let reports = if leader.load(Ordering::Acquire) {
            reports
        } else {
            Vec::new()
        };
        for report in &reports {
            let Some(object) = inputs.policies.iter().find(|p| p.name_any() == report.name) else {
                continue;
            };
            if let Some(body) = status::patch(object, report, jiff::Timestamp::now()) {
                let result = policy_api
                    .patch_status(&report.name, &PatchParams::default(), &Patch::Merge(&body))
                    .await;
                if let Err(e) = result {
                    tracing::warn!(policy = %report.name, error = %e, "could not write policy status");
                }
            }
        }
        changed.notified().await;
        tokio::time::sleep(COALESCE).await;
    }
}

/// KEDA's ScaledObjects, when that CRD exists; its absence is not an error.
async fn watch_scaled_objects(
    client: &Client,
    changed: Arc<Notify>,
) -> Option<Store<DynamicObject>> {
    let gvk = GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject");
    let (resource, _) = match kube::discovery::pinned_kind(client, &gvk).await {
        Ok(found) => found,
        Err(e) => {
            tracing::info!(reason = %e, "KEDA ScaledObjects not served: only HPAs count as autoscalers");
            return None;
        }
    };
    let writer = reflector::store::Writer::<DynamicObject>::new(resource.clone());
    let store = writer.as_reader();
    let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
    watch(api, writer, changed, "ScaledObject");
    Some(store)
}

/// Renews or takes the Lease every few seconds; a replica that gains it
/// rebuilds at once so the statuses it now owns get written.
async fn hold_lease(
    api: Api<Lease>,
    name: String,
    me: String,
    leader: Arc<AtomicBool>,
    changed: Arc<Notify>,
    mut stopping: watch::Receiver<bool>,
    released: Arc<Notify>,
) {
    let every = Duration::from_secs(lease::LEASE_SECONDS as u64 / 3);
    loop {
        let held = lease::try_hold(&api, &name, &me).await;
        if held && !leader.swap(true, Ordering::AcqRel) {
            changed.notify_one();
        } else if !held {
            leader.store(false, Ordering::Release);
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            // A dropped sender is no shutdown: keep holding.
            Ok(_) = stopping.wait_for(|stop| *stop) => break,
        }
    }
    if leader.swap(false, Ordering::AcqRel) {
        lease::release(&api, &name, &me).await;
    }
    released.notify_one();
}

/// Judges every Deployment and StatefulSet on the leader, every `interval`,
/// and writes the counts into each policy's `status.audit`.
async fn run_audit(
    client: Client,
    state: Arc<State>,
    policy_api: Api<WellArchitectedPolicy>,
    leader: Arc<AtomicBool>,
    interval: Duration,
) {
    let nothing = Arc::new(Notify::new());
    let (deployments, w) = reflector::store::<Deployment>();
    watch(Api::all(client.clone()), w, nothing.clone(), "Deployment");
    let (statefulsets, w) = reflector::store::<StatefulSet>();
    watch(Api::all(client), w, nothing, "StatefulSet");
    deployments.wait_until_ready().await.ok();
    statefulsets.wait_until_ready().await.ok();
    loop {
        if leader.load(Ordering::Acquire) && state.is_ready() {
            let (ds, ss) = (deployments.state(), statefulsets.state());
            let objects = ds
                .iter()
                .map(|d| serde_json::to_value(d.as_ref()))
                .chain(ss.iter().map(|s| serde_json::to_value(s.as_ref())))
                .filter_map(Result::ok);
            let summary = audit::summarize(&state.load(), objects, jiff::Timestamp::now());
            for (policy, counts) in summary {
                let body = serde_json::json!({"status": {"audit": counts}});
                if let Err(e) = policy_api
                    .patch_status(&policy, &PatchParams::default(), &Patch::Merge(&body))
                    .await
                {
                    tracing::warn!(%policy, error = %e, "could not write the audit counts");
                }
            }
            tracing::info!("background audit done");
        }
        tokio::time::sleep(interval).await;
    }
}
