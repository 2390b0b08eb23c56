//! `state list|show|rm|migrate` and `force-unlock`: the lockfile by hand.

use std::time::Duration;

use serde_json::{Value, json};
use wallaroo_engine::Address;
use wallaroo_state::{LockInfo, Lockfile, StateLock, StateStore};

use crate::error::OperationError;
use crate::workspace::{WorkspaceOptions, kubernetes_store, load_spec, store_for};

/// The lockfile, read under the run lock (held as long as the returned lock lives), or an
/// error saying nothing was applied yet.
fn locked(options: &WorkspaceOptions) -> Result<(StateStore, StateLock, Lockfile), OperationError> {
    let store = store_for(options)?;
    let lock = store.lock("wallaroo state", Duration::ZERO)?;
    match store.load()? {
        Some(l) => Ok((store, lock, l)),
        None => Err(OperationError::message(format!(
            "no lockfile at {}: nothing has been applied yet",
            store.path().display()
        ))),
    }
}

/// The addresses the lockfile manages.
pub fn list(options: &WorkspaceOptions) -> Result<Vec<String>, OperationError> {
    Ok(locked(options)?.2.resources.keys().cloned().collect())
}

/// One resource as the lockfile has it, sensitive attributes as `(sensitive)`.
pub fn show(options: &WorkspaceOptions, address: &str) -> Result<Value, OperationError> {
    let (_, _, lockfile) = locked(options)?;
    let r = lockfile.resources.get(address).ok_or_else(|| {
        OperationError::message(format!(
            "{address} is not in the lockfile; `wallaroo state list` shows what is"
        ))
    })?;
    let mut attrs: serde_json::Map<String, Value> = r.attributes.clone().into_iter().collect();
    for k in r.sensitive_hashes.keys() {
        attrs.insert(k.clone(), json!("(sensitive)"));
    }
    Ok(json!({"address": address, "kind": r.kind, "attributes": attrs, "depends_on": r.depends_on}))
}

/// Forgets every resource under `patterns` (the cluster is not touched); returns what went.
pub fn rm(options: &WorkspaceOptions, patterns: &[Address]) -> Result<Vec<String>, OperationError> {
    let (store, _lock, mut lockfile) = locked(options)?;
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
        return Err(OperationError::message(
            "no resource in the lockfile matches; `wallaroo state list` shows what is",
        ));
    }
    for a in &doomed {
        lockfile.resources.remove(a);
    }
    lockfile.serial += 1;
    store.save(&lockfile)?;
    Ok(doomed)
}

/// Removes a lock left by a run that died; says whose it was, if there was one.
pub fn force_unlock(
    options: &WorkspaceOptions,
) -> Result<(StateStore, Option<LockInfo>), OperationError> {
    let store = store_for(options)?;
    let info = store.force_unlock()?;
    Ok((store, info))
}

/// Where a lockfile is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Local,
    Kubernetes,
}

/// What a migration copied.
pub struct Migrated {
    pub serial: u64,
    pub resources: usize,
    pub from: String,
    pub to: String,
}

/// Copies the lockfile (lineage, serial and all) from one backend to the other with both
/// run locks held, and refuses to overwrite a lockfile of another installation.
pub fn migrate(options: &WorkspaceOptions, to: Backend) -> Result<Migrated, OperationError> {
    let spec = load_spec(options)?;
    let local = StateStore::new(spec.lockfile_path());
    let remote = kubernetes_store(&spec)?;
    let (from, into) = match to {
        Backend::Kubernetes => (&local, &remote),
        Backend::Local => (&remote, &local),
    };
    let _a = from.lock("wallaroo state migrate", Duration::ZERO)?;
    let _b = into.lock("wallaroo state migrate", Duration::ZERO)?;
    let Some(lockfile) = from.load()? else {
        return Err(OperationError::message(format!(
            "no lockfile at {}: nothing to migrate",
            from.path().display()
        )));
    };
    if let Some(existing) = into.load()?
        && existing.lineage != lockfile.lineage
    {
        return Err(OperationError::message(format!(
            "{} already holds the lockfile of another installation (lineage {}); remove it first",
            into.path().display(),
            existing.lineage
        )));
    }
    into.save(&lockfile)?;
    Ok(Migrated {
        serial: lockfile.serial,
        resources: lockfile.resources.len(),
        from: from.path().display().to_string(),
        to: into.path().display().to_string(),
    })
}
