//! `wallaroo plan`.

use std::process::ExitCode;

use wallaroo_engine::Plan;
use wallaroo_operations::plan::PlanRequest;
use wallaroo_operations::preflight::Outcome;

use crate::args::{Format, Global, PlanArgs};
use crate::render::{self, Style};
use crate::report::{Failure, stdout_style};

use super::{parse_duration, targets, workspace};

pub async fn run(global: &Global, args: &PlanArgs) -> Result<ExitCode, Failure> {
    let ws = wallaroo_operations::Workspace::open(&workspace(global))?;
    let request = PlanRequest {
        targets: targets(&args.target)?,
        excludes: targets(&args.exclude)?,
        refresh_pins: args.refresh_pins,
        lock_timeout: parse_duration(&args.lock_timeout)?,
    };
    let outcome = wallaroo_operations::plan::plan(&ws, &request).await?;
    // Shown when something warns, and always when the vendor's own checks ran.
    if outcome
        .preflight
        .iter()
        .any(|c| c.outcome == Outcome::Warn || c.name.starts_with("vendor preflight"))
    {
        eprint!(
            "Preflight:\n{}",
            super::preflight::render(&outcome.preflight)
        );
    }
    let plan = outcome.plan;
    let format = if args.json { Format::Json } else { args.format };
    print!("{}", show(&plan, format, stdout_style(global)));
    // What the API server would refuse: shown in the plan, then a failure (no plan saved).
    if !outcome.refused.is_empty() {
        return Err(wallaroo_operations::OperationError::Rehearsal(outcome.refused).into());
    }
    if let Some(out) = &args.out {
        wallaroo_operations::plan::save(&plan, out)?;
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
