//! The release's images end to end against the real registries and helm of the test
//! environment, discovered by the operations layer as every plan discovers them: the list read from the chart, digests pinned at the first plan, a vendor
//! re-tag ignored until the pins are refreshed, a platform filter, and a no-op plan after a
//! full mirror.

use std::collections::BTreeMap;
use std::sync::Arc;

use wallaroo_engine::*;
use wallaroo_model::MirrorImage;
use wallaroo_oci::{CopyOptions, Credentials, ImageKind, Registry, copy};
use wallaroo_testenv::{Env, shared, unique};

fn registry(env: &Env, r: &wallaroo_testenv::env::Registry) -> Registry {
    let credentials = Credentials {
        username: r.username.clone(),
        password: r.password.clone(),
    };
    Registry::new(&r.address(), Some(credentials), Some(&env.ca_file)).unwrap()
}

/// The tiny preset under a path of its own, so tests can re-tag without meeting each other.
async fn seeded(path: &str) -> (&'static Env, &'static str) {
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    let version = preset.version;
    let chart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/charts/wallaroo-sample");
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &path, &chart).unwrap()
    })
    .await
    .unwrap();
    (env, version)
}

fn spec(env: &Env, path: &str, namespace: &str, platforms: &str) -> wallaroo_spec::Spec {
    spec_with(env, path, namespace, platforms, "")
}

/// The test spec with more HCL after it.
fn spec_with(
    env: &Env,
    path: &str,
    namespace: &str,
    platforms: &str,
    extra: &str,
) -> wallaroo_spec::Spec {
    let text = env.mirror_spec(path, namespace)
        + &format!("images {{\n  platforms = {platforms}\n}}\n{extra}\n");
    wallaroo_spec::parse_str(
        "test.hcl",
        &text,
        std::path::Path::new("."),
        &Default::default(),
    )
    .unwrap()
}

/// Discovery as every plan does it (the operations layer's workspace): read the chart, pin;
/// then the desired model's images alone (this test registers no cluster kinds).
async fn images(
    env: &Env,
    spec: &wallaroo_spec::Spec,
    state: Option<&wallaroo_state::Lockfile>,
    refresh: bool,
) -> (Vec<MirrorImage>, DesiredSet) {
    let options = wallaroo_operations::WorkspaceOptions {
        helm: Some(env.helm.clone()),
        ..Default::default()
    };
    let ws = wallaroo_operations::Workspace::from_spec(spec.clone(), &options).unwrap();
    let (list, _) = ws.images(state, refresh).await.unwrap();
    let mut desired = wallaroo_model::from_spec_with(spec, &list).unwrap();
    desired.resources.retain(|a, _| a.kind() == "image");
    for r in desired.resources.values_mut() {
        r.depends_on.clear();
    }
    (list, desired)
}

/// A first plan of `desired` (nothing recorded yet), applied; every step must succeed.
async fn mirror_all(engine: &Engine, desired: &DesiredSet, store: &wallaroo_state::StateStore) {
    let plan = engine
        .plan(desired, None, &PlanOptions::default())
        .await
        .unwrap();
    let report = engine
        .apply(&plan, desired, store, &ApplyOptions::default(), &Silent)
        .await
        .unwrap();
    assert!(report.success(), "{report:?}");
}

fn engine(env: &Env) -> Engine {
    let mut kinds = KindRegistry::new();
    kinds.register(Arc::new(ImageKind::new(
        BTreeMap::from([(
            env.vendor.address(),
            Arc::new(registry(env, &env.vendor)) as Arc<dyn wallaroo_oci::ImageSource>,
        )]),
        Arc::new(registry(env, &env.private)),
    )));
    Engine::new(kinds)
}

