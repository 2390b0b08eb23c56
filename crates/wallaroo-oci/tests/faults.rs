//! Faults on the path to a registry. Those no real registry shows on purpose go through the
//! test kit's `FaultProxy` (a test double of a broken path in front of the real vendor
//! registry): a blob served with bytes that do not match its digest, and a connection dropped
//! in the middle of a blob, for a copy and for a bundle. A body limit in front of the private
//! registry is a real nginx (Debian's, `client_max_body_size`), as behind an ingress or load
//! balancer left at its defaults (ingress-nginx: 1m).

use std::sync::Arc;

use wallaroo_oci::bundle::{BundleInput, create, verify};
use wallaroo_oci::resume::{Chunking, UploadJournal};
use wallaroo_oci::{CopyOptions, Credentials, ImageSource, OciError, Registry, copy};
use wallaroo_testenv::faultproxy::{Fault, FaultProxy};
use wallaroo_testenv::nginx::BodyLimitedProxy;
use wallaroo_testenv::{Env, shared, unique};

fn registry(env: &Env, address: &str, r: &wallaroo_testenv::env::Registry) -> Registry {
    let credentials = Credentials {
        username: r.username.clone(),
        password: r.password.clone(),
    };
    Registry::new(address, Some(credentials), Some(&env.ca_file)).unwrap()
}

/// The tiny preset under a path of its own; returns the env, the path and the version.
async fn seeded() -> (&'static Env, String, &'static str) {
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    let version = preset.version;
    let chart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/charts/wallaroo-sample");
    let path = unique("fault");
    let p = path.clone();
    tokio::task::spawn_blocking(move || {
        wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &p, &chart).unwrap()
    })
    .await
    .unwrap();
    (env, path, version)
}

/// The last layer of `repo:version` (unique to that image in the tiny preset).
async fn top_layer(vendor: &Registry, repo: &str, version: &str) -> String {
    let m = vendor.manifest(repo, version).await.unwrap().unwrap();
    let layers = m.json()["layers"].as_array().unwrap().clone();
    layers.last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_blob_that_does_not_match_its_digest_is_rejected_and_nothing_of_the_image_is_pushed() {
    wallaroo_testenv::install_crypto_provider();
    let (env, path, version) = seeded().await;
    let vendor = registry(env, &env.vendor.address(), &env.vendor);
    let repo = format!("{path}/keycloak");
    let bad = top_layer(&vendor, &repo, version).await;
    let proxy = tokio::task::spawn_blocking(move || {
        FaultProxy::start(env, &env.vendor, vec![Fault::Corrupt { digest: bad }]).unwrap()
    })
    .await
    .unwrap();
    let through = registry(env, &proxy.address(), &env.vendor);
    let private = registry(env, &env.private.address(), &env.private);
    let target = format!("{}/keycloak", unique("corrupt"));
    let bad = top_layer(&vendor, &repo, version).await;

    let err = copy(
        &through,
        &repo,
        version,
        &private,
        &target,
        version,
        CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, OciError::Digest { .. }), "{err}");
    assert!(err.to_string().contains(&bad), "{err}");
    assert!(proxy.bytes_served(&bad) > 0, "the proxy served the blob");
    assert!(
        !private.has_blob(&target, &bad).await.unwrap(),
        "the corrupted blob was not committed"
    );
    assert!(
        private.manifest(&target, version).await.unwrap().is_none(),
        "no manifest of the image was pushed"
    );

    // Straight from the registry, the same copy works.
    let ok = copy(
        &vendor,
        &repo,
        version,
        &private,
        &target,
        version,
        CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        Some(ok.digest),
        vendor.manifest_digest(&repo, version).await.unwrap()
    );
}

#[tokio::test]
async fn a_connection_dropped_in_the_middle_of_a_blob_is_retried_and_the_copy_completes() {
    wallaroo_testenv::install_crypto_provider();
    let (env, path, version) = seeded().await;
    let vendor = registry(env, &env.vendor.address(), &env.vendor);
    let repo = format!("{path}/conductor-wallsvc");
    let layer = top_layer(&vendor, &repo, version).await;
    let l = layer.clone();
    let proxy = tokio::task::spawn_blocking(move || {
        FaultProxy::start(
            env,
            &env.vendor,
            vec![Fault::Cut {
                digest: l,
                bytes: 10_000,
                times: 2,
            }],
        )
        .unwrap()
    })
    .await
    .unwrap();
    let through = registry(env, &proxy.address(), &env.vendor);
    let private = registry(env, &env.private.address(), &env.private);
    let target = format!("{}/conductor-wallsvc", unique("cut"));
    let report = copy(
        &through,
        &repo,
        version,
        &private,
        &target,
        version,
        CopyOptions::default(),
    )
    .await
    .unwrap();
    let source = vendor.manifest(&repo, version).await.unwrap().unwrap();
    let mirrored = private.manifest(&target, version).await.unwrap().unwrap();
    assert_eq!(mirrored.bytes, source.bytes, "byte-identical manifest");
    assert_eq!(report.digest, source.digest);
    assert!(private.has_blob(&target, &layer).await.unwrap());
    // Two cut attempts of 10,000 bytes, then the whole blob.
    assert!(
        proxy.bytes_served(&layer) > 20_000,
        "{}",
        proxy.bytes_served(&layer)
    );
}

