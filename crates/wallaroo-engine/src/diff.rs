//! Diff: desired against live (and against the last applied state for drift), key by key.

use std::collections::BTreeSet;

use serde_json::Value;
use sha2::{Digest, Sha256};
use wallaroo_state::{ResourceState, hash_sensitive};

use crate::address::Address;
use crate::plan::{Action, AttrChange};
use crate::resource::{Attrs, DesiredResource, ResourceKind};

/// The sensitive attribute names of a desired resource: its kind's and the spec's.
pub fn sensitive_names(
    kind: &dyn ResourceKind,
    desired: Option<&DesiredResource>,
) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = kind.sensitive().iter().map(|s| s.to_string()).collect();
    if let Some(d) = desired {
        names.extend(d.sensitive.iter().cloned());
    }
    names
}

/// Decides the action for a desired resource given its live state.
pub fn diff_resource(
    kind: &dyn ResourceKind,
    desired: &DesiredResource,
    live: Option<&Attrs>,
    prior: Option<&ResourceState>,
    salt: &str,
) -> (Action, Vec<AttrChange>) {
    let sensitive = sensitive_names(kind, Some(desired));
    let addr = desired.address.to_string();
    if kind.read_only() {
        return (Action::Read, Vec::new());
    }
    let Some(live) = live else {
        let attrs = desired
            .attrs
            .iter()
            .map(|(k, v)| {
                let hidden = sensitive.contains(k);
                AttrChange {
                    path: k.clone(),
                    before: None,
                    after: if hidden { None } else { Some(v.clone()) },
                    sensitive: hidden,
                    forces_replacement: false,
                }
            })
            .collect();
        return (Action::Create, attrs);
    };
    let mut changes = Vec::new();
    for (name, want) in &desired.attrs {
        let forces = kind.force_new().contains(&name.as_str());
        if sensitive.contains(name) {
            let want_hash = hash_sensitive(salt, &addr, name, want);
            let have_hash = match live.get(name) {
                Some(v) => Some(hash_sensitive(salt, &addr, name, v)),
                None => prior.and_then(|p| p.sensitive_hashes.get(name).cloned()),
            };
            if have_hash.as_deref() != Some(want_hash.as_str()) {
                changes.push(AttrChange {
                    path: name.clone(),
                    before: None,
                    after: None,
                    sensitive: true,
                    forces_replacement: forces,
                });
            }
            continue;
        }
        let mut leaf = Vec::new();
        diff_value(name, live.get(name), Some(want), &mut leaf);
        for mut c in leaf {
            c.forces_replacement = forces;
            changes.push(c);
        }
    }
    changes.retain(|c| !crate::resource::ignored(&c.path, &desired.ignore_changes));
    let action = if changes.is_empty() {
        Action::NoOp
    } else if changes.iter().any(|c| c.forces_replacement) {
        Action::Replace
    } else {
        Action::Update
    };
    (action, changes)
}

/// What changed between the last applied attributes and live ones (drift).
pub fn diff_drift(
    prior: &ResourceState,
    live: &Attrs,
    address: &Address,
    salt: &str,
) -> Vec<AttrChange> {
    let addr = address.to_string();
    let mut changes = Vec::new();
    for (name, was) in &prior.attributes {
        diff_value(name, live.get(name), Some(was), &mut changes);
    }
    for (name, hash) in &prior.sensitive_hashes {
        if let Some(v) = live.get(name)
            && &hash_sensitive(salt, &addr, name, v) != hash
        {
            changes.push(AttrChange {
                path: name.clone(),
                before: None,
                after: None,
                sensitive: true,
                forces_replacement: false,
            });
        }
    }
    // In drift, "before" is what wallaroo applied and "after" what is live now.
    for c in &mut changes {
        std::mem::swap(&mut c.before, &mut c.after);
    }
    changes
}

/// Key-level diff: objects recurse, everything else compares whole. `have` is live, `want`
/// is desired.
pub fn diff_value(
    path: &str,
    have: Option<&Value>,
    want: Option<&Value>,
    out: &mut Vec<AttrChange>,
) {
    match (have, want) {
        (Some(Value::Object(h)), Some(Value::Object(w))) => {
            let keys: BTreeSet<&String> = h.keys().chain(w.keys()).collect();
            for k in keys {
                diff_value(&child_path(path, k), h.get(k), w.get(k), out);
            }
        }
        (h, w) if h != w => out.push(AttrChange {
            path: path.to_string(),
            before: h.cloned(),
            after: w.cloned(),
            sensitive: false,
            forces_replacement: false,
        }),
        _ => {}
    }
}

fn child_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!("{parent}.{key}")
    } else {
        format!("{parent}[{}]", Value::String(key.into()))
    }
}

/// Attributes to record in the lockfile: sensitive ones become salted hashes.
pub fn to_state(
    kind: &dyn ResourceKind,
    desired: Option<&DesiredResource>,
    address: &Address,
    applied: &Attrs,
    salt: &str,
) -> ResourceState {
    let sensitive = sensitive_names(kind, desired);
    let addr = address.to_string();
    let mut state = ResourceState {
        kind: kind.name().to_string(),
        attributes: Default::default(),
        sensitive_hashes: Default::default(),
        depends_on: desired
            .map(|d| d.depends_on.iter().map(|a| a.to_string()).collect())
            .unwrap_or_default(),
    };
    for (k, v) in applied {
        if sensitive.contains(k) {
            state
                .sensitive_hashes
                .insert(k.clone(), hash_sensitive(salt, &addr, k, v));
        } else {
            state.attributes.insert(k.clone(), v.clone());
        }
    }
    state
}

/// Object keys sorted at every level, so equal data hashes equally.
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// SHA-256 of a value's canonical JSON, hex.
pub fn fingerprint(v: &Value) -> String {
    let bytes = serde_json::to_vec(&canonical(v)).expect("JSON values serialize");
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_diff_key_by_key() {
        let mut out = Vec::new();
        let have = json!({"wallaroo.ai/node-purpose": "general", "team": "a", "keep": 1});
        let want = json!({"wallaroo.ai/node-purpose": "pipelines", "keep": 1, "new": true});
        diff_value("labels", Some(&have), Some(&want), &mut out);
        let paths: Vec<&str> = out.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "labels.new",
                "labels.team",
                "labels[\"wallaroo.ai/node-purpose\"]"
            ]
        );
        assert_eq!(out[1].after, None);
        assert_eq!(out[2].before, Some(json!("general")));
    }

    #[test]
    fn canonical_fingerprints_ignore_key_order() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": 2, "x": 1}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a": {"x": 1, "y": 2}, "b": 1}"#).unwrap();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&json!({"a": 1})));
    }
}
