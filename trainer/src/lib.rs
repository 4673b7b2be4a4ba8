//! The `fira` command line as a library, so the workspace's end-to-end tests can run the same
//! entry point ([`run_cli`]) as the binary.
//!
//! Exit status: 0 on success, 2 when the input is at fault (flags, configs, files: nothing is
//! written), 1 when a run fails on its own.

mod exit;
mod info;

use clap::{Parser, Subcommand};

pub use crate::exit::Failure;

#[derive(Parser)]
#[command(name = "fira", version, about = "Full-rank training of LLaMA under low-rank optimizer memory (Fira) on Burn")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parameter counts of a model and the optimizer's selection and state memory, without training.
    Info(info::InfoArgs),
}

/// Parses the process arguments, runs the command and returns the exit status; errors are
/// printed to stderr with their context.
pub fn run_cli() -> i32 {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Info(args) => info::run(&args),
    };
    match outcome {
        Ok(()) => 0,
        Err(failure) => {
            eprintln!("error: {:#}", failure.error());
            failure.exit_code()
        }
    }
}
