//! `kubectl backfill status NAME [--watch]`: a Backfill on one screen —
//! its phase, a progress bar with counts and an ETA, the execution window,
//! a calendar heatmap of its plan's sessions and the failed sessions with
//! the `kubectl logs` command of each.
//!
//! [`render`] is a pure function of the Backfill, its Jobs and pods and
//! `now`: the snapshot tests call it without a cluster. Its work is one
//! walk of the frozen plan (at most [`MAX_SESSIONS`] sessions) into a grid
//! of at most a few hundred cells, whatever the plan's size.
//!
//! [`MAX_SESSIONS`]: crate::core::plan::MAX_SESSIONS

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use super::{Global, Output, PluginError, block_on, connect};
use crate::api::{Backfill, BackfillPhase, BackfillSpec, BackfillStatus, RunState, ScheduleSpec};
use crate::core::bitmap::Bitmap;
use crate::core::calendar::{civil_from_days, weekday_from_days};
use crate::core::job::{OwnerKind, job_name};
use crate::core::plan::{Order, Plan, PlanError};
use crate::core::windows::Windows;
use crate::core::zoned_cron::{Session, Zone, ZonedCron, rfc3339_utc, seconds};

/// The label that carries a Backfill's name on its Jobs and their pods.
const LABEL_BACKFILL: &str = "backfill.dev/backfill";
/// The label the job controller puts on a Job's pods.
const LABEL_JOB_NAME: &str = "batch.kubernetes.io/job-name";
/// Failed sessions listed in full; the rest are counted.
const MAX_LISTED: usize = 10;
/// A plan spanning at most this many local days is drawn days × hours.
const MAX_DAY_ROWS: i64 = 31;
/// At most this many week columns; longer plans put several weeks in one.
const MAX_WEEK_COLUMNS: i64 = 70;
const BAR_WIDTH: usize = 40;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The Backfill's name.
    pub name: String,
    /// Re-render whenever the Backfill or its Jobs change, until it
    /// finishes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// `json` or `yaml` print the Backfill object as the API server
    /// serves it; `text` (and `wide`) the status screen.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

/// Colour or plain characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub const PLAIN: Style = Style { color: false };
    pub const COLOR: Style = Style { color: true };

    /// Colour only on a terminal, and never with `NO_COLOR` set
    /// (<https://no-color.org>: any non-empty value).
    pub fn detect() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: std::io::stdout().is_terminal() && !no_color,
        }
    }

    fn paint(self, state: SessionState, text: &str) -> String {
        if self.color {
            format!("\x1b[{}m{text}\x1b[0m", state.ansi())
        } else {
            text.to_string()
        }
    }
}

/// What became of one session of the plan. The order is severity: a
/// heatmap cell holding several sessions shows the greatest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SessionState {
    Succeeded,
    /// Left out by `reprocess` at the start, or decided by another Job
    /// after it.
    Skipped,
    Queued,
    Running,
    /// Its next attempt waits for another Job of the Schedule to end.
    Waiting,
    Killed,
    Failed,
}

impl SessionState {
    const LEGEND: [SessionState; 7] = [
        SessionState::Succeeded,
        SessionState::Failed,
        SessionState::Killed,
        SessionState::Running,
        SessionState::Queued,
        SessionState::Waiting,
        SessionState::Skipped,
    ];

    /// The character of a cell, readable without colour.
    pub fn symbol(self) -> char {
        match self {
            SessionState::Succeeded => '#',
            SessionState::Failed => 'x',
            SessionState::Killed => 'k',
            SessionState::Running => '>',
            SessionState::Queued => '.',
            SessionState::Waiting => '~',
            SessionState::Skipped => '-',
        }
    }

    fn word(self) -> &'static str {
        match self {
            SessionState::Succeeded => "succeeded",
            SessionState::Failed => "failed",
            SessionState::Killed => "killed",
            SessionState::Running => "running",
            SessionState::Queued => "queued",
            SessionState::Waiting => "waiting",
            SessionState::Skipped => "skipped",
        }
    }

    fn ansi(self) -> &'static str {
        match self {
            SessionState::Succeeded => "32",
            SessionState::Failed => "1;31",
            SessionState::Killed => "35",
            SessionState::Running => "36",
            SessionState::Queued => "37",
            SessionState::Waiting => "33",
            SessionState::Skipped => "90",
        }
    }
}

