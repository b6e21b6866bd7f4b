//! `fruix`: parses the command line, runs the command, maps the result to
//! an exit status (0 success, 1 findings, 2 error) in this one place.

use std::process::ExitCode;

use clap::Parser;
use fruix_host_builder::cli::{Cli, Command};
use fruix_host_builder::{Outcome, commands};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Store(c) => commands::store::run(c),
        Command::System(c) => commands::system::run(c),
        Command::ScanPrefixes(a) => commands::scan::run(a),
        Command::Query(a) => commands::query::run(a),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Findings) => ExitCode::from(1),
        // Output cut short by a closed pipe (`| head`) is not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` folds the context chain into one line.
            eprintln!("fruix: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}
