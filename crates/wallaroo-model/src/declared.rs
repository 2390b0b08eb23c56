//! Which of the values wallaroo computes a chart reads. Every spec setting becomes a values
//! key (`assays.enabled`, `engineAffinity`, ...) written for the Wallaroo chart; a chart that
//! does not declare one (in its or a subchart's `values.yaml`) most likely ignores it, and
//! sending it anyway makes a new helm revision on an install that needed none. The caller
//! drops what is undeclared only when a render shows the chart's output is the same without
//! it (a template may read a key its `values.yaml` does not list).

use serde_json::Value;

use crate::values::VALUE_SOURCES;

/// The paths of `values` that `defaults` (the chart's default values, subcharts' under their
/// names) does not declare: a key missing where the defaults hold an object with keys. Below
/// a declared key whose default is anything else (a scalar, a list, an empty map: the chart
/// takes what it is given), everything counts as declared.
pub fn undeclared(values: &Value, defaults: &Value) -> Vec<Vec<String>> {
    fn walk(v: &Value, d: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        let (Some(v), Some(d)) = (v.as_object(), d.as_object()) else {
            return;
        };
        if d.is_empty() {
            return;
        }
        for (k, child) in v {
            at.push(k.clone());
            match d.get(k) {
                None => out.push(at.clone()),
                Some(default) => walk(child, default, at, out),
            }
            at.pop();
        }
    }
    let mut out = Vec::new();
    walk(values, defaults, &mut Vec::new(), &mut out);
    out
}

/// Removes `path` from `values` (and a parent object it leaves empty).
pub fn remove_path(values: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    if let Some(Value::Object(m)) = parents.iter().try_fold(&mut *values, |v, k| v.get_mut(k)) {
        m.remove(last);
    }
    if !parents.is_empty() {
        let empty = parents
            .iter()
            .try_fold(&*values, |v, k| v.get(k))
            .and_then(Value::as_object)
            .is_some_and(|m| m.is_empty());
        if empty {
            remove_path(values, parents);
        }
    }
}

/// Whether `path` is at or under a key of `explicit` (the operator's `helm { values }`, which
/// are always sent).
pub fn is_explicit(path: &[String], explicit: &Value) -> bool {
    let mut node = explicit;
    for k in path {
        match node.get(k) {
            Some(next) => node = next,
            None => return false,
        }
    }
    true
}

/// `assays.enabled (assays { version })`: a values path with the spec setting it comes from.
pub fn describe(path: &[String]) -> String {
    let dotted = path.join(".");
    let setting = VALUE_SOURCES
        .iter()
        .find(|(key, _)| path.iter().any(|p| p == key))
        .map(|(_, setting)| format!(" ({setting})"))
        .unwrap_or_default();
    format!("{dotted}{setting}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_a_chart_does_not_declare_are_found_and_free_form_maps_are_not() {
        let defaults = json!({
            "imageRegistry": "x", "imagePullSecrets": [], "nodeSelectors": {},
            "apilb": {"type": "ClusterIP"}, "minio": {"image": {"tag": "1"}},
        });
        let values = json!({
            "imageRegistry": "r", "imagePullSecrets": [{"name": "s"}],
            "nodeSelectors": {"general": {"a": "b"}},
            "assays": {"enabled": true, "version": "v2"},
            "engineAffinity": "pipelines",
            "apilb": {"external_inference_endpoints_enabled": false},
            "minio": {"image": {"tag": "2"}},
        });
        let mut found: Vec<String> = undeclared(&values, &defaults)
            .iter()
            .map(|p| p.join("."))
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                "apilb.external_inference_endpoints_enabled",
                "assays",
                "engineAffinity"
            ]
        );
        assert_eq!(describe(&["assays".into()]), "assays (assays { version })");
    }

    #[test]
    fn removing_a_path_takes_an_emptied_parent_with_it() {
        let mut v = json!({"apilb": {"external_inference_endpoints_enabled": false}, "a": 1});
        remove_path(
            &mut v,
            &[
                "apilb".into(),
                "external_inference_endpoints_enabled".into(),
            ],
        );
        assert_eq!(v, json!({"a": 1}));
        assert!(is_explicit(
            &["x".into(), "y".into()],
            &json!({"x": {"y": 1}})
        ));
        assert!(!is_explicit(
            &["x".into(), "z".into()],
            &json!({"x": {"y": 1}})
        ));
    }
}
