//! Kubernetes Events for deny and warn decisions, on the workload, so
//! `kubectl describe` and event exporters show them. Rate-limited twice: the
//! same message on the same workload at most once per window, and a global
//! token bucket, so a crash-looping controller of the user cannot make us
//! flood the API server.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;

use crate::policy::Action;
use crate::state::{DecisionEvent, EventReason};

/// The apiserver refuses an Event note over 1 KiB.
const NOTE_MAX: usize = 1024;

pub struct RateLimiter {
    window: Duration,
    seen: HashMap<u64, Instant>,
    capacity: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(window: Duration, per_second: f64, burst: f64, now: Instant) -> RateLimiter {
        RateLimiter {
            window,
            seen: HashMap::new(),
            capacity: burst,
            per_second,
            tokens: burst,
            last: now,
        }
    }

    pub fn allow(&mut self, e: &DecisionEvent, now: Instant) -> bool {
        let mut h = DefaultHasher::new();
        (&e.namespace, &e.kind, &e.name, &e.message).hash(&mut h);
        let key = h.finish();
        if self
            .seen
            .get(&key)
            .is_some_and(|t| now.duration_since(*t) < self.window)
        {
            return false;
        }
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.per_second)
            .min(self.capacity);
        self.last = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        if self.seen.len() > 10_000 {
            let window = self.window;
            self.seen.retain(|_, t| now.duration_since(*t) < window);
        }
        self.seen.insert(key, now);
        true
    }
}

/// Cuts at a character boundary so the note fits the API's limit.
pub fn note(message: &str) -> String {
    if message.len() <= NOTE_MAX {
        return message.to_owned();
    }
    let mut end = NOTE_MAX - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

pub async fn publish(client: Client, mut rx: mpsc::Receiver<DecisionEvent>, instance: String) {
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: "waf-admission.dev/controller".into(),
            instance: Some(instance),
        },
    );
    let mut limiter = RateLimiter::new(Duration::from_secs(60), 5.0, 50.0, Instant::now());
    while let Some(e) = rx.recv().await {
        if !limiter.allow(&e, Instant::now()) {
            continue;
        }
        let reference = ObjectReference {
            api_version: Some(e.api_version.clone()),
            kind: Some(e.kind.clone()),
            name: Some(e.name.clone()),
            namespace: Some(e.namespace.clone()),
            ..ObjectReference::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: e.reason.as_str().into(),
            note: Some(note(&e.message)),
            action: match (e.reason, e.action) {
                (EventReason::Unusable, _) => "Skipped",
                (_, Action::Deny) => "Denied",
                _ => "Warned",
            }
            .into(),
            secondary: None,
        };
        if let Err(err) = recorder.publish(&event, &reference).await {
            tracing::warn!(error = %err, kind = %e.kind, name = %e.name, "could not record an Event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, message: &str) -> DecisionEvent {
        DecisionEvent {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: "ml".into(),
            name: name.into(),
            action: Action::Deny,
            reason: EventReason::PolicyViolation,
            message: message.into(),
        }
    }

    #[test]
    fn the_same_message_on_the_same_workload_is_recorded_once_per_window() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(Duration::from_secs(60), 5.0, 50.0, t0);
        assert!(l.allow(&event("a", "m"), t0));
        assert!(!l.allow(&event("a", "m"), t0 + Duration::from_secs(30)));
        assert!(l.allow(&event("a", "other"), t0 + Duration::from_secs(30)));
        assert!(l.allow(&event("a", "m"), t0 + Duration::from_secs(61)));
    }

    #[test]
    fn a_flood_of_distinct_events_is_held_to_the_bucket() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(Duration::from_secs(60), 5.0, 50.0, t0);
        let allowed = (0..1000)
            .filter(|i| l.allow(&event(&format!("w{i}"), "m"), t0))
            .count();
        assert_eq!(allowed, 50);
        // One second later, five more.
        let later = t0 + Duration::from_secs(1);
        let allowed = (1000..2000)
            .filter(|i| l.allow(&event(&format!("w{i}"), "m"), later))
            .count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn notes_fit_the_api_limit() {
        let long = "é".repeat(2000);
        let n = note(&long);
        assert!(n.len() <= NOTE_MAX);
        assert!(n.ends_with('…'));
        assert_eq!(note("short"), "short");
    }
}
