//! `wallaroo bundle create|verify|list`.

use std::process::ExitCode;
use std::time::Instant;

use indicatif::{HumanBytes, HumanDuration};
use serde_json::json;
use wallaroo_engine::Transfer;
use wallaroo_operations::Workspace;

use crate::args::{BundleArgs, BundleCommand, Global};
use crate::events::{self, Events};
use crate::report::Failure;

use super::workspace;

pub async fn run(global: &Global, args: &BundleArgs) -> Result<ExitCode, Failure> {
    match &args.command {
        BundleCommand::Create {
            out,
            since,
            refresh_pins,
            split,
            sign_key,
            no_tools,
            tools_platform,
            json,
        } => {
            let events = json.then(Events::new);
            let request = wallaroo_operations::bundle::CreateRequest {
                out: out.clone(),
                since: since.clone(),
                refresh_pins: *refresh_pins,
                split: *split,
                sign_key: sign_key.clone(),
                tools: !*no_tools,
                tools_platforms: tools_platform.clone(),
            };
            streamed(events.as_ref(), "bundle create", async {
                // Ctrl-C stops the bundle: the work is dropped, which removes the unfinished
                // archive (and the disk space claimed for it).
                tokio::select! {
                    done = create(global, &request, events.as_ref()) => done,
                    Ok(()) = tokio::signal::ctrl_c() => {
                        eprintln!("\nInterrupt received: stopping.");
                        Err(Failure::Interrupted(format!(
                            "interrupted: {} was not written, and its unfinished {}.partial is removed",
                            out.display(),
                            out.display()
                        )))
                    }
                }
            })
            .await
        }
        BundleCommand::Verify { file, key, json } => {
            let events = json.then(Events::new);
            streamed(
                events.as_ref(),
                "bundle verify",
                verify(file, key.as_deref(), events.as_ref()),
            )
            .await
        }
        BundleCommand::ExtractTools {
            dir,
            bundle,
            platform,
        } => {
            let file = match bundle {
                Some(b) => b.clone(),
                None => {
                    let spec = wallaroo_operations::workspace::load_spec(&workspace(global))?;
                    let Some(b) = spec.source.as_ref().and_then(|s| s.bundle.as_ref()) else {
                        return Err(Failure::message(
                            "the spec reads from no bundle: pass --bundle FILE",
                        ));
                    };
                    spec.resolve_path(b)
                }
            };
            let written =
                wallaroo_operations::bundle::extract_tools(&file, dir, platform.as_deref())?;
            if written.is_empty() {
                return Err(Failure::message(format!(
                    "{} carries no programs{}",
                    file.display(),
                    platform
                        .as_ref()
                        .map(|p| format!(" for {p}"))
                        .unwrap_or_default()
                )));
            }
            for w in written {
                println!("{}", w.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        BundleCommand::List { file } => {
            let bundle = wallaroo_operations::bundle::open(file)?;
            println!(
                "release {} (written by wallaroo {})",
                bundle.manifest.release, bundle.manifest.wallaroo_version
            );
            for image in &bundle.manifest.images {
                println!(
                    "{}@{}\n    from {}",
                    image.source, image.digest, image.origin
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// With `--json`, opens the stream and, when the command fails, ends it with the failure
/// as a diagnostic and a failed summary.
async fn streamed(
    events: Option<&Events>,
    command: &str,
    work: impl std::future::Future<Output = Result<ExitCode, Failure>>,
) -> Result<ExitCode, Failure> {
    let Some(e) = events else {
        return work.await;
    };
    e.version(command);
    let t0 = Instant::now();
    let result = work.await;
    if let Err(failure) = &result {
        e.diagnostic("error", &failure.plain());
        let outcome = match failure {
            Failure::Interrupted(_) => "interrupted",
            _ => "failed",
        };
        e.emit(
            "summary",
            json!({
                "command": command,
                "outcome": outcome,
                "bytes": events::bytes_json(Default::default()),
                "wall_seconds": t0.elapsed().as_secs_f64(),
            }),
        );
    }
    result
}

async fn verify(
    file: &std::path::Path,
    key: Option<&std::path::Path>,
    events: Option<&Events>,
) -> Result<ExitCode, Failure> {
    let started = Instant::now();
    let what = format!("Checking {}", file.display());
    let report = crate::progress::watched(
        &what,
        "bundle.verify",
        events,
        wallaroo_operations::bundle::verify(file, key),
    )
    .await?;
    if let Some(e) = events {
        for p in &report.problems {
            e.diagnostic("error", p);
        }
        e.emit(
            "summary",
            json!({
                "command": "bundle verify",
                "outcome": if report.problems.is_empty() { "complete" } else { "failed" },
                "bytes": events::bytes_json(Transfer {
                    total: report.bytes,
                    moved: report.bytes,
                    present: 0,
                }),
                "wall_seconds": started.elapsed().as_secs_f64(),
                "file": file.display().to_string(),
                "images": report.images,
                "blobs": report.blobs,
                "omitted": report.omitted,
                "problems": report.problems.len(),
            }),
        );
        // The stream has said what failed, and ended.
        return Ok(if report.problems.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    } else {
        for p in &report.problems {
            eprintln!("error: {p}");
        }
        println!(
            "{}: {} images, {} blobs{}, {} read in {}{}",
            file.display(),
            report.images,
            report.blobs,
            if report.parts > 1 {
                format!(" in {} parts", report.parts)
            } else {
                String::new()
            },
            HumanBytes(report.bytes),
            HumanDuration(started.elapsed()),
            if report.omitted > 0 {
                format!(
                    ", {} blobs left out (a delta bundle: the previous release has them)",
                    report.omitted
                )
            } else {
                String::new()
            }
        );
        if report.problems.is_empty() {
            match &report.signed_by {
                Some(k) => println!("Signed by {k}; every digest matches."),
                None => println!("Every digest matches."),
            }
        }
    }
    if report.problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::message(format!(
            "{} problems in {}",
            report.problems.len(),
            file.display()
        )))
    }
}

async fn create(
    global: &Global,
    request: &wallaroo_operations::bundle::CreateRequest,
    events: Option<&Events>,
) -> Result<ExitCode, Failure> {
    let out = request.out.as_path();
    let since = request.since.as_deref();
    let ws = Workspace::open(&workspace(global))?;
    let started = std::time::Instant::now();
    let what = format!("Writing {}", out.display());
    let counted = std::sync::Mutex::new(Transfer::default());
    let report = crate::progress::watched(&what, "bundle.create", events, async {
        let report = wallaroo_operations::bundle::create(&ws, request).await;
        if let Some(p) = wallaroo_engine::progress::current() {
            *counted.lock().unwrap() = p.read();
        }
        report
    })
    .await?;
    let bytes = *counted.lock().unwrap();
    if let Some(e) = events {
        e.emit(
            "summary",
            json!({
                "command": "bundle create",
                "outcome": "complete",
                "bytes": events::bytes_json(bytes),
                "wall_seconds": started.elapsed().as_secs_f64(),
                "file": out.display().to_string(),
                "images": report.images,
                "blobs": report.blobs,
                "omitted": report.omitted,
            }),
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Wrote {}: {} images, {} blobs, {} of layers in {}{}{}",
        if report.files.len() > 2 {
            format!(
                "{} parts of {} ({})",
                report.files.iter().filter(|f| is_part(f)).count(),
                out.display(),
                report
                    .files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            out.display().to_string()
        },
        report.images,
        report.blobs,
        HumanBytes(report.bytes),
        HumanDuration(started.elapsed()),
        if report.omitted > 0 {
            format!(
                "; {} blobs left out ({} the release in {} has)",
                report.omitted,
                HumanBytes(bytes.present),
                since.map(|s| s.display().to_string()).unwrap_or_default()
            )
        } else {
            String::new()
        },
        match (report.tools.is_empty(), request.sign_key.is_some()) {
            (true, false) => String::new(),
            (true, true) => "; the index is signed".into(),
            (false, signed) => format!(
                "; programs carried: {}{}",
                report.tools.join(", "),
                if signed { "; the index is signed" } else { "" }
            ),
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// A numbered part (`release.tar.001`).
fn is_part(path: &std::path::Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.len() == 3 && e.chars().all(|c| c.is_ascii_digit()))
}
