//! `wallaroo graph`: the spec's dependency graph as DOT (no cluster access needed).

use std::process::ExitCode;

use crate::args::{Global, PlanArgs};
use crate::report::Failure;

pub fn run(global: &Global, _args: &PlanArgs) -> Result<ExitCode, Failure> {
    let (_, desired) = super::offline(global)?;
    let nodes: Vec<_> = desired
        .resources
        .values()
        .map(|r| (r.address.clone(), None, r.depends_on.clone()))
        .collect();
    print!("{}", wallaroo_engine::graph::to_dot(&nodes)?);
    Ok(ExitCode::SUCCESS)
}
