//! `kubectl backfill sessions SCHEDULE --from T --to T`: every session of
//! a Schedule in a range with its latest attempt, in the workflow seed's
//! vocabulary. This module reads the cluster (the Schedule, its Jobs, its
//! SessionLedgers, its Backfills) and prints; the joining is
//! `core::sessions::list_sessions`, the printing the pure functions
//! below.

use std::process::ExitCode;

use clap::Args;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::Value;

use super::{Global, Output, PluginError, block_on, connect};
use crate::api::{Backfill, LABEL_SCHEDULE, Schedule, SessionLedger};
use crate::core::sessions::{SessionList, SessionsInput, list_sessions};
use crate::public_api::seed::{Listing, listing_response};

#[derive(Args, Debug)]
pub struct SessionsArgs {
    /// The Schedule whose sessions to list.
    pub schedule: String,
    /// The first session to list, inclusive (RFC 3339, e.g.
    /// 2026-01-01T00:00:00Z).
    #[arg(long)]
    pub from: String,
    /// The end of the range, exclusive (RFC 3339).
    #[arg(long)]
    pub to: String,
    /// text (a table), wide (with owner and session UUID), json or yaml
    /// (the workflow seed's attempt fields).
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

/// Reads the Schedule and what the cluster holds of it, prints one line
/// (or object) per session; notes on what could not be used go to
/// stderr.
pub fn run(global: &Global, args: &SessionsArgs) -> Result<ExitCode, PluginError> {
    let from = instant("--from", &args.from)?;
    let to = instant("--to", &args.to)?;
    let (namespace, (schedule, ledgers, jobs, backfills)) = block_on(read(global, &args.schedule))?;
    let list = list_sessions(SessionsInput {
        schedule: &schedule,
        ledgers: &ledgers,
        jobs: &jobs,
        backfills: &backfills,
        from,
        to,
        now: Timestamp::now().as_second(),
    })
    .map_err(|e| PluginError::Other(e.to_string()))?;
    for note in &list.notes {
        eprintln!("# {note}");
    }
    print!("{}", render(&list, &namespace, args.output)?);
    Ok(ExitCode::SUCCESS)
}

fn instant(flag: &str, text: &str) -> Result<i64, PluginError> {
    text.parse::<Timestamp>()
        .map(|t| t.as_second())
        .map_err(|e| {
            PluginError::Usage(format!(
                "{flag} {text:?} is not an RFC 3339 instant such as 2026-01-01T00:00:00Z: {e}"
            ))
        })
}

/// A Schedule and what the cluster holds of it: its ledgers, its Jobs,
/// its Backfills.
pub type ScheduleRead = (Schedule, Vec<SessionLedger>, Vec<Job>, Vec<Backfill>);

async fn read(global: &Global, name: &str) -> Result<(String, ScheduleRead), PluginError> {
    let (client, ns) = connect(global).await?;
    match read_schedule(&client, &ns, name).await {
        Ok(read) => Ok((ns, read)),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(PluginError::Other(format!(
            "Schedule {name:?} not found in namespace {ns:?}"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Reads the Schedule `name` of `ns` and what the cluster holds of it
/// (what `list_sessions` joins); the public API reads the same.
pub async fn read_schedule(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<ScheduleRead, kube::Error> {
    let schedule = Api::<Schedule>::namespaced(client.clone(), ns)
        .get(name)
        .await?;
    let ledgers = Api::<SessionLedger>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|l| l.spec.schedule_ref.name == name)
        .collect();
    let jobs = Api::<Job>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{LABEL_SCHEDULE}={name}")))
        .await?
        .items;
    let backfills = Api::<Backfill>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|b| b.spec.schedule_ref.name == name)
        .collect();
    Ok((schedule, ledgers, jobs, backfills))
}

/// What `-o` prints.
pub fn render(list: &SessionList, namespace: &str, output: Output) -> Result<String, PluginError> {
    match output {
        Output::Text => Ok(table(list, false)),
        Output::Wide => Ok(table(list, true)),
        Output::Json => serde_json::to_string_pretty(&seed_attempts(list, namespace))
            .map(|s| s + "\n")
            .map_err(|e| PluginError::Other(e.to_string())),
        Output::Yaml => serde_yaml::to_string(&seed_attempts(list, namespace))
            .map_err(|e| PluginError::Other(e.to_string())),
    }
}

/// The listing as the workflow seed's backfill response (the same shape
/// `POST /api/schedules/{id}/backfill` answers): the Schedule as
/// `workflow`, the namespace as `project`, and one attempt per session
/// with the seed's fields, plus three of ours (`attemptName`, `job`,
/// `owner`). A session with no attempt has status `missing` and no `id`.
pub fn seed_attempts(list: &SessionList, namespace: &str) -> Value {
    serde_json::to_value(listing_response(&Listing { list, namespace })).unwrap_or(Value::Null)
}

/// The table: times in the Schedule's zone, `-` for what a session does
/// not have; wide adds the owner and the session UUID.
pub fn table(list: &SessionList, wide: bool) -> String {
    let zone = list.clock.zone();
    let time = |t: Option<i64>| t.map_or_else(|| "-".to_string(), |t| zone.rfc3339(t));
    let mut header = vec!["SESSION", "STATUS", "ATTEMPT", "JOB", "CREATED", "FINISHED"];
    if wide {
        header.extend(["OWNER", "SESSION UUID"]);
    }
    let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for row in &list.rows {
        let a = row.attempt.as_ref();
        let text = |f: &dyn Fn(&crate::core::sessions::Attempt) -> Option<String>| {
            a.and_then(f).unwrap_or_else(|| "-".to_string())
        };
        let mut cells = vec![
            zone.rfc3339(row.at),
            row.status.as_str().to_string(),
            text(&|a| Some(a.name.clone())),
            text(&|a| a.job.clone()),
            time(a.and_then(|a| a.created)),
            time(a.and_then(|a| a.finished)),
        ];
        if wide {
            cells.push(text(&|a| a.owner.as_ref().map(ToString::to_string)));
            cells.push(row.uuid.to_string());
        }
        rows.push(cells);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let last = row.len() - 1;
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ScheduleSpec;
    use crate::core::ledger::{Ledger, Period};
    use crate::core::observed::Outcome;
    use crate::core::zoned_cron::at;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    /// Two sessions of an hourly Schedule in Paris: one the ledger says
    /// a retry attempt fixed, one never run.
    fn list() -> SessionList {
        let mut schedule = Schedule::new(
            "hourly",
            ScheduleSpec {
                schedule: "0 * * * *".into(),
                time_zone: Some("Europe/Paris".into()),
                ..ScheduleSpec::default()
            },
        );
        schedule.metadata.uid = Some("6f1c3d5e-2a4b-4c8d-9e0f-1a2b3c4d5e6f".into());
        let first = at("2026-01-01T00:00:00Z");
        let mut ledger = Ledger::new(Period::of(first));
        ledger.record(
            first,
            Outcome::Succeeded,
            "jan-retry-1",
            "Backfill/jan-rerun-1",
            0,
        );
        let ledgers = [SessionLedger {
            metadata: ObjectMeta::default(),
            spec: ledger.to_spec("hourly"),
        }];
        list_sessions(SessionsInput {
            schedule: &schedule,
            ledgers: &ledgers,
            jobs: &[],
            backfills: &[],
            from: first,
            to: first + 7200,
            now: first,
        })
        .unwrap()
    }

    #[test]
    fn json_carries_the_seeds_attempt_fields() {
        let list = list();
        let v = seed_attempts(&list, "team-a");
        assert_eq!(
            v["workflow"],
            json!({"name": "hourly", "id": list.schedule_uid})
        );
        let attempts = v["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2);
        let a = &attempts[0];
        for field in [
            "id",
            "index",
            "workflow",
            "sessionTime",
            "sessionUuid",
            "retryAttemptName",
            "done",
            "success",
            "cancelRequested",
            "createdAt",
            "finishedAt",
            "status",
        ] {
            assert!(a.get(field).is_some(), "{field} missing from {a}");
        }
        assert_eq!(a["sessionTime"], "2026-01-01T01:00:00+01:00");
        assert_eq!(a["status"], "success");
        assert_eq!((&a["done"], &a["success"]), (&json!(true), &json!(true)));
        assert_eq!(a["retryAttemptName"], "jan-retry-1");
        assert_eq!(a["sessionUuid"], list.rows[0].uuid.to_string());
        assert!(a["id"].is_string() && a["index"].is_null() && a["createdAt"].is_null());
        let b = &attempts[1];
        assert_eq!(
            (&b["status"], &b["id"], &b["done"], &b["retryAttemptName"]),
            (&json!("missing"), &Value::Null, &json!(false), &Value::Null)
        );
        let yaml = render(&list, "team-a", Output::Yaml).unwrap();
        let back: Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn the_table_aligns_its_columns_in_the_schedules_zone() {
        let list = list();
        assert_eq!(
            table(&list, false),
            "\
SESSION                     STATUS    ATTEMPT       JOB   CREATED   FINISHED
2026-01-01T01:00:00+01:00   success   jan-retry-1   -     -         -
2026-01-01T02:00:00+01:00   missing   -             -     -         -
"
        );
        let wide = table(&list, true);
        let lines: Vec<&str> = wide.lines().collect();
        assert!(lines[0].ends_with("OWNER   SESSION UUID"), "{wide}");
        // The ledger does not know the owner of an attempt no Backfill
        // here has.
        assert!(
            lines[1].ends_with(&format!("-       {}", list.rows[0].uuid)),
            "{wide}"
        );
    }
}
