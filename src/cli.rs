//! The command line of `backfill-operator`: flags and the offline `plan`
//! command. `main` only dispatches.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use jiff::Timestamp;

use crate::api::{Backfill, BackfillSpec, Schedule, ScheduleRef, ScheduleSpec, SessionOrder};
use crate::core::windows::Windows;
use crate::core::zoned_cron::rfc3339_utc;
use crate::core::{Plan, PlanError, Selection, ZonedCron};

#[derive(Parser, Debug)]
#[command(
    name = "backfill-operator",
    version,
    about = "Runs batch Jobs on a schedule and re-runs past schedule slots as declarative Backfills"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `run`'s flags, for when no command is given.
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controllers (the default).
    Run(RunArgs),
    /// Print the sessions a cron expression or a Backfill manifest selects,
    /// without a cluster.
    Plan(PlanArgs),
    /// Print the CustomResourceDefinitions as YAML, or write one file per
    /// CRD into each directory given (`make crds` does, for `crds/` and
    /// the chart).
    Crdgen { dirs: Vec<std::path::PathBuf> },
    /// Remove the operator's finalizer (backfill.dev/outcome) from every
    /// Job that holds it, in the given namespaces or in all of them: before
    /// uninstalling the operator or leaving a namespace, so that deleting
    /// the Jobs or their namespace does not wait for an operator that is
    /// gone. The outcomes of those Jobs are then not recorded.
    ReleaseFinalizers(ReleaseArgs),
}

#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["namespace", "all_namespaces"])))]
pub struct ReleaseArgs {
    /// Release the Jobs of these namespaces: repeat the flag, or separate
    /// them with commas.
    #[arg(short = 'n', long, value_delimiter = ',')]
    pub namespace: Vec<String>,
    /// Release the Jobs of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// With --all-namespaces: but not those of these namespaces (the ones
    /// the operator goes on watching when it narrows its watch).
    #[arg(long, value_delimiter = ',', requires = "all_namespaces")]
    pub except: Vec<String>,
}

impl ReleaseArgs {
    /// The namespaces to release (empty: all), each checked and named once.
    pub fn namespaces(&self) -> Result<Vec<String>, CliError> {
        let names = namespace_names(&self.namespace)?;
        if names.is_empty() && !self.all_namespaces {
            return Err(CliError::Input(
                "give --namespace NS (or --all-namespaces)".into(),
            ));
        }
        Ok(names)
    }

    /// The namespaces whose Jobs are kept as they are.
    pub fn excepted(&self) -> Result<Vec<String>, CliError> {
        namespace_names(&self.except)
    }
}

/// What `release-finalizers` prints: one line per namespace.
pub fn release_report(report: &[crate::controller::jobs::ReleasedIn]) -> String {
    let mut out = String::new();
    if report.is_empty() {
        let _ = writeln!(
            out,
            "no Job holds the finalizer {}",
            crate::api::JOB_FINALIZER
        );
    }
    for r in report {
        let jobs = |n: usize| if n == 1 { "Job" } else { "Jobs" };
        let _ = write!(
            out,
            "namespace {}: released {} {}",
            r.namespace,
            r.released,
            jobs(r.released)
        );
        if !r.failed.is_empty() {
            let _ = write!(out, ", {} failed", r.failed.len());
        }
        out.push('\n');
    }
    out
}

