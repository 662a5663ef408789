//! Live runs first: a Schedule's `maxActiveJobs` is one budget of active
//! Jobs shared by its scheduled runs and all its Backfills.
//!
//! Scheduled sessions always start on time, so the budget binds the
//! Backfills only: they start Jobs in the slots the live schedule is not
//! expected to need ([`live_slots`]), shared max-min fairly between the
//! Backfills that want them ([`may_start`]). Nothing is preempted: a
//! Backfill above its share starts nothing until it is back under it,
//! and the slots it frees go to the others.

use crate::api::{BackfillPhase, BackfillSpec, BackfillStatus, ConcurrencyPolicy, ScheduleSpec};
use crate::core::zoned_cron::{ZonedCron, seconds};

/// At most this many scheduled sessions are looked at to estimate the
/// live schedule's slots: far more than any budget.
const LOOK_LIMIT: usize = 10_000;

/// A Backfill's claim on the budget.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claimant {
    /// Its UID, the last tie-breaker.
    pub uid: String,
    /// Its Jobs active now.
    pub running: u64,
    /// How many Jobs it would have active now: at most `maxInFlight`,
    /// and no more than it has running plus left to launch. Zero when it
    /// launches nothing (finished, paused, cancelled, a dry run, outside
    /// its windows, waiting for another Job of a session).
    pub wants: u64,
    /// Sessions it processed: between equals, the one that did less goes
    /// first, so two Backfills sharing one slot take turns.
    pub processed: u64,
}

impl Claimant {
    /// The claim of another Backfill, from what its status last said and
    /// the Jobs of it that run now.
    pub fn of(uid: &str, spec: &BackfillSpec, status: &BackfillStatus, running: u64) -> Self {
        let launching = matches!(
            status.phase,
            Some(BackfillPhase::Running | BackfillPhase::Pending) | None
        ) || waits_for_capacity(status);
        let active = launching
            && spec.suspend != Some(true)
            && spec.cancel != Some(true)
            && spec.dry_run != Some(true);
        let left = (status.total_estimated.max(0) as u64)
            .saturating_sub(status.processed_count.max(0) as u64)
            .saturating_sub(running);
        let wants = if active {
            max_in_flight(spec).min(running + left)
        } else {
            0
        };
        Claimant {
            uid: uid.to_string(),
            running,
            wants,
            processed: status.processed_count.max(0) as u64,
        }
    }
}

/// Whether a Backfill's last status says the budget holds it back.
pub fn waits_for_capacity(status: &BackfillStatus) -> bool {
    status.waiting_for_capacity > 0
}

/// A Backfill's `maxInFlight`, at least 1.
pub fn max_in_flight(spec: &BackfillSpec) -> u64 {
    spec.max_in_flight.unwrap_or(1).max(1) as u64
}

/// What the decide step knows of the Schedule's budget.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Budget {
    /// The Schedule's `maxActiveJobs`.
    pub max_active: u64,
    /// The Schedule's own Jobs active now.
    pub live_running: u64,
    /// The other Backfills of the Schedule (rerun children too).
    pub others: Vec<Claimant>,
    /// The longest a run may last (the Job template's
    /// `activeDeadlineSeconds`), on the operator's clock: how long live
    /// runs are taken to last until one has finished.
    pub run_bound: Option<i64>,
}

/// How many slots of the budget the live schedule takes, or is expected
/// to take, between `now` and `now + horizon`: the most of its runs
/// active at once if each lasts as long as the longest of `durations`
/// (its recent runs, or else the bound on a run), with a tenth more for
/// the Jobs' own start and end, and never fewer than run now.
///
/// Without a known duration each run is taken to last until the next
/// session: one slot while a session is still to come. `Forbid` and
/// `Replace` never run two at once; a suspended Schedule starts nothing.
pub fn live_slots(
    schedule: &ScheduleSpec,
    clock: &ZonedCron,
    running: u64,
    durations: &[i64],
    now: i64,
    horizon: i64,
) -> u64 {
    if schedule.suspend == Some(true) {
        return running;
    }
    let start = schedule.start_time.as_ref().map_or(i64::MIN, seconds);
    let end = schedule.end_time.as_ref().map_or(i64::MAX, seconds);
    let scheduled = |at: i64| at >= start && at < end;
    let longest = durations
        .iter()
        .copied()
        .filter(|d| *d > 0)
        .max()
        .map(|d| d.saturating_add(d / 10 + 1));
    let peak = match longest {
        None => {
            let next = clock.next_after(now.saturating_sub(1));
            u64::from(next.is_some_and(|s| scheduled(s.at)))
        }
        Some(d) => {
            let until = now.saturating_add(horizon.max(0));
            let sessions: Vec<i64> = clock
                .sessions_from(now.saturating_sub(d).saturating_add(1))
                .map(|s| s.at)
                .take_while(|&at| at <= until)
                .filter(|&at| scheduled(at))
                .take(LOOK_LIMIT)
                .collect();
            peak_overlap(&sessions, d, now)
        }
    };
    let peak = match schedule.concurrency_policy.unwrap_or_default() {
        ConcurrencyPolicy::Allow => peak,
        ConcurrencyPolicy::Forbid | ConcurrencyPolicy::Replace => peak.min(1),
    };
    peak.max(running)
}

