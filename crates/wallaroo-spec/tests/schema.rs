//! `schemas/spec.schema.json` is generated from the spec types; this test keeps the file
//! current (set WALLAROO_BLESS=1 to rewrite it) and checks the examples against it.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn committed_schema_matches_the_types() {
    let generated =
        serde_json::to_string_pretty(&wallaroo_spec::schema::spec_schema()).unwrap() + "\n";
    let path = repo().join("schemas/spec.schema.json");
    if std::env::var_os("WALLAROO_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schemas/spec.schema.json is stale: run WALLAROO_BLESS=1 cargo test -p wallaroo-spec --test schema"
    );
}

#[test]
fn examples_in_json_form_satisfy_the_schema() {
    let schema = wallaroo_spec::schema::spec_schema();
    let validator = jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema");
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "hcl") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut json: serde_json::Value = hcl::from_str(&text).unwrap();
        let defaults = json["variable"].clone();
        substitute_defaults(&mut json, &defaults);
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
        checked += 1;
    }
    assert!(checked >= 3);

    let typo: serde_json::Value = serde_json::json!({"wallaroo": {"verison": "1"}});
    assert!(
        !validator.is_valid(&typo),
        "the schema rejects unknown attributes"
    );
}

/// In HCL's JSON form an expression is a `"${...}"` string; put each `var.X`'s default in
/// its place so the document holds the values the schema describes.
fn substitute_defaults(value: &mut serde_json::Value, vars: &serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            if let Some(name) = s.strip_prefix("${var.").and_then(|r| r.strip_suffix('}'))
                && let Some(default) = vars.get(name).and_then(|v| v.get("default"))
            {
                *value = default.clone();
            }
        }
        serde_json::Value::Array(items) => {
            items.iter_mut().for_each(|i| substitute_defaults(i, vars))
        }
        serde_json::Value::Object(map) => {
            map.values_mut().for_each(|v| substitute_defaults(v, vars))
        }
        _ => {}
    }
}