/// Whether the Backfill has finished for good (what `--watch` waits for).
pub fn is_finished(backfill: &Backfill) -> bool {
    backfill.status.as_ref().is_some_and(|s| {
        matches!(
            s.phase,
            Some(BackfillPhase::Succeeded | BackfillPhase::Failed | BackfillPhase::Cancelled)
        ) && s.completed_at.is_some()
    })
}

/// The status screen of `backfill`, given its Jobs and their pods (for
/// the failed sessions' reasons and exit codes) at `now` (Unix seconds).
pub fn render(backfill: &Backfill, jobs: &[Job], pods: &[Pod], now: i64, style: Style) -> String {
    let mut out = String::new();
    let name = backfill.name_any();
    let ns = backfill
        .namespace()
        .unwrap_or_else(|| "default".to_string());
    let spec = &backfill.spec;
    let status = backfill.status.clone().unwrap_or_default();
    let run = status.run.as_ref();
    let phase = status.phase.unwrap_or_default();

    let schedule = match run {
        Some(r) => format!(
            "{} ({:?} in {})",
            spec.schedule_ref.name, r.schedule, r.time_zone
        ),
        None => spec.schedule_ref.name.clone(),
    };
    let _ = writeln!(out, "Backfill {ns}/{name} of Schedule {schedule}");
    let _ = writeln!(out, "Phase     {phase:?}");
    if let Some(id) = &status.run_id {
        let _ = writeln!(out, "Run id    {id}");
    }
    if let Some(parent) = &spec.parent_backfill_run_id {
        let _ = writeln!(out, "Rerun of  run {parent}");
    }
    if let Some(who) = &status.created_by {
        let _ = writeln!(out, "Creator   {who}");
    }
    if let Some(approval) = &status.approval {
        let text = match &approval.approved_by {
            Some(who) => format!(
                "given by {who} ({} credits, above {})",
                approval.credits, approval.required_above_credits
            ),
            None if status.phase == Some(BackfillPhase::AwaitingApproval) => format!(
                "awaited: {} credits, above {}; a holder of the RBAC verb approve sets spec.approved",
                approval.credits, approval.required_above_credits
            ),
            None => format!(
                "given ({} credits, above {}), approver unknown",
                approval.credits, approval.required_above_credits
            ),
        };
        out.push_str(&wrap(&text, "Approval  ", "          "));
    }
    if let Some(budget) = budget_state(backfill) {
        out.push_str(&wrap(&budget, "Budget    ", "          "));
    }

    // Progress: a bar of the sessions to run, by state.
    let total = status.total_estimated.max(0) as u64;
    let counts = [
        (SessionState::Succeeded, status.succeeded_count),
        (SessionState::Failed, status.failed_count),
        (SessionState::Killed, status.killed_count),
        (SessionState::Running, status.running_count),
        (
            SessionState::Queued,
            (status.total_estimated - status.processed_count - status.running_count).max(0),
        ),
    ];
    let skipped = status.skipped_count
        + status
            .preview
            .as_ref()
            .map_or(0, |p| p.skipped_by_reprocess);
    let percent = (status.processed_count.max(0) as u64 * 100)
        .checked_div(total)
        .unwrap_or(100);
    let _ = writeln!(
        out,
        "Progress  [{}] {}/{} ({percent}%)",
        bar(&counts, BAR_WIDTH, style),
        status.processed_count,
        total
    );
    let mut words: Vec<String> = counts
        .iter()
        .map(|(state, n)| format!("{n} {}", state.word()))
        .collect();
    words.push(format!("{skipped} skipped"));
    out.push_str(&wrap(&words.join(", "), "          ", "          "));

    // Time: started, finished or an ETA.
    let started = status.started_at.as_ref().map(seconds);
    if let Some(started) = started {
        let _ = writeln!(
            out,
            "Started   {} ({} ago)",
            rfc3339_utc(started),
            human(now - started)
        );
    }
    match (status.completed_at.as_ref().map(seconds), started) {
        (Some(done), Some(started)) => {
            let _ = writeln!(
                out,
                "Finished  {} (took {})",
                rfc3339_utc(done),
                human(done - started)
            );
        }
        (Some(done), None) => {
            let _ = writeln!(out, "Finished  {}", rfc3339_utc(done));
        }
        (None, _) => {
            let _ = writeln!(out, "ETA       {}", eta(&status, now));
        }
    }
    if !is_finished(backfill) {
        out.push_str(&wrap(
            &window_state(backfill, now),
            "Window    ",
            "          ",
        ));
        if let Some(held) = held_back(&status) {
            out.push_str(&wrap(&held, "Capacity  ", "          "));
        }
    }
    if let Some(error) = &status.error {
        out.push_str(&wrap(error, "Error     ", "          "));
    }
    if let Some(c) = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled" && c.status == "True")
    {
        let text = format!("{}: {}", c.reason, c.message);
        out.push_str(&wrap(&text, "Stalled   ", "          "));
    }

    out.push('\n');
    let Some(run) = run.filter(|r| r.from.is_some() && r.to.is_some()) else {
        let _ = writeln!(
            out,
            "No sessions to draw: the plan is frozen when the run starts{}.",
            if phase == BackfillPhase::Planned {
                " (this is a dry run; see status.preview)"
            } else {
                ""
            }
        );
        return out;
    };
    let waiting_for = waiting_elsewhere(backfill).and(run.next_session.as_ref().map(seconds));
    match heatmap(spec, run, waiting_for) {
        Ok(map) => {
            out.push_str(&map.draw(style));
            let failed = failures(&name, &ns, &map, jobs, pods);
            if !failed.is_empty() {
                out.push('\n');
                out.push_str(&failed);
            }
        }
        Err(e) => {
            let _ = writeln!(out, "Cannot read the plan from status.run: {e}");
        }
    }
    out
}