/// `skopeo inspect --raw` of `repo:tag` on a registry of the test environment.
fn skopeo_raw(env: &Env, r: &wallaroo_testenv::env::Registry, repo: &str, tag: &str) -> Vec<u8> {
    let certs = tempfile::tempdir().unwrap();
    std::fs::copy(&env.ca_file, certs.path().join("ca.crt")).unwrap();
    let out = std::process::Command::new(
        wallaroo_testenv::program("skopeo").unwrap_or_else(|e| panic!("{e}")),
    )
    .args(["inspect", "--raw", "--cert-dir"])
    .arg(certs.path())
    .arg("--creds")
    .arg(format!("{}:{}", r.username, r.password))
    .arg(format!("docker://{}/{repo}:{tag}", r.address()))
    .output()
    .expect("skopeo runs (Debian package skopeo)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test]
async fn a_mirror_stopped_halfway_resumes_and_finishes_with_identical_manifests() {
    wallaroo_testenv::install_crypto_provider();
    let (env, path, version) = seeded().await;
    let vendor = registry(env, &env.vendor.address(), &env.vendor);
    let repo = format!("{path}/fitzroy-mini");
    // The multi-arch image: stall on the top layer of its second platform.
    let index = vendor.manifest(&repo, version).await.unwrap().unwrap();
    let second = index.json()["manifests"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let stalled = top_layer(&vendor, &repo, &second).await;
    let s = stalled.clone();
    let proxy = tokio::task::spawn_blocking(move || {
        FaultProxy::start(
            env,
            &env.vendor,
            vec![Fault::Stall {
                digest: s,
                bytes: 4096,
            }],
        )
        .unwrap()
    })
    .await
    .unwrap();
    let through = std::sync::Arc::new(registry(env, &proxy.address(), &env.vendor));
    let private = std::sync::Arc::new(registry(env, &env.private.address(), &env.private));
    let target = format!("{}/fitzroy-mini", unique("resume"));
    let task = {
        let (through, private, repo, target) = (
            through.clone(),
            private.clone(),
            repo.clone(),
            target.clone(),
        );
        tokio::spawn(async move {
            copy(
                through.as_ref(),
                &repo,
                version,
                &private,
                &target,
                version,
                CopyOptions::default(),
            )
            .await
        })
    };
    while proxy.bytes_served(&stalled) == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(
        private.manifest(&target, version).await.unwrap().is_none(),
        "stopped before the index"
    );

    let resumed = copy(
        &vendor,
        &repo,
        version,
        &private,
        &target,
        version,
        CopyOptions::default(),
    )
    .await
    .unwrap();
    assert!(
        resumed.blobs_present >= 3,
        "what the first run finished is not sent again: {resumed:?}"
    );
    let (e, r, t) = (env, repo.clone(), target.clone());
    let (src, dst) = tokio::task::spawn_blocking(move || {
        (
            skopeo_raw(e, &e.vendor, &r, version),
            skopeo_raw(e, &e.private, &t, version),
        )
    })
    .await
    .unwrap();
    assert_eq!(src, dst, "byte-identical index");
}

#[tokio::test]
async fn a_bundle_takes_a_dropped_blob_up_where_it_stopped_and_refuses_a_corrupted_one() {
    wallaroo_testenv::install_crypto_provider();
    let (env, path, version) = seeded().await;
    let vendor = registry(env, &env.vendor.address(), &env.vendor);
    let cut_repo = format!("{path}/conductor-wallsvc");
    let bad_repo = format!("{path}/keycloak");
    let cut = top_layer(&vendor, &cut_repo, version).await;
    let bad = top_layer(&vendor, &bad_repo, version).await;
    let size = vendor
        .manifest(&cut_repo, version)
        .await
        .unwrap()
        .unwrap()
        .json()["layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["size"]
        .as_u64()
        .unwrap();
    let faults = vec![
        Fault::Cut {
            digest: cut.clone(),
            bytes: 10_000,
            times: 2,
        },
        Fault::Corrupt {
            digest: bad.clone(),
        },
    ];
    let proxy =
        tokio::task::spawn_blocking(move || FaultProxy::start(env, &env.vendor, faults).unwrap())
            .await
            .unwrap();
    let through: Arc<dyn ImageSource> = Arc::new(registry(env, &proxy.address(), &env.vendor));
    let input = |repo: &str, digest: String| BundleInput {
        source: format!("{}/{repo}:{version}", env.vendor.address()),
        origin: "test".into(),
        digest,
        from: through.clone(),
    };
    let dir = tempfile::tempdir().unwrap();

    // Cut twice after 10,000 bytes: the bundle is whole, and the blob went on from where
    // each cut left it (from the start each time would be its size and 20,000 bytes more).
    let digest = vendor
        .manifest_digest(&cut_repo, version)
        .await
        .unwrap()
        .unwrap();
    let file = dir.path().join("cut.tar");
    create(
        &file,
        version,
        &[input(&cut_repo, digest)],
        &Default::default(),
    )
    .await
    .unwrap();
    let checked = verify(&file).unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    let served = proxy.bytes_served(&cut);
    assert!(
        served >= size && served < size + 20_000,
        "{served} bytes of {size} served"
    );

    // A blob that does not match its digest: no bundle, and nothing that looks like one.
    let digest = vendor
        .manifest_digest(&bad_repo, version)
        .await
        .unwrap()
        .unwrap();
    let file = dir.path().join("bad.tar");
    let err = create(
        &file,
        version,
        &[input(&bad_repo, digest)],
        &Default::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, OciError::Digest { .. }), "{err}");
    assert!(err.to_string().contains(&bad), "{err}");
    assert!(!file.exists());
    assert!(!dir.path().join("bad.tar.partial").exists());
}

#[tokio::test]
async fn a_body_limit_in_front_of_the_registry_is_named_with_how_to_lift_it() {
    wallaroo_testenv::install_crypto_provider();
    let (env, path, version) = seeded().await;
    // The tiny preset's layers are 16-64 KiB; its manifests and configs are far below 16k.
    let proxy = tokio::task::spawn_blocking(move || {
        BodyLimitedProxy::start(env, &env.private, "16k").unwrap()
    })
    .await
    .unwrap();
    let vendor = registry(env, &env.vendor.address(), &env.vendor);
    let behind = registry(env, &proxy.address(), &env.private);
    let repo = format!("{path}/conductor-wallsvc");
    let target = format!("{}/conductor-wallsvc", unique("limited"));

    // A blob in one request (below 128 MiB): refused, and the error says what refused it and
    // how to lift the limit.
    let err = copy(
        &vendor,
        &repo,
        version,
        &behind,
        &target,
        version,
        CopyOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("413 Payload Too Large"), "{err}");
    assert!(
        err.contains("a proxy or ingress in front of it, refused the blob in one request")
            && err.contains("nginx.ingress.kubernetes.io/proxy-body-size"),
        "{err}"
    );
    assert!(!err.contains("<html>"), "no proxy error page: {err}");
    assert!(
        behind.manifest(&target, version).await.unwrap().is_none(),
        "nothing of the image was pushed"
    );

    // In chunks (a large blob's way): the chunk's size is named.
    let m = vendor.manifest(&repo, version).await.unwrap().unwrap();
    let layer = &m.json()["layers"][0];
    let (digest, size) = (
        layer["digest"].as_str().unwrap().to_string(),
        layer["size"].as_u64().unwrap(),
    );
    assert!(size > 32 << 10, "a layer larger than one chunk: {size}");
    let journal = tempfile::tempdir().unwrap();
    let err = behind
        .put_blob_resumable(
            &target,
            &digest,
            size,
            &vendor as &dyn ImageSource,
            &repo,
            &UploadJournal::new(journal.path()).with_chunking(Chunking::Chunks(32 << 10)),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("413 Payload Too Large")
            && err.contains("refused a request body of 32.00 KiB")
            && err.contains("client_max_body_size"),
        "{err}"
    );
    assert!(!err.contains("<html>"), "no proxy error page: {err}");

    // Straight to the registry, the same image goes across.
    let private = registry(env, &env.private.address(), &env.private);
    copy(
        &vendor,
        &repo,
        version,
        &private,
        &target,
        version,
        CopyOptions::default(),
    )
    .await
    .unwrap();
}
