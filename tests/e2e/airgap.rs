//! The air-gap guarantee through the binary, with a chart written for the purpose: the sample
//! chart plus a subchart naming its image by `registry`/`repository` keys, an image pinned by
//! digest, and an image named only in a container's `args`. With the default rewrite turned
//! off the plan stops naming each of the three; with it, every rendered image is in the
//! private registry, apply succeeds and the next plan is clean. A `kubectl set image` to an
//! outside registry is drift, and apply puts it back. An image in the private registry's
//! name that no plan mirrors passes only once the registry has it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;
use wallaroo_testenv::{shared, unique};

mod common;
use common::repo;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The sample chart with a `cache` subchart (`image.registry`/`repository`/`tag`), a sidecar
/// pinned by digest and a worker image only in `args` (listed in `images.txt`, so mirrored).
fn chart(dir: &Path, vendor: &str, path: &str, sidecar_digest: &str) -> PathBuf {
    let chart = dir.join("wallaroo");
    let status = Command::new("cp")
        .arg("-r")
        .arg(repo().join("tests/charts/wallaroo-sample"))
        .arg(&chart)
        .status()
        .unwrap();
    assert!(status.success());
    let values = std::fs::read_to_string(chart.join("values.yaml")).unwrap().replace(
        "# The release's image list",
        &format!(
            "sidecar:\n  registry: {vendor}\n  repository: {path}/sidecar\n  digest: {sidecar_digest}\nworker:\n  registry: {vendor}\n  repository: {path}/worker\n  tag: \"1.0\"\n# The release's image list"
        ),
    );
    write(&chart.join("values.yaml"), &values);
    write(
        &chart.join("images.txt"),
        &format!("{vendor}/{path}/worker:1.0\n"),
    );
    write(
        &chart.join("templates/operator.yaml"),
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: operator}
spec:
  selector: {matchLabels: {app: operator}}
  template:
    metadata: {labels: {app: operator}}
    spec:
      containers:
        - name: operator
          image: "{{ .Values.imageRegistry }}/keycloak:{{ .Chart.AppVersion }}"
          args: ["--worker-image={{ .Values.worker.registry }}/{{ .Values.worker.repository }}:{{ .Values.worker.tag }}"]
        - name: sidecar
          image: "{{ .Values.sidecar.registry }}/{{ .Values.sidecar.repository }}@{{ .Values.sidecar.digest }}"
{{- if .Values.preloaded }}
        - name: preloaded
          image: "{{ .Values.preloaded }}"
{{- end }}
"#,
    );
    write(
        &chart.join("charts/cache/Chart.yaml"),
        "apiVersion: v2\nname: cache\nversion: 0.1.0\n",
    );
    write(
        &chart.join("charts/cache/values.yaml"),
        &format!("image:\n  registry: {vendor}\n  repository: {path}/cache\n  tag: \"1.0\"\n"),
    );
    write(
        &chart.join("charts/cache/templates/deployment.yaml"),
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: cache}
spec:
  selector: {matchLabels: {app: cache}}
  template:
    metadata: {labels: {app: cache}}
    spec:
      containers:
        - name: cache
          image: "{{ .Values.image.registry }}/{{ .Values.image.repository }}:{{ .Values.image.tag }}"
"#,
    );
    chart
}

