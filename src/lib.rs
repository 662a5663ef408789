//! backfill-operator: runs batch Jobs on a schedule and re-runs past
//! schedule slots as declarative Backfills.

pub mod api;
pub mod cli;
pub mod controller;
pub mod core;
pub mod crds;
pub mod http;
pub mod metrics;
pub mod plugin;
pub mod public_api;
pub mod throttle;

/// Errors of the operator. `error_policy` decides the requeue from them,
/// and each one's [`Error::category`] labels the error metric.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object lacks what the API server always sets (a namespace, a
    /// UID): only a hand-made or corrupt object. Retried when it changes.
    #[error("{kind} {name:?} has no {field}")]
    MissingField {
        kind: String,
        name: String,
        field: &'static str,
    },
    /// A name the operator must create is taken by an object it did not
    /// make. Retried when the object that wants it changes.
    #[error(
        "{kind} {name} exists and is not {owner}; delete or rename it to carry out the request"
    )]
    NameTaken {
        kind: &'static str,
        name: String,
        owner: String,
    },
    /// A name the operator must create is still held by an object being
    /// deleted, or by one its cache does not show yet. Retried after a
    /// short backoff.
    #[error("{kind} {name} exists but is being deleted or not cached yet; retried shortly")]
    NameInUse { kind: &'static str, name: String },
    /// A SessionLedger object that cannot be read.
    #[error("SessionLedger {name} cannot be read: {reason}")]
    UnreadableLedger { name: String, reason: String },
    /// Ledger writes that kept conflicting with other writers.
    #[error("SessionLedger {name}: {attempts} conflicting writes in a row")]
    LedgerContended { name: String, attempts: usize },
    /// Another replica holds the leader Lease now, or it could not be
    /// renewed in time.
    #[error("leader Lease lost: {0}")]
    LeaseLost(String),
    /// What the operator was started with cannot work (a flag, a missing
    /// permission or CRD).
    #[error("{0}")]
    Startup(String),
    /// The decide step of one object panicked: a bug. That object is
    /// retried with backoff; the others go on.
    #[error("deciding {object} failed: {message}; this is a bug, please report it")]
    DecidePanicked { object: String, message: String },
}

impl Error {
    /// What kind of failure this is: the `category` label of
    /// `backfill_operator_reconcile_errors_total`.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(e)) if e.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "transport",
            Error::MissingField { .. }
            | Error::NameTaken { .. }
            | Error::UnreadableLedger { .. } => "invalid_object",
            Error::LedgerContended { .. } | Error::NameInUse { .. } => "conflict",
            Error::LeaseLost(_) => "lease",
            Error::Startup(_) => "startup",
            Error::DecidePanicked { .. } => "bug",
        }
    }

    /// Nothing but a change to the object can help: retrying is useless.
    pub fn awaits_change(&self) -> bool {
        self.category() == "invalid_object"
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