#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Watch only these namespaces: repeat the flag, or separate them
    /// with commas (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE", value_delimiter = ',')]
    pub namespace: Vec<String>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Delete a Schedule's SessionLedger months this many days after they
    /// end.
    #[arg(long, default_value_t = 400, env = "LEDGER_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..))]
    pub ledger_retention_days: u32,
    /// A Schedule keeps the outcomes of its sessions in its status and
    /// writes them to their month's SessionLedger in one request once
    /// this many are there (or a new month begins, or the Schedule is
    /// quiet); 1 writes each outcome at once.
    #[arg(long, default_value_t = 64, env = "LEDGER_BATCH", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub ledger_batch: u16,
    /// Serve Prometheus metrics on /metrics, and /healthz and /readyz, at
    /// this address (e.g. 0.0.0.0:8080; port 0 picks a free one). Off
    /// when unset.
    #[arg(long, env = "LISTEN_ADDRESS")]
    pub listen_address: Option<String>,
    /// Run the controllers only while holding a coordination.k8s.io Lease,
    /// so that of several replicas exactly one works.
    #[arg(long, env = "LEADER_ELECT")]
    pub leader_elect: bool,
    /// The Lease's namespace. Default: the pod's (POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// The Lease's name.
    #[arg(long, default_value = "backfill-operator")]
    pub leader_election_id: String,
    /// This replica's name in the Lease. Default: the pod's name
    /// (POD_NAME), else the host name and process id.
    #[arg(long, env = "POD_NAME")]
    pub leader_election_identity: Option<String>,
    /// Seconds a Lease stays valid without renewal (a standby takes over
    /// this long after the leader stops renewing).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_duration_seconds: u64,
    /// Serve the seeds' HTTP APIs (/public-api/backfills…,
    /// /api/schedules/{id}/backfill) at this address (e.g. 0.0.0.0:8443).
    /// Off when unset. Needs --api-tls-cert-file and --api-tls-key-file
    /// unless the address is a loopback one.
    #[arg(long, env = "API_ADDRESS")]
    pub api_address: Option<String>,
    /// The API's TLS certificate chain (PEM; e.g. a mounted Secret's
    /// tls.crt). Read again when it changes.
    #[arg(long, env = "API_TLS_CERT_FILE", requires = "api_tls_key_file")]
    pub api_tls_cert_file: Option<PathBuf>,
    /// The API's TLS private key (PEM; e.g. a mounted Secret's tls.key).
    #[arg(long, env = "API_TLS_KEY_FILE", requires = "api_tls_cert_file")]
    pub api_tls_key_file: Option<PathBuf>,
    /// Requests per second each client (peer address) may make to the
    /// API; beyond, 429 with Retry-After.
    #[arg(long, default_value_t = 20.0, env = "API_RATE_LIMIT")]
    pub api_rate_limit: f64,
    /// Requests a client may make at once above the rate.
    #[arg(long, default_value_t = 40, env = "API_RATE_BURST", value_parser = clap::value_parser!(u32).range(1..))]
    pub api_rate_burst: u32,
    /// How long a rerun-failed call waits for the operator to make the
    /// child before it answers 202 (seconds).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub api_rerun_wait_seconds: u64,
    /// Requests per second to the API server, on average (a token bucket,
    /// as the controller-manager's flag of the same name; 0: no limit).
    /// The Lease is renewed outside it. 200 where the controller-manager
    /// has 20 per controller: a Job per session is this operator's whole
    /// work, and 200 keeps a burst of 5,000 sessions within half a
    /// minute without approaching what API Priority and Fairness gives a
    /// workload's priority level.
    #[arg(long, default_value_t = 200.0, env = "KUBE_API_QPS")]
    pub kube_api_qps: f64,
    /// Requests that may go at once before `--kube-api-qps` applies (the
    /// bucket's size).
    #[arg(long, default_value_t = 400, env = "KUBE_API_BURST", value_parser = clap::value_parser!(u32).range(1..))]
    pub kube_api_burst: u32,
    /// Schedules reconciled at once (Schedules firing together are
    /// reconciled concurrently, this many at a time).
    #[arg(long, default_value_t = 64, env = "CONCURRENT_SCHEDULE_SYNCS", value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrent_schedule_syncs: u16,
    /// Backfills reconciled at once.
    #[arg(long, default_value_t = 64, env = "CONCURRENT_BACKFILL_SYNCS", value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrent_backfill_syncs: u16,
    /// For tests: how many seconds of the operator's clock pass per real
    /// second.
    #[arg(long, default_value_t = 1.0, hide = true)]
    pub time_scale: f64,
    /// For tests: the operator clock's reading at start (RFC 3339).
    #[arg(long, hide = true)]
    pub time_origin: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl RunArgs {
    /// What the operator is told at start, from these flags.
    pub fn settings(&self) -> Result<crate::controller::Settings, CliError> {
        Ok(crate::controller::Settings {
            namespaces: self.namespaces()?,
            clock: self.clock()?,
            ledger_retention_days: self.ledger_retention_days,
            ledger_batch: self.ledger_batch,
            listen_address: self.listen_address.clone(),
            leader_election: self.leader_election()?,
            concurrent_schedule_syncs: self.concurrent_schedule_syncs,
            concurrent_backfill_syncs: self.concurrent_backfill_syncs,
            api: self.api()?,
        })
    }

    /// The public API these flags ask for.
    pub fn api(&self) -> Result<Option<crate::public_api::Config>, CliError> {
        let Some(address) = self.api_address.clone() else {
            return Ok(None);
        };
        if !(self.api_rate_limit > 0.0 && self.api_rate_limit.is_finite()) {
            return Err(CliError::Input(format!(
                "--api-rate-limit must be a number above 0, not {}",
                self.api_rate_limit
            )));
        }
        let tls = match (&self.api_tls_cert_file, &self.api_tls_key_file) {
            (Some(cert), Some(key)) => Some(crate::public_api::tls::CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        if tls.is_none() && !crate::public_api::is_loopback(&address) {
            return Err(CliError::Input(format!(
                "--api-address {address}: plain HTTP is served on a loopback address only; give --api-tls-cert-file and --api-tls-key-file"
            )));
        }
        Ok(Some(crate::public_api::Config {
            address,
            tls,
            rate: crate::public_api::limit::Rate {
                per_second: self.api_rate_limit,
                burst: f64::from(self.api_rate_burst),
            },
            rerun_wait: std::time::Duration::from_secs(self.api_rerun_wait_seconds),
        }))
    }

    /// The rate limit of the controllers' requests.
    pub fn api_limit(&self) -> crate::throttle::ThrottleLayer {
        crate::throttle::ThrottleLayer {
            qps: self.kube_api_qps,
            burst: self.kube_api_burst,
        }
    }

    /// The namespaces to watch (empty: all), each checked and named once.
    pub fn namespaces(&self) -> Result<Vec<String>, CliError> {
        namespace_names(&self.namespace)
    }

    /// The Lease to compete for, when `--leader-elect` asks for one.
    pub fn leader_election(
        &self,
    ) -> Result<Option<crate::controller::leader::LeaseConfig>, CliError> {
        if !self.leader_elect {
            return Ok(None);
        }
        let namespace = self
            .leader_election_namespace
            .clone()
            .or_else(|| match self.namespaces().ok()?.as_slice() {
                [one] => Some(one.clone()),
                _ => None,
            })
            .ok_or_else(|| {
                CliError::Input(
                    "--leader-elect needs --leader-election-namespace (or POD_NAMESPACE, or a single --namespace)"
                        .into(),
                )
            })?;
        let identity = self.leader_election_identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "backfill-operator".into());
            format!("{host}-{}", std::process::id())
        });
        Ok(Some(crate::controller::leader::LeaseConfig::new(
            namespace,
            self.leader_election_id.clone(),
            identity,
            std::time::Duration::from_secs(self.lease_duration_seconds),
        )))
    }

    /// The operator's clock these flags ask for.
    pub fn clock(&self) -> Result<crate::controller::OperatorClock, CliError> {
        let origin = self
            .time_origin
            .as_deref()
            .map(|t| instant("time-origin", t))
            .transpose()?;
        Ok(crate::controller::OperatorClock::new(
            origin,
            self.time_scale,
        ))
    }
}

