//! Discovery on charts other projects wrote, taken from their Go modules on the module proxy
//! (each chart keeps its project's licence there; nothing of them is copied into this
//! repository). Each chart is packaged with the real helm and its images discovered the way a
//! release's are; the result is compared with the list its maintainers publish in the
//! chart's `values.yaml` (none of these charts carries an `artifacthub.io/images`
//! annotation). Every difference is explained where it is expected.
//!
//! The shapes covered: local subcharts (kyverno's `crds` and `grafana`), images split into
//! `registry`/`repository`/`tag` with a global registry key (kyverno's
//! `global.image.registry`), a tag left empty for the chart's `appVersion` (metrics-server,
//! external-dns), images only in hooks (gatekeeper's CRD upgrade job and webhook probe,
//! secrets-store-csi-driver's CRD job) and test pods (kyverno's), Docker Hub short names
//! (`busybox`, `bitnami/kubectl`, `curlimages/curl`), `required` in templates (kyverno),
//! images that appear only with a setting on (metrics-server's addon resizer, kueue's
//! kueueviz), a chart whose `values.schema.json` types its values (external-dns), and a tag
//! pinned with a digest. (external-secrets v0.16.2 was tried too: its chart names a dependency
//! at oci://ghcr.io that its module does not carry, so `helm package` itself refuses it; a
//! registry never holds such a chart.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::json;
use wallaroo_oci::Manifest;
use wallaroo_oci::release::{Chart, Render, discover};

/// One chart of the corpus: where it lives and what its maintainers list.
struct Case {
    module: &'static str,
    version: &'static str,
    /// The chart's directory inside the module.
    dir: &'static str,
}

fn module_chart(case: &Case) -> PathBuf {
    wallaroo_testenv::provision::go_module_dir(case.module, case.version)
        .unwrap_or_else(|e| panic!("{}@{}: {e}", case.module, case.version))
        .join(case.dir)
}

