//! The cache of workloads (every kind; ReplicaSets, Jobs and Pods only where
//! no core controller made them, see [`Cacheable::made_by_its_owner`]),
//! which the audit judges and the request path reads to judge a scale or an
//! autoscaler against the workload it changes: each object kept as
//! its compact JSON text, without managedFields, the last-applied
//! annotation and `status`, instead of as a typed object. A typed
//! Deployment in a reflector store costs some 19 KiB (every optional field
//! of its pod spec inline, every string, map and list its own allocation);
//! its text, about 2 KB. The audit reads each text with the one-pass reader
//! the webhook uses, one workload at a time.
//!
//! Events are applied as kube-runtime's reflector applies them: `Apply`
//! and `Delete` at once; a (re)list is buffered from `Init` and swapped in
//! at `InitDone`, so an object the list no longer holds is gone and the
//! audit never sees half a list.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::watcher;
use tokio::sync::watch;

use crate::workload::WorkloadKind;

/// One cached workload.
#[derive(Debug, PartialEq)]
pub struct Cached {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    /// The object as compact JSON, slimmed (see [`Cacheable::to_cached`]).
    pub json: Box<str>,
}

/// (namespace, name): unique within one kind's store.
type Key = (String, String);
type Objects = BTreeMap<Key, Arc<Cached>>;

/// A kind the audit caches as text.
pub trait Cacheable: Resource + serde::Serialize + Sized {
    const KIND: WorkloadKind;

    fn clear_status(&mut self);

    /// Whether a core controller made it from its owner's template, as its
    /// controller reference says (a Pod of a ReplicaSet, a ReplicaSet of a
    /// Deployment): judged through that owner, and not kept, so the cache
    /// holds one entry per workload rather than one per pod. A Pod whose
    /// reference names a kind that never makes Pods (a Deployment) is kept
    /// and judged itself. Admission proves the maker by the requester; a
    /// reference of the right kind is what the audit can read afterwards.
    fn made_by_its_owner(&self) -> bool {
        let child = Self::KIND;
        self.meta()
            .owner_references
            .iter()
            .flatten()
            .filter(|o| o.controller == Some(true))
            .any(|o| {
                let owner = crate::workload::Owner {
                    group: crate::workload::Owner::group_of(&o.api_version).to_owned(),
                    kind: o.kind.clone(),
                    name: o.name.clone(),
                    uid: o.uid.clone(),
                    controller: true,
                };
                // An AI operator's object (KServe's predictor Deployment, a
                // LeaderWorkerSet's StatefulSets) is judged through the
                // resource it comes from, as a core controller's is.
                crate::ownership::makes(&owner, child).is_some()
                    || crate::ai::made_from(&owner, child)
            })
    }

    /// Drops what the engine never reads (managedFields, the last-applied
    /// annotation, `status`) and keeps the rest as compact JSON.
    fn to_cached(mut self) -> serde_json::Result<Cached> {
        super::slim(&mut self);
        self.clear_status();
        let (namespace, name) = key_of(&self);
        Ok(Cached {
            kind: Self::KIND,
            namespace,
            name,
            json: serde_json::to_string(&self)?.into_boxed_str(),
        })
    }
}

impl Cacheable for Deployment {
    const KIND: WorkloadKind = WorkloadKind::Deployment;
    fn clear_status(&mut self) {
        self.status = None;
    }
}

impl Cacheable for StatefulSet {
    const KIND: WorkloadKind = WorkloadKind::StatefulSet;
    fn clear_status(&mut self) {
        self.status = None;
    }
}

impl Cacheable for DaemonSet {
    const KIND: WorkloadKind = WorkloadKind::DaemonSet;
    fn clear_status(&mut self) {
        self.status = None;
    }
}

impl Cacheable for ReplicaSet {
    const KIND: WorkloadKind = WorkloadKind::ReplicaSet;
    fn clear_status(&mut self) {
        self.status = None;
    }
}

