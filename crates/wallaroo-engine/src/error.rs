//! The engine's errors. Each names the resource or the file involved and what to do next.

use crate::address::Address;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("dependency cycle between {}: break one of these dependencies", list(.resources))]
    Cycle { resources: Vec<Address> },
    #[error("{address} depends on {missing}, which is not in the spec")]
    UnknownDependency { address: Address, missing: Address },
    #[error("{address}: resource kind `{kind}` is not implemented in this version of wallaroo")]
    UnknownKind { address: Address, kind: String },
    #[error("reading {address} failed: {message}")]
    Refresh { address: Address, message: String },
    #[error(
        "the saved plan is stale: {reason}. Run `wallaroo plan --out FILE` again and review it"
    )]
    StalePlan { reason: String },
    #[error(
        "the saved plan was made by plan format {found}; this wallaroo reads format {expected}"
    )]
    PlanVersion { found: u32, expected: u32 },
    #[error("--target {0} matches no resource in the spec or the lockfile")]
    NoSuchTarget(Address),
    #[error(transparent)]
    State(#[from] wallaroo_state::StateError),
}

fn list(addrs: &[Address]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
