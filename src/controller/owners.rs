//! Which cached Jobs each owner (a Schedule's or Backfill's namespace and
//! UID) has, so a reconcile reads its own Jobs instead of scanning every
//! Job of the operator. Owners are matched by namespace and UID: an owner
//! reference is only ever honoured in its own namespace (as Kubernetes'
//! garbage collector does), so a Job in one namespace naming the UID of
//! an object in another is nobody's Job there.
//!
//! The index follows the Job watch's events the way the cache does (a
//! listing replaces it whole), one step ahead of the cache: it is fed
//! before the cache is, so a reconcile triggered by a change always finds
//! the Job in both. A name it lists that the cache lacks yet is skipped.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use super::trim::CachedJob as Job;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

/// A namespace and a name (or UID). Each Job's are allocated once, when
/// the index meets it, and shared by every set and map here that names
/// it: with 10,000 Jobs, four `String` copies of each cost megabytes.
type Key = (Arc<str>, Arc<str>);

fn key(ns: &str, name: &str) -> Key {
    (Arc::from(ns), Arc::from(name))
}

/// Job (namespace, name) by owner (namespace, UID).
#[derive(Default)]
struct Index {
    by_owner: HashMap<Key, BTreeSet<Key>>,
    /// Each Job's owner UIDs as last seen, to move it when they change
    /// (the garbage collector strips them when an owner is deleted with
    /// orphaning).
    owners: HashMap<Key, Vec<Arc<str>>>,
    /// Job (namespace, name) by (namespace, `backfill.dev/schedule`
    /// label), whoever owns it: a session is never run twice at once.
    by_schedule: HashMap<Key, BTreeSet<Key>>,
    schedules: HashMap<Key, Arc<str>>,
}

impl Index {
    fn insert(&mut self, job: &Job) {
        let job_key = key(
            job.metadata.namespace.as_deref().unwrap_or_default(),
            job.metadata.name.as_deref().unwrap_or_default(),
        );
        self.remove(&job_key);
        let ns = &job_key.0;
        let uids: Vec<Arc<str>> = job
            .owner_references()
            .iter()
            .map(|o| Arc::from(o.uid.as_str()))
            .collect();
        for uid in &uids {
            self.by_owner
                .entry((ns.clone(), uid.clone()))
                .or_default()
                .insert(job_key.clone());
        }
        if let Some(schedule) = job.schedule_label() {
            let schedule: Arc<str> = Arc::from(schedule);
            self.by_schedule
                .entry((ns.clone(), schedule.clone()))
                .or_default()
                .insert(job_key.clone());
            self.schedules.insert(job_key.clone(), schedule);
        }
        self.owners.insert(job_key, uids);
    }

    fn remove(&mut self, job_key: &Key) {
        if let Some(schedule) = self.schedules.remove(job_key) {
            let label = (job_key.0.clone(), schedule);
            if let Some(jobs) = self.by_schedule.get_mut(&label) {
                jobs.remove(job_key);
                if jobs.is_empty() {
                    self.by_schedule.remove(&label);
                }
            }
        }
        for uid in self.owners.remove(job_key).unwrap_or_default() {
            let owner = (job_key.0.clone(), uid);
            if let Some(jobs) = self.by_owner.get_mut(&owner) {
                jobs.remove(job_key);
                if jobs.is_empty() {
                    self.by_owner.remove(&owner);
                }
            }
        }
    }
}

/// The owner index of the Job cache.
#[derive(Clone, Default)]
pub struct OwnerIndex {
    inner: Arc<Mutex<(Index, Option<Index>)>>,
}