#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["cron", "file"])))]
pub struct PlanArgs {
    /// A cron expression, as in a Schedule's `schedule`.
    #[arg(long, requires = "from")]
    pub cron: Option<String>,
    /// IANA time zone of `--cron` (default UTC).
    #[arg(long, requires = "cron")]
    pub time_zone: Option<String>,
    /// First session, inclusive (RFC 3339). Alone: every session from it
    /// up to `--now`.
    #[arg(long, requires = "cron")]
    pub from: Option<String>,
    /// End of the range, exclusive (RFC 3339).
    #[arg(long, conflicts_with = "count", requires = "cron")]
    pub to: Option<String>,
    /// How many sessions from `--from`.
    #[arg(long, requires = "cron")]
    pub count: Option<i64>,
    /// Oldest (asc) or newest (desc) first.
    #[arg(long, value_enum, default_value_t = OrderArg::Asc)]
    pub order: OrderArg,
    /// A Backfill manifest (YAML); may also hold its Schedule.
    #[arg(short = 'f', long = "file", conflicts_with = "cron")]
    pub file: Option<PathBuf>,
    /// The Schedule manifest the Backfill refers to.
    #[arg(long, requires = "file")]
    pub schedule_file: Option<PathBuf>,
    /// Plan as if the backfill started at this instant (RFC 3339; default:
    /// now for manifests and for `--from` alone, no cut for `--cron` with
    /// `--to` or `--count`).
    #[arg(long)]
    pub now: Option<String>,
    /// Output: one RFC 3339 UTC instant per line, or a JSON array.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderArg {
    Asc,
    Desc,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// What `plan` prints: sessions on stdout, notes (boundaries, windows,
/// a short plan) on stderr.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PlanReport {
    pub stdout: String,
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Input(String),
}

