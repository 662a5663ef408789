//! The kubectl plugin, `kubectl backfill`: see and drive Backfills and the
//! sessions of Schedules from a terminal, with kubectl's conventions:
//! `-n/--namespace`, `--context`, `--kubeconfig`, `-o`, errors on stderr,
//! exit status 0 on success, 1 on an error, 2 on a usage error.
//!
//! Each command lives in a module of its own; what it prints is made by a
//! pure function of what it read (and `now`), so rendering is tested
//! without a cluster.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::cli::PlanArgs;

pub mod drive;
pub mod list;
pub mod sessions;
pub mod status;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-backfill",
    bin_name = "kubectl backfill",
    version,
    about = "See and drive Backfills, and the sessions of Schedules (backfill.dev)"
)]
pub struct Plugin {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// kubectl's own flags, which every command takes.
#[derive(Args, Debug, Clone, Default)]
pub struct Global {
    /// The namespace (default: the context's, else "default").
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
}

/// `-o`: how a command prints what it read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people (the default).
    #[default]
    Text,
    /// Text with more columns.
    Wide,
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the sessions a cron expression or a Backfill manifest selects,
    /// without a cluster.
    Plan(PlanArgs),
    /// A Backfill's phase, progress, ETA, window, a heatmap of its
    /// sessions and its failed sessions; `--watch` follows it to the end.
    Status(status::StatusArgs),
    /// The Backfills of the namespace (`-A`: of all) with their progress.
    List(list::ListArgs),
    /// Every session of a Schedule in a range with its latest attempt:
    /// queued, running, canceling, success, error, killed or missing.
    Sessions(sessions::SessionsArgs),
    /// Create a Backfill from flags; --dry-run shows its plan and cost, -o
    /// yaml prints its manifest.
    Create(drive::CreateArgs),
    /// Ask for a rerun of a finished Backfill's failed sessions (a child
    /// Backfill); --wait prints the child and its plan.
    RerunFailed(drive::RerunArgs),
    /// Pause a Backfill (spec.suspend=true): no new Job starts.
    Pause(drive::NameArgs),
    /// Resume a paused Backfill (spec.suspend=false).
    Resume(drive::NameArgs),
    /// Cancel a Backfill (spec.cancel=true): its running Jobs are deleted
    /// and nothing more is launched.
    Cancel(drive::NameArgs),
}

/// What failed, said to the user on stderr.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Other(String),
}

impl PluginError {
    fn exit_code(&self) -> ExitCode {
        match self {
            PluginError::Usage(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

/// A client and the namespace to work in, from the kubeconfig as kubectl
/// reads it: `--kubeconfig`, else `$KUBECONFIG`, else `~/.kube/config`,
/// else the pod's ServiceAccount; `--context`; `-n`, else the context's
/// namespace.
pub async fn connect(global: &Global) -> Result<(Client, String), PluginError> {
    let options = KubeConfigOptions {
        context: global.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&global.kubeconfig, &global.context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| PluginError::Config(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| PluginError::Config(format!("{}: {e}", path.display())))?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| PluginError::Config(format!("reading the kubeconfig: {e}")))?,
        (None, None) => kube::Config::infer()
            .await
            .map_err(|e| PluginError::Config(format!("reading the kubeconfig: {e}")))?,
    };
    let namespace = global
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config)?;
    Ok((client, namespace))
}

/// Runs the plugin with the process's arguments.
pub fn main() -> ExitCode {
    let plugin = Plugin::parse();
    match run(plugin) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn run(plugin: Plugin) -> Result<ExitCode, PluginError> {
    match plugin.command {
        Command::Plan(args) => {
            let report = crate::cli::plan(&args).map_err(|e| PluginError::Other(e.to_string()))?;
            for note in &report.notes {
                eprintln!("# {note}");
            }
            print!("{}", report.stdout);
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(args) => status::run(&plugin.global, &args),
        Command::List(args) => list::run(&plugin.global, &args),
        Command::Sessions(args) => sessions::run(&plugin.global, &args),
        Command::Create(args) => drive::create(&plugin.global, &args),
        Command::RerunFailed(args) => drive::rerun_failed(&plugin.global, &args),
        Command::Pause(args) => drive::toggle(&plugin.global, &args, drive::Toggle::Pause),
        Command::Resume(args) => drive::toggle(&plugin.global, &args, drive::Toggle::Resume),
        Command::Cancel(args) => drive::toggle(&plugin.global, &args, drive::Toggle::Cancel),
    }
}

/// A runtime for the commands that talk to the API server.
pub fn block_on<T>(
    future: impl std::future::Future<Output = Result<T, PluginError>>,
) -> Result<T, PluginError> {
    tokio::runtime::Runtime::new()
        .map_err(|e| PluginError::Other(format!("starting the async runtime: {e}")))?
        .block_on(future)
}
