//! What the webhook's request path reads, and nothing else: one immutable
//! snapshot of policies and cluster context, swapped whole when anything
//! changes (a policy is applied, an HPA appears). Reading is lock-free, so
//! a request never waits on the controller and never calls the API server.
//!
//! In standalone mode (`serve --policy`) the snapshot is built once from
//! files. In the cluster, `cluster::run` builds it from reflector stores.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use crate::context::Context;
use crate::policy::Action;
use crate::policy::compiled::PolicySet;

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
    /// One line per violation: `[rule] message. Fix: …`.
    pub message: String,
}

/// Shared between the request path, the controller and the audit.
pub struct State {
    snapshot: ArcSwap<Snapshot>,
    ready: AtomicBool,
    events: Option<mpsc::Sender<DecisionEvent>>,
}

impl State {
    /// A state that is ready at once: standalone mode and tests.
    pub fn standalone(policies: PolicySet) -> State {
        State {
            snapshot: ArcSwap::from_pointee(Snapshot {
                policies,
                context: Context::default(),
            }),
            ready: AtomicBool::new(true),
            events: None,
        }
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
            ready: AtomicBool::new(false),
            events: Some(events),
        }
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn store(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Offers an event to the cluster side without waiting.
    pub fn record(&self, event: DecisionEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.try_send(event);
        }
    }
}
