//! `wallaroo state list | show | rm | migrate` and `wallaroo force-unlock`.

use std::process::ExitCode;

use wallaroo_operations::state::Backend;

use crate::args::{ForceUnlockArgs, Global, StateCommand};
use crate::report::Failure;

use super::workspace;

pub fn run(global: &Global, cmd: &StateCommand) -> Result<ExitCode, Failure> {
    let options = workspace(global);
    match cmd {
        StateCommand::List => {
            for address in wallaroo_operations::state::list(&options)? {
                println!("{address}");
            }
        }
        StateCommand::Show { address } => {
            let shown = wallaroo_operations::state::show(&options, address)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&shown).expect("JSON prints")
            );
        }
        StateCommand::Rm { address } => {
            let patterns = super::targets(address)?;
            for a in wallaroo_operations::state::rm(&options, &patterns)? {
                println!("Removed {a} (the cluster was not touched)");
            }
        }
        StateCommand::Migrate { to } => {
            let backend = match to.as_str() {
                "kubernetes" => Backend::Kubernetes,
                "local" => Backend::Local,
                other => {
                    return Err(Failure::message(format!(
                        "`{other}` is not a state backend: use --to kubernetes or --to local"
                    )));
                }
            };
            let m = wallaroo_operations::state::migrate(&options, backend)?;
            println!(
                "Copied the lockfile (serial {}, {} resources) from {} to {}. Set state {{ backend = \"{to}\" }} in the spec.",
                m.serial, m.resources, m.from, m.to
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn force_unlock(global: &Global, _args: &ForceUnlockArgs) -> Result<ExitCode, Failure> {
    match wallaroo_operations::state::force_unlock(&workspace(global))? {
        (_, Some(info)) => println!("Removed the lock left by {info}."),
        (store, None) => println!("The lockfile {} is not locked.", store.path().display()),
    }
    Ok(ExitCode::SUCCESS)
}
