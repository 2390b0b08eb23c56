//! `wallaroo apply` and `wallaroo destroy`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use tokio::sync::watch;
use wallaroo_engine::{ApplyOptions, PlanMode, StepResult};
use wallaroo_operations::apply::ApplyRequest;
use wallaroo_operations::{Workspace, WorkspaceOptions};

use crate::args::{ApplyArgs, Format, Global};
use crate::progress::Progress;
use crate::report::{Failure, stdout_style};

use super::{parse_duration, targets, workspace};

pub async fn run(global: &Global, args: &ApplyArgs, mode: PlanMode) -> Result<ExitCode, Failure> {
    let options = WorkspaceOptions {
        delete_data: args.delete_data,
        ..workspace(global)
    };
    let ws = Workspace::open(&options)?;
    let verb = if mode == PlanMode::Destroy {
        "destroy"
    } else {
        "apply"
    };
    let request = ApplyRequest {
        mode,
        plan_file: args.plan_file.clone(),
        targets: targets(&args.target)?,
        excludes: targets(&args.exclude)?,
        include_images: args.include_images,
        refresh_pins: args.refresh_pins,
        lock_timeout: parse_duration(&args.lock_timeout)?,
    };
    let style = stdout_style(global);
    let run = wallaroo_operations::apply::start(&ws, &request).await?;
    if !run.saved {
        print!("{}", super::plan::show(&run.plan, Format::Text, style));
        if mode == PlanMode::Destroy && !args.delete_data {
            println!(
                "\nData is kept: a namespace that holds PersistentVolumeClaims is not deleted (pass --delete-data to delete it and its data)."
            );
        }
        if !run.has_work() {
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
    }

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
    let progress = Progress::new(&run.plan);
    let opts = ApplyOptions {
        parallelism: args.parallelism,
        interrupt: Some(rx),
        keep_going: args.keep_going,
    };
    let outcome = run.execute(&opts, &progress).await?;
    progress.finish();
    let report = &outcome.report;

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
    if let Some(m) = &outcome.mirror
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
