//! Vendor signatures verified offline, against signatures made by the real cosign (built
//! from the Go module proxy by wallaroo-testenv) in the vendor registry: a signed image
//! passes; an unsigned one, one signed by another key, and one carrying a signature moved
//! from another image (a re-tag) are refused with one sentence naming image, digest and key;
//! the OCI 1.1 referrer form passes too; an allowed-unsigned image is copied; and loading from
//! a bundle verifies again from the signatures the bundle carries.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use wallaroo_engine::{Address, Attrs, ResourceKind};
use wallaroo_oci::bundle::{Bundle, BundleInput, create};
use wallaroo_oci::verify::{VerifyError, VerifyKey, verify_image};
use wallaroo_oci::{Credentials, ImageKind, ImageSource, Registry, Signatures};
use wallaroo_testenv::{Env, shared, unique};

fn registry(env: &Env, r: &wallaroo_testenv::env::Registry) -> Registry {
    let credentials = Credentials {
        username: r.username.clone(),
        password: r.password.clone(),
    };
    Registry::new(&r.address(), Some(credentials), Some(&env.ca_file)).unwrap()
}

/// A cosign key pair in `dir`: its public key, named `name` in messages.
fn key_pair(env: &Env, dir: &Path, name: &str) -> VerifyKey {
    let public = wallaroo_testenv::cosign::key_pair(env, dir).unwrap();
    VerifyKey::from_pem(name, &std::fs::read_to_string(public).unwrap()).unwrap()
}

