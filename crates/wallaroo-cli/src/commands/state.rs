//! `wallaroo state list | show | rm` and `wallaroo force-unlock`.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};
use wallaroo_engine::Address;

use crate::args::{ForceUnlockArgs, Global, StateCommand};
use crate::report::Failure;

use super::store_for;

pub fn run(global: &Global, cmd: &StateCommand) -> Result<ExitCode, Failure> {
    if let StateCommand::Migrate { to } = cmd {
        return migrate(global, to);
    }
    let store = store_for(global)?;
    let _lock = store.lock("wallaroo state", Duration::ZERO)?;
    let Some(mut lockfile) = store.load()? else {
        return Err(Failure::message(format!(
            "no lockfile at {}: nothing has been applied yet",
            store.path().display()
        )));
    };
    match cmd {
        StateCommand::List => {
            for address in lockfile.resources.keys() {
                println!("{address}");
            }
        }
        StateCommand::Show { address } => {
            let r = lockfile.resources.get(address).ok_or_else(|| {
                Failure::message(format!(
                    "{address} is not in the lockfile; `wallaroo state list` shows what is"
                ))
            })?;
            let mut attrs: serde_json::Map<String, Value> =
                r.attributes.clone().into_iter().collect();
            for k in r.sensitive_hashes.keys() {
                attrs.insert(k.clone(), json!("(sensitive)"));
            }
            let shown = json!({"address": address, "kind": r.kind, "attributes": attrs, "depends_on": r.depends_on});
            println!(
                "{}",
                serde_json::to_string_pretty(&shown).expect("JSON prints")
            );
        }
        StateCommand::Rm { address } => {
            let patterns: Vec<Address> = super::targets(address)?;
            let doomed: Vec<String> = lockfile
                .resources
                .keys()
                .filter(|a| {
                    a.parse::<Address>()
                        .is_ok_and(|a| patterns.iter().any(|p| p.contains(&a)))
                })
                .cloned()
                .collect();
            if doomed.is_empty() {
                return Err(Failure::message(
                    "no resource in the lockfile matches; `wallaroo state list` shows what is",
                ));
            }
            for a in &doomed {
                lockfile.resources.remove(a);
                println!("Removed {a} (the cluster was not touched)");
            }
            lockfile.serial += 1;
            store.save(&lockfile)?;
        }
        StateCommand::Migrate { .. } => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn force_unlock(global: &Global, _args: &ForceUnlockArgs) -> Result<ExitCode, Failure> {
    let store = store_for(global)?;
    match store.force_unlock()? {
        Some(info) => println!("Removed the lock left by {info}."),
        None => println!("The lockfile {} is not locked.", store.path().display()),
    }
    Ok(ExitCode::SUCCESS)
}

/// `wallaroo state migrate --to kubernetes|local`: copies the lockfile (lineage, serial and
/// all) from one backend to the other with both run locks held, and refuses to overwrite a
/// lockfile of another installation.
fn migrate(global: &Global, to: &str) -> Result<ExitCode, Failure> {
    let spec = super::load_spec(global)?;
    let local = wallaroo_state::StateStore::new(spec.lockfile_path());
    let remote = super::kubernetes_store(&spec)?;
    let (from, into) = match to {
        "kubernetes" => (&local, &remote),
        "local" => (&remote, &local),
        other => {
            return Err(Failure::message(format!(
                "`{other}` is not a state backend: use --to kubernetes or --to local"
            )));
        }
    };
    let _a = from.lock("wallaroo state migrate", Duration::ZERO)?;
    let _b = into.lock("wallaroo state migrate", Duration::ZERO)?;
    let Some(lockfile) = from.load()? else {
        return Err(Failure::message(format!(
            "no lockfile at {}: nothing to migrate",
            from.path().display()
        )));
    };
    if let Some(existing) = into.load()?
        && existing.lineage != lockfile.lineage
    {
        return Err(Failure::message(format!(
            "{} already holds the lockfile of another installation (lineage {}); remove it first",
            into.path().display(),
            existing.lineage
        )));
    }
    into.save(&lockfile)?;
    println!(
        "Copied the lockfile (serial {}, {} resources) from {} to {}. Set state {{ backend = \"{to}\" }} in the spec.",
        lockfile.serial,
        lockfile.resources.len(),
        from.path().display(),
        into.path().display()
    );
    Ok(ExitCode::SUCCESS)
}
