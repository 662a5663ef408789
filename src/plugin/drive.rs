//! The commands that change Backfills: `create`, `rerun-failed`, `pause`,
//! `resume` and `cancel`. Every write carries the field manager
//! `kubectl-backfill`; what is printed is made by pure functions of what
//! was read, tested without a cluster.

mod create;
mod rerun;

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;

pub use create::{CreateArgs, DryRun, backfill_of, create};
pub use rerun::{RerunArgs, rerun_failed};
pub use rerun::{new_request, request_outcome};

use super::{Global, PluginError, block_on, connect};
use crate::api::{ANNOTATION_RESUME, Backfill};

/// The field manager of every write the plugin makes.
pub const FIELD_MANAGER: &str = "kubectl-backfill";

/// How kubectl names the kind in what it prints.
const RESOURCE: &str = "backfill.backfill.dev";

/// `pause`, `resume`, `cancel`: the Backfill to act on.
#[derive(Args, Debug, Clone)]
pub struct NameArgs {
    /// The Backfill's name.
    pub name: String,
}

/// A change of a Backfill's spec (and, to resume, an annotation), and
/// what it is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toggle {
    Pause,
    Resume,
    Cancel,
}

impl Toggle {
    /// The merge patch that carries it out. `resume` also gives
    /// `backfill.dev/resume` the new value `now` (RFC 3339), which resumes
    /// a run its failure budget paused.
    pub fn patch(self, now: &str) -> serde_json::Value {
        match self {
            Toggle::Pause => json!({"spec": {"suspend": true}}),
            Toggle::Resume => json!({
                "metadata": {"annotations": {ANNOTATION_RESUME: now}},
                "spec": {"suspend": false},
            }),
            Toggle::Cancel => json!({"spec": {"cancel": true}}),
        }
    }

    /// What is printed once it is done, as kubectl says it.
    pub fn report(self, name: &str) -> String {
        match self {
            Toggle::Pause => format!(
                "{RESOURCE}/{name} paused (spec.suspend=true): no new Job starts; running Jobs go on\n"
            ),
            Toggle::Resume => format!(
                "{RESOURCE}/{name} resumed (spec.suspend=false, and a new {ANNOTATION_RESUME} for a failure budget, counted again from now): Jobs start again\n"
            ),
            Toggle::Cancel => format!(
                "{RESOURCE}/{name} cancelled (spec.cancel=true): its running Jobs are deleted (their sessions count as killed) and nothing more is launched\n"
            ),
        }
    }
}

/// Runs `pause`, `resume` or `cancel`.
pub fn toggle(global: &Global, args: &NameArgs, toggle: Toggle) -> Result<ExitCode, PluginError> {
    block_on(async {
        let (client, namespace) = connect(global).await?;
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        backfills(&client, &namespace)
            .patch(
                &args.name,
                &params,
                &Patch::Merge(&toggle.patch(&jiff::Timestamp::now().to_string())),
            )
            .await
            .map_err(from_server)?;
        print!("{}", toggle.report(&args.name));
        Ok(ExitCode::SUCCESS)
    })
}

fn backfills(client: &Client, namespace: &str) -> Api<Backfill> {
    Api::namespaced(client.clone(), namespace)
}

/// An error of the API server as kubectl words it:
/// `Error from server (NotFound): backfills.backfill.dev "x" not found`.
pub fn from_server(e: kube::Error) -> PluginError {
    match e {
        kube::Error::Api(status) => {
            let reason = if status.reason.is_empty() {
                status.code.to_string()
            } else {
                status.reason.clone()
            };
            PluginError::Other(format!("Error from server ({reason}): {}", status.message))
        }
        other => PluginError::Kube(other),
    }
}

/// A duration as kubectl's `--timeout` takes it: `90s`, `5m`, `1h30m`,
/// or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let bad = || format!("{text:?} is not a duration such as 90s, 5m or 1h30m");
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = total.saturating_add(n.saturating_mul(unit));
        number.clear();
    }
    if !number.is_empty() || text.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// What a wait step says of the Backfill it was shown.
pub enum Seen<T> {
    /// Not yet.
    Pending,
    /// Done, with this result.
    Done(Result<T, PluginError>),
}

/// Watches the Backfill `name` until `check` says it is done, it is
/// deleted, or `timeout` passes (`what` names the wait in that error).
/// The caller reads the Backfill first, so a name that does not exist is
/// an error before this starts.
pub async fn wait_for<T>(
    api: &Api<Backfill>,
    name: &str,
    what: &str,
    timeout: Duration,
    mut check: impl FnMut(&Backfill) -> Seen<T>,
) -> Result<T, PluginError> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api.clone(), config).default_backoff().boxed();
    let mut last_error = None;
    let waited = tokio::time::timeout(timeout, async {
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Apply(bf) | watcher::Event::InitApply(bf)) => {
                    if let Seen::Done(result) = check(&bf) {
                        return result;
                    }
                }
                Ok(watcher::Event::Delete(_)) => {
                    return Err(PluginError::Other(format!(
                        "{RESOURCE}/{name} was deleted while waiting for {what}"
                    )));
                }
                Ok(_) => {}
                // The watcher retries with a backoff; a lasting error is
                // reported when the wait times out.
                Err(e) => last_error = Some(e.to_string()),
            }
        }
        Err(PluginError::Other(format!(
            "the watch of {RESOURCE}/{name} ended while waiting for {what}"
        )))
    })
    .await;
    waited.unwrap_or_else(|_| {
        let cause = last_error
            .map(|e| format!(" (last watch error: {e})"))
            .unwrap_or_default();
        Err(PluginError::Other(format!(
            "timed out after {}s waiting for {what}{cause}",
            timeout.as_secs()
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_kubectl_writes_them() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        for bad in ["", "m", "5x", "1h30", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn toggles_are_one_field_each_and_say_what_they_do() {
        let now = "2026-03-01T10:00:00Z";
        assert_eq!(Toggle::Pause.patch(now), json!({"spec": {"suspend": true}}));
        assert_eq!(
            Toggle::Resume.patch(now),
            json!({"metadata": {"annotations": {"backfill.dev/resume": now}}, "spec": {"suspend": false}})
        );
        assert_eq!(Toggle::Cancel.patch(now), json!({"spec": {"cancel": true}}));
        assert!(
            Toggle::Pause
                .report("jan")
                .starts_with("backfill.backfill.dev/jan paused")
        );
        assert!(
            Toggle::Resume
                .report("jan")
                .starts_with("backfill.backfill.dev/jan resumed")
        );
        let cancel = Toggle::Cancel.report("jan");
        assert!(
            cancel.starts_with("backfill.backfill.dev/jan cancelled"),
            "{cancel}"
        );
        assert!(cancel.contains("running Jobs are deleted"), "{cancel}");
    }

    #[test]
    fn server_errors_read_as_kubectl_prints_them() {
        let status =
            kube::core::Status::failure("backfills.backfill.dev \"nope\" not found", "NotFound")
                .with_code(404);
        let e = from_server(kube::Error::Api(Box::new(status)));
        assert_eq!(
            e.to_string(),
            "Error from server (NotFound): backfills.backfill.dev \"nope\" not found"
        );
    }
}
