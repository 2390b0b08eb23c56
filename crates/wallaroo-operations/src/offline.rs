//! What needs neither the cluster nor a registry: `validate` and `graph`.

use wallaroo_engine::{DesiredSet, EngineError};
use wallaroo_spec::Spec;

use crate::error::OperationError;
use crate::workspace::{WorkspaceOptions, load_spec};

/// The spec and its desired model without reading the chart, the lockfile or anything live:
/// what `graph` and `validate` show (extra images only). The desired model reads and checks
/// the files the spec names (the TLS pair).
pub fn desired(options: &WorkspaceOptions) -> Result<(Spec, DesiredSet), OperationError> {
    let spec = load_spec(options)?;
    let desired = wallaroo_model::from_spec(&spec)?;
    Ok((spec, desired))
}

/// The spec's dependency graph as DOT.
pub fn graph(desired: &DesiredSet) -> Result<String, EngineError> {
    let nodes: Vec<_> = desired
        .resources
        .values()
        .map(|r| (r.address.clone(), None, r.depends_on.clone()))
        .collect();
    wallaroo_engine::graph::to_dot(&nodes)
}
