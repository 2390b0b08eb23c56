//! `wallaroo apply` and `wallaroo destroy`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanDuration};
use serde_json::json;
use tokio::sync::watch;
use wallaroo_engine::{ApplyOptions, ApplyReport, PlanMode, StepResult, Transfer};
use wallaroo_operations::apply::ApplyRequest;
use wallaroo_operations::{Workspace, WorkspaceOptions};

use crate::args::{ApplyArgs, Format, Global};
use crate::events::{self, Events};
use crate::progress::Progress;
use crate::report::{Failure, stdout_style};

use super::{parse_duration, targets, workspace};

pub async fn run(global: &Global, args: &ApplyArgs, mode: PlanMode) -> Result<ExitCode, Failure> {
    let verb = if mode == PlanMode::Destroy {
        "destroy"
    } else {
        "apply"
    };
    if !args.json {
        return execute(global, args, mode, None).await;
    }
    let events = Events::new();
    events.version(verb);
    if !args.auto_approve && args.plan_file.is_none() {
        let failure = Failure::message(format!(
            "--json cannot ask for confirmation: pass --auto-approve, or {verb} a saved plan"
        ));
        events.diagnostic("error", &failure.plain());
        return Err(failure);
    }
    let result = execute(global, args, mode, Some(&events)).await;
    if let Err(failure) = &result {
        // A failure before any step ran: the stream still ends with a summary.
        events.diagnostic("error", &failure.plain());
        events.emit(
            "summary",
            json!({
                "command": verb,
                "outcome": "failed",
                "steps": {"applied": 0, "failed": 0, "skipped": 0},
                "resources": {"added": 0, "changed": 0, "destroyed": 0},
                "bytes": events::bytes_json(Default::default()),
                "wall_seconds": 0.0,
                "lockfile": null,
            }),
        );
    }
    result
}

/// What a finished run did, for the last lines of the text view and the `summary` event.
struct RunSummary {
    outcome: &'static str,
    applied: usize,
    failed: usize,
    skipped: usize,
    added: usize,
    changed: usize,
    destroyed: usize,
    bytes: Transfer,
    wall: Duration,
    lockfile: String,
}

impl RunSummary {
    fn of(report: &ApplyReport, wall: Duration, lockfile: String) -> RunSummary {
        use wallaroo_engine::Action as A;
        let count =
            |pred: &dyn Fn(&StepResult) -> bool| report.steps.values().filter(|s| pred(s)).count();
        let done = |pred: fn(A) -> bool| {
            count(&|s| matches!(s, StepResult::Applied { action, .. } if pred(*action)))
        };
        RunSummary {
            outcome: if report.success() {
                "complete"
            } else if report.interrupted {
                "interrupted"
            } else {
                "failed"
            },
            applied: count(
                &|s| matches!(s, StepResult::Applied { action, .. } if *action != A::NoOp),
            ),
            failed: count(&|s| matches!(s, StepResult::Failed { .. })),
            skipped: count(&|s| matches!(s, StepResult::Skipped { .. })),
            added: done(|a| matches!(a, A::Create | A::Replace)),
            changed: done(|a| a == A::Update),
            destroyed: done(|a| matches!(a, A::Delete | A::Replace)),
            bytes: report.transferred(),
            wall,
            lockfile,
        }
    }
}