impl Cacheable for ReplicationController {
    const KIND: WorkloadKind = WorkloadKind::ReplicationController;
    fn clear_status(&mut self) {
        self.status = None;
    }
}

impl Cacheable for Job {
    const KIND: WorkloadKind = WorkloadKind::Job;
    fn clear_status(&mut self) {
        self.status = None;
    }
}

impl Cacheable for CronJob {
    const KIND: WorkloadKind = WorkloadKind::CronJob;
    fn clear_status(&mut self) {
        self.status = None;
    }
}

impl Cacheable for Pod {
    const KIND: WorkloadKind = WorkloadKind::Pod;
    fn clear_status(&mut self) {
        self.status = None;
    }
}

/// An AI-serving resource as the cache keeps it: its metadata and the
/// rest of its fields as they are (the engine reads them with `ai::read`).
/// `status` is dropped, except what says how KServe runs an
/// InferenceService (its deployment mode and the runtime it chose).
macro_rules! ai_object {
    ($name:ident, $kind:ident, $group:literal, $version:literal, $plural:literal) => {
        #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
        pub struct $name {
            #[serde(rename = "apiVersion", default)]
            pub api_version: String,
            #[serde(default)]
            pub kind: String,
            #[serde(default)]
            pub metadata: ObjectMeta,
            #[serde(flatten)]
            pub rest: serde_json::Map<String, serde_json::Value>,
        }

        impl Resource for $name {
            type DynamicType = ();
            type Scope = kube::core::NamespaceResourceScope;
            fn kind(_: &()) -> Cow<'_, str> {
                stringify!($kind).into()
            }
            fn group(_: &()) -> Cow<'_, str> {
                $group.into()
            }
            fn version(_: &()) -> Cow<'_, str> {
                $version.into()
            }
            fn plural(_: &()) -> Cow<'_, str> {
                $plural.into()
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }

        impl Cacheable for $name {
            const KIND: WorkloadKind = WorkloadKind::$kind;
            fn clear_status(&mut self) {
                let kept = self.rest.remove("status").and_then(|s| {
                    let s = s.as_object()?;
                    let kept: serde_json::Map<String, serde_json::Value> = [
                        "deploymentMode",
                        "servingRuntimeName",
                        "clusterServingRuntimeName",
                    ]
                    .iter()
                    .filter_map(|k| Some((k.to_string(), s.get(*k)?.clone())))
                    .collect();
                    (Self::KIND == WorkloadKind::InferenceService && !kept.is_empty())
                        .then_some(serde_json::Value::Object(kept))
                });
                if let Some(kept) = kept {
                    self.rest.insert("status".into(), kept);
                }
            }
        }
    };
}

ai_object!(
    InferenceServiceObject,
    InferenceService,
    "serving.kserve.io",
    "v1beta1",
    "inferenceservices"
);
ai_object!(
    LLMInferenceServiceObject,
    LLMInferenceService,
    "serving.kserve.io",
    "v1alpha1",
    "llminferenceservices"
);
ai_object!(
    LeaderWorkerSetObject,
    LeaderWorkerSet,
    "leaderworkerset.x-k8s.io",
    "v1",
    "leaderworkersets"
);
ai_object!(
    WorkspaceObject,
    Workspace,
    "kaito.sh",
    "v1beta1",
    "workspaces"
);
ai_object!(
    InferenceSetObject,
    InferenceSet,
    "kaito.sh",
    "v1beta1",
    "inferencesets"
);

/// The reading half: cheap to clone, shared with the audit.
#[derive(Clone)]
pub struct TextStore {
    objects: Arc<RwLock<Objects>>,
    ready: watch::Receiver<bool>,
}

/// The writing half, fed by one watcher.
pub struct TextWriter<K> {
    objects: Arc<RwLock<Objects>>,
    /// A list in progress, between `Init` and `InitDone`.
    buffer: Option<Objects>,
    ready: watch::Sender<bool>,
    _kind: std::marker::PhantomData<fn(K)>,
}

