//! In the cluster: kube-runtime reflectors keep policies, exceptions,
//! namespaces, HPAs, PodDisruptionBudgets, (when KEDA is installed)
//! ScaledObjects, (when resource.k8s.io/v1 is served) DRA
//! ResourceClaims and ResourceClaimTemplates and (when the ServiceAccount
//! may list them) Nodes, slimmed to their labels, taints and allocatable
//! resources, and (when named) the price table's ConfigMap, in memory;
//! a change to anything the engine reads rebuilds the snapshot the webhook
//! reads (see `state.rs`), so the request path never calls the API server.
//! Policy status says whether each policy is in force (and, from the
//! ValidatingWebhookConfigurations, whether the webhook is sent every kind
//! it lists: `webhooks.rs`), and deny/warn decisions become Events. An object that cannot be read is reported and
//! skipped; it never stops the others or keeps the replica unready.
//!
//! Every background task is supervised: if one ends while the process is
//! not shutting down, [`run`] returns naming it and the process exits
//! non-zero, so Kubernetes restarts it instead of serving from a view that
//! no longer follows the cluster.
//!
//! One replica at a time (the holder of a Lease) writes policy status and
//! runs the background audit; every replica serves admission.

pub mod audit;
pub mod events;
pub mod lease;
pub mod reports;
pub mod snapshot;
pub mod status;
pub mod texts;
pub mod webhooks;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Node, NodeSpec, NodeStatus, Pod, ReplicationController, Secret,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::resource::v1::{ResourceClaim, ResourceClaimTemplate};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DeserializeGuard, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::{Notify, mpsc, watch};

use self::reports::{ReportDoc, ReportFormat};
use self::snapshot::{Builder, Inputs, PolicyReport, PricesInput, Unreadable};
use crate::metrics::Metrics;
use crate::policy::{API_VERSION, WellArchitectedException, WellArchitectedPolicy};
use crate::state::{DecisionEvent, EventReason, State};
use crate::tasks::{Task, Tasks};
use crate::workload::WorkloadKind;

/// Existing policy reports listed per request by the audit's writer.
const REPORTS_PER_PAGE: u32 = 5;

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
    /// Where unreadable objects are counted.
    pub metrics: Arc<Metrics>,
    /// Which policy report API the audit writes.
    pub reports: ReportFormat,
    /// Secrets of `namespace` that policies may name (pull secrets,
    /// signing keys): each watched alone, by name, as the Role allows.
    pub secrets: Vec<String>,
    /// The ConfigMap (namespace, name) holding the VM price table, watched
    /// alone by name; cost-budget judges nothing without it.
    pub prices_configmap: Option<(String, String)>,
}

/// A task that keeps a reflector store in sync and pokes `changed` on every
/// event, caching objects [`slim`]med.
fn watch<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    changed: Arc<Notify>,
    what: &'static str,
) -> Task
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    watch_with(api, watcher::Config::default(), writer, changed, what)
}

fn watch_with<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
    changed: Arc<Notify>,
    what: &'static str,
) -> Task
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let stream = watcher(api, config)
        .default_backoff()
        .modify(slim)
        .reflect(writer);
    let task = async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::warn!(error = %e, what, "watch failed; retrying with backoff, the last good view stays");
            }
            changed.notify_one();
        }
    };
    (what, task.boxed())
}

/// A task that keeps one of the audit's text stores in sync.
fn watch_texts<K>(api: Api<K>, mut writer: texts::TextWriter<K>, what: &'static str) -> Task
where
    K: texts::Cacheable + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let task = async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => writer.apply(event),
                Err(e) => {
                    tracing::warn!(error = %e, what, "watch failed; retrying with backoff, the last good view stays")
                }
            }
        }
    };
    (what, task.boxed())
}

/// `kubectl apply`'s record of what it applied: a copy of the object as
/// text, often its largest field.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what the engine never reads before an object is cached:
/// managedFields and the last-applied annotation, together most of a
/// kubectl-applied object's size (kube-rs's `reflector` examples do the
/// same). Nothing reads them: the engine reads typed specs, labels and the
/// pod template's annotations, never the object's own.
fn slim<K: Resource>(o: &mut K) {
    o.meta_mut().managed_fields = None;
    if let Some(annotations) = &mut o.meta_mut().annotations {
        annotations.remove(LAST_APPLIED);
    }
}

