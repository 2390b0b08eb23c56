//! Mirroring against the real registries of the test environment: htpasswd and Bearer-token
//! auth over TLS with the private CA, multi-arch indexes, no-op second copies, wrong
//! credentials, and the image kind through the engine.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use wallaroo_engine::*;
use wallaroo_oci::{CopyOptions, Credentials, ImageKind, Registry, copy};
use wallaroo_testenv::{Env, shared, unique};

fn registry(env: &Env, r: &wallaroo_testenv::env::Registry, password: Option<&str>) -> Registry {
    let credentials = Credentials {
        username: r.username.clone(),
        password: password.unwrap_or(&r.password).to_string(),
    };
    Registry::new(&r.address(), Some(credentials), Some(&env.ca_file)).unwrap()
}

async fn seeded() -> (&'static Env, &'static str) {
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    let version = preset.version;
    let chart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/charts/wallaroo-sample");
    tokio::task::spawn_blocking(move || {
        wallaroo_testenv::seed::seed(env, &preset, &env.vendor, "wallaroo", &chart).unwrap()
    })
    .await
    .unwrap();
    (env, version)
}

#[tokio::test]
async fn a_multi_arch_image_mirrors_byte_for_byte_and_a_second_copy_moves_nothing() {
    wallaroo_testenv::install_crypto_provider();
    let (env, version) = seeded().await;
    let (vendor, private) = (
        registry(env, &env.vendor, None),
        registry(env, &env.private, None),
    );
    let repo = format!("{}/fitzroy-mini", unique("mirror"));
    let first = copy(
        &vendor,
        "wallaroo/fitzroy-mini",
        version,
        &private,
        &repo,
        version,
        CopyOptions::default(),
    )
    .await
    .unwrap();
    let source = vendor
        .manifest("wallaroo/fitzroy-mini", version)
        .await
        .unwrap()
        .unwrap();
    let mirrored = private.manifest(&repo, version).await.unwrap().unwrap();
    assert_eq!(
        mirrored.digest, source.digest,
        "the index is pushed byte for byte"
    );
    assert!(mirrored.is_index());
    let platforms: Vec<String> = mirrored.json()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let digest = m["digest"].as_str().unwrap().to_string();
            m["platform"]["architecture"].as_str().unwrap().to_string() + "@" + &digest
        })
        .collect();
    assert_eq!(platforms.len(), 2);
    for p in &platforms {
        let digest = p.split('@').nth(1).unwrap();
        assert!(
            private.manifest(&repo, digest).await.unwrap().is_some(),
            "{p} is in the private registry"
        );
    }
    assert!(
        first.blobs_copied >= 4 && first.bytes_copied > 0,
        "{first:?}"
    );

    let second = copy(
        &vendor,
        "wallaroo/fitzroy-mini",
        version,
        &private,
        &repo,
        version,
        CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        (second.blobs_copied, second.bytes_copied),
        (0, 0),
        "{second:?}"
    );
    assert_eq!(second.blobs_present, first.blobs_copied);

    // Into another repository: shared blobs are mounted, not sent again.
    let other = format!("{}/fitzroy-mini", unique("mirror"));
    let third = copy(
        &vendor,
        "wallaroo/fitzroy-mini",
        version,
        &private,
        &other,
        version,
        CopyOptions {
            mount_from: std::slice::from_ref(&repo),
            ..CopyOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(third.blobs_copied, 0, "{third:?}");
    assert_eq!(third.blobs_mounted, first.blobs_copied);
}

#[tokio::test]
async fn bearer_token_registries_take_pushes_and_serve_pulls() {
    wallaroo_testenv::install_crypto_provider();
    let (env, version) = seeded().await;
    let (vendor, token, private) = (
        registry(env, &env.vendor, None),
        registry(env, &env.token, None),
        registry(env, &env.private, None),
    );
    let repo = format!("{}/conductor-wallsvc", unique("tok"));
    let pushed = copy(
        &vendor,
        "wallaroo/conductor-wallsvc",
        version,
        &token,
        &repo,
        version,
        CopyOptions::default(),
    )
    .await
    .unwrap();
    let pulled = copy(
        &token,
        &repo,
        version,
        &private,
        &repo,
        version,
        CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(pushed.digest, pulled.digest);
    assert!(pulled.blobs_copied > 0);
}

/// The requests the profile counted in `phase`.
fn requests_in(phase: &str) -> u64 {
    wallaroo_profile::figures()
        .iter()
        .find(|p| p.name == phase)
        .map_or(0, |p| p.requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_wait_for_one_to_learn_the_auth() {
    wallaroo_testenv::install_crypto_provider();
    let (env, version) = seeded().await;
    // Basic (htpasswd): the first request is refused once and sent again with the
    // credentials; the other 31 wait for it, then send them up front.
    let vendor = registry(env, &env.vendor, None);
    let looked = wallaroo_profile::within(
        "test: basic probe",
        futures_util::future::join_all((0..32).map(|i| {
            let vendor = &vendor;
            async move {
                vendor
                    .manifest_digest("wallaroo/conductor-wallsvc", &format!("no-such-tag-{i}"))
                    .await
            }
        })),
    )
    .await;
    assert!(looked.iter().all(|r| matches!(r, Ok(None))), "{looked:?}");
    assert_eq!(requests_in("test: basic probe"), 33, "one refused, then 32");

    // Bearer: once the challenge is known, a new scope's token is asked for before its
    // request, not after a refusal (three requests for the first repository, two for each
    // other: the token and the request).
    let token = registry(env, &env.token, None);
    let repos: Vec<String> = (0..4)
        .map(|i| format!("{}/conductor-wallsvc-{i}", unique("probe")))
        .collect();
    for repo in &repos {
        copy(
            &vendor,
            "wallaroo/conductor-wallsvc",
            version,
            &token,
            repo,
            version,
            CopyOptions::default(),
        )
        .await
        .unwrap();
    }
    let fresh = registry(env, &env.token, None);
    let found = wallaroo_profile::within(
        "test: bearer probe",
        futures_util::future::join_all(repos.iter().map(|r| fresh.manifest_digest(r, version))),
    )
    .await;
    assert!(found.iter().all(|r| matches!(r, Ok(Some(_)))), "{found:?}");
    assert_eq!(requests_in("test: bearer probe"), 3 + 2 * 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_without_the_referrers_api_is_asked_once_for_a_burst_of_lookups() {
    wallaroo_testenv::install_crypto_provider();
    let (env, version) = seeded().await;
    // Distribution 2.8 has no referrers API: it answers 404 for a manifest it holds.
    let vendor = registry(env, &env.vendor, None);
    let digest = vendor
        .manifest_digest("wallaroo/conductor-wallsvc", version)
        .await
        .unwrap()
        .unwrap();
    let answers = wallaroo_profile::within(
        "test: referrers burst",
        futures_util::future::join_all((0..32).map(|_| {
            use wallaroo_oci::ImageSource;
            let (vendor, digest) = (&vendor, &digest);
            async move {
                vendor
                    .referrers_api("wallaroo/conductor-wallsvc", digest)
                    .await
            }
        })),
    )
    .await;
    assert!(answers.iter().all(|a| matches!(a, Ok(None))), "{answers:?}");
    assert_eq!(
        requests_in("test: referrers burst"),
        1,
        "the first 404 answers the other 31"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefetched_tag_answers_its_next_read_once() {
    wallaroo_testenv::install_crypto_provider();
    let (env, version) = seeded().await;
    let vendor = registry(env, &env.vendor, None);
    let image = "wallaroo/conductor-wallsvc";
    let digest = vendor.manifest_digest(image, version).await.unwrap();
    assert!(digest.is_some());
    let refs = || {
        vec![
            (image.to_string(), version.to_string()),
            (image.to_string(), "no-such-tag".to_string()),
        ]
    };
    wallaroo_profile::within("test: prefetch", vendor.prefetch_manifest_digests(refs())).await;
    assert_eq!(requests_in("test: prefetch"), 2);

    // The next read of each is answered from what was asked: no request.
    let (held, missing) = wallaroo_profile::within(
        "test: prefetched reads",
        futures_util::future::join(
            vendor.manifest_digest(image, version),
            vendor.manifest_digest(image, "no-such-tag"),
        ),
    )
    .await;
    assert_eq!(held.unwrap(), digest);
    assert_eq!(missing.unwrap(), None);
    assert_eq!(requests_in("test: prefetched reads"), 0);

    // The read after that asks the registry again, and so does one after a forget.
    wallaroo_profile::within("test: read again", vendor.manifest_digest(image, version))
        .await
        .unwrap();
    assert_eq!(requests_in("test: read again"), 1);
    vendor.prefetch_manifest_digests(refs()).await;
    vendor.forget_prefetched();
    wallaroo_profile::within("test: forgotten", vendor.manifest_digest(image, version))
        .await
        .unwrap();
    assert_eq!(requests_in("test: forgotten"), 1);

    // A registry that refuses connections is asked once per tag, without retries, and its
    // reads then ask (and fail) as they would have without the prefetch.
    let down = Registry::new("127.0.0.1:9", None, Some(&env.ca_file)).unwrap();
    wallaroo_profile::within(
        "test: prefetch down",
        down.prefetch_manifest_digests(refs()),
    )
    .await;
    assert_eq!(requests_in("test: prefetch down"), 2);
    assert!(down.manifest_digest(image, version).await.is_err());
}

/// The requests the private registry's access log shows for blobs of `repo`, by method,
/// with their status (`"HEAD" 404`, ...).
fn blob_requests(env: &Env, repo: &str) -> BTreeMap<String, usize> {
    let log = std::fs::read_to_string(env.run_dir.join("logs/private-registry.log")).unwrap();
    let mut seen = BTreeMap::new();
    for line in log.lines() {
        for method in ["HEAD", "POST", "PUT", "PATCH"] {
            if line.contains(&format!("\"{method} /v2/{repo}/blobs/")) {
                let status = line
                    .split('"')
                    .nth(2)
                    .and_then(|rest| rest.split_whitespace().next())
                    .unwrap_or("?");
                *seen.entry(format!("{method} {status}")).or_default() += 1;
            }
        }
    }
    seen
}

#[tokio::test]
async fn a_registry_that_grants_mounts_is_asked_for_a_blob_by_the_start_of_its_upload() {
    wallaroo_testenv::install_crypto_provider();
    let (env, version) = seeded().await;
    let path = unique("asked");
    let vendor = registry(env, &env.vendor, None);
    let image = "wallaroo/conductor-wallsvc";
    let (a, b) = (format!("{path}/a"), format!("{path}/b"));

    // A client that has seen no mount granted looks for each blob with a HEAD first.
    let unproven = registry(env, &env.private, None);
    let first = copy(
        &vendor,
        image,
        version,
        &unproven,
        &a,
        version,
        CopyOptions::default(),
    )
    .await
    .unwrap();
    assert!(first.blobs_copied > 0);
    assert!(!unproven.grants_mounts());
    let seen = blob_requests(env, &a);
    assert_eq!(seen.get("HEAD 404"), Some(&first.blobs_copied), "{seen:?}");

    // Once the registry has mounted a blob, the request that starts an upload asks for it
    // (a mount from the repository itself, 202 when it is not there): no HEADs.
    let proven = registry(env, &env.private, None);
    let config = {
        let m = vendor.manifest(image, version).await.unwrap().unwrap();
        m.json()["config"]["digest"].as_str().unwrap().to_string()
    };
    assert!(
        proven
            .mount(&format!("{path}/learn"), &config, &a)
            .await
            .unwrap()
    );
    assert!(proven.grants_mounts());
    let sent = copy(
        &vendor,
        image,
        version,
        &proven,
        &b,
        version,
        CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(sent.bytes_copied, first.bytes_copied);
    let seen = blob_requests(env, &b);
    assert_eq!(seen.get("HEAD 404"), None, "{seen:?}");
    assert_eq!(seen.get("POST 202"), Some(&sent.blobs_copied), "{seen:?}");

    // The requests without a blob body share one HTTP/2 connection; blob bodies go over
    // HTTP/1.1 connections of their own.
    let log = std::fs::read_to_string(env.run_dir.join("logs/private-registry.log")).unwrap();
    let protocol = |method: &str| -> std::collections::BTreeSet<&str> {
        log.lines()
            .filter(|l| l.contains(&format!("\"{method} /v2/{b}/blobs/")))
            .filter_map(|l| l.split('"').nth(1)?.rsplit(' ').next())
            .collect()
    };
    assert_eq!(protocol("POST"), ["HTTP/2.0"].into());
    assert_eq!(protocol("PUT"), ["HTTP/1.1"].into());
    {
        use wallaroo_oci::ImageSource;
        assert!(proven.multiplexed() && vendor.multiplexed());
    }

    // And a blob the repository holds is found by that request (201): nothing is sent.
    let again = copy(
        &vendor,
        image,
        version,
        &proven,
        &b,
        "another-tag",
        CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(again.bytes_copied, 0);
    assert_eq!(again.blobs_present, sent.blobs_copied);
    let seen = blob_requests(env, &b);
    assert_eq!(seen.get("POST 201"), Some(&sent.blobs_copied), "{seen:?}");
    assert_eq!(seen.get("HEAD 200"), None, "{seen:?}");
}

/// The vendor registry as a copy reads it, counting the blob streams open at once (opened,
/// not yet dropped): an instrument around the real registry, not a stand-in for it.
struct OpenStreams {
    inner: Registry,
    open: Arc<std::sync::atomic::AtomicUsize>,
    most: Arc<std::sync::atomic::AtomicUsize>,
}

/// Lowers the count when the stream it travels with is dropped.
struct Closes(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Closes {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl wallaroo_oci::ImageSource for OpenStreams {
    fn name(&self) -> String {
        self.inner.name()
    }
    async fn manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<wallaroo_oci::Manifest>, wallaroo_oci::OciError> {
        self.inner.manifest(repo, reference).await
    }
    async fn blob(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<wallaroo_oci::BlobStream, wallaroo_oci::OciError> {
        use futures_util::StreamExt;
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.open.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        let closes = Closes(self.open.clone());
        match self.inner.blob(repo, digest).await {
            Ok(stream) => Ok(Box::pin(stream.inspect(move |_| {
                let _ = &closes;
            }))),
            Err(e) => Err(e),
        }
    }
    async fn referrers_api(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<Option<Vec<String>>, wallaroo_oci::OciError> {
        self.inner.referrers_api(repo, digest).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_keeps_its_small_blob_transfers_within_their_bound() {
    wallaroo_testenv::install_crypto_provider();
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    // Ten images of three distinct 256 KiB layers each, all copied at once with one ledger,
    // as an apply copies a release: thirty blobs ready to go, each image trying four at once.
    let path = unique("bounded");
    let preset = wallaroo_testenv::seed::Preset {
        name: "bounded",
        version: "1.0.0",
        images: (0..10u64)
            .map(|i| wallaroo_testenv::seed::ImageSpec {
                name: format!("image-{i}"),
                tag: "1.0.0",
                layers: (0..3).map(|l| (7000 + i * 3 + l, 256 << 10)).collect(),
                multi_arch: false,
                runnable: false,
            })
            .collect(),
    };
    let chart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/charts/wallaroo-sample");
    {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &path, &chart).unwrap()
        })
        .await
        .unwrap();
    }
    let source = OpenStreams {
        inner: registry(env, &env.vendor, None),
        open: Arc::default(),
        most: Arc::default(),
    };
    let private = registry(env, &env.private, None);
    let ledger = wallaroo_oci::BlobLedger::default();
    let copies = futures_util::future::join_all((0..10).map(|i| {
        let (source, private, ledger, path) = (&source, &private, &ledger, &path);
        async move {
            copy(
                source,
                &format!("{path}/image-{i}"),
                "1.0.0",
                private,
                &format!("{path}/mirror/image-{i}"),
                "1.0.0",
                CopyOptions {
                    ledger: Some(ledger),
                    ..CopyOptions::default()
                },
            )
            .await
        }
    }))
    .await;
    let copied: usize = copies.into_iter().map(|c| c.unwrap().blobs_copied).sum();
    // Thirty layers and ten configs, each sent once.
    assert_eq!(copied, 40);
    let most = source.most.load(std::sync::atomic::Ordering::SeqCst);
    let bound = wallaroo_oci::TRANSFERS_AT_ONCE + wallaroo_oci::READS_AHEAD;
    assert!(
        most <= bound,
        "{most} blob streams were open at once; a run keeps at most {bound} (transfers and reads ahead)"
    );
    assert!(most >= 2, "the blobs went one at a time ({most})");
}

#[tokio::test]
async fn wrong_credentials_name_the_registry() {
    wallaroo_testenv::install_crypto_provider();
    let (env, version) = seeded().await;
    for (r, bad) in [
        (&env.vendor, registry(env, &env.vendor, Some("wrong"))),
        (&env.token, registry(env, &env.token, Some("wrong"))),
    ] {
        let err = bad
            .manifest("wallaroo/keycloak", version)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&r.address()) && err.contains("refused the credentials"),
            "{err}"
        );
        assert!(!err.contains("wrong"), "the password is not echoed: {err}");
    }
}

#[tokio::test]
async fn the_image_kind_mirrors_on_apply_and_then_plans_nothing() {
    wallaroo_testenv::install_crypto_provider();
    let (env, version) = seeded().await;
    let vendor: Arc<dyn wallaroo_oci::ImageSource> = Arc::new(registry(env, &env.vendor, None));
    let kind = ImageKind::new(
        BTreeMap::from([(env.vendor.address(), vendor)]),
        Arc::new(registry(env, &env.private, None)),
    );
    let mut kinds = KindRegistry::new();
    kinds.register(Arc::new(kind));
    let engine = Engine::new(kinds);
    let ns = unique("kind");
    let mut desired = DesiredSet::default();
    for name in ["conductor-wallsvc", "keycloak"] {
        desired.insert(DesiredResource::new(
            Address::keyed("image", &format!("{ns}/{name}")),
            "image",
            Attrs::from([
                (
                    "source".into(),
                    json!(format!(
                        "{}/wallaroo/{name}:{version}",
                        env.vendor.address()
                    )),
                ),
                (
                    "target".into(),
                    json!(format!("{}/{ns}/{name}:{version}", env.private.address())),
                ),
            ]),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let store = wallaroo_state::StateStore::new(dir.path().join("wallaroo.lock"));
    let plan = engine
        .plan(&desired, None, &PlanOptions::default())
        .await
        .unwrap();
    assert_eq!(plan.summary.add, 2);
    let report = engine
        .apply(&plan, &desired, &store, &ApplyOptions::default(), &Silent)
        .await
        .unwrap();
    assert!(report.success(), "{report:?}");
    let state = store.load().unwrap().unwrap();
    let recorded =
        &state.resources[&Address::keyed("image", &format!("{ns}/keycloak")).to_string()];
    assert!(
        recorded.attributes["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let again = engine
        .plan(&desired, Some(&state), &PlanOptions::default())
        .await
        .unwrap();
    assert!(!again.has_changes(), "{:#?}", again.changes);
}
