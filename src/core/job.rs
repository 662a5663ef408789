//! One Job per attempt: its deterministic name, its labels and
//! annotations, and the session environment of its containers.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobTemplateSpec};
use k8s_openapi::api::core::v1::{Container, EnvVar};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::zoned_cron::{Session, ZonedCron, rfc3339_utc};
use crate::api::{
    ANNOTATION_ATTEMPT_NAME, ANNOTATION_PLAN_CHECK, ANNOTATION_PLAN_INDEX, ANNOTATION_SESSION_TIME,
    ANNOTATION_SESSION_UUID, JOB_FINALIZER, LABEL_BACKFILL, LABEL_SCHEDULE, LABEL_SESSION,
};

/// Job names become label values (the job controller labels pods with
/// their Job's name).
const MAX_NAME: usize = crate::api::LABEL_VALUE_MAX;

/// Who runs the attempt: a Schedule (scheduled runs) or a Backfill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerKind {
    Schedule,
    Backfill,
}

/// The Job name of an owner's attempt at a session:
/// `<owner>-<unix seconds>` for a Schedule, `<owner>-b<unix seconds>` for a
/// Backfill, so the two can never collide. A name too long to fit keeps a
/// prefix and gains a hash of the whole owner name.
pub fn job_name(kind: OwnerKind, owner: &str, session_at: i64) -> String {
    let suffix = match kind {
        OwnerKind::Schedule => format!("-{session_at}"),
        OwnerKind::Backfill => format!("-b{session_at}"),
    };
    fit_name(owner, &suffix, MAX_NAME)
}

/// The session whose Job of `owner` is named `name`, if `name` is such a
/// Job's name. A Job's name cannot change, so unlike its labels and
/// annotations it says for certain which session the operator made it
/// for.
pub fn session_of_job(kind: OwnerKind, owner: &str, name: &str) -> Option<i64> {
    let digits = match kind {
        OwnerKind::Schedule => name.rsplit_once('-')?.1,
        OwnerKind::Backfill => name.rsplit_once("-b")?.1,
    };
    let at: i64 = digits.parse().ok()?;
    (job_name(kind, owner, at) == name).then_some(at)
}

/// `<base><suffix>` when it fits in `max` characters; else a prefix of
/// `base` and a hash of the whole of it before the suffix, so that long
/// names sharing a prefix stay apart. (Names are ASCII, as Kubernetes
/// requires.)
pub fn fit_name(base: &str, suffix: &str, max: usize) -> String {
    if base.len() + suffix.len() <= max {
        return format!("{base}{suffix}");
    }
    let hash = short_hash(base);
    let keep = max.saturating_sub(suffix.len() + hash.len() + 1);
    let prefix = base[..keep.min(base.len())].trim_end_matches(['-', '.']);
    format!("{prefix}-{hash}{suffix}")
}

/// Eight hex digits of SHA-256: enough to tell apart owners whose
/// truncated names coincide.
pub fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The `backfill.dev/plan-check` of a Backfill's Job: a digest of its
/// name and plan index together. It tells an index written by the
/// operator from one edited to another number, however plausible; it is
/// no secret, and a deliberate edit of both only hurts that Backfill.
pub fn plan_check(job_name: &str, index: u64) -> String {
    short_hash(&format!("backfill.dev/plan-index/{job_name}/{index}"))
}

/// The session's UUID: the same in every attempt, from the Schedule's UID
/// and the session instant (UUIDv5).
pub fn session_uuid(schedule_uid: &str, session_at: i64) -> Uuid {
    let namespace = Uuid::parse_str(schedule_uid)
        .unwrap_or_else(|_| Uuid::new_v5(&Uuid::NAMESPACE_OID, schedule_uid.as_bytes()));
    Uuid::new_v5(&namespace, rfc3339_utc(session_at).as_bytes())
}

/// The reference that makes an object of kind `K` the controller of what
/// it creates (its Jobs, a Backfill's rerun children), as kube's
/// `Resource::controller_owner_ref` builds it.
pub fn controller_reference<K: Resource<DynamicType = ()>>(
    name: &str,
    uid: &str,
) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).to_string(),
        kind: K::kind(&()).to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

/// Everything that makes one attempt's Job.
#[derive(Clone, Debug)]
pub struct Attempt<'a> {
    pub kind: OwnerKind,
    pub owner: OwnerReference,
    pub namespace: &'a str,
    pub schedule_name: &'a str,
    pub schedule_uid: &'a str,
    /// Absent for scheduled runs.
    pub backfill_name: Option<&'a str>,
    pub attempt_name: &'a str,
    pub clock: &'a ZonedCron,
    pub session: Session,
    /// A Backfill's Job: the session's index in the frozen plan, which
    /// counts its outcome exactly once.
    pub plan_index: Option<u64>,
}

