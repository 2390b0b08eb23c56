//! `wallaroo output [NAME]`.

use std::process::ExitCode;

use serde_json::Value;

use crate::args::{Global, OutputArgs};
use crate::report::Failure;

use super::workspace;

pub async fn run(global: &Global, args: &OutputArgs) -> Result<ExitCode, Failure> {
    let shown = wallaroo_operations::output::outputs(
        &workspace(global),
        args.name.as_deref(),
        args.show_sensitive,
    )
    .await?;
    match &args.name {
        Some(name) => {
            let v = shown
                .into_iter()
                .find(|o| o.name == *name)
                .map(|o| o.value)
                .ok_or_else(|| {
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
                .map(|o| {
                    (
                        o.name,
                        serde_json::json!({"value": o.value, "sensitive": o.sensitive}),
                    )
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&all).expect("JSON prints")
            );
        }
        None => {
            for o in &shown {
                println!("{} = {}", o.name, o.value);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
