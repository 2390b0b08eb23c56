//! Image keys learned from the render, through the binary, on the convention that stopped the
//! default path before: a chart whose `global.imageRegistry`, when set, replaces its
//! `imageRegistry` prefix (host **and** path) whole, as Wallaroo's own chart treats its
//! registry keys. With no values written for the air gap the plan learns that and sets it,
//! saying so; apply runs every image from the private registry. With the operator's own
//! prefix written in `helm { values }`, that value stays, discovery still finds the vendor's
//! images behind it, and the same chart mirrors and installs.

use std::path::Path;
use std::process::{Command, Output};

use wallaroo_testenv::{shared, unique};

mod common;

fn run(env: &wallaroo_testenv::Env, dir: &Path, args: &[&str]) -> (i32, String) {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_wallaroo"))
        .args(args)
        .current_dir(dir)
        .envs(env.exports())
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

/// The images the release's Deployments run.
fn running(env: &wallaroo_testenv::Env, ns: &str) -> Vec<String> {
    let api = env.api().unwrap();
    let list = api
        .get(&format!("/apis/apps/v1/namespaces/{ns}/deployments"))
        .unwrap();
    let mut images: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|c| c["image"].as_str().unwrap().to_string())
        .collect();
    images.sort();
    images
}

#[test]
fn a_prefix_global_registry_is_learned_and_the_operators_own_prefix_wins() {
    let env = shared();
    let path = unique("learn");
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    let charts = tempfile::tempdir().unwrap();
    let chart = common::sample_chart_copy(charts.path());
    let helpers = chart.join("templates/_helpers.tpl");
    let text = std::fs::read_to_string(&helpers).unwrap();
    assert!(text.contains("{{ .root.Values.imageRegistry }}/"));
    std::fs::write(
        &helpers,
        text.replace(
            "{{ .root.Values.imageRegistry }}/",
            "{{ .root.Values.global.imageRegistry | default .root.Values.imageRegistry }}/",
        ),
    )
    .unwrap();
    let values = chart.join("values.yaml");
    // Above the image list, which seeding rewrites.
    let text = std::fs::read_to_string(&values).unwrap();
    std::fs::write(&values, format!("global:\n  imageRegistry: \"\"\n{text}")).unwrap();
    wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &path, &chart).unwrap();
    let private = env.private.address();

    // No values written for the air gap.
    let id = unique("learn");
    let common::OperatorSpec { dir, spec, .. } = common::operator_spec(env, &id, Some(&path));
    std::fs::write(dir.path().join("wallaroo.hcl"), &spec).unwrap();
    let (code, out) = run(env, dir.path(), &["plan"]);
    assert_eq!(code, 0, "{out}");
    let want = format!(
        "wallaroo sets global.imageRegistry = \"{private}/{id}\": it replaces host and path in 3 images (learned by render)"
    );
    assert!(out.contains(&want), "{want}\nnot in:\n{out}");
    let (code, out) = run(env, dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(code, 0, "{out}");
    let images = running(env, &id);
    assert_eq!(images.len(), 3, "{images:?}");
    for image in &images {
        assert!(image.starts_with(&format!("{private}/{id}/")), "{images:?}");
    }
    let (code, out) = run(env, dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(code, 0, "the next plan is clean:\n{out}");

    // The operator's own prefix, written by hand: it stays, and the vendor's images are
    // still discovered and mirrored behind it.
    let id = unique("learn");
    let common::OperatorSpec { dir, spec, .. } = common::operator_spec(env, &id, Some(&path));
    let spec = spec.replace(
        "helm {\n  timeout = \"2m\"\n}",
        &format!(
            "helm {{\n  timeout = \"2m\"\n  values = {{\n    global = {{\n      imageRegistry = \"{private}/{id}\"\n    }}\n  }}\n}}"
        ),
    );
    assert!(spec.contains("imageRegistry = "), "{spec}");
    std::fs::write(dir.path().join("wallaroo.hcl"), &spec).unwrap();
    let (code, out) = run(env, dir.path(), &["plan"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("wallaroo sets global.imageRegistry"), "{out}");
    for name in ["conductor-wallsvc", "fitzroy-mini", "keycloak"] {
        let mirrored = format!("+ image[\"{id}/{name}:2025.1.0-6290\"]");
        assert!(out.contains(&mirrored), "{mirrored} not in:\n{out}");
    }
    let (code, out) = run(env, dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(code, 0, "{out}");
    let images = running(env, &id);
    assert_eq!(images.len(), 3, "{images:?}");
    for image in &images {
        assert!(image.starts_with(&format!("{private}/{id}/")), "{images:?}");
    }
}

/// A subchart that transforms a value before joining it with its registry: it takes the base
/// of its repository (`base "library/fitzroy-mini"` is `fitzroy-mini`), as charts that trim or
/// replace in their image helpers do. The markers cannot see that: their first solution splits
/// the target at the host (`global.imageRegistry` = the host, the repository = `NS/name`),
/// which the real render turns into `HOST/NAME`, an image the plan does not mirror. The
/// learned values are proved by render: the solution near it that puts every image at its
/// target is found with a render of its own, the plan says so, and the default path installs
/// with no values written.
#[test]
fn learned_values_are_proved_by_render_where_a_template_transforms_them() {
    let env = shared();
    let path = unique("learnproof");
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    let charts = tempfile::tempdir().unwrap();
    let chart = common::sample_chart_copy(charts.path());
    let values = chart.join("values.yaml");
    let text = std::fs::read_to_string(&values).unwrap();
    std::fs::write(&values, format!("global:\n  imageRegistry: \"\"\n{text}")).unwrap();
    let sub = chart.join("charts/cache");
    std::fs::create_dir_all(sub.join("templates")).unwrap();
    std::fs::write(
        sub.join("Chart.yaml"),
        "apiVersion: v2\nname: cache\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(
        sub.join("values.yaml"),
        format!(
            "image:\n  registry: {}/{path}\n  repository: library/fitzroy-mini\n  tag: 2025.1.0-6290\n",
            env.vendor.address()
        ),
    )
    .unwrap();
    std::fs::write(
        sub.join("templates/deployment.yaml"),
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: cache
spec:
  replicas: 1
  selector: {matchLabels: {app: cache}}
  template:
    metadata: {labels: {app: cache}}
    spec:
      containers:
        - name: cache
          image: {{ printf "%s/%s:%s" (.Values.global.imageRegistry | default .Values.image.registry) (base .Values.image.repository) .Values.image.tag }}
"#,
    )
    .unwrap();
    wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &path, &chart).unwrap();
    let private = env.private.address();

    let id = unique("learnproof");
    let common::OperatorSpec { dir, spec, .. } = common::operator_spec(env, &id, Some(&path));
    std::fs::write(dir.path().join("wallaroo.hcl"), &spec).unwrap();
    let (code, out) = run(env, dir.path(), &["plan"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("proved by render"), "{out}");
    assert!(
        out.contains(&format!("global.imageRegistry = \"{private}/{id}\"")),
        "{out}"
    );
    let (code, out) = run(env, dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(code, 0, "{out}");
    let images = running(env, &id);
    assert_eq!(images.len(), 4, "{images:?}");
    assert!(
        images.contains(&format!("{private}/{id}/fitzroy-mini:2025.1.0-6290")),
        "{images:?}"
    );
    for image in &images {
        assert!(image.starts_with(&format!("{private}/{id}/")), "{images:?}");
    }
    // The next plan takes the proved solution from the cache (no render at all: a no-op
    // plan), still says why, and is clean.
    let (code, out) = run(env, dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(code, 0, "the next plan is clean:\n{out}");
    assert!(out.contains("proved by render"), "{out}");
}

/// The corpus of templates that transform or assemble their image before rendering it, each
/// as a subchart of the sample chart (the parent declares `global.imageRegistry: ""`): a
/// `trimSuffix`, a `replace`, a `printf` with a tag that `default`s to the chart's appVersion,
/// a `tpl`'d reference, and Bitnami's common image helper (registry, repository, tag or
/// digest, `global.imageRegistry` overriding). Each installs on the default path, no values
/// written, every image from the private registry.
#[test]
fn charts_whose_templates_transform_their_image_values_install_on_the_default_path() {
    let env = shared();
    let vendor = env.vendor.address();
    let private = env.private.address();
    const BITNAMI: &str = r#"{{- define "common.images.image" -}}
{{- $registryName := .imageRoot.registry -}}
{{- $repositoryName := .imageRoot.repository -}}
{{- $separator := ":" -}}
{{- $termination := .imageRoot.tag | toString -}}
{{- if .global }}{{- if .global.imageRegistry }}{{- $registryName = .global.imageRegistry -}}{{- end -}}{{- end -}}
{{- if .imageRoot.digest }}{{- $separator = "@" -}}{{- $termination = .imageRoot.digest | toString -}}{{- end -}}
{{- if $registryName }}{{- printf "%s/%s%s%s" $registryName $repositoryName $separator $termination -}}{{- else -}}{{- printf "%s%s%s" $repositoryName $separator $termination -}}{{- end -}}
{{- end -}}
"#;
    // (name, the subchart's values.yaml with PATH and VENDOR to fill, its image expression,
    // a helper file)
    let cases: [(&str, &str, &str, &str); 5] = [
        (
            "trimsuffix",
            "image:\n  registry: VENDOR\n  repository: PATH/fitzroy-mini-img\n  tag: 2025.1.0-6290\n",
            r#"{{ printf "%s/%s:%s" (.Values.global.imageRegistry | default .Values.image.registry) (.Values.image.repository | trimSuffix "-img") .Values.image.tag }}"#,
            "",
        ),
        (
            "replace",
            "image:\n  registry: VENDOR\n  repository: PATH/fitzroy_mini\n  tag: 2025.1.0-6290\n",
            r#"{{ printf "%s/%s:%s" (.Values.global.imageRegistry | default .Values.image.registry) (.Values.image.repository | replace "_" "-") .Values.image.tag }}"#,
            "",
        ),
        (
            "printf-default",
            "image:\n  registry: VENDOR\n  repository: PATH/fitzroy-mini\n  tag: \"\"\n",
            r#"{{ printf "%s/%s:%s" (.Values.global.imageRegistry | default .Values.image.registry) .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}"#,
            "",
        ),
        (
            "tpl",
            "image:\n  registry: VENDOR\n  reference: \"{{ .Values.global.imageRegistry | default .Values.image.registry }}/PATH/fitzroy-mini:2025.1.0-6290\"\n",
            r#"{{ tpl .Values.image.reference . }}"#,
            "",
        ),
        (
            "bitnami",
            "image:\n  registry: VENDOR\n  repository: PATH/fitzroy-mini\n  tag: 2025.1.0-6290\n  digest: \"\"\n",
            r#"{{ include "common.images.image" (dict "imageRoot" .Values.image "global" .Values.global) }}"#,
            BITNAMI,
        ),
    ];
    for (name, values, image, helper) in cases {
        let path = unique(&format!("corpus-{name}"));
        let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
        let charts = tempfile::tempdir().unwrap();
        let chart = common::sample_chart_copy(charts.path());
        let parent_values = chart.join("values.yaml");
        let text = std::fs::read_to_string(&parent_values).unwrap();
        std::fs::write(
            &parent_values,
            format!("global:\n  imageRegistry: \"\"\n{text}"),
        )
        .unwrap();
        let sub = chart.join("charts/cache");
        std::fs::create_dir_all(sub.join("templates")).unwrap();
        std::fs::write(
            sub.join("Chart.yaml"),
            "apiVersion: v2\nname: cache\nversion: 0.1.0\nappVersion: 2025.1.0-6290\n",
        )
        .unwrap();
        std::fs::write(
            sub.join("values.yaml"),
            values.replace("VENDOR", &vendor).replace("PATH", &path),
        )
        .unwrap();
        if !helper.is_empty() {
            std::fs::write(sub.join("templates/_images.tpl"), helper).unwrap();
        }
        std::fs::write(
            sub.join("templates/deployment.yaml"),
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: cache\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: cache}}}}\n  template:\n    metadata: {{labels: {{app: cache}}}}\n    spec:\n      containers:\n        - name: cache\n          image: {image}\n"
            ),
        )
        .unwrap();
        wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &path, &chart).unwrap();
        let id = unique(&format!("corpus-{name}"));
        let common::OperatorSpec { dir, spec, .. } = common::operator_spec(env, &id, Some(&path));
        std::fs::write(dir.path().join("wallaroo.hcl"), &spec).unwrap();
        let (code, out) = run(env, dir.path(), &["apply", "--auto-approve"]);
        assert_eq!(code, 0, "{name}: {out}");
        let images = running(env, &id);
        assert_eq!(images.len(), 4, "{name}: {images:?}");
        for image in &images {
            assert!(
                image.starts_with(&format!("{private}/{id}/")),
                "{name}: {images:?}\n{out}"
            );
        }
        let (code, out) = run(env, dir.path(), &["plan", "--detailed-exitcode"]);
        assert_eq!(code, 0, "{name}: the next plan is clean:\n{out}");
    }
}
