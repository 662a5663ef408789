//! What the operator counts: its Prometheus metrics (served on
//! `/metrics` by [`crate::http`]) and the readiness flag behind `/readyz`.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing::warn;

use crate::api::{Backfill, BackfillPhase};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: &'static str,
    /// `crate::Error::category`.
    pub category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackfillLabels {
    pub namespace: String,
    pub backfill: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// The public API's operation: get_backfill, list_backfills,
    /// create_backfill, rerun_failed, schedule_backfill.
    pub operation: &'static str,
    /// The HTTP status answered.
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

/// The operator's metrics, all prefixed `backfill_operator_`.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    pub jobs_created: Family<ControllerLabels, Counter>,
    sessions_succeeded: Family<BackfillLabels, Gauge>,
    sessions_failed: Family<BackfillLabels, Gauge>,
    backfills: Family<PhaseLabels, Gauge>,
    pub leader: Gauge,
    /// Calls of the public API, by operation and status.
    pub api_requests: Family<ApiLabels, Counter>,
    pub api_request_duration: Family<OperationLabels, Histogram>,
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
            "Reconciles that ended in an error, by category (conflict, api, transport, invalid_object, ...)",
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
        let api_requests = Family::default();
        registry.register(
            "api_requests",
            "Calls of the public API (--api-address), by operation and HTTP status",
            api_requests.clone(),
        );
        let api_request_duration =
            Family::<OperationLabels, Histogram>::new_with_constructor(|| {
                Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0])
            });
        registry.register(
            "api_request_duration_seconds",
            "How long a call of the public API took, its TokenReview and SubjectAccessReviews included",
            api_request_duration.clone(),
        );
        Self {
            registry,
            api_requests,
            api_request_duration,
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
    /// Records one call of the public API.
    pub fn api_called(&self, operation: &'static str, code: u16, took: Duration) {
        self.api_requests
            .get_or_create(&ApiLabels { operation, code })
            .inc();
        self.api_request_duration
            .get_or_create(&OperationLabels { operation })
            .observe(took.as_secs_f64());
    }

    /// Records one reconcile of `controller`; `error` is the category of
    /// the error it ended in.
    pub fn reconciled(
        &self,
        controller: &'static str,
        took: Duration,
        error: Option<&'static str>,
    ) {
        let labels = ControllerLabels { controller };
        self.reconciles.get_or_create(&labels).inc();
        if let Some(category) = error {
            self.reconcile_errors
                .get_or_create(&ErrorLabels {
                    controller,
                    category,
                })
                .inc();
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
            BackfillPhase::AwaitingApproval,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_metric() {
        let m = Metrics::default();
        m.reconciled("backfill", Duration::from_millis(3), None);
        m.reconciled("backfill", Duration::from_millis(30), Some("conflict"));
        m.jobs_created
            .get_or_create(&ControllerLabels {
                controller: "schedule",
            })
            .inc_by(2);
        m.leader.set(1);
        let text = m.render(None);
        for line in [
            "backfill_operator_reconciles_total{controller=\"backfill\"} 2",
            "backfill_operator_reconcile_errors_total{controller=\"backfill\",category=\"conflict\"} 1",
            "backfill_operator_reconcile_duration_seconds_count{controller=\"backfill\"} 2",
            "backfill_operator_jobs_created_total{controller=\"schedule\"} 2",
            "backfill_operator_backfills{phase=\"Running\"} 0",
            "backfill_operator_leader 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
