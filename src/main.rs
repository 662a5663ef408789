use std::process::ExitCode;

use backfill_operator::cli::{self, Cli, Command};
use backfill_operator::crds;
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Plan(args) => match cli::plan(&args) {
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
        Command::Crdgen => {
            let docs: Vec<String> = crds::all()
                .iter()
                .map(|(_, crd)| crds::to_yaml(crd))
                .collect();
            print!("{}", docs.join("---\n"));
            ExitCode::SUCCESS
        }
    }
}