/// Runs until a background task ends; returns which one, so the caller
/// can exit (while shutting down, the Lease task ending is expected).
pub async fn run(
    client: Client,
    state: Arc<State>,
    events: mpsc::Receiver<DecisionEvent>,
    opts: ClusterOptions,
) -> String {
    let mut tasks = Tasks::new();
    let mut spawn = |(name, task): Task| tasks.spawn(name, task);
    let changed = Arc::new(Notify::new());
    let (policies, w) = reflector::store::<DeserializeGuard<WellArchitectedPolicy>>();
    spawn(watch(
        Api::all(client.clone()),
        w,
        changed.clone(),
        "WellArchitectedPolicy watch",
    ));
    let (exceptions, w) = reflector::store::<DeserializeGuard<WellArchitectedException>>();
    spawn(watch(
        Api::all(client.clone()),
        w,
        changed.clone(),
        "WellArchitectedException watch",
    ));
    let (namespaces, w) = reflector::store::<Namespace>();
    spawn(watch(
        Api::all(client.clone()),
        w,
        changed.clone(),
        "Namespace watch",
    ));
    let (hpas, w) = reflector::store::<HorizontalPodAutoscaler>();
    spawn(watch(
        Api::all(client.clone()),
        w,
        changed.clone(),
        "HorizontalPodAutoscaler watch",
    ));
    let (pdbs, w) = reflector::store::<PodDisruptionBudget>();
    spawn(watch(
        Api::all(client.clone()),
        w,
        changed.clone(),
        "PodDisruptionBudget watch",
    ));
    // Which kinds the webhook is sent, for policy status.
    let (webhooks, w) = reflector::store::<ValidatingWebhookConfiguration>();
    spawn(watch(
        Api::all(client.clone()),
        w,
        changed.clone(),
        "ValidatingWebhookConfiguration watch",
    ));
    // One watch per named Secret (fieldSelector on the name), so the Role
    // can grant just those names; none when no policy needs credentials.
    let mut secrets = Vec::new();
    for name in &opts.secrets {
        let (store, w) = reflector::store::<Secret>();
        spawn(watch_with(
            Api::namespaced(client.clone(), &opts.namespace),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
            w,
            changed.clone(),
            "Secret watch (registry credentials and keys)",
        ));
        secrets.push(store);
    }
    // The price table: one ConfigMap, by name. Not waited for: a missing
    // or forbidden one leaves cost-budget silent, never the replica unready.
    let prices = opts.prices_configmap.as_ref().map(|(namespace, name)| {
        let (store, w) = reflector::store::<ConfigMap>();
        spawn(watch_with(
            Api::namespaced(client.clone(), namespace),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
            w,
            changed.clone(),
            "ConfigMap watch (price table)",
        ));
        (format!("{namespace}/{name}"), store)
    });
    let scaled_objects = match scaled_objects(&client, changed.clone()).await {
        Some((store, task)) => {
            spawn(task);
            Some(store)
        }
        None => None,
    };
    let (resource_claims, resource_claim_templates) =
        match device_claims(&client, changed.clone()).await {
            Some((claims, templates, tasks)) => {
                for task in tasks {
                    spawn(task);
                }
                (Some(claims), Some(templates))
            }
            None => (None, None),
        };
    let nodes = match nodes(&client, changed.clone()).await {
        Some((store, task)) => {
            spawn(task);
            Some(store)
        }
        None => None,
    };
    spawn((
        "Event publisher",
        events::publish(client.clone(), events, opts.pod_name.clone()).boxed(),
    ));
    let leader = Arc::new(AtomicBool::new(false));
    spawn((
        "Lease holder",
        hold_lease(
            Api::namespaced(client.clone(), &opts.namespace),
            opts.lease_name.clone(),
            opts.pod_name.clone(),
            leader.clone(),
            changed.clone(),
            opts.stopping.clone(),
            opts.lease_released.clone(),
        )
        .boxed(),
    ));
    // Every kind, for the audit and for judging a scale or an autoscaler
    // against the workload it changes.
    let mut workloads = Workloads::default();
    let mut cache = |kind: WorkloadKind, (store, task): (texts::TextStore, Task)| {
        workloads.stores.push((kind, store));
        spawn(task);
    };
    cache(
        WorkloadKind::Deployment,
        texts_of::<Deployment>(&client, "Deployment watch (cache)"),
    );
    cache(
        WorkloadKind::StatefulSet,
        texts_of::<StatefulSet>(&client, "StatefulSet watch (cache)"),
    );
    cache(
        WorkloadKind::DaemonSet,
        texts_of::<DaemonSet>(&client, "DaemonSet watch (cache)"),
    );
    cache(
        WorkloadKind::ReplicaSet,
        texts_of::<ReplicaSet>(&client, "ReplicaSet watch (cache)"),
    );
    cache(
        WorkloadKind::ReplicationController,
        texts_of::<ReplicationController>(&client, "ReplicationController watch (cache)"),
    );
    cache(
        WorkloadKind::Job,
        texts_of::<Job>(&client, "Job watch (cache)"),
    );
    cache(
        WorkloadKind::CronJob,
        texts_of::<CronJob>(&client, "CronJob watch (cache)"),
    );
    cache(
        WorkloadKind::Pod,
        texts_of::<Pod>(&client, "Pod watch (cache)"),
    );
    // The AI-serving resources, once their CRDs are served.
    cache(
        WorkloadKind::InferenceService,
        served_texts_of::<texts::InferenceServiceObject>(&client, "InferenceService watch (cache)"),
    );
    cache(
        WorkloadKind::LLMInferenceService,
        served_texts_of::<texts::LLMInferenceServiceObject>(
            &client,
            "LLMInferenceService watch (cache)",
        ),
    );
    cache(
        WorkloadKind::LeaderWorkerSet,
        served_texts_of::<texts::LeaderWorkerSetObject>(&client, "LeaderWorkerSet watch (cache)"),
    );
    cache(
        WorkloadKind::Workspace,
        served_texts_of::<texts::WorkspaceObject>(&client, "Workspace watch (cache)"),
    );
    cache(
        WorkloadKind::InferenceSet,
        served_texts_of::<texts::InferenceSetObject>(&client, "InferenceSet watch (cache)"),
    );
    // KServe's runtimes: what an InferenceService's `model:` runs on.
    let mut serving_runtimes = Vec::new();
    for (kind, plural) in [
        ("ServingRuntime", "servingruntimes"),
        ("ClusterServingRuntime", "clusterservingruntimes"),
    ] {
        let (store, task) = served_store(&client, kind, plural, changed.clone());
        serving_runtimes.push(store);
        spawn(task);
    }
    let workloads = Arc::new(workloads);
    state.set_workloads(workloads.clone());
    let policy_api: Api<WellArchitectedPolicy> = Api::all(client.clone());
    let (reports_tx, reports_rx) = watch::channel(Vec::new());
    let writer = ReportWriter {
        client: client.clone(),
        format: opts.reports,
        resources: None,
        said_absent: false,
        metrics: opts.metrics.clone(),
    };
    spawn((
        "background audit",
        run_audit(
            state.clone(),
            policy_api.clone(),
            leader.clone(),
            opts.audit_interval,
            workloads.clone(),
            (writer, reports_rx),
        )
        .boxed(),
    ));
    let stores = Stores {
        policies,
        exceptions,
        namespaces,
        hpas,
        pdbs,
        scaled_objects,
        resource_claims,
        resource_claim_templates,
        nodes,
        secrets,
        prices,
        webhooks,
        serving_runtimes,
    };
    let keeper = keep_snapshot(
        stores,
        state,
        leader,
        changed,
        policy_api,
        opts.metrics,
        reports_tx,
    );
    spawn(("snapshot builder", keeper.boxed()));
    // The rest stop with the set, dropped on return.
    match tasks.next_ended().await {
        Some((name, ended)) => format!("{name} {ended}"),
        None => "no background task is left".to_owned(),
    }
}