/// How many Jobs the Backfill `me` may start now, and the slots the live
/// schedule takes: runs of its Jobs are taken to last as long as the
/// longest recent one, so the live schedule's slots are counted over that
/// long.
pub fn allowance(
    budget: &Budget,
    schedule: &ScheduleSpec,
    durations: &[i64],
    me: &Claimant,
    now: i64,
) -> (u64, u64) {
    let durations = run_lengths(durations, budget.run_bound);
    let horizon = durations.iter().copied().max().unwrap_or(0);
    let live = forecast(schedule, budget.live_running, &durations, now, horizon);
    (may_start(budget.max_active, live, me, &budget.others), live)
}

/// How long runs take: the recent `durations`, or else the `bound` on a
/// run.
pub fn run_lengths(durations: &[i64], bound: Option<i64>) -> Vec<i64> {
    if durations.is_empty() {
        bound.into_iter().collect()
    } else {
        durations.to_vec()
    }
}

/// [`live_slots`] of the Schedule as it is now; a cron that no longer
/// parses forecasts nothing, and only the live runs active now count.
pub fn forecast(
    schedule: &ScheduleSpec,
    running: u64,
    durations: &[i64],
    now: i64,
    horizon: i64,
) -> u64 {
    match ZonedCron::new(&schedule.schedule, schedule.time_zone.as_deref()) {
        Ok(clock) => live_slots(schedule, &clock, running, durations, now, horizon),
        Err(_) => running,
    }
}

/// The most runs active at any instant from `now` on, when runs start
/// at `sessions` (ascending) and each lasts `duration`: the most
/// sessions in any `(u - duration, u]` with `u >= now`.
fn peak_overlap(sessions: &[i64], duration: i64, now: i64) -> u64 {
    let mut best = 0;
    let mut first = 0;
    // The count can only grow at a session's start, or at `now`.
    let ends = std::iter::once(now).chain(sessions.iter().copied().filter(|&s| s > now));
    for u in ends {
        while first < sessions.len() && sessions[first] <= u - duration {
            first += 1;
        }
        let upto = sessions.partition_point(|&s| s <= u);
        best = best.max(upto.saturating_sub(first) as u64);
    }
    best
}

/// How many Jobs `me` may start now: its max-min fair share of the slots
/// the live schedule leaves (`max_active - live`), less what it runs,
/// and no more than is free now.
///
/// The shares fill the smallest claims first; slots left over after an
/// even split go one each to the Backfills that processed fewer sessions
/// (then by UID), so Backfills sharing fewer slots than they are take
/// turns, and none starves.
pub fn may_start(max_active: u64, live: u64, me: &Claimant, others: &[Claimant]) -> u64 {
    let room = max_active.saturating_sub(live);
    let all: Vec<&Claimant> = std::iter::once(me).chain(others).collect();
    let shares = fair_shares(room, &all);
    let used: u64 = all.iter().map(|c| c.running).sum();
    let free = room.saturating_sub(used);
    shares[0].saturating_sub(me.running).min(free)
}

