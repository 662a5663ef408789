//! The controllers: thin shells that observe (watch caches), call the
//! pure core, and act (create and delete Jobs, write status with
//! server-side apply, emit Events).

//!
//! Every decision is carried out by one function, [`apply::apply`], in
//! the order that keeps counters true across a crash.

pub mod apply;
pub mod backfill;
mod clock;
mod context;
pub mod events;
mod grouped;
pub mod jobs;
mod launches;
pub mod leader;
pub mod ledger;
pub mod owners;
mod run;
pub mod schedule;
pub mod scope;
pub mod trim;

pub use clock::OperatorClock;
pub use context::{Context, Recent};
pub use run::{error_policy, run};

/// The error for an object that lacks a field the API server always sets.
pub fn missing<K: kube::Resource<DynamicType = ()>>(obj: &K, field: &'static str) -> crate::Error {
    crate::Error::MissingField {
        kind: K::kind(&()).into_owned(),
        name: obj.meta().name.clone().unwrap_or_default(),
        field,
    }
}

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "backfill-operator";

/// When to look again at an object whose cached copy is older than the
/// operator's own latest status write to it, should the watch not bring
/// the newer copy first (it normally does within milliseconds).
pub const BEHIND_OWN_WRITE: std::time::Duration = std::time::Duration::from_secs(1);

/// What the operator is told at start.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch these namespaces only; empty watches all.
    pub namespaces: Vec<String>,
    pub clock: OperatorClock,
    /// Ledger months older than this many days are deleted.
    pub ledger_retention_days: u32,
    /// A Schedule's unfiled outcomes that make a ledger write.
    pub ledger_batch: u16,
    /// Serve `/metrics`, `/healthz` and `/readyz` here.
    pub listen_address: Option<String>,
    /// Run only while holding this Lease.
    pub leader_election: Option<leader::LeaseConfig>,
    /// Serve the seeds' HTTP APIs, on every replica (they write through
    /// the API server, not the Lease).
    pub api: Option<crate::public_api::Config>,
    /// Reconciles of each kind under way at once.
    pub concurrent_schedule_syncs: u16,
    pub concurrent_backfill_syncs: u16,
}
