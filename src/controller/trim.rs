//! What the watch caches keep of each object: what decisions read, not
//! what the API server sends. A Job is watched as a [`CachedJob`]: its
//! metadata and status only, so its spec (the pod template, most of its
//! size) is never even decoded, and a cached Job is a fraction of the
//! size of a `Job` value; the few labels and annotations decisions read
//! are kept beside its metadata as plain strings ([`KeptKeys`]), not as
//! two maps. Every object's managed fields (their field sets) go as each
//! event arrives, before the cache stores it. With 10,000 Jobs this is
//! the difference between caching every Job's full manifest and caching
//! its name, owners, session and outcome.

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta, Time};
use serde::{Deserialize, Serialize};

use crate::api::{ANNOTATION_PLAN_CHECK, ANNOTATION_PLAN_INDEX, LABEL_SCHEDULE, LABEL_SESSION};
use crate::core::job::OwnerKind;
use crate::core::observed::{JobKeys, JobState, ObservedJob};

/// A `batch/v1` Job as the controllers read it: its metadata (name,
/// labels, annotations, owners, finalizers, deletion) and its status
/// (conditions, start and completion times). Decoded from the API
/// server's Jobs, whose `spec` it skips. Jobs are only ever created from
/// a decision, never written back from the cache.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct CachedJob {
    #[serde(deserialize_with = "metadata_without_managed_fields")]
    pub metadata: ObjectMeta,
    pub status: Option<CachedStatus>,
    /// The labels and annotations decisions read, moved here out of
    /// `metadata` by [`trim_job`] (which leaves it none).
    #[serde(skip)]
    pub keys: KeptKeys,
}

/// What decisions read of a Job's status: whether it ended, and how
/// ([`JobState`]), and its start and completion times. Decoded from a
/// `JobStatus` and kept without one: a `JobStatus` is 200 bytes of
/// fields even when trimmed, and its conditions a list of their own.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(from = "JobStatus", into = "JobStatus")]
pub struct CachedStatus {
    pub state: JobState,
    pub start_time: Option<Time>,
    pub completion_time: Option<Time>,
}

impl CachedStatus {
    pub fn ended(&self) -> bool {
        self.state != JobState::Active
    }
}

impl From<JobStatus> for CachedStatus {
    fn from(status: JobStatus) -> Self {
        CachedStatus {
            state: JobState::of(Some(&status)),
            start_time: status.start_time,
            completion_time: status.completion_time,
        }
    }
}

/// Back to a `JobStatus` with the same meaning: its times, and the
/// terminal condition its state stands for.
impl From<CachedStatus> for JobStatus {
    fn from(status: CachedStatus) -> Self {
        let ended = match status.state {
            JobState::Active => None,
            JobState::Succeeded => Some("Complete"),
            JobState::Failed => Some("Failed"),
        };
        JobStatus {
            start_time: status.start_time,
            completion_time: status.completion_time,
            conditions: ended.map(|type_| {
                vec![JobCondition {
                    type_: type_.to_string(),
                    status: "True".to_string(),
                    ..JobCondition::default()
                }]
            }),
            ..JobStatus::default()
        }
    }
}

/// A cached Job's values of [`KEPT_LABELS`] and [`KEPT_ANNOTATIONS`].
/// Even a map of one entry costs a whole B-tree node (about 540 bytes
/// with `String` keys and values), so two maps per Job were a third of
/// the cache; these four optional strings are 64 bytes and their text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeptKeys {
    labels: [Option<Box<str>>; 2],
    annotations: [Option<Box<str>>; 2],
}

impl KeptKeys {
    fn take(
        kept: &[&str; 2],
        map: Option<std::collections::BTreeMap<String, String>>,
    ) -> [Option<Box<str>>; 2] {
        let mut map = map.unwrap_or_default();
        kept.map(|k| map.remove(k).map(String::into_boxed_str))
    }

    fn find<'a>(kept: &[&str; 2], values: &'a [Option<Box<str>>; 2], key: &str) -> Option<&'a str> {
        kept.iter()
            .position(|k| *k == key)
            .and_then(|i| values[i].as_deref())
    }
}

/// Only the kept keys are found: a decision that reads another would
/// find it missing, which the unit tests below would show.
impl JobKeys for KeptKeys {
    fn label(&self, key: &str) -> Option<&str> {
        KeptKeys::find(&KEPT_LABELS, &self.labels, key)
    }
    fn annotation(&self, key: &str) -> Option<&str> {
        KeptKeys::find(&KEPT_ANNOTATIONS, &self.annotations, key)
    }
}

impl CachedJob {
    /// What the decide steps need to know of this Job of `owner`.
    pub fn observe(&self, kind: OwnerKind, owner: &str) -> ObservedJob {
        ObservedJob::from_parts(
            &self.metadata,
            &self.keys,
            self.status.as_ref().map(|s| s.state).unwrap_or_default(),
            kind,
            owner,
        )
    }

