//! What learning the image keys by render adds to the first plan, for a chart with 40 images
//! in the conventions that meet in practice: 20 split into `registry`/`repository`/`tag` with
//! a host-only global key (Bitnami's), 10 under a prefix that a global key replaces whole
//! (Wallaroo's), 10 whole references in a map. Medians of 5 runs, with the render discovery
//! makes anyway beside it (goal: learning under 1 s). A no-op plan renders nothing: the result
//! is cached with the render cache.
//!
//! Run: `cargo bench -p wallaroo-oci --bench learn`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde_json::json;
use wallaroo_oci::Manifest;
use wallaroo_oci::release::{Chart, Render};

const IMAGES: usize = 40;

fn chart_dir(dir: &std::path::Path) {
    let mut values = String::from(
        "global:\n  imageRegistry: \"\"\n  hostRegistry: \"\"\nimageRegistry: vendor.example:5000/acme\nimages:\n",
    );
    for i in 0..10 {
        values.push_str(&format!("  prefixed{i}: \"1.{i}.0\"\n"));
    }
    values.push_str("refs:\n");
    for i in 0..10 {
        values.push_str(&format!(
            "  whole{i}: vendor.example:5000/tools/whole{i}:2.{i}\n"
        ));
    }
    for i in 0..20 {
        values.push_str(&format!(
            "split{i}:\n  image:\n    registry: docker.io\n    repository: bitnami/split{i}\n    tag: \"3.{i}\"\n"
        ));
    }
    let mut templates = String::new();
    let deployment = |name: &str, image: &str| {
        format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers:\n        - name: main\n          image: \"{image}\"\n"
        )
    };
    for i in 0..10 {
        templates.push_str(&deployment(
            &format!("prefixed{i}"),
            &format!("{{{{ .Values.global.imageRegistry | default .Values.imageRegistry }}}}/prefixed{i}:{{{{ .Values.images.prefixed{i} }}}}"),
        ));
        templates.push_str(&deployment(
            &format!("whole{i}"),
            &format!("{{{{ .Values.refs.whole{i} }}}}"),
        ));
    }
    for i in 0..20 {
        templates.push_str(&deployment(
            &format!("split{i}"),
            &format!("{{{{ .Values.global.hostRegistry | default .Values.split{i}.image.registry }}}}/{{{{ .Values.split{i}.image.repository }}}}:{{{{ .Values.split{i}.image.tag }}}}"),
        ));
    }
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("Chart.yaml"),
        "apiVersion: v2\nname: forty\nversion: 0.1.0\nappVersion: \"1.0\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("values.yaml"), values).unwrap();
    std::fs::write(dir.join("templates/all.yaml"), templates).unwrap();
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let env = wallaroo_testenv::shared();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("forty");
    chart_dir(&dir);
    let out = std::process::Command::new(&env.helm)
        .arg("package")
        .arg(&dir)
        .arg("--destination")
        .arg(work.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let chart = Chart {
        repo: "bench/forty".into(),
        version: "0.1.0".into(),
        manifest: Manifest {
            media_type: String::new(),
            digest: String::new(),
            bytes: Vec::new(),
        },
        metadata: json!({"name": "forty", "version": "0.1.0"}),
        archive: std::fs::read(work.path().join("forty-0.1.0.tgz")).unwrap(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let render = |values: serde_json::Value| Render {
        helm: &env.helm,
        kube_version: Some(wallaroo_testenv::versions::KUBERNETES.to_string()),
        values: Some(values),
        release: "bench".into(),
        namespace: Some("bench".into()),
        redact: Vec::new(),
    };
    // Discovery's render (made by every first plan anyway) and the images it finds.
    let mut discovery = Vec::new();
    let mut sources = BTreeSet::new();
    for _ in 0..5 {
        let t = Instant::now();
        sources = runtime
            .block_on(wallaroo_oci::release::discover(
                &chart,
                Some(&render(json!({}))),
            ))
            .unwrap()
            .into_keys()
            .collect();
        discovery.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    assert_eq!(sources.len(), IMAGES, "{sources:?}");
    let targets: BTreeMap<(String, String, String), String> = sources
        .iter()
        .map(|s| {
            let (host, repo, tag) = wallaroo_model::split_reference(s);
            let name = repo.rsplit('/').next().unwrap().to_string();
            (
                (host, repo, tag.clone()),
                format!("private.example:5000/mirror/{name}:{tag}"),
            )
        })
        .collect();
    let target_of =
        |r: &str| -> Option<String> { targets.get(&wallaroo_model::split_reference(r)).cloned() };
    let mut learning = Vec::new();
    let mut evidence = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let defaults = wallaroo_oci::release::default_values(&chart).unwrap();
        let markers = wallaroo_model::learn::markers(&wallaroo_model::learn::candidates(
            &defaults,
            &json!({}),
        ));
        let learned = runtime
            .block_on(wallaroo_oci::release::learn_image_values(
                &chart,
                &render(json!({})),
                &render(markers.values.clone()),
                &markers,
                &defaults,
                &json!({}),
                &target_of,
            ))
            .unwrap();
        learning.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(learned.unsolved.is_empty(), "{:#?}", learned.unsolved);
        evidence = learned.evidence;
    }
    println!("learning the image keys of a chart with {IMAGES} images (medians of 5)");
    println!("| step | ms |");
    println!("|---|---|");
    println!(
        "| discovery's render (every first plan makes it) | {:.0} |",
        median(discovery)
    );
    println!(
        "| learning: two renders side by side, then the solve (added to the first plan) | {:.0} |",
        median(learning)
    );
    println!("| a no-op plan (cached) | 0 renders |");
    println!("\n{} keys set, e.g.:", evidence.len());
    for e in evidence.iter().filter(|e| e.starts_with("global")) {
        println!("  {e}");
    }
}
