//! Which namespaces the operator watches, and one watch of a kind over
//! all of them.
//!
//! Every namespace, or one, is a single watch. A list of namespaces is a
//! watch per namespace (the operator may hold Roles there and nothing
//! cluster-wide), merged into one stream that feeds one cache. The merge
//! cannot pass each watch's listing events through as they come: a cache
//! replaces all its content at the end of a listing (`InitDone`), so the
//! first namespace to finish would wipe the others, and a namespace that
//! lists again (after a watch expired) would too. [`Merge`] turns the
//! listings into one: nothing reaches the cache until every namespace has
//! listed once, and a later listing of one namespace is passed on as a
//! whole new listing of the cache, made of what the cache holds for the
//! other namespaces and the fresh list of that one.

use std::collections::BTreeMap;
use std::fmt::Debug;

use futures::stream::{self, BoxStream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

type Item<K> = Result<watcher::Event<K>, watcher::Error>;

/// Checks, before anything is watched, that the operator may list each
/// kind it watches in each namespace (or in all), and that the CRDs are
/// installed. A watch refused there would retry forever, and with several
/// namespaces the others would wait for it: a clear error at start is
/// better. Other failures (the API server not answering yet) are left to
/// the watches' retries.
pub async fn preflight(client: &Client, namespaces: &[String]) -> crate::Result<()> {
    let scopes: Vec<Option<&str>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().map(|n| Some(n.as_str())).collect()
    };
    for ns in scopes {
        can_list::<crate::api::Schedule>(client, ns).await?;
        can_list::<crate::api::Backfill>(client, ns).await?;
        can_list::<crate::api::SessionLedger>(client, ns).await?;
        can_list::<k8s_openapi::api::batch::v1::Job>(client, ns).await?;
    }
    Ok(())
}

async fn can_list<K>(client: &Client, ns: Option<&str>) -> crate::Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let place = ns.map_or("in any namespace (cluster-wide)".to_string(), |ns| {
        format!("in namespace {ns}")
    });
    let what = format!("{}.{}", K::plural(&()), K::group(&()));
    match api
        .list_metadata(&kube::api::ListParams::default().limit(1))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if matches!(e.code, 401 | 403 | 404) => {
            let hint = if e.code == 404 {
                "is the CRD installed?"
            } else {
                "the operator needs get, list and watch there (the Helm chart's RBAC grants them)"
            };
            Err(crate::Error::Startup(format!(
                "cannot list {what} {place}: {} ({}); {hint}",
                e.message, e.code
            )))
        }
        Err(e) => {
            tracing::warn!(what, place, error = %e, "could not check access; the watch will retry");
            Ok(())
        }
    }
}

/// A watch of `K` in `namespaces` (every namespace when empty) with
/// backoff on errors. `cache` is the store the stream is reflected into:
/// with several namespaces, the merge reads it back.
pub fn watch<K>(
    client: &Client,
    namespaces: &[String],
    config: watcher::Config,
    cache: Store<K>,
) -> BoxStream<'static, Item<K>>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    match namespaces {
        [] => watcher(Api::all(client.clone()), config)
            .default_backoff()
            .boxed(),
        [ns] => watcher(Api::namespaced(client.clone(), ns), config)
            .default_backoff()
            .boxed(),
        many => {
            let watches = many.iter().enumerate().map(|(source, ns)| {
                watcher(Api::<K>::namespaced(client.clone(), ns), config.clone())
                    .default_backoff()
                    .map(move |event| (source, event))
                    .boxed()
            });
            let mut merge = Merge::new(many.to_vec());
            // `flat_map` hands on every event of one batch before it polls
            // the watches again, so each batch is in the cache before the
            // next is made from it.
            stream::select_all(watches)
                .flat_map(move |(source, event)| {
                    stream::iter(merge.push(source, event, || cache.state()))
                })
                .boxed()
        }
    }
}

/// Merges the watches of several namespaces into the events of one cache.
pub struct Merge<K> {
    namespaces: Vec<String>,
    /// Per namespace: the listing it is making, by name.
    listing: Vec<Option<BTreeMap<String, K>>>,
    /// Until every namespace has listed once: each one's objects, kept
    /// current with its later events.
    first: Vec<Option<BTreeMap<String, K>>>,
    /// Whether the cache has had its first listing.
    synced: bool,
}

impl<K: Resource + Clone> Merge<K> {
    pub fn new(namespaces: Vec<String>) -> Self {
        let n = namespaces.len();
        Self {
            namespaces,
            listing: vec![None; n],
            first: vec![None; n],
            synced: false,
        }
    }

