//! `kubectl backfill create NAME --schedule S ...`: a Backfill from flags.
//! `--dry-run` (client) plans it with the offline planner against the
//! Schedule read from the cluster and creates nothing; `--dry-run=server`
//! creates it with `spec.dryRun: true` and prints the operator's preview;
//! `-o yaml|json` prints the manifest instead of creating it.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::PostParams;

use super::{FIELD_MANAGER, RESOURCE, Seen, backfills, from_server, parse_duration, wait_for};
use crate::api::{
    Backfill, BackfillPhase, BackfillSpec, Reprocess, Schedule, ScheduleRef, ScheduleSpec,
    SessionFilter, SessionOrder, Weekday,
};
use crate::core::Plan;
use crate::core::observed::find_condition;
use crate::core::plan::MAX_SESSIONS;
use crate::core::zoned_cron::{rfc3339_utc, seconds};
use crate::plugin::{Global, Output, PluginError, block_on, connect};

/// Sessions shown at each end of a plan.
const SHOWN: usize = 5;

#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("selection").required(true).args(["from", "sessions"])))]
pub struct CreateArgs {
    /// The Backfill's name.
    pub name: String,
    /// The Schedule whose sessions to run (same namespace).
    #[arg(long)]
    pub schedule: String,
    /// First session, inclusive (RFC 3339). Alone: every session from it
    /// up to the moment the backfill starts.
    #[arg(long, conflicts_with = "sessions")]
    pub from: Option<String>,
    /// End of the range, exclusive (RFC 3339).
    #[arg(long, requires = "from", conflicts_with = "count")]
    pub to: Option<String>,
    /// The first COUNT sessions at or after --from.
    #[arg(long, requires = "from", value_parser = clap::value_parser!(i64).range(1..=100_000_000))]
    pub count: Option<i64>,
    /// An explicit list of session times (RFC 3339), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub sessions: Vec<String>,
    /// How many Jobs may run at once (default 1).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub max_in_flight: Option<i32>,
    /// Oldest or newest session first (default oldest).
    #[arg(long, value_enum)]
    pub order: Option<OrderFlag>,
    /// Which planned sessions to run, judged against the session ledger
    /// when the backfill starts (default Failed).
    #[arg(long, value_enum, ignore_case = true)]
    pub reprocess: Option<ReprocessFlag>,
    /// The attempt name recorded on every Job (default: the Backfill's name).
    #[arg(long)]
    pub attempt_name: Option<String>,
    /// Create it paused: no Job starts until `kubectl backfill resume`.
    #[arg(long)]
    pub suspend: bool,
    /// Credits one session costs (default: the Schedule's).
    #[arg(long)]
    pub credits_per_session: Option<f64>,
    /// Keep only sessions on these local weekdays, comma-separated
    /// (mon,tue,... or monday,...).
    #[arg(long, value_delimiter = ',', value_parser = weekday)]
    pub filter_days: Vec<Weekday>,
    /// Keep only sessions in these local hours, comma-separated, ranges
    /// inclusive (0-6,22,23).
    #[arg(long, value_delimiter = ',', value_parser = hours)]
    pub filter_hours: Vec<Vec<i32>>,
    /// `client` (or no value): print the plan and its cost, create
    /// nothing; `server`: create it as a dry run (`spec.dryRun: true`) and
    /// print the operator's preview; `none`: create it.
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "client")]
    pub dry_run: Option<DryRun>,
    /// Print the manifest (yaml or json) instead of creating it.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<Output>,
    /// With --dry-run=server: how long to wait for the operator's preview.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub timeout: Duration,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DryRun {
    None,
    Client,
    Server,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderFlag {
    Oldest,
    Newest,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReprocessFlag {
    #[value(name = "Missing")]
    Missing,
    #[value(name = "Failed")]
    Failed,
    #[value(name = "All")]
    All,
}

fn weekday(text: &str) -> Result<Weekday, String> {
    let days = Weekday::NAMED;
    let lower = text.trim().to_ascii_lowercase();
    days.iter()
        .find(|(name, _)| lower.len() >= 3 && name.starts_with(&lower))
        .map(|(_, day)| *day)
        .ok_or_else(|| format!("{text:?} is not a weekday (mon, tue, ... or monday, ...)"))
}

/// An hour (`7`) or an inclusive range of hours (`22-23`).
fn hours(text: &str) -> Result<Vec<i32>, String> {
    let bad = || format!("{text:?} is not an hour 0-23 or a range such as 9-17");
    let hour = |t: &str| {
        t.trim()
            .parse::<i32>()
            .ok()
            .filter(|h| (0..24).contains(h))
            .ok_or_else(bad)
    };
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (hour(a)?, hour(b)?);
            if a > b {
                return Err(bad());
            }
            Ok((a..=b).collect())
        }
        None => Ok(vec![hour(text)?]),
    }
}

