//! In the cluster: kube-runtime reflectors keep policies, exceptions,
//! namespaces, HPAs and (when KEDA is installed) ScaledObjects in memory;
//! every change rebuilds the snapshot the webhook reads (see `state.rs`),
//! so the request path never calls the API server. Policy status says
//! whether each policy is in force, and deny/warn decisions become Events.
//!
//! Not here yet: the background audit of existing workloads into
//! `status.audit`, and a Lease so one replica writes status (status writes
//! converge instead: each replica writes only what differs).

pub mod events;
pub mod snapshot;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::{Notify, mpsc};

use self::snapshot::{Builder, Inputs};
use crate::policy::{WellArchitectedException, WellArchitectedPolicy};
use crate::state::{DecisionEvent, State};

/// Bursts of changes (a `kubectl apply -f dir/`) rebuild once.
const COALESCE: Duration = Duration::from_millis(100);

pub struct ClusterOptions {
    /// This replica's name, for Events' reporting instance.
    pub pod_name: String,
}

/// Keeps a reflector store in sync and pokes `changed` on every event.
fn watch<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    changed: Arc<Notify>,
    what: &'static str,
) where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
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
    let scaled_objects = watch_scaled_objects(&client, changed.clone()).await;
    tokio::spawn(events::publish(client.clone(), events, opts.pod_name));

    // Ready only once every store has its first full list.
    let synced = async {
        policies.wait_until_ready().await.ok();
        exceptions.wait_until_ready().await.ok();
        namespaces.wait_until_ready().await.ok();
        hpas.wait_until_ready().await.ok();
        if let Some(s) = &scaled_objects {
            s.wait_until_ready().await.ok();
        }
    };
    synced.await;
    tracing::info!(keda = scaled_objects.is_some(), "caches synced");

    let policy_api: Api<WellArchitectedPolicy> = Api::all(client.clone());
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
        };
        let (snapshot, reports) = builder.build(&inputs);
        tracing::info!(
            policies = snapshot.policies.policies().len(),
            "policy snapshot in force"
        );
        state.store(snapshot);
        state.set_ready(true);
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
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::warn!(error = %e, "ScaledObject watch failed; retrying");
            }
            changed.notify_one();
        }
    });
    Some(store)
}
