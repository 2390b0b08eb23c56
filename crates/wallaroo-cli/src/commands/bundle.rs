//! `wallaroo bundle create|verify|list`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use crate::args::{BundleArgs, BundleCommand, Global};
use crate::report::Failure;

use super::{Workspace, oci};

pub async fn run(global: &Global, args: &BundleArgs) -> Result<ExitCode, Failure> {
    match &args.command {
        BundleCommand::Create {
            out,
            since,
            refresh_pins,
        } => create(global, out, since.as_deref(), *refresh_pins).await,
        BundleCommand::Verify { file } => {
            let path = file.clone();
            let report = tokio::task::spawn_blocking(move || wallaroo_oci::bundle::verify(&path))
                .await
                .expect("verify does not panic")
                .map_err(oci)?;
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
            let bundle = wallaroo_oci::bundle::Bundle::open(file).map_err(oci)?;
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
    let ws = Workspace::open(global, false)?;
    if ws.bundle.is_some() {
        return Err(Failure::message(
            "this spec reads from a bundle (`source { bundle = ... }`); create bundles with a spec that names the vendor registry",
        ));
    }
    let state = ws.store.load()?;
    let (images, sources) = ws.images(state.as_ref(), refresh_pins).await?;
    let mut inputs = Vec::new();
    for image in &images {
        let (host, _, _) = wallaroo_model::split_reference(&image.source);
        let pin = image.pin.as_ref().expect("images() pins every image");
        inputs.push(wallaroo_oci::bundle::BundleInput {
            source: image.source.clone(),
            origin: image.origin.clone(),
            digest: pin.source_digest.clone(),
            from: sources[&host].clone(),
        });
    }
    let skip = match since {
        Some(path) => {
            let previous = wallaroo_state::StateStore::new(path)
                .load()?
                .ok_or_else(|| Failure::message(format!("{} does not exist", path.display())))?;
            let pins: BTreeMap<String, String> = wallaroo_oci::pins::recorded(
                previous
                    .resources
                    .values()
                    .filter(|r| r.kind == "image")
                    .map(|r| &r.attributes),
            )
            .into_iter()
            .map(|(source, pin)| (source, pin.source_digest))
            .collect();
            wallaroo_oci::bundle::blobs_of(&sources, &pins)
                .await
                .map_err(oci)?
        }
        None => Default::default(),
    };
    let started = std::time::Instant::now();
    let report = wallaroo_oci::bundle::create(out, &ws.spec.wallaroo.version, &inputs, &skip)
        .await
        .map_err(oci)?;
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
