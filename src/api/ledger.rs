use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::ScheduleRef;

/// The durable record of one Schedule's sessions in one month (UTC): the
/// latest outcome of each session and which attempt decided it. Written
/// by the operator whenever it records an outcome, read when a Backfill
/// starts (`reprocess`) and for the Schedule's `status.recentSessions`.
/// Survives Job garbage collection; deleted with its Schedule, or once
/// older than the operator's retention.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "backfill.dev",
    version = "v1alpha1",
    kind = "SessionLedger",
    namespaced,
    shortname = "ledger",
    category = "backfill-operator",
    derive = "PartialEq",
    doc = "The outcome of each session of a Schedule in one month, kept after its Jobs are gone. Written by the operator.",
    printcolumn(
        name = "Schedule",
        type_ = "string",
        json_path = ".spec.scheduleRef.name"
    ),
    printcolumn(name = "Period", type_ = "string", json_path = ".spec.period"),
    printcolumn(name = "Succeeded", type_ = "integer", json_path = ".spec.succeeded"),
    printcolumn(name = "Failed", type_ = "integer", json_path = ".spec.failed"),
    printcolumn(
        name = "Killed",
        type_ = "integer",
        json_path = ".spec.killed",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SessionLedgerSpec {
    /// The Schedule whose sessions this records.
    pub schedule_ref: ScheduleRef,
    /// The month, `YYYY-MM` (UTC).
    #[schemars(length(min = 7, max = 7))]
    pub period: String,
    /// Start of the month, inclusive.
    pub from: Time,
    /// Start of the next month, exclusive.
    pub to: Time,
    /// Sessions whose latest attempt succeeded.
    #[serde(default)]
    pub succeeded: i64,
    /// Sessions whose latest attempt failed.
    #[serde(default)]
    pub failed: i64,
    /// Sessions whose latest attempt was deleted before it finished.
    #[serde(default)]
    pub killed: i64,
    /// The sessions each attempt decided last; a session is in one
    /// attempt's sets only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub attempts: Vec<LedgerAttempt>,
}

/// The sessions one attempt decided last, as compact sets of minute slots
/// since the period's start: `r:` and base64 varint runs, or `b:` and a
/// base64 bitmap, whichever is shorter.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LedgerAttempt {
    /// The attempt name (the Schedule's name for scheduled runs, the
    /// Backfill's `attemptName` for backfills).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Who ran it: `Schedule/<name>` or `Backfill/<name>`.
    #[schemars(length(max = 300))]
    pub owner: String,
    /// When this attempt last recorded an outcome here.
    pub updated_at: Time,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 16_384))]
    pub succeeded: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 16_384))]
    pub failed: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 16_384))]
    pub killed: String,
}