#[tokio::test]
async fn release_images_come_from_the_chart_are_pinned_and_follow_a_retag_only_when_refreshed() {
    wallaroo_testenv::install_crypto_provider();
    let path = unique("rel");
    let (env, version) = seeded(&path).await;
    let ns = unique("mirror");
    let spec = spec(env, &path, &ns, r#"["all"]"#);
    let (list, desired) = images(env, &spec, None, false).await;

    // The chart itself, and its three images: listed in the annotation, and the rendered
    // templates use them too.
    let by_source: BTreeMap<&str, &str> = list
        .iter()
        .map(|i| (i.source.as_str(), i.origin.as_str()))
        .collect();
    let vendor = env.vendor.address();
    assert_eq!(list.len(), 4, "{by_source:#?}");
    assert_eq!(
        by_source[format!("{vendor}/{path}/2025-1/wallaroo:{version}").as_str()],
        "the release's chart"
    );
    for name in ["conductor-wallsvc", "keycloak", "fitzroy-mini"] {
        assert_eq!(
            by_source[format!("{vendor}/{path}/{name}:{version}").as_str()],
            "chart annotation, helm template",
            "{name}"
        );
    }

    let engine = engine(env);
    let dir = tempfile::tempdir().unwrap();
    let store = wallaroo_state::StateStore::new(dir.path().join("wallaroo.lock"));
    let plan = engine
        .plan(&desired, None, &PlanOptions::default())
        .await
        .unwrap();
    assert_eq!(plan.summary.add, 4);
    let report = engine
        .apply(&plan, &desired, &store, &ApplyOptions::default(), &Silent)
        .await
        .unwrap();
    assert!(report.success(), "{report:?}");
    let state = store.load().unwrap().unwrap();
    let (_, again) = images(env, &spec, Some(&state), false).await;
    let noop = engine
        .plan(&again, Some(&state), &PlanOptions::default())
        .await
        .unwrap();
    assert!(!noop.has_changes(), "{:#?}", noop.changes);

    // The chart is mirrored where helm will pull it from.
    let private = registry(env, &env.private);
    assert!(
        private
            .manifest(&format!("{ns}/charts/wallaroo"), version)
            .await
            .unwrap()
            .is_some()
    );

    // The vendor re-tags keycloak (another image under the same tag).
    let vendor_reg = registry(env, &env.vendor);
    copy(
        &vendor_reg,
        &format!("{path}/conductor-wallsvc"),
        version,
        &vendor_reg,
        &format!("{path}/keycloak"),
        version,
        CopyOptions::default(),
    )
    .await
    .unwrap();
    let (_, pinned) = images(env, &spec, Some(&state), false).await;
    let still = engine
        .plan(&pinned, Some(&state), &PlanOptions::default())
        .await
        .unwrap();
    assert!(
        !still.has_changes(),
        "the pin holds until refreshed: {:#?}",
        still.changes
    );
    let (_, refreshed) = images(env, &spec, Some(&state), true).await;
    let plan = engine
        .plan(&refreshed, Some(&state), &PlanOptions::default())
        .await
        .unwrap();
    let changed: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.action.is_change())
        .map(|c| c.address.to_string())
        .collect();
    assert_eq!(changed, [format!("image[\"{ns}/keycloak:{version}\"]")]);
    let paths: Vec<&str> = plan
        .changes
        .iter()
        .find(|c| c.action.is_change())
        .unwrap()
        .attributes
        .iter()
        .map(|a| a.path.as_str())
        .collect();
    assert_eq!(paths, ["digest", "source_digest"]);
    let report = engine
        .apply(&plan, &refreshed, &store, &ApplyOptions::default(), &Silent)
        .await
        .unwrap();
    assert!(report.success(), "{report:?}");
    let retagged = vendor_reg
        .manifest_digest(&format!("{path}/keycloak"), version)
        .await
        .unwrap();
    assert_eq!(
        private
            .manifest_digest(&format!("{ns}/keycloak"), version)
            .await
            .unwrap(),
        retagged
    );
}

