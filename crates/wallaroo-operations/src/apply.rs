//! `apply` and `destroy`: a fresh plan (or a saved one, checked for freshness) under the run
//! lock, then the engine's executor. Between [`start`] and [`Run::execute`] the caller shows
//! the plan and asks for confirmation; the lock is held throughout.

use std::path::PathBuf;
use std::time::Duration;

use wallaroo_engine::{
    Address, ApplyOptions, ApplyReport, ApplyReporter, Plan, PlanMode, PlanOptions,
};
pub use wallaroo_kube::pullcheck::{PodsReport, StuckPod};
use wallaroo_oci::MirrorStats;
use wallaroo_state::StateLock;

use crate::error::OperationError;
use crate::permissions::Purpose;
use crate::prepare::{Images, Prepared};
use crate::workspace::Workspace;

/// What an apply or destroy is asked for.
#[derive(Debug, Clone)]
pub struct ApplyRequest {
    pub mode: PlanMode,
    /// Apply exactly this saved plan instead of planning now.
    pub plan_file: Option<PathBuf>,
    pub targets: Vec<Address>,
    pub excludes: Vec<Address>,
    /// Destroy: delete the mirrored images as well (they are kept otherwise).
    pub include_images: bool,
    pub refresh_pins: bool,
    pub lock_timeout: Duration,
}

/// A plan ready to run, with the run lock held until it is dropped or executed.
pub struct Run<'w> {
    pub plan: Plan,
    /// Whether the plan came from a file (already reviewed) rather than being made now.
    pub saved: bool,
    prepared: Prepared,
    ws: &'w Workspace,
    _lock: StateLock,
}

/// What an apply did.
pub struct ApplyOutcome {
    pub report: ApplyReport,
    /// What mirroring copied, when the spec mirrors images.
    pub mirror: Option<MirrorStats>,
    /// After an apply that installed or upgraded the release: how its pods stand (pulled,
    /// Ready, stuck pulling). `None` when the release was not touched or could not be read.
    pub pods: Option<PodsReport>,
}

/// Takes the run lock and makes the plan (or reads the saved one and refuses it when the
/// lockfile, the live state or the spec moved since it was made).
pub async fn start<'w>(
    ws: &'w Workspace,
    request: &ApplyRequest,
) -> Result<Run<'w>, OperationError> {
    let verb = match request.mode {
        PlanMode::Destroy => "destroy",
        PlanMode::Apply => "apply",
    };
    let lock = ws
        .store
        .lock(&format!("wallaroo {verb}"), request.lock_timeout)?;
    let state = ws.store.load()?;
    ws.fresh_cluster().await?;
    let (plan, prepared, saved) = match &request.plan_file {
        Some(path) => {
            let plan = crate::plan::load(path)?;
            let scope = PlanOptions {
                mode: plan.mode,
                targets: plan.targets.clone(),
                excludes: plan.excludes.clone(),
                ..PlanOptions::default()
            };
            let prepared = ws
                .prepare(state.as_ref(), Images::Saved(&plan), &scope)
                .await?;
            prepared
                .engine
                .check_fresh(&plan, &prepared.desired, state.as_ref())
                .await?;
            ws.permissions_for(&prepared.desired, &plan, Purpose::Apply)
                .await?;
            rehearse_before_apply(ws, &prepared, &plan, state.as_ref(), true).await?;
            (plan, prepared, true)
        }
        None => {
            let opts = PlanOptions {
                mode: request.mode,
                targets: request.targets.clone(),
                excludes: request.excludes.clone(),
                delete_kept: match request.mode {
                    PlanMode::Destroy => request.include_images,
                    PlanMode::Apply => ws.spec.registry.as_ref().is_some_and(|r| r.prune),
                },
                ..PlanOptions::default()
            };
            let images = if request.mode == PlanMode::Destroy {
                Images::Unread
            } else {
                Images::Resolve {
                    refresh_pins: request.refresh_pins,
                }
            };
            let prepared = ws.prepare(state.as_ref(), images, &opts).await?;
            let mut plan = prepared
                .engine
                .plan(&prepared.desired, state.as_ref(), &opts)
                .await?;
            ws.permissions_for(&prepared.desired, &plan, Purpose::Apply)
                .await?;
            if let Some(r) =
                rehearse_before_apply(ws, &prepared, &plan, state.as_ref(), false).await?
            {
                r.annotate(&mut plan);
            }
            // The targets' tags asked during discovery served the refresh; later reads ask anew.
            ws.forget_prefetched();
            crate::plan::refuse_passwordless_users(&plan, &prepared.desired)?;
            wallaroo_model::set_plan_images(&mut plan, &prepared.images);
            if let Some(mirror) = &prepared.mirror {
                crate::transfer::set_transfer(&mut plan, &prepared.desired, &mirror.sources).await;
            }
            (plan, prepared, false)
        }
    };
    Ok(Run {
        plan,
        saved,
        prepared,
        ws,
        _lock: lock,
    })
}

