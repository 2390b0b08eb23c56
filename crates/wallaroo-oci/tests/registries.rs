//! The registry matrix: the same mirror, no-op, cross-repository mount, signatures and
//! SBOMs, prune, resume and bundle-load steps against every registry implementation the test
//! kit runs (Debian's distribution 2.8, distribution v3, go-containerregistry's registry), each
//! started empty for this test under the private registry's host name with TLS from the
//! test CA. What each one did is a row of the README's "Registries" table; the test fails when
//! the table and what happened differ (`WALLAROO_BLESS=1` rewrites the table).

use std::collections::BTreeSet;
use std::sync::Arc;

use wallaroo_oci::bundle::{Bundle, BundleInput, create};
use wallaroo_oci::resume::{CHUNK, UploadJournal};
use wallaroo_oci::{BlobStream, CopyOptions, Credentials, ImageSource, Manifest, OciError};
use wallaroo_oci::{Registry, Removed, copy, referrers};
use wallaroo_testenv::env::Implementation;
use wallaroo_testenv::{Env, shared, unique};

fn registry(env: &Env, r: &wallaroo_testenv::env::Registry) -> Registry {
    let credentials = (!r.username.is_empty()).then(|| Credentials {
        username: r.username.clone(),
        password: r.password.clone(),
    });
    Registry::new(&r.address(), credentials, Some(&env.ca_file)).unwrap()
}

/// What the vendor holds for the matrix, and a bundle of it.
struct Fixtures {
    env: &'static Env,
    vendor: Arc<Registry>,
    /// (repository on the vendor, tag): an OCI index, a docker v2 manifest list, a plain OCI
    /// image, and a signed image.
    images: Vec<(String, String)>,
    signed: (String, String),
    bundle: Bundle,
    _dir: tempfile::TempDir,
}

