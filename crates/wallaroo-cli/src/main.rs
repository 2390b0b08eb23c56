//! The `wallaroo` command: parses arguments, calls the engine crates, renders their results.
//! It holds no engine logic; everything it shows is a pure rendering of returned data.

mod args;
mod commands;
mod report;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse_from(args::terraform_style(std::env::args_os()));
    let result = match &cli.command {
        Command::Validate(a) => commands::validate::run(&cli.global, a),
        Command::Fmt(a) => commands::fmt::run(&cli.global, a),
        Command::Completions(a) => commands::completions::run(a),
        Command::Plan(_)
        | Command::Apply(_)
        | Command::Destroy(_)
        | Command::Output(_)
        | Command::State(_)
        | Command::Graph(_)
        | Command::Bundle(_)
        | Command::ForceUnlock(_) => Err(report::Failure::message(format!(
            "`wallaroo {}` is not implemented yet",
            cli.command.name()
        ))),
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            report::print_failure(&failure);
            ExitCode::from(1)
        }
    }
}
