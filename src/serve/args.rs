//! `waf-admission serve`'s flags, grouped as the operator reads them: the
//! webhook's own, the registry client's ([`RegistryArgs`], shared with
//! `check --resolve-digests`) and one client's share of the listener
//! ([`LimitArgs`]). Durations are Go durations (`500ms`, `30s`, `1m30s`,
//! `1h`), as Kubernetes writes them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;

use crate::duration;

/// `waf-admission serve`'s flags, each with its environment variable.
#[derive(clap::Args)]
pub struct Args {
    /// HTTPS address for /validate, /mutate, /healthz, /readyz and /metrics.
    #[arg(long, env = "WAF_ADDR", default_value = "0.0.0.0:8443")]
    pub addr: SocketAddr,
    /// PEM certificate chain; re-read when it changes (cert-manager rotation).
    #[arg(
        long,
        env = "WAF_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "self_signed"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching --tls-cert.
    #[arg(long, env = "WAF_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Make a certificate for localhost at start (local use and tests).
    #[arg(long)]
    pub self_signed: bool,
    /// Standalone mode: judge with these policy files or folders instead
    /// of the cluster's WellArchitectedPolicies (repeatable). They are
    /// looked at every 2 s and reloaded when they change; a change that
    /// does not compile is refused and the previous policies stay.
    #[arg(
        long = "policy",
        value_name = "FILE",
        env = "WAF_POLICY",
        value_delimiter = ','
    )]
    pub policies: Vec<PathBuf>,
    /// Standalone mode with the built-in baseline policy.
    #[arg(long, conflicts_with = "policies")]
    pub baseline: bool,
    /// Plain-HTTP address for /metrics (also served on the HTTPS port); `off` to disable.
    #[arg(long, env = "WAF_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: String,
    /// Log format.
    #[arg(long, env = "WAF_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// After SIGTERM, keep serving (not ready) this long so endpoints
    /// drain before the listener closes. Example: 5s.
    #[arg(long, env = "WAF_SHUTDOWN_DELAY", default_value = "0s", value_parser = duration::parse)]
    pub shutdown_delay: Duration,
    /// This replica's name (downward API), reported on the Events it writes.
    #[arg(long, env = "WAF_POD_NAME", default_value = "waf-admission")]
    pub pod_name: String,
    /// The namespace this replica runs in (downward API), home of its Lease.
    #[arg(long, env = "WAF_NAMESPACE", default_value = "waf-admission")]
    pub namespace: String,
    /// How often the background audit judges every existing workload.
    #[arg(long, env = "WAF_AUDIT_INTERVAL", default_value = "5m", value_parser = duration::parse)]
    pub audit_interval: Duration,
    /// Cluster mode: the policy report API the background audit writes:
    /// openreports (openreports.io/v1alpha1), wgpolicyk8s
    /// (wgpolicyk8s.io/v1alpha2, for Policy Reporter on the older API) or off.
    #[arg(long, env = "WAF_REPORTS", default_value = "openreports")]
    pub reports: crate::cluster::reports::ReportFormat,
    /// The longest in-flight requests may run on after shutdown begins.
    #[arg(long, env = "WAF_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = duration::parse)]
    pub shutdown_timeout: Duration,
    /// Cluster mode: a Secret of this namespace that policies may name as a
    /// pullSecret or signing key (repeatable, or comma-separated). Only
    /// these are watched; the chart's Role grants just them.
    #[arg(
        long = "registry-secret",
        env = "WAF_REGISTRY_SECRETS",
        value_delimiter = ','
    )]
    pub registry_secrets: Vec<String>,
    /// Cluster mode: the ConfigMap (NAMESPACE/NAME) holding the VM price
    /// table under `prices.yaml` (what `waf-admission prices --configmap`
    /// writes), for cost-budget. Only it is watched; while it is missing or
    /// unreadable, cost-budget judges nothing.
    #[arg(long, env = "WAF_PRICES_CONFIGMAP", value_name = "NAMESPACE/NAME")]
    pub prices_configmap: Option<String>,
    /// The identity (`system:serviceaccount:NS:NAME`) of an operator that
    /// makes Deployments, StatefulSets, LeaderWorkerSets or Workspaces from
    /// AI-serving resources (repeatable, or comma-separated): its writes
    /// of objects owned by such a resource are judged through it for
    /// workload-level rules. Defaults to KServe's, Knative's,
    /// LeaderWorkerSet's and KAITO's upstream service accounts.
    #[arg(
        long = "operator-account",
        env = "WAF_OPERATOR_ACCOUNTS",
        value_delimiter = ',',
        default_values_t = crate::ai::OPERATOR_ACCOUNTS.map(str::to_owned)
    )]
    pub operator_accounts: Vec<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// What one client can hold of the webhook listener (defaults: `Limits::default()`).
