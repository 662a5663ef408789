//! What the API server refuses at admission, and what it lets through.
//!
//! Every invalid manifest is a valid base manifest plus a JSON merge patch
//! (`null` removes a field), sent as `kubectl apply --server-side` sends
//! it: server-side apply with strict field validation. Each must be
//! refused with a message a person understands; all cases are checked
//! before the test fails, and the report names every case that did not
//! behave.

mod common;

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::pinned_kind;
use kube::{Api, Client};
use serde_json::{Value, json};

use backfill_operator::api::{Backfill, Schedule};
use common::{FIELD_MANAGER, TestNamespace, client, install_crds, merge, repo_root, yaml};

const SCHEDULE: &str = r#"
apiVersion: backfill.dev/v1alpha1
kind: Schedule
metadata:
  name: base
spec:
  schedule: "0 3 * * *"
  timeZone: Europe/Paris
  jobTemplate:
    spec:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: busybox:1.37
            command: [sh, -c, 'echo "$SESSION_TIME"']
"#;

const BACKFILL: &str = r#"
apiVersion: backfill.dev/v1alpha1
kind: Backfill
metadata:
  name: base
spec:
  scheduleRef: {name: nightly}
  from: "2026-01-01T00:00:00Z"
  to: "2026-02-01T00:00:00Z"
"#;

/// A case: what it tries, the merge patch onto the base manifest, and
/// substrings the API server's message must contain.
type Case = (&'static str, &'static str, &'static [&'static str]);

const GTE0: &str = "should be greater than or equal to 0";
const GTE1: &str = "should be greater than or equal to 1";
const FIVE_FIELDS: &str =
    "schedule must have exactly 5 fields: minute hour day-of-month month day-of-week";
const BAD_CRON_CHAR: &str = "schedule fields may contain only numbers, month or weekday names";
const MACROS: &str = "schedule macro must be one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly";
const TZ_PREFIX: &str = "set the time zone in spec.timeZone, not with TZ= in spec.schedule";
const SCHEDULE_TZ: &str = "timeZone must be an IANA time zone name such as America/New_York or UTC";
const ONE_SELECTION: &str = "choose the sessions with exactly one of: from (alone: every session up to the start; with to; or with count), sessions, sessionSet";
const TO_AND_COUNT: &str = "to and count cannot be used together: from with to, or from with count";
const FROM_WITH: &str = "to and count need from";
const FROM_BEFORE_TO: &str = "from must be earlier than to (from is inclusive, to exclusive)";
const WINDOW_START: &str = "start must be a time of day as HH:MM, from 00:00 to 23:59";
const WINDOW_END: &str = "end must be a time of day as HH:MM, from 00:00 to 24:00";
const ATTEMPT_NAME: &str = "attemptName must be lowercase letters, digits, '-' or '.', starting and ending with a letter or digit";
const IMMUTABLE: &str = "scheduleRef, from, to, count, sessions, sessionSet, filter, order, reprocess and attemptName cannot change once the backfill has started";
const DRY_RUN_ON: &str = "dryRun cannot be turned back on once the backfill has started";

