//! Planner throughput against the bare cron engines, side by side in one
//! run: 1,000,000 sessions of `* * * * *` in America/New_York.
//!
//! - `planner`: `Plan` with a filter (every weekday but Sunday, and an
//!   excluded range), through the zone's daylight-saving transitions.
//! - `bare engine`: our cron engine alone, walking local wall-clock minutes
//!   with no zone, no plan and no filter: the floor the planner is built on.
//! - `croner`: the croner crate iterating the same schedule in the same
//!   zone, for an outside reference.
//!
//! Prints sessions per second, the ratios, and the bytes the planner
//! allocates for plans of 10,000 and 1,000,000 sessions (flat: the plan is
//! an iterator). Then the largest Backfill allowed (`MAX_SESSIONS`
//! minutely sessions) through `decide`: a dry run and a real start, their
//! time beside the bare engine's walk of as many sessions, and the peak
//! heap each needs. Criterion then measures each again on its own.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backfill_operator::core::calendar::Civil;
use backfill_operator::core::cron::Cron;
use backfill_operator::core::plan::{Filter, Selection};
use backfill_operator::core::{Plan, ZonedCron};
use criterion::Criterion;

struct Counting;
static ALLOCATED: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated and not yet freed, and the most of them since reset.
static LIVE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        let live = LIVE.fetch_add(layout.size() as u64, Ordering::Relaxed) + layout.size() as u64;
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f`; returns its result, how long it took and the most heap it
/// held at once beyond what was live before.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, Duration, u64) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    (out, took, PEAK.load(Ordering::Relaxed) - base)
}

/// The largest Backfill allowed, minutely, through `decide`: as a dry
/// run, then started. Prints time and peak heap beside the bare engine.
fn largest_backfill() {
    use backfill_operator::api::{BackfillSpec, BackfillStatus, ScheduleSpec};
    use backfill_operator::core::backfill::{BackfillView, decide};
    use backfill_operator::core::ledger::LedgerIndex;
    use backfill_operator::core::plan::MAX_SESSIONS;
    use backfill_operator::core::zoned_cron::time;

    let n = if std::env::args().any(|a| a == "--bench") {
        MAX_SESSIONS
    } else {
        10_000
    };
    let schedule = ScheduleSpec {
        schedule: "* * * * *".into(),
        ..ScheduleSpec::default()
    };
    let spec = |dry_run| BackfillSpec {
        from: Some(time(FROM)),
        to: Some(time(FROM + n as i64 * 60)),
        dry_run: Some(dry_run),
        max_in_flight: Some(100),
        ..BackfillSpec::of("minutely")
    };
    // Leaked: the views below borrow them for the whole bench.
    let schedule: &'static ScheduleSpec = Box::leak(Box::new(schedule));
    let ledger: &'static LedgerIndex = Box::leak(Box::default());
    let elsewhere: &'static std::collections::BTreeMap<i64, String> = Box::leak(Box::default());
    let status: &'static BackfillStatus = Box::leak(Box::default());
    let now = FROM + n as i64 * 60 + 3_600;
    let view = |spec: &'static BackfillSpec, status: &'static BackfillStatus| BackfillView {
        name: "largest",
        namespace: Some("bench"),
        uid: "6f1c3d5e-2a4b-4c8d-9e0f-1a2b3c4d5e6f",
        schedule_uid: "0f1c3d5e-2a4b-4c8d-9e0f-1a2b3c4d5e6f",
        generation: Some(1),
        spec,
        status,
        created_by: None,
        schedule: Some(schedule),
        jobs: &[],
        recent_durations: &[60],
        rerun_request: None,
        resume_request: None,
        approved_by: None,
        rerun_requested_by: None,
        ledger,
        run_elsewhere: elsewhere,
        budget: None,
        created: None,
        now,
    };
    let run = |spec: &'static BackfillSpec| decide(&view(spec, status));
    let (dry, dry_spec): (&'static BackfillSpec, &'static BackfillSpec) = (
        Box::leak(Box::new(spec(true))),
        Box::leak(Box::new(spec(false))),
    );
    let (planned, t_dry, heap_dry) = peak_of(|| run(dry));
    let (started, t_start, heap_start) = peak_of(|| run(dry_spec));
    assert_eq!(planned.status.total_estimated, n as i64);
    assert_eq!(started.create.len(), 100);
    // Late in a run of a set plan (`reprocess` left the first session
    // out): one launch pass resuming where the last stopped, against the
    // same pass walking the set from its start (no `nextSlot`: before
    // the walk resumed, every pass did).
    let mut outcome_known = LedgerIndex::default();
    outcome_known.add_unrecorded(FROM, backfill_operator::core::observed::Outcome::Succeeded);
    let set_start = decide(&BackfillView {
        ledger: &outcome_known,
        ..view(dry_spec, status)
    });
    let late = |resume: bool| -> &'static BackfillStatus {
        let mut status = set_start.status.clone();
        let run = status.run.as_mut().expect("started");
        assert!(!run.selected.is_empty(), "a set plan");
        let launched = n as u64 - 200;
        run.launched = launched as i64;
        run.done = (0..launched)
            .collect::<backfill_operator::core::bitmap::Bitmap>()
            .encode();
        run.next_session = Some(time(FROM + (launched as i64 + 1) * 60));
        run.next_slot = resume.then_some(launched as i64 + 1);
        Box::leak(Box::new(status))
    };
    let (resuming, walking) = (late(true), late(false));
    let (resumed, t_resumed, _) = peak_of(|| decide(&view(dry_spec, resuming)));
    let (walked, t_walked, _) = peak_of(|| decide(&view(dry_spec, walking)));
    assert_eq!(resumed.create, walked.create);
    assert_eq!(resumed.create.len(), 100);
    let walk = ZonedCron::new("* * * * *", None).unwrap();
    let (_, t_walk, _) = peak_of(|| black_box(walk.sessions_from(FROM).take(n as usize).count()));
    println!("the largest Backfill allowed, {n} minutely sessions, through decide:");
    println!(
        "  dry run: {t_dry:?}, peak heap {} KiB; start (plan frozen, first 100 Jobs built): {t_start:?}, peak heap {} KiB",
        heap_dry / 1024,
        heap_start / 1024
    );
    println!(
        "  bare engine walking as many sessions: {t_walk:?}; ratio dry run / walk: {:.1}, start / walk: {:.1}",
        t_dry.as_secs_f64() / t_walk.as_secs_f64(),
        t_start.as_secs_f64() / t_walk.as_secs_f64()
    );
    println!(
        "  a launch pass 200 sessions before the end of a set plan: {t_resumed:?} resuming its walk, {t_walked:?} walking the set from its start; ratio {:.4}",
        t_resumed.as_secs_f64() / t_walked.as_secs_f64()
    );
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
/// file too, and then a short run checks that it works.
fn sessions() -> u64 {
    if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        10_000
    }
}
const FROM: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

fn plan(count: u64) -> Plan {
    let clock = ZonedCron::new("* * * * *", Some("America/New_York")).unwrap();
    Plan::new(clock, Selection::Count { from: FROM, count }).with_filter(Filter {
        days_of_week: 0b0111_1110,
        hours: 0,
        exclude: vec![(FROM + 86_400 * 30, FROM + 86_400 * 31)],
    })
}

fn run_planner() -> u64 {
    plan(sessions())
        .iter()
        .map(|s| black_box(s.at))
        .fold(0, |n, _| n + 1)
}

fn run_bare_engine() -> u64 {
    let cron = Cron::parse("* * * * *").unwrap();
    let mut c = Civil::new(2026, 1, 1, 0, 0);
    for _ in 0..sessions() {
        let n = cron.next_at_or_after(c).unwrap();
        black_box(n);
        c = n.succ();
    }
    sessions()
}

fn run_croner() -> u64 {
    let cron: croner::Cron = "* * * * *".parse().unwrap();
    let start: jiff::Zoned = "2025-12-31T23:59:00-05:00[America/New_York]"
        .parse()
        .unwrap();
    cron.iter_after(start)
        .take(sessions() as usize)
        .map(|z| black_box(z.timestamp()))
        .fold(0, |n, _| n + 1)
}

fn best_of(runs: usize, f: fn() -> u64) -> (u64, Duration) {
    let mut best = Duration::MAX;
    let mut n = 0;
    for _ in 0..runs {
        let start = Instant::now();
        n = f();
        best = best.min(start.elapsed());
    }
    (n, best)
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn allocated_by(count: u64) -> u64 {
    let p = plan(count);
    let before = ALLOCATED.load(Ordering::Relaxed);
    let n = p.iter().count();
    black_box(n);
    ALLOCATED.load(Ordering::Relaxed) - before
}

fn side_by_side() {
    let (np, tp) = best_of(5, run_planner);
    let (nb, tb) = best_of(5, run_bare_engine);
    let (nc, tc) = best_of(3, run_croner);
    let (rp, rb, rc) = (rate(np, tp), rate(nb, tb), rate(nc, tc));
    println!(
        "side by side, best of several runs, {} sessions of \"* * * * *\" in America/New_York:",
        sessions()
    );
    println!(
        "  planner (zone, DST, filter): {:>12.0} sessions/s ({:?})",
        rp, tp
    );
    println!(
        "  bare engine (wall clock):    {:>12.0} sessions/s ({:?})",
        rb, tb
    );
    println!(
        "  croner (zone):               {:>12.0} sessions/s ({:?})",
        rc, tc
    );
    println!(
        "  ratio planner / bare engine: {:.2} (target >= 0.70)",
        rp / rb
    );
    println!("  ratio planner / croner:      {:.2}", rp / rc);
    let (small, large) = (allocated_by(10_000), allocated_by(1_000_000));
    println!("  bytes allocated iterating a plan of 10,000: {small}; of 1,000,000: {large}");
    assert_eq!(
        small, large,
        "the plan's memory must not grow with its length"
    );
}

fn main() {
    side_by_side();
    largest_backfill();
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let mut g = c.benchmark_group("1M minutely sessions");
    g.bench_function("planner", |b| b.iter(run_planner));
    g.bench_function("bare engine", |b| b.iter(run_bare_engine));
    g.bench_function("croner", |b| b.iter(run_croner));
    g.finish();
    c.final_summary();
}
