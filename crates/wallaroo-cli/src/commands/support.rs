//! `wallaroo support-bundle`.

use std::process::ExitCode;

use wallaroo_operations::plan::PlanRequest;

use crate::args::{Format, Global, SupportBundleArgs};
use crate::render::Style;
use crate::report::Failure;

use super::workspace;

pub async fn run(global: &Global, args: &SupportBundleArgs) -> Result<ExitCode, Failure> {
    let options = workspace(global);
    let mut bundle = wallaroo_operations::support::collect(&options, args.log_lines).await?;
    // The plan as the JSON view shows it (secrets already hidden there); a plan that cannot
    // be made is worth sending too.
    let planned = match wallaroo_operations::Workspace::open(&options) {
        Ok(ws) => wallaroo_operations::plan::plan(
            &ws,
            &PlanRequest {
                targets: Vec::new(),
                excludes: Vec::new(),
                refresh_pins: false,
                lock_timeout: std::time::Duration::from_secs(30),
            },
        )
        .await
        .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match planned {
        Ok(outcome) => bundle.add(
            "plan.json",
            super::plan::show(&outcome.plan, Format::Json, Style::plain()).into_bytes(),
        ),
        Err(e) => bundle.add("plan.error.txt", e.into_bytes()),
    }
    // troubleshoot's layout when its `support-bundle` is at hand (the air-gap guide makes it
    // a requirement of the admin host), else wallaroo's own archive.
    let program = wallaroo_operations::support::support_bundle_program();
    let written = match &program {
        Some(p) => {
            bundle
                .write_troubleshoot(&args.out, p, args.log_lines)
                .await?
        }
        None => bundle.write(&args.out)?,
    };
    println!(
        "Wrote {}{} ({} files, {} bytes before compression; secrets redacted).",
        args.out.display(),
        match &program {
            Some(p) => format!(", a troubleshoot support bundle made by {}", p.display()),
            None => ", wallaroo's own layout (troubleshoot's `support-bundle` was not found: set WALLAROO_SUPPORT_BUNDLE or put it on the PATH for troubleshoot's layout)".into(),
        },
        written.files,
        written.bytes
    );
    Ok(ExitCode::SUCCESS)
}
