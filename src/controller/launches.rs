//! One Job per session at a time, per Schedule, whoever makes it: the
//! Schedule and its Backfills decide and create their Jobs one at a time
//! (a lock per Schedule), and each sees the sessions the others launched
//! a moment ago, before the Job cache shows their Jobs (claims).
//!
//! The lock covers read → decide → claim; the creates run after it is
//! released, the claims standing in for the Jobs until the cache shows
//! them.
//!
//! Without them, Backfills resumed together all find a session free in
//! the cache and all launch it. Only the leader writes, so a lock in this
//! process is enough.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::core::observed::ObservedJob;

/// How long a launch is remembered: far longer than the Job cache lags.
const CLAIM_TTL: Duration = Duration::from_secs(60);

/// A session some owner launched a Job for.
#[derive(Clone, Debug)]
struct Claim {
    job: String,
    owner_uid: String,
    at: Instant,
}

type Key = (String, String);

/// The per-Schedule launch locks and recent launches.
#[derive(Default)]
pub struct Launches {
    locks: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    claims: Mutex<HashMap<Key, BTreeMap<i64, Claim>>>,
}

impl Launches {
    /// The lock of the Schedule `schedule` in `ns`: held from reading what
    /// runs to claiming the sessions decided on. Not across the creates:
    /// once claimed, the others see the launches whether or not the Jobs
    /// exist yet, so one owner's thousands of creates do not hold back
    /// the Schedule's next run.
    pub fn lock_for(&self, ns: &str, schedule: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks
            .entry((ns.to_string(), schedule.to_string()))
            .or_default()
            .clone()
    }

    /// Remembers that `owner_uid` launches `job` for `session`.
    pub fn claim(&self, ns: &str, schedule: &str, owner_uid: &str, session: i64, job: &str) {
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        let of = claims
            .entry((ns.to_string(), schedule.to_string()))
            .or_default();
        of.retain(|_, c| c.at.elapsed() < CLAIM_TTL);
        of.insert(
            session,
            Claim {
                job: job.to_string(),
                owner_uid: owner_uid.to_string(),
                at: Instant::now(),
            },
        );
    }

    /// The owners of the launches of the last moment whose Jobs are not
    /// in `seen` (the Job cache) yet, once per launch.
    pub fn unseen(&self, ns: &str, schedule: &str, seen: &HashSet<String>) -> Vec<String> {
        let claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        claims
            .get(&(ns.to_string(), schedule.to_string()))
            .into_iter()
            .flat_map(|of| of.values())
            .filter(|c| c.at.elapsed() < CLAIM_TTL && !seen.contains(&c.job))
            .map(|c| c.owner_uid.clone())
            .collect()
    }

    /// The launches of `owner_uid` of the last moment whose Jobs are not
    /// in `seen` (the Job cache) yet: session and Job name.
    pub fn own_unseen(
        &self,
        ns: &str,
        schedule: &str,
        owner_uid: &str,
        seen: impl Fn(&str) -> bool,
    ) -> Vec<(i64, String)> {
        let claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        claims
            .get(&(ns.to_string(), schedule.to_string()))
            .into_iter()
            .flat_map(|of| of.iter())
            .filter(|(_, c)| c.owner_uid == owner_uid && c.at.elapsed() < CLAIM_TTL)
            .filter(|(_, c)| !seen(&c.job))
            .map(|(&session, c)| (session, c.job.clone()))
            .collect()
    }

    /// The sessions another owner than `owner_uid` runs now, with the Job:
    /// the running Jobs `others` shows, and the ones launched a moment
    /// ago that it does not show yet (one it shows ended is over).
    pub fn run_elsewhere(
        &self,
        ns: &str,
        schedule: &str,
        owner_uid: &str,
        others: &[ObservedJob],
    ) -> BTreeMap<i64, String> {
        let mut elsewhere: BTreeMap<i64, String> = others
            .iter()
            .filter(|j| j.running())
            .filter_map(|j| Some((j.session?, j.name.clone())))
            .collect();
        let claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(of) = claims.get(&(ns.to_string(), schedule.to_string())) {
            for (&session, claim) in of {
                let seen = others.iter().any(|j| j.name == claim.job);
                if claim.owner_uid != owner_uid && !seen && claim.at.elapsed() < CLAIM_TTL {
                    elsewhere
                        .entry(session)
                        .or_insert_with(|| claim.job.clone());
                }
            }
        }
        elsewhere
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launch_is_seen_by_the_others_until_the_cache_shows_its_job() {
        let l = Launches::default();
        l.claim("ns", "hourly", "a", 100, "a-b100");
        // Another owner sees it; the owner itself does not.
        assert_eq!(
            l.run_elsewhere("ns", "hourly", "b", &[]),
            BTreeMap::from([(100, "a-b100".to_string())])
        );
        assert!(l.run_elsewhere("ns", "hourly", "a", &[]).is_empty());
        assert!(l.run_elsewhere("ns", "other", "b", &[]).is_empty());
        assert!(l.run_elsewhere("ns2", "hourly", "b", &[]).is_empty());
        // Once the cache shows the Job, the cache decides: ended is over.
        let ended = ObservedJob {
            name: "a-b100".into(),
            uid: "u".into(),
            session: Some(100),
            state: crate::core::observed::JobState::Succeeded,
            deleting: false,
            has_finalizer: false,
            plan_index: Some(0),
            as_written: true,
        };
        assert!(l.run_elsewhere("ns", "hourly", "b", &[ended]).is_empty());
        // Its owner finds it among its own launches until the cache
        // shows the Job.
        assert_eq!(
            l.own_unseen("ns", "hourly", "a", |_| false),
            [(100, "a-b100".to_string())]
        );
        assert!(l.own_unseen("ns", "hourly", "b", |_| false).is_empty());
        assert!(
            l.own_unseen("ns", "hourly", "a", |j| j == "a-b100")
                .is_empty()
        );
    }
}
