//! `wallaroo output [NAME]`.

use std::process::ExitCode;

use serde_json::Value;

use crate::args::{Global, OutputArgs};
use crate::report::Failure;

use super::store_for;

pub fn run(global: &Global, args: &OutputArgs) -> Result<ExitCode, Failure> {
    let store = store_for(global)?;
    let lockfile = store.load()?.unwrap_or_default();
    let shown = |o: &wallaroo_state::OutputState| -> Result<Value, Failure> {
        match (o.sensitive, args.show_sensitive) {
            (false, _) => Ok(o.value.clone()),
            (true, false) => Ok(Value::String("(sensitive)".into())),
            (true, true) => Err(Failure::message(
                "sensitive outputs are not stored in the lockfile (only their hash is); read them from the cluster",
            )),
        }
    };
    match &args.name {
        Some(name) => {
            let o = lockfile.outputs.get(name).ok_or_else(|| {
                Failure::message(format!(
                    "no output `{name}`; outputs are recorded by `wallaroo apply`"
                ))
            })?;
            let v = shown(o)?;
            match (&v, args.json) {
                (Value::String(s), false) => println!("{s}"),
                _ => println!("{v}"),
            }
        }
        None if args.json => {
            let mut all = serde_json::Map::new();
            for (k, o) in &lockfile.outputs {
                all.insert(
                    k.clone(),
                    serde_json::json!({"value": shown(o)?, "sensitive": o.sensitive}),
                );
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&all).expect("JSON prints")
            );
        }
        None => {
            for (k, o) in &lockfile.outputs {
                println!("{k} = {}", shown(o)?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