#[tokio::test]
async fn a_platform_filter_mirrors_only_that_platform_and_then_plans_nothing() {
    wallaroo_testenv::install_crypto_provider();
    let path = unique("plat");
    let (env, version) = seeded(&path).await;
    let ns = unique("plat");
    let spec = spec(env, &path, &ns, r#"["linux/arm64"]"#);
    let (_, desired) = images(env, &spec, None, false).await;
    let engine = engine(env);
    let dir = tempfile::tempdir().unwrap();
    let store = wallaroo_state::StateStore::new(dir.path().join("wallaroo.lock"));
    mirror_all(&engine, &desired, &store).await;

    let private = registry(env, &env.private);
    let index = private
        .manifest(&format!("{ns}/fitzroy-mini"), version)
        .await
        .unwrap()
        .unwrap();
    let arches: Vec<String> = index.json()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(arches, ["arm64"]);
    let state = store.load().unwrap().unwrap();
    let (_, again) = images(env, &spec, Some(&state), false).await;
    let noop = engine
        .plan(&again, Some(&state), &PlanOptions::default())
        .await
        .unwrap();
    assert!(!noop.has_changes(), "{:#?}", noop.changes);
}

/// A chart as production charts are written (see `wallaroo_testenv::seed::strict_chart`).
fn strict_chart(dir: &std::path::Path) -> std::path::PathBuf {
    let sample =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/charts/wallaroo-sample");
    wallaroo_testenv::seed::strict_chart(&sample, dir).unwrap()
}

#[tokio::test]
async fn a_chart_that_fails_without_required_values_is_discovered_with_the_install_values() {
    wallaroo_testenv::install_crypto_provider();
    let path = unique("strict");
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    let version = preset.version;
    let dir = tempfile::tempdir().unwrap();
    let chart = strict_chart(dir.path());
    let seed_path = path.clone();
    tokio::task::spawn_blocking(move || {
        wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &seed_path, &chart).unwrap()
    })
    .await
    .unwrap();
    // The image behind the setting, in the vendor registry but in no list of the chart.
    let vendor = registry(env, &env.vendor);
    copy(
        &vendor,
        &format!("{path}/keycloak"),
        version,
        &vendor,
        &format!("{path}/pypi-proxy"),
        version,
        CopyOptions::default(),
    )
    .await
    .unwrap();
    let ns = unique("strict");
    let pypi = r#"
private_pypi {
  url      = "https://pypi.internal.example.com"
  username = "wallaroo"
  password = "pypi-SECRET-4711"
}
"#;

    // With the install's values the chart renders, and the image only private PyPI runs
    // is found in its templates, then mirrored like every other.
    let with_pypi = spec_with(env, &path, &ns, r#"["all"]"#, pypi);
    let (list, desired) = images(env, &with_pypi, None, false).await;
    let proxy = format!("{}/{path}/pypi-proxy:{version}", env.vendor.address());
    let found = list.iter().find(|i| i.source == proxy);
    assert_eq!(
        found.map(|i| i.origin.as_str()),
        Some("helm template"),
        "{list:#?}"
    );
    let engine = engine(env);
    let store = wallaroo_state::StateStore::new(dir.path().join("wallaroo.lock"));
    mirror_all(&engine, &desired, &store).await;
    let private = registry(env, &env.private);
    let mirrored = private
        .manifest(&format!("{ns}/pypi-proxy"), version)
        .await
        .unwrap()
        .expect("the setting's image is mirrored");
    assert!(mirrored.digest.starts_with("sha256:"));

    // Without the setting, the image is not part of the release.
    let (list, _) = images(env, &spec(env, &path, &ns, r#"["all"]"#), None, false).await;
    assert!(!list.iter().any(|i| i.source == proxy), "{list:#?}");

    // A value the chart refuses: helm's words (template and line), the spec setting behind
    // the key, the way out, and no secret.
    let refused = spec_with(
        env,
        &path,
        &ns,
        r#"["all"]"#,
        &format!("{pypi}\nhelm {{\n  values = {{ domainSuffix = \"\" }}\n}}\n"),
    );
    let ws = wallaroo_operations::Workspace::from_spec(
        refused,
        &wallaroo_operations::WorkspaceOptions {
            helm: Some(env.helm.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let err = ws
        .images(None, false)
        .await
        .err()
        .expect("refused")
        .to_string();
    for want in [
        "templates/checks.yaml:",
        "domainSuffix is required",
        "`domainSuffix` comes from `wallaroo { domain }`",
        "`helm { values }` sets it too",
        "images { release = false, extra = [...] }",
    ] {
        assert!(err.contains(want), "{want} missing from:\n{err}");
    }
    assert!(!err.contains("pypi-SECRET-4711"), "{err}");
    assert!(err.contains("(sensitive)"), "{err}");
}

/// An `images { exclude }` entry that names nothing in the release is said (a typo would
/// otherwise mirror the image it meant to leave out); one that names an image is not.
#[tokio::test]
async fn an_exclusion_that_names_nothing_is_a_plan_warning() {
    wallaroo_testenv::install_crypto_provider();
    let path = unique("exclude");
    let (env, _) = seeded(&path).await;
    let spec = spec(
        env,
        &path,
        &unique("exclude"),
        "[\"all\"]\n  exclude = [\"keycloak\", \"keycloakk\"]",
    );
    let ws = wallaroo_operations::Workspace::from_spec(
        spec,
        &wallaroo_operations::WorkspaceOptions {
            helm: Some(env.helm.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let (list, _) = ws.images(None, false).await.unwrap();
    assert!(
        !list
            .iter()
            .any(|i| i.source.ends_with("/keycloak:2025.1.0-6290"))
    );
    assert_eq!(
        ws.take_notes(),
        ["images { exclude } names `keycloakk`, which is not in the release's image list"]
    );
}
