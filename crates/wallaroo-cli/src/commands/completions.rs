//! `wallaroo completions SHELL`.

use std::process::ExitCode;

use clap::CommandFactory;

use crate::args::{Cli, CompletionsArgs};
use crate::report::Failure;

pub fn run(args: &CompletionsArgs) -> Result<ExitCode, Failure> {
    clap_complete::generate(
        args.shell,
        &mut Cli::command(),
        "wallaroo",
        &mut std::io::stdout(),
    );
    Ok(ExitCode::SUCCESS)
}
