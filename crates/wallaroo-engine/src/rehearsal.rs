//! Rehearsals: each write a plan would make, sent to the system that takes it as a trial that
//! stores nothing (Kubernetes' server-side dry run), so that what it would refuse is known
//! before anything is changed. A kind that can rehearse its changes says so by implementing
//! [`crate::ResourceKind::rehearse`]; the engine asks every kind of a plan's changes and gathers
//! what they answer ([`crate::Engine::rehearse`]).

use serde::{Deserialize, Serialize};

/// Why a write would be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// A field that cannot change once the object exists (a Deployment's selector).
    Immutable,
    /// An admission policy or webhook denied it.
    Policy,
    /// An object of that name exists and the writer may not take it over.
    Ownership,
    /// A ResourceQuota or LimitRange it does not fit.
    Quota,
    /// Its kind or API version is not served.
    Unserved,
    /// The object is not valid (a schema check, an unknown field).
    Invalid,
    /// The identity may not make it.
    Forbidden,
    /// Anything else the server answered.
    Other,
}

/// One write the system would refuse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The resource of the plan it belongs to.
    pub address: String,
    /// The object refused: `Deployment ns/name`, `ClusterRole name`.
    pub object: String,
    pub reason: RefusalReason,
    /// Where the server names one: `spec.selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The server's own message (secrets scrubbed by the kind).
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

/// What a rehearsal of some writes found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rehearsal {
    /// Writes sent and answered (accepted or refused).
    pub rehearsed: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refusal>,
    /// The server's warnings on accepted writes (`would violate PodSecurity`, a deprecated
    /// API), each with its object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Writes that could not be rehearsed, each with why (a webhook without dry-run
    /// support): never a silent pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_rehearsed: Vec<String>,
    /// Notes on how it was rehearsed (a short-lived namespace for a first install).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Rehearsal {
    /// Adds what `other` found.
    pub fn merge(&mut self, other: Rehearsal) {
        self.rehearsed += other.rehearsed;
        self.refused.extend(other.refused);
        self.warnings.extend(other.warnings);
        self.not_rehearsed.extend(other.not_rehearsed);
        self.notes.extend(other.notes);
    }

    /// Whether nothing was sent.
    pub fn is_empty(&self) -> bool {
        *self == Rehearsal::default()
    }
}
