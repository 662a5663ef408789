//! The Jobs' side of the API: create, delete, release the outcome
//! finalizer, and release the finalizers of Jobs whose owner is gone.

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::warn;

use super::FIELD_MANAGER;
use super::trim::CachedJob;
use crate::api::{Backfill, JOB_FINALIZER, Schedule};
use crate::{Error, Result};

/// Passes Job events on, and releases the finalizer of a Job being deleted
/// whose owner (Schedule or Backfill) no longer exists — the garbage
/// collector deleting a deleted owner's Jobs: nobody is left to record
/// its outcome. An owner missing from the cache is looked up before its
/// Job is taken for an orphan (the cache may not have synced yet).
pub fn release_orphans<S>(
    events: S,
    schedules: Store<Schedule>,
    backfills: Store<Backfill>,
    client: Client,
    leadership: super::leader::Leadership,
) -> impl futures::Stream<Item = std::result::Result<CachedJob, watcher::Error>> + Send + 'static
where
    S: futures::Stream<Item = std::result::Result<CachedJob, watcher::Error>> + Send + 'static,
{
    events.then(move |event| {
        let (schedules, backfills, client) = (schedules.clone(), backfills.clone(), client.clone());
        let leadership = leadership.clone();
        async move {
            if let Ok(job) = &event
                && job.meta().deletion_timestamp.is_some()
                && has_finalizer(job)
                && leadership.check().is_ok()
                && let Some(ns) = job.namespace()
            {
                // Only our own kinds, in the Job's namespace, keep the
                // finalizer on: a reference to anything else (or to another
                // namespace's object, which Kubernetes ignores too) must
                // not hold a deletion up.
                let mut orphan = true;
                for owner in job.owner_references() {
                    let cached = match owner.kind.as_str() {
                        "Schedule" => schedules
                            .get(&ObjectRef::new(&owner.name).within(&ns))
                            .is_some_and(|s| alive(s.meta(), &owner.uid)),
                        "Backfill" => backfills
                            .get(&ObjectRef::new(&owner.name).within(&ns))
                            .is_some_and(|b| alive(b.meta(), &owner.uid)),
                        _ => continue,
                    };
                    if cached || owner_alive(&client, &ns, owner).await {
                        orphan = false;
                    }
                }
                if orphan && let Err(e) = release_finalizer(&client, &ns, &job.name_any()).await {
                    warn!(job = %job.name_any(), error = %e, "releasing an orphaned Job failed");
                }
            }
            event
        }
    })
}

/// Whether the owner a reference names still exists (same UID, not being
/// deleted). An error other than "not found" counts as alive: a Job is
/// never released on a guess.
async fn owner_alive(
    client: &Client,
    ns: &str,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> bool {
    let meta = match owner.kind.as_str() {
        "Schedule" => Api::<Schedule>::namespaced(client.clone(), ns)
            .get_metadata_opt(&owner.name)
            .await
            .map(|o| o.map(|o| o.metadata)),
        "Backfill" => Api::<Backfill>::namespaced(client.clone(), ns)
            .get_metadata_opt(&owner.name)
            .await
            .map(|o| o.map(|o| o.metadata)),
        _ => return true,
    };
    match meta {
        Ok(Some(meta)) => alive(&meta, &owner.uid),
        Ok(None) => false,
        Err(_) => true,
    }
}

fn alive(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, uid: &str) -> bool {
    meta.uid.as_deref() == Some(uid) && meta.deletion_timestamp.is_none()
}

pub fn has_finalizer<K: Resource>(job: &K) -> bool {
    job.finalizers().iter().any(|f| f == JOB_FINALIZER)
}

/// What creating a Job came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    Made,
    /// It existed already, ours: a retry after a crash, or a stale cache.
    Existed,
    /// Its name is taken by a Job of another owner (an earlier Backfill of
    /// the same name whose Jobs are still being collected, or orphaned).
    Taken,
}

/// Creates a Job owned (as controller) by `job`'s owner reference. On a
/// name conflict the Job cache (`cache`, synced before any reconcile)
/// tells whose Job holds the name; one it does not show yet makes the
/// pass retry shortly.
pub async fn create_job(
    client: &Client,
    cache: &Store<CachedJob>,
    ns: &str,
    job: &Job,
) -> Result<Created> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    match api.create(&pp, job).await {
        Ok(_) => Ok(Created::Made),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let owner = job.owner_references().first().map(|o| o.uid.as_str());
            match cache.get(&ObjectRef::new(&job.name_any()).within(ns)) {
                Some(existing)
                    if existing
                        .owner_references()
                        .iter()
                        .any(|o| Some(o.uid.as_str()) == owner && o.controller == Some(true)) =>
                {
                    Ok(Created::Existed)
                }
                // Another owner's Job on its way out (an earlier object of
                // the same name, deleted): the name is free soon, and the
                // pass is retried as a whole, creating this one then.
                Some(existing) if existing.metadata.deletion_timestamp.is_some() => {
                    Err(Error::NameInUse {
                        kind: "Job",
                        name: job.name_any(),
                    })
                }
                Some(_) => Ok(Created::Taken),
                // Not in the cache yet (or gone in between): retried as a
                // whole too.
                None => Err(Error::NameInUse {
                    kind: "Job",
                    name: job.name_any(),
                }),
            }
        }
        Err(e) => Err(Error::Kube(e)),
    }
}

