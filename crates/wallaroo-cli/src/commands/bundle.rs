//! `wallaroo bundle create|verify|list`.

use std::process::ExitCode;

use wallaroo_operations::Workspace;

use crate::args::{BundleArgs, BundleCommand, Global};
use crate::report::Failure;

use super::workspace;

pub async fn run(global: &Global, args: &BundleArgs) -> Result<ExitCode, Failure> {
    match &args.command {
        BundleCommand::Create {
            out,
            since,
            refresh_pins,
        } => create(global, out, since.as_deref(), *refresh_pins).await,
        BundleCommand::Verify { file } => {
            let report = wallaroo_operations::bundle::verify(file).await?;
            for p in &report.problems {
                eprintln!("error: {p}");
            }
            println!(
                "{}: {} images, {} blobs, {} MB read{}",
                file.display(),
                report.images,
                report.blobs,
                report.bytes >> 20,
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
                println!("Every digest matches.");
                Ok(ExitCode::SUCCESS)
            } else {
                Err(Failure::message(format!(
                    "{} problems in {}",
                    report.problems.len(),
                    file.display()
                )))
            }
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

async fn create(
    global: &Global,
    out: &std::path::Path,
    since: Option<&std::path::Path>,
    refresh_pins: bool,
) -> Result<ExitCode, Failure> {
    let ws = Workspace::open(&workspace(global))?;
    let started = std::time::Instant::now();
    let report = wallaroo_operations::bundle::create(&ws, out, since, refresh_pins).await?;
    println!(
        "Wrote {}: {} images, {} blobs, {} MB of layers in {:.1}s{}",
        out.display(),
        report.images,
        report.blobs,
        report.bytes >> 20,
        started.elapsed().as_secs_f64(),
        if report.omitted > 0 {
            format!(
                "; {} blobs left out, the release in {} has them",
                report.omitted,
                since.map(|s| s.display().to_string()).unwrap_or_default()
            )
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}
