//! Prometheus metrics, registered in one place. Labels take bounded values
//! only (endpoint, code, rule, action, result), never object names, so the
//! series count cannot grow with the cluster. No label is called
//! `namespace`, `pod`, `job`, `instance`, `service` or `container`:
//! Prometheus puts those on every series of a target, and the chart's
//! ServiceMonitor honours our labels (for `endpoint`, which
//! prometheus-operator would set to the port name). Two labels name
//! objects, each with its bound said here:
//! - `policy` on the audit gauges: WellArchitectedPolicies are cluster-scoped
//!   and written by the platform team (a handful), and a deleted policy's
//!   series are removed at the next audit run.
//! - `object_namespace` on `denials_total`: namespaces can churn (one per
//!   CI run), so at most [`DENIAL_NAMESPACES_MAX`] get a series of their own in a
//!   process's life; denials in any further namespace count under
//!   [`OTHER_NAMESPACES`], a name no namespace can have.
//!
//! The dashboard and alerts in `charts/waf-admission` query these names;
//! `tests/observability.rs` holds them to what this module exports.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::policy::AuditSummary;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub rule: &'static str,
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub endpoint: &'static str,
    pub verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub object_namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, Ord, PartialOrd, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
}

/// The `reason`s of `connections_refused_total`: which limit was full.
pub const REFUSAL_REASONS: [&str; 3] = ["total", "per_client", "handshakes"];

/// Namespaces with a denial series of their own, per process.
pub const DENIAL_NAMESPACES_MAX: usize = 64;
/// Where denials in namespaces past the bound are counted: Kubernetes
/// namespace names are DNS labels, so none can be `_other`.
pub const OTHER_NAMESPACES: &str = "_other";

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram>,
    decisions: Family<DecisionLabels, Counter>,
    verdicts: Family<VerdictLabels, Counter>,
    tls_reloads: Family<ResultLabels, Counter>,
    policy_reloads: Family<ResultLabels, Counter>,
    unreadable: Family<KindLabels, Gauge>,
    reports_available: Gauge,
    denials: Family<NamespaceLabels, Counter>,
    /// The namespaces that have a `denials` series.
    denial_namespaces: Mutex<HashSet<String>>,
    tls_expiry: Gauge,
    synced: Gauge,
    ready: Gauge,
    cluster_nodes: Gauge,
    audit_last_run: Gauge,
    audit_violations: Family<PolicyLabels, Gauge>,
    audit_workloads: Family<PolicyLabels, Gauge>,
    /// The policies that have audit series, so a deleted one's are removed.
    audited: Mutex<BTreeSet<PolicyLabels>>,
    connections_open: Gauge,
    connections_refused: Family<ReasonLabels, Counter>,
    connections_closed: Family<ReasonLabels, Counter>,
    log_lines_dropped: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Sub-millisecond buckets: the webhook answers in microseconds, and a
