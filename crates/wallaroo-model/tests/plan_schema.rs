//! `schemas/plan.schema.json` is the engine's plan with the images the model keeps in it;
//! this test keeps the file in step with the types and checks a real plan against it, before
//! and after a round trip through a saved plan file.

use std::path::Path;
use std::sync::Arc;

use wallaroo_engine::testkit::FileKind;
use wallaroo_engine::{ApplyOptions, DesiredSet, Engine, KindRegistry, PlanOptions, Silent};
use wallaroo_model::{ImagePin, MirrorImage};

#[tokio::test]
async fn a_plan_with_images_satisfies_the_plan_schema_and_keeps_its_images() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files");
    std::fs::create_dir_all(&root).unwrap();
    let kind = Arc::new(FileKind::new(&root));
    let mut kinds = KindRegistry::new();
    kinds.register(kind.clone());
    let engine = Engine::new(kinds);
    let mut desired = DesiredSet::default();
    desired.insert(FileKind::desired("a", "1"));
    let mut secret = FileKind::desired("s", "x");
    secret.attrs.insert("secret".into(), "hunter2".into());
    desired.insert(secret);
    let mut plan = engine
        .plan(&desired, None, &PlanOptions::default())
        .await
        .unwrap();
    let images = vec![
        MirrorImage {
            source: "vendor.example.com/wallaroo/keycloak:1".into(),
            origin: "chart annotation".into(),
            pin: Some(ImagePin {
                source_digest: format!("sha256:{:064x}", 1),
                digest: format!("sha256:{:064x}", 2),
            }),
        },
        MirrorImage {
            source: "nvcr.io/nvidia/k8s-device-plugin:v0.17.0".into(),
            origin: "gpu.nvidia_device_plugin".into(),
            pin: None,
        },
    ];
    wallaroo_model::set_plan_images(&mut plan, &images);

    let generated = wallaroo_model::plan_schema();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/plan.schema.json");
    let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
    if std::env::var_os("WALLAROO_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap_or_default(),
        text,
        "schemas/plan.schema.json is stale: run with WALLAROO_BLESS=1"
    );
    let saved = serde_json::to_string_pretty(&plan).unwrap();
    let value: serde_json::Value = serde_json::from_str(&saved).unwrap();
    let validator = jsonschema::validator_for(&generated).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // The images sit where they always did: after drift, before the changes.
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    let at = |k| keys.iter().position(|x| *x == k).unwrap();
    assert!(
        at("drift") < at("images") && at("images") < at("changes"),
        "{keys:?}"
    );
    // A saved plan gives its images back exactly; one without images has no key at all.
    let back: wallaroo_engine::Plan = serde_json::from_str(&saved).unwrap();
    assert_eq!(wallaroo_model::plan_images(&back).unwrap(), images);
    wallaroo_model::set_plan_images(&mut plan, &[]);
    assert!(!serde_json::to_string(&plan).unwrap().contains("\"images\""));
    // And the plan applies as any other.
    let store = wallaroo_state::StateStore::new(dir.path().join("wallaroo.lock"));
    let report = engine
        .apply(&back, &desired, &store, &ApplyOptions::default(), &Silent)
        .await
        .unwrap();
    assert!(report.success());
}
