//! The Job tracker: every Job that ever existed in a test's namespace,
//! watched from before the operator makes any, so a test knows how each
//! ended even after the operator deleted it (history limits, a cancel) —
//! the truth the operator's counters are checked against.
//!
//! A tracker groups the Jobs by their owner: by Backfill for the Backfill
//! tests (a Schedule's own runs under the Backfill ""), by Schedule for the
//! Schedule tests. Its methods take that owner's name.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

use super::DEADLINE;
use super::jobs::{
    ANNOTATION_PLAN_INDEX, JOB_FINALIZER, LABEL_BACKFILL, LABEL_SCHEDULE, LABEL_SESSION, Outcome,
    annotation, label, outcome,
};
use super::poll::eventually;

/// A Job as the tracker last saw it, and what it ever saw of it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub uid: String,
    pub name: String,
    /// "" for a Schedule's own run.
    pub backfill: String,
    pub schedule: String,
    pub session: Option<i64>,
    pub plan_index: Option<u64>,
    /// How it ended, once it did (see [`outcome`]). A Job deleted before
    /// it ended, which the operator counts as killed, keeps `None`, with
    /// `deleting` and then `deleted`.
    pub outcome: Option<Outcome>,
    /// Seen with a pod active.
    pub started: bool,
    /// Has a deletionTimestamp.
    pub deleting: bool,
    /// Gone from the API server.
    pub deleted: bool,
    /// Carried the outcome finalizer when last seen.
    pub finalizer: bool,
    /// Controlled by a Backfill.
    pub owned: bool,
}

impl Seen {
    /// Running, as the operator and `maxInFlight` count: not finished, not
    /// being deleted.
    pub fn active(&self) -> bool {
        self.outcome.is_none() && !self.deleting && !self.deleted
    }

    /// Not finished and not gone yet: a Job being deleted still runs until
    /// it is gone.
    pub fn unfinished(&self) -> bool {
        self.outcome.is_none() && !self.deleted
    }
}

/// Which owner a tracker groups the Jobs by.
#[derive(Clone, Copy)]
enum GroupBy {
    Backfill,
    Schedule,
}

struct Tracked {
    group_by: GroupBy,
    /// By UID.
    jobs: BTreeMap<String, Seen>,
    /// Per owner: the most Jobs active at once, and their names then.
    max_active: BTreeMap<String, (usize, Vec<String>)>,
    /// Per owner: the most Jobs unfinished at once.
    max_unfinished: BTreeMap<String, usize>,
    /// Every time two or more Jobs of one Schedule were active for one
    /// session at once, whoever owned them: their names.
    shared: Vec<Vec<String>>,
    /// Per owner, what happened, in the order the watch told: "+name"
    /// created, "name=Succeeded|Failed" finished, "name~" deletion
    /// requested, "-name" gone.
    history: Vec<(String, String)>,
}