/// histogram that starts at 5 ms would hide every regression.
/// The top buckets reach the apiserver's longest timeout (10 s in the
/// chart's schema), so a latency near `timeoutSeconds` shows as such
/// instead of as "above 1 s".
const LATENCY_BUCKETS: [f64; 17] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("waf_admission");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by endpoint and status code",
            requests.clone(),
        );
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(LATENCY_BUCKETS)
        });
        registry.register(
            "request_duration_seconds",
            "Time from request received to response ready, by endpoint",
            latency.clone(),
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "violations",
            "Violations found in admission requests, by rule and action",
            decisions.clone(),
        );
        let verdicts = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "admission_verdicts",
            "Admission answers by endpoint and verdict (allowed, denied, patched, invalid, unavailable)",
            verdicts.clone(),
        );
        let tls_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "tls_reloads",
            "Certificate reloads from disk, by result (ok, refused)",
            tls_reloads.clone(),
        );
        let policy_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Standalone --policy files reloaded after a change, by result (ok, refused)",
            policy_reloads.clone(),
        );
        let unreadable = Family::<KindLabels, Gauge>::default();
        registry.register(
            "unreadable_objects",
            "Policies and exceptions skipped because they cannot be read, by kind",
            unreadable.clone(),
        );
        let reports_available = Gauge::default();
        registry.register(
            "report_api_available",
            "1 when the policy report API (--reports) is served and reports are written, 0 when its CRDs are absent",
            reports_available.clone(),
        );
        let denials = Family::<NamespaceLabels, Counter>::default();
        registry.register(
            "denials",
            format!(
                "Admission requests denied, by the object's namespace (at most {DENIAL_NAMESPACES_MAX}, then {OTHER_NAMESPACES})"
            ),
            denials.clone(),
        );
        let tls_expiry = Gauge::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate in use, in seconds since the epoch",
            tls_expiry.clone(),
        );
        let synced = Gauge::default();
        registry.register(
            "synced",
            "1 once policies, exceptions, namespaces and autoscalers have synced from the API server (always 1 standalone)",
            synced.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 while /readyz answers 200: synced and not shutting down",
            ready.clone(),
        );
        let cluster_nodes = Gauge::default();
        registry.register(
            "cluster_nodes",
            "Nodes in the policy snapshot in force, read by the rules that look at where pods can run (0 standalone, or when the ServiceAccount may not list Nodes)",
            cluster_nodes.clone(),
        );
        let started: Gauge = Gauge::default();
        started.set(unix_seconds(SystemTime::now()));
        registry.register(
            "start_time_seconds",
            "When this process started, in seconds since the epoch",
            started,
        );
        let audit_last_run = Gauge::default();
        registry.register(
            "audit_last_run_timestamp_seconds",
            "When this replica last finished a background audit, in seconds since the epoch (0: never; only the Lease holder runs it)",
            audit_last_run.clone(),
        );
        let audit_violations = Family::<PolicyLabels, Gauge>::default();
        registry.register(
            "audit_violations",
            "Violations the last background audit found in existing workloads, by owning policy",
            audit_violations.clone(),
        );
        let audit_workloads = Family::<PolicyLabels, Gauge>::default();
        registry.register(
            "audit_workloads",
            "Existing workloads each policy governed at the last background audit",
            audit_workloads.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "TLS connections the webhook listener holds now (handshaking included)",
            connections_open.clone(),
        );
        let connections_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections closed at accept, by the limit that was full (total: --max-connections; per_client: --max-connections-per-client or one address's share of the pending handshakes; handshakes: --max-pending-handshakes)",
            connections_refused.clone(),
        );
        // Every reason at 0 from the start, so a rate or an alert on one
        // has a series before the first refusal.
        for reason in REFUSAL_REASONS {
            let _ = connections_refused.get_or_create(&ReasonLabels { reason });
        }
        let connections_closed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_closed_by_limit",
            "Connections the webhook closed on a limit, by reason (handshake_timeout, idle_timeout)",
            connections_closed.clone(),
        );
        let log_lines_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because the log writer's queue was full (the request path never waits on the log)",
            log_lines_dropped.clone(),
        );
        Metrics {
            registry,
            connections_open,
            connections_refused,
            connections_closed,
            log_lines_dropped,
            unreadable,
            reports_available,
            denials,
            denial_namespaces: Mutex::new(HashSet::new()),
            tls_expiry,
            synced,
            ready,
            cluster_nodes,
            audit_last_run,
            audit_violations,
            audit_workloads,
            audited: Mutex::new(BTreeSet::new()),
            requests,
            latency,
            decisions,
            verdicts,
            tls_reloads,
            policy_reloads,
        }
    }

    pub fn request(&self, endpoint: &'static str, code: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { endpoint, code })
            .inc();
        self.latency
            .get_or_create(&EndpointLabels { endpoint })
            .observe(seconds);
    }

    pub fn violation(&self, rule: &'static str, action: &'static str) {
        self.decisions
            .get_or_create(&DecisionLabels { rule, action })
            .inc();
    }

    pub fn verdict(&self, endpoint: &'static str, verdict: Verdict) {
        let verdict = verdict.as_str();
        self.verdicts
            .get_or_create(&VerdictLabels { endpoint, verdict })
            .inc();
    }

    pub fn unreadable(&self, kind: &'static str, count: i64) {
        self.unreadable
            .get_or_create(&KindLabels { kind })
            .set(count);
    }

    pub fn reports_available(&self, available: bool) {
        self.reports_available.set(i64::from(available));
    }

    pub fn tls_reload(&self, ok: bool) {
        self.tls_reloads
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "refused" },
            })
            .inc();
    }

    pub fn policy_reload(&self, ok: bool) {
        self.policy_reloads
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "refused" },
            })
            .inc();
    }

    /// A denied request, counted under its namespace while fewer than
    /// [`DENIAL_NAMESPACES_MAX`] namespaces have a series, else under
    /// [`OTHER_NAMESPACES`]. Cluster-scoped objects (policies) have no
    /// namespace and are counted in `admission_verdicts` only.
    pub fn denial(&self, namespace: &str) {
        if namespace.is_empty() {
            return;
        }
        let namespace = match self.denial_namespaces.lock() {
            Ok(mut seen) => {
                if seen.contains(namespace)
                    || (seen.len() < DENIAL_NAMESPACES_MAX && seen.insert(namespace.to_owned()))
                {
                    namespace
                } else {
                    OTHER_NAMESPACES
                }
            }
            Err(_) => OTHER_NAMESPACES,
        };
        self.denials
            .get_or_create(&NamespaceLabels {
                object_namespace: namespace.to_owned(),
            })
            .inc();
    }

    /// The serving certificate now in use expires at `not_after`.
    pub fn tls_certificate_expiry(&self, not_after: SystemTime) {
        self.tls_expiry.set(unix_seconds(not_after));
    }

    /// The state `/readyz` reports, read when `/metrics` is encoded.
    pub fn readiness(&self, synced: bool, ready: bool) {
        self.synced.set(i64::from(synced));
        self.ready.set(i64::from(ready));
    }

    /// How many Nodes the snapshot now in force knows.
    pub fn cluster_nodes(&self, count: usize) {
        self.cluster_nodes
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// One background audit run's counts, per policy; policies no longer
    /// in the result lose their series.
    pub fn audit(&self, summary: &BTreeMap<String, AuditSummary>, finished: SystemTime) {
        let Ok(mut audited) = self.audited.lock() else {
            return;
        };
        let mut now = BTreeSet::new();
        for (policy, counts) in summary {
            let labels = PolicyLabels {
                policy: policy.clone(),
            };
            self.audit_violations
                .get_or_create(&labels)
                .set(counts.violations);
            self.audit_workloads
                .get_or_create(&labels)
                .set(counts.workloads);
            now.insert(labels);
        }
        for gone in audited.difference(&now) {
            self.audit_violations.remove(gone);
            self.audit_workloads.remove(gone);
        }
        *audited = now;
        self.audit_last_run.set(unix_seconds(finished));
    }

    /// The listener's open connections.
    pub fn connections_open(&self, open: usize) {
        self.connections_open
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    /// A connection closed at accept because the limit `reason` names was
    /// full (one of [`REFUSAL_REASONS`]).
    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// A connection the server ended on a limit.
    pub fn connection_closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// The log writer's count of lines dropped so far (a running total).
    pub fn log_lines_dropped(&self, total: u64) {
        let seen = self.log_lines_dropped.get();
        if total > seen {
            self.log_lines_dropped.inc_by(total - seen);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// What the webhook answered, as counted in `admission_verdicts` and
/// logged on each decision line (lower case, as before it was a type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allowed,
    Denied,
    Patched,
    /// A request that could not be judged (a body that is no AdmissionReview).
    Invalid,
    /// No verdict: policies and caches have not synced yet.
    Unavailable,
}

impl Verdict {
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
            Verdict::Patched => "patched",
            Verdict::Invalid => "invalid",
            Verdict::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn denials_past_the_namespace_bound_count_as_other() {
        let m = Metrics::new();
        for i in 0..DENIAL_NAMESPACES_MAX + 10 {
            m.denial(&format!("ns-{i}"));
        }
        m.denial("ns-0");
        m.denial("");
        let text = m.encode();
        let series = text
            .lines()
            .filter(|l| l.starts_with("waf_admission_denials_total{"))
            .count();
        assert_eq!(series, DENIAL_NAMESPACES_MAX + 1, "{text}");
        assert!(text.contains("waf_admission_denials_total{object_namespace=\"ns-0\"} 2"));
        assert!(text.contains("waf_admission_denials_total{object_namespace=\"_other\"} 10"));
    }

    #[test]
    fn a_deleted_policy_loses_its_audit_series() {
        let m = Metrics::new();
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let counts = |names: &[&str]| {
            names
                .iter()
                .map(|n| {
                    let c = AuditSummary {
                        workloads: 3,
                        violations: 2,
                        ..AuditSummary::default()
                    };
                    ((*n).to_owned(), c)
                })
                .collect::<BTreeMap<_, _>>()
        };
        m.audit(&counts(&["a", "b"]), at);
        m.audit(&counts(&["b"]), at);
        let text = m.encode();
        assert!(!text.contains("policy=\"a\""), "{text}");
        assert!(text.contains("waf_admission_audit_violations{policy=\"b\"} 2"));
        assert!(text.contains("waf_admission_audit_workloads{policy=\"b\"} 3"));
        assert!(text.contains("waf_admission_audit_last_run_timestamp_seconds 1800000000"));
    }

    #[test]
    fn connection_refusals_are_counted_by_reason_from_zero() {
        let m = Metrics::new();
        let text = m.encode();
        for reason in REFUSAL_REASONS {
            assert!(
                text.contains(&format!(
                    "waf_admission_connections_refused_total{{reason=\"{reason}\"}} 0\n"
                )),
                "{text}"
            );
        }
        m.connection_refused("per_client");
        m.connection_refused("per_client");
        let text = m.encode();
        assert!(
            text.contains("waf_admission_connections_refused_total{reason=\"per_client\"} 2\n"),
            "{text}"
        );
    }

    #[test]
    fn readiness_and_certificate_gauges_read_as_numbers() {
        let m = Metrics::new();
        m.readiness(true, false);
        m.tls_certificate_expiry(UNIX_EPOCH + Duration::from_secs(2_000_000_000));
        let text = m.encode();
        assert!(text.contains("waf_admission_synced 1\n"), "{text}");
        assert!(text.contains("waf_admission_ready 0\n"));
        assert!(
            text.contains("waf_admission_tls_certificate_expiry_timestamp_seconds 2000000000\n")
        );
    }
}
