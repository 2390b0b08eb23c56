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