impl Attempt<'_> {
    pub fn job_name(&self) -> String {
        job_name(self.kind, &self.owner.name, self.session.at)
    }

    /// Labels users select Jobs (and their pods) by.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            (LABEL_SCHEDULE.to_string(), self.schedule_name.to_string()),
            (LABEL_SESSION.to_string(), self.session.at.to_string()),
        ]);
        if let Some(bf) = self.backfill_name {
            labels.insert(LABEL_BACKFILL.to_string(), bf.to_string());
        }
        labels
    }

    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut annotations = BTreeMap::from([
            (
                ANNOTATION_SESSION_TIME.to_string(),
                self.clock.zone().rfc3339(self.session.at),
            ),
            (
                ANNOTATION_SESSION_UUID.to_string(),
                session_uuid(self.schedule_uid, self.session.at).to_string(),
            ),
            (
                ANNOTATION_ATTEMPT_NAME.to_string(),
                self.attempt_name.to_string(),
            ),
        ]);
        if let Some(index) = self.plan_index {
            annotations.insert(ANNOTATION_PLAN_INDEX.to_string(), index.to_string());
            annotations.insert(
                ANNOTATION_PLAN_CHECK.to_string(),
                plan_check(&self.job_name(), index),
            );
        }
        annotations
    }

    /// The `SESSION_*` variables every container gets, in the schedule's
    /// zone.
    pub fn env(&self) -> Vec<EnvVar> {
        let zone = self.clock.zone();
        let at = self.session.at;
        let local = zone.rfc3339(at);
        let date = &local[..10];
        let mut vars = vec![
            ("SESSION_TIME", local.clone()),
            ("SESSION_UNIXTIME", at.to_string()),
            ("SESSION_DATE", date.to_string()),
            ("SESSION_DATE_COMPACT", date.replace('-', "")),
            (
                "SESSION_UUID",
                session_uuid(self.schedule_uid, at).to_string(),
            ),
        ];
        if let Some(prev) = self.clock.previous_before(at) {
            vars.push(("LAST_SESSION_TIME", zone.rfc3339(prev.at)));
        }
        if let Some(next) = self.clock.next_after(at) {
            vars.push(("NEXT_SESSION_TIME", zone.rfc3339(next.at)));
        }
        vars.extend([
            ("ATTEMPT_NAME", self.attempt_name.to_string()),
            ("SCHEDULE_NAME", self.schedule_name.to_string()),
            (
                "BACKFILL_NAME",
                self.backfill_name.unwrap_or_default().to_string(),
            ),
        ]);
        vars.into_iter()
            .map(|(name, value)| EnvVar {
                name: name.to_string(),
                value: Some(value),
                value_from: None,
            })
            .collect()
    }

    /// The Job for this attempt, from the Schedule's template: our labels,
    /// annotations, owner reference and outcome finalizer, and the session
    /// environment in every container the user did not set them in.
    pub fn build_job(&self, template: &JobTemplateSpec) -> Job {
        let labels = self.labels();
        let mut meta = template.metadata.clone().unwrap_or_default();
        let mut spec = template.spec.clone().unwrap_or_default();

        let mut pod_meta = spec.template.metadata.take().unwrap_or_default();
        pod_meta
            .labels
            .get_or_insert_with(BTreeMap::new)
            .extend(labels.clone());
        spec.template.metadata = Some(pod_meta);

        if let Some(pod) = spec.template.spec.as_mut() {
            // A Job's pods may not restart Always; CronJob users always
            // set it, the default spares the others a rejected Job.
            pod.restart_policy
                .get_or_insert_with(|| "Never".to_string());
            let env = self.env();
            let containers = pod
                .containers
                .iter_mut()
                .chain(pod.init_containers.iter_mut().flatten());
            for container in containers {
                add_missing_env(container, &env);
            }
        }

        meta.labels.get_or_insert_with(BTreeMap::new).extend(labels);
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .extend(self.annotations());
        Job {
            metadata: ObjectMeta {
                name: Some(self.job_name()),
                namespace: Some(self.namespace.to_string()),
                owner_references: Some(vec![self.owner.clone()]),
                finalizers: Some(vec![JOB_FINALIZER.to_string()]),
                labels: meta.labels,
                annotations: meta.annotations,
                ..ObjectMeta::default()
            },
            spec: Some(spec),
            status: None,
        }
    }
}