/// `helm package` of a chart directory (read-only in the module cache), as a [`Chart`].
fn package(helm: &Path, dir: &Path) -> Chart {
    let out_dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(helm)
        .arg("package")
        .arg(dir)
        .arg("--destination")
        .arg(out_dir.path())
        .env("HELM_CACHE_HOME", out_dir.path().join("cache"))
        .env("HELM_CONFIG_HOME", out_dir.path().join("config"))
        .output()
        .unwrap();
    let tgz = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "tgz"));
    let Some(tgz) = tgz else {
        panic!(
            "helm package {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let metadata: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("Chart.yaml")).unwrap()).unwrap();
    Chart {
        repo: format!("corpus/{}", metadata["name"].as_str().unwrap()),
        version: metadata["version"].as_str().unwrap().to_string(),
        manifest: Manifest {
            media_type: String::new(),
            digest: String::new(),
            bytes: Vec::new(),
        },
        metadata,
        archive: std::fs::read(tgz).unwrap(),
    }
}

async fn images(
    env: &wallaroo_testenv::Env,
    chart: &Chart,
    values: Option<serde_json::Value>,
) -> Result<BTreeSet<String>, String> {
    let render = Render {
        helm: &env.helm,
        kube_version: Some(wallaroo_testenv::versions::KUBERNETES.to_string()),
        values,
        release: "corpus".into(),
        namespace: Some("corpus".into()),
        redact: Vec::new(),
    };
    discover(chart, Some(&render))
        .await
        .map(|found| found.into_keys().collect())
        .map_err(|e| e.to_string())
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn discovery_matches_what_third_party_charts_publish() {
    let env = tokio::task::spawn_blocking(wallaroo_testenv::shared)
        .await
        .unwrap();
    let helm = env.helm.clone();
    let chart = |case: Case| package(&helm, &module_chart(&case));

    // metrics-server: `image.tag` is empty, so the chart's appVersion (0.7.1; the module is
    // v0.7.2) is the tag. The addon resizer (`addonResizer.image`) runs only when enabled.
    let metrics = chart(Case {
        module: "sigs.k8s.io/metrics-server",
        version: "v0.7.2",
        dir: "charts/metrics-server",
    });
    assert_eq!(
        images(env, &metrics, None).await.unwrap(),
        set(&["registry.k8s.io/metrics-server/metrics-server:v0.7.1"])
    );
    assert_eq!(
        images(
            env,
            &metrics,
            Some(json!({"addonResizer": {"enabled": true}}))
        )
        .await
        .unwrap(),
        set(&[
            "registry.k8s.io/autoscaling/addon-resizer:1.8.20",
            "registry.k8s.io/metrics-server/metrics-server:v0.7.1",
        ]),
        "an image behind a setting is found when the setting is on"
    );
    // A tag pinned with a digest, as air-gapped installs often pin: kept whole.
    let pinned = "v0.7.1@sha256:db3800085a0957083930c3932b17580eec652cfb6156a05c0f79c7543e80d17a";
    let found = images(env, &metrics, Some(json!({"image": {"tag": pinned}})))
        .await
        .unwrap();
    assert_eq!(
        found,
        set(&[&format!(
            "registry.k8s.io/metrics-server/metrics-server:{pinned}"
        )])
    );
    let (host, repo, reference) = wallaroo_model::split_reference(found.first().unwrap());
    assert_eq!(
        (host.as_str(), repo.as_str(), reference.as_str()),
        (
            "registry.k8s.io",
            "metrics-server/metrics-server",
            &pinned[7..]
        ),
        "the digest is what is mirrored and pulled"
    );

    // kyverno: six controllers under `*.image.{registry,repository,tag}` with the registry
    // from `global.image.registry`, else `ghcr.io`; the cleanup jobs' `bitnami/kubectl` and
    // the test pods' `busybox` (templates/tests, rendered by `helm template`) are Docker Hub
    // short names. Subcharts `crds` and `grafana` (off by default) render nothing.
    let kyverno = chart(Case {
        module: "github.com/kyverno/kyverno",
        version: "v1.13.2",
        dir: "charts/kyverno",
    });
    let published = set(&[
        "bitnami/kubectl:1.30.2",
        "busybox:1.35",
        "ghcr.io/kyverno/background-controller:v1.13.2",
        "ghcr.io/kyverno/cleanup-controller:v1.13.2",
        "ghcr.io/kyverno/kyverno-cli:v1.13.2",
        "ghcr.io/kyverno/kyverno:v1.13.2",
        "ghcr.io/kyverno/kyvernopre:v1.13.2",
        "ghcr.io/kyverno/reports-controller:v1.13.2",
    ]);
    let found = images(env, &kyverno, None).await.unwrap();
    assert_eq!(found, published);
    let hub: Vec<(String, String, String)> = found
        .iter()
        .filter(|r| !r.starts_with("ghcr.io/"))
        .map(|r| wallaroo_model::split_reference(r))
        .collect();
    assert_eq!(
        hub,
        [
            (
                "docker.io".into(),
                "bitnami/kubectl".into(),
                "1.30.2".into()
            ),
            ("docker.io".into(), "library/busybox".into(), "1.35".into()),
        ],
        "Docker Hub short names are read as docker reads them"
    );
    // The global registry key moves every kyverno image (and only those that use it).
    let moved = images(
        env,
        &kyverno,
        Some(json!({"global": {"image": {"registry": "mirror.example.com"}}})),
    )
    .await
    .unwrap();
    assert!(
        moved
            .iter()
            .filter(|r| r.contains("kyverno/"))
            .all(|r| r.starts_with("mirror.example.com/")),
        "{moved:?}"
    );

    // gatekeeper: `image.repository` with `image.release`, `image.crdRepository` for the CRD
    // upgrade hook, and `postInstall.probeWebhook.image` (curlimages/curl) for a hook job.
    let gatekeeper = chart(Case {
        module: "github.com/open-policy-agent/gatekeeper/v3",
        version: "v3.18.0",
        dir: "charts/gatekeeper",
    });
    assert_eq!(
        images(env, &gatekeeper, None).await.unwrap(),
        set(&[
            "curlimages/curl:7.83.1",
            "openpolicyagent/gatekeeper-crds:v3.18.0",
            "openpolicyagent/gatekeeper:v3.18.0",
        ])
    );

    // external-dns: empty tag -> appVersion 0.14.2 (the module is v0.15.0). Its
    // values.schema.json types `provider`: a value of the wrong type is refused by helm before
    // anything renders, and the error names the chart and the key.
    let dns = chart(Case {
        module: "sigs.k8s.io/external-dns",
        version: "v0.15.0",
        dir: "charts/external-dns",
    });
    assert_eq!(
        images(env, &dns, None).await.unwrap(),
        set(&["registry.k8s.io/external-dns/external-dns:v0.14.2"])
    );
    let refused = images(env, &dns, Some(json!({"provider": 5})))
        .await
        .unwrap_err();
    assert!(
        refused.contains("corpus/external-dns") && refused.contains("provider"),
        "{refused}"
    );

    // node-feature-discovery: one image for master, worker and gc.
    let nfd = chart(Case {
        module: "sigs.k8s.io/node-feature-discovery",
        version: "v0.16.6",
        dir: "deployment/helm/node-feature-discovery",
    });
    assert_eq!(
        images(env, &nfd, None).await.unwrap(),
        set(&["registry.k8s.io/nfd/node-feature-discovery:v0.16.6"])
    );

    // secrets-store-csi-driver: the driver, its two sidecars, and the CRD hook's image
    // (`linux.crds.image`); the Windows DaemonSet is off by default.
    let csi = chart(Case {
        module: "sigs.k8s.io/secrets-store-csi-driver",
        version: "v1.4.7",
        dir: "charts/secrets-store-csi-driver",
    });
    assert_eq!(
        images(env, &csi, None).await.unwrap(),
        set(&[
            "registry.k8s.io/csi-secrets-store/driver-crds:v1.4.7",
            "registry.k8s.io/csi-secrets-store/driver:v1.4.7",
            "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.11.1",
            "registry.k8s.io/sig-storage/livenessprobe:v2.13.1",
        ])
    );

    // kueue: the controller; kueueviz's backend and frontend only when enabled.
    let kueue = chart(Case {
        module: "sigs.k8s.io/kueue",
        version: "v0.17.0",
        dir: "charts/kueue",
    });
    let controller = "us-central1-docker.pkg.dev/k8s-staging-images/kueue/kueue:release-0.17";
    assert_eq!(images(env, &kueue, None).await.unwrap(), set(&[controller]));
    assert_eq!(
        images(env, &kueue, Some(json!({"enableKueueViz": true})))
            .await
            .unwrap(),
        set(&[
            controller,
            "us-central1-docker.pkg.dev/k8s-staging-images/kueue/kueueviz-backend:release-0.17",
            "us-central1-docker.pkg.dev/k8s-staging-images/kueue/kueueviz-frontend:release-0.17",
        ])
    );
}

/// The default rewrite on charts other projects wrote: the keys their values declare are
/// pointed at the private registry, and rendered again every container image is the one
/// mirroring puts there. kyverno leaves `registry` empty and supplies `ghcr.io` (or Docker
/// Hub) in its templates, so its keys are matched by repository alone; metrics-server and
/// secrets-store-csi-driver put the host in `repository`.
/// The spec the corpus is air-gapped for: a private registry, no values written.
fn airgap_spec() -> wallaroo_spec::Spec {
    wallaroo_spec::parse_str(
        "rewrite.hcl",
        r#"
wallaroo {
  version                 = "2025.1.0-6290"
  license_channel         = "2025-1"
  domain                  = "wallaroo.example.com"
  kubernetes_distribution = "kurl"
}
source "wallaroo" { registry = "registry.wallaroo.ai" }
registry "private" {
  host      = "private.example.com:5000"
  namespace = "mirror"
}
"#,
        Path::new("."),
        &Default::default(),
    )
    .unwrap()
}

/// What a plan does for a chart with an empty `helm { values }`: discovery, then the image
/// keys learned by rendering with markers; and the targets the images are mirrored to.
async fn learn(
    env: &wallaroo_testenv::Env,
    spec: &wallaroo_spec::Spec,
    chart: &Chart,
) -> (wallaroo_model::learn::Learned, BTreeSet<String>) {
    let reg = spec.registry.clone().unwrap();
    let mirrored: Vec<wallaroo_model::MirrorImage> = images(env, chart, None)
        .await
        .unwrap()
        .into_iter()
        .map(|source| wallaroo_model::MirrorImage {
            source,
            origin: "helm template".into(),
            pin: None,
        })
        .collect();
    let targets: std::collections::BTreeMap<(String, String, String), String> = mirrored
        .iter()
        .map(|i| {
            (
                wallaroo_model::split_reference(&i.source),
                wallaroo_model::image_target(spec, &reg, i).1,
            )
        })
        .collect();
    let defaults = wallaroo_oci::release::default_values(chart).unwrap();
    let markers =
        wallaroo_model::learn::markers(&wallaroo_model::learn::candidates(&defaults, &json!({})));
    let render = |values: serde_json::Value| Render {
        helm: &env.helm,
        kube_version: Some(wallaroo_testenv::versions::KUBERNETES.to_string()),
        values: Some(values),
        release: "corpus".into(),
        namespace: Some("corpus".into()),
        redact: Vec::new(),
    };
    let target_of =
        |r: &str| -> Option<String> { targets.get(&wallaroo_model::split_reference(r)).cloned() };
    let learned = wallaroo_oci::release::learn_image_values(
        chart,
        &render(json!({})),
        &render(markers.values.clone()),
        &markers,
        &defaults,
        &json!({}),
        &target_of,
    )
    .await
    .unwrap();
    (learned, targets.into_values().collect())
}

/// Whether a rendered reference is one of the mirrored targets (by digest when it has one,
/// as a node pulls it).
fn is_target(image: &str, targets: &BTreeSet<String>) -> bool {
    if targets.contains(image) {
        return true;
    }
    let Some((name, digest)) = image.split_once('@') else {
        return false;
    };
    let name = name
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map_or(name, |(n, _)| n);
    targets.contains(&format!("{name}@{digest}"))
}

/// The corpus air-gapped with no values written: for every chart the keys the render taught
/// point every rendered image at exactly its mirrored target, and no chart needs the guess by
/// naming convention. The charts written by other projects, and two built to be hard.
#[tokio::test]
async fn every_chart_is_air_gapped_by_what_its_render_teaches() {
    let env = tokio::task::spawn_blocking(wallaroo_testenv::shared)
        .await
        .unwrap();
    let spec = airgap_spec();
    let corpus = [
        ("github.com/kyverno/kyverno", "v1.13.2", "charts/kyverno"),
        (
            "sigs.k8s.io/metrics-server",
            "v0.7.2",
            "charts/metrics-server",
        ),
        (
            "sigs.k8s.io/secrets-store-csi-driver",
            "v1.4.7",
            "charts/secrets-store-csi-driver",
        ),
        (
            "github.com/open-policy-agent/gatekeeper/v3",
            "v3.18.0",
            "charts/gatekeeper",
        ),
        ("sigs.k8s.io/external-dns", "v0.15.0", "charts/external-dns"),
        (
            "sigs.k8s.io/node-feature-discovery",
            "v0.16.6",
            "deployment/helm/node-feature-discovery",
        ),
        ("sigs.k8s.io/kueue", "v0.17.0", "charts/kueue"),
        ("sigs.k8s.io/jobset", "v0.8.0", "charts/jobset"),
        ("sigs.k8s.io/lws", "v0.6.1", "charts/lws"),
        ("github.com/aquasecurity/trivy", "v0.74.0", "helm/trivy"),
        (
            "sigs.k8s.io/kube-network-policies",
            "v0.8.0",
            "charts/kube-network-policies",
        ),
    ];
    let mut dirs: Vec<(String, PathBuf)> = corpus
        .iter()
        .map(|(module, version, dir)| {
            (
                format!("{module}@{version}"),
                module_chart(&Case {
                    module,
                    version,
                    dir,
                }),
            )
        })
        .collect();
    dirs.push((
        "tests/charts/hard-images".into(),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/charts/hard-images"),
    ));
    let mut report = String::new();
    for (name, dir) in dirs {
        let chart = package(&env.helm, &dir);
        let (learned, targets) = learn(env, &spec, &chart).await;
        assert!(
            learned.unsolved.is_empty(),
            "{name}: {:#?}",
            learned.unsolved
        );
        assert!(!learned.evidence.is_empty(), "{name}: nothing learned");
        // Verify as the plan does: render with what was learned, every image a target.
        let render = Render {
            helm: &env.helm,
            kube_version: Some(wallaroo_testenv::versions::KUBERNETES.to_string()),
            values: Some(learned.values.clone()),
            release: "corpus".into(),
            namespace: Some("corpus".into()),
            redact: Vec::new(),
        };
        let yaml = wallaroo_oci::release::render_manifests(&render, &chart)
            .await
            .unwrap();
        let rendered = wallaroo_oci::release::rendered_containers(&yaml).unwrap();
        assert!(!rendered.is_empty(), "{name}");
        for r in rendered.iter().filter(|r| r.field == "image") {
            assert!(
                is_target(&r.image, &targets),
                "{name}: {} container {} runs {}, not one of {targets:?}\n{:#?}",
                r.object,
                r.container,
                r.image,
                learned.evidence
            );
        }
        report.push_str(&format!("{name}:\n  {}\n", learned.evidence.join("\n  ")));
    }
    eprintln!("{report}");
}

/// An image written in a template: no values can move it, and the render says so.
#[tokio::test]
async fn an_image_written_in_a_template_is_named_with_why() {
    let env = tokio::task::spawn_blocking(wallaroo_testenv::shared)
        .await
        .unwrap();
    let chart = package(
        &env.helm,
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/charts/hardcoded-image"),
    );
    let (learned, _) = learn(env, &airgap_spec(), &chart).await;
    assert_eq!(learned.unsolved.len(), 1, "{:#?}", learned.unsolved);
    let u = &learned.unsolved[0];
    assert_eq!(
        (
            u.object.as_str(),
            u.container.as_str(),
            u.reference.as_str()
        ),
        ("Deployment/app", "wait", "docker.io/library/busybox:1.36")
    );
    assert!(u.why.contains("written in the template"), "{u:?}");
    // The app's own image was learned all the same.
    assert_eq!(
        learned.values["image"]["repository"],
        json!("private.example.com:5000/mirror/app")
    );
}
