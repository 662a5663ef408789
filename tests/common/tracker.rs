//! The Job tracker: every Job that ever existed in a test's namespace,
//! watched from before the operator makes any, so a test knows how each
//! ended even after the operator deleted it — the truth the operator's
//! counters are checked against.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::runtime::watcher;

use super::DEADLINE;
use super::jobs::{
    ANNOTATION_PLAN_INDEX, JOB_FINALIZER, JobLog, LABEL_BACKFILL, LABEL_SCHEDULE, LABEL_SESSION,
    Outcome, label, outcome, watch_jobs,
};
use super::poll::eventually;

#[derive(Clone, Debug)]
pub struct Seen {
    pub name: String,
    pub backfill: String,
    pub schedule: String,
    pub session: Option<i64>,
    pub plan_index: Option<u64>,
    pub outcome: Option<Outcome>,
    /// Seen with a pod active.
    pub started: bool,
    /// Has a deletionTimestamp.
    pub deleting: bool,
    /// Gone from the API server.
    pub deleted: bool,
    /// Carried the outcome finalizer when last seen.
    pub finalizer: bool,
    pub owned: bool,
}

impl Seen {
    /// Running, as `maxInFlight` counts: not finished, not being deleted.
    pub fn active(&self) -> bool {
        self.outcome.is_none() && !self.deleting && !self.deleted
    }
}

#[derive(Default)]
struct Tracked {
    jobs: BTreeMap<String, Seen>,
    /// Per Backfill: the UIDs of its active Jobs now, and the most ever.
    active: BTreeMap<String, BTreeSet<String>>,
    max_active: BTreeMap<String, usize>,
    /// Per Backfill: the names of the Jobs active when the most were.
    max_active_names: BTreeMap<String, Vec<String>>,
}

impl JobLog for Tracked {
    fn uids(&self) -> Vec<String> {
        self.jobs.keys().cloned().collect()
    }

    fn apply(&mut self, job: &Job) {
        let Some(uid) = job.metadata.uid.clone() else {
            return;
        };
        let seen = self.jobs.entry(uid.clone()).or_insert_with(|| Seen {
            name: job.metadata.name.clone().unwrap_or_default(),
            backfill: label(job, LABEL_BACKFILL).unwrap_or_default().to_string(),
            schedule: label(job, LABEL_SCHEDULE).unwrap_or_default().to_string(),
            session: label(job, LABEL_SESSION).and_then(|s| s.parse().ok()),
            plan_index: job
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_PLAN_INDEX))
                .and_then(|s| s.parse().ok()),
            outcome: None,
            started: false,
            deleting: false,
            deleted: false,
            finalizer: false,
            owned: job
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Backfill" && o.controller == Some(true)),
        });
        // An outcome, once seen, stays (a Job never un-finishes).
        seen.outcome = seen.outcome.or(outcome(job));
        seen.started |= job
            .status
            .as_ref()
            .and_then(|s| s.active)
            .is_some_and(|a| a > 0);
        seen.deleting |= job.metadata.deletion_timestamp.is_some();
        seen.finalizer = job
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == JOB_FINALIZER);
        self.measure(&uid);
    }

    fn delete(&mut self, uid: &str) {
        if let Some(seen) = self.jobs.get_mut(uid) {
            seen.deleted = true;
        }
        self.measure(uid);
    }
}

impl Tracked {
    fn measure(&mut self, uid: &str) {
        let Some(seen) = self.jobs.get(uid) else {
            return;
        };
        let active = self.active.entry(seen.backfill.clone()).or_default();
        if seen.active() {
            active.insert(uid.to_string());
        } else {
            active.remove(uid);
        }
        let max = self.max_active.entry(seen.backfill.clone()).or_default();
        if active.len() > *max {
            *max = active.len();
            let names = active
                .iter()
                .filter_map(|uid| self.jobs.get(uid))
                .map(|s| s.name.clone())
                .collect();
            self.max_active_names.insert(seen.backfill.clone(), names);
        }
    }
}

pub struct JobTracker {
    state: Arc<Mutex<Tracked>>,
    task: tokio::task::JoinHandle<()>,
}

impl JobTracker {
    /// Starts watching the namespace's Backfill Jobs and waits for the
    /// first list.
    pub async fn start(jobs: &Api<Job>) -> Self {
        let (state, task) =
            watch_jobs::<Tracked>(jobs, watcher::Config::default().labels(LABEL_BACKFILL)).await;
        JobTracker { state, task }
    }

    /// Watches every Job of the namespace's Schedules, scheduled runs (under
    /// the Backfill name "") and Backfills alike.
    pub async fn start_all(jobs: &Api<Job>) -> Self {
        let (state, task) =
            watch_jobs::<Tracked>(jobs, watcher::Config::default().labels(LABEL_SCHEDULE)).await;
        JobTracker { state, task }
    }

