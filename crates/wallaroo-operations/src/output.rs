//! `output`: the outputs the last apply recorded; a sensitive one read live from the cluster
//! only when asked to show it.

use serde_json::Value;
use wallaroo_engine::{Address, Engine};

use crate::error::OperationError;
use crate::workspace::{WorkspaceOptions, store_for};

/// One output as shown: its value (or `"(sensitive)"`), and whether it is sensitive.
pub struct OutputValue {
    pub name: String,
    pub value: Value,
    pub sensitive: bool,
}

/// The recorded outputs (only `name`, when given). Sensitive values are recorded only as
/// hashes: with `show_sensitive` they are read from the cluster now.
pub async fn outputs(
    options: &WorkspaceOptions,
    name: Option<&str>,
    show_sensitive: bool,
) -> Result<Vec<OutputValue>, OperationError> {
    let lockfile = store_for(options)?.load()?.unwrap_or_default();
    let mut shown = Vec::new();
    for (key, o) in &lockfile.outputs {
        if name.is_some_and(|n| n != key) {
            continue;
        }
        let value = match (o.sensitive, show_sensitive) {
            (false, _) => o.value.clone(),
            (true, false) => Value::String("(sensitive)".into()),
            (true, true) => live(options, key).await?,
        };
        shown.push(OutputValue {
            name: key.clone(),
            value,
            sensitive: o.sensitive,
        });
    }
    Ok(shown)
}

async fn live(options: &WorkspaceOptions, name: &str) -> Result<Value, OperationError> {
    let (spec, desired) = crate::offline::desired(options)?;
    let engine = Engine::new(
        crate::prepare::cluster_kinds(
            &spec,
            false,
            &options
                .helm
                .clone()
                .unwrap_or_else(crate::workspace::helm_path),
        )
        .await?,
    );
    let address = Address::named("output", name);
    let desired = desired.resources.get(&address).ok_or_else(|| {
        OperationError::message(format!("the spec no longer has output `{name}`"))
    })?;
    let attrs = engine.read_live(desired).await?;
    Ok(attrs
        .and_then(|a| a.get("value").cloned())
        .unwrap_or(Value::Null))
}
