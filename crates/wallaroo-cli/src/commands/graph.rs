//! `wallaroo graph`: the spec's dependency graph as DOT (no cluster access needed).

use std::process::ExitCode;

use crate::args::{Global, PlanArgs};
use crate::report::Failure;

pub fn run(global: &Global, _args: &PlanArgs) -> Result<ExitCode, Failure> {
    let (_, desired) = wallaroo_operations::offline::desired(&super::workspace(global))?;
    let dot = wallaroo_operations::offline::graph(&desired)
        .map_err(|e| Failure::message(e.to_string()))?;
    print!("{dot}");
    Ok(ExitCode::SUCCESS)
}