    /// Every Job of `backfill` ever seen, by session then name.
    pub fn of(&self, backfill: &str) -> Vec<Seen> {
        let state = self.state.lock().expect("tracker lock");
        let mut jobs: Vec<Seen> = state
            .jobs
            .values()
            .filter(|s| s.backfill == backfill)
            .cloned()
            .collect();
        jobs.sort_by_key(|s| (s.session, s.name.clone()));
        jobs
    }

    /// The most Jobs of `backfill` active at once so far.
    pub fn max_active(&self, backfill: &str) -> usize {
        let state = self.state.lock().expect("tracker lock");
        state.max_active.get(backfill).copied().unwrap_or(0)
    }

    /// The Jobs of `backfill` active together when the most were.
    pub fn max_active_names(&self, backfill: &str) -> Vec<String> {
        let state = self.state.lock().expect("tracker lock");
        state
            .max_active_names
            .get(backfill)
            .cloned()
            .unwrap_or_default()
    }

    /// Every name seen with more than one UID, and every session seen in
    /// more than one Job: a session run twice.
    pub fn duplicates(&self, backfill: &str) -> Vec<String> {
        let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
        let mut by_session: BTreeMap<Option<i64>, Vec<String>> = BTreeMap::new();
        for seen in self.of(backfill) {
            *by_name.entry(seen.name.clone()).or_default() += 1;
            by_session.entry(seen.session).or_default().push(seen.name);
        }
        let mut duplicates: Vec<String> = by_name
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(name, n)| format!("{name} created {n} times"))
            .collect();
        duplicates.extend(
            by_session
                .into_iter()
                .filter(|(_, names)| names.len() > 1)
                .map(|(session, names)| format!("session {session:?} in Jobs {names:?}")),
        );
        duplicates
    }

    /// Distinct sessions of `backfill`'s Jobs.
    pub fn sessions(&self, backfill: &str) -> BTreeSet<i64> {
        self.of(backfill).iter().filter_map(|s| s.session).collect()
    }

    /// Distinct sessions of `backfill`'s Jobs that ended with `outcome`.
    pub fn sessions_with(&self, backfill: &str, outcome: Outcome) -> BTreeSet<i64> {
        self.of(backfill)
            .iter()
            .filter(|s| s.outcome == Some(outcome))
            .filter_map(|s| s.session)
            .collect()
    }

    /// Waits until the Jobs of `backfill` satisfy `pred`.
    pub async fn wait(
        &self,
        what: &str,
        backfill: &str,
        pred: impl Fn(&[Seen]) -> bool,
    ) -> Vec<Seen> {
        eventually(what, DEADLINE, || async {
            let jobs = self.of(backfill);
            if pred(&jobs) {
                Ok(jobs)
            } else {
                Err(format!("Jobs seen: {}", describe(&jobs)))
            }
        })
        .await
    }
}

impl Drop for JobTracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn describe(jobs: &[Seen]) -> String {
    let parts: Vec<String> = jobs
        .iter()
        .map(|s| {
            let mut state = match s.outcome {
                Some(Outcome::Succeeded) => "succeeded",
                Some(Outcome::Failed) => "failed",
                None if s.started => "running",
                None => "pending",
            }
            .to_string();
            if s.deleting {
                state.push_str(",deleting");
            }
            if s.deleted {
                state.push_str(",deleted");
            }
            if s.finalizer {
                state.push_str(",finalizer");
            }
            format!("{}[{state}]", s.name)
        })
        .collect();
    format!("{} Jobs: [{}]", jobs.len(), parts.join(" "))
}

/// What every Job of a finished Backfill must look like: named, labelled
/// and annotated after its session, owned by the Backfill, one per
/// session of `plan` (in run order), and no more.
pub fn assert_one_job_per_session(tracker: &JobTracker, backfill: &str, plan: &[i64]) {
    let seen = tracker.of(backfill);
    let duplicates = tracker.duplicates(backfill);
    assert!(
        duplicates.is_empty(),
        "sessions run twice: {duplicates:?}\n{}",
        describe(&seen)
    );
    assert_eq!(
        seen.len(),
        plan.len(),
        "expected exactly {} Jobs ever created: {}",
        plan.len(),
        describe(&seen)
    );
    let want: BTreeSet<i64> = plan.iter().copied().collect();
    assert_eq!(
        tracker.sessions(backfill),
        want,
        "the Jobs' sessions are not the plan"
    );
    for s in &seen {
        let session = s.session.expect("a session label");
        assert_eq!(s.name, format!("{backfill}-b{session}"));
        assert!(
            s.owned,
            "{} has no controller reference to a Backfill",
            s.name
        );
        let index = plan.iter().position(|&p| p == session).expect("planned") as u64;
        assert_eq!(s.plan_index, Some(index), "{}: plan index", s.name);
    }
}
