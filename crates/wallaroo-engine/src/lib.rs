//! The wallaroo engine: resources with addresses, refresh, diff, the plan DAG and the
//! concurrent apply executor that records every finished step in the lockfile.
//!
//! It is general over [`ResourceKind`]s: registry and cluster kinds plug in without the
//! engine knowing them, and it knows nothing of Wallaroo or of the spec language (the
//! `wallaroo-model` crate turns a spec into a [`DesiredSet`]). It never prints; progress
//! goes through [`ApplyReporter`].

pub mod address;
mod diff;
mod engine;
mod error;
pub mod exec;
pub mod graph;
pub mod json;
pub mod plan;
pub mod progress;
pub mod rehearsal;
pub mod resource;
pub mod testkit;
pub mod value;

pub use address::{Address, AddressError};
pub use engine::{
    ApplyOptions, ApplyReport, ApplyReporter, Engine, LiveSnapshot, PROGRESS_EVERY, PlanOptions,
    Silent, StepResult,
};
pub use error::EngineError;
pub use plan::{Action, AttrChange, Drift, Plan, PlanMode, ResourceChange, Summary};
pub use progress::{StepProgress, Transfer};
pub use rehearsal::{Refusal, RefusalReason, Rehearsal};
pub use resource::{
    Attrs, DesiredResource, DesiredSet, KindRegistry, ReadRequest, ResourceError, ResourceKind,
    error_chain,
};