fn instant(flag: &str, text: &str) -> Result<Time, PluginError> {
    text.trim().parse::<Timestamp>().map(Time).map_err(|e| {
        PluginError::Usage(format!("--{flag} {text:?} is not an RFC 3339 instant: {e}"))
    })
}

/// The Backfill the flags describe (`namespace` only when `-n` named one,
/// so a manifest for GitOps goes where it is applied).
pub fn backfill_of(args: &CreateArgs, namespace: Option<&str>) -> Result<Backfill, PluginError> {
    let sessions = args
        .sessions
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| instant("sessions", s))
        .collect::<Result<Vec<_>, _>>()?;
    if args.from.is_none() && sessions.is_empty() {
        return Err(PluginError::Usage(
            "give --from (with --to, --count, or alone) or --sessions".into(),
        ));
    }
    if let Some(c) = args.credits_per_session
        && !(c >= 0.0 && c.is_finite())
    {
        return Err(PluginError::Usage(format!(
            "--credits-per-session must be a number of at least 0, not {c}"
        )));
    }
    let mut hours: Vec<i32> = args.filter_hours.iter().flatten().copied().collect();
    hours.sort_unstable();
    hours.dedup();
    let mut days: Vec<Weekday> = Vec::new();
    for d in &args.filter_days {
        if !days.contains(d) {
            days.push(*d);
        }
    }
    let filter = (!hours.is_empty() || !days.is_empty()).then(|| SessionFilter {
        days_of_week: days,
        hours,
        exclude: Vec::new(),
    });
    let spec = BackfillSpec {
        schedule_ref: ScheduleRef {
            name: args.schedule.clone(),
        },
        from: args
            .from
            .as_deref()
            .map(|t| instant("from", t))
            .transpose()?,
        to: args.to.as_deref().map(|t| instant("to", t)).transpose()?,
        count: args.count,
        sessions: (!sessions.is_empty()).then_some(sessions),
        session_set: None,
        filter,
        attempt_name: args.attempt_name.clone(),
        dry_run: (args.dry_run == Some(DryRun::Server)).then_some(true),
        max_in_flight: args.max_in_flight,
        order: args.order.map(|o| match o {
            OrderFlag::Oldest => SessionOrder::Oldest,
            OrderFlag::Newest => SessionOrder::Newest,
        }),
        suspend: args.suspend.then_some(true),
        cancel: None,
        credits_per_session: args.credits_per_session,
        execution_windows: None,
        reprocess: args.reprocess.map(|r| match r {
            ReprocessFlag::Missing => Reprocess::Missing,
            ReprocessFlag::Failed => Reprocess::Failed,
            ReprocessFlag::All => Reprocess::All,
        }),
        parent_backfill_run_id: None,
        failure_budget: None,
        approved: None,
    };
    let mut backfill = Backfill::new(&args.name, spec);
    backfill.metadata = ObjectMeta {
        name: Some(args.name.clone()),
        namespace: namespace.map(str::to_string),
        ..ObjectMeta::default()
    };
    Ok(backfill)
}

