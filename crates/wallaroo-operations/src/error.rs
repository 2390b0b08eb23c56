//! Why an operation failed. The CLI renders these; the spec's diagnostics keep their
//! locations for miette.

use wallaroo_kube::preflight::Check;

#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// The spec is invalid: located diagnostics, each with a label and help.
    #[error(transparent)]
    Spec(#[from] wallaroo_spec::SpecErrors),
    #[error(transparent)]
    Engine(#[from] wallaroo_engine::EngineError),
    #[error(transparent)]
    State(#[from] wallaroo_state::StateError),
    #[error(transparent)]
    Registry(#[from] wallaroo_oci::OciError),
    #[error(transparent)]
    Cluster(#[from] wallaroo_kube::KubeError),
    #[error(transparent)]
    Desired(#[from] wallaroo_model::DesiredError),
    /// A check that must pass before a plan failed; the checks say which and why.
    #[error(
        "preflight failed; fix the checks marked FAIL above (`wallaroo preflight` runs them alone)"
    )]
    Preflight(Vec<Check>),
    #[error("{0}")]
    Message(String),
}

impl OperationError {
    pub fn message(m: impl Into<String>) -> OperationError {
        OperationError::Message(m.into())
    }
}
