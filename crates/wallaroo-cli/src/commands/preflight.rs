//! `wallaroo preflight`, also run by `wallaroo plan`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use wallaroo_kube::preflight::{Check, Outcome, PreflightInput, RegistryProbe};
use wallaroo_spec::Spec;

use crate::args::Global;
use crate::report::Failure;

pub async fn run(global: &Global) -> Result<ExitCode, Failure> {
    let spec = super::load_spec(global)?;
    let checks = checks(&spec).await?;
    print!("{}", render(&checks));
    let failed = checks.iter().filter(|c| c.outcome == Outcome::Fail).count();
    if failed > 0 {
        println!("\n{failed} check(s) failed.");
        return Ok(ExitCode::from(1));
    }
    println!("\nPreflight passed.");
    Ok(ExitCode::SUCCESS)
}

/// Runs the checks for a spec.
pub async fn checks(spec: &Spec) -> Result<Vec<Check>, Failure> {
    let client = wallaroo_kube::connect()
        .await
        .map_err(|e| Failure::message(e.to_string()))?;
    let mut nodes = BTreeMap::new();
    let mut selectors = BTreeMap::new();
    for (name, pool) in &spec.nodepool {
        if pool.nodes.is_empty() {
            selectors.insert(name.clone(), pool.selector.clone());
        } else {
            nodes.insert(name.clone(), pool.nodes.clone());
        }
    }
    let mut registries = Vec::new();
    if let Some(r) = &spec.registry {
        registries.push(RegistryProbe {
            role: "private",
            host: r.host.clone(),
            username: r.username.clone(),
            password: r.password.as_ref().map(|p| p.expose().to_string()),
            ca_file: r.ca_file.as_ref().map(|p| spec.resolve_path(p)),
        });
    }
    if let Some(s) = &spec.source
        && let Some(host) = &s.registry
    {
        registries.push(RegistryProbe {
            role: "vendor",
            host: host.clone(),
            username: s.username.clone(),
            password: s.password.as_ref().map(|p| p.expose().to_string()),
            ca_file: s.ca_file.as_ref().map(|p| spec.resolve_path(p)),
        });
    }
    let host = spec.wallaroo.service_host("api");
    let helm = std::env::var_os("HELM")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "helm".into());
    let input = PreflightInput {
        helm,
        nodes,
        selectors,
        registries,
        host,
    };
    Ok(wallaroo_kube::preflight::run(&client, &input).await)
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
