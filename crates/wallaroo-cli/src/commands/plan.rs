//! `wallaroo plan`.

use std::process::ExitCode;

use wallaroo_engine::{Plan, PlanMode, PlanOptions};

use crate::args::{Format, Global, PlanArgs};
use crate::render::{self, Style};
use crate::report::{Failure, stdout_style};

use super::{Images, Workspace, parse_duration, targets};

pub async fn run(global: &Global, args: &PlanArgs) -> Result<ExitCode, Failure> {
    let ws = Workspace::open(global, false)?;
    let checks = super::preflight::checks(&ws.spec).await?;
    let failed = checks
        .iter()
        .any(|c| c.outcome == wallaroo_kube::preflight::Outcome::Fail);
    if failed
        || checks
            .iter()
            .any(|c| c.outcome == wallaroo_kube::preflight::Outcome::Warn)
    {
        eprint!("Preflight:\n{}", super::preflight::render(&checks));
    }
    if failed {
        return Err(Failure::message(
            "preflight failed; fix the checks marked FAIL above (`wallaroo preflight` runs them alone)",
        ));
    }
    let _lock = ws
        .store
        .lock("wallaroo plan", parse_duration(&args.lock_timeout)?)?;
    let state = ws.store.load()?;
    let opts = PlanOptions {
        mode: PlanMode::Apply,
        targets: targets(&args.target)?,
        excludes: targets(&args.exclude)?,
        delete_kept: ws.spec.registry.as_ref().is_some_and(|r| r.prune),
        ..PlanOptions::default()
    };
    let prepared = ws
        .prepare(
            state.as_ref(),
            Images::Resolve {
                refresh_pins: args.refresh_pins,
            },
        )
        .await?;
    let mut plan = prepared
        .engine
        .plan(&prepared.desired, state.as_ref(), &opts)
        .await?;
    wallaroo_model::set_plan_images(&mut plan, &prepared.images);
    let format = if args.json { Format::Json } else { args.format };
    print!("{}", show(&plan, format, stdout_style(global)));
    if let Some(out) = &args.out {
        save(&plan, out)?;
        if format == Format::Text {
            println!(
                "\nSaved the plan to {}. Apply exactly this plan with:\n    wallaroo apply {}",
                out.display(),
                out.display()
            );
        }
    }
    Ok(if args.detailed_exitcode && plan.has_changes() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// A plan in the chosen view.
pub fn show(plan: &Plan, format: Format, style: Style) -> String {
    match format {
        Format::Text => render::text::plan(plan, style),
        Format::Markdown => render::markdown::plan(plan),
        Format::Json => serde_json::to_string_pretty(plan).expect("plans serialize") + "\n",
    }
}

/// Saves a plan file (no secrets are in it).
pub fn save(plan: &Plan, path: &std::path::Path) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(plan).expect("plans serialize") + "\n";
    wallaroo_state::write_atomically(path, text.as_bytes())
        .map_err(|e| Failure::message(format!("cannot write the plan to {}: {e}", path.display())))
}
