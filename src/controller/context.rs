//! What every reconcile shares: the client, the Event recorder, the
//! caches and the clock, and the memory of requests made lately.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::trim::CachedJob;
use kube::Client;
use kube::runtime::reflector::Store;

use super::events::Recorder;
use super::jobs::{delete_job, release_finalizer};
use super::{OperatorClock, leader, owners};
use crate::Result;
use crate::api::{Backfill, Schedule, SessionLedger};
use crate::core::job::OwnerKind;
use crate::core::observed::ObservedJob;
use crate::metrics::Metrics;
use kube::{Resource, ResourceExt};

/// Shared by every reconcile: one client, one recorder, the Job cache and
/// the clock.
pub struct Context {
    pub client: Client,
    pub recorder: Arc<Recorder>,
    /// Event batches being published (`apply::publish`) at most: past
    /// that a reconcile waits for a slot, so a burst of sessions never
    /// queues an unbounded number of Events in memory.
    pub events_in_flight: Arc<tokio::sync::Semaphore>,
    pub jobs: Store<CachedJob>,
    /// The Jobs of each owner in `jobs`.
    pub job_owners: owners::OwnerIndex,
    /// True once the Job cache holds the initial list. A reconcile waits
    /// for it: deciding from an empty cache would forget which outcomes
    /// were counted. (A watch channel, because kube's store readiness
    /// wakes only one waiter.)
    pub jobs_ready: tokio::sync::watch::Receiver<bool>,
    pub schedules: Store<Schedule>,
    /// The Backfills: those of a Schedule share its `maxActiveJobs`.
    pub backfills: Store<Backfill>,
    /// The Backfills of each Schedule in `backfills`.
    pub backfills_by_schedule: super::grouped::Grouped<Backfill>,
    /// The session ledgers, and whether their cache holds the initial list
    /// (a Backfill's `reprocess` is judged against it).
    pub ledgers: Store<SessionLedger>,
    /// The ledger objects of each Schedule in `ledgers`.
    pub ledgers_by_schedule: super::grouped::Grouped<SessionLedger>,
    pub ledgers_ready: tokio::sync::watch::Receiver<bool>,
    /// The ledger objects this process wrote last, newer than the cache
    /// for a moment after each write.
    pub ledgers_written: std::sync::Mutex<std::collections::HashMap<String, Arc<SessionLedger>>>,
    /// The resourceVersion of this process's latest status write to each
    /// Schedule and Backfill, by UID, until the cache shows it.
    pub status_written: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// Ledger months that ended longer ago than this (seconds) are deleted.
    pub ledger_retention: i64,
    /// A Schedule's unfiled outcomes that make a ledger write
    /// (`--ledger-batch`).
    pub ledger_batch: usize,
    pub clock: OperatorClock,
    pub recent: Recent,
    /// One Job per session at a time, per Schedule: its launch lock and
    /// recent launches.
    pub launches: super::launches::Launches,
    pub metrics: Arc<Metrics>,
    /// Checked before every write: a leader past its renew deadline
    /// writes nothing.
    pub leadership: leader::Leadership,
}

/// What this process did lately, so that a pass working from a cache that
/// has not caught up yet does not send the same request again (a second
/// finalizer removal, a second delete, the same status).
#[derive(Default)]
pub struct Recent {
    done: std::sync::Mutex<std::collections::HashMap<String, (Instant, u64)>>,
}

/// How long a request is remembered: far longer than a watch lags.
const RECENT_TTL: Duration = Duration::from_secs(60);

impl Recent {
    /// Whether `key` was done with this `value` within the TTL.
    pub fn seen(&self, key: &str, value: u64) -> bool {
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        done.get(key)
            .is_some_and(|(at, v)| *v == value && at.elapsed() < RECENT_TTL)
    }

    pub fn record(&self, key: String, value: u64) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        if done.len() > 10_000 {
            done.retain(|_, (at, _)| at.elapsed() < RECENT_TTL);
        }
        done.insert(key, (Instant::now(), value));
    }
}

impl Context {
    /// `Ok` while this process may write (it leads, or runs without
    /// leader election); says at debug level which write follows, so a
    /// log shows every write this process started.
    pub fn may_write(&self, what: &'static str) -> Result<()> {
        self.leadership.check()?;
        tracing::debug!(what, "writing");
        Ok(())
    }

