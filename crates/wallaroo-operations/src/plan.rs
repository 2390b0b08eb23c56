//! `plan`: preflight, then desired against live, under the run lock.

use std::path::Path;
use std::time::Duration;

use wallaroo_engine::{Address, Plan, PlanMode, PlanOptions};
use wallaroo_kube::preflight::{Check, Outcome};

use crate::error::OperationError;
use crate::permissions::Purpose;
use crate::prepare::Images;
use crate::rehearse::Rehearsed;
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
    /// What the API server's rehearsal would refuse (also in the plan's `rehearsal`): the
    /// plan is shown, and then fails.
    pub refused: Vec<wallaroo_engine::Refusal>,
}

/// Runs preflight and plans under the run lock. The two run side by side (behind a slow link
/// to the API server, one after the other cost every round trip twice) and share what they
/// read; a failed preflight check wins over whatever the plan found, with
/// [`OperationError::Preflight`].
pub async fn plan(ws: &Workspace, request: &PlanRequest) -> Result<PlanOutcome, OperationError> {
    let _lock = ws.store.lock("wallaroo plan", request.lock_timeout)?;
    let cluster = ws.fresh_cluster().await?;
    let preflight = wallaroo_profile::within(
        "preflight",
        crate::preflight::checks_on(
            &ws.spec,
            &ws.helm,
            cluster,
            ws.target.as_deref(),
            crate::preflight::PullWhen {
                record: &ws.render_cache,
                always: false,
            },
        ),
    );
    let work = async {
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
                &opts,
            )
            .await?;
        let mut plan = prepared
            .engine
            .plan(&prepared.desired, state.as_ref(), &opts)
            .await?;
        let permissions = ws
            .permissions_for(&prepared.desired, &plan, Purpose::Plan)
            .await?;
        // The targets' tags asked during discovery served the refresh; later reads ask anew.
        ws.forget_prefetched();
        refuse_passwordless_users(&plan, &prepared.desired)?;
        wallaroo_model::set_plan_images(&mut plan, &prepared.images);
        set_vendor_checks(&mut plan, &prepared.vendor_checks);
        if let Some(mirror) = &prepared.mirror {
            crate::transfer::set_transfer(&mut plan, &prepared.desired, &mirror.sources).await;
        }
        if let Some(p) = &permissions {
            plan.warnings.extend(p.warning.clone());
            plan.inputs.insert("permissions".into(), p.summary.clone());
        }
        // The API server rehearses every write, as the identity that applies.
        let rehearsed = match permissions.as_ref().and_then(|p| p.no_rehearsal.clone()) {
            Some(why) => crate::rehearse::writes_to_cluster(&plan).then(|| Rehearsed {
                skipped: Some(why),
                ..Rehearsed::default()
            }),
            None => {
                wallaroo_profile::within(
                    "rehearsal",
                    ws.rehearse(&prepared.engine, &prepared.desired, &plan, state.as_ref()),
                )
                .await?
            }
        };
        let mut refused = Vec::new();
        if let Some(r) = &rehearsed {
            r.annotate(&mut plan);
            refused = r.found.refused.clone();
        }
        Ok::<_, OperationError>((plan, prepared.vendor_checks, refused))
    };
    tokio::pin!(preflight, work);
    let failed = |checks: &[Check]| checks.iter().any(|c| c.outcome == Outcome::Fail);
    // The vendor's preflights run inside the plan's work (they need the rendered release);
    // when they fail, our own checks are listed with them.
    let (checks, planned) = tokio::select! {
        biased;
        checks = &mut preflight => {
            let checks = checks?;
            if failed(&checks) {
                // The plan's reads are dropped unfinished.
                return Err(OperationError::Preflight(checks));
            }
            (checks, work.await)
        }
        planned = &mut work => (preflight.await?, planned),
    };
    match planned {
        Err(OperationError::Preflight(vendor)) => {
            let mut all = checks;
            all.extend(vendor);
            Err(OperationError::Preflight(all))
        }
        _ if failed(&checks) => Err(OperationError::Preflight(checks)),
        Err(e) => Err(e),
        Ok((plan, vendor, refused)) => {
            let mut all = checks;
            all.extend(vendor);
            Ok(PlanOutcome {
                plan,
                preflight: all,
                refused,
            })
        }
    }
}

/// Stops a plan that would create a user the spec gives no password.
pub(crate) fn refuse_passwordless_users(
    plan: &Plan,
    desired: &wallaroo_engine::DesiredSet,
) -> Result<(), OperationError> {
    let passwordless = wallaroo_model::users_without_password(plan, desired);
    if passwordless.is_empty() {
        return Ok(());
    }
    let one = passwordless.len() == 1;
    Err(OperationError::Message(format!(
        "{} {} not in Keycloak, and the spec gives no password to create {} with: add \
         `password = var.NAME` to {}, or an `import \"ADDRESS\" {{ id = \"USERNAME\" }}` block \
         when the user is there under another username",
        passwordless.join(", "),
        if one { "is" } else { "are" },
        if one { "it" } else { "them" },
        if one { "its block" } else { "their blocks" },
    )))
}

/// The vendor's preflight outcomes in the plan (`vendor_preflight`), so that JSON and
/// Markdown plans carry them.
fn set_vendor_checks(plan: &mut Plan, checks: &[Check]) {
    if checks.is_empty() {
        return;
    }
    let list: Vec<serde_json::Value> = checks
        .iter()
        .map(|c| {
            serde_json::json!({
                "check": c.name.trim_start_matches("vendor preflight: "),
                "outcome": format!("{:?}", c.outcome).to_lowercase(),
                "message": c.detail,
            })
        })
        .collect();
    plan.inputs
        .insert("vendor_preflight".into(), serde_json::Value::Array(list));
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