/// The ETA: the dry run's estimate when there is one, else the rate so
/// far.
fn eta(status: &crate::api::BackfillStatus, now: i64) -> String {
    if let Some(at) = status
        .preview
        .as_ref()
        .and_then(|p| p.estimated_completion.as_ref())
        .map(seconds)
    {
        let when = if at > now {
            format!("in {}", human(at - now))
        } else {
            "overdue".to_string()
        };
        return format!("{} ({when}, estimated from recent Jobs)", rfc3339_utc(at));
    }
    let started = status.started_at.as_ref().map(seconds);
    let processed = status.processed_count.max(0);
    let left = (status.total_estimated - processed).max(0);
    match started {
        Some(started) if processed > 0 && now > started => {
            let per_session = (now - started) as f64 / processed as f64;
            let rest = (per_session * left as f64).round() as i64;
            format!(
                "{} (in {}, at the rate so far)",
                rfc3339_utc(now + rest),
                human(rest)
            )
        }
        _ => "unknown (no session finished yet)".to_string(),
    }
}

/// The Ready condition's message when the next session waits for another
/// Job of the Schedule.
fn waiting_elsewhere(backfill: &Backfill) -> Option<String> {
    let status = backfill.status.as_ref()?;
    if status.phase != Some(BackfillPhase::Waiting) {
        return None;
    }
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.reason == "SessionRunElsewhere")
        .map(|c| c.message.clone())
}

/// Why the Schedule's `maxActiveJobs` holds sessions back, when it does.
fn held_back(status: &BackfillStatus) -> Option<String> {
    if status.waiting_for_capacity == 0 {
        return None;
    }
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.reason == "WaitingForCapacity")
        .map(|c| c.message.clone())
}

/// The failure budget: its limits, what counts against it, and whether
/// it is spent.
fn budget_state(backfill: &Backfill) -> Option<String> {
    let budget = backfill.spec.failure_budget.as_ref()?;
    let mut text = crate::core::backfill::budget::describe(budget);
    if let Some(state) = backfill.status.as_ref()?.failure_budget.as_ref() {
        text.push_str(&format!(
            "; {} failed of {} processed since {}",
            state.failed,
            state.processed,
            if state.resumes > 0 {
                "the last resume"
            } else {
                "the start"
            }
        ));
        if let Some(at) = &state.exhausted_at {
            text.push_str(&format!(", spent at {}", rfc3339_utc(seconds(at))));
        }
    }
    Some(text)
}