async fn fixtures() -> Fixtures {
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    let path = unique("matrix");
    let (p, e) = (path.clone(), env);
    let signed_tag = tokio::task::spawn_blocking(move || {
        let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
        let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/charts/wallaroo-sample");
        wallaroo_testenv::seed::seed(e, &preset, &e.vendor, &p, &chart).unwrap();
        wallaroo_testenv::seed::docker_image(
            e,
            &e.vendor,
            &format!("{p}/docker-multi"),
            "1.0",
            91,
            &["amd64", "arm64"],
        )
        .unwrap();
        wallaroo_testenv::seed::sign(e, &e.vendor, &format!("{p}/keycloak"), preset.version)
            .unwrap();
        preset.version.to_string()
    })
    .await
    .unwrap();
    let vendor = Arc::new(registry(env, &env.vendor));
    let images: Vec<(String, String)> = [
        ("fitzroy-mini", signed_tag.as_str()),
        ("docker-multi", "1.0"),
        ("conductor-wallsvc", signed_tag.as_str()),
    ]
    .iter()
    .map(|(n, t)| (format!("{path}/{n}"), t.to_string()))
    .collect();
    let signed = (format!("{path}/keycloak"), signed_tag);
    let mut inputs = Vec::new();
    for (repo, tag) in images.iter().chain(Some(&signed)) {
        let digest = vendor.manifest(repo, tag).await.unwrap().unwrap().digest;
        inputs.push(BundleInput {
            source: format!("{}/{repo}:{tag}", env.vendor.address()),
            origin: "test".into(),
            digest,
            from: vendor.clone(),
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("matrix.tar");
    create(&file, "2025.1.0-6290", &inputs, &BTreeSet::new())
        .await
        .unwrap();
    Fixtures {
        env,
        vendor,
        images,
        signed,
        bundle: Bundle::open(&file).unwrap(),
        _dir: dir,
    }
}

/// The source side of a large upload, generated in memory (the registry under test is
/// real): `size` bytes of noise, and, when `fail_after` is set, a stream that breaks after
/// that many bytes, the way a killed run's source stops.
struct Generated {
    bytes: bytes::Bytes,
    digest: String,
    fail_after: Option<u64>,
}

impl Generated {
    fn new(size: usize, fail_after: Option<u64>) -> Generated {
        let mut data = vec![0u8; size];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for chunk in data.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let digest = wallaroo_testenv::seed::digest(&data);
        Generated {
            bytes: data.into(),
            digest,
            fail_after,
        }
    }
}

#[async_trait::async_trait]
impl ImageSource for Generated {
    fn name(&self) -> String {
        "generated".into()
    }
    async fn manifest(&self, _: &str, _: &str) -> Result<Option<Manifest>, OciError> {
        Ok(None)
    }
    async fn blob(&self, repo: &str, digest: &str) -> Result<BlobStream, OciError> {
        self.blob_from(repo, digest, 0).await
    }
    async fn blob_from(&self, _: &str, _: &str, offset: u64) -> Result<BlobStream, OciError> {
        let end = self.fail_after.unwrap_or(self.bytes.len() as u64);
        let mut pieces: Vec<std::io::Result<bytes::Bytes>> = (offset..end)
            .step_by(1 << 20)
            .map(|at| {
                let stop = (at + (1 << 20)).min(end);
                Ok(self.bytes.slice(at as usize..stop as usize))
            })
            .collect();
        if self.fail_after.is_some() {
            pieces.push(Err(std::io::Error::other("the source process was killed")));
        }
        Ok(Box::pin(futures_util::stream::iter(pieces)))
    }
}

/// One row of the table.
struct Row {
    label: String,
    cells: Vec<String>,
}

const COLUMNS: [&str; 9] = [
    "auth",
    "mirror (OCI index, docker list)",
    "no-op",
    "cross-repository mount",
    "signatures, SBOMs",
    "referrers API",
    "prune (DELETE)",
    "resume a killed upload",
    "load a bundle",
];

async fn copy_into(
    src: &dyn ImageSource,
    repo: &str,
    tag: &str,
    private: &Registry,
    target: &str,
    mount_from: &[String],
) -> wallaroo_oci::CopyReport {
    copy(
        src,
        repo,
        tag,
        private,
        target,
        tag,
        CopyOptions {
            mount_from,
            ..CopyOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{repo}:{tag} -> {} {target}: {e}", private.host()))
}

fn name(repo: &str) -> &str {
    repo.rsplit('/').next().unwrap()
}

async fn exercise(f: &Fixtures, imp: Implementation) -> Row {
    let env = f.env;
    let scratch = tokio::task::spawn_blocking(move || {
        env.scratch_registry_of(imp, "matrix-registry")
            .unwrap_or_else(|e| panic!("{}: {e}", imp.label()))
    })
    .await
    .unwrap();
    let private = registry(env, &scratch.registry);
    let label = imp.label();
    let mut cells = vec![if scratch.registry.username.is_empty() {
        "none".to_string()
    } else {
        "htpasswd (Basic)".to_string()
    }];

    // Mirror: byte for byte, docker v2 media types kept.
    for (repo, tag) in &f.images {
        let target = format!("m/{}", name(repo));
        copy_into(f.vendor.as_ref(), repo, tag, &private, &target, &[]).await;
        let want = f.vendor.manifest(repo, tag).await.unwrap().unwrap();
        let got = private.manifest(&target, tag).await.unwrap().unwrap();
        assert_eq!(got.bytes, want.bytes, "{label}: {repo}:{tag}");
        assert_eq!(got.media_type, want.media_type, "{label}: {repo}:{tag}");
    }
    cells.push("yes, byte for byte".into());

    // No-op: a second copy sends nothing.
    let mut again = 0;
    for (repo, tag) in &f.images {
        let target = format!("m/{}", name(repo));
        again += copy_into(f.vendor.as_ref(), repo, tag, &private, &target, &[])
            .await
            .bytes_copied;
    }
    assert_eq!(again, 0, "{label}: a second copy sends nothing");
    cells.push("0 bytes sent".into());

    // Another repository: blobs the registry holds are mounted, or sent again where it
    // declines mounts.
    let (repo, tag) = &f.images[0];
    let mounted = copy_into(
        f.vendor.as_ref(),
        repo,
        tag,
        &private,
        "m2/fitzroy-mini",
        &[format!("m/{}", name(repo))],
    )
    .await;
    cells.push(
        match (
            mounted.blobs_copied,
            mounted.blobs_mounted,
            mounted.blobs_present,
        ) {
            (0, m, _) if m > 0 => "mounted".into(),
            (0, 0, p) if p > 0 => "not needed: one blob store for all repositories".into(),
            (c, _, _) if c > 0 => "declined: blobs sent again".into(),
            _ => panic!("{label}: {mounted:?}"),
        },
    );

    // Signatures and SBOMs travel and are found again on the private registry.
    let (repo, tag) = &f.signed;
    let target = format!("m/{}", name(repo));
    let digest = f.vendor.manifest(repo, tag).await.unwrap().unwrap().digest;
    copy_into(f.vendor.as_ref(), repo, tag, &private, &target, &[]).await;
    let phase = wallaroo_profile::name(&format!("test: referrers on {label}"));
    let refs =
        wallaroo_profile::within(phase, referrers::discover(f.vendor.as_ref(), repo, &digest))
            .await
            .unwrap();
    assert_eq!(refs.len(), 2, "the vendor's signature and SBOM: {refs:?}");
    let asked = wallaroo_profile::figures()
        .iter()
        .find(|p| p.name == phase)
        .map_or(0, |p| p.requests);
    // The repository's tag list and the referrers API (asked once per registry without
    // one), not a lookup per tag.
    assert!(
        asked <= 2,
        "{label}: {asked} requests to find the referrers"
    );
    for r in &refs {
        copy_into(f.vendor.as_ref(), repo, r, &private, &target, &[]).await;
    }
    let found = referrers::discover(&private, &target, &digest)
        .await
        .unwrap();
    for r in &refs {
        assert!(found.contains(r), "{label}: {r} found again in {found:?}");
    }
    cells.push("yes (cosign tags, referrers tag schema)".into());
    cells.push(
        match private.referrers_api(&target, &digest).await.unwrap() {
            Some(listed) => format!("yes ({} listed)", listed.len()),
            None => "no: tag schema used".into(),
        },
    );

    // Prune: deleting a manifest wallaroo mirrored.
    let (repo, tag) = &f.images[2];
    let target = format!("m/{}", name(repo));
    let digest = private
        .manifest(&target, tag)
        .await
        .unwrap()
        .unwrap()
        .digest;
    let alone = private.remove_image(&target, tag, &digest).await.unwrap();
    assert!(
        private.manifest(&target, tag).await.unwrap().is_none(),
        "{label}: removed"
    );
    // A manifest two tags name (an image a new release did not change): the old tag alone
    // may go, the manifest must stay.
    let (repo, tag) = &f.images[0];
    let target = format!("m/{}", name(repo));
    let manifest = private.manifest(&target, tag).await.unwrap().unwrap();
    private
        .put_manifest(&target, "next", &manifest)
        .await
        .unwrap();
    let shared = private
        .remove_image(&target, tag, &manifest.digest)
        .await
        .unwrap();
    assert!(
        private.manifest(&target, "next").await.unwrap().is_some(),
        "{label}: the other tag survives"
    );
    cells.push(format!(
        "yes; {}; {}",
        match alone {
            Removed::Manifest => "DELETE by digest takes the tag",
            Removed::ManifestAndTag => "tags outlive their manifest: deleted apart",
            other => panic!("{label}: {other:?}"),
        },
        match shared {
            Removed::Tag => "a tag deletes alone".to_string(),
            Removed::KeptShared { .. } => {
                assert!(private.manifest(&target, tag).await.unwrap().is_some());
                "no tag delete: a shared manifest is kept".to_string()
            }
            other => panic!("{label}: {other:?}"),
        }
    ));

    // Resume: an upload of 2.5 chunks whose source breaks in the middle of the second chunk;
    // the next run sends what the registry does not hold.
    let size = (CHUNK * 5 / 2) as usize;
    let cut = CHUNK + CHUNK / 3;
    let broken = Generated::new(size, Some(cut));
    let whole = Generated::new(size, None);
    let journal_dir = tempfile::tempdir().unwrap();
    let journal = UploadJournal::new(journal_dir.path());
    let first = private
        .put_blob_resumable(
            "m/large",
            &whole.digest,
            size as u64,
            &broken,
            "g",
            &journal,
        )
        .await;
    assert!(
        first.is_err(),
        "{label}: the broken source stops the upload"
    );
    let again = private
        .put_blob_resumable("m/large", &whole.digest, size as u64, &whole, "g", &journal)
        .await
        .unwrap_or_else(|e| panic!("{label}: resume: {e}"));
    assert!(private.has_blob("m/large", &whole.digest).await.unwrap());
    cells.push(match (&again.restarted, again.resumed_at) {
        (None, Some(at)) => {
            assert!(
                at >= CHUNK && again.sent <= size as u64 - CHUNK,
                "{label}: at most the unconfirmed part is sent again: {again:?}"
            );
            assert!(
                again.sent >= size as u64 - cut,
                "{label}: what never arrived is sent: {again:?}"
            );
            if at > CHUNK {
                "resumed inside the cut chunk: only the rest sent".into()
            } else {
                "resumed after the last whole chunk".into()
            }
        }
        (Some(why), _) => {
            assert_eq!(again.sent, size as u64, "{label}: {again:?}");
            // The registry's answer, without its address (a new port each run).
            let status = why
                .split_once("(its status: ")
                .and_then(|(_, rest)| rest.split_once(')'))
                .map(|(status, _)| status)
                .unwrap_or_else(|| panic!("{label}: the reason names the status: {why}"));
            assert!(
                why.contains(&private.host().to_string()),
                "{label}: the reason names the registry: {why}"
            );
            format!("sent again from the start, said so: its upload status answered {status}")
        }
        (None, None) => panic!("{label}: the journal was not used: {again:?}"),
    });

    // Load from a bundle: every image with its digest.
    for image in &f.bundle.manifest.images {
        let (_, repo, tag) = wallaroo_model::split_reference(&image.source);
        let target = format!("b/{}", name(&repo));
        let report = copy_into(&f.bundle, &repo, &tag, &private, &target, &[]).await;
        assert_eq!(report.digest, image.digest, "{label}: {}", image.source);
    }
    cells.push("yes".into());

    tokio::task::spawn_blocking(move || scratch.stop())
        .await
        .unwrap();
    Row { label, cells }
}

fn table(rows: &[Row]) -> String {
    let mut out = format!("| registry | {} |\n", COLUMNS.join(" | "));
    out.push_str(&format!("|---|{}\n", "---|".repeat(COLUMNS.len())));
    for row in rows {
        out.push_str(&format!("| {} | {} |\n", row.label, row.cells.join(" | ")));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_registry_implementation_mirrors_prunes_resumes_and_loads() {
    wallaroo_testenv::install_crypto_provider();
    let f = fixtures().await;
    let mut rows = Vec::new();
    for imp in Implementation::ALL {
        rows.push(exercise(&f, imp).await);
    }
    let got = table(&rows);
    let readme_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let (start, end) = (
        "<!-- registry-matrix:start -->\n",
        "<!-- registry-matrix:end -->",
    );
    let from = readme.find(start).expect("README has the matrix markers") + start.len();
    let to = readme.find(end).unwrap();
    if std::env::var_os("WALLAROO_BLESS").is_some() {
        let updated = format!("{}{got}{}", &readme[..from], &readme[to..]);
        std::fs::write(&readme_path, updated).unwrap();
    } else {
        assert_eq!(
            &readme[from..to],
            got,
            "README's registry table differs from what the registries did; rerun with WALLAROO_BLESS=1"
        );
    }
}