    /// Removes a Job's outcome finalizer, once.
    pub async fn release(&self, ns: &str, name: &str) -> Result<()> {
        self.may_write("release a finalizer")?;
        let key = format!("release/{ns}/{name}");
        if !self.recent.seen(&key, 0) {
            release_finalizer(&self.client, ns, name).await?;
            self.recent.record(key, 0);
        }
        Ok(())
    }

    /// Deletes a Job, once.
    pub async fn delete(&self, ns: &str, name: &str) -> Result<()> {
        self.may_write("delete a Job")?;
        let key = format!("delete/{ns}/{name}");
        if !self.recent.seen(&key, 0) {
            delete_job(&self.client, ns, name).await?;
            self.recent.record(key, 0);
        }
        Ok(())
    }

    /// The cached Jobs a Schedule or Backfill (by namespace and UID) owns.
    pub fn jobs_of(&self, ns: &str, uid: &str) -> Vec<Arc<CachedJob>> {
        self.job_owners.jobs_of(ns, uid, &self.jobs)
    }

    /// Jobs of the Schedule `schedule` in `ns` that `uid` does not own (the
    /// Schedule's scheduled runs, other Backfills), as their owners made
    /// them: each read back against its controller's kind and name.
    pub fn jobs_of_others(&self, ns: &str, schedule: &str, uid: &str) -> Vec<ObservedJob> {
        self.job_owners
            .jobs_of_schedule(ns, schedule, &self.jobs)
            .iter()
            .filter(|j| !j.owner_references().iter().any(|o| o.uid == uid))
            .filter_map(|j| {
                let owner = j
                    .owner_references()
                    .iter()
                    .find(|o| o.controller == Some(true))?;
                let kind = match owner.kind.as_str() {
                    "Schedule" => OwnerKind::Schedule,
                    "Backfill" => OwnerKind::Backfill,
                    _ => return None,
                };
                Some(j.observe(kind, &owner.name))
            })
            .collect()
    }

    /// The Jobs of the Schedule `schedule` that run now, by the UID of
    /// the owner that controls them (the Schedule, each Backfill),
    /// counting those launched a moment ago that the cache does not show
    /// yet.
    pub fn running_by_owner(&self, ns: &str, schedule: &str) -> HashMap<String, u64> {
        let jobs = self.job_owners.jobs_of_schedule(ns, schedule, &self.jobs);
        let mut running: HashMap<String, u64> = HashMap::new();
        for job in &jobs {
            let Some(owner) = job
                .owner_references()
                .iter()
                .find(|o| o.controller == Some(true))
            else {
                continue;
            };
            let observed = job.observe(OwnerKind::Backfill, &owner.name);
            if observed.running() {
                *running.entry(owner.uid.clone()).or_default() += 1;
            }
        }
        let seen: HashSet<String> = jobs.iter().map(|j| j.name_any()).collect();
        for owner in self.launches.unseen(ns, schedule, &seen) {
            *running.entry(owner).or_default() += 1;
        }
        running
    }

    /// Whether the cache's copy of `obj` is older than this process's
    /// latest status write to it: a pass would decide from the counters
    /// before that write (and its own write would conflict). The watch
    /// brings the newer copy in a moment, and with it another pass.
    pub fn behind_own_write<K: Resource>(&self, obj: &K) -> bool {
        let Some(uid) = obj.meta().uid.as_deref() else {
            return false;
        };
        let cached = resource_version(obj);
        let mut written = self
            .status_written
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match written.get(uid) {
            Some(&w) if cached < w => true,
            Some(_) => {
                written.remove(uid);
                false
            }
            None => false,
        }
    }

    /// Remembers the resourceVersion a status write of `obj` returned.
    pub fn wrote_status<K: Resource>(&self, obj: &K) {
        if let Some(uid) = obj.meta().uid.clone() {
            self.status_written
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(uid, resource_version(obj));
        }
    }

    /// Waits until the Job and ledger caches hold their initial lists.
    pub async fn synced(&self) {
        // An error means the sender is gone: the operator is stopping.
        let _ = self.jobs_ready.clone().wait_for(|r| *r).await;
        let _ = self.ledgers_ready.clone().wait_for(|r| *r).await;
    }
}

/// An object's resourceVersion as the number it is (an etcd revision);
/// 0 when it is not one.
fn resource_version<K: Resource>(obj: &K) -> u64 {
    obj.meta()
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