struct Stores {
    policies: Store<DeserializeGuard<WellArchitectedPolicy>>,
    exceptions: Store<DeserializeGuard<WellArchitectedException>>,
    namespaces: Store<Namespace>,
    hpas: Store<HorizontalPodAutoscaler>,
    pdbs: Store<PodDisruptionBudget>,
    scaled_objects: Option<Store<DynamicObject>>,
    resource_claims: Option<Store<ResourceClaim>>,
    resource_claim_templates: Option<Store<ResourceClaimTemplate>>,
    /// None when the ServiceAccount may not list Nodes.
    nodes: Option<Store<Node>>,
    secrets: Vec<Store<Secret>>,
    /// The price table's ConfigMap (`namespace/name`), when one is named.
    prices: Option<(String, Store<ConfigMap>)>,
    webhooks: Store<ValidatingWebhookConfiguration>,
    /// ServingRuntimes and ClusterServingRuntimes (empty until KServe's
    /// CRDs are served; never waited for).
    serving_runtimes: Vec<Store<DynamicObject>>,
}

impl Stores {
    async fn synced(&self) {
        self.policies.wait_until_ready().await.ok();
        self.exceptions.wait_until_ready().await.ok();
        self.namespaces.wait_until_ready().await.ok();
        self.hpas.wait_until_ready().await.ok();
        self.pdbs.wait_until_ready().await.ok();
        self.webhooks.wait_until_ready().await.ok();
        if let Some(s) = &self.scaled_objects {
            s.wait_until_ready().await.ok();
        }
        if let Some(s) = &self.resource_claims {
            s.wait_until_ready().await.ok();
        }
        if let Some(s) = &self.resource_claim_templates {
            s.wait_until_ready().await.ok();
        }
        if let Some(s) = &self.nodes {
            s.wait_until_ready().await.ok();
        }
        for s in &self.secrets {
            s.wait_until_ready().await.ok();
        }
    }

    fn inputs(&self) -> Inputs {
        let mut unreadable = Vec::new();
        let policies = readable(&self.policies, "WellArchitectedPolicy", &mut unreadable);
        let exceptions = readable(
            &self.exceptions,
            "WellArchitectedException",
            &mut unreadable,
        );
        Inputs {
            policies,
            exceptions,
            unreadable,
            namespaces: self.namespaces.state(),
            hpas: self.hpas.state(),
            pdbs: self.pdbs.state(),
            scaled_objects: self
                .scaled_objects
                .as_ref()
                .map(Store::state)
                .unwrap_or_default(),
            resource_claims: self
                .resource_claims
                .as_ref()
                .map(Store::state)
                .unwrap_or_default(),
            resource_claim_templates: self
                .resource_claim_templates
                .as_ref()
                .map(Store::state)
                .unwrap_or_default(),
            nodes: self.nodes.as_ref().map(Store::state).unwrap_or_default(),
            secrets: self.secrets.iter().flat_map(Store::state).collect(),
            prices: self.prices.as_ref().map(|(name, store)| PricesInput {
                name: name.clone(),
                configmap: store.state().into_iter().next(),
            }),
            webhooks: self.webhooks.state(),
            serving_runtimes: self
                .serving_runtimes
                .iter()
                .flat_map(Store::state)
                .collect(),
        }
    }
}

/// The objects of a store that read as their kind; the others are listed
/// in `unreadable` with the decoding error.
fn readable<K>(
    store: &Store<DeserializeGuard<K>>,
    kind: &'static str,
    unreadable: &mut Vec<Unreadable>,
) -> Vec<Arc<K>>
where
    K: Resource + Clone,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let mut out = Vec::new();
    for guarded in store.state() {
        match &guarded.0 {
            Ok(object) => out.push(Arc::new(object.clone())),
            Err(invalid) => unreadable.push(Unreadable {
                kind,
                namespace: invalid.metadata.namespace.clone(),
                name: invalid.metadata.name.clone().unwrap_or_default(),
                uid: invalid.metadata.uid.clone(),
                generation: invalid.metadata.generation,
                error: invalid.error.clone(),
            }),
        }
    }
    out
}

