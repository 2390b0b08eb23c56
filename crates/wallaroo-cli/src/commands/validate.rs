//! `wallaroo validate`.

use std::process::ExitCode;

use crate::args::{Global, ValidateArgs};
use crate::report::Failure;

pub fn run(global: &Global, args: &ValidateArgs) -> Result<ExitCode, Failure> {
    // The desired model reads and checks the files the spec names (the TLS pair).
    let (spec, desired) = match wallaroo_operations::offline::desired(&super::workspace(global)) {
        Ok(r) => r,
        // For editors and CI: every problem, with its place, as JSON on stdout.
        Err(wallaroo_operations::OperationError::Spec(errors)) if args.json => {
            let problems: Vec<serde_json::Value> = errors
                .0
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "file": d.file,
                        "line": d.location.map(|l| l.0),
                        "column": d.location.map(|l| l.1),
                        "message": d.message,
                        "help": d.help,
                    })
                })
                .collect();
            let out = serde_json::json!({"valid": false, "problems": problems});
            println!(
                "{}",
                serde_json::to_string_pretty(&out).expect("JSON values always print")
            );
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    for w in &desired.warnings {
        eprintln!("Warning: {w}");
    }
    if args.json {
        let text =
            serde_json::to_string_pretty(&spec.redacted_json()).expect("JSON values always print");
        println!("{text}");
    } else {
        println!(
            "The spec {} is valid: Wallaroo {} ({:?}) in namespace {}, {} nodepool(s), {} user(s).",
            global.config.display(),
            spec.wallaroo.version,
            spec.wallaroo.method,
            spec.wallaroo.namespace,
            spec.nodepool.len(),
            spec.user.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