fn window_state(backfill: &Backfill, now: i64) -> String {
    let status = backfill.status.clone().unwrap_or_default();
    if let Some(message) = waiting_elsewhere(backfill) {
        return format!("waiting for another Job: {message}");
    }
    let spent = status
        .failure_budget
        .as_ref()
        .is_some_and(|b| b.exhausted_at.is_some());
    let paused = match status.phase {
        Some(BackfillPhase::Paused) if spent => "paused (failure budget spent); ",
        Some(BackfillPhase::Paused) => "paused (spec.suspend); ",
        Some(BackfillPhase::AwaitingApproval) => "awaiting approval; ",
        _ => "",
    };
    if status.phase == Some(BackfillPhase::Waiting)
        && let Some(next) = status.next_window_start.as_ref().map(seconds)
    {
        return format!(
            "{paused}closed, next opens at {} (in {})",
            rfc3339_utc(next),
            human(next - now)
        );
    }
    let zone = status.run.as_ref().map(|r| r.time_zone.as_str());
    match Windows::from_spec(backfill.spec.execution_windows.as_ref(), zone) {
        Ok(None) => format!("{paused}always open (no execution windows)"),
        Ok(Some(w)) => match (w.open_at(now), w.next_open(now)) {
            (Some(span), _) => format!("{paused}open until {}", rfc3339_utc(span.end)),
            (None, Some(next)) => format!(
                "{paused}closed, next opens at {} (in {})",
                rfc3339_utc(next),
                human(next - now)
            ),
            (None, None) => format!("{paused}closed, no window in the coming week"),
        },
        Err(e) => format!("{paused}unreadable: {e}"),
    }
}

/// A bar of `width` characters split by the counts, each part drawn with
/// its state's symbol.
fn bar(counts: &[(SessionState, i64)], width: usize, style: Style) -> String {
    let total: i64 = counts.iter().map(|(_, n)| (*n).max(0)).sum();
    let mut out = String::new();
    if total == 0 {
        return " ".repeat(width);
    }
    let mut cumulative = 0i64;
    let mut drawn = 0usize;
    for (state, n) in counts {
        cumulative += (*n).max(0);
        let end = ((cumulative as f64 / total as f64) * width as f64).round() as usize;
        if end > drawn {
            let part: String = std::iter::repeat_n(state.symbol(), end - drawn).collect();
            out.push_str(&style.paint(*state, &part));
            drawn = end;
        }
    }
    out
}

