//! Sensitivity follows the value. The spec knows where its sensitive values are (derived from
//! a sensitive variable or `sensitive(...)`, down to a key of a map: see
//! `Spec::sensitive_paths`) and what they are (`Spec::sensitive_strings`). Whatever the model
//! derives from them stays sensitive: a chart value moves from the release's plain `values`
//! to its `secret_values` (which helm gets through a 0600 file and plans show as
//! `(sensitive)`), and any other attribute that holds one becomes a sensitive attribute of
//! its resource (hashed in the lockfile, hidden in every plan view).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// Every secret string of a spec: its sensitive values (see `Spec::sensitive_strings`) and
/// the values of its attributes typed secret (passwords, the license). What leaves wallaroo
/// for other eyes (a support bundle) is scrubbed of all of them.
pub fn secret_strings(spec: &wallaroo_spec::Spec) -> BTreeSet<String> {
    let mut out = spec.sensitive_strings();
    let mut add = |s: Option<&wallaroo_spec::Secret>| {
        if let Some(s) = s
            && !s.expose().is_empty()
        {
            out.insert(s.expose().to_string());
        }
    };
    if let Some(src) = &spec.source {
        add(src.password.as_ref());
        add(src.license.as_ref());
    }
    if let Some(r) = &spec.registry {
        add(r.password.as_ref());
    }
    if let Some(e) = &spec.edge_registry {
        add(e.password.as_ref());
    }
    if let Some(p) = &spec.private_pypi {
        add(p.password.as_ref());
    }
    if let Some(k) = &spec.kots {
        add(Some(&k.admin_console_password));
    }
    for u in spec.user.values() {
        add(u.password.as_ref());
    }
    out
}

/// Whether `v` holds one of `secrets` anywhere (whole, or inside a longer string: a URL with
/// a token in it, a template).
pub fn holds_secret(v: &Value, secrets: &BTreeSet<String>) -> bool {
    match v {
        Value::String(s) => secrets.iter().any(|secret| s.contains(secret.as_str())),
        Value::Array(a) => a.iter().any(|v| holds_secret(v, secrets)),
        Value::Object(m) => m.values().any(|v| holds_secret(v, secrets)),
        _ => false,
    }
}

/// Moves the secret parts of `values` into `secrets`, at the same place: the parts at
/// `pointers` (JSON pointers into `values`) and every string that holds one of `strings`.
/// A part inside a list moves with its whole list, since helm replaces lists whole when it
/// merges the two files.
pub fn move_secret_parts(
    values: &mut Value,
    secrets: &mut Value,
    pointers: impl IntoIterator<Item = String>,
    strings: &BTreeSet<String>,
) {
    let mut all: Vec<String> = pointers.into_iter().collect();
    tainted(values, strings, "", &mut all);
    for pointer in all {
        let Some(pointer) = cut_at_list(values, &pointer) else {
            continue;
        };
        if let Some(part) = take(values, &pointer) {
            put(secrets, &pointer, part);
        }
    }
}

/// Pointers of the strings under `v` that hold a secret (a list that holds one, whole).
fn tainted(v: &Value, strings: &BTreeSet<String>, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                tainted(v, strings, &format!("{at}/{}", escape(k)), out);
            }
        }
        other => {
            if !at.is_empty() && holds_secret(other, strings) {
                out.push(at.to_string());
            }
        }
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// `pointer`, shortened to the list it goes into, if any; `None` if nothing is there.
fn cut_at_list(values: &Value, pointer: &str) -> Option<String> {
    let mut node = values;
    let mut kept = String::new();
    for seg in segments(pointer) {
        match node {
            Value::Object(m) => {
                node = m.get(&seg)?;
                kept.push('/');
                kept.push_str(&escape(&seg));
            }
            Value::Array(_) => break,
            _ => return None,
        }
    }
    (!kept.is_empty()).then_some(kept)
}

/// Removes the part at `pointer`, and the maps it leaves empty (helm's stored values, split
/// the same way, have no empty map there either).
fn take(values: &mut Value, pointer: &str) -> Option<Value> {
    let segs = segments(pointer);
    let (last, parents) = segs.split_last()?;
    let mut node = &mut *values;
    for seg in parents {
        node = node.as_object_mut()?.get_mut(seg)?;
    }
    let part = node.as_object_mut()?.remove(last)?;
    for depth in (1..=parents.len()).rev() {
        let (key, above) = parents[..depth].split_last().expect("depth >= 1");
        let mut node = &mut *values;
        for seg in above {
            node = node.as_object_mut()?.get_mut(seg)?;
        }
        let map = node.as_object_mut()?;
        if map
            .get(key)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
        {
            map.remove(key);
        } else {
            break;
        }
    }
    Some(part)
}

fn put(secrets: &mut Value, pointer: &str, part: Value) {
    let segs = segments(pointer);
    let Some((last, parents)) = segs.split_last() else {
        return;
    };
    let mut node = secrets;
    for seg in parents {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        node = node
            .as_object_mut()
            .expect("made an object above")
            .entry(seg.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    node.as_object_mut()
        .expect("made an object above")
        .insert(last.clone(), part);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_parts_move_to_the_same_place_and_lists_move_whole() {
        let mut values = json!({
            "domainSuffix": "example.com",
            "extra": {"token": "T0KEN", "plain": "x", "url": "https://u:T0KEN@h/"},
            "list": [{"a": "T0KEN"}, {"a": "b"}],
            "marked": {"deep": {"key": "not-a-secret-string"}},
            "a/b": {"c": "s3"},
        });
        let mut secrets = json!({"privatePypi": {"password": "p"}});
        let strings = BTreeSet::from(["T0KEN".to_string(), "s3".to_string()]);
        move_secret_parts(
            &mut values,
            &mut secrets,
            ["/marked/deep/key".to_string(), "/missing/key".to_string()],
            &strings,
        );
        assert_eq!(
            values,
            json!({"domainSuffix": "example.com", "extra": {"plain": "x"}})
        );
        assert_eq!(
            secrets,
            json!({
                "privatePypi": {"password": "p"},
                "extra": {"token": "T0KEN", "url": "https://u:T0KEN@h/"},
                "list": [{"a": "T0KEN"}, {"a": "b"}],
                "marked": {"deep": {"key": "not-a-secret-string"}},
                "a/b": {"c": "s3"},
            })
        );
        assert!(!holds_secret(&values, &strings));
    }
}
