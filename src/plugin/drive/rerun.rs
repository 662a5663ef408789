//! `kubectl backfill rerun-failed NAME [--wait]`: a new value of the
//! `backfill.dev/rerun-failed` annotation asks the operator for a child
//! Backfill of the failed sessions; `--wait` watches the parent until its
//! `status.reruns` records the child (or says why there is none).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::{FIELD_MANAGER, RESOURCE, Seen, backfills, from_server, parse_duration, wait_for};
use crate::api::{ANNOTATION_RERUN_FAILED, Backfill, RerunRecord};
use crate::core::ZonedCron;
use crate::core::backfill::rerun::RERUN_REQUESTED;
use crate::core::observed::find_condition;
use crate::core::reason::Reason;
use crate::core::zoned_cron::{rfc3339_utc, seconds};
use crate::plugin::{Global, PluginError, block_on, connect};

#[derive(Args, Debug, Clone)]
pub struct RerunArgs {
    /// The finished Backfill whose failed sessions to run again.
    pub name: String,
    /// Wait for the child Backfill and print its name and plan.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: how long to wait (the parent must finish first).
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub timeout: Duration,
}

/// A request value no earlier request of this Backfill used: the time,
/// readable in the child's name (`<parent>-rerun-20260101-120000`), with
/// a suffix when that value was used already.
pub fn new_request(now: Timestamp, current: Option<&str>, reruns: &[RerunRecord]) -> String {
    let base = now.strftime("%Y%m%d-%H%M%S").to_string();
    let taken = |v: &str| current == Some(v) || reruns.iter().any(|r| r.request == v);
    let mut value = base.clone();
    let mut n = 2;
    while taken(&value) {
        value = format!("{base}-{n}");
        n += 1;
    }
    value
}

/// What the parent says of `request`: its child's record, a refusal, or
/// not yet (with the message of a wait, if one is given).
pub fn request_outcome(parent: &Backfill, request: &str) -> Seen<RerunRecord> {
    let status = parent.status.clone().unwrap_or_default();
    if let Some(record) = status.reruns.iter().find(|r| r.request == request) {
        return Seen::Done(match &record.name {
            Some(_) => Ok(record.clone()),
            None => Err(PluginError::Other(format!(
                "rerun request {request:?} of {RESOURCE}/{}: {}",
                parent.metadata.name.as_deref().unwrap_or_default(),
                record.message.as_deref().unwrap_or("no child was made")
            ))),
        });
    }
    // Refusals that no wait ends: a cancelled parent, a plan that cannot
    // be made, a dry run (which runs nothing until dryRun is turned off).
    let refused = [Reason::Cancelled, Reason::InvalidPlan, Reason::DryRun];
    if let Some(c) = find_condition(&status.conditions, RERUN_REQUESTED)
        && c.status == "True"
        && refused.iter().any(|r| r.as_str() == c.reason)
        && c.message.contains(&format!("{request:?}"))
    {
        return Seen::Done(Err(PluginError::Other(c.message.clone())));
    }
    Seen::Pending
}

/// The message of `request` still waiting (the parent has not finished).
fn waiting_message(parent: &Backfill, request: &str) -> Option<String> {
    let status = parent.status.as_ref()?;
    find_condition(&status.conditions, RERUN_REQUESTED)
        .filter(|c| {
            c.status == "True"
                && c.reason == Reason::Waiting.as_str()
                && c.message.contains(&format!("{request:?}"))
        })
        .map(|c| c.message.clone())
}

/// What `--wait` prints of the child: its name and plan.
pub fn child_report(child: &Backfill, record: &RerunRecord) -> String {
    let name = child.metadata.name.as_deref().unwrap_or_default();
    let mut out = format!(
        "{RESOURCE}/{name}: rerun child, {} session(s)\n",
        record.sessions
    );
    if let Some((first, last)) = child_span(child) {
        out.push_str(&format!(
            "first:     {}\nlast:      {}\n",
            rfc3339_utc(first),
            rfc3339_utc(last)
        ));
    }
    out
}

/// The child's earliest and latest session: of its list, or of its
/// compact set (from its first session to the last before its end).
fn child_span(child: &Backfill) -> Option<(i64, i64)> {
    if let Some(list) = &child.spec.sessions {
        let first = list.iter().map(seconds).min()?;
        let last = list.iter().map(seconds).max()?;
        return Some((first, last));
    }
    let set = child.spec.session_set.as_ref()?;
    let clock = ZonedCron::new(&set.schedule, Some(&set.time_zone)).ok()?;
    let last = clock.previous_before(seconds(&set.to))?.at;
    Some((seconds(&set.from), last))
}