fn sign(env: &Env, dir: &Path, reference: &str, extra: &[&str], extra_env: &[(&str, &str)]) {
    wallaroo_testenv::cosign::sign(env, dir, reference, extra, extra_env)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosign_signatures_are_verified_for_the_exact_digest_offline() {
    wallaroo_testenv::install_crypto_provider();
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    let path = unique("signed");
    let (e, p) = (env, path.clone());
    let preset = tokio::task::spawn_blocking(move || {
        let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
        let chart =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/charts/wallaroo-sample");
        wallaroo_testenv::seed::seed(e, &preset, &e.vendor, &p, &chart).unwrap();
        preset
    })
    .await
    .unwrap();
    let vendor = Arc::new(registry(env, &env.vendor));
    let digest = |repo: String| {
        let vendor = vendor.clone();
        async move {
            vendor
                .manifest(&repo, preset.version)
                .await
                .unwrap()
                .unwrap()
                .digest
        }
    };
    let keycloak = format!("{path}/keycloak");
    let conductor = format!("{path}/conductor-wallsvc");
    let fitzroy = format!("{path}/fitzroy-mini");
    let chart = format!("{path}/2025-1/wallaroo");
    let (kc, co, fi, ch) = (
        digest(keycloak.clone()).await,
        digest(conductor.clone()).await,
        digest(fitzroy.clone()).await,
        digest(chart.clone()).await,
    );
    let home = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (home.path().join("vendor"), home.path().join("other"));
    let (e, a, b) = (env, a_dir.clone(), b_dir.clone());
    let (key_a, key_b) = tokio::task::spawn_blocking(move || {
        (
            key_pair(e, &a, "vendor-cosign.pub"),
            key_pair(e, &b, "other-cosign.pub"),
        )
    })
    .await
    .unwrap();
    let at = |repo: &str, d: &str| format!("{}/{repo}@{d}", env.vendor.address());
    let (e, a, b) = (env, a_dir.clone(), b_dir.clone());
    let (kc_ref, fi_ref, ch_ref) = (at(&keycloak, &kc), at(&fitzroy, &fi), at(&chart, &ch));
    tokio::task::spawn_blocking(move || {
        // keycloak by the vendor's key (cosign's tag scheme), fitzroy by another key, and the
        // chart by the vendor's key as an OCI 1.1 referrer.
        sign(e, &a, &kc_ref, &[], &[]);
        sign(e, &b, &fi_ref, &[], &[]);
        sign(
            e,
            &a,
            &ch_ref,
            &["--registry-referrers-mode=oci-1-1"],
            &[("COSIGN_EXPERIMENTAL", "1")],
        );
    })
    .await
    .unwrap();
    // The re-tag attack: keycloak's valid signature put where conductor's would be.
    let stolen = vendor
        .manifest(&keycloak, &format!("sha256-{}.sig", &kc[7..]))
        .await
        .unwrap()
        .unwrap();
    wallaroo_oci::copy(
        vendor.as_ref(),
        &keycloak,
        &format!("sha256-{}.sig", &kc[7..]),
        vendor.as_ref(),
        &conductor,
        &format!("sha256-{}.sig", &co[7..]),
        wallaroo_oci::CopyOptions::default(),
    )
    .await
    .unwrap();
    assert!(stolen.digest.starts_with("sha256:"));

    let keys = std::slice::from_ref(&key_a);
    let name = |repo: &str| format!("{}/{repo}:{}", env.vendor.address(), preset.version);
    assert_eq!(
        verify_image(vendor.as_ref(), &name(&keycloak), &keycloak, &kc, keys).await,
        Ok("vendor-cosign.pub".into())
    );
    assert_eq!(
        verify_image(vendor.as_ref(), &name(&chart), &chart, &ch, keys).await,
        Ok("vendor-cosign.pub".into()),
        "the OCI 1.1 referrer form"
    );
    let other = verify_image(vendor.as_ref(), &name(&fitzroy), &fitzroy, &fi, keys)
        .await
        .unwrap_err();
    assert!(matches!(other, VerifyError::BadSignature { .. }), "{other}");
    assert!(other.to_string().contains(&fi) && other.to_string().contains("vendor-cosign.pub"));
    // Both keys: fitzroy passes with the other one.
    assert_eq!(
        verify_image(
            vendor.as_ref(),
            &name(&fitzroy),
            &fitzroy,
            &fi,
            &[key_a.clone(), key_b.clone()]
        )
        .await,
        Ok("other-cosign.pub".into())
    );
    let moved = verify_image(vendor.as_ref(), &name(&conductor), &conductor, &co, keys)
        .await
        .unwrap_err();
    assert_eq!(
        moved,
        VerifyError::OtherDigest {
            image: name(&conductor),
            digest: co.clone(),
            key: "vendor-cosign.pub".into(),
            signed: kc.clone(),
        }
    );

    // The image kind: copies what verifies, refuses the rest before a byte is sent.
    let private = Arc::new(registry(env, &env.private));
    let ns = unique("verified");
    let sources: std::collections::BTreeMap<String, Arc<dyn ImageSource>> =
        [(env.vendor.address(), vendor.clone() as Arc<dyn ImageSource>)].into();
    let kind = ImageKind::new(sources, private.clone()).with_signatures(Signatures {
        keys: vec![key_a.clone()],
        unsigned: BTreeSet::from([name(&fitzroy)]),
    });
    let image = |repo: &str, d: &str| -> Attrs {
        Attrs::from([
            ("source".to_string(), serde_json::json!(name(repo))),
            ("origin".to_string(), serde_json::json!("release")),
            (
                "target".to_string(),
                serde_json::json!(format!(
                    "{}/{ns}/{}:{}",
                    env.private.address(),
                    repo.rsplit('/').next().unwrap(),
                    preset.version
                )),
            ),
            ("source_digest".to_string(), serde_json::json!(d)),
            ("digest".to_string(), serde_json::json!(d)),
        ])
    };
    let addr = Address::keyed("image", "x");
    kind.create(&addr, &image(&keycloak, &kc)).await.unwrap();
    kind.create(&addr, &image(&fitzroy, &fi))
        .await
        .expect("allowed unsigned");
    let refused = kind
        .create(&addr, &image(&conductor, &co))
        .await
        .unwrap_err();
    assert!(refused.message.contains(&co), "{}", refused.message);
    assert!(
        private
            .manifest(&format!("{ns}/conductor-wallsvc"), preset.version)
            .await
            .unwrap()
            .is_none(),
        "nothing of a refused image is pushed"
    );

    // A bundle carries the signature; loading from it verifies again, offline.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signed.tar");
    let sig_tag = format!("sha256-{}.sig", &kc[7..]);
    let sig = vendor.manifest(&keycloak, &sig_tag).await.unwrap().unwrap();
    let inputs = vec![
        BundleInput {
            source: name(&keycloak),
            origin: "release".into(),
            digest: kc.clone(),
            from: vendor.clone(),
        },
        BundleInput {
            source: format!("{}/{keycloak}:{sig_tag}", env.vendor.address()),
            origin: format!("referrer of {}", name(&keycloak)),
            digest: sig.digest.clone(),
            from: vendor.clone(),
        },
    ];
    create(&file, "2025.1.0-6290", &inputs, &BTreeSet::new())
        .await
        .unwrap();
    let bundle: Arc<dyn ImageSource> = Arc::new(Bundle::open(&file).unwrap());
    assert_eq!(
        verify_image(bundle.as_ref(), &name(&keycloak), &keycloak, &kc, keys).await,
        Ok("vendor-cosign.pub".into())
    );
    let ns2 = unique("frombundle");
    let from_bundle = ImageKind::new(
        [(env.vendor.address(), bundle.clone())].into(),
        private.clone(),
    )
    .with_signatures(Signatures {
        keys: vec![key_a.clone()],
        unsigned: BTreeSet::new(),
    });
    let mut a = image(&keycloak, &kc);
    a.insert(
        "target".into(),
        serde_json::json!(format!(
            "{}/{ns2}/keycloak:{}",
            env.private.address(),
            preset.version
        )),
    );
    from_bundle.create(&addr, &a).await.unwrap();
    // Without the signature in it, the bundle's image is refused.
    let bare = dir.path().join("bare.tar");
    create(&bare, "2025.1.0-6290", &inputs[..1], &BTreeSet::new())
        .await
        .unwrap();
    let bare: Arc<dyn ImageSource> = Arc::new(Bundle::open(&bare).unwrap());
    let unsigned = verify_image(bare.as_ref(), &name(&keycloak), &keycloak, &kc, keys)
        .await
        .unwrap_err();
    assert!(
        matches!(unsigned, VerifyError::Unsigned { .. }),
        "{unsigned}"
    );
}