    /// The cache's events for one event of namespace `source`. `cached`
    /// reads what the cache holds now, every earlier event applied.
    pub fn push<C>(&mut self, source: usize, event: Item<K>, cached: C) -> Vec<Item<K>>
    where
        C: FnOnce() -> Vec<std::sync::Arc<K>>,
    {
        let event = match event {
            Ok(event) => event,
            Err(e) => return vec![Err(e)],
        };
        match event {
            watcher::Event::Init => {
                self.listing[source] = Some(BTreeMap::new());
                Vec::new()
            }
            watcher::Event::InitApply(obj) => {
                let listing = self.listing[source].get_or_insert_default();
                listing.insert(obj.name_any(), obj);
                Vec::new()
            }
            watcher::Event::InitDone => {
                let listed = self.listing[source].take().unwrap_or_default();
                if self.synced {
                    // This namespace listed again: the cache lists again,
                    // with the others as they are.
                    let ns = &self.namespaces[source];
                    let others = cached()
                        .into_iter()
                        .filter(|o| o.namespace().as_deref() != Some(ns))
                        .map(|o| (*o).clone());
                    return listing(others.chain(listed.into_values()));
                }
                self.first[source] = Some(listed);
                if self.first.iter().any(Option::is_none) {
                    return Vec::new();
                }
                self.synced = true;
                let all = std::mem::take(&mut self.first);
                listing(all.into_iter().flatten().flat_map(BTreeMap::into_values))
            }
            // Before the cache's first listing: this namespace's objects
            // are kept current here.
            watcher::Event::Apply(obj) if !self.synced => {
                if let Some(objects) = self.first[source].as_mut() {
                    objects.insert(obj.name_any(), obj);
                }
                Vec::new()
            }
            watcher::Event::Delete(obj) if !self.synced => {
                if let Some(objects) = self.first[source].as_mut() {
                    objects.remove(&obj.name_any());
                }
                Vec::new()
            }
            event => vec![Ok(event)],
        }
    }
}

/// One listing of the cache, of `objects`.
fn listing<K>(objects: impl Iterator<Item = K>) -> Vec<Item<K>> {
    std::iter::once(watcher::Event::Init)
        .chain(objects.map(watcher::Event::InitApply))
        .chain(std::iter::once(watcher::Event::InitDone))
        .map(Ok)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector::store::Writer;
    use watcher::Event;

    fn cm(ns: &str, name: &str, version: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.namespace = Some(ns.into());
        cm.metadata.name = Some(name.into());
        cm.metadata.resource_version = Some(version.into());
        cm
    }

    /// The merge feeding a real cache, as the controllers use it.
    struct Fixture {
        merge: Merge<ConfigMap>,
        writer: Writer<ConfigMap>,
        /// How many listings reached the cache.
        listings: usize,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                merge: Merge::new(vec!["a".into(), "b".into()]),
                writer: Writer::default(),
                listings: 0,
            }
        }

        fn push(&mut self, source: usize, event: Event<ConfigMap>) {
            let reader = self.writer.as_reader();
            for out in self.merge.push(source, Ok(event), || reader.state()) {
                let out = out.expect("no error was pushed");
                if matches!(out, Event::InitDone) {
                    self.listings += 1;
                }
                self.writer.apply_watcher_event(&out);
            }
        }

        fn list(&mut self, source: usize, objects: &[ConfigMap]) {
            self.push(source, Event::Init);
            for o in objects {
                self.push(source, Event::InitApply(o.clone()));
            }
            self.push(source, Event::InitDone);
        }

        /// The cache: `ns/name@version`, sorted.
        fn cached(&self) -> Vec<String> {
            let mut all: Vec<_> = self
                .writer
                .as_reader()
                .state()
                .iter()
                .map(|o| {
                    format!(
                        "{}/{}@{}",
                        o.namespace().unwrap_or_default(),
                        o.name_any(),
                        o.resource_version().unwrap_or_default()
                    )
                })
                .collect();
            all.sort();
            all
        }
    }

    #[test]
    fn the_cache_lists_once_every_namespace_has_listed() {
        let mut f = Fixture::new();
        f.list(0, &[cm("a", "one", "1"), cm("a", "two", "1")]);
        assert_eq!(f.cached(), Vec::<String>::new(), "b has not listed yet");
        assert_eq!(f.listings, 0);
        // a's changes while b lists are kept for the first listing.
        f.push(0, Event::Apply(cm("a", "three", "2")));
        f.push(0, Event::Delete(cm("a", "one", "1")));
        f.push(1, Event::Init);
        f.push(1, Event::InitApply(cm("b", "one", "1")));
        assert_eq!(f.cached(), Vec::<String>::new());
        f.push(1, Event::InitDone);
        assert_eq!(f.listings, 1);
        assert_eq!(f.cached(), ["a/three@2", "a/two@1", "b/one@1"]);
    }

    #[test]
    fn a_namespace_listing_again_replaces_only_its_own_objects() {
        let mut f = Fixture::new();
        f.list(0, &[cm("a", "one", "1"), cm("a", "two", "1")]);
        f.list(1, &[cm("b", "one", "1")]);
        // Afterwards, changes pass straight through.
        f.push(1, Event::Apply(cm("b", "two", "2")));
        f.push(0, Event::Delete(cm("a", "two", "1")));
        assert_eq!(f.cached(), ["a/one@1", "b/one@1", "b/two@2"]);
        // a's watch expired and lists again; b changes meanwhile.
        f.push(0, Event::Init);
        f.push(0, Event::InitApply(cm("a", "one", "5")));
        f.push(1, Event::Apply(cm("b", "three", "6")));
        f.push(0, Event::InitApply(cm("a", "four", "5")));
        assert_eq!(f.cached(), ["a/one@1", "b/one@1", "b/three@6", "b/two@2"]);
        f.push(0, Event::InitDone);
        assert_eq!(f.listings, 2);
        assert_eq!(
            f.cached(),
            ["a/four@5", "a/one@5", "b/one@1", "b/three@6", "b/two@2"]
        );
    }

    #[test]
    fn errors_pass_through_and_lose_nothing() {
        let mut f = Fixture::new();
        f.list(0, &[cm("a", "one", "1")]);
        let reader = f.writer.as_reader();
        let out = f
            .merge
            .push(1, Err(watcher::Error::NoResourceVersion), || reader.state());
        assert!(matches!(out.as_slice(), [Err(_)]));
        f.list(1, &[]);
        assert_eq!(f.cached(), ["a/one@1"]);
    }
}
