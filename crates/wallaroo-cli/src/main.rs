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
    tune_allocator();
    wallaroo_profile::start();
    let cli = Cli::parse_from(args::terraform_style(std::env::args_os()));
    // kube-rs and reqwest share one TLS provider, installed before any client exists.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Blocking threads resolve host names and read files; a burst of new connections would
    // otherwise start one thread each (each with its stack and allocator arena).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(8)
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
    if let Some(path) = std::env::var_os("WALLAROO_PROFILE") {
        write_profile(std::path::Path::new(&path));
    }
    match result {
        Ok(code) => code,
        Err(failure) => {
            report::print_failure(&failure);
            ExitCode::from(1)
        }
    }
}

/// Writes where the run's time went (`WALLAROO_PROFILE=FILE`): the whole run's wall time and
/// peak memory, then each phase's wall time, requests, bytes and the peak memory when it
/// ended. Names and figures only; nothing of the spec or its secrets.
fn write_profile(path: &std::path::Path) {
    let (wall, peak_rss_kb) = wallaroo_profile::total();
    let text = serde_json::json!({
        "wall_ms": wall.as_secs_f64() * 1000.0,
        "peak_rss_kb": peak_rss_kb,
        "phases": wallaroo_profile::figures(),
    });
    if let Err(e) = std::fs::write(path, format!("{text:#}\n")) {
        eprintln!(
            "wallaroo: cannot write the profile to {}: {e}",
            path.display()
        );
    }
}

/// glibc's allocator gives each thread that allocates an arena of its own, and raises its
/// mmap threshold to the size of each large block freed, after which such blocks are carved
/// from (and kept in) the heap. A mirror allocates its in-flight buffers (hyper's grow to
/// 400 KiB per connection) on whichever worker thread runs the transfer, so both inflate
/// the peak: one arena and a fixed threshold of 128 KiB (large buffers are mapped and
/// returned on free) took the `release` preset's peak from 24 MB to 19 MB at the same wall
/// time (`cargo bench -p wallaroo-cli --bench mirror`). An operator's own `MALLOC_ARENA_MAX`,
/// `MALLOC_MMAP_THRESHOLD_` or `GLIBC_TUNABLES` wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    let chosen = [
        "MALLOC_ARENA_MAX",
        "MALLOC_MMAP_THRESHOLD_",
        "GLIBC_TUNABLES",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some());
    if chosen {
        return;
    }
    // SAFETY: mallopt only sets glibc's allocator parameters; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
