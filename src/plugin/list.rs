//! `kubectl backfill list`: the Backfills of a namespace (or of all,
//! `-A`) with their progress, as `kubectl get bf` with a bar.

use std::process::ExitCode;

use clap::Args;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::status::{to_json, to_yaml};
use super::{Global, Output, PluginError, block_on, connect};
use crate::api::Backfill;
use crate::core::zoned_cron::{rfc3339_utc, seconds};

const BAR_WIDTH: usize = 10;

#[derive(Args, Debug)]
pub struct ListArgs {
    /// List the Backfills of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// `wide` adds the run id, start and completion; `json` and `yaml`
    /// print a `List` of the Backfill objects.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

/// The table of `backfills` at `now`: NAME, SCHEDULE, PHASE, PROGRESS
/// (a bar and processed/total), SUCCEEDED, FAILED, AGE; with
/// `all_namespaces` a NAMESPACE column first; `wide` adds RUN ID, STARTED
/// and COMPLETED.
pub fn render_list(backfills: &[Backfill], now: i64, wide: bool, all_namespaces: bool) -> String {
    let mut header = vec![
        "NAME",
        "SCHEDULE",
        "PHASE",
        "PROGRESS",
        "SUCCEEDED",
        "FAILED",
        "AGE",
    ];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    if wide {
        header.extend(["RUN ID", "STARTED", "COMPLETED"]);
    }
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for bf in backfills {
        let status = bf.status.clone().unwrap_or_default();
        let total = status.total_estimated.max(0);
        let processed = status.processed_count.clamp(0, total.max(0));
        let filled = (processed as usize * BAR_WIDTH)
            .checked_div(total as usize)
            .unwrap_or(0);
        let progress = format!(
            "[{}{}] {}/{}",
            "#".repeat(filled),
            ".".repeat(BAR_WIDTH - filled),
            status.processed_count,
            total
        );
        let age = bf
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or("<unknown>".to_string(), |t| age(now - seconds(t)));
        let mut row = vec![
            bf.name_any(),
            bf.spec.schedule_ref.name.clone(),
            status
                .phase
                .map_or("Pending".to_string(), |p| format!("{p:?}")),
            progress,
            status.succeeded_count.to_string(),
            status.failed_count.to_string(),
            age,
        ];
        if all_namespaces {
            row.insert(0, bf.namespace().unwrap_or_default());
        }
        if wide {
            let at = |t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
                t.map_or("<none>".to_string(), |t| rfc3339_utc(seconds(t)))
            };
            row.push(status.run_id.clone().unwrap_or_else(|| "<none>".into()));
            row.push(at(status.started_at.as_ref()));
            row.push(at(status.completed_at.as_ref()));
        }
        rows.push(row);
    }
    table(&rows)
}

/// Columns padded to their widest cell, three spaces apart, as kubectl.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// kubectl's age: `45s`, `12m`, `5h`, `3d`, `2y`.
fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3_600 => format!("{}m", s / 60),
        s if s < 48 * 3_600 => format!("{}h", s / 3_600),
        s if s < 730 * 86_400 => format!("{}d", s / 86_400),
        s => format!("{}y", s / (365 * 86_400)),
    }
}

/// `kubectl backfill list`.
pub fn run(global: &Global, args: &ListArgs) -> Result<ExitCode, PluginError> {
    block_on(async {
        let (client, ns) = connect(global).await?;
        let api: Api<Backfill> = if args.all_namespaces {
            Api::all(client)
        } else {
            Api::namespaced(client, &ns)
        };
        let mut items = api.list(&ListParams::default()).await?.items;
        items.sort_by_key(|b| (b.namespace(), b.name_any()));
        match args.output {
            Output::Json | Output::Yaml => {
                let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
                if args.output == Output::Json {
                    println!("{}", to_json(&list)?);
                } else {
                    print!("{}", to_yaml(&list)?);
                }
            }
            Output::Text | Output::Wide if items.is_empty() => {
                if args.all_namespaces {
                    eprintln!("No resources found");
                } else {
                    eprintln!("No resources found in {ns} namespace.");
                }
            }
            Output::Text | Output::Wide => {
                let now = jiff::Timestamp::now().as_second();
                print!(
                    "{}",
                    render_list(
                        &items,
                        now,
                        args.output == Output::Wide,
                        args.all_namespaces
                    )
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
