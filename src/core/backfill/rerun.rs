//! Rerun failed: a new value of `backfill.dev/rerun-failed` on a finished
//! Backfill becomes exactly one child Backfill of its failed (and killed)
//! sessions. Everything about the child is derived from the parent and
//! the request value, so a create retried after a crash makes the same
//! object under the same name, and finds it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::run::failed_sessions;
use super::view::{BackfillView, Pass};
use crate::core::job::{controller_reference, fit_name, short_hash};
use crate::core::zoned_cron::{ZonedCron, time};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::run::run_id;
use crate::api::{
    ANNOTATION_CREATED_BY, Backfill, BackfillPhase, BackfillSpec, BackfillStatus, LABEL_PARENT,
    Reprocess, RerunRecord,
};
use crate::core::observed::{Kstatus, Note, find_condition};
use crate::core::plan::session_set;
use crate::core::reason::Reason;

/// A condition: a rerun request waits, was refused, or was carried out.
pub use crate::api::condition::RERUN_REQUESTED;
/// A child lists its sessions one by one up to this many; beyond, it
/// carries them as a compact session set.
pub const LISTED_SESSIONS: usize = 100;
/// Names (and attempt names, which become label values) fit in this.
const MAX_NAME: usize = crate::api::LABEL_VALUE_MAX;

/// The child to create for a request, before it exists, and what the
/// parent records once it does.
#[derive(Clone, Debug, PartialEq)]
pub struct RerunChild {
    pub request: String,
    pub child: Backfill,
    /// How many sessions it reruns.
    pub sessions: i64,
    /// The parent's record of it, less the child's run id (from its UID).
    pub record: RerunRecord,
    /// The parent's `RerunRequested` condition once it exists.
    pub condition: Condition,
    /// The Event that says it was created.
    pub note: Note,
}

impl RerunChild {
    /// Records the child, created (or found) with `child_uid`, in the
    /// parent's status: only a child that exists is ever recorded.
    pub fn record_in(&self, status: &mut BackfillStatus, child_uid: &str) {
        status.reruns.push(RerunRecord {
            run_id: Some(run_id(child_uid)),
            ..self.record.clone()
        });
        Kstatus::put(&mut status.conditions, self.condition.clone());
    }
}

/// The request a Backfill carries that it has not carried out yet.
pub fn pending_request<'a>(annotation: Option<&'a str>, reruns: &[RerunRecord]) -> Option<&'a str> {
    let request = annotation.map(str::trim).filter(|r| !r.is_empty())?;
    (!reruns.iter().any(|r| r.request == request)).then_some(request)
}

/// The part of a request value that may appear in a name, or a hash of it.
fn request_token(request: &str) -> String {
    let readable = request.len() <= 20
        && request
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !request.starts_with('-')
        && !request.ends_with('-');
    if readable {
        request.to_string()
    } else {
        short_hash(request)
    }
}

/// The child's name: `<parent>-rerun-<request>` (a hash stands for a
/// request value that cannot be part of a name).
pub fn child_name(parent: &str, request: &str) -> String {
    fit_name(
        parent,
        &format!("-rerun-{}", request_token(request)),
        MAX_NAME,
    )
}

/// The child's attempt name, marking it as a retry of the parent's (the
/// workflow API's `retryAttemptName`).
pub fn retry_attempt_name(parent_attempt: &str, request: &str) -> String {
    fit_name(
        parent_attempt,
        &format!("-retry-{}", request_token(request)),
        MAX_NAME,
    )
}

/// Checks the request against the parent's state and, once it has
/// finished, plans the child (or records that there is nothing to rerun).
pub(super) fn step(view: &BackfillView<'_>, d: &mut Pass, ks: &Kstatus<'_>) {
    let Some(request) = pending_request(view.rerun_request, &d.status.reruns) else {
        if let Some(c) = find_condition(&view.status.conditions, RERUN_REQUESTED)
            && c.status == "True"
        {
            // The request was withdrawn or carried out.
            ks.set(
                &mut d.status.conditions,
                RERUN_REQUESTED,
                false,
                Reason::Done,
                "",
            );
        }
        return;
    };
    if let Some((reason, message)) = refusal(request, &d.status) {
        let same = find_condition(&view.status.conditions, RERUN_REQUESTED)
            .is_some_and(|c| c.status == "True" && c.reason == reason.as_str());
        if !same {
            d.notes.push(Note {
                warning: reason == Reason::Cancelled,
                reason: Reason::RerunWaiting,
                message: message.clone(),
            });
        }
        ks.set(
            &mut d.status.conditions,
            RERUN_REQUESTED,
            true,
            reason,
            &message,
        );
        return;
    }
    plan_child(view, d, ks, request);
}

