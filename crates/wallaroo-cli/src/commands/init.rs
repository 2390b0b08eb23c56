//! `wallaroo init`: a starting spec, from flags (asks nothing).

use std::process::ExitCode;

use wallaroo_spec::starter::{Starter, starter};

use crate::args::{Global, InitArgs};
use crate::report::Failure;

pub fn run(global: &Global, args: &InitArgs) -> Result<ExitCode, Failure> {
    let path = &global.config;
    if path.exists() && !args.force {
        return Err(Failure::message(format!(
            "{} exists; pass --force to replace it, or -c PATH to write elsewhere",
            path.display()
        )));
    }
    let text = starter(&Starter {
        version: args.wallaroo_version.clone(),
        license_channel: args.license_channel.clone(),
        domain: args.domain.clone(),
        vendor_registry: args.vendor_registry.clone(),
        registry: args.registry.clone(),
        registry_namespace: args.registry_namespace.clone(),
        kubernetes_distribution: args.kubernetes_distribution.clone(),
    });
    std::fs::write(path, text)
        .map_err(|e| Failure::message(format!("cannot write {}: {e}", path.display())))?;
    println!(
        "Wrote {}. Fill in what is marked CHANGE ME, set WALLAROO_VAR_vendor_password, \
         WALLAROO_VAR_registry_password and WALLAROO_VAR_admin_password, then run \
         `wallaroo validate` and `wallaroo plan`.",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
