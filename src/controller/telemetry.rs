//! What the operator tells its operators: Prometheus metrics on `/metrics`,
//! liveness on `/healthz` and readiness on `/readyz`, served by a small
//! HTTP/1.1 responder (probes and scrapes need nothing more).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

use crate::api::{Backfill, BackfillPhase};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackfillLabels {
    pub namespace: String,
    pub backfill: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

/// The operator's metrics, all prefixed `backfill_operator_`.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    pub jobs_created: Family<ControllerLabels, Counter>,
    sessions_succeeded: Family<BackfillLabels, Gauge>,
    sessions_failed: Family<BackfillLabels, Gauge>,
    backfills: Family<PhaseLabels, Gauge>,
    pub leader: Gauge,
    /// Set once the caches hold their initial lists (and, with leader
    /// election, while standing by).
    pub ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("backfill_operator");
        let reconciles = Family::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        let reconcile_errors = Family::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that ended in an error (retried)",
            reconcile_errors.clone(),
        );
        let reconcile_duration =
            Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
                Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0])
            });
        registry.register(
            "reconcile_duration_seconds",
            "How long a reconcile took",
            reconcile_duration.clone(),
        );
        let jobs_created = Family::default();
        registry.register(
            "jobs_created",
            "Jobs created, by the controller that made them",
            jobs_created.clone(),
        );
        let sessions_succeeded = Family::default();
        registry.register(
            "backfill_sessions_succeeded",
            "Sessions of a Backfill whose Job succeeded (status.succeededCount)",
            sessions_succeeded.clone(),
        );
        let sessions_failed = Family::default();
        registry.register(
            "backfill_sessions_failed",
            "Sessions of a Backfill whose Job failed or was killed",
            sessions_failed.clone(),
        );
        let backfills = Family::default();
        registry.register("backfills", "Backfills by phase", backfills.clone());
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease (or runs without leader election)",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            jobs_created,
            sessions_succeeded,
            sessions_failed,
            backfills,
            leader,
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// Records one reconcile of `controller`.
    pub fn reconciled(&self, controller: &'static str, took: Duration, ok: bool) {
        let labels = ControllerLabels { controller };
        self.reconciles.get_or_create(&labels).inc();
        if !ok {
            self.reconcile_errors.get_or_create(&labels).inc();
        }
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// The text exposition, with the per-Backfill series read from the
    /// Backfill cache at the moment of the scrape (a deleted Backfill's
    /// series go with it).
    pub fn render(&self, backfills: Option<&Store<Backfill>>) -> String {
        self.sessions_succeeded.clear();
        self.sessions_failed.clear();
        self.backfills.clear();
        for phase in [
            BackfillPhase::Pending,
            BackfillPhase::Planned,
            BackfillPhase::Running,
            BackfillPhase::Waiting,
            BackfillPhase::Paused,
            BackfillPhase::Succeeded,
            BackfillPhase::Failed,
            BackfillPhase::Cancelled,
        ] {
            self.backfills
                .get_or_create(&PhaseLabels {
                    phase: format!("{phase:?}"),
                })
                .set(0);
        }
        for bf in backfills.map(Store::state).unwrap_or_default() {
            let status = bf.status.clone().unwrap_or_default();
            let labels = BackfillLabels {
                namespace: bf.namespace().unwrap_or_default(),
                backfill: bf.name_any(),
            };
            self.sessions_succeeded
                .get_or_create(&labels)
                .set(status.succeeded_count);
            self.sessions_failed
                .get_or_create(&labels)
                .set(status.failed_count + status.killed_count);
            self.backfills
                .get_or_create(&PhaseLabels {
                    phase: format!("{:?}", status.phase.unwrap_or_default()),
                })
                .inc();
        }
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            warn!(error = %e, "encoding the metrics failed");
        }
        text
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the
/// process ends. `backfills` is read on each scrape; it is `None` until
/// the controllers run (a standby has none).
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    backfills: Arc<std::sync::Mutex<Option<Store<Backfill>>>>,
) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (metrics, backfills) = (metrics.clone(), backfills.clone());
        tokio::spawn(async move {
            if let Err(e) = respond(stream, &metrics, &backfills).await {
                warn!(error = %e, "answering an HTTP request failed");
            }
        });
    }
}

/// Binds the HTTP address and logs it (a port 0 gets a free one).
pub async fn bind(address: &str) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(address).await?;
    info!(address = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    Ok(listener)
}

async fn respond(
    mut stream: TcpStream,
    metrics: &Metrics,
    backfills: &std::sync::Mutex<Option<Store<Backfill>>>,
) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    // The request line and headers; a body is not expected.
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "slow request"))??;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&request);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let store = backfills.lock().unwrap_or_else(|e| e.into_inner()).clone();
            (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                metrics.render(store.as_ref()),
            )
        }
        ("GET" | "HEAD", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET" | "HEAD", "/readyz") if metrics.ready.load(Ordering::Relaxed) => {
            ("200 OK", "text/plain", "ok\n".to_string())
        }
        ("GET" | "HEAD", "/readyz") => (
            "503 Service Unavailable",
            "text/plain",
            "caches not synced yet\n".to_string(),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_metric() {
        let m = Metrics::default();
        m.reconciled("backfill", Duration::from_millis(3), true);
        m.reconciled("backfill", Duration::from_millis(30), false);
        m.jobs_created
            .get_or_create(&ControllerLabels {
                controller: "schedule",
            })
            .inc_by(2);
        m.leader.set(1);
        let text = m.render(None);
        for line in [
            "backfill_operator_reconciles_total{controller=\"backfill\"} 2",
            "backfill_operator_reconcile_errors_total{controller=\"backfill\"} 1",
            "backfill_operator_reconcile_duration_seconds_count{controller=\"backfill\"} 2",
            "backfill_operator_jobs_created_total{controller=\"schedule\"} 2",
            "backfill_operator_backfills{phase=\"Running\"} 0",
            "backfill_operator_leader 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[tokio::test]
    async fn probes_answer_over_http() {
        let listener = bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        tokio::spawn(serve(listener, metrics.clone(), Default::default()));
        let get = |path: &'static str| async move {
            let mut s = TcpStream::connect(address).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/readyz").await.starts_with("HTTP/1.1 503"));
        metrics.ready.store(true, Ordering::Relaxed);
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/metrics").await.contains("backfill_operator_leader"));
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
    }
}
