//! `plan`: preflight, then desired against live, under the run lock.

use std::path::Path;
use std::time::Duration;

use wallaroo_engine::{Address, Plan, PlanMode, PlanOptions};
use wallaroo_kube::preflight::{Check, Outcome};

use crate::error::OperationError;
use crate::prepare::Images;
use crate::workspace::Workspace;

/// What a plan is asked for.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    /// `--target`: only these resources and what they depend on.
    pub targets: Vec<Address>,
    /// `--exclude`: leave these out, with what depends on them.
    pub excludes: Vec<Address>,
    /// Resolve every image's tag again instead of keeping the lockfile's pins.
    pub refresh_pins: bool,
    /// How long to wait for another run's lock.
    pub lock_timeout: Duration,
}

/// A plan, with the preflight checks run before it (some may warn).
pub struct PlanOutcome {
    pub plan: Plan,
    pub preflight: Vec<Check>,
}

/// Runs preflight, then plans under the run lock. A failed preflight check stops here with
/// [`OperationError::Preflight`], before the lock is taken or anything is read.
pub async fn plan(ws: &Workspace, request: &PlanRequest) -> Result<PlanOutcome, OperationError> {
    let preflight = crate::preflight::checks(&ws.spec, &ws.helm).await?;
    if preflight.iter().any(|c| c.outcome == Outcome::Fail) {
        return Err(OperationError::Preflight(preflight));
    }
    let _lock = ws.store.lock("wallaroo plan", request.lock_timeout)?;
    let state = ws.store.load()?;
    let opts = PlanOptions {
        mode: PlanMode::Apply,
        targets: request.targets.clone(),
        excludes: request.excludes.clone(),
        delete_kept: ws.spec.registry.as_ref().is_some_and(|r| r.prune),
        ..PlanOptions::default()
    };
    let prepared = ws
        .prepare(
            state.as_ref(),
            Images::Resolve {
                refresh_pins: request.refresh_pins,
            },
        )
        .await?;
    let mut plan = prepared
        .engine
        .plan(&prepared.desired, state.as_ref(), &opts)
        .await?;
    wallaroo_model::set_plan_images(&mut plan, &prepared.images);
    Ok(PlanOutcome { plan, preflight })
}

/// Saves a plan file (no secrets are in it).
pub fn save(plan: &Plan, path: &Path) -> Result<(), OperationError> {
    let text = serde_json::to_string_pretty(plan).expect("plans serialize") + "\n";
    wallaroo_state::write_atomically(path, text.as_bytes()).map_err(|e| {
        OperationError::message(format!("cannot write the plan to {}: {e}", path.display()))
    })
}

/// Reads a plan saved with `plan --out`.
pub fn load(path: &Path) -> Result<Plan, OperationError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        OperationError::message(format!("cannot read the plan {}: {e}", path.display()))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        OperationError::message(format!("{} is not a wallaroo plan: {e}", path.display()))
    })
}