/// Waits for every store's first list, then rebuilds the snapshot whenever
/// something the engine reads changed, and (on the Lease holder) writes
/// policy status and reports unreadable objects.
async fn keep_snapshot(
    stores: Stores,
    state: Arc<State>,
    leader: Arc<AtomicBool>,
    changed: Arc<Notify>,
    policy_api: Api<WellArchitectedPolicy>,
    metrics: Arc<Metrics>,
    policy_reports: watch::Sender<Vec<PolicyReport>>,
) {
    stores.synced().await;
    tracing::info!(
        keda = stores.scaled_objects.is_some(),
        nodes = stores.nodes.is_some(),
        "caches synced"
    );
    let mut builder = Builder::default();
    let mut reported_as_leader = false;
    loop {
        let inputs = stores.inputs();
        let leading = leader.load(Ordering::Acquire);
        let rebuilt = builder.build_if_changed(&inputs);
        match &rebuilt {
            Some((snapshot, _)) => {
                tracing::info!(
                    policies = snapshot.policies.policies().len(),
                    unreadable = inputs.unreadable.len(),
                    "policy snapshot in force"
                );
                metrics.cluster_nodes(snapshot.context.nodes().len());
                state.store(snapshot.clone());
                state.set_synced();
                policy_reports.send_replace(builder.reports().to_vec());
                for kind in ["WellArchitectedPolicy", "WellArchitectedException"] {
                    let count = inputs.unreadable.iter().filter(|u| u.kind == kind).count();
                    metrics.unreadable(kind, count as i64);
                }
            }
            None => tracing::debug!("no change the engine reads (status churn): snapshot kept"),
        }
        // A new Lease holder writes what the last build found.
        if leading && (rebuilt.is_some() || !reported_as_leader) {
            write_reports(&builder, &inputs, &state, &policy_api).await;
        }
        reported_as_leader = leading;
        changed.notified().await;
        tokio::time::sleep(COALESCE).await;
    }
}

/// Policy status for every policy, and an Event on each object that cannot
/// be read (the Event publisher drops repeats).
async fn write_reports(
    builder: &Builder,
    inputs: &Inputs,
    state: &State,
    policy_api: &Api<WellArchitectedPolicy>,
) {
    for report in builder.reports() {
        let current = inputs
            .policies
            .iter()
            .find(|p| p.name_any() == report.name)
            .and_then(|p| p.status.as_ref());
        let Some(body) = status::patch(current, report, jiff::Timestamp::now()) else {
            continue;
        };
        let result = policy_api
            .patch_status(&report.name, &PatchParams::default(), &Patch::Merge(&body))
            .await;
        if let Err(e) = result {
            tracing::warn!(policy = %report.name, error = %e, "could not write policy status");
        }
    }
    for problem in builder.object_problems() {
        state.record(DecisionEvent {
            api_version: API_VERSION.into(),
            kind: problem.kind.into(),
            namespace: problem.namespace.clone().unwrap_or_default(),
            name: problem.name.clone(),
            action: crate::policy::Action::Warn,
            reason: EventReason::Unusable,
            message: format!("skipped: {}", problem.error),
        });
    }
}

/// KEDA's ScaledObjects, when that CRD exists; its absence is not an error.
async fn scaled_objects(
    client: &Client,
    changed: Arc<Notify>,
) -> Option<(Store<DynamicObject>, Task)> {
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
    Some((store, watch(api, writer, changed, "ScaledObject watch")))
}

/// DRA's ResourceClaims and ResourceClaimTemplates, when resource.k8s.io/v1
/// is served (Kubernetes 1.34 and later); before that, GPUs are seen through
/// resource names only.
async fn device_claims(
    client: &Client,
    changed: Arc<Notify>,
) -> Option<(
    Store<ResourceClaim>,
    Store<ResourceClaimTemplate>,
    [Task; 2],
)> {
    let gvk = GroupVersionKind::gvk("resource.k8s.io", "v1", "ResourceClaimTemplate");
    if let Err(e) = kube::discovery::pinned_kind(client, &gvk).await {
        tracing::info!(reason = %e, "resource.k8s.io/v1 not served: DRA claims are not seen, GPUs only through resource names");
        return None;
    }
    let (claims, w) = reflector::store::<ResourceClaim>();
    let claims_task = watch(
        Api::all(client.clone()),
        w,
        changed.clone(),
        "ResourceClaim watch",
    );
    let (templates, w) = reflector::store::<ResourceClaimTemplate>();
    let templates_task = watch(
        Api::all(client.clone()),
        w,
        changed,
        "ResourceClaimTemplate watch",
    );
    Some((claims, templates, [claims_task, templates_task]))
}