/// Namespace names from `--namespace` flags (repeated or comma-separated),
/// each checked and named once.
fn namespace_names(flags: &[String]) -> Result<Vec<String>, CliError> {
    let mut out: Vec<String> = Vec::new();
    for ns in flags.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let label = ns.len() <= crate::api::LABEL_VALUE_MAX
            && ns
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !ns.starts_with('-')
            && !ns.ends_with('-');
        if !label {
            return Err(CliError::Input(format!(
                "--namespace {ns:?} is not a namespace name (lowercase letters, digits and '-', at most 63)"
            )));
        }
        if !out.iter().any(|o| o == ns) {
            out.push(ns.to_string());
        }
    }
    Ok(out)
}

fn instant(flag: &str, text: &str) -> Result<i64, CliError> {
    text.parse::<Timestamp>()
        .map(|t| t.as_second())
        .map_err(|e| CliError::Input(format!("--{flag} {text:?} is not an RFC 3339 instant: {e}")))
}

/// Runs `plan` and returns what to print.
pub fn plan(args: &PlanArgs) -> Result<PlanReport, CliError> {
    let now = args.now.as_deref().map(|n| instant("now", n)).transpose()?;
    let (plan, windows) = match (&args.cron, &args.file) {
        (Some(cron), _) => {
            let clock = ZonedCron::new(cron, args.time_zone.as_deref()).map_err(PlanError::from)?;
            let from = instant("from", args.from.as_deref().unwrap_or_default())?;
            let selection = match (&args.to, args.count) {
                (Some(to), None) => Selection::Range {
                    from,
                    to: instant("to", to)?,
                },
                (None, Some(count)) if count >= 1 => Selection::Count {
                    from,
                    count: count as u64,
                },
                (None, Some(count)) => {
                    return Err(CliError::Input(format!(
                        "--count must be at least 1, not {count}"
                    )));
                }
                // From alone: every session up to now, as a Backfill
                // with only `from` runs every session up to its start.
                (None, None) => Selection::Range {
                    from,
                    to: now.unwrap_or_else(|| Timestamp::now().as_second()),
                },
                (Some(_), Some(_)) => {
                    return Err(CliError::Input("give --to or --count, not both".into()));
                }
            };
            let order = match args.order {
                OrderArg::Asc => SessionOrder::Oldest,
                OrderArg::Desc => SessionOrder::Newest,
            };
            (
                Plan::new(clock, selection)
                    .with_order(order.into())
                    .before(now),
                None,
            )
        }
        (None, Some(file)) => {
            let (schedule, mut backfill) = read_manifests(file, args.schedule_file.as_deref())?;
            if args.order == OrderArg::Desc {
                backfill.order = Some(SessionOrder::Newest);
            }
            let cutoff = now.unwrap_or_else(|| Timestamp::now().as_second());
            let plan = Plan::for_backfill(&schedule, &backfill, Some(cutoff))?;
            let windows = Windows::from_spec(
                backfill.execution_windows.as_ref(),
                schedule.time_zone.as_deref(),
            )
            .map_err(|e| CliError::Input(e.to_string()))?;
            (plan, windows.map(|w| (w, cutoff)))
        }
        (None, None) => return Err(CliError::Input("give --cron or -f".into())),
    };

    let mut report = PlanReport::default();
    report
        .notes
        .push(format!("plan: {}", plan.describe_boundaries()));
    if let Some((asked, got)) = plan.count_cut_short() {
        report.notes.push(format!(
            "count asked for {asked} sessions but only {got} have passed: the plan is shorter"
        ));
    }
    if let Some((windows, from)) = windows {
        match windows.next_open(from) {
            Some(t) if t == from => report.notes.push(format!(
                "execution windows ({}): open now",
                windows.zone().name()
            )),
            Some(t) => report.notes.push(format!(
                "execution windows ({}): Jobs start when the next window opens, at {}",
                windows.zone().name(),
                rfc3339_utc(t)
            )),
            None => report
                .notes
                .push("execution windows: none ever opens".to_string()),
        }
    }
    let sessions = plan.iter().map(|s| rfc3339_utc(s.at));
    match args.output {
        Output::Text => {
            for s in sessions {
                let _ = writeln!(report.stdout, "{s}");
            }
        }
        Output::Json => {
            let list: Vec<String> = sessions.collect();
            report.stdout = serde_json::to_string_pretty(&list).unwrap_or_default();
            report.stdout.push('\n');
        }
    }
    Ok(report)
}

