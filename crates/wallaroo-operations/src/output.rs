//! `output`: the outputs the last apply recorded; a sensitive one read live from the cluster
//! only when asked to show it.

use serde_json::Value;
use wallaroo_engine::{Address, DesiredSet, Engine};

use crate::error::OperationError;
use crate::workspace::{WorkspaceOptions, load_spec, state_store};

/// One output as shown: its value (or `"(sensitive)"`), and whether it is sensitive.
pub struct OutputValue {
    pub name: String,
    pub value: Value,
    pub sensitive: bool,
}

/// The recorded outputs (only `name`, when given). Sensitive values are recorded only as
/// hashes: with `show_sensitive` they are read from the cluster now (the spec is loaded and
/// the cluster's kinds are built once, and only then).
pub async fn outputs(
    options: &WorkspaceOptions,
    name: Option<&str>,
    show_sensitive: bool,
) -> Result<Vec<OutputValue>, OperationError> {
    let spec = load_spec(options)?;
    let lockfile = state_store(&spec)?.load()?.unwrap_or_default();
    let mut live: Option<(Engine, DesiredSet)> = None;
    let mut shown = Vec::new();
    for (key, o) in &lockfile.outputs {
        if name.is_some_and(|n| n != key) {
            continue;
        }
        let value = match (o.sensitive, show_sensitive) {
            (false, _) => o.value.clone(),
            (true, false) => Value::String("(sensitive)".into()),
            (true, true) => {
                if live.is_none() {
                    let kinds = crate::prepare::cluster_kinds(
                        &spec,
                        false,
                        &options.helm_binary(),
                        &wallaroo_kube::Cluster::connect().await?,
                        Default::default(),
                    )
                    .await?;
                    live = Some((Engine::new(kinds), wallaroo_model::from_spec(&spec)?));
                }
                let (engine, desired) = live.as_ref().expect("built above");
                read_live(engine, desired, key).await?
            }
        };
        shown.push(OutputValue {
            name: key.clone(),
            value,
            sensitive: o.sensitive,
        });
    }
    Ok(shown)
}

async fn read_live(
    engine: &Engine,
    desired: &DesiredSet,
    name: &str,
) -> Result<Value, OperationError> {
    let address = Address::named("output", name);
    let desired = desired.resources.get(&address).ok_or_else(|| {
        OperationError::message(format!("the spec no longer has output `{name}`"))
    })?;
    let attrs = engine.read_live(desired).await?;
    Ok(attrs
        .and_then(|a| a.get("value").cloned())
        .unwrap_or(Value::Null))
}