/// Deletes a Job and its pods; one already gone is fine.
pub async fn delete_job(client: &Client, ns: &str, name: &str) -> Result<()> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// Removes the outcome finalizer from a Job, leaving any other.
pub async fn release_finalizer(client: &Client, ns: &str, name: &str) -> Result<()> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [JOB_FINALIZER]}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// What releasing the outcome finalizers did in one namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReleasedIn {
    pub namespace: String,
    /// Jobs whose finalizer was removed (or had gone meanwhile).
    pub released: usize,
    /// Jobs whose finalizer could not be removed, with why.
    pub failed: Vec<(String, String)>,
}

/// How many finalizers are removed at once.
const RELEASE_CONCURRENCY: usize = 8;

/// Removes the outcome finalizer from every Job holding it in `namespaces`
/// (every namespace when empty), with [`release_finalizer`]: other
/// finalizers stay, and a Job gone or released meanwhile is fine. For
/// `backfill-operator release-finalizers`, when the operator leaves a
/// namespace or the cluster: the outcomes of those Jobs are then never
/// recorded. Listed namespaces are reported even with nothing to release;
/// with every namespace, those with Jobs holding the finalizer. A Job that
/// cannot be patched is reported and the others go on; a namespace that
/// cannot be listed is an error. The Jobs of `except` are left alone.
pub async fn release_all_finalizers(
    client: &Client,
    namespaces: &[String],
    except: &[String],
) -> Result<Vec<ReleasedIn>> {
    let scopes: Vec<Option<&str>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().map(|n| Some(n.as_str())).collect()
    };
    let mut report: Vec<ReleasedIn> = namespaces
        .iter()
        .map(|ns| ReleasedIn {
            namespace: ns.clone(),
            ..ReleasedIn::default()
        })
        .collect();
    for scope in scopes {
        let mut held = jobs_holding_the_finalizer(client, scope).await?;
        held.retain(|(ns, _)| !except.contains(ns));
        let outcomes: Vec<((String, String), Result<()>)> = futures::stream::iter(held)
            .map(|(ns, name)| async move {
                let result = release_finalizer(client, &ns, &name).await;
                ((ns, name), result)
            })
            .buffer_unordered(RELEASE_CONCURRENCY)
            .collect()
            .await;
        for ((ns, name), result) in outcomes {
            let entry = match report.iter().position(|r| r.namespace == ns) {
                Some(i) => &mut report[i],
                None => {
                    report.push(ReleasedIn {
                        namespace: ns.clone(),
                        ..ReleasedIn::default()
                    });
                    report.last_mut().expect("just pushed")
                }
            };
            match result {
                Ok(()) => entry.released += 1,
                Err(e) => entry.failed.push((name, api_message(&e))),
            }
        }
    }
    if namespaces.is_empty() {
        report.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    }
    Ok(report)
}

/// (namespace, name) of the Jobs in `ns` (every namespace: `None`) that
/// hold the outcome finalizer, listed by metadata only, a page at a time.
async fn jobs_holding_the_finalizer(
    client: &Client,
    ns: Option<&str>,
) -> Result<Vec<(String, String)>> {
    let api: Api<Job> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut held = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(500);
        if let Some(token) = token.take() {
            params = params.continue_token(&token);
        }
        let page = api.list_metadata(&params).await.map_err(|e| {
            let place = ns.map_or("in any namespace (cluster-wide)".to_string(), |ns| {
                format!("in namespace {ns}")
            });
            Error::Startup(format!(
                "cannot list jobs.batch {place}: {}",
                api_message(&Error::Kube(e))
            ))
        })?;
        for job in &page.items {
            if job.finalizers().iter().any(|f| f == JOB_FINALIZER)
                && let Some(job_ns) = job.namespace()
            {
                held.push((job_ns, job.name_any()));
            }
        }
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(next) => token = Some(next),
            None => return Ok(held),
        }
    }
}

/// An API error as a person reads it: the server's message and code.
fn api_message(e: &Error) -> String {
    match e {
        Error::Kube(kube::Error::Api(status)) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}
