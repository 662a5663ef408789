//! `kubectl backfill`: the kubectl plugin (kubectl runs `kubectl-backfill`
//! from the PATH). Everything is in `backfill_operator::plugin`.

fn main() -> std::process::ExitCode {
    backfill_operator::plugin::main()
}
