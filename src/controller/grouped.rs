//! An index of a watch cache by a group key within each namespace: the
//! SessionLedgers and the Backfills of each Schedule. A reconcile reads
//! its Schedule's few objects instead of scanning the whole cache, so the
//! work of a tick does not grow with the number of Schedules.
//!
//! Like `owners::OwnerIndex`, it follows the watch's events one step
//! ahead of the cache (a listing replaces it whole), and a name the cache
//! lacks yet is skipped.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

type NsName = (String, String);

struct Groups {
    members: HashMap<NsName, BTreeSet<String>>,
    group_of: HashMap<NsName, String>,
}

impl Groups {
    fn new() -> Self {
        Self {
            members: HashMap::new(),
            group_of: HashMap::new(),
        }
    }

    fn insert(&mut self, ns: String, name: String, group: Option<String>) {
        let key = (ns, name);
        self.remove(&key);
        if let Some(group) = group {
            self.members
                .entry((key.0.clone(), group.clone()))
                .or_default()
                .insert(key.1.clone());
            self.group_of.insert(key, group);
        }
    }

    fn remove(&mut self, key: &NsName) {
        if let Some(group) = self.group_of.remove(key) {
            let g = (key.0.clone(), group);
            if let Some(names) = self.members.get_mut(&g) {
                names.remove(&key.1);
                if names.is_empty() {
                    self.members.remove(&g);
                }
            }
        }
    }
}

/// The cache's objects by (namespace, group).
pub struct Grouped<K> {
    inner: Arc<Mutex<(Groups, Option<Groups>)>>,
    group: fn(&K) -> String,
}

impl<K> Clone for Grouped<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            group: self.group,
        }
    }
}

impl<K> Grouped<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    /// An index by `group` (e.g. the Schedule an object refers to).
    pub fn new(group: fn(&K) -> String) -> Self {
        Self {
            inner: Arc::new(Mutex::new((Groups::new(), None))),
            group,
        }
    }

    /// Follows one event of the watch, before the cache does.
    pub fn apply(&self, event: &watcher::Event<K>) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (index, listing) = &mut *guard;
        let entry = |o: &K| {
            (
                o.namespace().unwrap_or_default(),
                o.name_any(),
                Some((self.group)(o)),
            )
        };
        match event {
            watcher::Event::Apply(o) => {
                let (ns, name, group) = entry(o);
                index.insert(ns, name, group)
            }
            watcher::Event::Delete(o) => {
                index.remove(&(o.namespace().unwrap_or_default(), o.name_any()))
            }
            watcher::Event::Init => *listing = Some(Groups::new()),
            watcher::Event::InitApply(o) => {
                let (ns, name, group) = entry(o);
                listing
                    .get_or_insert_with(Groups::new)
                    .insert(ns, name, group)
            }
            watcher::Event::InitDone => {
                *index = listing.take().unwrap_or_else(Groups::new);
            }
        }
    }

    /// The cached objects of `group` in `ns`.
    pub fn members(&self, ns: &str, group: &str, cache: &Store<K>) -> Vec<Arc<K>> {
        let names: Vec<String> = {
            let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            guard
                .0
                .members
                .get(&(ns.to_string(), group.to_string()))
                .map(|n| n.iter().cloned().collect())
                .unwrap_or_default()
        };
        names
            .into_iter()
            .filter_map(|name| cache.get(&ObjectRef::new(&name).within(ns)))
            // The cache may hold a newer version, of another group.
            .filter(|o| (self.group)(o) == group)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector::store::Writer;
    use watcher::Event;

    fn cm(ns: &str, name: &str, group: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.namespace = Some(ns.into());
        cm.metadata.name = Some(name.into());
        cm.data = Some([("group".to_string(), group.to_string())].into());
        cm
    }

    fn group(cm: &ConfigMap) -> String {
        cm.data
            .as_ref()
            .and_then(|d| d.get("group").cloned())
            .unwrap_or_default()
    }

    fn names(objs: Vec<Arc<ConfigMap>>) -> Vec<String> {
        let mut n: Vec<_> = objs.iter().map(|o| o.name_any()).collect();
        n.sort();
        n
    }

    #[test]
    fn finds_each_groups_objects_through_changes_and_listings() {
        let index = Grouped::new(group);
        let mut cache = Writer::default();
        let store = cache.as_reader();
        let mut feed = |e: Event<ConfigMap>| {
            index.apply(&e);
            cache.apply_watcher_event(&e);
        };
        feed(Event::Init);
        feed(Event::InitApply(cm("a", "l1", "s1")));
        feed(Event::InitApply(cm("a", "l2", "s2")));
        feed(Event::InitApply(cm("b", "l3", "s1")));
        feed(Event::InitDone);
        feed(Event::Apply(cm("a", "l4", "s1")));
        assert_eq!(names(index.members("a", "s1", &store)), ["l1", "l4"]);
        assert_eq!(names(index.members("b", "s1", &store)), ["l3"]);
        // Moved to another group, then deleted.
        feed(Event::Apply(cm("a", "l1", "s2")));
        assert_eq!(names(index.members("a", "s1", &store)), ["l4"]);
        assert_eq!(names(index.members("a", "s2", &store)), ["l1", "l2"]);
        feed(Event::Delete(cm("a", "l2", "s2")));
        assert_eq!(names(index.members("a", "s2", &store)), ["l1"]);
        // A listing replaces everything.
        feed(Event::Init);
        feed(Event::InitApply(cm("a", "l9", "s1")));
        feed(Event::InitDone);
        assert_eq!(names(index.members("a", "s1", &store)), ["l9"]);
        assert!(index.members("a", "s2", &store).is_empty());
    }
}
