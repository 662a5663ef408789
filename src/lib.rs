//! backfill-operator: runs batch Jobs on a schedule and re-runs past
//! schedule slots as declarative Backfills.

pub mod api;
pub mod cli;
pub mod core;
pub mod crds;