/// Why a request cannot be carried out now, if it cannot: the parent is
/// a dry run, was cancelled, or has not finished. (The public API asks
/// this before it annotates a parent.)
pub fn refusal(request: &str, status: &BackfillStatus) -> Option<(Reason, String)> {
    let phase = status.phase.unwrap_or_default();
    let finished = matches!(phase, BackfillPhase::Succeeded | BackfillPhase::Failed)
        && status.completed_at.is_some();
    match phase {
        BackfillPhase::Planned => Some((
            Reason::DryRun,
            format!(
                "rerun request {request:?} waits: this is a dry run, which runs nothing; it is carried out if dryRun is turned off and the backfill finishes with failures"
            ),
        )),
        BackfillPhase::Cancelled => Some((
            Reason::Cancelled,
            format!(
                "rerun request {request:?} is not carried out: the backfill was cancelled, so sessions it never launched were not tried; create a new Backfill over them"
            ),
        )),
        _ if !finished => Some((
            Reason::Waiting,
            format!(
                "rerun request {request:?} waits until the backfill finishes ({} of {} sessions processed)",
                status.processed_count, status.total_estimated
            ),
        )),
        _ => None,
    }
}

/// Plans the child of a finished parent's failures (or records that
/// there is nothing to rerun).
fn plan_child(view: &BackfillView<'_>, d: &mut Pass, ks: &Kstatus<'_>, request: &str) {
    let (Some(run), Some(run_id)) = (&d.status.run, &d.status.run_id) else {
        return;
    };
    let sessions = match failed_sessions(view.spec, run) {
        Ok(s) => s,
        Err(e) => {
            let message = format!("rerun request {request:?} cannot be carried out: {e}");
            ks.set(
                &mut d.status.conditions,
                RERUN_REQUESTED,
                true,
                Reason::InvalidPlan,
                &message,
            );
            return;
        }
    };
    if sessions.is_empty() {
        let message = "no session failed: nothing to rerun".to_string();
        d.notes.push(Note {
            warning: false,
            reason: Reason::NothingToRerun,
            message: format!("rerun request {request:?}: {message}"),
        });
        d.status.reruns.push(RerunRecord {
            request: request.to_string(),
            name: None,
            run_id: None,
            sessions: 0,
            created_at: time(view.now),
            message: Some(message),
        });
        ks.set(
            &mut d.status.conditions,
            RERUN_REQUESTED,
            false,
            Reason::NothingToRerun,
            "",
        );
        return;
    }
    let clock = match ZonedCron::new(&run.schedule, Some(&run.time_zone)) {
        Ok(c) => c,
        Err(_) => return,
    };
    let current = view.schedule.map(|s| {
        (
            s.schedule.trim().to_string(),
            s.time_zone.clone().unwrap_or_else(|| "UTC".into()),
        )
    });
    // A list is readable, but it must hold sessions of the Schedule as it
    // is now; a set carries its own cron and zone.
    let listed = sessions.len() <= LISTED_SESSIONS
        && current.as_ref() == Some(&(run.schedule.clone(), run.time_zone.clone()));
    let child = child(view, request, run_id, &clock, &sessions, listed);
    d.rerun = Some(rerun_child(
        ks,
        request,
        child,
        sessions.len() as i64,
        view.now,
    ));
}

