//! JSON helpers for attributes, shared by the model and the kinds.

use serde_json::Value;

/// Deep merge: objects merge key by key, anything else replaces.
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Adds to `live` every key of `desired` that `live` lacks and whose value is `defaults`'s
/// (the chart's) at the same place, recursing into maps.
pub fn fill_defaults(live: &mut Value, desired: &Value, defaults: &Value) {
    let (Some(want), Some(defaults)) = (desired.as_object(), defaults.as_object()) else {
        return;
    };
    if !live.is_object() {
        *live = Value::Object(Default::default());
    }
    let have = live.as_object_mut().expect("made an object above");
    for (k, wanted) in want {
        let Some(default) = defaults.get(k) else {
            continue;
        };
        match have.get_mut(k) {
            Some(present) if present.is_object() && wanted.is_object() => {
                fill_defaults(present, wanted, default);
            }
            Some(_) => {}
            None if wanted == default => {
                have.insert(k.clone(), wanted.clone());
            }
            None if wanted.is_object() && default.is_object() => {
                let mut nested = Value::Object(Default::default());
                fill_defaults(&mut nested, wanted, default);
                if nested.as_object().is_some_and(|m| !m.is_empty()) {
                    have.insert(k.clone(), nested);
                }
            }
            None => {}
        }
    }
}

/// Splits `config` into (values, secret values) along the key shape of `secret_shape`.
pub fn split(config: &Value, secret_shape: &Value) -> (Value, Value) {
    let (mut values, mut secrets) = (config.clone(), Value::Object(Default::default()));
    fn walk(values: &mut Value, secrets: &mut Value, shape: &Value) {
        let (Some(v), Some(s)) = (values.as_object_mut(), shape.as_object()) else {
            return;
        };
        for (k, sub) in s {
            match (sub.is_object(), v.get_mut(k)) {
                (true, Some(inner)) if inner.is_object() => {
                    let mut nested = Value::Object(Default::default());
                    walk(inner, &mut nested, sub);
                    if nested.as_object().is_some_and(|m| !m.is_empty()) {
                        secrets[k.as_str()] = nested;
                    }
                    if inner.as_object().is_some_and(|m| m.is_empty()) {
                        v.remove(k);
                    }
                }
                (_, Some(_)) => {
                    secrets[k.as_str()] = v.remove(k).unwrap_or(Value::Null);
                }
                _ => {}
            }
        }
    }
    walk(&mut values, &mut secrets, secret_shape);
    (values, secrets)
}

/// Sets `value` at `path` in `v`, making the maps on the way (and replacing anything on the
/// way that is not a map).
pub fn set_path(v: &mut Value, path: &[String], value: Value) {
    let mut node = v;
    for seg in path {
        if !node.is_object() {
            *node = Value::Object(Default::default());
        }
        node = node
            .as_object_mut()
            .expect("made an object above")
            .entry(seg.clone())
            .or_insert(Value::Null);
    }
    *node = value;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn objects_merge_key_by_key_and_anything_else_replaces() {
        let mut base = json!({"a": {"b": 1, "c": [1]}, "d": "x"});
        super::merge(
            &mut base,
            &json!({"a": {"c": [2], "e": null}, "d": {"f": 1}}),
        );
        assert_eq!(
            base,
            json!({"a": {"b": 1, "c": [2], "e": null}, "d": {"f": 1}})
        );
    }
}