#[derive(clap::Args, Clone)]
pub struct LimitArgs {
    /// TLS connections open at once; one more is closed at accept.
    #[arg(long, env = "WAF_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Of those, the most one client address (IP) may hold; one more from
    /// it is closed at accept. Behind a mesh sidecar or a proxy every client
    /// is one address: set it to --max-connections.
    #[arg(long, env = "WAF_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 256)]
    pub max_connections_per_client: usize,
    /// Connections still in their TLS handshake, in all; one more is closed
    /// at accept. One address may hold the same share of these as of the
    /// connections (per client / total).
    #[arg(long, env = "WAF_MAX_PENDING_HANDSHAKES", default_value_t = 128)]
    pub max_pending_handshakes: usize,
    /// The longest a client may take to finish the TLS handshake.
    #[arg(long, env = "WAF_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = duration::parse)]
    pub tls_handshake_timeout: Duration,
    /// HTTP/1: the longest a client may take to send request headers, and
    /// to start the next request on a kept-alive connection.
    #[arg(long, env = "WAF_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = duration::parse)]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight this long is closed (HTTP/2: GOAWAY).
    #[arg(long, env = "WAF_IDLE_TIMEOUT", default_value = "60s", value_parser = duration::parse)]
    pub idle_timeout: Duration,
    /// HTTP/2 streams one connection may have open at once.
    #[arg(long, default_value_t = 100)]
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 rapid reset: streams the client reset before they were
    /// served, past which the connection gets GOAWAY ENHANCE_YOUR_CALM.
    #[arg(long, default_value_t = 20)]
    pub h2_max_pending_accept_reset_streams: usize,
    /// HTTP/2: streams the server reset for the client's protocol errors,
    /// past which the connection is closed.
    #[arg(long, default_value_t = 256)]
    pub h2_max_local_error_reset_streams: usize,
}

impl LimitArgs {
    pub fn limits(&self) -> crate::webhook::Limits {
        crate::webhook::Limits {
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
            max_pending_handshakes: self.max_pending_handshakes,
            tls_handshake_timeout: self.tls_handshake_timeout,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            h2_max_concurrent_streams: self.h2_max_concurrent_streams,
            h2_max_pending_accept_reset_streams: self.h2_max_pending_accept_reset_streams,
            h2_max_local_error_reset_streams: self.h2_max_local_error_reset_streams,
            ..crate::webhook::Limits::default()
        }
    }
}