/// Reads a Backfill and its Schedule from manifest files (either file may
/// hold several YAML documents).
fn read_manifests(
    file: &Path,
    schedule_file: Option<&Path>,
) -> Result<(ScheduleSpec, BackfillSpec), CliError> {
    let mut docs = read_docs(file)?;
    if let Some(s) = schedule_file {
        docs.extend(read_docs(s)?);
    }
    let of_kind = |kind: &str| {
        docs.iter()
            .filter(|(_, d)| d.get("kind").and_then(|k| k.as_str()) == Some(kind))
            .cloned()
            .collect::<Vec<_>>()
    };
    let backfills = of_kind("Backfill");
    let [(bf_path, bf)] = backfills.as_slice() else {
        return Err(CliError::Input(format!(
            "{}: expected exactly one Backfill, found {}",
            file.display(),
            backfills.len()
        )));
    };
    let backfill: Backfill = serde_json::from_value(bf.clone())
        .map_err(|e| CliError::Input(format!("{bf_path}: not a valid Backfill: {e}")))?;
    let ScheduleRef { name } = &backfill.spec.schedule_ref;
    let schedules = of_kind("Schedule");
    let found = schedules
        .iter()
        .find(|(_, d)| d.pointer("/metadata/name").and_then(|n| n.as_str()) == Some(name.as_str()))
        .ok_or_else(|| {
            CliError::Input(format!(
                "Schedule {name:?} not found: give its manifest with --schedule-file"
            ))
        })?;
    let schedule: Schedule = serde_json::from_value(found.1.clone())
        .map_err(|e| CliError::Input(format!("{}: not a valid Schedule: {e}", found.0)))?;
    Ok((schedule.spec, backfill.spec))
}

