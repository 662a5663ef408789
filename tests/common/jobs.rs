//! The operator's Jobs as the tests read them: the names it puts on them,
//! how they ended, and a test's own watch of them.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

use super::DEADLINE;
use super::poll::eventually;

pub const LABEL_BACKFILL: &str = "backfill.dev/backfill";
pub const LABEL_SCHEDULE: &str = "backfill.dev/schedule";
pub const LABEL_SESSION: &str = "backfill.dev/session";
pub const ANNOTATION_PLAN_INDEX: &str = "backfill.dev/plan-index";
pub const JOB_FINALIZER: &str = "backfill.dev/outcome";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
}

/// How a Job ended, as the operator judges it: Complete or Failed.
pub fn outcome(job: &Job) -> Option<Outcome> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let is = |t: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == t && c.status == "True")
    };
    if is("Complete") {
        Some(Outcome::Succeeded)
    } else if is("Failed") {
        Some(Outcome::Failed)
    } else {
        None
    }
}

pub fn label<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// What a test keeps of the Jobs it watches.
pub trait JobLog: Default + Send + 'static {
    /// A Job was listed, added or changed (or is being deleted).
    fn apply(&mut self, job: &Job);
    /// The Job with this UID is gone.
    fn delete(&mut self, uid: &str);
    /// The UIDs of the Jobs seen, so a relist can tell which are gone.
    fn uids(&self) -> Vec<String>;
}

/// Watches Jobs into a fresh `T`, and returns once the first list is in.
pub async fn watch_jobs<T: JobLog>(
    jobs: &Api<Job>,
    config: watcher::Config,
) -> (Arc<Mutex<T>>, tokio::task::JoinHandle<()>) {
    let state = Arc::new(Mutex::new(T::default()));
    let synced = Arc::new(AtomicBool::new(false));
    let stream = watcher(jobs.clone(), config).default_backoff();
    let task = tokio::spawn({
        let (state, synced) = (state.clone(), synced.clone());
        async move {
            let mut stream = std::pin::pin!(stream);
            let mut relisted: Option<BTreeSet<String>> = None;
            while let Some(event) = stream.next().await {
                let Ok(event) = event else { continue };
                let mut s = state.lock().expect("job log lock");
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
                        for uid in s.uids().into_iter().filter(|u| !relisted.contains(u)) {
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
    (state, task)
}
