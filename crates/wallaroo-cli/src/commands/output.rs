//! `wallaroo output [NAME]`.

use std::process::ExitCode;

use serde_json::Value;
use wallaroo_engine::Address;

use crate::args::{Global, OutputArgs};
use crate::report::Failure;

use super::{Workspace, store_for};

pub async fn run(global: &Global, args: &OutputArgs) -> Result<ExitCode, Failure> {
    let store = store_for(global)?;
    let lockfile = store.load()?.unwrap_or_default();
    let mut shown = serde_json::Map::new();
    for (name, o) in &lockfile.outputs {
        if args.name.as_ref().is_some_and(|n| n != name) {
            continue;
        }
        let value = match (o.sensitive, args.show_sensitive) {
            (false, _) => o.value.clone(),
            (true, false) => Value::String("(sensitive)".into()),
            // The lockfile has only a hash: read the value from the cluster now.
            (true, true) => live(global, name).await?,
        };
        shown.insert(name.clone(), value);
    }
    match &args.name {
        Some(name) => {
            let v = shown.remove(name).ok_or_else(|| {
                Failure::message(format!(
                    "no output `{name}`; outputs are recorded by `wallaroo apply`"
                ))
            })?;
            match (&v, args.json) {
                (Value::String(s), false) => println!("{s}"),
                _ => println!("{v}"),
            }
        }
        // Terraform's shape: {"name": {"value": ..., "sensitive": ...}}.
        None if args.json => {
            let all: serde_json::Map<String, Value> = shown
                .into_iter()
                .map(|(k, v)| {
                    let sensitive = lockfile.outputs.get(&k).is_some_and(|o| o.sensitive);
                    (k, serde_json::json!({"value": v, "sensitive": sensitive}))
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&all).expect("JSON prints")
            );
        }
        None => {
            for (k, v) in &shown {
                println!("{k} = {v}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn live(global: &Global, name: &str) -> Result<Value, Failure> {
    let ws = Workspace::open(global, false)?;
    let (_, desired) = super::offline(global)?;
    let engine = wallaroo_engine::Engine::new(super::cluster_kinds(&ws.spec, false).await?);
    let address = Address::named("output", name);
    let desired = desired
        .resources
        .get(&address)
        .ok_or_else(|| Failure::message(format!("the spec no longer has output `{name}`")))?;
    let attrs = engine.read_live(desired).await?;
    Ok(attrs
        .and_then(|a| a.get("value").cloned())
        .unwrap_or(Value::Null))
}