fn read_docs(path: &Path) -> Result<Vec<(String, serde_json::Value)>, CliError> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_json::Value::deserialize(doc)
            .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
        if !value.is_null() {
            docs.push((path.display().to_string(), value));
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> PlanArgs {
        let mut argv = vec!["backfill-operator", "plan"];
        argv.extend_from_slice(list);
        match Cli::try_parse_from(argv).unwrap().command {
            Some(Command::Plan(a)) => a,
            _ => unreachable!(),
        }
    }

    fn run_args(list: &[&str]) -> RunArgs {
        let mut argv = vec!["backfill-operator", "run"];
        argv.extend_from_slice(list);
        match Cli::try_parse_from(argv).unwrap().command {
            Some(Command::Run(a)) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn namespaces_are_a_list_checked_and_named_once() {
        let ns = |list: &[&str]| run_args(list).namespaces();
        assert_eq!(ns(&[]).unwrap(), Vec::<String>::new());
        assert_eq!(ns(&["--namespace", "a"]).unwrap(), ["a"]);
        assert_eq!(
            ns(&["--namespace", "team-a,team-b", "--namespace", "team-a"]).unwrap(),
            ["team-a", "team-b"]
        );
        assert_eq!(ns(&["--namespace="]).unwrap(), Vec::<String>::new());
        let err = ns(&["--namespace", "a,Team_B"]).unwrap_err().to_string();
        assert!(err.contains("\"Team_B\" is not a namespace name"), "{err}");
        assert!(ns(&["--namespace=a,-b"]).is_err());
        assert!(ns(&["--namespace", &"a".repeat(64)]).is_err());
    }

    #[test]
    fn release_finalizers_takes_namespaces_or_all_of_them() {
        let parse = |list: &[&str]| {
            let mut argv = vec!["backfill-operator", "release-finalizers"];
            argv.extend_from_slice(list);
            match Cli::try_parse_from(argv)?.command {
                Some(Command::ReleaseFinalizers(a)) => Ok::<_, clap::Error>(a),
                _ => unreachable!(),
            }
        };
        let ns = |list: &[&str]| parse(list).unwrap().namespaces().unwrap();
        assert_eq!(ns(&["-n", "a", "--namespace", "b,a"]), ["a", "b"]);
        assert_eq!(ns(&["--all-namespaces"]), Vec::<String>::new());
        assert_eq!(ns(&["-A"]), Vec::<String>::new());
        assert!(parse(&[]).is_err(), "a scope is required");
        assert!(parse(&["-n", "a", "-A"]).is_err(), "one scope only");
        let empty = parse(&["--namespace="]).unwrap().namespaces();
        assert!(empty.unwrap_err().to_string().contains("give --namespace"));
        assert!(parse(&["-n", "Bad_Name"]).unwrap().namespaces().is_err());
    }

    #[test]
    fn release_report_counts_per_namespace() {
        use crate::controller::jobs::ReleasedIn;
        assert_eq!(
            release_report(&[]),
            "no Job holds the finalizer backfill.dev/outcome\n"
        );
        let report = [
            ReleasedIn {
                namespace: "a".into(),
                released: 1,
                failed: vec![],
            },
            ReleasedIn {
                namespace: "b".into(),
                released: 0,
                failed: vec![("j".into(), "forbidden (403)".into())],
            },
        ];
        assert_eq!(
            release_report(&report),
            "namespace a: released 1 Job\nnamespace b: released 0 Jobs, 1 failed\n"
        );
    }

    #[test]
    fn the_lease_namespace_defaults_to_a_single_watched_namespace() {
        let lease = |list: &[&str]| {
            run_args(list)
                .leader_election()
                .map(|l| l.map(|l| l.namespace))
        };
        assert_eq!(
            lease(&["--leader-elect", "--namespace", "ops"]).unwrap(),
            Some("ops".to_string())
        );
        let err = lease(&["--leader-elect", "--namespace", "a,b"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("a single --namespace"), "{err}");
        assert_eq!(lease(&["--namespace", "a,b"]).unwrap(), None);
    }

    #[test]
    fn from_alone_plans_up_to_now() {
        let report = plan(&args(&[
            "--cron",
            "0 */6 * * *",
            "--from",
            "2026-01-01T00:00:00Z",
            "--now",
            "2026-01-02T00:00:00Z",
        ]))
        .unwrap();
        assert_eq!(
            report.stdout,
            "2026-01-01T00:00:00Z\n2026-01-01T06:00:00Z\n2026-01-01T12:00:00Z\n2026-01-01T18:00:00Z\n"
        );
    }

    #[test]
    fn plans_a_cron_in_a_zone() {
        let report = plan(&args(&[
            "--cron",
            "30 2 * * *",
            "--time-zone",
            "America/New_York",
            "--from",
            "2026-03-07T00:00:00Z",
            "--count",
            "3",
        ]))
        .unwrap();
        assert_eq!(
            report.stdout,
            "2026-03-07T07:30:00Z\n2026-03-08T07:00:00Z\n2026-03-09T06:30:00Z\n"
        );
        let json = plan(&args(&[
            "--cron",
            "0 * * * *",
            "--from",
            "2026-01-01T00:00:00Z",
            "--to",
            "2026-01-01T02:00:00Z",
            "--order",
            "desc",
            "-o",
            "json",
        ]))
        .unwrap();
        let list: Vec<String> = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(list, ["2026-01-01T01:00:00Z", "2026-01-01T00:00:00Z"]);
    }

    #[test]
    fn bad_input_gives_the_controllers_message() {
        let err = |a: &[&str]| plan(&args(a)).unwrap_err().to_string();
        assert_eq!(
            err(&[
                "--cron",
                "0 0 30 2 *",
                "--from",
                "2026-01-01T00:00:00Z",
                "--count",
                "1"
            ]),
            "invalid schedule \"0 0 30 2 *\": can never run: no month of the month field has a day of the day-of-month field"
        );
        assert!(
            err(&[
                "--cron",
                "* * * * *",
                "--time-zone",
                "Moon/Tycho",
                "--from",
                "2026-01-01T00:00:00Z",
                "--count",
                "1"
            ])
            .contains("unknown time zone \"Moon/Tycho\"")
        );
        assert!(
            err(&["--cron", "* * * * *", "--from", "yesterday", "--count", "1"])
                .contains("not an RFC 3339 instant")
        );
    }
}