/// Runs `rerun-failed`.
pub fn rerun_failed(global: &Global, args: &RerunArgs) -> Result<ExitCode, PluginError> {
    block_on(async {
        let (client, namespace) = connect(global).await?;
        let api = backfills(&client, &namespace);
        let parent = api.get(&args.name).await.map_err(from_server)?;
        let current = parent
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_RERUN_FAILED))
            .map(String::as_str);
        let reruns = parent
            .status
            .as_ref()
            .map(|s| s.reruns.as_slice())
            .unwrap_or_default();
        let request = new_request(Timestamp::now(), current, reruns);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        let patch = json!({"metadata": {"annotations": {ANNOTATION_RERUN_FAILED: request}}});
        api.patch(&args.name, &params, &Patch::Merge(&patch))
            .await
            .map_err(from_server)?;
        println!(
            "{RESOURCE}/{} annotated {ANNOTATION_RERUN_FAILED}={request}",
            args.name
        );
        if !args.wait {
            return Ok(ExitCode::SUCCESS);
        }
        let mut said = None;
        let record = wait_for(
            &api,
            &args.name,
            &format!("the child of rerun request {request:?}"),
            args.timeout,
            |bf| {
                let seen = request_outcome(bf, &request);
                if matches!(seen, Seen::Pending)
                    && let Some(message) = waiting_message(bf, &request)
                    && said.as_ref() != Some(&message)
                {
                    eprintln!("{message}");
                    said = Some(message);
                }
                seen
            },
        )
        .await?;
        let child_name = record.name.clone().unwrap_or_default();
        let child = api.get(&child_name).await.map_err(from_server)?;
        print!("{}", child_report(&child, &record));
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{BackfillSpec, BackfillStatus};
    use crate::core::zoned_cron::{at, time};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn record(request: &str, name: Option<&str>, message: Option<&str>) -> RerunRecord {
        RerunRecord {
            request: request.into(),
            name: name.map(str::to_string),
            run_id: None,
            sessions: 2,
            created_at: time(0),
            message: message.map(str::to_string),
        }
    }

    fn parent(status: BackfillStatus) -> Backfill {
        let mut bf = Backfill::new("jan", BackfillSpec::of("h"));
        bf.status = Some(status);
        bf
    }

    fn condition(reason: Reason, message: &str) -> Condition {
        Condition {
            type_: RERUN_REQUESTED.into(),
            status: "True".into(),
            reason: reason.as_str().into(),
            message: message.into(),
            last_transition_time: time(0),
            observed_generation: None,
        }
    }

    #[test]
    fn a_request_is_new_and_readable_in_a_name() {
        let now: Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        assert_eq!(new_request(now, None, &[]), "20260102-030405");
        assert_eq!(
            new_request(now, Some("20260102-030405"), &[]),
            "20260102-030405-2"
        );
        let used = [record("20260102-030405-2", Some("c"), None)];
        assert_eq!(
            new_request(now, Some("20260102-030405"), &used),
            "20260102-030405-3"
        );
        let name = crate::core::backfill::rerun::child_name("jan", "20260102-030405");
        assert_eq!(name, "jan-rerun-20260102-030405");
    }

    #[test]
    fn the_outcome_of_a_request_is_its_record_or_a_refusal() {
        let r = "20260102-030405";
        let pending = parent(BackfillStatus {
            conditions: vec![condition(
                Reason::Waiting,
                &format!("rerun request {r:?} waits until the backfill finishes"),
            )],
            ..BackfillStatus::default()
        });
        assert!(matches!(request_outcome(&pending, r), Seen::Pending));
        assert!(waiting_message(&pending, r).unwrap().contains("waits"));
        assert_eq!(waiting_message(&pending, "another"), None);

        let made = parent(BackfillStatus {
            reruns: vec![
                record("old", Some("jan-rerun-old"), None),
                record(r, Some("jan-rerun-x"), None),
            ],
            ..BackfillStatus::default()
        });
        match request_outcome(&made, r) {
            Seen::Done(Ok(rec)) => assert_eq!(rec.name.as_deref(), Some("jan-rerun-x")),
            _ => panic!("the record names the child"),
        }

        let nothing = parent(BackfillStatus {
            reruns: vec![record(r, None, Some("no session failed: nothing to rerun"))],
            ..BackfillStatus::default()
        });
        match request_outcome(&nothing, r) {
            Seen::Done(Err(e)) => assert!(e.to_string().contains("nothing to rerun"), "{e}"),
            _ => panic!("nothing to rerun is a failure"),
        }

        let cancelled = parent(BackfillStatus {
            conditions: vec![condition(
                Reason::Cancelled,
                &format!("rerun request {r:?} is not carried out: the backfill was cancelled"),
            )],
            ..BackfillStatus::default()
        });
        assert!(matches!(request_outcome(&cancelled, r), Seen::Done(Err(_))));
        // A refusal of an earlier request is not this one's.
        assert!(matches!(
            request_outcome(&cancelled, "another"),
            Seen::Pending
        ));
    }

    #[test]
    fn the_child_report_names_it_and_its_ends() {
        let mut child = parent(BackfillStatus::default());
        child.metadata.name = Some("jan-rerun-1".into());
        child.spec.sessions = Some(vec![
            time(at("2026-01-01T05:00:00Z")),
            time(at("2026-01-01T02:00:00Z")),
        ]);
        assert_eq!(
            child_report(&child, &record("1", Some("jan-rerun-1"), None)),
            "backfill.backfill.dev/jan-rerun-1: rerun child, 2 session(s)\nfirst:     2026-01-01T02:00:00Z\nlast:      2026-01-01T05:00:00Z\n"
        );
        let clock = ZonedCron::new("0 * * * *", None).unwrap();
        child.spec.sessions = None;
        child.spec.session_set = crate::core::plan::session_set(
            &clock,
            &[at("2026-01-01T01:00:00Z"), at("2026-01-03T00:00:00Z")],
        );
        assert_eq!(
            child_span(&child),
            Some((at("2026-01-01T01:00:00Z"), at("2026-01-03T00:00:00Z")))
        );
    }
}
