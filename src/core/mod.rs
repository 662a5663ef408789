//! The pure core: no I/O, no clock of its own. Cron and time-zone
//! evaluation, the session plan, execution windows and filters, and the
//! Jobs that run sessions. Almost every rule users rely on is decided
//! here and unit-tested without a cluster.

pub mod backfill;
pub mod bitmap;
pub mod calendar;
pub mod capacity;
pub mod cron;
pub mod decision;
pub mod job;
pub mod ledger;
pub mod observed;
pub mod plan;
pub mod reason;
pub mod schedule;
pub mod sessions;
pub mod windows;
pub mod zoned_cron;

pub use plan::{Order, Plan, PlanError, Selection};
pub use zoned_cron::{Session, Zone, ZonedCron, ZonedCronError};