// One case a line: the table reads as a list.
#[rustfmt::skip]
const SCHEDULE_CASES: &[Case] = &[
    ("cron with 4 fields", r#"spec: {schedule: "0 3 * *"}"#, &[FIVE_FIELDS]),
    ("cron with 6 fields (seconds)", r#"spec: {schedule: "0 0 3 * * *"}"#, &[FIVE_FIELDS]),
    ("cron with 7 fields (Quartz year)", r#"spec: {schedule: "0 0 3 * * ? 2026"}"#, &[FIVE_FIELDS]),
    ("cron with a '#' (nth weekday)", r#"spec: {schedule: "0 3 * * MON#1"}"#, &[BAD_CRON_CHAR]),
    ("cron with a ';'", r#"spec: {schedule: "0 3 * * 1;5"}"#, &[BAD_CRON_CHAR]),
    ("cron macro @every", r#"spec: {schedule: "@every 5m"}"#, &[MACROS]),
    ("cron macro @reboot", r#"spec: {schedule: "@reboot"}"#, &[MACROS]),
    ("cron macro with a trailing field", r#"spec: {schedule: "@daily 3"}"#, &[MACROS]),
    ("TZ= prefix", r#"spec: {schedule: "TZ=America/New_York 0 3 * * *"}"#, &[TZ_PREFIX]),
    ("CRON_TZ= prefix", r#"spec: {schedule: "CRON_TZ=UTC 0 3 * * *"}"#, &[TZ_PREFIX]),
    ("empty cron", r#"spec: {schedule: ""}"#, &["spec.schedule", "should be at least 1 chars long"]),
    ("missing cron", r#"spec: {schedule: null}"#, &["spec.schedule: Required value"]),
    ("timeZone with a space", r#"spec: {timeZone: "America/New York"}"#, &[SCHEDULE_TZ]),
    ("timeZone as an offset", r#"spec: {timeZone: "+02:00"}"#, &[SCHEDULE_TZ]),
    ("timeZone empty", r#"spec: {timeZone: ""}"#, &["spec.timeZone", "should be at least 1 chars long"]),
    ("concurrencyPolicy unknown", r#"spec: {concurrencyPolicy: Sometimes}"#, &[r#"spec.concurrencyPolicy: Unsupported value: "Sometimes""#, r#""Allow", "Forbid", "Replace""#]),
    ("concurrencyPolicy lowercase", r#"spec: {concurrencyPolicy: forbid}"#, &[r#"Unsupported value: "forbid""#]),
    ("negative startingDeadlineSeconds", r#"spec: {startingDeadlineSeconds: -1}"#, &["spec.startingDeadlineSeconds", GTE0]),
    ("negative successfulJobsHistoryLimit", r#"spec: {successfulJobsHistoryLimit: -1}"#, &["spec.successfulJobsHistoryLimit", GTE0]),
    ("negative failedJobsHistoryLimit", r#"spec: {failedJobsHistoryLimit: -3}"#, &["spec.failedJobsHistoryLimit", GTE0]),
    ("startTime equal to endTime", r#"spec: {startTime: "2026-01-01T00:00:00Z", endTime: "2026-01-01T00:00:00Z"}"#, &["startTime must be earlier than endTime"]),
    ("startTime after endTime", r#"spec: {startTime: "2026-03-01T00:00:00Z", endTime: "2026-01-01T00:00:00Z"}"#, &["startTime must be earlier than endTime"]),
    ("startTime not a date", r#"spec: {startTime: "yesterday"}"#, &["spec.startTime", "date-time"]),
    ("suspend not a boolean", r#"spec: {suspend: "yes"}"#, &["spec.suspend", "boolean"]),
    ("missing jobTemplate", r#"spec: {jobTemplate: null}"#, &["spec.jobTemplate: Required value"]),
    ("restartPolicy Always", r#"spec: {jobTemplate: {spec: {template: {spec: {restartPolicy: Always}}}}}"#, &["a Job's pods must have restartPolicy OnFailure or Never"]),
    ("missedSessions policy unknown", r#"spec: {missedSessions: {policy: RunSome}}"#, &[r#"spec.missedSessions.policy: Unsupported value: "RunSome""#, r#""RunLatest", "RunAll", "Skip""#]),
    ("missedSessions windowSeconds 0", r#"spec: {missedSessions: {policy: RunAll, windowSeconds: 0}}"#, &["spec.missedSessions.windowSeconds", GTE1]),
    ("missedSessions windowSeconds over a year", r#"spec: {missedSessions: {policy: RunAll, windowSeconds: 31622401}}"#, &["spec.missedSessions.windowSeconds", "should be less than or equal to 31622400"]),
    ("negative creditsPerSession", r#"spec: {creditsPerSession: -0.5}"#, &["spec.creditsPerSession", GTE0]),
    ("approval without a threshold", r#"spec: {approval: {}}"#, &["spec.approval.requiredAboveCredits: Required value"]),
    ("approval threshold negative", r#"spec: {approval: {requiredAboveCredits: -1}}"#, &["spec.approval.requiredAboveCredits", GTE0]),
    ("unknown spec field", r#"spec: {schedul: "0 3 * * *"}"#, &[".spec.schedul: field not declared in schema"]),
];

#[rustfmt::skip]
const BACKFILL_CASES: &[Case] = &[
    ("from after to", r#"spec: {from: "2026-02-01T00:00:00Z", to: "2026-01-01T00:00:00Z"}"#, &[FROM_BEFORE_TO]),
    ("from equal to to", r#"spec: {to: "2026-01-01T00:00:00Z"}"#, &[FROM_BEFORE_TO]),
    ("both count and to", r#"spec: {count: 10}"#, &[TO_AND_COUNT]),
    ("no selection at all", r#"spec: {from: null, to: null}"#, &[ONE_SELECTION]),
    ("count without from", r#"spec: {from: null, to: null, count: 5}"#, &[FROM_WITH]),
    ("to without from", r#"spec: {from: null}"#, &[FROM_WITH]),
    ("sessions plus from", r#"spec: {to: null, sessions: ["2026-01-05T02:00:00Z"]}"#, &[ONE_SELECTION]),
    ("sessions plus from and to", r#"spec: {sessions: ["2026-01-05T02:00:00Z"]}"#, &[ONE_SELECTION]),
    ("empty sessions list", r#"spec: {from: null, to: null, sessions: []}"#, &["spec.sessions", "should have at least 1 items"]),
    ("session not a date", r#"spec: {from: null, to: null, sessions: ["monday"]}"#, &["spec.sessions[0]", "date-time"]),
    ("sessionSet from after to", r#"spec: {from: null, to: null, sessionSet: {schedule: "0 3 * * *", timeZone: UTC, from: "2026-02-01T00:00:00Z", to: "2026-01-01T00:00:00Z", count: 1, bitmap: AQ==}}"#, &["sessionSet.from must be earlier than sessionSet.to"]),
    ("count 0", r#"spec: {to: null, count: 0}"#, &["spec.count", GTE1]),
    ("maxInFlight 0", r#"spec: {maxInFlight: 0}"#, &["spec.maxInFlight", GTE1]),
    ("maxInFlight too large", r#"spec: {maxInFlight: 10001}"#, &["spec.maxInFlight", "should be less than or equal to 10000"]),
    ("window start 25:00", r#"spec: {executionWindows: {monday: [{start: "25:00", end: "06:00"}]}}"#, &["spec.executionWindows.monday[0].start", WINDOW_START]),
    ("window start 9:00", r#"spec: {executionWindows: {monday: [{start: "9:00", end: "17:00"}]}}"#, &["spec.executionWindows.monday[0].start", WINDOW_START]),
    ("window start 24:00", r#"spec: {executionWindows: {friday: [{start: "24:00", end: "06:00"}]}}"#, &["spec.executionWindows.friday[0].start", WINDOW_START]),
    ("window end 24:30", r#"spec: {executionWindows: {tuesday: [{start: "22:00", end: "24:30"}]}}"#, &["spec.executionWindows.tuesday[0].end", WINDOW_END]),
    ("window end 5pm", r#"spec: {executionWindows: {tuesday: [{start: "09:00", end: "5pm"}]}}"#, &["spec.executionWindows.tuesday[0].end", WINDOW_END]),
    ("window start equal to end", r#"spec: {executionWindows: {sunday: [{start: "09:00", end: "09:00"}]}}"#, &["a window's start and end must differ"]),
    ("window without end", r#"spec: {executionWindows: {sunday: [{start: "09:00"}]}}"#, &["spec.executionWindows.sunday[0].end: Required value"]),
    ("unknown weekday key", r#"spec: {executionWindows: {funday: [{start: "09:00", end: "17:00"}]}}"#, &[".spec.executionWindows.funday: field not declared in schema"]),
    ("abbreviated weekday key", r#"spec: {executionWindows: {mon: [{start: "09:00", end: "17:00"}]}}"#, &[".spec.executionWindows.mon: field not declared in schema"]),
    ("executionWindows bad timeZone", r#"spec: {executionWindows: {timeZone: "Europe Paris", monday: [{start: "09:00", end: "17:00"}]}}"#, &["timeZone must be an IANA time zone name such as Europe/Paris or UTC"]),
    ("filter daysOfWeek Caturday", r#"spec: {filter: {daysOfWeek: [Monday, Caturday]}}"#, &[r#"spec.filter.daysOfWeek[1]: Unsupported value: "Caturday""#]),
    ("filter daysOfWeek lowercase", r#"spec: {filter: {daysOfWeek: [monday]}}"#, &[r#"Unsupported value: "monday""#]),
    ("filter hours 24", r#"spec: {filter: {hours: [0, 24]}}"#, &["spec.filter.hours[1]", "should be less than or equal to 23"]),
    ("filter hours -1", r#"spec: {filter: {hours: [-1]}}"#, &["spec.filter.hours[0]", GTE0]),
    ("filter exclude from equal to to", r#"spec: {filter: {exclude: [{from: "2026-01-10T00:00:00Z", to: "2026-01-10T00:00:00Z"}]}}"#, &["spec.filter.exclude[0]", "from must be earlier than to"]),
    ("filter exclude from after to", r#"spec: {filter: {exclude: [{from: "2026-01-12T00:00:00Z", to: "2026-01-10T00:00:00Z"}]}}"#, &["spec.filter.exclude[0]", "from must be earlier than to"]),
    ("order unknown", r#"spec: {order: Random}"#, &[r#"spec.order: Unsupported value: "Random""#, r#""Oldest", "Newest""#]),
    ("reprocess unknown", r#"spec: {reprocess: Everything}"#, &[r#"spec.reprocess: Unsupported value: "Everything""#, r#""Missing", "Failed", "All""#]),
    ("attemptName with uppercase", r#"spec: {attemptName: January-Fix}"#, &[ATTEMPT_NAME]),
    ("attemptName starting with '-'", r#"spec: {attemptName: -retry}"#, &[ATTEMPT_NAME]),
    ("attemptName with '_'", r#"spec: {attemptName: january_fix}"#, &[ATTEMPT_NAME]),
    ("attemptName of 64 characters", r#"spec: {attemptName: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}"#, &["spec.attemptName", "may not be more than 63"]),
    ("attemptName empty", r#"spec: {attemptName: ""}"#, &["spec.attemptName", "should be at least 1 chars long"]),
    ("empty scheduleRef.name", r#"spec: {scheduleRef: {name: ""}}"#, &["spec.scheduleRef.name", "should be at least 1 chars long"]),
    ("missing scheduleRef", r#"spec: {scheduleRef: null}"#, &["spec.scheduleRef: Required value"]),
    ("negative creditsPerSession", r#"spec: {creditsPerSession: -1}"#, &["spec.creditsPerSession", GTE0]),
    ("misspelt field", r#"spec: {maxInflight: 2}"#, &[".spec.maxInflight: field not declared in schema"]),
    ("failureBudget without a limit", r#"spec: {failureBudget: {action: Pause}}"#, &["failureBudget needs maxFailed, maxFailedRatio or both"]),
    ("failureBudget maxFailed 0", r#"spec: {failureBudget: {maxFailed: 0}}"#, &["spec.failureBudget.maxFailed", GTE1]),
    ("failureBudget ratio 0", r#"spec: {failureBudget: {maxFailedRatio: 0}}"#, &["failureBudget.maxFailedRatio must be more than 0 and at most 1"]),
    ("failureBudget ratio above 1", r#"spec: {failureBudget: {maxFailedRatio: 1.5}}"#, &["failureBudget.maxFailedRatio must be more than 0 and at most 1"]),
    ("failureBudget minProcessed alone", r#"spec: {failureBudget: {maxFailed: 3, minProcessed: 5}}"#, &["failureBudget.minProcessed goes with maxFailedRatio"]),
    ("failureBudget action unknown", r#"spec: {failureBudget: {maxFailed: 3, action: Stop}}"#, &[r#"Unsupported value: "Stop""#, r#""Pause", "Cancel""#]),
];

fn api_for(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let resource = match kind {
        "Schedule" => ApiResource::erase::<Schedule>(&()),
        "Backfill" => ApiResource::erase::<Backfill>(&()),
        other => panic!("no API for kind {other}"),
    };
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// Server-side apply as `kubectl apply --server-side` does it.
fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).validation_strict()
}

async fn apply(api: &Api<DynamicObject>, manifest: &Value) -> Result<DynamicObject, kube::Error> {
    let name = manifest["metadata"]["name"].as_str().expect("a name");
    api.patch(name, &apply_params(), &Patch::Apply(manifest))
        .await
}

/// The base manifest with `patch` merged in, named `name`.
fn manifest(base: &str, name: &str, patch: &str) -> Value {
    let mut manifest = yaml(base);
    merge(&mut manifest, &yaml(patch));
    merge(&mut manifest, &json!({"metadata": {"name": name}}));
    manifest
}

/// Applies every case and returns a description of each that was not
/// refused with the expected message.
async fn failures(
    api: &Api<DynamicObject>,
    base: &str,
    prefix: &str,
    cases: &[Case],
) -> Vec<String> {
    let mut failures = Vec::new();
    for (i, (what, patch, expected)) in cases.iter().enumerate() {
        let name = format!("{prefix}-{i:02}");
        let result = apply(api, &manifest(base, &name, patch)).await;
        let problem = match common::api_error_message(&result) {
            Some((code, message)) => {
                let missing: Vec<&str> = expected
                    .iter()
                    .copied()
                    .filter(|e| !message.contains(e))
                    .collect();
                if !refusal_code(code, &message) {
                    Some(format!(
                        "answered {code}, not a refusal\n    message: {message}"
                    ))
                } else if !missing.is_empty() {
                    Some(format!(
                        "refused, but the message lacks {missing:?}\n    message: {message}"
                    ))
                } else {
                    None
                }
            }
            None => Some(match result {
                Ok(_) => format!("ACCEPTED, expected a refusal saying {expected:?}"),
                Err(e) => format!("failed without an answer from the API server: {e}"),
            }),
        };
        if let Some(problem) = problem {
            failures.push(format!(
                "{prefix} case {i:02} \"{what}\": {problem}\n    patch: {patch}"
            ));
        }
    }
    failures
}

/// Whether `code` is how the API server refuses bad input: 422 (Invalid)
/// or 400 (BadRequest). Server-side apply answers a field the schema does
/// not declare, or a value of the wrong type, with a 500 whose message
/// names the field (kubernetes/kubernetes#122480, #139253): a refusal all
/// the same, which `kubectl apply --server-side` prints as it is.
fn refusal_code(code: u16, message: &str) -> bool {
    code == 400
        || code == 422
        || (code == 500 && message.starts_with("failed to create typed patch object"))
}

fn report(failures: &[String], total: usize) {
    assert!(
        failures.is_empty(),
        "{} of {total} cases did not behave:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[tokio::test]
async fn invalid_schedules_are_refused_with_a_clear_message() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "admission-schedule").await;
    let api = api_for(&client, &ns.name, "Schedule");
    // The base itself is valid, so each refusal is the case's doing.
    apply(&api, &manifest(SCHEDULE, "base", "{}"))
        .await
        .expect("the base Schedule is valid");
    let failures = failures(&api, SCHEDULE, "schedule", SCHEDULE_CASES).await;
    report(&failures, SCHEDULE_CASES.len());
}

#[tokio::test]
async fn invalid_backfills_are_refused_with_a_clear_message() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "admission-backfill").await;
    let api = api_for(&client, &ns.name, "Backfill");
    apply(&api, &manifest(BACKFILL, "base", "{}"))
        .await
        .expect("the base Backfill is valid");
    let failures = failures(&api, BACKFILL, "backfill", BACKFILL_CASES).await;
    report(&failures, BACKFILL_CASES.len());
}

/// A name is a label value on every Job, so it may have 63 characters,
/// not the 253 of a plain object name: 64 are refused when applied.
#[tokio::test]
async fn names_longer_than_a_label_value_are_refused() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "admission-names").await;
    for (kind, base) in [("Schedule", SCHEDULE), ("Backfill", BACKFILL)] {
        let api = api_for(&client, &ns.name, kind);
        let fits = "n".repeat(63);
        apply(&api, &manifest(base, &fits, "{}"))
            .await
            .unwrap_or_else(|e| panic!("a {kind} named with 63 characters: {e}"));
        let long = "n".repeat(64);
        let result = apply(&api, &manifest(base, &long, "{}")).await;
        match common::api_error_message(&result) {
            Some((code, message)) => {
                assert!(refusal_code(code, &message), "{kind}: {code} {message}");
                assert!(
                    message.contains("metadata.name must be at most 63 characters"),
                    "{kind}: {message}"
                );
            }
            None => panic!("a {kind} named with 64 characters: {result:?}"),
        }
    }
}

/// Marks a Backfill started, as the controller does.
async fn start(api: &Api<DynamicObject>, name: &str) {
    let status = json!({"status": {"startedAt": "2026-03-01T00:00:00Z", "runId": "5f0c7a1e-0000-4000-8000-000000000001"}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("setting status.startedAt on {name}: {e}"));
}

#[tokio::test]
async fn a_started_backfill_keeps_its_selection() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "admission-transition").await;
    let api = api_for(&client, &ns.name, "Backfill");
    let mut failures = Vec::new();

    // Before the start, the selection may change.
    apply(&api, &manifest(BACKFILL, "not-started", "{}"))
        .await
        .expect("create");
    if let Err(e) = apply(
        &api,
        &manifest(
            BACKFILL,
            "not-started",
            r#"spec: {from: "2026-01-15T00:00:00Z"}"#,
        ),
    )
    .await
    {
        failures.push(format!("changing from before the start: refused: {e}"));
    }

    let base = r#"spec: {filter: {daysOfWeek: [Monday]}, attemptName: january-fix, dryRun: false}"#;
    apply(&api, &manifest(BACKFILL, "started", base))
        .await
        .expect("create");
    start(&api, "started").await;

    let refused: &[(&str, &str, &str)] = &[
        (
            "change from",
            r#"spec: {from: "2026-01-15T00:00:00Z"}"#,
            IMMUTABLE,
        ),
        (
            "change to",
            r#"spec: {to: "2026-03-01T00:00:00Z"}"#,
            IMMUTABLE,
        ),
        (
            "replace to by count",
            r#"spec: {to: null, count: 10}"#,
            IMMUTABLE,
        ),
        (
            "change filter",
            r#"spec: {filter: {daysOfWeek: [Tuesday]}}"#,
            IMMUTABLE,
        ),
        ("remove filter", r#"spec: {filter: null}"#, IMMUTABLE),
        (
            "change attemptName",
            r#"spec: {attemptName: january-fix-2}"#,
            IMMUTABLE,
        ),
        (
            "change scheduleRef",
            r#"spec: {scheduleRef: {name: other}}"#,
            IMMUTABLE,
        ),
        ("set order", r#"spec: {order: Newest}"#, IMMUTABLE),
        ("set reprocess", r#"spec: {reprocess: All}"#, IMMUTABLE),
        ("turn dryRun on", r#"spec: {dryRun: true}"#, DRY_RUN_ON),
    ];
    for (what, patch, expected) in refused {
        let mut m = manifest(BACKFILL, "started", base);
        merge(&mut m, &yaml(patch));
        match apply(&api, &m).await {
            Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains(expected) => {}
            Err(e) => failures.push(format!(
                "after start, {what}: refused, but not with {expected:?}: {e}"
            )),
            Ok(_) => failures.push(format!(
                "after start, {what}: ACCEPTED, expected {expected:?}"
            )),
        }
    }

    let allowed = [
        ("change maxInFlight", r#"spec: {maxInFlight: 8}"#),
        ("suspend", r#"spec: {maxInFlight: 8, suspend: true}"#),
        (
            "resume and cancel",
            r#"spec: {maxInFlight: 8, suspend: false, cancel: true}"#,
        ),
    ];
    for (what, patch) in allowed {
        let mut m = manifest(BACKFILL, "started", base);
        merge(&mut m, &yaml(patch));
        if let Err(e) = apply(&api, &m).await {
            failures.push(format!("after start, {what}: refused: {e}"));
        }
    }
    report(&failures, 1 + refused.len() + allowed.len());
}

/// Every manifest of `examples/`, in order, with the file it came from.
fn examples() -> Vec<(String, Value)> {
    let dir = repo_root().join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable example");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if !value.is_null() {
                docs.push((
                    file.file_name().unwrap().to_string_lossy().into_owned(),
                    value,
                ));
            }
        }
    }
    docs
}

#[tokio::test]
async fn examples_are_accepted() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "admission-examples").await;
    let docs = examples();
    assert!(!docs.is_empty(), "no manifests under examples/");
    let mut failures = Vec::new();
    for (file, doc) in &docs {
        if doc["metadata"].get("namespace").is_some() {
            failures.push(format!(
                "{file}: sets metadata.namespace; examples go to the namespace the user picks"
            ));
            continue;
        }
        let (group, version) = match doc["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .split_once('/')
        {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (
                String::new(),
                doc["apiVersion"].as_str().unwrap_or_default().to_string(),
            ),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, doc["kind"].as_str().unwrap_or_default());
        let (resource, _) = match pinned_kind(&client, &gvk).await {
            Ok(found) => found,
            Err(e) => {
                failures.push(format!("{file}: unknown kind {gvk:?}: {e}"));
                continue;
            }
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &resource);
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        if let Err(e) = api
            .patch(name, &apply_params().dry_run(), &Patch::Apply(doc))
            .await
        {
            failures.push(format!("{file}: {} {name} refused: {e}", gvk.kind));
        }
    }
    report(&failures, docs.len());
}
