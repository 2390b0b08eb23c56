//! The desired model of every example spec, as JSON, against golden files made before the
//! crates were split into engine / model / operations: the refactor must not change what a
//! spec becomes. Sensitive attributes appear as a SHA-256 of their JSON, never in clear.
//! `WALLAROO_BLESS=1` rewrites the files (review the diff: it is a change of behaviour).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::Digest;
use wallaroo_model::{ImagePin, MirrorImage};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What the chart of a release would list, so that release images, pins and referrers are
/// part of the snapshot too.
fn release_images(spec: &wallaroo_spec::Spec) -> Vec<MirrorImage> {
    let host = spec
        .source
        .as_ref()
        .and_then(|s| s.registry.clone())
        .unwrap_or_else(|| "vendor.example.com".into());
    let release: BTreeMap<String, String> = ["conductor-wallsvc", "keycloak", "minio"]
        .iter()
        .map(|n| {
            (
                format!("{host}/wallaroo/{n}:{}", spec.wallaroo.version),
                "chart annotation, helm template".to_string(),
            )
        })
        .collect();
    let mut images = wallaroo_model::image_sources(spec, &release);
    for (i, image) in images.iter_mut().enumerate() {
        if i % 2 == 0 {
            image.pin = Some(ImagePin {
                source_digest: format!("sha256:{:064x}", i + 1),
                digest: format!("sha256:{:064x}", i + 100),
            });
        }
    }
    images
}

fn snapshot(spec_path: &Path) -> Value {
    let spec = wallaroo_spec::load(spec_path, &Default::default()).unwrap();
    let images = release_images(&spec);
    let set = wallaroo_model::from_spec_with(&spec, &images).unwrap();
    let resources: serde_json::Map<String, Value> = set
        .resources
        .values()
        .map(|r| {
            let attrs: serde_json::Map<String, Value> = r
                .attrs
                .iter()
                .map(|(k, v)| {
                    let shown = if r.sensitive.contains(k) {
                        let hash = sha2::Sha256::digest(v.to_string().as_bytes());
                        json!(format!("sha256 of the value: {}", hex(&hash)))
                    } else {
                        v.clone()
                    };
                    (k.clone(), shown)
                })
                .collect();
            (
                r.address.to_string(),
                json!({
                    "kind": r.kind,
                    "attrs": attrs,
                    "sensitive": r.sensitive,
                    "depends_on": r.depends_on.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "ignore_changes": r.ignore_changes,
                }),
            )
        })
        .collect();
    // Certificate warnings count days to expiry: keep only their kind.
    let warnings: Vec<String> = set
        .warnings
        .iter()
        .map(|w| w.split(" in ").next().unwrap_or(w).to_string())
        .collect();
    json!({
        "images": images,
        "resources": resources,
        "warnings": warnings,
        "forget": set.forget.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_example_becomes_the_same_desired_model() {
    let mut seen = 0;
    let mut entries: Vec<_> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hcl"))
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        // Paths the spec resolves (a bundle directory, say) are absolute: the golden names
        // them from the repository's root so that any checkout compares equal.
        let root = repo().display().to_string();
        let got = (serde_json::to_string_pretty(&snapshot(&path)).unwrap() + "\n")
            .replace(&root, "<repo>");
        let golden = repo().join(format!("tests/fixtures/desired/{name}.json"));
        if std::env::var_os("WALLAROO_BLESS").is_some() {
            std::fs::write(&golden, &got).unwrap();
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if got != want {
            let first = got
                .lines()
                .zip(want.lines().chain(std::iter::repeat("<end of golden>")))
                .enumerate()
                .find(|(_, (g, w))| g != w)
                .map(|(i, (g, w))| format!("line {}: golden {w:?}, now {g:?}", i + 1))
                .unwrap_or_else(|| "the golden is longer".into());
            panic!(
                "the desired model of examples/{name}.hcl changed ({first}); diff {} against a run with WALLAROO_BLESS=1",
                golden.display()
            );
        }
        seen += 1;
    }
    assert!(seen >= 3, "examples found: {seen}");
}
