//! wallaroo's operations: everything a command does between reading its options and showing
//! its result. It opens a [`Workspace`] (the spec, its state store, the registries and an
//! offline bundle), discovers the release's images, builds the resource kinds and the engine,
//! and runs the plan, apply (fresh or saved), destroy, images, bundle, output and state flows.
//!
//! The `wallaroo` CLI, the benchmarks and the end-to-end tests that do not mean to run the
//! binary all go through here. It never prints: it returns data, and reports progress
//! through the engine's [`ApplyReporter`](wallaroo_engine::ApplyReporter).

mod airgap;
pub mod apply;
pub mod bundle;
pub mod discover;
mod error;
pub mod images;
pub mod init;
pub mod offline;
pub mod output;
pub mod permissions;
pub mod plan;
pub mod preflight;
pub mod prepare;
mod rehearse;
pub mod render_cache;
pub mod state;
pub mod support;
mod transfer;
mod unread;
pub mod workspace;

pub use error::OperationError;
pub use prepare::{Images, Prepared};
pub use wallaroo_oci::MirrorStats;
pub use workspace::{Workspace, WorkspaceOptions};