/// `text` in lines of at most 80 columns (a longer word stays whole),
/// the first after `first`, the others after `rest`.
fn wrap(text: &str, first: &str, rest: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.chars().count() + 1 + word.chars().count() > 80 {
            out.push_str(&line);
            out.push('\n');
            line = rest.to_string();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// `1h 5m`, `3d 4h`, `42s`.
pub fn human(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m {}s", s % 60),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// The heatmap's grid: local days × hours, or weekdays × weeks.
#[derive(Clone, Debug)]
enum Layout {
    /// A row per local day from `first_day`, a cell per local hour.
    DaysByHours { first_day: i64, days: i64 },
    /// A row per weekday (Monday first), a column per `weeks` weeks from
    /// the Monday `first_monday`.
    WeeksByDays {
        first_monday: i64,
        weeks: i64,
        columns: i64,
    },
}

/// The plan drawn into cells, and its failed sessions.
pub struct Heatmap {
    zone: Zone,
    layout: Layout,
    cells: Vec<Option<SessionState>>,
    first_local: i64,
    last_local: i64,
    sessions: u64,
    /// The earliest failed or killed sessions (at most `MAX_LISTED`),
    /// ascending.
    failed: Vec<(i64, SessionState)>,
    failed_total: u64,
}

impl Heatmap {
    fn new(zone: Zone, first_local: i64, last_local: i64) -> Self {
        let first_day = first_local.div_euclid(86_400);
        let last_day = last_local.div_euclid(86_400).max(first_day);
        let days = last_day - first_day + 1;
        let (layout, cells) = if days <= MAX_DAY_ROWS {
            (Layout::DaysByHours { first_day, days }, days * 24)
        } else {
            let first_monday = first_day - i64::from((weekday_from_days(first_day) + 6) % 7);
            let all_weeks = (last_day - first_monday) / 7 + 1;
            let weeks = (all_weeks + MAX_WEEK_COLUMNS - 1) / MAX_WEEK_COLUMNS;
            let columns = (all_weeks + weeks - 1) / weeks;
            (
                Layout::WeeksByDays {
                    first_monday,
                    weeks,
                    columns,
                },
                columns * 7,
            )
        };
        Heatmap {
            zone,
            layout,
            cells: vec![None; cells as usize],
            first_local,
            last_local,
            sessions: 0,
            failed: Vec::new(),
            failed_total: 0,
        }
    }

    fn cell_of(&self, local: i64) -> Option<usize> {
        let day = local.div_euclid(86_400);
        let index = match self.layout {
            Layout::DaysByHours { first_day, days } => {
                let row = day - first_day;
                if !(0..days).contains(&row) {
                    return None;
                }
                row * 24 + local.rem_euclid(86_400) / 3_600
            }
            Layout::WeeksByDays {
                first_monday,
                weeks,
                columns,
            } => {
                let column = (day - first_monday).div_euclid(7) / weeks;
                if !(0..columns).contains(&column) {
                    return None;
                }
                i64::from((weekday_from_days(day) + 6) % 7) * columns + column
            }
        };
        usize::try_from(index).ok()
    }

    fn put(&mut self, session: Session, state: SessionState) {
        self.sessions += 1;
        if let Some(i) = self.cell_of(session.local_seconds())
            && let Some(cell) = self.cells.get_mut(i)
        {
            *cell = (*cell).max(Some(state));
        }
        if matches!(state, SessionState::Failed | SessionState::Killed) {
            self.failed_total += 1;
            self.failed.push((session.at, state));
            // Keep the earliest few, in bounded memory.
            if self.failed.len() >= 4 * MAX_LISTED {
                self.failed.sort_unstable();
                self.failed.truncate(MAX_LISTED);
            }
        }
    }

    /// The title, the grid and the legend.
    pub fn draw(&self, style: Style) -> String {
        let mut out = String::new();
        let date = |local: i64| {
            let (y, m, d) = civil_from_days(local.div_euclid(86_400));
            format!("{y:04}-{m:02}-{d:02}")
        };
        let clock = |local: i64| {
            let s = local.rem_euclid(86_400);
            format!("{:02}:{:02}", s / 3_600, s % 3_600 / 60)
        };
        let _ = writeln!(
            out,
            "{} sessions, {} {} to {} {} ({})",
            self.sessions,
            date(self.first_local),
            clock(self.first_local),
            date(self.last_local),
            clock(self.last_local),
            self.zone.name()
        );
        let cell = |state: Option<SessionState>| match state {
            Some(s) => style.paint(s, &s.symbol().to_string()),
            None => " ".to_string(),
        };
        match self.layout {
            Layout::DaysByHours { first_day, days } => {
                let _ = writeln!(out, "a row per day, a cell per hour:");
                let _ = writeln!(
                    out,
                    "               00    03    06    09    12    15    18    21"
                );
                for row in 0..days {
                    let day = first_day + row;
                    let mut line = format!(
                        "{} {} ",
                        WEEKDAYS[usize::from((weekday_from_days(day) + 6) % 7)],
                        date(day * 86_400)
                    );
                    for hour in 0..24 {
                        line.push_str(&cell(self.cells[(row * 24 + hour) as usize]));
                        line.push(' ');
                    }
                    let _ = writeln!(out, "{}", line.trim_end());
                }
            }
            Layout::WeeksByDays {
                first_monday,
                weeks,
                columns,
            } => {
                let width = if columns <= 36 { 2 } else { 1 };
                let per = if weeks == 1 {
                    "a column per week".to_string()
                } else {
                    format!("a column per {weeks} weeks")
                };
                let _ = writeln!(out, "a row per weekday, {per} (from Monday):");
                // Month names where a month begins, when they fit.
                let mut header = String::from("    ");
                let mut last_month = None;
                for column in 0..columns {
                    let start = first_monday + column * weeks * 7;
                    let end = start + weeks * 7 - 1;
                    let (y, m, _) = civil_from_days(end);
                    if last_month != Some((y, m)) {
                        let at = 4 + (column * width) as usize;
                        let label = MONTHS[usize::from(m - 1)];
                        if header.len() <= at {
                            header.push_str(&" ".repeat(at - header.len()));
                            header.push_str(label);
                            header.push(' ');
                        }
                        last_month = Some((y, m));
                    }
                }
                let _ = writeln!(out, "{}", header.trim_end());
                for (row, name) in WEEKDAYS.iter().enumerate() {
                    let mut line = format!("{name} ");
                    for column in 0..columns {
                        line.push_str(&cell(self.cells[row * columns as usize + column as usize]));
                        if width == 2 {
                            line.push(' ');
                        }
                    }
                    let _ = writeln!(out, "{}", line.trim_end());
                }
            }
        }
        let legend: Vec<String> = SessionState::LEGEND
            .iter()
            .map(|s| format!("{} {}", style.paint(*s, &s.symbol().to_string()), s.word()))
            .collect();
        let _ = writeln!(out, "{}", legend.join("  "));
        out
    }
}

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Every session of the run's plan with its state, drawn into a heatmap;
/// `waiting_for` is the next session when it waits for another Job.
pub fn heatmap(
    spec: &BackfillSpec,
    run: &RunState,
    waiting_for: Option<i64>,
) -> Result<Heatmap, PlanError> {
    let zone = Zone::get(Some(&run.time_zone))?;
    let (from, to) = match (&run.from, &run.to) {
        (Some(from), Some(to)) => (seconds(from), seconds(to)),
        _ => (0, 0),
    };
    let mut map = Heatmap::new(
        zone.clone(),
        zone.local_seconds(from),
        zone.local_seconds((to - 1).max(from)),
    );
    let bits = |text: &str| Bitmap::decode(text);
    let (done, failed, killed, skipped) = (
        bits(&run.done)?,
        bits(&run.failed)?,
        bits(&run.killed)?,
        bits(&run.skipped)?,
    );
    let launched = run.launched.max(0) as u64;
    let plan = crate::core::backfill::frozen_plan(spec, run)?;
    for (i, session) in plan.iter().enumerate() {
        let i = i as u64;
        let state = if done.contains(i) {
            if failed.contains(i) {
                SessionState::Failed
            } else if killed.contains(i) {
                SessionState::Killed
            } else if skipped.contains(i) {
                SessionState::Skipped
            } else {
                SessionState::Succeeded
            }
        } else if i < launched {
            SessionState::Running
        } else if waiting_for == Some(session.at) {
            SessionState::Waiting
        } else {
            SessionState::Queued
        };
        map.put(session, state);
    }
    // The sessions `reprocess` left out at the start: those of the plan
    // without the selection that the selection does not hold.
    if !run.selected.is_empty() && from < to {
        let selected = bits(&run.selected)?;
        let clock = ZonedCron::new(&run.schedule, Some(&run.time_zone))?;
        let schedule = ScheduleSpec {
            schedule: run.schedule.clone(),
            time_zone: Some(run.time_zone.clone()),
            ..ScheduleSpec::default()
        };
        let original = Plan::for_backfill(&schedule, spec, None)?
            .with_order(Order::Ascending)
            .not_before(Some(from))
            .before(Some(to));
        let mut slots = clock.sessions_from(from).enumerate().peekable();
        for session in original.iter() {
            while slots.next_if(|(_, s)| s.at < session.at).is_some() {}
            if let Some((slot, _)) = slots.next_if(|(_, s)| s.at == session.at)
                && !selected.contains(slot as u64)
            {
                map.put(session, SessionState::Skipped);
            }
        }
    }
    map.failed.sort_unstable();
    map.failed.truncate(MAX_LISTED);
    Ok(map)
}

/// The failed sessions: time, Job, reason, exit code and logs command.
fn failures(name: &str, ns: &str, map: &Heatmap, jobs: &[Job], pods: &[Pod]) -> String {
    let mut out = String::new();
    if map.failed_total == 0 {
        return out;
    }
    let _ = writeln!(out, "Failed and killed sessions ({}):", map.failed_total);
    for (at, state) in &map.failed {
        let job = job_name(OwnerKind::Backfill, name, *at);
        let _ = writeln!(out, "  {}  {job}", map.zone.rfc3339(*at));
        match jobs.iter().find(|j| j.name_any() == job) {
            Some(j) => {
                out.push_str(&wrap(&job_reason(j, *state), "    ", "    "));
                let _ = writeln!(out, "    {}", exit_code(&job, pods));
                let _ = writeln!(out, "    kubectl logs job/{job} -n {ns}");
            }
            None => {
                let what = if *state == SessionState::Killed {
                    "killed: its Job was deleted before it finished"
                } else {
                    "failed: its Job is gone"
                };
                let text = format!("{what} (reason, exit code and logs unknown)");
                out.push_str(&wrap(&text, "    ", "    "));
            }
        }
    }
    let more = map.failed_total.saturating_sub(map.failed.len() as u64);
    if more > 0 {
        let _ = writeln!(
            out,
            "  ... and {more} more: kubectl get jobs -n {ns} -l {LABEL_BACKFILL}={name}"
        );
    }
    out
}

/// Why the Job failed, from its `Failed` condition.
fn job_reason(job: &Job, state: SessionState) -> String {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    match conditions
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")
    {
        Some(c) => {
            let reason = c.reason.as_deref().unwrap_or("Failed");
            match c.message.as_deref().filter(|m| !m.is_empty()) {
                Some(m) => format!("{reason}: {m}"),
                None => reason.to_string(),
            }
        }
        None if state == SessionState::Killed => "killed (its Job was deleted)".to_string(),
        None => "reason unknown".to_string(),
    }
}

/// The first non-zero exit code of a terminated container of the Job's
/// pods.
fn exit_code(job: &str, pods: &[Pod]) -> String {
    let code = pods
        .iter()
        .filter(|p| p.labels().get(LABEL_JOB_NAME).map(String::as_str) == Some(job))
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
        .find(|t| t.exit_code != 0);
    match code {
        Some(t) => match t.reason.as_deref() {
            Some(reason) => format!("exit code {} ({reason})", t.exit_code),
            None => format!("exit code {}", t.exit_code),
        },
        None => "exit code unknown".to_string(),
    }
}

/// `kubectl backfill status`.
pub fn run(global: &Global, args: &StatusArgs) -> Result<ExitCode, PluginError> {
    if args.watch && matches!(args.output, Output::Json | Output::Yaml) {
        return Err(PluginError::Usage(
            "--watch draws the status screen; it does not go with -o json or -o yaml".into(),
        ));
    }
    block_on(async {
        let (client, ns) = connect(global).await?;
        let api: Api<Backfill> = Api::namespaced(client.clone(), &ns);
        let backfill = get_backfill(&api, &args.name, &ns).await?;
        match args.output {
            Output::Json => {
                println!("{}", to_json(&backfill)?);
                return Ok(ExitCode::SUCCESS);
            }
            Output::Yaml => {
                print!("{}", to_yaml(&backfill)?);
                return Ok(ExitCode::SUCCESS);
            }
            Output::Text | Output::Wide => {}
        }
        let style = Style::detect();
        if !args.watch {
            let (jobs, pods) = observe(&client, &ns, &backfill).await?;
            print!("{}", render(&backfill, &jobs, &pods, now(), style));
            return Ok(ExitCode::SUCCESS);
        }
        watch(client, api, ns, &args.name, backfill, style).await
    })
}

/// `-o json`: pretty JSON, as kubectl prints it.
pub(super) fn to_json(value: &impl serde::Serialize) -> Result<String, PluginError> {
    serde_json::to_string_pretty(value).map_err(|e| PluginError::Other(e.to_string()))
}

/// `-o yaml`.
pub(super) fn to_yaml(value: &impl serde::Serialize) -> Result<String, PluginError> {
    serde_yaml::to_string(value).map_err(|e| PluginError::Other(e.to_string()))
}

pub(super) async fn get_backfill(
    api: &Api<Backfill>,
    name: &str,
    ns: &str,
) -> Result<Backfill, PluginError> {
    api.get(name).await.map_err(|e| match e {
        kube::Error::Api(s) if s.is_not_found() => {
            PluginError::Other(format!("backfill {name:?} not found in namespace {ns:?}"))
        }
        e => PluginError::Kube(e),
    })
}

/// The Jobs of the failed sessions the screen lists (at most
/// `MAX_LISTED`, read by name) and their pods: what the screen shows of
/// them, without listing every Job of a large Backfill.
async fn observe(
    client: &Client,
    ns: &str,
    backfill: &Backfill,
) -> Result<(Vec<Job>, Vec<Pod>), PluginError> {
    let names = listed_failures(backfill);
    if names.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let api = Api::<Job>::namespaced(client.clone(), ns);
    let mut jobs = Vec::new();
    for name in &names {
        if let Some(job) = api.get_opt(name).await? {
            jobs.push(job);
        }
    }
    let selector = format!("{LABEL_JOB_NAME} in ({})", names.join(","));
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await?;
    Ok((jobs, pods.items))
}

/// The Job names of the failed and killed sessions the screen lists.
pub fn listed_failures(backfill: &Backfill) -> Vec<String> {
    let Some(run) = backfill.status.as_ref().and_then(|s| s.run.as_ref()) else {
        return Vec::new();
    };
    if run.failed.is_empty() && run.killed.is_empty() {
        return Vec::new();
    }
    let name = backfill.name_any();
    heatmap(&backfill.spec, run, None).map_or_else(
        |_| Vec::new(),
        |map| {
            map.failed
                .iter()
                .map(|(at, _)| job_name(OwnerKind::Backfill, &name, *at))
                .collect()
        },
    )
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

enum Change {
    Backfill(Box<Result<watcher::Event<Backfill>, watcher::Error>>),
    Jobs,
}

/// Draws a frame whenever the Backfill or one of its Jobs changes (a
/// burst of changes makes one frame), until the Backfill finishes.
async fn watch(
    client: Client,
    api: Api<Backfill>,
    ns: String,
    name: &str,
    mut backfill: Backfill,
    style: Style,
) -> Result<ExitCode, PluginError> {
    let clear = std::io::stdout().is_terminal();
    let backfills = watcher(
        api,
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .default_backoff()
    .map(|e| Change::Backfill(Box::new(e)));
    // Metadata only: a change is all a frame needs to know of.
    let jobs = watcher(
        Api::<PartialObjectMeta<Job>>::namespaced(client.clone(), &ns),
        watcher::Config::default().labels(&format!("{LABEL_BACKFILL}={name}")),
    )
    .default_backoff()
    .map(|_| Change::Jobs);
    let mut changes = futures::stream::select(backfills.boxed(), jobs.boxed());
    loop {
        let (jobs, pods) = observe(&client, &ns, &backfill).await?;
        let frame = render(&backfill, &jobs, &pods, now(), style);
        if clear {
            print!("\x1b[H\x1b[2J");
        }
        print!("{frame}");
        if is_finished(&backfill) {
            return Ok(ExitCode::SUCCESS);
        }
        if !clear {
            println!("---");
        }
        // Wait for a change, then let a burst settle.
        let mut first = true;
        loop {
            let next = if first {
                changes.next().await
            } else {
                match tokio::time::timeout(Duration::from_millis(300), changes.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                }
            };
            match next {
                None => {
                    return Err(PluginError::Other(
                        "the watch of the Backfill ended".to_string(),
                    ));
                }
                Some(Change::Backfill(event)) => match *event {
                    Ok(watcher::Event::Apply(b) | watcher::Event::InitApply(b)) => {
                        backfill = b;
                        first = false;
                    }
                    Ok(watcher::Event::Delete(_)) => {
                        return Err(PluginError::Other(format!(
                            "backfill {name:?} was deleted from namespace {ns:?}"
                        )));
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("warning: watching backfill {name:?}: {e}"),
                },
                Some(Change::Jobs) => first = false,
            }
        }
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
