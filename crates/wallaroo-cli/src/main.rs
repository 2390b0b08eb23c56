//! The `wallaroo` command: parses arguments, calls the engine crates, renders their results.
//! It holds no engine logic; everything it shows is a pure rendering of returned data.

mod args;
mod commands;
mod events;
mod progress;
mod render;
mod report;

use std::process::ExitCode;

use clap::Parser;
use wallaroo_engine::PlanMode;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse_from(args::terraform_style(std::env::args_os()));
    // kube-rs and reqwest share one TLS provider, installed before any client exists.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let g = &cli.global;
    let result = match &cli.command {
        Command::Validate(a) => commands::validate::run(g, a),
        Command::Fmt(a) => commands::fmt::run(g, a),
        Command::Completions(a) => commands::completions::run(a),
        Command::Plan(a) => runtime.block_on(commands::plan::run(g, a)),
        Command::Apply(a) => runtime.block_on(commands::apply::run(g, a, PlanMode::Apply)),
        Command::Destroy(a) => runtime.block_on(commands::apply::run(g, a, PlanMode::Destroy)),
        Command::Graph(a) => commands::graph::run(g, a),
        Command::Preflight => runtime.block_on(commands::preflight::run(g)),
        Command::State(a) => commands::state::run(g, a),
        Command::Output(a) => runtime.block_on(commands::output::run(g, a)),
        Command::ForceUnlock(a) => commands::state::force_unlock(g, a),
        Command::Images(a) => runtime.block_on(commands::images::run(g, a)),
        Command::Bundle(a) => runtime.block_on(commands::bundle::run(g, a)),
        Command::SupportBundle(a) => runtime.block_on(commands::support::run(g, a)),
        Command::Rbac(a) => runtime.block_on(commands::rbac::run(g, a)),
        Command::Init(a) => runtime.block_on(commands::init::run(g, a)),
        Command::Lsp => match wallaroo_lsp::run_stdio() {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => Err(report::Failure::message(format!("wallaroo lsp: {e}"))),
        },
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            report::print_failure(&failure);
            ExitCode::from(1)
        }
    }
}
