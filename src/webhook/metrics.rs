//! Prometheus metrics, registered in one place. Labels take bounded values
//! only (endpoint, code, rule, action, result), never object names, so the
//! series count cannot grow with the cluster.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram>,
    decisions: Family<DecisionLabels, Counter>,
    verdicts: Family<VerdictLabels, Counter>,
    tls_reloads: Family<ResultLabels, Counter>,
    unreadable: Family<KindLabels, Gauge>,
    reports_available: Gauge,
}

/// Sub-millisecond buckets: the webhook answers in microseconds, and a
/// histogram that starts at 5 ms would hide every regression.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.5, 1.0,
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
        Metrics {
            registry,
            unreadable,
            reports_available,
            requests,
            latency,
            decisions,
            verdicts,
            tls_reloads,
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

    pub fn verdict(&self, endpoint: &'static str, verdict: &'static str) {
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

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
