//! `wallaroo validate`.

use std::process::ExitCode;

use crate::args::{Global, ValidateArgs};
use crate::report::Failure;

pub fn run(global: &Global, args: &ValidateArgs) -> Result<ExitCode, Failure> {
    // The desired model reads and checks the files the spec names (the TLS pair).
    let (spec, desired) = wallaroo_operations::offline::desired(&super::workspace(global))?;
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
