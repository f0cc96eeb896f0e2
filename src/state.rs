//! What the webhook's request path reads, and nothing else: one immutable
//! snapshot of policies and cluster context, swapped whole when anything
//! changes (a policy is applied, an HPA appears). Reading is lock-free, so
//! a request never waits on the controller and never calls the API server.
//!
//! In standalone mode (`serve --policy`) the snapshot is built once from
//! files. In the cluster, `cluster::run` builds it from reflector stores.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use crate::context::Context;
use crate::policy::Action;
use crate::policy::compiled::PolicySet;
use crate::workload::WorkloadKind;

/// The workloads that exist, as the cluster's reflectors hold them: what a
/// change of replicas through the scale subresource, or an autoscaler
/// applied on its own, is judged against. Read on the request path, so it
/// answers from memory, never from the API server.
pub trait WorkloadIndex: Send + Sync {
    /// The object as JSON text, if it is cached.
    fn text(&self, kind: WorkloadKind, namespace: &str, name: &str) -> Option<String>;
}

/// Policies and context as of one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub policies: PolicySet,
    pub context: Context,
}

/// A deny or warn decision the cluster side may record as a Kubernetes
/// Event on the workload (never sent for dry-run requests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionEvent {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The strictest action among the violations (Deny or Warn).
    pub action: Action,
    pub reason: EventReason,
    /// One line per violation: `[rule] message. Fix: …`.
    pub message: String,
}

/// Why an Event is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventReason {
    /// A workload was denied or warned at admission.
    PolicyViolation,
    /// A policy or exception cannot be read or used, so it is skipped.
    Unusable,
}

impl EventReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::PolicyViolation => "PolicyViolation",
            EventReason::Unusable => "Unusable",
        }
    }
}

/// Shared between the request path, the controller and the audit.
pub struct State {
    snapshot: ArcSwap<Snapshot>,
    /// Every store has its first full list: the snapshot can be judged by.
    synced: AtomicBool,
    /// The process is shutting down: never ready again.
    stopping: AtomicBool,
    events: Option<mpsc::Sender<DecisionEvent>>,
    /// Set once by the controller; none in standalone mode.
    workloads: OnceLock<Arc<dyn WorkloadIndex>>,
    /// The identities of the operators that make workloads from AI-serving
    /// resources (`serve --operator-account`).
    operators: Vec<String>,
}

impl State {
    /// A state that is ready at once: standalone mode and tests.
    pub fn standalone(policies: PolicySet) -> State {
        State {
            snapshot: ArcSwap::from_pointee(Snapshot {
                policies,
                context: Context::default(),
            }),
            synced: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            events: None,
            workloads: OnceLock::new(),
            operators: crate::ai::OPERATOR_ACCOUNTS.map(str::to_owned).to_vec(),
        }
    }

    /// The operators whose writes of objects made from AI-serving
    /// resources are judged through those resources.
    pub fn with_operators(mut self, operators: Vec<String>) -> State {
        self.operators = operators;
        self
    }

    pub fn operators(&self) -> &[String] {
        &self.operators
    }

    /// A state that turns ready when the controller says its stores synced.
    /// Decision events go to `events` (a bounded channel: when it is full,
    /// events are dropped rather than slowing admission).
    pub fn for_cluster(events: mpsc::Sender<DecisionEvent>) -> State {
        State {
            snapshot: ArcSwap::from_pointee(Snapshot {
                policies: PolicySet::new(Vec::new()),
                context: Context::default(),
            }),
            synced: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            events: Some(events),
            workloads: OnceLock::new(),
            operators: crate::ai::OPERATOR_ACCOUNTS.map(str::to_owned).to_vec(),
        }
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn store(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// `/readyz`: synced, and not shutting down.
    pub fn is_ready(&self) -> bool {
        self.is_synced() && !self.stopping.load(Ordering::Acquire)
    }

    /// Whether the snapshot holds what the cluster holds: until then the
    /// request path gives no verdict (an empty policy set would admit all).
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Called by the controller once every store has synced.
    pub fn set_synced(&self) {
        self.synced.store(true, Ordering::Release);
    }

    /// Called at SIGTERM: `/readyz` fails from now on, so Kubernetes takes
    /// the replica out of the Service while it finishes what it has.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Gives the request path the cluster's workloads (once; later calls
    /// are ignored).
    pub fn set_workloads(&self, index: Arc<dyn WorkloadIndex>) {
        let _ = self.workloads.set(index);
    }

    /// Whether the snapshot follows a cluster (its reflectors), so a
    /// moment's wait can see an object applied just before.
    pub fn follows_cluster(&self) -> bool {
        self.workloads.get().is_some()
    }

    /// A cached workload's text, when the controller keeps a cache.
    pub fn workload_text(&self, kind: WorkloadKind, namespace: &str, name: &str) -> Option<String> {
        self.workloads.get()?.text(kind, namespace, name)
    }

    /// Offers an event to the cluster side without waiting.
    /// Whether decisions are recorded as Events (in a cluster).
    pub fn records_events(&self) -> bool {
        self.events.is_some()
    }

    pub fn record(&self, event: DecisionEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.try_send(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_lost_at_shutdown_never_comes_back_with_a_rebuild() {
        let (tx, _rx) = mpsc::channel(1);
        let state = State::for_cluster(tx);
        assert!(!state.is_ready() && !state.is_synced());
        state.set_synced();
        assert!(state.is_ready());
        state.set_stopping();
        // The controller goes on rebuilding during the shutdown delay.
        state.set_synced();
        assert!(!state.is_ready(), "ready again during the shutdown delay");
        assert!(state.is_synced(), "requests in flight are still judged");
    }
}
