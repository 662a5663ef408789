use std::process::ExitCode;

use backfill_operator::cli::{self, Cli, Command, LogFormat, ReleaseArgs, RunArgs};
use backfill_operator::{controller, crds, throttle};
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => run(cli.run),
        Some(Command::Run(args)) => run(args),
        Some(Command::Plan(args)) => match cli::plan(&args) {
            Ok(report) => {
                for note in &report.notes {
                    eprintln!("# {note}");
                }
                print!("{}", report.stdout);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Crdgen { dirs }) if dirs.is_empty() => {
            print!("{}", crds::stream());
            ExitCode::SUCCESS
        }
        Some(Command::ReleaseFinalizers(args)) => release_finalizers(args),
        Some(Command::Crdgen { dirs }) => match crds::write_to(&dirs) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(args: RunArgs) -> ExitCode {
    limit_malloc_arenas();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let settings = match args.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let limit = args.api_limit();
    let result = runtime.block_on(async {
        let config = kube::Config::infer()
            .await
            .map_err(kube::Error::InferConfig)?;
        let client = throttle::client(config.clone(), Some(limit))?;
        // The Lease's own client, outside the rate limit.
        let lease_client = throttle::client(config, None)?;
        controller::run(client, lease_client, settings).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the operator stopped");
            ExitCode::FAILURE
        }
    }
}

/// `release-finalizers`: one line per namespace on stdout, each Job that
/// could not be released on stderr (and a failing exit).
fn release_finalizers(args: ReleaseArgs) -> ExitCode {
    let namespaces = match args.namespaces() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let except = match args.excepted() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        // The same configuration as `run`: KUBECONFIG, ~/.kube/config, or
        // the pod's ServiceAccount.
        let client = kube::Client::try_default().await?;
        controller::jobs::release_all_finalizers(&client, &namespaces, &except).await
    });
    match result {
        Ok(report) => {
            print!("{}", cli::release_report(&report));
            let mut failed = false;
            for r in &report {
                for (job, why) in &r.failed {
                    eprintln!(
                        "error: Job {}/{job} keeps its finalizer: {why}",
                        r.namespace
                    );
                    failed = true;
                }
            }
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// glibc's malloc gives each thread that meets a locked arena one of its
/// own, up to eight per core, and an arena keeps what was freed in it.
/// The operator's work runs on one thread per core (the async runtime's
/// workers), so as many arenas serve it: with 10,000 Jobs, 1,000
/// Backfills and 500 Schedules this took its peak RSS from 67 to 62 MiB
/// (`make bench`, row 3). `MALLOC_ARENA_MAX` or a `GLIBC_TUNABLES`
/// setting of it, when given, is left to glibc.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned = std::env::var_os("MALLOC_ARENA_MAX").is_some()
            || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
        if !tuned {
            let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
            let arenas = libc::c_int::try_from(workers.max(2)).unwrap_or(libc::c_int::MAX);
            // SAFETY: mallopt only sets a malloc parameter; called before
            // any other thread exists.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, arenas);
            }
        }
    }
}

/// The async runtime of a command that talks to the API server; a
/// failure to start it is said on stderr.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("error: starting the async runtime: {e}");
        ExitCode::FAILURE
    })
}