/// The API server's rehearsal of everything the plan writes, before anything is written:
/// a refusal stops the apply with nothing changed. The release's objects it replaces (an
/// immutable field, `helm { replace_immutable = true }`) are handed to the release's upgrade;
/// a saved plan may only replace what it showed.
async fn rehearse_before_apply(
    ws: &Workspace,
    prepared: &Prepared,
    plan: &Plan,
    state: Option<&wallaroo_state::Lockfile>,
    saved: bool,
) -> Result<Option<crate::rehearse::Rehearsed>, OperationError> {
    let Some(r) = wallaroo_profile::within(
        "rehearsal",
        ws.rehearse(&prepared.engine, &prepared.desired, plan, state),
    )
    .await?
    else {
        return Ok(None);
    };
    if let Some(e) = r.refusal_error() {
        return Err(e);
    }
    if saved {
        let shown: Vec<String> = plan
            .inputs
            .get("rehearsal")
            .and_then(|v| v["replacing"].as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let unseen: Vec<String> = r
            .replacing
            .iter()
            .map(|x| format!("{}: {}", x.object, x.why))
            .filter(|x| !shown.contains(x))
            .collect();
        if !unseen.is_empty() {
            return Err(OperationError::message(format!(
                "apply would replace (delete and make again) what the saved plan did not show:\n  - {}\nPlan again and review it; nothing was changed.",
                unseen.join("\n  - ")
            )));
        }
    }
    *ws.before_upgrade.lock().expect("upgrade lock") = wallaroo_kube::rehearse::BeforeUpgrade {
        crds: r.crds.clone(),
        replacing: r.replacing.clone(),
    };
    Ok(Some(r))
}

impl Run<'_> {
    /// Whether there is anything to do (changes, or outputs to read).
    pub fn has_work(&self) -> bool {
        self.plan.has_changes() || self.plan.summary.read > 0
    }

    /// Runs the plan, recording every finished step in the lockfile; the lock is released
    /// when this returns.
    pub async fn execute(
        self,
        options: &ApplyOptions,
        reporter: &dyn ApplyReporter,
    ) -> Result<ApplyOutcome, OperationError> {
        let started = std::time::SystemTime::now();
        let report = self
            .prepared
            .engine
            .apply(
                &self.plan,
                &self.prepared.desired,
                &self.ws.store,
                options,
                reporter,
            )
            .await?;
        // The release's pods, when this run installed or upgraded it.
        let release_touched = self.plan.mode == PlanMode::Apply
            && self.plan.changes.iter().any(|c| {
                c.kind == "helm_release"
                    && matches!(
                        report.steps.get(&c.address),
                        Some(
                            wallaroo_engine::StepResult::Applied { .. }
                                | wallaroo_engine::StepResult::Failed { .. }
                        )
                    )
            });
        let pods = if release_touched {
            match self.ws.cluster().await {
                Ok(cluster) => wallaroo_kube::pullcheck::release_pods(
                    cluster,
                    &self.ws.spec.wallaroo.namespace,
                    started,
                )
                .await
                .ok(),
                Err(_) => None,
            }
        } else {
            None
        };
        Ok(ApplyOutcome {
            report,
            mirror: self.prepared.mirror.as_ref().map(|m| m.stats()),
            pods,
        })
    }
}
