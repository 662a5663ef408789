//! backfill-operator: runs batch Jobs on a schedule and re-runs past
//! schedule slots as declarative Backfills.

pub mod api;
pub mod cli;
pub mod controller;
pub mod core;
pub mod crds;
pub mod http;
pub mod metrics;

/// Errors of the controllers; `error_policy` decides the requeue from them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("invalid object: {0}")]
    Invalid(String),
    /// Worth retrying after a backoff.
    #[error("{0}")]
    Transient(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