async fn execute(
    global: &Global,
    args: &ApplyArgs,
    mode: PlanMode,
    events: Option<&Events>,
) -> Result<ExitCode, Failure> {
    let t0 = Instant::now();
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
    if let Some(e) = events {
        e.plan(&run.plan, run.saved);
        if !run.has_work() {
            let report = ApplyReport {
                steps: Default::default(),
                transfers: Default::default(),
                interrupted: false,
                summary: run.plan.summary,
                wall: Duration::ZERO,
            };
            summary_event(
                e,
                verb,
                &RunSummary::of(&report, t0.elapsed(), lockfile(&ws)),
                None,
                None,
            );
            return Ok(ExitCode::SUCCESS);
        }
    } else if !run.saved {
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

    // What each image weighs, to say what is left when the run stops short.
    let weights = run.plan.inputs.get("transfer").cloned();
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
    let opts = ApplyOptions {
        parallelism: args.parallelism,
        interrupt: Some(rx),
        keep_going: args.keep_going,
    };
    let outcome = match events {
        Some(e) => {
            let outcome = run.execute(&opts, e).await?;
            e.skipped(&outcome.report);
            outcome
        }
        None => {
            let progress = Progress::new(&run.plan);
            let outcome = run.execute(&opts, &progress).await?;
            progress.finish();
            outcome
        }
    };
    let report = &outcome.report;
    let summary = RunSummary::of(report, t0.elapsed(), lockfile(&ws));
    let exit = if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if let Some(e) = events {
        summary_event(
            e,
            verb,
            &summary,
            outcome.mirror.as_ref(),
            outcome.pods.as_ref(),
        );
        return Ok(exit);
    }

    eprint!("{}", failures_text(report));
    let line = format!(
        "{} {}! Resources: {} added, {} changed, {} destroyed.",
        if mode == PlanMode::Destroy {
            "Destroy"
        } else {
            "Apply"
        },
        summary.outcome,
        summary.added,
        summary.changed,
        summary.destroyed,
    );
    println!("\n{}", style.bold(&line));
    println!(
        "Steps: {} done, {} failed, {} not run; {} in all.",
        summary.applied,
        summary.failed,
        summary.skipped,
        HumanDuration(summary.wall)
    );
    if let Some(m) = &outcome.mirror
        && m.images > 0
    {
        println!(
            "Mirrored {} images: {} blobs copied ({} sent), {} mounted from another repository, {} already there; {} needed no transfer.",
            m.images,
            m.blobs_copied,
            HumanBytes(summary.bytes.moved),
            m.blobs_mounted,
            m.blobs_present,
            HumanBytes(summary.bytes.present),
        );
    } else if !summary.bytes.is_empty() {
        println!(
            "Bytes: {} moved, {} already there.",
            HumanBytes(summary.bytes.moved),
            HumanBytes(summary.bytes.present)
        );
    }
    if let Some(p) = &outcome.pods {
        print!("{}", pods_text(p));
    }
    if let Some(line) = left_to_mirror(report, weights.as_ref()) {
        println!("{line}");
    }
    if summary.skipped > 0 {
        println!("\n{} step(s) did not run:", summary.skipped);
        for (address, step) in &report.steps {
            if let StepResult::Skipped { reason, .. } = step {
                println!("  {address}: {reason}");
            }
        }
        println!("The lockfile records what was done; run `wallaroo plan` to see what is left.");
    }
    println!("Lockfile: {}", summary.lockfile);
    Ok(exit)
}

/// The failed steps' errors, each said once: steps that failed for the same reason (a
/// registry out of space fails every copy still running) share one error naming them all.
fn failures_text(report: &wallaroo_engine::ApplyReport) -> String {
    let mut reasons: Vec<(String, Vec<String>)> = Vec::new();
    for (address, step) in &report.steps {
        if let StepResult::Failed { error, .. } = step {
            let error = error.to_string();
            match reasons.iter_mut().find(|(e, _)| *e == error) {
                Some((_, addresses)) => addresses.push(address.to_string()),
                None => reasons.push((error, vec![address.to_string()])),
            }
        }
    }
    let mut out = String::new();
    for (error, addresses) in reasons {
        match addresses.as_slice() {
            [one] => out.push_str(&format!(
                "Error: {one}: {error}
"
            )),
            many => out.push_str(&format!(
                "Error: {error}
  ({} steps failed so: {})
",
                many.len(),
                many.join(", ")
            )),
        }
    }
    out
}

/// The images a run that stopped short did not mirror, and what they weigh at most (from the
/// plan's `transfer`): what the private registry still needs room for.
fn left_to_mirror(
    report: &wallaroo_engine::ApplyReport,
    weights: Option<&serde_json::Value>,
) -> Option<String> {
    let images = weights?.get("images")?.as_object()?;
    let left: Vec<u64> = report
        .steps
        .iter()
        .filter(|(_, step)| !matches!(step, StepResult::Applied { .. }))
        .filter_map(|(address, _)| images.get(&address.to_string())?.as_u64())
        .collect();
    if left.is_empty() {
        return None;
    }
    Some(format!(
        "Left to mirror: {} image(s), at most {} (blobs shared with what landed are not sent again).",
        left.len(),
        HumanBytes(left.iter().sum())
    ))
}

/// Where the run recorded what it did: the lockfile's path, or the state backend's location.
fn lockfile(ws: &Workspace) -> String {
    let path = ws.store.path();
    match std::env::current_dir() {
        Ok(cwd) if !ws.store.is_remote() && path.is_relative() => cwd
            .join(path)
            .components()
            .filter(|c| *c != std::path::Component::CurDir)
            .collect::<std::path::PathBuf>()
            .display()
            .to_string(),
        _ => path.display().to_string(),
    }
}

/// The release's pods after apply: how many pulled and are Ready, and each stuck pulling.
fn pods_text(p: &wallaroo_operations::apply::PodsReport) -> String {
    let mut out = format!(
        "Pods: {} of {} Ready; {} pulled their images from the registry",
        p.ready, p.total, p.pulled
    );
    if p.simulated > 0 {
        out.push_str(&format!(", {} on simulated nodes (no pull)", p.simulated));
    }
    out.push_str(".\n");
    for s in &p.stuck {
        out.push_str(&format!(
            "  pod {} on node {} is stuck: {}: {}\n",
            s.pod, s.node, s.reason, s.message
        ));
    }
    out
}

fn summary_event(
    events: &Events,
    verb: &str,
    s: &RunSummary,
    mirror: Option<&wallaroo_operations::MirrorStats>,
    pods: Option<&wallaroo_operations::apply::PodsReport>,
) {
    let mut event = json!({
        "command": verb,
        "outcome": s.outcome,
        "steps": {"applied": s.applied, "failed": s.failed, "skipped": s.skipped},
        "resources": {"added": s.added, "changed": s.changed, "destroyed": s.destroyed},
        "bytes": events::bytes_json(s.bytes),
        "wall_seconds": s.wall.as_secs_f64(),
        "lockfile": s.lockfile,
    });
    if let Some(m) = mirror.filter(|m| m.images > 0) {
        event["mirror"] = json!({
            "images": m.images,
            "blobs_copied": m.blobs_copied,
            "blobs_mounted": m.blobs_mounted,
            "blobs_present": m.blobs_present,
        });
    }
    if let Some(p) = pods {
        event["pods"] = serde_json::to_value(p).expect("pods serialize");
    }
    events.emit("summary", event);
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