/// The manifest, as YAML or JSON, ready for `kubectl apply -f -`.
pub fn manifest(backfill: &Backfill, output: Output) -> Result<String, PluginError> {
    let mut value = serde_json::to_value(backfill)
        .map_err(|e| PluginError::Other(format!("serializing the Backfill: {e}")))?;
    if let Some(object) = value.as_object_mut() {
        object.remove("status");
    }
    let text = match output {
        Output::Json => serde_json::to_string_pretty(&value)
            .map(|t| t + "\n")
            .map_err(|e| e.to_string()),
        _ => serde_yaml::to_string(&value).map_err(|e| e.to_string()),
    };
    text.map_err(|e| PluginError::Other(format!("serializing the Backfill: {e}")))
}

/// The plan a client-side dry run shows: the Backfill against its
/// Schedule as the operator would plan it if it started at `now` (before
/// `reprocess`, which the operator judges against the session ledger).
pub fn client_plan(
    backfill: &Backfill,
    schedule_name: &str,
    schedule: &ScheduleSpec,
    now: i64,
) -> Result<String, PluginError> {
    let mut spec = backfill.spec.clone();
    // `from` alone runs up to the start: plan it as a range ending now.
    if spec.from.is_some() && spec.to.is_none() && spec.count.is_none() {
        spec.to = Some(crate::core::zoned_cron::time(now));
    }
    let plan = Plan::for_backfill(schedule, &spec, Some(now))
        .and_then(|p| p.check_span(MAX_SESSIONS).map(|()| p))
        .map_err(|e| PluginError::Other(e.to_string()))?;
    let name = backfill.metadata.name.as_deref().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "{RESOURCE}/{name} (dry run): nothing created");
    let _ = writeln!(
        out,
        "schedule:  {schedule_name} ({:?} in {})",
        plan.clock().expr(),
        plan.clock().zone().name()
    );
    let _ = writeln!(out, "plan:      {}", plan.describe_boundaries());
    let mut total = 0u64;
    let mut first = Vec::with_capacity(SHOWN);
    let mut last = VecDeque::with_capacity(SHOWN);
    for s in plan.iter() {
        total += 1;
        if first.len() < SHOWN {
            first.push(s.at);
        } else {
            if last.len() == SHOWN {
                last.pop_front();
            }
            last.push_back(s.at);
        }
    }
    let _ = writeln!(out, "sessions:  {total}");
    if let Some((asked, got)) = plan.count_cut_short() {
        let _ = writeln!(
            out,
            "note:      count asked for {asked} sessions but only {got} have passed: the plan is shorter"
        );
    }
    let gap = total.saturating_sub((first.len() + last.len()) as u64);
    out.push_str(&session_lines(&first, gap, last.make_contiguous()));
    let credits = backfill
        .spec
        .credits_per_session
        .or(schedule.credits_per_session);
    let _ = match credits {
        Some(c) => writeln!(
            out,
            "cost:      {total} sessions x {c} credits = {} credits",
            c * total as f64
        ),
        None => writeln!(
            out,
            "cost:      unknown (no creditsPerSession on the Backfill or the Schedule)"
        ),
    };
    let reprocess = backfill.spec.reprocess.unwrap_or_default();
    if reprocess != Reprocess::All {
        let _ = writeln!(
            out,
            "reprocess: {reprocess:?}: sessions the session ledger already decides are left out when the backfill starts (--dry-run=server counts them)"
        );
    }
    Ok(out)
}