impl OwnerIndex {
    /// Follows one event of the Job watch, before the cache does.
    pub fn apply(&self, event: &watcher::Event<Job>) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (index, listing) = &mut *guard;
        match event {
            watcher::Event::Apply(job) => index.insert(job),
            watcher::Event::Delete(job) => index.remove(&key(
                job.metadata.namespace.as_deref().unwrap_or_default(),
                job.metadata.name.as_deref().unwrap_or_default(),
            )),
            watcher::Event::Init => *listing = Some(Index::default()),
            watcher::Event::InitApply(job) => listing.get_or_insert_default().insert(job),
            watcher::Event::InitDone => *index = listing.take().unwrap_or_default(),
        }
    }

    /// The cached Jobs in namespace `ns` labelled as the Schedule
    /// `schedule`'s, whoever owns them.
    pub fn jobs_of_schedule(&self, ns: &str, schedule: &str, cache: &Store<Job>) -> Vec<Arc<Job>> {
        let wanted = key(ns, schedule);
        self.cached(|index| index.by_schedule.get(&wanted), cache)
            .filter(|j| j.schedule_label() == Some(schedule))
            .collect()
    }

    /// The cached Jobs in namespace `ns` that the object `uid` owns.
    pub fn jobs_of(&self, ns: &str, uid: &str, cache: &Store<Job>) -> Vec<Arc<Job>> {
        let wanted = key(ns, uid);
        self.cached(|index| index.by_owner.get(&wanted), cache)
            // The cache may hold a newer Job of that name, of another owner.
            .filter(|j| j.owner_references().iter().any(|o| o.uid == uid))
            .collect()
    }

    /// The cached Jobs of the set `pick` finds in the index (a name the
    /// cache lacks yet is skipped).
    fn cached<'c>(
        &self,
        pick: impl FnOnce(&Index) -> Option<&BTreeSet<Key>>,
        cache: &'c Store<Job>,
    ) -> impl Iterator<Item = Arc<Job>> + 'c {
        let keys: Vec<Key> = {
            let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            pick(&guard.0)
                .map(|jobs| jobs.iter().cloned().collect())
                .unwrap_or_default()
        };
        keys.into_iter()
            .filter_map(move |(ns, name)| cache.get(&ObjectRef::new(&name).within(&ns)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::runtime::reflector::store::Writer;
    use watcher::Event;

    fn job(name: &str, owners: &[&str]) -> Job {
        job_in("ns", name, owners)
    }

    fn job_in(ns: &str, name: &str, owners: &[&str]) -> Job {
        let mut job = Job::default();
        job.metadata.namespace = Some(ns.into());
        job.metadata.name = Some(name.into());
        job.metadata.owner_references = Some(
            owners
                .iter()
                .map(|uid| OwnerReference {
                    uid: uid.to_string(),
                    ..OwnerReference::default()
                })
                .collect(),
        );
        job
    }

    /// The index and a cache fed as the controllers feed them.
    fn feed(index: &OwnerIndex, cache: &mut Writer<Job>, event: Event<Job>) {
        index.apply(&event);
        cache.apply_watcher_event(&event);
    }

    fn names(jobs: Vec<Arc<Job>>) -> Vec<String> {
        let mut names: Vec<String> = jobs.iter().map(|j| j.name_any()).collect();
        names.sort();
        names
    }

    #[test]
    fn finds_each_owners_jobs_through_changes_and_listings() {
        let index = OwnerIndex::default();
        let mut cache = Writer::default();
        let store = cache.as_reader();
        feed(&index, &mut cache, Event::Init);
        feed(&index, &mut cache, Event::InitApply(job("a1", &["a"])));
        feed(&index, &mut cache, Event::InitApply(job("b1", &["b"])));
        assert!(
            index.jobs_of("ns", "a", &store).is_empty(),
            "not listed yet"
        );
        feed(&index, &mut cache, Event::InitDone);
        assert_eq!(names(index.jobs_of("ns", "a", &store)), ["a1"]);
        feed(&index, &mut cache, Event::Apply(job("a2", &["a"])));
        feed(&index, &mut cache, Event::Apply(job("ab", &["a", "b"])));
        assert_eq!(names(index.jobs_of("ns", "a", &store)), ["a1", "a2", "ab"]);
        assert_eq!(names(index.jobs_of("ns", "b", &store)), ["ab", "b1"]);
        // Orphaned: its owner references stripped.
        feed(&index, &mut cache, Event::Apply(job("ab", &["b"])));
        assert_eq!(names(index.jobs_of("ns", "a", &store)), ["a1", "a2"]);
        feed(&index, &mut cache, Event::Delete(job("a1", &["a"])));
        assert_eq!(names(index.jobs_of("ns", "a", &store)), ["a2"]);
        // A listing replaces everything.
        feed(&index, &mut cache, Event::Init);
        feed(&index, &mut cache, Event::InitApply(job("c1", &["c"])));
        feed(&index, &mut cache, Event::InitDone);
        assert!(index.jobs_of("ns", "a", &store).is_empty());
        assert!(index.jobs_of("ns", "b", &store).is_empty());
        assert_eq!(names(index.jobs_of("ns", "c", &store)), ["c1"]);
    }

    #[test]
    fn a_job_the_cache_lacks_yet_is_left_out() {
        let index = OwnerIndex::default();
        let cache = Writer::<Job>::default();
        index.apply(&Event::Apply(job("a1", &["a"])));
        assert!(index.jobs_of("ns", "a", &cache.as_reader()).is_empty());
    }

    #[test]
    fn an_owner_reference_counts_only_in_its_own_namespace() {
        let index = OwnerIndex::default();
        let mut cache = Writer::default();
        let store = cache.as_reader();
        feed(
            &index,
            &mut cache,
            Event::Apply(job_in("a", "nightly-1", &["uid-a"])),
        );
        // Namespace b's Job of the same name claims namespace a's owner.
        feed(
            &index,
            &mut cache,
            Event::Apply(job_in("b", "nightly-1", &["uid-a"])),
        );
        let jobs = index.jobs_of("a", "uid-a", &store);
        assert_eq!(names(jobs.clone()), ["nightly-1"]);
        assert_eq!(jobs[0].namespace().as_deref(), Some("a"));
        assert_eq!(names(index.jobs_of("b", "uid-a", &store)), ["nightly-1"]);
    }
}