fn run(env: &wallaroo_testenv::Env, dir: &Path, args: &[&str]) -> (i32, String) {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_wallaroo"))
        .args(args)
        .current_dir(dir)
        .envs(env.exports())
        .env("WALLAROO_VAR_admin_password", "Adm1n-airgap")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn every_rendered_image_is_in_the_private_registry_or_the_plan_stops() {
    let env = shared();
    let path = unique("airgap");
    let vendor = env.vendor.address();
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    // The three extra images, in the vendor registry.
    let mut digests = Vec::new();
    for (i, name) in ["cache", "sidecar", "worker"].iter().enumerate() {
        digests.push(
            wallaroo_testenv::seed::docker_image(
                env,
                &env.vendor,
                &format!("{path}/{name}"),
                "1.0",
                500 + i as u64,
                &["amd64"],
            )
            .unwrap(),
        );
    }
    let charts = tempfile::tempdir().unwrap();
    let chart = chart(charts.path(), &vendor, &path, &digests[1]);
    wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &path, &chart).unwrap();

    let id = unique("airgap");
    let common::OperatorSpec { dir, spec, .. } = common::operator_spec(env, &id, Some(&path));
    let spec_file = dir.path().join("wallaroo.hcl");

    // Without the rewrite: the plan stops and names each image, with the key to set.
    std::fs::write(
        &spec_file,
        format!("{spec}images {{\n  rewrite = false\n}}\n"),
    )
    .unwrap();
    let (code, out) = run(env, dir.path(), &["plan"]);
    assert_eq!(code, 1, "{out}");
    for want in [
        format!("Deployment/cache container cache: {vendor}/{path}/cache:1.0 points outside"),
        "(values key `cache.image.registry`)".to_string(),
        format!(
            "Deployment/operator container sidecar: {vendor}/{path}/sidecar@{}",
            digests[1]
        ),
        "(values key `sidecar.registry`)".to_string(),
        format!(
            "Deployment/operator container operator: args names --worker-image={vendor}/{path}/worker:1.0 at its vendor"
        ),
        "--allow-external-image".to_string(),
    ] {
        assert!(out.contains(&want), "{want}\nnot in:\n{out}");
    }
    // The escape hatch, for exactly the images named.
    let (code, out) = run(
        env,
        dir.path(),
        &[
            "plan",
            "--allow-external-image",
            &format!("{vendor}/{path}/cache:1.0"),
        ],
    );
    assert_eq!(code, 1, "the other two still stop it: {out}");
    assert!(!out.contains("container cache:"), "{out}");
    assert!(
        out.contains(&format!("Allowed from outside: {vendor}/{path}/cache:1.0.")),
        "{out}"
    );

    // With the default rewrite: the keys are set, and every image is the private registry's.
    std::fs::write(&spec_file, &spec).unwrap();
    let (code, out) = run(env, dir.path(), &["plan"]);
    assert_eq!(code, 0, "{out}");
    // What each key does, learned by rendering the chart with markers.
    for want in [
        format!(
            "wallaroo sets cache.image.registry = \"{}\": it replaces the host in 1 image (learned by render)",
            env.private.address()
        ),
        format!(
            "wallaroo sets cache.image.repository = \"{id}/cache\": it replaces the path and name in 1 image (learned by render)"
        ),
        format!(
            "wallaroo sets worker.repository = \"{id}/worker\": it replaces the path and name in 1 image (learned by render)"
        ),
    ] {
        assert!(out.contains(&want), "{want}\nnot in:\n{out}");
    }
    let (code, out) = run(env, dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(code, 0, "{out}");
    let api = env.api().unwrap();
    let private = env.private.address();
    for deployment in ["cache", "operator"] {
        let d = api
            .get(&format!(
                "/apis/apps/v1/namespaces/{id}/deployments/{deployment}"
            ))
            .unwrap();
        for c in d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
        {
            let image = c["image"].as_str().unwrap();
            assert!(
                image.starts_with(&format!("{private}/{id}/")),
                "{deployment}: {image}"
            );
            for a in c["args"].as_array().into_iter().flatten() {
                assert!(!a.as_str().unwrap().contains(&vendor), "{deployment}: {a}");
            }
        }
    }
    let (code, out) = run(env, dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(code, 0, "the next plan is clean:\n{out}");

    // `kubectl set image` to a public registry: drift, named, and put back by apply.
    let cache = format!("/apis/apps/v1/namespaces/{id}/deployments/cache");
    let d = api.get(&cache).unwrap();
    let was = d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string();
    let mut patched = d.clone();
    patched["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("docker.io/library/redis:7");
    api.merge_patch(
        &cache,
        &json!({"spec": {"template": {"spec": {"containers": patched["spec"]["template"]["spec"]["containers"]}}}}),
    )
    .unwrap();
    let (code, out) = run(env, dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("drifted_objects[\"Deployment/cache\"]")
            && out.contains("spec.template.spec.containers[0].image"),
        "{out}"
    );
    let (code, out) = run(env, dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(code, 0, "{out}");
    let d = api.get(&cache).unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        json!(was)
    );

    // An image in the private registry's name that no plan mirrored: refused until the
    // registry has it (pushed there by hand, say), then accepted.
    let preloaded = format!("{private}/{id}/preloaded:1.0");
    std::fs::write(
        &spec_file,
        spec.replace(
            "helm {\n  timeout = \"2m\"\n}\n",
            &format!(
                "helm {{\n  timeout = \"2m\"\n  values = {{ preloaded = \"{preloaded}\" }}\n}}\n"
            ),
        ),
    )
    .unwrap();
    let (code, out) = run(env, dir.path(), &["plan"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "container preloaded: {preloaded} is in the private registry's name but not an image this plan mirrors"
        )),
        "{out}"
    );
    wallaroo_testenv::seed::docker_image(
        env,
        &env.private,
        &format!("{id}/preloaded"),
        "1.0",
        600,
        &["amd64"],
    )
    .unwrap();
    let (code, out) = run(env, dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(code, 2, "already in the private registry: accepted\n{out}");
}