fn add_missing_env(container: &mut Container, vars: &[EnvVar]) {
    let env = container.env.get_or_insert_with(Vec::new);
    for var in vars {
        if !env.iter().any(|e| e.name == var.name) {
            env.push(var.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::zoned_cron::at;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
    use std::collections::HashSet;

    #[test]
    fn names_are_deterministic_distinct_and_short() {
        let t = at("2026-03-08T07:00:00Z");
        assert_eq!(
            job_name(OwnerKind::Schedule, "nightly", t),
            "nightly-1772953200"
        );
        assert_eq!(
            job_name(OwnerKind::Backfill, "nightly", t),
            "nightly-b1772953200"
        );
        let long = "a-very-long-backfill-name-that-goes-on-and-on-past-the-limit-of-names";
        let other = "a-very-long-backfill-name-that-goes-on-and-on-past-the-limit-of-other";
        let a = job_name(OwnerKind::Backfill, long, t);
        let b = job_name(OwnerKind::Backfill, other, t);
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert_eq!(a, job_name(OwnerKind::Backfill, long, t));
        assert!(a.ends_with("-b1772953200"));
        // A year of minutely sessions: no collisions.
        let names: HashSet<String> = (0..525_600)
            .map(|i| job_name(OwnerKind::Backfill, long, t + i * 60))
            .collect();
        assert_eq!(names.len(), 525_600);
        // A prefix never ends in a separator.
        let dotted = format!("{}.{}", "x".repeat(40), "y".repeat(30));
        assert!(!job_name(OwnerKind::Schedule, &dotted, t).contains(".-"));
    }

    #[test]
    fn session_uuid_is_stable_per_schedule_and_session() {
        let uid = "6f1c3d5e-2a4b-4c8d-9e0f-1a2b3c4d5e6f";
        let t = at("2026-01-01T00:00:00Z");
        assert_eq!(session_uuid(uid, t), session_uuid(uid, t));
        assert_ne!(session_uuid(uid, t), session_uuid(uid, t + 60));
        assert_ne!(
            session_uuid(uid, t),
            session_uuid("0f1c3d5e-2a4b-4c8d-9e0f-1a2b3c4d5e6f", t)
        );
        assert_eq!(session_uuid(uid, t).get_version_num(), 5);
    }

    fn template() -> JobTemplateSpec {
        JobTemplateSpec {
            metadata: None,
            spec: Some(JobSpec {
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "main".into(),
                            image: Some("busybox".into()),
                            env: Some(vec![EnvVar {
                                name: "ATTEMPT_NAME".into(),
                                value: Some("mine".into()),
                                value_from: None,
                            }]),
                            ..Container::default()
                        }],
                        init_containers: Some(vec![Container {
                            name: "init".into(),
                            ..Container::default()
                        }]),
                        ..PodSpec::default()
                    }),
                },
                ..JobSpec::default()
            }),
        }
    }

    #[test]
    fn a_job_carries_the_session_everywhere() {
        let clock = ZonedCron::new("30 2 * * *", Some("America/New_York")).unwrap();
        let session = clock
            .sessions_from(at("2026-03-08T00:00:00Z"))
            .next()
            .unwrap();
        let attempt = Attempt {
            kind: OwnerKind::Backfill,
            owner: OwnerReference {
                api_version: "backfill.dev/v1alpha1".into(),
                kind: "Backfill".into(),
                name: "march-fix".into(),
                uid: "u-1".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
            namespace: "data",
            schedule_name: "nightly",
            schedule_uid: "6f1c3d5e-2a4b-4c8d-9e0f-1a2b3c4d5e6f",
            backfill_name: Some("march-fix"),
            attempt_name: "march-fix",
            clock: &clock,
            session,
            plan_index: Some(7),
        };
        let job = attempt.build_job(&template());
        let meta = &job.metadata;
        assert_eq!(meta.name.as_deref(), Some("march-fix-b1772953200"));
        assert_eq!(
            meta.finalizers.as_deref(),
            Some(&[JOB_FINALIZER.to_string()][..])
        );
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_SESSION], "1772953200");
        assert_eq!(labels[LABEL_BACKFILL], "march-fix");
        let annotations = meta.annotations.as_ref().unwrap();
        assert_eq!(
            annotations[ANNOTATION_SESSION_TIME],
            "2026-03-08T03:00:00-04:00"
        );
        let spec = job.spec.unwrap();
        let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(pod_labels[LABEL_SCHEDULE], "nightly");
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let env = |c: &Container| -> BTreeMap<String, String> {
            c.env
                .iter()
                .flatten()
                .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
                .collect()
        };
        let main = env(&pod.containers[0]);
        assert_eq!(main["SESSION_TIME"], "2026-03-08T03:00:00-04:00");
        assert_eq!(main["SESSION_UNIXTIME"], "1772953200");
        assert_eq!(main["SESSION_DATE"], "2026-03-08");
        assert_eq!(main["SESSION_DATE_COMPACT"], "20260308");
        assert_eq!(main["LAST_SESSION_TIME"], "2026-03-07T02:30:00-05:00");
        assert_eq!(main["NEXT_SESSION_TIME"], "2026-03-09T02:30:00-04:00");
        assert_eq!(main["ATTEMPT_NAME"], "mine", "the user's value wins");
        assert_eq!(main["SCHEDULE_NAME"], "nightly");
        assert_eq!(main["BACKFILL_NAME"], "march-fix");
        assert_eq!(main["SESSION_UUID"], annotations[ANNOTATION_SESSION_UUID]);
        assert_eq!(annotations[ANNOTATION_PLAN_INDEX], "7");
        assert_eq!(
            annotations[ANNOTATION_PLAN_CHECK],
            plan_check(job.metadata.name.as_deref().unwrap(), 7)
        );
        let init = env(&pod.init_containers.unwrap()[0]);
        assert_eq!(init["ATTEMPT_NAME"], "march-fix");
        assert_eq!(init.len(), 10);
    }
}