/// An empty store and the writer that fills it.
pub fn store<K: Cacheable>() -> (TextStore, TextWriter<K>) {
    let objects = Arc::new(RwLock::new(Objects::new()));
    let (tx, rx) = watch::channel(false);
    (
        TextStore {
            objects: objects.clone(),
            ready: rx,
        },
        TextWriter {
            objects,
            buffer: None,
            ready: tx,
            _kind: std::marker::PhantomData,
        },
    )
}

impl TextStore {
    /// Returns once the first list is in (or the writer is gone).
    pub async fn wait_until_ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Every cached object, in (namespace, name) order.
    pub fn state(&self) -> Vec<Arc<Cached>> {
        let objects = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        objects.values().cloned().collect()
    }

    /// One object, by namespace and name.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Cached>> {
        let objects = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        objects
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Cacheable> TextWriter<K> {
    /// Applies one watcher event. An object that cannot be written as JSON
    /// (it came from the API server typed, so this should not happen) is
    /// said and left out, never the others.
    /// Marks the store listed and empty: its kind is not served (its CRD
    /// is not installed), so there is nothing to wait for.
    pub fn none_served(&mut self) {
        self.apply(watcher::Event::Init);
        self.apply(watcher::Event::InitDone);
    }

    pub fn apply(&mut self, event: watcher::Event<K>) {
        match event {
            watcher::Event::Apply(o) => {
                // Adopted by an owner since: no longer kept.
                if o.made_by_its_owner() {
                    self.write().remove(&key_of(&o));
                } else if let Some(c) = cached(o) {
                    self.write().insert(key(&c), Arc::new(c));
                }
            }
            watcher::Event::Delete(o) => {
                self.write().remove(&key_of(&o));
            }
            watcher::Event::Init => self.buffer = Some(Objects::new()),
            watcher::Event::InitApply(o) => {
                if o.made_by_its_owner() {
                    return;
                }
                if let Some(c) = cached(o) {
                    self.buffer
                        .get_or_insert_with(Objects::new)
                        .insert(key(&c), Arc::new(c));
                }
            }
            watcher::Event::InitDone => {
                let listed = self.buffer.take().unwrap_or_default();
                // The old view is dropped outside the lock.
                let old = std::mem::replace(&mut *self.write(), listed);
                drop(old);
                self.ready.send_replace(true);
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Objects> {
        self.objects.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// (namespace, name) of a stored object, which always has both.
fn key_of<K: Resource>(o: &K) -> Key {
    let meta = o.meta();
    let namespace = meta.namespace.clone().filter(|n| !n.is_empty());
    (
        namespace.unwrap_or_else(|| "default".to_owned()),
        meta.name.clone().unwrap_or_default(),
    )
}

fn key(c: &Cached) -> Key {
    (c.namespace.clone(), c.name.clone())
}

fn cached<K: Cacheable>(o: K) -> Option<Cached> {
    match o.to_cached() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(kind = K::KIND.as_str(), error = %e, "cannot cache a workload for the audit; it is left out");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::LAST_APPLIED;
    use serde_json::json;

    fn deployment(namespace: &str, name: &str, image: &str) -> Deployment {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace,
                "managedFields": [{"manager": "kubectl", "operation": "Update"}],
                "annotations": {LAST_APPLIED: "{\"big\": true}", "team": "ml"}},
            "spec": {"selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": image}]}}},
            "status": {"replicas": 1, "conditions": [{"type": "Available", "status": "True"}]}
        }))
        .unwrap()
    }

    fn names(store: &TextStore) -> Vec<(String, String)> {
        store
            .state()
            .iter()
            .map(|c| (c.namespace.clone(), c.name.clone()))
            .collect()
    }

    fn pod(name: &str, owner: Option<(&str, &str)>) -> Pod {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ml"},
            "spec": {"containers": [{"name": "c", "image": "docker.io/vllm/vllm-openai:latest"}]}});
        if let Some((api_version, kind)) = owner {
            p["metadata"]["ownerReferences"] = json!([{"apiVersion": api_version, "kind": kind,
                "name": "owner", "uid": "u", "controller": true}]);
        }
        serde_json::from_value(p).unwrap()
    }

    #[tokio::test]
    async fn pods_their_controller_made_are_left_to_the_owner_and_every_other_pod_is_kept() {
        let (store, mut w) = store::<Pod>();
        w.apply(watcher::Event::Init);
        w.apply(watcher::Event::InitApply(pod(
            "made",
            Some(("apps/v1", "ReplicaSet")),
        )));
        w.apply(watcher::Event::InitApply(pod("bare", None)));
        // A Deployment never makes Pods: the reference is a claim.
        w.apply(watcher::Event::InitApply(pod(
            "forged",
            Some(("apps/v1", "Deployment")),
        )));
        w.apply(watcher::Event::InitApply(pod(
            "ray",
            Some(("ray.io/v1", "RayCluster")),
        )));
        w.apply(watcher::Event::InitDone);
        store.wait_until_ready().await;
        assert_eq!(
            names(&store),
            [
                ("ml".into(), "bare".into()),
                ("ml".into(), "forged".into()),
                ("ml".into(), "ray".into())
            ]
        );
        // Adopted by a ReplicaSet since: judged through it from now on.
        w.apply(watcher::Event::Apply(pod(
            "bare",
            Some(("apps/v1", "ReplicaSet")),
        )));
        assert!(store.get("ml", "bare").is_none());
        assert!(store.get("ml", "forged").is_some());
    }

    #[test]
    fn the_text_keeps_the_spec_and_labels_and_drops_what_the_engine_never_reads() {
        let d = deployment("ml", "llm", "registry.example/llm:1");
        let c = d.clone().to_cached().unwrap();
        let back: serde_json::Value = serde_json::from_str(&c.json).unwrap();
        assert_eq!(back["apiVersion"], "apps/v1");
        assert_eq!(back["kind"], "Deployment");
        assert!(back["metadata"].get("managedFields").is_none());
        assert_eq!(back["metadata"]["annotations"], json!({"team": "ml"}));
        assert!(back.get("status").is_none());
        let again: Deployment = serde_json::from_value(back).unwrap();
        assert_eq!(again.spec, d.spec);
        assert_eq!(again.metadata.labels, d.metadata.labels);
        assert_eq!((c.namespace.as_str(), c.name.as_str()), ("ml", "llm"));
        assert_eq!(c.kind, WorkloadKind::Deployment);
    }

    #[tokio::test]
    async fn a_relist_replaces_the_view_at_its_end_and_forgets_what_it_no_longer_holds() {
        let (store, mut w) = store::<Deployment>();
        w.apply(watcher::Event::Init);
        w.apply(watcher::Event::InitApply(deployment("b", "one", "i:1")));
        w.apply(watcher::Event::InitApply(deployment("a", "two", "i:1")));
        assert!(store.is_empty(), "half a list is never seen");
        assert!(!*store.ready.borrow());
        w.apply(watcher::Event::InitDone);
        store.wait_until_ready().await;
        assert_eq!(
            names(&store),
            [("a".into(), "two".into()), ("b".into(), "one".into())]
        );

        w.apply(watcher::Event::Apply(deployment("a", "two", "i:2")));
        w.apply(watcher::Event::Apply(deployment("c", "three", "i:1")));
        w.apply(watcher::Event::Delete(deployment("b", "one", "i:1")));
        assert_eq!(
            names(&store),
            [("a".into(), "two".into()), ("c".into(), "three".into())]
        );
        assert!(store.state()[0].json.contains("i:2"), "an update replaces");

        // The watch restarts (410 Gone): the list no longer has a/two.
        w.apply(watcher::Event::Init);
        w.apply(watcher::Event::InitApply(deployment("c", "three", "i:1")));
        assert_eq!(store.len(), 2, "the old view stays until the list is in");
        w.apply(watcher::Event::InitDone);
        assert_eq!(names(&store), [("c".into(), "three".into())]);
    }
}