/// The child Backfill of a request.
fn child(
    view: &BackfillView<'_>,
    request: &str,
    parent_run_id: &str,
    clock: &ZonedCron,
    sessions: &[i64],
    listed: bool,
) -> Backfill {
    let parent = view.spec;
    let attempt = parent.attempt_name.as_deref().unwrap_or(view.name);
    let spec = BackfillSpec {
        schedule_ref: parent.schedule_ref.clone(),
        sessions: listed.then(|| sessions.iter().map(|&t| time(t)).collect()),
        session_set: if listed {
            None
        } else {
            session_set(clock, sessions)
        },
        attempt_name: Some(retry_attempt_name(attempt, request)),
        max_in_flight: parent.max_in_flight,
        order: parent.order,
        credits_per_session: parent.credits_per_session,
        execution_windows: parent.execution_windows.clone(),
        // The failed sessions are what was asked for: `Missing` would
        // skip every one of them.
        reprocess: Some(match parent.reprocess {
            Some(Reprocess::All) => Reprocess::All,
            _ => Reprocess::Failed,
        }),
        parent_backfill_run_id: Some(parent_run_id.to_string()),
        // The same tolerance for failures; a new approval if its cost
        // asks for one.
        failure_budget: parent.failure_budget.clone(),
        approved: None,
        from: None,
        to: None,
        count: None,
        filter: None,
        dry_run: None,
        suspend: None,
        cancel: None,
    };
    let mut labels = BTreeMap::new();
    if view.name.len() <= MAX_NAME {
        labels.insert(LABEL_PARENT.to_string(), view.name.to_string());
    }
    // Who asked, when the parent says (else the operator, on the
    // parent's behalf).
    let created_by = match view.rerun_requested_by.map(str::trim) {
        Some(who) if !who.is_empty() => who.to_string(),
        _ => format!(
            "backfill-operator (rerun-failed {request:?} of {})",
            view.name
        ),
    };
    let annotations = BTreeMap::from([(ANNOTATION_CREATED_BY.to_string(), created_by)]);
    Backfill {
        metadata: ObjectMeta {
            name: Some(child_name(view.name, request)),
            namespace: view.namespace.map(str::to_string),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![controller_reference::<Backfill>(view.name, view.uid)]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// The child for a request, with what the parent records once the
/// applier has created (or found) it.
fn rerun_child(
    ks: &Kstatus<'_>,
    request: &str,
    child: Backfill,
    sessions: i64,
    now: i64,
) -> RerunChild {
    let name = child.metadata.name.clone().unwrap_or_default();
    RerunChild {
        request: request.to_string(),
        record: RerunRecord {
            request: request.to_string(),
            name: Some(name.clone()),
            run_id: None,
            sessions,
            created_at: time(now),
            message: None,
        },
        condition: ks.condition(
            RERUN_REQUESTED,
            false,
            Reason::ChildCreated,
            &format!("rerun request {request:?}: Backfill {name} reruns {sessions} session(s)"),
        ),
        note: Note {
            warning: false,
            reason: Reason::RerunCreated,
            message: format!(
                "rerun request {request:?}: created Backfill {name} for {sessions} failed session(s)"
            ),
        },
        child,
        sessions,
    }
}

/// Whether an existing Backfill is the child this parent made (and not an
/// unrelated object that happens to have its name).
pub fn is_child_of(child: &Backfill, parent_uid: &str) -> bool {
    child
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == parent_uid && o.controller == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_readable_when_they_can_be_and_always_fit() {
        assert_eq!(child_name("january", "1"), "january-rerun-1");
        assert_eq!(retry_attempt_name("january", "2"), "january-retry-2");
        let odd = child_name("january", "Monday morning!");
        assert!(
            odd.starts_with("january-rerun-") && odd.len() == 14 + 8,
            "{odd}"
        );
        assert_ne!(odd, child_name("january", "Monday morning?"));
        let long = "a".repeat(60);
        let (a, b) = (child_name(&long, "1"), child_name(&format!("{long}b"), "1"));
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert!(a.ends_with("-rerun-1"));
        // Deterministic: a retried create uses the same name.
        assert_eq!(child_name(&long, "1"), a);
    }

    #[test]
    fn a_request_is_pending_until_recorded() {
        let record = RerunRecord {
            request: "1".into(),
            name: None,
            run_id: None,
            sessions: 0,
            created_at: time(0),
            message: None,
        };
        assert_eq!(pending_request(Some("1"), &[]), Some("1"));
        assert_eq!(
            pending_request(Some("1"), std::slice::from_ref(&record)),
            None
        );
        assert_eq!(pending_request(Some(" 2 "), &[record]), Some("2"));
        assert_eq!(pending_request(Some(""), &[]), None);
        assert_eq!(pending_request(None, &[]), None);
    }
}
