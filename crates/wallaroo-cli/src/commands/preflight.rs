//! `wallaroo preflight`, also run by `wallaroo plan`.

use std::process::ExitCode;

use wallaroo_operations::preflight::{Check, Outcome};

use crate::args::Global;
use crate::report::Failure;

pub async fn run(global: &Global) -> Result<ExitCode, Failure> {
    let options = super::workspace(global);
    let ws = wallaroo_operations::Workspace::open(&options)?;
    let checks = wallaroo_operations::preflight::checks(&ws).await?;
    print!("{}", render(&checks));
    let failed = checks.iter().filter(|c| c.outcome == Outcome::Fail).count();
    if failed > 0 {
        println!("\n{failed} check(s) failed.");
        return Ok(ExitCode::from(1));
    }
    println!("\nPreflight passed.");
    Ok(ExitCode::SUCCESS)
}

/// One line per check, a hint under each that did not pass.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let mark = match c.outcome {
            Outcome::Pass => "ok  ",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
        };
        out.push_str(&format!("  {mark} {}: {}\n", c.name, c.detail));
        if c.outcome != Outcome::Pass
            && let Some(h) = &c.hint
        {
            out.push_str(&format!("         {h}\n"));
        }
    }
    out
}