impl Tracked {
    fn owner<'a>(&self, seen: &'a Seen) -> &'a str {
        match self.group_by {
            GroupBy::Backfill => &seen.backfill,
            GroupBy::Schedule => &seen.schedule,
        }
    }

    /// A Job was listed, added or changed (or is being deleted).
    fn apply(&mut self, job: &Job) {
        let Some(uid) = job.metadata.uid.clone() else {
            return;
        };
        let name = job.metadata.name.clone().unwrap_or_default();
        let mut history = Vec::new();
        let seen = self.jobs.entry(uid.clone()).or_insert_with(|| {
            history.push(format!("+{name}"));
            Seen {
                uid: uid.clone(),
                name: name.clone(),
                backfill: label(job, LABEL_BACKFILL).unwrap_or_default().to_string(),
                schedule: label(job, LABEL_SCHEDULE).unwrap_or_default().to_string(),
                session: label(job, LABEL_SESSION).and_then(|s| s.parse().ok()),
                plan_index: annotation(job, ANNOTATION_PLAN_INDEX).and_then(|s| s.parse().ok()),
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
            }
        });
        // An outcome, once seen, stays (a Job never un-finishes).
        if seen.outcome.is_none()
            && let Some(outcome) = outcome(job)
        {
            seen.outcome = Some(outcome);
            history.push(format!("{name}={outcome:?}"));
        }
        seen.started |= job
            .status
            .as_ref()
            .and_then(|s| s.active)
            .is_some_and(|a| a > 0);
        if !seen.deleting && job.metadata.deletion_timestamp.is_some() {
            seen.deleting = true;
            history.push(format!("{name}~"));
        }
        seen.finalizer = job
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == JOB_FINALIZER);
        self.record(&uid, history);
    }

    /// The Job with this UID is gone.
    fn delete(&mut self, uid: &str) {
        let mut history = Vec::new();
        if let Some(seen) = self.jobs.get_mut(uid)
            && !seen.deleted
        {
            seen.deleted = true;
            history.push(format!("-{}", seen.name));
        }
        self.record(uid, history);
    }

    /// Files what happened to the Job `uid` under its owner, and measures
    /// the owner's Jobs again.
    fn record(&mut self, uid: &str, history: Vec<String>) {
        let Some(seen) = self.jobs.get(uid) else {
            return;
        };
        let owner = self.owner(seen).to_string();
        if let (true, Some(session)) = (seen.active(), seen.session) {
            let schedule = &seen.schedule;
            let sharing: Vec<String> = self
                .jobs
                .values()
                .filter(|s| s.active() && s.session == Some(session) && &s.schedule == schedule)
                .map(|s| s.name.clone())
                .collect();
            if sharing.len() > 1 {
                self.shared.push(sharing);
            }
        }
        self.history
            .extend(history.into_iter().map(|h| (owner.clone(), h)));
        let mine: Vec<&Seen> = self
            .jobs
            .values()
            .filter(|s| self.owner(s) == owner)
            .collect();
        let active: Vec<String> = mine
            .iter()
            .filter(|s| s.active())
            .map(|s| s.name.clone())
            .collect();
        let unfinished = mine.iter().filter(|s| s.unfinished()).count();
        let max = self.max_active.entry(owner.clone()).or_default();
        if active.len() > max.0 {
            *max = (active.len(), active);
        }
        let max = self.max_unfinished.entry(owner).or_default();
        *max = (*max).max(unfinished);
    }
}

pub struct JobTracker {
    state: Arc<Mutex<Tracked>>,
    task: tokio::task::JoinHandle<()>,
}

impl JobTracker {
    /// Watches the namespace's Backfill Jobs, by Backfill, and waits for
    /// the first list.
    pub async fn start(jobs: &Api<Job>) -> Self {
        Self::watch(
            jobs,
            watcher::Config::default().labels(LABEL_BACKFILL),
            GroupBy::Backfill,
        )
        .await
    }

    /// Watches every Job of the namespace's Schedules, scheduled runs (under
    /// the Backfill name "") and Backfills alike, by Backfill.
    pub async fn start_all(jobs: &Api<Job>) -> Self {
        Self::watch(
            jobs,
            watcher::Config::default().labels(LABEL_SCHEDULE),
            GroupBy::Backfill,
        )
        .await
    }

    /// Watches every Job of the namespace, by Schedule.
    pub async fn start_by_schedule(jobs: &Api<Job>) -> Self {
        Self::watch(jobs, watcher::Config::default(), GroupBy::Schedule).await
    }

    /// Watches Jobs into a fresh tracker, and returns once the first list
    /// is in.
    async fn watch(jobs: &Api<Job>, config: watcher::Config, group_by: GroupBy) -> Self {
        let state = Arc::new(Mutex::new(Tracked {
            group_by,
            jobs: BTreeMap::new(),
            max_active: BTreeMap::new(),
            max_unfinished: BTreeMap::new(),
            shared: Vec::new(),
            history: Vec::new(),
        }));
        let synced = Arc::new(AtomicBool::new(false));
        let stream = watcher(jobs.clone(), config).default_backoff();
        let task = tokio::spawn({
            let (state, synced) = (state.clone(), synced.clone());
            async move {
                let mut stream = std::pin::pin!(stream);
                let mut relisted: Option<BTreeSet<String>> = None;
                while let Some(event) = stream.next().await {
                    let Ok(event) = event else { continue };
                    let mut s = state.lock().expect("tracker lock");
                    match event {
                        watcher::Event::Init => relisted = Some(BTreeSet::new()),
                        watcher::Event::InitApply(job) => {
                            if let (Some(relisted), Some(uid)) =
                                (relisted.as_mut(), job.metadata.uid.clone())
                            {
                                relisted.insert(uid);
                            }
                            s.apply(&job);
                        }
                        watcher::Event::InitDone => {
                            // Whatever the relist did not return is gone.
                            let relisted = relisted.take().unwrap_or_default();
                            let gone: Vec<String> = s
                                .jobs
                                .keys()
                                .filter(|u| !relisted.contains(*u))
                                .cloned()
                                .collect();
                            for uid in gone {
                                s.delete(&uid);
                            }
                            synced.store(true, Ordering::SeqCst);
                        }
                        watcher::Event::Apply(job) => s.apply(&job),
                        watcher::Event::Delete(job) => {
                            if let Some(uid) = job.metadata.uid.as_deref() {
                                // A Delete may be the first we hear of it.
                                s.apply(&job);
                                s.delete(uid);
                            }
                        }
                    }
                }
            }
        });
        eventually("the Job watch to list", DEADLINE, || async {
            if synced.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("not listed yet".to_string())
            }
        })
        .await;
        JobTracker { state, task }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Tracked> {
        self.state.lock().expect("tracker lock")
    }

