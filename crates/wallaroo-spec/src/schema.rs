//! The JSON Schema of the spec in HCL's JSON form (`schemas/spec.schema.json`), generated
//! from the same types the decoder fills, so the schema cannot drift from the language.

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::model::*;

/// Builds the schema. Labelled blocks appear as objects keyed by label, as HCL's JSON
/// syntax writes them: `{"nodepool": {"general": {...}}}`.
pub fn spec_schema() -> Value {
    let mut g = SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator();
    let sub = |s: schemars::Schema| s.to_value();
    let wallaroo = sub(g.subschema_for::<Wallaroo>());
    let source = sub(g.subschema_for::<Source>());
    let registry = sub(g.subschema_for::<PrivateRegistry>());
    let images = sub(g.subschema_for::<Images>());
    let nodepool = sub(g.subschema_for::<Nodepool>());
    let tls = sub(g.subschema_for::<Tls>());
    let networking = sub(g.subschema_for::<Networking>());
    let edge_registry = sub(g.subschema_for::<EdgeRegistry>());
    let assays = sub(g.subschema_for::<Assays>());
    let scheduling = sub(g.subschema_for::<Scheduling>());
    let private_pypi = sub(g.subschema_for::<PrivatePypi>());
    let gpu = sub(g.subschema_for::<Gpu>());
    let troubleshoot = sub(g.subschema_for::<Troubleshoot>());
    let verify = sub(g.subschema_for::<Verify>());
    let user = sub(g.subschema_for::<User>());
    let state = sub(g.subschema_for::<StateSettings>());
    let helm = sub(g.subschema_for::<HelmSettings>());
    let apply_identity = sub(g.subschema_for::<ApplyIdentity>());
    let kots = sub(g.subschema_for::<Kots>());
    let lifecycle = sub(g.subschema_for::<Lifecycle>());
    let removed = sub(g.subschema_for::<Removed>());
    let import = sub(g.subschema_for::<Import>());
    let variable = sub(g.subschema_for::<VariableBlock>());
    let defs = g.take_definitions(true);
    let labelled = |label: &str, inner: Value| json!({"type": "object", "properties": {label: inner}, "additionalProperties": false});
    let by_name = |inner: Value| json!({"type": "object", "additionalProperties": inner});
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://wallaroo.dev/schemas/spec.schema.json",
        "title": "wallaroo spec",
        "description": "A wallaroo spec in HCL's JSON form. See docs/spec.md for the language.",
        "type": "object",
        "properties": {
            "wallaroo": wallaroo,
            "source": labelled("wallaroo", source),
            "registry": labelled("private", registry),
            "images": images,
            "nodepool": by_name(nodepool),
            "tls": tls,
            "networking": networking,
            "edge_registry": edge_registry,
            "assays": assays,
            "scheduling": scheduling,
            "private_pypi": private_pypi,
            "gpu": gpu,
            "troubleshoot": troubleshoot,
            "verify": verify,
            "kots": kots,
            "user": by_name(user),
            "lifecycle": by_name(lifecycle),
            "removed": by_name(removed),
            "import": by_name(import),
            "state": state,
            "helm": helm,
            "apply_identity": apply_identity,
            "variable": by_name(variable),
        },
        "required": ["wallaroo", "source", "registry"],
        "additionalProperties": false,
        "$defs": defs,
    })
}
