//! The private registry behind a real reverse proxy that limits request bodies (nginx from
//! Debian, `client_max_body_size`), as it is behind an ingress or load balancer left at its
//! defaults (ingress-nginx: 1m).

use wallaroo_oci::resume::{Chunking, UploadJournal};
use wallaroo_oci::{CopyOptions, Credentials, ImageSource, Registry, copy};
use wallaroo_testenv::nginx::BodyLimitedProxy;
use wallaroo_testenv::{Env, shared, unique};

fn registry(env: &Env, address: &str, r: &wallaroo_testenv::env::Registry) -> Registry {
    let credentials = Credentials {
        username: r.username.clone(),
        password: r.password.clone(),
    };
    Registry::new(address, Some(credentials), Some(&env.ca_file)).unwrap()
}

#[tokio::test]
async fn a_body_limit_in_front_of_the_registry_is_named_with_how_to_lift_it() {
    wallaroo_testenv::install_crypto_provider();
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    let version = preset.version;
    let chart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/charts/wallaroo-sample");
    let path = unique("bodylimit");
    let p = path.clone();
    tokio::task::spawn_blocking(move || {
        wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &p, &chart).unwrap()
    })
    .await
    .unwrap();
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
