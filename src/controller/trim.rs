//! What the watch caches keep of each object: what decisions read, not
//! what the API server sends. A Job's pod template and every object's
//! managed fields are most of its size and no decision reads them, so
//! they are dropped as each event arrives, before the cache stores it.
//! With 10,000 Jobs this is the difference between caching every Job's
//! full manifest and caching its name, labels, owners and outcome.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};

/// The annotation `kubectl apply` (client-side) keeps a copy of the whole
/// manifest in; nothing the operator decides reads it.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A Job as the controllers read it: its metadata (name, labels,
/// annotations, owners, finalizers, deletion) and its outcome (the
/// conditions and start and completion times). The spec (the pod
/// template above all) goes: Jobs are only ever created from a decision,
/// never written back from the cache.
pub fn trim_job(job: &mut Job) {
    trim_meta(&mut job.metadata);
    job.spec = None;
    if let Some(status) = job.status.as_mut() {
        status.uncounted_terminated_pods = None;
        for c in status.conditions.iter_mut().flatten() {
            // Only a condition's type and status are read.
            c.message = None;
            c.last_probe_time = None;
        }
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
    use crate::core::job::OwnerKind;
    use crate::core::observed::ObservedJob;
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
    fn a_trimmed_job_reads_the_same_to_the_controllers() {
        let full = job();
        let mut trimmed = full.clone();
        trim_job(&mut trimmed);
        assert!(trimmed.spec.is_none());
        assert_eq!(
            ObservedJob::of(&trimmed, OwnerKind::Schedule, "nightly"),
            ObservedJob::of(&full, OwnerKind::Schedule, "nightly")
        );
        let status = trimmed.status.as_ref().unwrap();
        assert!(status.start_time.is_some() && status.completion_time.is_some());
        assert_eq!(
            trimmed.metadata.owner_references,
            full.metadata.owner_references
        );
        assert_eq!(trimmed.metadata.finalizers, full.metadata.finalizers);
        let annotations = trimmed.metadata.annotations.as_ref().unwrap();
        assert!(annotations.contains_key("backfill.dev/session-time"));
        assert!(!annotations.contains_key(LAST_APPLIED));
        let managed = trimmed.metadata.managed_fields.as_ref().unwrap();
        assert_eq!(managed[0].manager.as_deref(), Some("backfill-operator"));
        assert!(managed[0].fields_v1.is_none());
        let size = |j: &Job| serde_json::to_vec(j).unwrap().len();
        assert!(size(&trimmed) < size(&full));
    }

    #[test]
    fn dropping_managed_fields_keeps_the_rest() {
        let mut meta = job().metadata;
        drop_managed_fields(&mut meta);
        assert!(meta.managed_fields.is_none());
        assert_eq!(meta.labels.as_ref().unwrap().len(), 2);
    }
}