    /// Each time two or more Jobs of one Schedule were active for the
    /// same session at once, whoever owned them: their names.
    pub fn sessions_run_twice_at_once(&self) -> Vec<Vec<String>> {
        self.state().shared.clone()
    }

    /// Every Job of `owner` ever seen, by session then name.
    pub fn of(&self, owner: &str) -> Vec<Seen> {
        let state = self.state();
        let mut jobs: Vec<Seen> = state
            .jobs
            .values()
            .filter(|s| state.owner(s) == owner)
            .cloned()
            .collect();
        jobs.sort_by_key(|s| (s.session, s.name.clone()));
        jobs
    }

    /// The most Jobs of `owner` active at once so far.
    pub fn max_active(&self, owner: &str) -> usize {
        self.state().max_active.get(owner).map_or(0, |m| m.0)
    }

    /// The Jobs of `owner` active together when the most were.
    pub fn max_active_names(&self, owner: &str) -> Vec<String> {
        let state = self.state();
        state
            .max_active
            .get(owner)
            .map(|m| m.1.clone())
            .unwrap_or_default()
    }

    /// Asserts that at most `max_in_flight` Jobs of `owner` were ever
    /// active at once; else names the most that were, and says `context`
    /// on a line of its own.
    #[track_caller]
    pub fn assert_within_max_in_flight(&self, owner: &str, max_in_flight: usize, context: &str) {
        let max = self.max_active(owner);
        assert!(
            max <= max_in_flight,
            "{max} Jobs of {owner} active at once, maxInFlight is {max_in_flight}: {:?}\n{context}",
            self.max_active_names(owner)
        );
    }

    /// The most Jobs of `owner` unfinished at once so far, those being
    /// deleted included.
    pub fn max_unfinished(&self, owner: &str) -> usize {
        self.state().max_unfinished.get(owner).copied().unwrap_or(0)
    }

    /// The watch's story of `owner`'s Jobs (see `Tracked::history`).
    pub fn history(&self, owner: &str) -> String {
        let state = self.state();
        let lines: Vec<&str> = state
            .history
            .iter()
            .filter(|(o, _)| o == owner)
            .map(|(_, h)| h.as_str())
            .collect();
        lines.join(" ")
    }

    /// Every name seen with more than one UID, and every session seen in
    /// more than one Job: a session run twice.
    pub fn duplicates(&self, owner: &str) -> Vec<String> {
        let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
        let mut by_session: BTreeMap<Option<i64>, Vec<String>> = BTreeMap::new();
        for seen in self.of(owner) {
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

    /// Distinct sessions of `owner`'s Jobs.
    pub fn sessions(&self, owner: &str) -> BTreeSet<i64> {
        self.of(owner).iter().filter_map(|s| s.session).collect()
    }

    /// Distinct sessions of `owner`'s Jobs that ended with `outcome`.
    pub fn sessions_with(&self, owner: &str, outcome: Outcome) -> BTreeSet<i64> {
        self.of(owner)
            .iter()
            .filter(|s| s.outcome == Some(outcome))
            .filter_map(|s| s.session)
            .collect()
    }

    /// Waits until the Jobs of `owner` satisfy `pred`.
    pub async fn wait(&self, what: &str, owner: &str, pred: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        eventually(what, DEADLINE, || async {
            let jobs = self.of(owner);
            if pred(&jobs) {
                Ok(jobs)
            } else {
                Err(format!("Jobs seen: {}", describe(&jobs)))
            }
        })
        .await
    }

    /// Waits until a Job of `owner` satisfies `pred`, and returns the first
    /// that does.
    pub async fn wait_job(&self, what: &str, owner: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
        eventually(what, DEADLINE, || async {
            let jobs = self.of(owner);
            jobs.iter()
                .find(|s| pred(s))
                .cloned()
                .ok_or_else(|| format!("Jobs seen: {}", describe(&jobs)))
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