/// The cluster's Nodes, when the ServiceAccount may list them: where pods
/// can run, for the rules that read GPU memory and zones from the Nodes a
/// pod can use. Without that grant (RBAC not given, a namespaced install)
/// the webhook judges as before, with no Nodes, and says so once; a watch
/// that can never list would keep the replica unready for good. A grant
/// given later is seen at the next start.
async fn nodes(client: &Client, changed: Arc<Notify>) -> Option<(Store<Node>, Task)> {
    let api: Api<Node> = Api::all(client.clone());
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Err(kube::Error::Api(status)) if status.is_forbidden() => {
            tracing::warn!(
                reason = %status.message,
                "may not list Nodes (grant list and watch on nodes, as the chart's ClusterRole does): judging without them, no GPU memory or zones read from Nodes"
            );
            return None;
        }
        // Anything else (the API server not reachable yet) is the watch's
        // to retry, as for every other store.
        _ => {}
    }
    let (store, writer) = reflector::store::<Node>();
    let mut writer = NodeWriter {
        writer,
        store: store.clone(),
    };
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let task = async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    if writer.apply(event) {
                        changed.notify_one();
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, what = "Node watch", "watch failed; retrying with backoff, the last good view stays")
                }
            }
        }
    };
    Some((store, ("Node watch", task.boxed())))
}

/// Keeps the Node store, each Node [`slim_node`]med, and says which events
/// change what the engine reads: kubelets rewrite every Node's status (a
/// heartbeat, conditions) every few seconds, and a snapshot rebuild per
/// heartbeat would be most of a large cluster's work.
struct NodeWriter {
    writer: reflector::store::Writer<Node>,
    store: Store<Node>,
}

impl NodeWriter {
    /// Applies one watch event; true when the Nodes the engine reads
    /// changed: a Node added, deleted, or different once slimmed, or a
    /// (re)list done, which replaces the store whole.
    fn apply(&mut self, event: watcher::Event<Node>) -> bool {
        let event = event.modify(slim_node);
        let changed = match &event {
            watcher::Event::Apply(node) => self
                .store
                .get(&ObjectRef::from_obj(node))
                .is_none_or(|old| *old != *node),
            watcher::Event::Delete(_) | watcher::Event::InitDone => true,
            watcher::Event::Init | watcher::Event::InitApply(_) => false,
        };
        self.writer.apply_watcher_event(&event);
        changed
    }
}

