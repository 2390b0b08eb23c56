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
    /// The API server would refuse writes of the plan (its rehearsal said so).
    #[error("{}", refusals_text(.0))]
    Rehearsal(Vec<wallaroo_engine::Refusal>),
    #[error("{0}")]
    Message(String),
}

/// The refusals of a rehearsal, one per object, with the field, the server's message and
/// what to do.
pub fn refusals_text(refused: &[wallaroo_engine::Refusal]) -> String {
    let mut out = format!(
        "the API server would refuse {} of this plan's writes, so apply would stop half way; nothing was changed:",
        refused.len()
    );
    for r in refused {
        let field = r
            .field
            .as_ref()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        out.push_str(&format!("\n  - {}{field}: {}", r.object, r.message));
        if !r.hint.is_empty() {
            out.push_str(&format!("\n    what to do: {}", r.hint));
        }
    }
    out
}

impl OperationError {
    pub fn message(m: impl Into<String>) -> OperationError {
        OperationError::Message(m.into())
    }
}
