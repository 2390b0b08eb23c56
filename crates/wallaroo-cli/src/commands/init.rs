//! `wallaroo init`: a starting spec, from flags (asks nothing), or `--from-cluster` the spec
//! of the install that is running.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wallaroo_operations::init::{FromCluster, Hints};
use wallaroo_spec::starter::{Starter, starter};

use crate::args::{Global, InitArgs};
use crate::report::Failure;

pub async fn run(global: &Global, args: &InitArgs) -> Result<ExitCode, Failure> {
    let path = &global.config;
    if path.exists() && !args.force {
        return Err(Failure::message(format!(
            "{} exists; pass --force to replace it, or -c PATH to write elsewhere",
            path.display()
        )));
    }
    let dir = spec_dir(path);
    if args.from_cluster {
        return from_cluster(path, &dir, args).await;
    }
    let text = starter(&Starter {
        version: args.wallaroo_version.clone(),
        license_channel: args.license_channel.clone(),
        domain: args.domain.clone(),
        vendor_registry: args.vendor_registry.clone(),
        vendor_username: args.vendor_username.clone(),
        vendor_ca_file: args
            .vendor_ca_file
            .as_deref()
            .map(|p| written_path(p, &dir)),
        registry: args.registry.clone(),
        registry_namespace: args.registry_namespace.clone(),
        registry_ca_file: args
            .registry_ca_file
            .as_deref()
            .map(|p| written_path(p, &dir)),
        kubernetes_distribution: args.kubernetes_distribution.clone(),
    });
    write(path, &text)?;
    println!(
        "Wrote {}. Fill in what is marked CHANGE ME, set WALLAROO_VAR_vendor_password, \
         WALLAROO_VAR_registry_password and WALLAROO_VAR_admin_password, then run \
         `wallaroo validate` and `wallaroo plan`.",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn from_cluster(path: &Path, dir: &Path, args: &InitArgs) -> Result<ExitCode, Failure> {
    let mut nodes = std::collections::BTreeMap::new();
    for pair in args.nodes.iter().flat_map(|s| s.split(',')) {
        let Some((k, v)) = pair.split_once('=').filter(|(k, _)| !k.trim().is_empty()) else {
            return Err(Failure::message(format!(
                "--nodes: `{pair}` is not KEY=VALUE (write e.g. --nodes team=ml,env=prod)"
            )));
        };
        nodes.insert(k.trim().to_string(), v.trim().to_string());
    }
    let req = FromCluster {
        release: args.release.clone(),
        namespace: args.namespace.clone(),
        nodes,
        hints: Hints {
            license_channel: args.license_channel.clone(),
            vendor_registry: args.vendor_registry.clone(),
            vendor_username: args.vendor_username.clone(),
            vendor_ca_file: args.vendor_ca_file.as_deref().map(|p| written_path(p, dir)),
            registry_ca_file: args
                .registry_ca_file
                .as_deref()
                .map(|p| written_path(p, dir)),
            keycloak_url: args.keycloak_url.clone(),
            registry_username: args.registry_username.clone(),
            base_dir: dir.to_path_buf(),
        },
    };
    let (generated, release) = wallaroo_operations::init::from_cluster(&req).await?;
    write(path, &generated.text)?;
    println!("Wrote {} from helm release {release}.", path.display());
    if !generated.report.is_empty() {
        println!("\nWhat could not be mapped as it is (also at the top of the spec):");
        for line in &generated.report {
            println!("  - {line}");
        }
    }
    println!("\nSet these before `wallaroo plan` (the spec holds no secret):");
    for v in &generated.variables {
        println!("  WALLAROO_VAR_{}  {}", v.name, v.description);
    }
    println!(
        "\nThen `wallaroo plan` adopts what is running and should change nothing in the \
         release, the nodes or the users."
    );
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, text)
        .map_err(|e| Failure::message(format!("cannot write {}: {e}", path.display())))
}

fn spec_dir(path: &Path) -> PathBuf {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// A path given on the command line as the spec must say it: relative to the spec's
/// directory when it is under it, else absolute.
fn written_path(p: &Path, spec_dir: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    abs.strip_prefix(spec_dir)
        .map(Path::to_path_buf)
        .unwrap_or(abs)
}
