//! The test control plane does what the other tests rely on: the CRDs
//! install, and a Job runs through the real job controller, scheduler and
//! kwok to Complete or Failed, as the kwok annotations ask.

mod common;

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use common::jobs::{Outcome, job_condition, outcome};
use common::kwok::{OUTCOME, RUN_FOR};
use common::poll::eventually;
use common::{DEADLINE, TestNamespace, client, install_crds};

/// A Job with one pod and no retries, whose pod carries `annotations`.
fn job(name: &str, annotations: &[(&str, &str)]) -> Job {
    let annotations: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![Container {
                        name: "main".into(),
                        image: Some("busybox:1.37".into()),
                        command: Some(vec!["true".into()]),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Waits until the Job has ended; panics if it ended otherwise than
/// `want`.
async fn wait_for_outcome(jobs: &Api<Job>, name: &str, want: Outcome) -> Job {
    eventually(&format!("Job {name} to end {want:?}"), DEADLINE, || async {
        let job = jobs.get(name).await.map_err(|e| e.to_string())?;
        match outcome(&job) {
            Some(got) => {
                assert_eq!(
                    got, want,
                    "Job {name} ended {got:?}, expected {want:?}: {:?}",
                    job.status
                );
                Ok(job)
            }
            None => Err(format!("status {:?}", job.status)),
        }
    })
    .await
}

#[tokio::test]
async fn crds_install_and_are_established() {
    let client = client().await;
    install_crds(&client).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    for name in ["schedules.backfill.dev", "backfills.backfill.dev"] {
        let crd = crds.get(name).await.expect("the CRD is installed");
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{name} is not Established");
    }
}

#[tokio::test]
async fn job_completes() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "smoke-complete").await;
    let jobs: Api<Job> = Api::namespaced(client, &ns.name);
    jobs.create(&PostParams::default(), &job("ok", &[]))
        .await
        .expect("create Job");
    let job = wait_for_outcome(&jobs, "ok", Outcome::Succeeded).await;
    assert_eq!(job.status.and_then(|s| s.succeeded), Some(1));
}

#[tokio::test]
async fn job_fails_when_its_pod_is_annotated_to_fail() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "smoke-fail").await;
    let jobs: Api<Job> = Api::namespaced(client, &ns.name);
    jobs.create(&PostParams::default(), &job("bad", &[(OUTCOME, "fail")]))
        .await
        .expect("create Job");
    let job = wait_for_outcome(&jobs, "bad", Outcome::Failed).await;
    assert_eq!(job.status.and_then(|s| s.failed), Some(1));
}

#[tokio::test]
async fn job_runs_for_the_annotated_duration() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "smoke-run-for").await;
    let jobs: Api<Job> = Api::namespaced(client, &ns.name);
    jobs.create(&PostParams::default(), &job("slow", &[(RUN_FOR, "3s")]))
        .await
        .expect("create Job");
    let created = std::time::Instant::now();
    eventually("Job slow to have one active pod", DEADLINE, || async {
        let job = jobs.get("slow").await.map_err(|e| e.to_string())?;
        assert_eq!(
            job_condition(&job, "Complete"),
            None,
            "finished before running"
        );
        let status = job.status.unwrap_or_default();
        if status.active == Some(1) {
            Ok(())
        } else {
            Err(format!("status {status:?}"))
        }
    })
    .await;
    let job = wait_for_outcome(&jobs, "slow", Outcome::Succeeded).await;
    assert_eq!(job.status.and_then(|s| s.succeeded), Some(1));
    // kwok held the pod Running for the 3s it was asked to.
    assert!(
        created.elapsed() >= std::time::Duration::from_millis(2500),
        "completed {:?} after its creation, expected at least 3s of running",
        created.elapsed()
    );
}