    /// Its `backfill.dev/schedule` label.
    pub fn schedule_label(&self) -> Option<&str> {
        self.keys.label(LABEL_SCHEDULE)
    }
}

/// Decodes an object's metadata skipping its managed fields, which are
/// most of a Job's metadata (a field set of its whole pod template) and
/// which nothing reads: a page of 500 listed Jobs is then not 500 trees of
/// them in memory at once.
fn metadata_without_managed_fields<'de, D>(d: D) -> Result<ObjectMeta, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Fields;
    impl<'de> serde::de::Visitor<'de> for Fields {
        type Value = serde_json::Map<String, serde_json::Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object's metadata")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut fields = serde_json::Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if key == "managedFields" {
                    map.next_value::<serde::de::IgnoredAny>()?;
                } else {
                    fields.insert(key, map.next_value()?);
                }
            }
            Ok(fields)
        }
    }
    let fields = d.deserialize_map(Fields)?;
    serde_json::from_value(serde_json::Value::Object(fields)).map_err(serde::de::Error::custom)
}

impl kube::Resource for CachedJob {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;
    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("Job")
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("batch")
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("jobs")
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// A Job as the watch caches it: trimmed.
impl From<Job> for CachedJob {
    fn from(job: Job) -> Self {
        let mut cached = CachedJob {
            metadata: job.metadata,
            status: job.status.map(CachedStatus::from),
            keys: KeptKeys::default(),
        };
        trim_job(&mut cached);
        cached
    }
}

/// The annotation `kubectl apply` (client-side) keeps a copy of the whole
/// manifest in; nothing the operator decides reads it.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The labels and annotations of a Job the controllers read from the
/// cache (`ObservedJob`, the owner index, the Job mapper); every other
/// key goes: the session time, UUID and attempt name are written for the
/// user and read back by no decision.
const KEPT_LABELS: [&str; 2] = [LABEL_SCHEDULE, LABEL_SESSION];
const KEPT_ANNOTATIONS: [&str; 2] = [ANNOTATION_PLAN_CHECK, ANNOTATION_PLAN_INDEX];

/// What the cache keeps of a Job's metadata: of its labels and
/// annotations the ones above (a user's template labels can be many),
/// moved to `keys`; no managed fields. (Its status is kept compact as it
/// is decoded: [`CachedStatus`].) Trimming twice changes nothing.
pub fn trim_job(job: &mut CachedJob) {
    let meta = &mut job.metadata;
    meta.managed_fields = None;
    if meta.labels.is_some() {
        job.keys.labels = KeptKeys::take(&KEPT_LABELS, meta.labels.take());
    }
    if meta.annotations.is_some() {
        job.keys.annotations = KeptKeys::take(&KEPT_ANNOTATIONS, meta.annotations.take());
    }
}

/// Drops the managed fields (kept only as who manages what, without the
/// field sets: a Backfill's `createdBy` falls back to its first manager)
/// and kubectl's copy of the last applied manifest.
pub fn trim_meta(meta: &mut ObjectMeta) {
    if let Some(managed) = meta.managed_fields.as_mut() {
        for entry in managed.iter_mut() {
            *entry = ManagedFieldsEntry {
                manager: entry.manager.take(),
                operation: entry.operation.take(),
                subresource: entry.subresource.take(),
                ..ManagedFieldsEntry::default()
            };
        }
    }
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// For objects whose managers nothing reads: the managed fields go whole.
pub fn drop_managed_fields(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job() -> Job {
        serde_json::from_value(json!({
            "metadata": {
                "name": "nightly-29000000", "namespace": "ns", "uid": "u1",
                "labels": {"backfill.dev/schedule": "nightly", "backfill.dev/session": "1740000000"},
                "annotations": {"backfill.dev/session-time": "2025-02-19T21:20:00Z", LAST_APPLIED: "{}"},
                "finalizers": ["backfill.dev/outcome"],
                "ownerReferences": [{"apiVersion": "backfill.dev/v1alpha1", "kind": "Schedule",
                    "name": "nightly", "uid": "s1", "controller": true}],
                "managedFields": [{"manager": "backfill-operator", "operation": "Update",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}]
            },
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox", "env": [{"name": "A", "value": "b"}]}]}}},
            "status": {
                "startTime": "2025-02-19T21:20:01Z", "completionTime": "2025-02-19T21:20:09Z",
                "conditions": [{"type": "Complete", "status": "True", "message": "long text"}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_cached_job_reads_the_same_to_the_controllers() {
        let full = job();
        // Decoded as the watch decodes it: the spec is skipped.
        let mut trimmed: CachedJob =
            serde_json::from_value(serde_json::to_value(&full).unwrap()).unwrap();
        trim_job(&mut trimmed);
        assert_eq!(
            trimmed.observe(OwnerKind::Schedule, "nightly"),
            ObservedJob::of(&full, OwnerKind::Schedule, "nightly")
        );
        assert_eq!(trimmed.schedule_label(), Some("nightly"));
        // Trimming again (or caching a `Job` converted) changes nothing.
        let mut again = trimmed.clone();
        trim_job(&mut again);
        assert_eq!(again, trimmed);
        assert_eq!(CachedJob::from(full.clone()), trimmed);
        assert!(std::mem::size_of::<CachedJob>() * 4 < std::mem::size_of::<Job>());
        let status = trimmed.status.as_ref().unwrap();
        assert!(status.start_time.is_some() && status.completion_time.is_some());
        assert_eq!(
            trimmed.metadata.owner_references,
            full.metadata.owner_references
        );
        assert_eq!(trimmed.metadata.finalizers, full.metadata.finalizers);
        // No maps: what decisions read is in `keys`.
        assert!(trimmed.metadata.annotations.is_none() && trimmed.metadata.labels.is_none());
        // Not even decoded.
        let decoded: CachedJob =
            serde_json::from_value(serde_json::to_value(&full).unwrap()).unwrap();
        assert!(decoded.metadata.managed_fields.is_none());
        assert_eq!(decoded.metadata.name, full.metadata.name);
        assert!(trimmed.metadata.managed_fields.is_none());
        assert_eq!(status.state, JobState::Succeeded);
        // Back to a Job's status, it means the same.
        let back = JobStatus::from(status.clone());
        assert_eq!(JobState::of(Some(&back)), JobState::Succeeded);
        assert_eq!(CachedStatus::from(back), *status);
        assert!(
            serde_json::to_vec(&trimmed).unwrap().len() < serde_json::to_vec(&full).unwrap().len()
        );
    }

    #[test]
    fn dropping_managed_fields_keeps_the_rest() {
        let mut meta = job().metadata;
        drop_managed_fields(&mut meta);
        assert!(meta.managed_fields.is_none());
        assert_eq!(meta.labels.as_ref().unwrap().len(), 2);
    }

    #[test]
    fn a_backfills_managers_are_kept_without_their_field_sets() {
        let mut meta = job().metadata;
        trim_meta(&mut meta);
        let managed = meta.managed_fields.as_ref().unwrap();
        assert_eq!(managed[0].manager.as_deref(), Some("backfill-operator"));
        assert!(managed[0].fields_v1.is_none());
    }

    #[test]
    fn a_backfills_job_keeps_its_plan_annotations_and_reads_the_same() {
        let clock = crate::core::ZonedCron::new("0 * * * *", None).unwrap();
        let owner = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "backfill.dev/v1alpha1".into(),
            kind: "Backfill".into(),
            name: "march".into(),
            uid: "b1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let template = serde_json::from_value(json!({"metadata": {
            "labels": {"team": "data"}, "annotations": {"note": "x"}}}))
        .unwrap();
        let full = crate::core::job::Attempt {
            kind: OwnerKind::Backfill,
            owner,
            namespace: "ns",
            schedule_name: "nightly",
            schedule_uid: "s1",
            backfill_name: Some("march"),
            attempt_name: "march",
            clock: &clock,
            session: clock.sessions_from(1_740_000_000).next().unwrap(),
            plan_index: Some(7),
        }
        .build_job(&template);
        let mut trimmed: CachedJob =
            serde_json::from_value(serde_json::to_value(&full).unwrap()).unwrap();
        trim_job(&mut trimmed);
        for key in KEPT_LABELS {
            assert_eq!(trimmed.keys.label(key), full.metadata.label(key));
            assert!(trimmed.keys.label(key).is_some(), "{key}");
        }
        for key in KEPT_ANNOTATIONS {
            assert_eq!(trimmed.keys.annotation(key), full.metadata.annotation(key));
            assert!(trimmed.keys.annotation(key).is_some(), "{key}");
        }
        // What no decision reads is gone.
        assert_eq!(trimmed.keys.label("team"), None);
        let observed = trimmed.observe(OwnerKind::Backfill, "march");
        assert_eq!(
            observed,
            ObservedJob::of(&full, OwnerKind::Backfill, "march")
        );
        assert!(observed.as_written && observed.plan_index == Some(7));
    }

    #[test]
    fn only_the_operators_labels_and_a_running_jobs_times_are_kept() {
        let mut job: CachedJob = serde_json::from_value(json!({
            "metadata": {"name": "j", "labels": {"team": "data", "backfill.dev/session": "1"}},
            "status": {"startTime": "2025-02-19T21:20:01Z", "active": 1,
                "conditions": [{"type": "Suspended", "status": "False"}]}
        }))
        .unwrap();
        trim_job(&mut job);
        assert!(job.metadata.labels.is_none());
        assert_eq!(job.keys.label("backfill.dev/session"), Some("1"));
        assert_eq!(job.keys.label("team"), None);
        let status = job.status.unwrap();
        assert!(status.start_time.is_some() && status.state == JobState::Active);
    }
}