/// Keeps of a Node only what the engine reads (`placement::NodeRef`): its
/// name, labels, taints and allocatable resources, an empty list or map
/// the same as none. The rest (status conditions, images and addresses,
/// annotations, managedFields, resourceVersion) is most of a Node's size
/// and all of its churn, so two slimmed Nodes are equal exactly when the
/// engine reads them the same.
fn slim_node(node: &mut Node) {
    let taints = node
        .spec
        .take()
        .and_then(|s| s.taints)
        .filter(|t| !t.is_empty());
    let allocatable = node
        .status
        .take()
        .and_then(|s| s.allocatable)
        .filter(|a| !a.is_empty());
    let meta = std::mem::take(&mut node.metadata);
    node.metadata = ObjectMeta {
        name: meta.name,
        labels: meta.labels.filter(|l| !l.is_empty()),
        ..ObjectMeta::default()
    };
    node.spec = taints.map(|taints| NodeSpec {
        taints: Some(taints),
        ..NodeSpec::default()
    });
    node.status = allocatable.map(|allocatable| NodeStatus {
        allocatable: Some(allocatable),
        ..NodeStatus::default()
    });
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

/// Judges every cached workload on the leader, every `interval`,
/// writes the counts into each policy's `status.audit`, and the results
/// into policy reports.
async fn run_audit(
    state: Arc<State>,
    policy_api: Api<WellArchitectedPolicy>,
    leader: Arc<AtomicBool>,
    interval: Duration,
    workloads: Arc<Workloads>,
    (mut writer, policy_reports): (ReportWriter, watch::Receiver<Vec<PolicyReport>>),
) {
    workloads.wait_until_ready().await;
    loop {
        if leader.load(Ordering::Acquire) && state.is_synced() {
            let cached = workloads.stores.iter().map(|(_, s)| s.state()).collect();
            let snapshot = state.load();
            let now = jiff::Timestamp::now();
            // Judged in the order the reports list workloads, so each is
            // folded in and dropped: one workload and one decision at a time.
            let mut run = audit::Run::new(&snapshot, now);
            for object in audit::in_report_order(cached) {
                run.judge(&object);
            }
            let judged = run.judged;
            let (summary, namespace_reports) = run.finish();
            writer.metrics.audit(&summary, std::time::SystemTime::now());
            for (policy, counts) in summary {
                let body = serde_json::json!({"status": {"audit": counts}});
                if let Err(e) = policy_api
                    .patch_status(&policy, &PatchParams::default(), &Patch::Merge(&body))
                    .await
                {
                    tracing::warn!(%policy, error = %e, "could not write the audit counts");
                }
            }
            let docs = namespace_reports.finish(&policy_reports.borrow());
            writer.write(docs).await;
            tracing::info!(workloads = judged, "background audit done");
        }
        tokio::time::sleep(interval).await;
    }
}

/// The workload cache: one text store per kind.
#[derive(Default)]
pub struct Workloads {
    stores: Vec<(WorkloadKind, texts::TextStore)>,
}

impl Workloads {
    async fn wait_until_ready(&self) {
        for (_, store) in &self.stores {
            store.wait_until_ready().await;
        }
    }
}

impl crate::state::WorkloadIndex for Workloads {
    fn text(&self, kind: WorkloadKind, namespace: &str, name: &str) -> Option<String> {
        let (_, store) = self.stores.iter().find(|(k, _)| *k == kind)?;
        store.get(namespace, name).map(|c| c.json.to_string())
    }
}

/// How often a kind whose CRD is not installed is looked for again.
const CRD_RECHECK: Duration = Duration::from_secs(60);

/// Whether the apiserver serves this kind now.
async fn served(client: &Client, gvk: &GroupVersionKind) -> bool {
    kube::discovery::pinned_kind(client, gvk).await.is_ok()
}

/// A text store of a kind a CRD adds, and the task that fills it: until
/// the kind is served the store is listed and empty (the audit and the
/// webhook never wait for it), looked for again every [`CRD_RECHECK`], so
/// a CRD installed after the webhook is seen without a restart.
fn served_texts_of<K>(client: &Client, what: &'static str) -> (texts::TextStore, Task)
where
    K: texts::Cacheable
        + Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    let (store, mut writer) = texts::store::<K>();
    let client = client.clone();
    let gvk = GroupVersionKind::gvk(&K::group(&()), &K::version(&()), &K::kind(&()));
    let task = async move {
        let mut said = false;
        while !served(&client, &gvk).await {
            writer.none_served();
            if !said {
                tracing::info!(kind = %gvk.kind, "not served (its CRD is not installed): none to judge; looked for again every minute");
                said = true;
            }
            tokio::time::sleep(CRD_RECHECK).await;
        }
        watch_texts(Api::<K>::all(client), writer, what).1.await;
    };
    (store, (what, task.boxed()))
}

/// A store of a KServe runtime kind (namespaced or cluster-wide, as
/// `kind` is), filled once the kind is served: never waited for.
fn served_store(
    client: &Client,
    kind: &'static str,
    plural: &'static str,
    changed: Arc<Notify>,
) -> (Store<DynamicObject>, Task) {
    let gvk = GroupVersionKind::gvk("serving.kserve.io", "v1alpha1", kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
    let writer = reflector::store::Writer::<DynamicObject>::new(resource.clone());
    let store = writer.as_reader();
    let client = client.clone();
    let what = if kind == "ServingRuntime" {
        "ServingRuntime watch"
    } else {
        "ClusterServingRuntime watch"
    };
    let task = async move {
        while !served(&client, &gvk).await {
            tokio::time::sleep(CRD_RECHECK).await;
        }
        let api = Api::<DynamicObject>::all_with(client, &resource);
        watch(api, writer, changed, what).1.await;
    };
    (store, (what, task.boxed()))
}

/// A text store of one kind and the watch that fills it.
fn texts_of<K>(client: &Client, what: &'static str) -> (texts::TextStore, Task)
where
    K: texts::Cacheable + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let (store, writer) = texts::store::<K>();
    (store, watch_texts(Api::all(client.clone()), writer, what))
}

/// Writes the audit's reports through the report API, when it is served.
struct ReportWriter {
    client: Client,
    format: ReportFormat,
    /// (namespaced, cluster) kinds, once discovery found them.
    resources: Option<(ApiResource, ApiResource)>,
    /// The API's absence was logged (once).
    said_absent: bool,
    metrics: Arc<Metrics>,
}

impl ReportWriter {
    /// Discovers the report kinds; their absence is said once, counted in
    /// a gauge, and asked again next run (the CRDs may be installed later).
    async fn discover(&mut self) -> Option<(ApiResource, ApiResource)> {
        let (namespaced, cluster) = self.format.kinds()?;
        if let Some(found) = &self.resources {
            return Some(found.clone());
        }
        let found = match (
            kube::discovery::pinned_kind(&self.client, &namespaced).await,
            kube::discovery::pinned_kind(&self.client, &cluster).await,
        ) {
            (Ok((n, _)), Ok((c, _))) => (n, c),
            (Err(e), _) | (_, Err(e)) => {
                if !self.said_absent {
                    tracing::warn!(
                        api = %namespaced.api_version(),
                        reason = %e,
                        "the policy report API is not served (install its CRDs, e.g. the chart's reports.installCRDs): no reports written, everything else goes on"
                    );
                    self.said_absent = true;
                }
                self.metrics.reports_available(false);
                return None;
            }
        };
        tracing::info!(api = %namespaced.api_version(), "writing policy reports");
        self.metrics.reports_available(true);
        self.resources = Some(found.clone());
        Some(found)
    }

    async fn write(&mut self, docs: Vec<ReportDoc>) {
        let Some((namespaced, cluster)) = self.discover().await else {
            return;
        };
        let ours = ListParams::default().labels(&format!(
            "{}={}",
            reports::MANAGED_BY.0,
            reports::MANAGED_BY.1
        ));
        // Of each existing report, only a digest of its content is kept,
        // and they are listed a few at a time: a report holds up to
        // MAX_RESULTS results, some 600 KiB.
        let mut existing: BTreeMap<(Option<String>, String), [u8; 32]> = BTreeMap::new();
        for resource in [&namespaced, &cluster] {
            let api = Api::<DynamicObject>::all_with(self.client.clone(), resource);
            let mut page = ours.clone().limit(REPORTS_PER_PAGE);
            loop {
                let list = match api.list(&page).await {
                    Ok(list) => list,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not list policy reports; trying again next audit");
                        // The CRDs may have been removed: discover again.
                        self.resources = None;
                        return;
                    }
                };
                for o in list.items {
                    let key = (o.metadata.namespace.clone(), o.name_any());
                    let report = serde_json::to_value(&o).unwrap_or_default();
                    existing.insert(key, reports::fingerprint(&report));
                }
                match list.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => page.continue_token = Some(token),
                    None => break,
                }
            }
        }
        let (mut written, mut unchanged, mut deleted) = (0, 0, 0);
        let apply = PatchParams::apply(reports::FIELD_MANAGER).force();
        for doc in &docs {
            let (resource, kind) = match &doc.namespace {
                Some(_) => (&namespaced, self.format.kinds().map(|k| k.0)),
                None => (&cluster, self.format.kinds().map(|k| k.1)),
            };
            let Some(kind) = kind else { return };
            let body = match doc.object(&kind) {
                Ok(body) => body,
                Err(e) => {
                    tracing::warn!(namespace = doc.namespace.as_deref().unwrap_or(""), error = %e, "could not write a policy report");
                    continue;
                }
            };
            let key = (doc.namespace.clone(), reports::NAME.to_owned());
            if existing.remove(&key).is_some_and(|old| {
                serde_json::from_str(body.get()).is_ok_and(|new| reports::fingerprint(&new) == old)
            }) {
                unchanged += 1;
                continue;
            }
            let api = match &doc.namespace {
                Some(ns) => {
                    Api::<DynamicObject>::namespaced_with(self.client.clone(), ns, resource)
                }
                None => Api::<DynamicObject>::all_with(self.client.clone(), resource),
            };
            match api.patch(reports::NAME, &apply, &Patch::Apply(&body)).await {
                Ok(_) => written += 1,
                Err(e) => {
                    tracing::warn!(namespace = doc.namespace.as_deref().unwrap_or(""), error = %e, "could not write a policy report")
                }
            }
        }
        // What is left was ours and has nothing to report any more.
        for (namespace, name) in existing.keys() {
            let api = match namespace {
                Some(ns) => {
                    Api::<DynamicObject>::namespaced_with(self.client.clone(), ns, &namespaced)
                }
                None => Api::<DynamicObject>::all_with(self.client.clone(), &cluster),
            };
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => deleted += 1,
                Err(e) => tracing::warn!(error = %e, "could not delete a stale policy report"),
            }
        }
        tracing::info!(written, unchanged, deleted, "policy reports");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Context;
    use crate::policy::compiled::{Policy, PolicySet};
    use crate::state::Snapshot;

    /// The summary and reports one audit run gives for one Deployment.
    fn audited(
        d: &texts::Cached,
    ) -> (
        BTreeMap<String, crate::policy::AuditSummary>,
        Vec<ReportDoc>,
    ) {
        let policy: WellArchitectedPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
            "metadata": {"name": "p"}, "spec": {"action": "Warn"}}))
        .unwrap();
        let snapshot = Snapshot {
            policies: PolicySet::new(vec![Policy::compile(&policy).unwrap()]),
            context: Context::default(),
        };
        let now = "2026-12-01T10:00:00Z".parse().unwrap();
        let mut run = audit::Run::new(&snapshot, now);
        run.judge(d);
        assert_eq!(run.judged, 1);
        let (summary, reports) = run.finish();
        (summary, reports.finish(&[]))
    }

    /// A GPU Node as a kubelet and kubectl leave it: the labels, taint
    /// and allocatable the engine reads, and the rest.
    fn gpu_node() -> serde_json::Value {
        serde_json::json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "gpu-1", "uid": "9f1c", "resourceVersion": "100",
                "creationTimestamp": "2026-12-01T10:00:00Z",
                "labels": {"nvidia.com/gpu.memory": "24576",
                    "topology.kubernetes.io/zone": "westeurope-1"},
                "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
                "managedFields": [{"manager": "kubelet", "operation": "Update",
                    "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}]},
            "spec": {"podCIDR": "10.244.1.0/24", "providerID": "azure:///vm/gpu-1",
                "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]},
            "status": {
                "capacity": {"cpu": "24", "nvidia.com/gpu": "1"},
                "allocatable": {"cpu": "23500m", "nvidia.com/gpu": "1"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                    "lastHeartbeatTime": "2026-12-01T10:00:00Z",
                    "lastTransitionTime": "2026-12-01T09:00:00Z"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.7"}],
                "images": [{"names": ["nvcr.io/nvidia/tritonserver:24.08-py3"], "sizeBytes": 17000000000_u64}],
                "nodeInfo": {"machineID": "m", "systemUUID": "s", "bootID": "b",
                    "kernelVersion": "6.8", "osImage": "Ubuntu", "containerRuntimeVersion": "containerd://2.0",
                    "kubeletVersion": "v1.34.0", "kubeProxyVersion": "", "operatingSystem": "linux",
                    "architecture": "amd64"}}})
    }

    fn node(value: serde_json::Value) -> Node {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_cached_node_keeps_its_name_labels_taints_and_allocatable_only() {
        let whole = gpu_node();
        let mut slim = node(whole.clone());
        slim_node(&mut slim);
        assert_eq!(
            serde_json::to_value(&slim).unwrap(),
            serde_json::json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "gpu-1", "labels": {"nvidia.com/gpu.memory": "24576",
                    "topology.kubernetes.io/zone": "westeurope-1"}},
                "spec": {"taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]},
                "status": {"allocatable": {"cpu": "23500m", "nvidia.com/gpu": "1"}}})
        );
        // The engine reads it as it reads the whole Node.
        assert_eq!(
            crate::placement::NodeRef::from(&slim),
            crate::placement::NodeRef::from(&node(whole))
        );
        // Nothing to keep: nothing left but the name.
        let mut bare = node(serde_json::json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n", "labels": {}}, "spec": {"taints": []},
            "status": {"allocatable": {}, "phase": "Running"}}));
        slim_node(&mut bare);
        assert_eq!(
            serde_json::to_value(&bare).unwrap(),
            serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}})
        );
    }

    #[tokio::test]
    async fn a_node_heartbeat_changes_nothing_the_engine_reads_and_a_label_taint_or_allocatable_change_does()
     {
        let (store, writer) = reflector::store::<Node>();
        let mut writer = NodeWriter {
            writer,
            store: store.clone(),
        };
        let first = node(gpu_node());
        assert!(!writer.apply(watcher::Event::Init));
        assert!(!writer.apply(watcher::Event::InitApply(first.clone())));
        assert!(writer.apply(watcher::Event::InitDone), "the first list");
        store.wait_until_ready().await.unwrap();
        assert_eq!(store.len(), 1);
        assert!(
            !writer.apply(watcher::Event::Apply(first.clone())),
            "the same Node again"
        );

        // The kubelet's heartbeat, a new condition, an annotation, and
        // the resourceVersion and managedFields that come with each.
        let mut heartbeat = gpu_node();
        heartbeat["metadata"]["resourceVersion"] = "101".into();
        heartbeat["metadata"]["annotations"]["csi.volume.kubernetes.io/nodeid"] = "{}".into();
        heartbeat["metadata"]["managedFields"][0]["time"] = "2026-12-01T10:00:40Z".into();
        heartbeat["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-12-01T10:00:40Z".into();
        heartbeat["status"]["conditions"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "MemoryPressure", "status": "False"}));
        heartbeat["status"]["images"] = serde_json::json!([]);
        heartbeat["status"]["capacity"]["cpu"] = "32".into();
        assert!(!writer.apply(watcher::Event::Apply(node(heartbeat.clone()))));

        // JSON pointers: `~1` is a `/` in a key.
        let changes = [
            (
                "a label",
                "/metadata/labels/topology.kubernetes.io~1zone",
                "westeurope-2",
            ),
            ("a taint", "/spec/taints/0/effect", "NoExecute"),
            ("allocatable", "/status/allocatable/nvidia.com~1gpu", "0"),
        ];
        for (what, at, value) in changes {
            let mut changed = heartbeat.clone();
            *changed.pointer_mut(at).unwrap() = value.into();
            assert!(
                writer.apply(watcher::Event::Apply(node(changed))),
                "{what} changed"
            );
            assert!(
                writer.apply(watcher::Event::Apply(node(heartbeat.clone()))),
                "{what} changed back"
            );
        }
        let mut new = gpu_node();
        new["metadata"]["name"] = "gpu-2".into();
        assert!(writer.apply(watcher::Event::Apply(node(new))), "a new Node");
        assert_eq!(store.len(), 2);
        assert!(writer.apply(watcher::Event::Delete(first)), "a Node gone");
        assert_eq!(store.len(), 1);
        // What the store holds is slimmed.
        let kept = store.state();
        assert!(kept[0].metadata.annotations.is_none());
        assert!(kept[0].metadata.resource_version.is_none());
        assert!(kept[0].status.as_ref().unwrap().conditions.is_none());
    }

    #[tokio::test]
    async fn a_cached_workload_keeps_no_managed_fields_nor_last_applied_and_is_judged_the_same() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/reviews/gpu-deployment-apply.json"
        );
        let review: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut object = review["request"]["object"].clone();
        // As a watch sees it once the controller has written its status.
        object["status"] = serde_json::json!({"replicas": 2, "readyReplicas": 2,
            "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]});
        let applied: Deployment = serde_json::from_value(object.clone()).unwrap();
        assert!(!applied.managed_fields().is_empty());
        assert!(applied.annotations().contains_key(LAST_APPLIED));
        // Through the same writer as `watch_texts`.
        let (store, mut writer) = texts::store::<Deployment>();
        for event in [
            watcher::Event::Init,
            watcher::Event::InitApply(applied.clone()),
            watcher::Event::InitDone,
        ] {
            writer.apply(event);
        }
        store.wait_until_ready().await;
        let cached = store.state();
        assert_eq!(cached.len(), 1);
        let cached = cached[0].as_ref();
        let back: Deployment = serde_json::from_str(&cached.json).unwrap();
        assert!(back.managed_fields().is_empty());
        assert!(!back.annotations().contains_key(LAST_APPLIED));
        assert_eq!(back.status, None);
        assert_eq!(back.spec, applied.spec);
        assert_eq!(back.labels(), applied.labels());
        assert!(
            cached.json.len() * 2 < object.to_string().len(),
            "the cached text is under half the applied object"
        );
        let (summary, reports) = audited(cached);
        assert_eq!(summary["p"].workloads, 1, "governed: judged, not skipped");
        // The object as the API server sent it, read whole.
        let whole = texts::Cached {
            json: serde_json::to_string(&applied).unwrap().into_boxed_str(),
            ..texts::Cached {
                kind: cached.kind,
                namespace: cached.namespace.clone(),
                name: cached.name.clone(),
                json: Box::default(),
            }
        };
        assert_eq!((summary, reports), audited(&whole));
    }
}