/// The first and last sessions of a plan, `gap` more between them:
/// `first:` on the first line, `last:` on the last.
fn session_lines(first: &[i64], gap: u64, last: &[i64]) -> String {
    let mut lines: Vec<String> = first.iter().map(|&t| rfc3339_utc(t)).collect();
    if gap > 0 {
        lines.push(format!("... {gap} more"));
    }
    lines.extend(last.iter().map(|&t| rfc3339_utc(t)));
    let count = lines.len();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let label = match (i, count) {
            (0, 1) => "only:",
            (0, _) => "first:",
            (i, n) if i + 1 == n => "last:",
            _ => "",
        };
        let _ = writeln!(out, "{label:<11}{line}");
    }
    out
}

/// What a server-side dry run shows once planned: the operator's preview
/// in status.
pub fn server_preview(backfill: &Backfill) -> String {
    let name = backfill.metadata.name.as_deref().unwrap_or_default();
    let mut out = String::new();
    let Some(status) = &backfill.status else {
        return out;
    };
    let _ = writeln!(
        out,
        "phase:     {:?}",
        status.phase.unwrap_or(BackfillPhase::Pending)
    );
    let preview = status.preview.clone().unwrap_or_default();
    if let Some(b) = &preview.boundaries {
        let _ = writeln!(out, "plan:      {b}");
    }
    let _ = writeln!(out, "sessions:  {}", status.total_estimated);
    if preview.skipped_by_reprocess > 0 {
        let _ = writeln!(
            out,
            "skipped:   {}{}",
            preview.skipped_by_reprocess,
            preview
                .skipped_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
    }
    let at = |list: &[Time]| list.iter().map(seconds).collect::<Vec<_>>();
    let (first, last) = (at(&preview.first), at(&preview.last));
    // The operator's two lists overlap when the plan is short.
    let total = status.total_estimated.max(0) as usize;
    let last = &last[last.len() - last.len().min(total.saturating_sub(first.len()))..];
    let gap = total.saturating_sub(first.len() + last.len()) as u64;
    out.push_str(&session_lines(&first, gap, last));
    if let Some(cost) = &status.cost_estimate {
        let _ = writeln!(
            out,
            "cost:      {} sessions x {} credits = {} credits",
            cost.total_entities, cost.credits_per_entity, cost.total_credits_estimated
        );
    }
    if let Some(t) = &preview.estimated_completion {
        let _ = writeln!(out, "finishes:  about {}", rfc3339_utc(seconds(t)));
    }
    if let Some(budget) = &preview.failure_budget {
        let _ = writeln!(out, "budget:    {budget}");
    }
    if let Some(approval) = &preview.approval {
        let _ = writeln!(out, "approval:  {approval}");
    }
    let _ = writeln!(
        out,
        "start it:  kubectl patch bf {name} --type=merge -p '{{\"spec\":{{\"dryRun\":false}}}}'"
    );
    out
}

/// Runs `create`.
pub fn create(global: &Global, args: &CreateArgs) -> Result<ExitCode, PluginError> {
    let backfill = backfill_of(args, global.namespace.as_deref())?;
    if let Some(output @ (Output::Yaml | Output::Json)) = args.output {
        print!("{}", manifest(&backfill, output)?);
        return Ok(ExitCode::SUCCESS);
    }
    block_on(async {
        let (client, namespace) = connect(global).await?;
        let schedules: Api<Schedule> = Api::namespaced(client.clone(), &namespace);
        // Like kubectl's client-side checks: the Schedule must exist now.
        let schedule = schedules.get(&args.schedule).await.map_err(from_server)?;
        if args.dry_run == Some(DryRun::Client) {
            let now = Timestamp::now().as_second();
            print!(
                "{}",
                client_plan(&backfill, &args.schedule, &schedule.spec, now)?
            );
            return Ok(ExitCode::SUCCESS);
        }
        let api = backfills(&client, &namespace);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        let created = api.create(&params, &backfill).await.map_err(from_server)?;
        if args.dry_run != Some(DryRun::Server) {
            println!("{RESOURCE}/{} created", args.name);
            return Ok(ExitCode::SUCCESS);
        }
        // Said before the wait, so a wait that fails leaves no doubt.
        println!(
            "{RESOURCE}/{} created (dry run: spec.dryRun=true, no Job runs)",
            args.name
        );
        let generation = created.metadata.generation;
        let planned = wait_for(
            &api,
            &args.name,
            "the operator's dry-run preview",
            args.timeout,
            |bf| {
                let status = bf.status.clone().unwrap_or_default();
                if let Some(c) = find_condition(&status.conditions, "Stalled")
                    && c.status == "True"
                {
                    return Seen::Done(Err(PluginError::Other(format!(
                        "{RESOURCE}/{} created as a dry run, but the operator cannot plan it ({}): {}",
                        args.name, c.reason, c.message
                    ))));
                }
                let current = status.observed_generation.is_some()
                    && status.observed_generation >= generation;
                if current && status.phase == Some(BackfillPhase::Planned) {
                    Seen::Done(Ok(bf.clone()))
                } else {
                    Seen::Pending
                }
            },
        )
        .await?;
        print!("{}", server_preview(&planned));
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{Command, Plugin};
    use clap::Parser;

    fn parse(list: &[&str]) -> Result<CreateArgs, clap::Error> {
        let mut argv = vec!["kubectl-backfill", "create"];
        argv.extend_from_slice(list);
        match Plugin::try_parse_from(argv)?.command {
            Command::Create(a) => Ok(a),
            _ => unreachable!(),
        }
    }

    fn spec(list: &[&str]) -> serde_json::Value {
        let args = parse(list).unwrap();
        serde_json::to_value(backfill_of(&args, None).unwrap()).unwrap()["spec"].clone()
    }

    fn schedule(cron: &str, zone: &str, credits: Option<f64>) -> ScheduleSpec {
        serde_json::from_value(serde_json::json!({
            "schedule": cron,
            "timeZone": zone,
            "creditsPerSession": credits,
            "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}},
        }))
        .unwrap()
    }

    const FROM: &str = "2026-01-01T00:00:00Z";

    #[test]
    fn each_selection_becomes_its_spec() {
        let base = ["jan", "--schedule", "hourly"];
        let with = |rest: &[&str]| {
            let mut list = base.to_vec();
            list.extend_from_slice(rest);
            spec(&list)
        };
        assert_eq!(
            with(&["--from", FROM, "--to", "2026-01-02T00:00:00+01:00"]),
            serde_json::json!({"scheduleRef": {"name": "hourly"}, "from": FROM, "to": "2026-01-01T23:00:00Z"})
        );
        assert_eq!(
            with(&["--from", FROM, "--count", "3"]),
            serde_json::json!({"scheduleRef": {"name": "hourly"}, "from": FROM, "count": 3})
        );
        // `from` alone: every session up to the start.
        assert_eq!(
            with(&["--from", FROM]),
            serde_json::json!({"scheduleRef": {"name": "hourly"}, "from": FROM})
        );
        assert_eq!(
            with(&["--sessions", "2026-01-01T02:00:00Z,2026-01-01T01:00:00Z"])["sessions"],
            serde_json::json!(["2026-01-01T02:00:00Z", "2026-01-01T01:00:00Z"])
        );
        assert_eq!(
            with(&[
                "--sessions",
                "2026-01-01T02:00:00Z",
                "--sessions",
                "2026-01-01T03:00:00Z"
            ])["sessions"],
            serde_json::json!(["2026-01-01T02:00:00Z", "2026-01-01T03:00:00Z"])
        );
    }

    #[test]
    fn the_other_fields_are_flags() {
        let s = spec(&[
            "jan",
            "--schedule",
            "hourly",
            "--from",
            FROM,
            "--count",
            "10",
            "--max-in-flight",
            "4",
            "--order",
            "newest",
            "--reprocess",
            "All",
            "--attempt-name",
            "fix-1",
            "--suspend",
            "--credits-per-session",
            "2.5",
            "--filter-days",
            "mon,Tuesday",
            "--filter-hours",
            "22-23,0,9",
            "--dry-run=server",
        ]);
        assert_eq!(s["maxInFlight"], 4);
        assert_eq!(s["order"], "Newest");
        assert_eq!(s["reprocess"], "All");
        assert_eq!(s["attemptName"], "fix-1");
        assert_eq!(s["suspend"], true);
        assert_eq!(s["creditsPerSession"], 2.5);
        assert_eq!(s["dryRun"], true);
        assert_eq!(
            s["filter"],
            serde_json::json!({"daysOfWeek": ["Monday", "Tuesday"], "hours": [0, 9, 22, 23]})
        );
        let lower = spec(&[
            "jan",
            "--schedule",
            "h",
            "--from",
            FROM,
            "--reprocess",
            "missing",
        ]);
        assert_eq!(lower["reprocess"], "Missing");
    }

    #[test]
    fn contradictory_selections_are_usage_errors() {
        let base = ["jan", "--schedule", "hourly"];
        let fails = |rest: &[&str]| {
            let mut list = base.to_vec();
            list.extend_from_slice(rest);
            parse(&list).is_err()
        };
        assert!(fails(&[]), "a selection is required");
        assert!(fails(&["--to", FROM]), "--to needs --from");
        assert!(fails(&["--from", FROM, "--to", FROM, "--count", "1"]));
        assert!(fails(&["--from", FROM, "--sessions", FROM]));
        assert!(fails(&["--from", FROM, "--count", "0"]));
        assert!(fails(&["--from", FROM, "--max-in-flight", "0"]));
        assert!(fails(&["--from", FROM, "--filter-hours", "24"]));
        assert!(fails(&["--from", FROM, "--filter-days", "funday"]));
        assert!(fails(&["--from", FROM, "--order", "sideways"]));
        let args = parse(&["jan", "--schedule", "h", "--from", "yesterday"]).unwrap();
        let err = backfill_of(&args, None).unwrap_err();
        assert!(matches!(err, PluginError::Usage(_)), "{err}");
        assert!(err.to_string().contains("not an RFC 3339 instant"), "{err}");
        assert_eq!(
            parse(&["jan", "--schedule", "h", "--from", FROM, "--dry-run"])
                .unwrap()
                .dry_run,
            Some(DryRun::Client)
        );
    }

    #[test]
    fn the_manifest_is_a_whole_object_for_kubectl_apply() {
        let args = parse(&[
            "jan",
            "--schedule",
            "hourly",
            "--from",
            FROM,
            "--count",
            "2",
        ])
        .unwrap();
        let yaml = manifest(&backfill_of(&args, Some("team-a")).unwrap(), Output::Yaml).unwrap();
        assert_eq!(
            yaml,
            "apiVersion: backfill.dev/v1alpha1\nkind: Backfill\nmetadata:\n  name: jan\n  namespace: team-a\nspec:\n  count: 2\n  from: 2026-01-01T00:00:00Z\n  scheduleRef:\n    name: hourly\n"
        );
        let json = manifest(&backfill_of(&args, None).unwrap(), Output::Json).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["metadata"], serde_json::json!({"name": "jan"}));
        assert!(value.get("status").is_none(), "{json}");
    }

    #[test]
    fn a_client_dry_run_shows_boundaries_ends_and_cost() {
        let args = parse(&[
            "jan",
            "--schedule",
            "hourly",
            "--from",
            FROM,
            "--to",
            "2026-01-01T12:00:00Z",
        ])
        .unwrap();
        let bf = backfill_of(&args, None).unwrap();
        let now = crate::core::zoned_cron::at("2026-02-01T00:00:00Z");
        let text =
            client_plan(&bf, "hourly", &schedule("0 * * * *", "UTC", Some(1.5)), now).unwrap();
        assert_eq!(
            text,
            "backfill.backfill.dev/jan (dry run): nothing created
schedule:  hourly (\"0 * * * *\" in UTC)
plan:      sessions from 2026-01-01T00:00:00Z (inclusive) to 2026-01-01T12:00:00Z (exclusive) of \"0 * * * *\" in UTC, none at or after 2026-02-01T00:00:00Z, oldest first
sessions:  12
first:     2026-01-01T00:00:00Z
           2026-01-01T01:00:00Z
           2026-01-01T02:00:00Z
           2026-01-01T03:00:00Z
           2026-01-01T04:00:00Z
           ... 2 more
           2026-01-01T07:00:00Z
           2026-01-01T08:00:00Z
           2026-01-01T09:00:00Z
           2026-01-01T10:00:00Z
last:      2026-01-01T11:00:00Z
cost:      12 sessions x 1.5 credits = 18 credits
reprocess: Failed: sessions the session ledger already decides are left out when the backfill starts (--dry-run=server counts them)
"
        );
    }

    #[test]
    fn a_client_dry_run_of_from_alone_ends_at_now() {
        let args = parse(&[
            "jan",
            "--schedule",
            "d",
            "--from",
            FROM,
            "--reprocess",
            "All",
        ])
        .unwrap();
        let bf = backfill_of(&args, None).unwrap();
        let now = crate::core::zoned_cron::at("2026-01-04T12:00:00Z");
        let text = client_plan(
            &bf,
            "d",
            &schedule("30 2 * * *", "America/New_York", None),
            now,
        )
        .unwrap();
        assert!(text.contains("sessions:  4\n"), "{text}");
        assert!(text.contains("last:      2026-01-04T07:30:00Z\n"), "{text}");
        assert!(text.contains("cost:      unknown"), "{text}");
        assert!(!text.contains("reprocess:"), "{text}");
    }

    #[test]
    fn a_server_preview_shows_each_session_once() {
        use crate::api::{BackfillStatus, CostEstimate, PlanPreview};
        use crate::core::zoned_cron::{at, time};
        let args = parse(&["jan", "--schedule", "h", "--from", FROM, "--count", "6"]).unwrap();
        let mut bf = backfill_of(&args, None).unwrap();
        let hours: Vec<Time> = (0..6).map(|h| time(at(FROM) + h * 3_600)).collect();
        bf.status = Some(BackfillStatus {
            phase: Some(BackfillPhase::Planned),
            total_estimated: 6,
            cost_estimate: Some(CostEstimate {
                credits_per_entity: 2.0,
                total_credits_estimated: 12.0,
                total_entities: 6,
            }),
            preview: Some(PlanPreview {
                boundaries: Some("the first 6 sessions".into()),
                first: hours[..5].to_vec(),
                last: hours[1..].to_vec(),
                ..PlanPreview::default()
            }),
            ..BackfillStatus::default()
        });
        let text = server_preview(&bf);
        assert!(
            text.contains(
                "sessions:  6
first:     2026-01-01T00:00:00Z
           2026-01-01T01:00:00Z
           2026-01-01T02:00:00Z
           2026-01-01T03:00:00Z
           2026-01-01T04:00:00Z
last:      2026-01-01T05:00:00Z
cost:      6 sessions x 2 credits = 12 credits
"
            ),
            "{text}"
        );
        assert!(text.starts_with("phase:     Planned\n"), "{text}");
    }

    #[test]
    fn a_client_dry_run_refuses_what_the_operator_refuses() {
        let args = parse(&["jan", "--schedule", "m", "--from", "2020-01-01T00:00:00Z"]).unwrap();
        let bf = backfill_of(&args, None).unwrap();
        let now = crate::core::zoned_cron::at("2026-01-01T00:00:00Z");
        let err = client_plan(&bf, "m", &schedule("* * * * *", "UTC", None), now).unwrap_err();
        assert!(err.to_string().contains("at most 600000"), "{err}");
    }
}