/// The registry client's limits (serve, and check --resolve-digests).
#[derive(clap::Args, Clone)]
pub struct RegistryArgs {
    /// The longest one registry lookup (a digest, or a signature check) may
    /// take; the webhook also stays inside the apiserver's ?timeout=.
    #[arg(long, env = "WAF_REGISTRY_TIMEOUT", default_value = "4s", value_parser = duration::parse)]
    pub registry_timeout: Duration,
    /// How long a tag's digest is trusted before the registry is asked again
    /// (a tag moved in the registry is seen after at most this long).
    #[arg(long, env = "WAF_DIGEST_TTL", default_value = "5m", value_parser = duration::parse)]
    pub digest_ttl: Duration,
    /// How long a signature verdict for a digest is kept.
    #[arg(long, env = "WAF_VERDICT_TTL", default_value = "60m", value_parser = duration::parse)]
    pub verdict_ttl: Duration,
    /// How long a registry failure is remembered before the registry is asked again.
    #[arg(long, env = "WAF_REGISTRY_ERROR_TTL", default_value = "10s", value_parser = duration::parse)]
    pub registry_error_ttl: Duration,
    /// The registry cache's bound in bytes (digests and verdicts together).
    #[arg(long, env = "WAF_REGISTRY_CACHE_BYTES", default_value_t = 8 << 20)]
    pub registry_cache_bytes: u64,
    /// Signature manifests over this many bytes are refused.
    #[arg(long, default_value_t = 4 << 20)]
    pub registry_max_manifest_bytes: usize,
    /// A registry reached over plain HTTP instead of HTTPS (repeatable):
    /// for a loopback test registry, never for production.
    #[arg(long = "registry-plain-http", value_name = "HOST:PORT")]
    pub plain_http: Vec<String>,
    /// A PEM file of CA certificates to trust for registry TLS, beside the
    /// system's roots: a registry with a private CA (repeatable, or
    /// comma-separated; a file may hold several certificates).
    #[arg(
        long = "registry-ca",
        value_name = "FILE",
        env = "WAF_REGISTRY_CA",
        value_delimiter = ','
    )]
    pub registry_ca: Vec<PathBuf>,
    /// Registry credentials, a Docker config.json (`{"auths": {"HOST":
    /// {"auth": base64(user:password)}}}`, or `username` and `password`),
    /// read at start: used where a policy names no pullSecret (standalone
    /// serve, check). A policy's pullSecret wins.
    #[arg(
        long = "registry-credentials",
        value_name = "FILE",
        env = "WAF_REGISTRY_CREDENTIALS"
    )]
    pub registry_credentials: Option<PathBuf>,
}

impl RegistryArgs {
    pub fn config(&self) -> crate::Result<crate::provenance::registry::RegistryConfig> {
        use crate::provenance::DockerConfig;
        use crate::provenance::registry::read_ca_bundle;
        let mut extra_roots = Vec::new();
        for path in &self.registry_ca {
            extra_roots.extend(read_ca_bundle(path)?);
        }
        let credentials = match &self.registry_credentials {
            Some(path) => DockerConfig::read(path)?,
            None => DockerConfig::default(),
        };
        Ok(crate::provenance::registry::RegistryConfig {
            timeout: self.registry_timeout,
            digest_ttl: self.digest_ttl,
            verdict_ttl: self.verdict_ttl,
            error_ttl: self.registry_error_ttl,
            cache_bytes: self.registry_cache_bytes,
            max_manifest_bytes: self.registry_max_manifest_bytes,
            plain_http: self.plain_http.clone(),
            extra_roots,
            credentials,
            ..Default::default()
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: Args,
    }

    fn serve(extra: &[&str]) -> Result<Args, clap::Error> {
        let base = ["serve", "--self-signed", "--baseline"];
        Cli::try_parse_from(base.iter().chain(extra)).map(|cli| cli.serve)
    }

    #[test]
    fn the_limit_flags_default_to_the_librarys_limits() {
        let args = serve(&[]).unwrap();
        let (flags, library) = (args.limits.limits(), crate::webhook::Limits::default());
        assert_eq!(format!("{flags:?}"), format!("{library:?}"));
    }

    #[test]
    fn duration_flags_take_go_durations_and_name_the_flag_when_refused() {
        let args = serve(&["--shutdown-delay", "1m30s", "--audit-interval", "1h"]).unwrap();
        assert_eq!(args.shutdown_delay, Duration::from_secs(90));
        assert_eq!(args.audit_interval, Duration::from_secs(3600));
        let args = serve(&["--registry-timeout", "500ms"]).unwrap();
        assert_eq!(args.registry.registry_timeout, Duration::from_millis(500));
        let Err(refused) = serve(&["--shutdown-delay", "5x"]) else {
            panic!("5x was accepted");
        };
        let refused = refused.to_string();
        assert!(
            refused.contains("--shutdown-delay") && refused.contains("5x"),
            "{refused}"
        );
    }
}
