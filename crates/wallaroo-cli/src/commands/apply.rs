//! `wallaroo apply` and `wallaroo destroy`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use tokio::sync::watch;
use wallaroo_engine::{ApplyOptions, Plan, PlanMode, PlanOptions, StepResult};

use crate::args::{ApplyArgs, Format, Global};
use crate::progress::Progress;
use crate::report::{Failure, stdout_style};

use super::{Images, Workspace, parse_duration, targets};

pub async fn run(global: &Global, args: &ApplyArgs, mode: PlanMode) -> Result<ExitCode, Failure> {
    let ws = Workspace::open(global, args.delete_data)?;
    let verb = if mode == PlanMode::Destroy {
        "destroy"
    } else {
        "apply"
    };
    let _lock = ws.store.lock(
        &format!("wallaroo {verb}"),
        parse_duration(&args.lock_timeout)?,
    )?;
    let state = ws.store.load()?;
    let style = stdout_style(global);
    let (plan, prepared) = match &args.plan_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::message(format!("cannot read the plan {}: {e}", path.display()))
            })?;
            let plan: Plan = serde_json::from_str(&text).map_err(|e| {
                Failure::message(format!("{} is not a wallaroo plan: {e}", path.display()))
            })?;
            let prepared = ws.prepare(state.as_ref(), Images::Saved(&plan)).await?;
            prepared
                .engine
                .check_fresh(&plan, &prepared.desired, state.as_ref())
                .await?;
            (plan, prepared)
        }
        None => {
            let opts = PlanOptions {
                mode,
                targets: targets(&args.target)?,
                excludes: targets(&args.exclude)?,
                delete_kept: match mode {
                    PlanMode::Destroy => args.include_images,
                    PlanMode::Apply => ws.spec.registry.as_ref().is_some_and(|r| r.prune),
                },
                ..PlanOptions::default()
            };
            let images = if mode == PlanMode::Destroy {
                Images::Unread
            } else {
                Images::Resolve {
                    refresh_pins: args.refresh_pins,
                }
            };
            let prepared = ws.prepare(state.as_ref(), images).await?;
            let mut plan = prepared
                .engine
                .plan(&prepared.desired, state.as_ref(), &opts)
                .await?;
            wallaroo_model::set_plan_images(&mut plan, &prepared.images);
            print!("{}", super::plan::show(&plan, Format::Text, style));
            if mode == PlanMode::Destroy && !args.delete_data {
                println!(
                    "\nData is kept: a namespace that holds PersistentVolumeClaims is not deleted (pass --delete-data to delete it and its data)."
                );
            }
            if !plan.has_changes() && plan.summary.read == 0 {
                return Ok(ExitCode::SUCCESS);
            }
            if !args.auto_approve && !confirm(verb)? {
                println!(
                    "\n{} cancelled.",
                    if mode == PlanMode::Destroy {
                        "Destroy"
                    } else {
                        "Apply"
                    }
                );
                return Ok(ExitCode::from(1));
            }
            (plan, prepared)
        }
    };

    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "\nInterrupt received: waiting for running steps to finish; press Ctrl-C again to quit at once."
            );
            let _ = tx.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let progress = Progress::new(&plan);
    let opts = ApplyOptions {
        parallelism: args.parallelism,
        interrupt: Some(rx),
        keep_going: args.keep_going,
    };
    let report = prepared
        .engine
        .apply(&plan, &prepared.desired, &ws.store, &opts, &progress)
        .await?;
    progress.finish();

    let failed: Vec<_> = report
        .steps
        .iter()
        .filter(|(_, s)| matches!(s, StepResult::Failed { .. }))
        .collect();
    let skipped = report
        .steps
        .values()
        .filter(|s| matches!(s, StepResult::Skipped { .. }))
        .count();
    for (address, step) in &failed {
        if let StepResult::Failed { error, .. } = step {
            eprintln!("Error: {address}: {error}");
        }
    }
    let done = |pred: fn(wallaroo_engine::Action) -> bool| {
        report
            .steps
            .values()
            .filter(|s| matches!(s, StepResult::Applied { action, .. } if pred(*action)))
            .count()
    };
    use wallaroo_engine::Action as A;
    let line = format!(
        "{} {}! Resources: {} added, {} changed, {} destroyed.",
        if mode == PlanMode::Destroy {
            "Destroy"
        } else {
            "Apply"
        },
        if report.success() {
            "complete"
        } else if report.interrupted {
            "interrupted"
        } else {
            "failed"
        },
        done(|a| matches!(a, A::Create | A::Replace)),
        done(|a| a == A::Update),
        done(|a| matches!(a, A::Delete | A::Replace)),
    );
    println!("\n{}", style.bold(&line));
    if let Some(m) = prepared.mirror.as_ref().map(|m| m.stats())
        && m.images > 0
    {
        println!(
            "Mirrored {} images: {} blobs copied ({} MB), {} mounted from another repository, {} already there.",
            m.images,
            m.blobs_copied,
            m.bytes_copied >> 20,
            m.blobs_mounted,
            m.blobs_present
        );
    }
    if skipped > 0 {
        println!("\n{skipped} step(s) did not run:");
        for (address, step) in &report.steps {
            if let StepResult::Skipped { reason, .. } = step {
                println!("  {address}: {reason}");
            }
        }
        println!("The lockfile records what was done; run `wallaroo plan` to see what is left.");
    }
    Ok(if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn confirm(verb: &str) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::message(format!(
            "refusing to {verb} without confirmation: stdin is not a terminal. Pass --auto-approve, or apply a saved plan"
        )));
    }
    print!(
        "\nDo you want to perform these actions?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
    );
    std::io::stdout().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::message(e.to_string()))?;
    Ok(answer.trim() == "yes")
}