/// Max-min fair shares of `room` between `claimants` (in their order).
fn fair_shares(room: u64, claimants: &[&Claimant]) -> Vec<u64> {
    let mut shares = vec![0; claimants.len()];
    let mut by_want: Vec<usize> = (0..claimants.len()).collect();
    by_want.sort_by_key(|&i| claimants[i].wants);
    let mut left = room;
    // The claims below an even split of what is left are met in full.
    let mut met = 0;
    for &i in &by_want {
        let even = left / (by_want.len() - met) as u64;
        if claimants[i].wants > even {
            break;
        }
        shares[i] = claimants[i].wants;
        left -= shares[i];
        met += 1;
    }
    // The rest split what is left evenly.
    if met < by_want.len() {
        let even = left / (by_want.len() - met) as u64;
        for &i in &by_want[met..] {
            shares[i] = even;
            left -= even;
        }
    }
    // What an even split left over: one each, fewest processed first.
    let mut wanting: Vec<usize> = (0..claimants.len())
        .filter(|&i| shares[i] < claimants[i].wants)
        .collect();
    wanting.sort_by(|&a, &b| {
        let (a, b) = (claimants[a], claimants[b]);
        (a.processed, &a.uid).cmp(&(b.processed, &b.uid))
    });
    for i in wanting {
        if left == 0 {
            break;
        }
        shares[i] += 1;
        left -= 1;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::zoned_cron::{at, time};

    fn claimant(uid: &str, running: u64, wants: u64, processed: u64) -> Claimant {
        Claimant {
            uid: uid.into(),
            running,
            wants,
            processed,
        }
    }

    fn minutely() -> (ScheduleSpec, ZonedCron) {
        let spec = ScheduleSpec {
            schedule: "* * * * *".into(),
            ..ScheduleSpec::default()
        };
        (spec, ZonedCron::new("* * * * *", None).unwrap())
    }

    #[test]
    fn the_live_schedule_takes_the_runs_it_would_have_at_once() {
        let (spec, clock) = minutely();
        let now = at("2026-03-01T10:00:30Z");
        // 45 s runs every minute: one at a time.
        assert_eq!(live_slots(&spec, &clock, 0, &[45, 30], now, 45), 1);
        // 150 s runs every minute: three at once.
        assert_eq!(live_slots(&spec, &clock, 0, &[150], now, 150), 3);
        // More run now than the estimate says: what runs counts.
        assert_eq!(live_slots(&spec, &clock, 4, &[45], now, 45), 4);
        // No duration known yet: one slot for the next session.
        assert_eq!(live_slots(&spec, &clock, 0, &[], now, 0), 1);
        // Forbid and Replace never run two at once.
        let forbid = ScheduleSpec {
            concurrency_policy: Some(ConcurrencyPolicy::Forbid),
            ..spec.clone()
        };
        assert_eq!(live_slots(&forbid, &clock, 0, &[150], now, 150), 1);
        // Suspended: only what still runs.
        let suspended = ScheduleSpec {
            suspend: Some(true),
            ..spec.clone()
        };
        assert_eq!(live_slots(&suspended, &clock, 2, &[150], now, 150), 2);
        assert_eq!(live_slots(&suspended, &clock, 0, &[], now, 0), 0);
    }

    #[test]
    fn sessions_outside_start_and_end_take_no_slot() {
        let (spec, clock) = minutely();
        let now = at("2026-03-01T10:00:30Z");
        let ended = ScheduleSpec {
            end_time: Some(time(at("2026-03-01T10:00:00Z"))),
            ..spec.clone()
        };
        assert_eq!(live_slots(&ended, &clock, 0, &[], now, 0), 0);
        // Ended at 10:00, with 170 s runs: those of 09:58 and 09:59 may
        // still be active.
        assert_eq!(live_slots(&ended, &clock, 0, &[170], now, 170), 2);
        let later = ScheduleSpec {
            start_time: Some(time(at("2026-03-02T00:00:00Z"))),
            ..spec
        };
        assert_eq!(live_slots(&later, &clock, 0, &[150], now, 150), 0);
    }

    #[test]
    fn a_long_horizon_finds_the_busiest_hour() {
        // Runs at 10:00 and 10:05 only, 10 minutes each: two at once
        // from 10:05, seen from 09:00 with a two-hour horizon.
        let spec = ScheduleSpec {
            schedule: "0,5 10 * * *".into(),
            ..ScheduleSpec::default()
        };
        let clock = ZonedCron::new("0,5 10 * * *", None).unwrap();
        let now = at("2026-03-01T09:00:00Z");
        assert_eq!(live_slots(&spec, &clock, 0, &[600], now, 7200), 2);
        assert_eq!(live_slots(&spec, &clock, 0, &[600], now, 600), 0);
    }

    #[test]
    fn without_a_finished_run_the_bound_on_a_run_counts() {
        let (spec, _) = minutely();
        let now = at("2026-03-01T10:00:30Z");
        let me = claimant("me", 0, 5, 0);
        let mut budget = Budget {
            max_active: 4,
            ..Budget::default()
        };
        // Nothing known: one slot for the next session.
        assert_eq!(allowance(&budget, &spec, &[], &me, now), (3, 1));
        // Runs may last 150 s: three at once.
        budget.run_bound = Some(150);
        assert_eq!(allowance(&budget, &spec, &[], &me, now), (1, 3));
        // Once runs finished, what they took counts.
        assert_eq!(allowance(&budget, &spec, &[5], &me, now), (4, 0));
        // 55 s (61 with the margin): the run of 10:00 meets that of 10:01.
        assert_eq!(allowance(&budget, &spec, &[55], &me, now), (2, 2));
    }

    #[test]
    fn backfills_share_what_the_live_schedule_leaves() {
        // Budget 3, live 1: two Backfills of maxInFlight 3 get 1 each,
        // and the slot left over goes to the one that did less.
        let a = claimant("a", 0, 3, 10);
        let b = claimant("b", 0, 3, 4);
        assert_eq!(may_start(3, 1, &a, std::slice::from_ref(&b)), 1);
        assert_eq!(may_start(3, 1, &b, std::slice::from_ref(&a)), 1);
        // Budget 4, live 1: 3 slots; b did less, so it gets two.
        assert_eq!(may_start(4, 1, &b, std::slice::from_ref(&a)), 2);
        assert_eq!(may_start(4, 1, &a, std::slice::from_ref(&b)), 1);
    }

    #[test]
    fn a_backfill_alone_takes_everything_the_live_schedule_leaves() {
        let me = claimant("me", 0, 5, 0);
        assert_eq!(may_start(3, 1, &me, &[]), 2);
        assert_eq!(may_start(10, 1, &me, &[]), 5);
        // The live schedule takes it all: nothing.
        assert_eq!(may_start(3, 3, &me, &[]), 0);
        assert_eq!(may_start(3, 5, &me, &[]), 0);
        // Already at its share: nothing more.
        let running = claimant("me", 2, 5, 0);
        assert_eq!(may_start(3, 1, &running, &[]), 0);
    }

    #[test]
    fn a_backfill_over_its_share_frees_slots_for_the_others_as_its_jobs_end() {
        // a took all 3 slots before b came; b's share is 1 (its turn, it
        // did less) but nothing is free until one of a's Jobs ends.
        let a = claimant("a", 3, 3, 5);
        let b = claimant("b", 0, 3, 0);
        assert_eq!(may_start(3, 0, &b, std::slice::from_ref(&a)), 0);
        // One of a's Jobs ended: b takes the slot, a does not.
        let a = claimant("a", 2, 3, 6);
        assert_eq!(may_start(3, 0, &b, std::slice::from_ref(&a)), 1);
        assert_eq!(may_start(3, 0, &a, std::slice::from_ref(&b)), 0);
    }

    #[test]
    fn slots_a_small_claim_does_not_need_go_to_the_others() {
        // c wants 1; the other two split the rest.
        let a = claimant("a", 0, 5, 0);
        let b = claimant("b", 0, 5, 0);
        let c = claimant("c", 0, 1, 0);
        let others = [b.clone(), c.clone()];
        assert_eq!(may_start(8, 1, &a, &others), 3);
        assert_eq!(may_start(8, 1, &c, &[a.clone(), b.clone()]), 1);
        // Finished, paused or waiting Backfills want nothing, but their
        // running Jobs still take slots.
        let done = claimant("d", 2, 0, 9);
        assert_eq!(may_start(4, 1, &a, std::slice::from_ref(&done)), 1);
    }

    #[test]
    fn sharing_one_slot_the_backfills_take_turns() {
        // Budget 2, live 1: one slot, two Backfills. Whoever processed
        // fewer goes next, so over many turns both progress.
        let mut done = [0u64, 0u64];
        for _ in 0..10 {
            let a = claimant("a", 0, 3, done[0]);
            let b = claimant("b", 0, 3, done[1]);
            let (ga, gb) = (
                may_start(2, 1, &a, std::slice::from_ref(&b)),
                may_start(2, 1, &b, std::slice::from_ref(&a)),
            );
            assert_eq!(ga + gb, 1);
            done[0] += ga;
            done[1] += gb;
        }
        assert_eq!(done, [5, 5]);
    }

    #[test]
    fn another_backfill_claims_what_its_status_and_jobs_say() {
        let spec: BackfillSpec = serde_json::from_value(serde_json::json!({
            "scheduleRef": {"name": "minutely"},
            "maxInFlight": 3,
        }))
        .unwrap();
        let status = BackfillStatus {
            phase: Some(BackfillPhase::Running),
            total_estimated: 10,
            processed_count: 8,
            ..BackfillStatus::default()
        };
        // 2 left, 1 of them running: it wants 2 at most.
        assert_eq!(Claimant::of("x", &spec, &status, 1).wants, 2);
        let many = BackfillStatus {
            total_estimated: 100,
            ..status.clone()
        };
        assert_eq!(Claimant::of("x", &spec, &many, 1).wants, 3);
        for phase in [
            BackfillPhase::Paused,
            BackfillPhase::Succeeded,
            BackfillPhase::Planned,
            BackfillPhase::Waiting,
        ] {
            let s = BackfillStatus {
                phase: Some(phase),
                ..many.clone()
            };
            let c = Claimant::of("x", &spec, &s, 1);
            assert_eq!((c.wants, c.running), (0, 1), "{phase:?}");
        }
        // Waiting for capacity still claims its share.
        let waiting = BackfillStatus {
            phase: Some(BackfillPhase::Waiting),
            waiting_for_capacity: 3,
            ..many.clone()
        };
        assert_eq!(Claimant::of("x", &spec, &waiting, 0).wants, 3);
        let paused = BackfillSpec {
            suspend: Some(true),
            ..spec
        };
        assert_eq!(Claimant::of("x", &paused, &many, 0).wants, 0);
    }
}
