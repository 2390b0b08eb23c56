//! Offline bundles against the real registries: create, verify, load (mirror from the
//! archive into the private registry, byte for byte), a damaged archive, and a delta bundle
//! between the `release` and `release-next` presets holding only what changed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use wallaroo_oci::bundle::{Bundle, BundleInput, blobs_of, create, verify};
use wallaroo_oci::{CopyOptions, Credentials, ImageSource, Registry, copy};
use wallaroo_testenv::{Env, shared, unique};

fn registry(env: &Env, r: &wallaroo_testenv::env::Registry) -> Registry {
    let credentials = Credentials {
        username: r.username.clone(),
        password: r.password.clone(),
    };
    Registry::new(&r.address(), Some(credentials), Some(&env.ca_file)).unwrap()
}

async fn seed(preset: &'static str, path: String) -> &'static Env {
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    let chart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/charts/wallaroo-sample");
    tokio::task::spawn_blocking(move || {
        let preset = wallaroo_testenv::seed::preset(preset).unwrap();
        wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &path, &chart).unwrap()
    })
    .await
    .unwrap();
    env
}

/// The preset's images (and chart) as bundle inputs, pinned to what the vendor has now.
async fn inputs(
    env: &Env,
    vendor: &Arc<dyn ImageSource>,
    preset: &str,
    path: &str,
) -> Vec<BundleInput> {
    let preset = wallaroo_testenv::seed::preset(preset).unwrap();
    let mut refs: Vec<(String, String)> = preset
        .images
        .iter()
        .map(|i| (format!("{path}/{}", i.name), i.tag.to_string()))
        .collect();
    refs.push((
        format!("{path}/2025-1/wallaroo"),
        preset.version.to_string(),
    ));
    let mut out = Vec::new();
    for (repo, tag) in refs {
        let digest = vendor.manifest(&repo, &tag).await.unwrap().unwrap().digest;
        out.push(BundleInput {
            source: format!("{}/{repo}:{tag}", env.vendor.address()),
            origin: "test".into(),
            digest,
            from: vendor.clone(),
        });
    }
    out
}

#[tokio::test]
async fn a_bundle_round_trips_into_the_private_registry_and_damage_is_found() {
    wallaroo_testenv::install_crypto_provider();
    let path = unique("bundle");
    let env = seed("tiny", path.clone()).await;
    let vendor: Arc<dyn ImageSource> = Arc::new(registry(env, &env.vendor));
    let inputs = inputs(env, &vendor, "tiny", &path).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("release.tar");
    let report = create(&file, "2025.1.0-6290", &inputs, &BTreeSet::new())
        .await
        .unwrap();
    assert_eq!(report.images, 4);
    assert!(!dir.path().join("release.tar.partial").exists());
    let checked = verify(&file).unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    assert_eq!(checked.blobs, report.blobs);

    // Load: every image from the archive into the private registry, digests unchanged.
    let bundle = Bundle::open(&file).unwrap();

    // GNU tar reads the archive (written in place, blobs side by side) as a plain tar: every
    // blob the bundle lists and the three layout files, nothing else.
    let listed = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&file)
        .output()
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let mut names: Vec<String> = String::from_utf8(listed.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    names.sort();
    let mut expected: Vec<String> = bundle
        .manifest
        .blobs
        .keys()
        .map(|d| format!("blobs/{}", d.replacen(':', "/", 1)))
        .chain(["index.json", "oci-layout", "wallaroo-bundle.json"].map(String::from))
        .collect();
    expected.sort();
    assert_eq!(names, expected);
    let private = registry(env, &env.private);
    let ns = unique("frombundle");
    for input in &inputs {
        let (_, repo, tag) = wallaroo_model::split_reference(&input.source);
        let name = repo.rsplit('/').next().unwrap();
        let target = format!("{ns}/{name}");
        let copied = copy(
            &bundle,
            &repo,
            &tag,
            &private,
            &target,
            &tag,
            CopyOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(copied.digest, input.digest, "{}", input.source);
        let mirrored = private.manifest(&target, &tag).await.unwrap().unwrap();
        let original = vendor.manifest(&repo, &tag).await.unwrap().unwrap();
        assert_eq!(mirrored.bytes, original.bytes, "{}", input.source);
    }

    // One flipped byte in the middle of the archive's largest blob is found.
    let mut bytes = std::fs::read(&file).unwrap();
    let largest = bundle
        .manifest
        .blobs
        .iter()
        .max_by_key(|(_, size)| **size)
        .map(|(d, _)| d.clone())
        .unwrap();
    let name = format!("blobs/sha256/{}", largest.trim_start_matches("sha256:"));
    let name_at = bytes
        .windows(name.len())
        .position(|w| w == name.as_bytes())
        .unwrap();
    let content = (name_at / 512 + 1) * 512;
    bytes[content + 100] ^= 0xff;
    let damaged = dir.path().join("damaged.tar");
    std::fs::write(&damaged, &bytes).unwrap();
    let found = verify(&damaged).unwrap();
    assert_eq!(
        found.problems,
        [format!("blob {largest} does not match its digest")]
    );

    // A copy cut short in the middle of that blob (a transfer that stopped) is named as one.
    let cut = dir.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..content + 1000]).unwrap();
    let err = verify(&cut).unwrap_err().to_string();
    assert!(err.contains("cut short") && err.contains(&name), "{err}");
}

#[tokio::test]
async fn a_delta_bundle_between_release_and_release_next_holds_only_the_changed_blobs() {
    wallaroo_testenv::install_crypto_provider();
    // Both presets under the release path (their tags differ), as `seed release` does.
    let env = seed("release", "release".into()).await;
    seed("release-next", "release".into()).await;
    let vendor: Arc<dyn ImageSource> = Arc::new(registry(env, &env.vendor));
    let previous = inputs(env, &vendor, "release", "release").await;
    let next = inputs(env, &vendor, "release-next", "release").await;
    let pins: BTreeMap<String, String> = previous
        .iter()
        .map(|i| (i.source.clone(), i.digest.clone()))
        .collect();
    let sources = BTreeMap::from([(env.vendor.address(), vendor.clone())]);
    let have = blobs_of(&sources, &pins).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("delta.tar");
    let report = create(&file, "2025.1.1-6301", &next, &have).await.unwrap();
    let bundle = Bundle::open(&file).unwrap();
    let checked = verify(&file).unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);

    // What release-next needs that release did not have, computed independently.
    let next_pins: BTreeMap<String, String> = next
        .iter()
        .map(|i| (i.source.clone(), i.digest.clone()))
        .collect();
    let need = blobs_of(&sources, &next_pins).await.unwrap();
    let new: BTreeSet<&String> = need.difference(&have).collect();
    let carried: BTreeSet<&String> = bundle.manifest.blobs.keys().collect();
    for d in &carried {
        assert!(
            new.contains(d) || need.contains(*d),
            "{d} is not part of release-next"
        );
    }
    let carried_layers: BTreeSet<&String> = carried
        .iter()
        .filter(|d| !have.contains(**d))
        .copied()
        .collect();
    assert_eq!(carried_layers, new, "exactly the new blobs are carried");
    // In release-next one image in five changed its top layer: eight large layers.
    let large = bundle
        .manifest
        .blobs
        .values()
        .filter(|size| **size > (1 << 20))
        .count();
    assert_eq!(large, 8, "{report:?}");
    assert!(report.omitted > 0);
    // The file is the changed layers and little else (tar headers, manifests, the index):
    // within 1% of those layers' size.
    let changed: u64 = new.iter().map(|d| bundle.manifest.blobs[*d]).sum();
    let on_disk = std::fs::metadata(&file).unwrap().len();
    println!(
        "delta bundle: {on_disk} bytes for {changed} bytes of changed blobs; overhead {:.3}%",
        (on_disk as f64 - changed as f64) * 100.0 / changed as f64
    );
    assert!(on_disk >= changed);
    assert!(
        on_disk <= changed + changed / 100,
        "{on_disk} bytes is more than 1% over the {changed} bytes of changed blobs"
    );
    assert!(
        report.bytes < 300 << 20,
        "the delta is small: {} MB",
        report.bytes >> 20
    );
}

/// Runs skopeo (Debian's) with the test environment's CA and the private registry's
/// credentials; panics with its stderr when it fails.
fn skopeo(env: &Env, args: &[String]) {
    let certs = tempfile::tempdir().unwrap();
    std::fs::copy(&env.ca_file, certs.path().join("ca.crt")).unwrap();
    let out = std::process::Command::new(
        wallaroo_testenv::program("skopeo").unwrap_or_else(|e| panic!("{e}")),
    )
    .arg("copy")
    .arg("--dest-cert-dir")
    .arg(certs.path())
    .arg("--dest-creds")
    .arg(format!("{}:{}", env.private.username, env.private.password))
    .args(args)
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `oras copy --from-oci-layout-path` (oras built from the Go module proxy by wallaroo-testenv)
/// of `reference` in the bundle `file` into the private registry.
fn oras(env: &Env, file: &std::path::Path, reference: &str, to: &str) {
    let out = std::process::Command::new(
        wallaroo_testenv::provision::go_program("oras").unwrap_or_else(|e| panic!("{e}")),
    )
    // A reference with a port has colons of its own: the layout's path goes apart.
    .args(["copy", "--from-oci-layout-path"])
    .arg(file)
    .arg(reference)
    .arg(to)
    .arg("--to-ca-file")
    .arg(&env.ca_file)
    .args(["--to-username", &env.private.username])
    .args(["--to-password", &env.private.password])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "oras copy {reference} {to}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn skopeo_and_oras_copy_every_image_of_a_bundle_with_its_digests() {
    wallaroo_testenv::install_crypto_provider();
    let path = unique("bundletools");
    let env = seed("tiny", path.clone()).await;
    let vendor: Arc<dyn ImageSource> = Arc::new(registry(env, &env.vendor));
    let mut inputs = inputs(env, &vendor, "tiny", &path).await;
    // Images kept with docker v2 media types, as docker pushes them: one plain, one list.
    for (name, arches) in [
        ("docker-single", &["amd64"][..]),
        ("docker-multi", &["amd64", "arm64"][..]),
    ] {
        let repo = format!("{path}/{name}");
        let (e, r) = (env, repo.clone());
        let digest = tokio::task::spawn_blocking(move || {
            wallaroo_testenv::seed::docker_image(e, &e.vendor, &r, "1.0", 77, arches).unwrap()
        })
        .await
        .unwrap();
        inputs.push(BundleInput {
            source: format!("{}/{repo}:1.0", env.vendor.address()),
            origin: "test".into(),
            digest,
            from: vendor.clone(),
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("release.tar");
    create(&file, "2025.1.0-6290", &inputs, &BTreeSet::new())
        .await
        .unwrap();
    assert!(verify(&file).unwrap().problems.is_empty());

    let private = registry(env, &env.private);
    let ns = unique("fromskopeo");
    for input in &inputs {
        let (_, repo, tag) = wallaroo_model::split_reference(&input.source);
        let name = repo.rsplit('/').next().unwrap();
        let original = vendor.manifest(&repo, &tag).await.unwrap().unwrap();
        let from = format!("oci-archive:{}:{}", file.display(), input.source);
        let to = |suffix: &str| format!("{}/{ns}/{name}:{tag}{suffix}", env.private.address());

        // The whole image, as it was: every OCI image, index or chart keeps its digest.
        let everything = [
            "--all".into(),
            "--preserve-digests".into(),
            from.clone(),
            format!("docker://{}", to("")),
        ];
        skopeo(env, &everything);
        let copied = private
            .manifest(&format!("{ns}/{name}"), &tag)
            .await
            .unwrap()
            .unwrap();
        if original.media_type.contains("docker") {
            // A docker image comes out as the bundle's OCI index around it: its platform
            // manifests are the image's own, byte for byte.
            let children = |m: &wallaroo_oci::Manifest| -> Vec<String> {
                match m.json()["manifests"].as_array() {
                    Some(list) => list
                        .iter()
                        .map(|c| c["digest"].as_str().unwrap().to_string())
                        .collect(),
                    None => vec![m.digest.clone()],
                }
            };
            assert_eq!(children(&copied), children(&original), "{}", input.source);
            // And copying the platform the host runs gives the image's manifest itself.
            skopeo(
                env,
                &[
                    "--override-arch".into(),
                    "amd64".into(),
                    from.clone(),
                    format!("docker://{}", to("-amd64")),
                ],
            );
            let platform = private
                .manifest(&format!("{ns}/{name}"), &format!("{tag}-amd64"))
                .await
                .unwrap()
                .unwrap();
            let want = children(&original)[0].clone();
            assert_eq!(platform.digest, want, "{}", input.source);
            let original_child = vendor.manifest(&repo, &want).await.unwrap().unwrap();
            assert_eq!(platform.bytes, original_child.bytes);
        } else {
            assert_eq!(copied.digest, input.digest, "{}", input.source);
            assert_eq!(copied.bytes, original.bytes, "{}", input.source);
        }

        // oras takes the image itself, whatever its media types: byte for byte.
        oras(env, &file, &input.source, &to("-oras"));
        let copied = private
            .manifest(&format!("{ns}/{name}"), &format!("{tag}-oras"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(copied.bytes, original.bytes, "oras: {}", input.source);
    }
}

#[tokio::test]
async fn a_bundle_its_disk_cannot_hold_fails_at_the_start_and_leaves_nothing() {
    wallaroo_testenv::install_crypto_provider();
    let path = unique("full");
    let env = seed("tiny", path.clone()).await;
    let vendor: Arc<dyn ImageSource> = Arc::new(registry(env, &env.vendor));
    let inputs = inputs(env, &vendor, "tiny", &path).await;
    // A filesystem of 64 KiB (tmpfs), far smaller than the bundle (about 1.6 MiB).
    let dir = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(dir.path())
        .output()
        .unwrap();
    if !mounted.status.success() {
        eprintln!(
            "SKIPPED: this test needs to mount a small tmpfs (root with CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&mounted.stderr)
        );
        return;
    }
    let file = dir.path().join("release.tar");
    let result = create(&file, "2025.1.0-6290", &inputs, &BTreeSet::new()).await;
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    std::process::Command::new("umount")
        .arg(dir.path())
        .status()
        .unwrap();
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("cannot set aside") && err.contains("iB for the bundle on its disk"),
        "{err}"
    );
    assert!(left.is_empty(), "{left:?}");
}

/// The whole delivery across a gap: a bundle split into parts smaller than its largest
/// layer, signed with a key `cosign generate-key-pair` made, carrying helm. Read in place from
/// its parts (a copy of them in another directory, as a second machine sees them), checked by
/// `cosign verify-blob` too; a missing part, a part cut short and one flipped byte are named
/// by part (and the byte by the blob it falls in); a part is checked alone; an index signed
/// again with another key, or not signed, is refused.
#[tokio::test]
async fn a_split_signed_bundle_is_read_in_place_and_every_damage_is_named() {
    use wallaroo_oci::bundle::{
        CreateOptions, ToolFile, create_with, index_path, signature_path, verify_with,
    };
    wallaroo_testenv::install_crypto_provider();
    let path = unique("split");
    let env = seed("tiny", path.clone()).await;
    let vendor: Arc<dyn ImageSource> = Arc::new(registry(env, &env.vendor));
    let inputs = inputs(env, &vendor, "tiny", &path).await;
    let keys = tempfile::tempdir().unwrap();
    let (one, two) = (keys.path().join("one"), keys.path().join("two"));
    let pub_one = wallaroo_testenv::cosign::key_pair(env, &one).unwrap();
    wallaroo_testenv::cosign::key_pair(env, &two).unwrap();
    let signer = |dir: &std::path::Path| {
        wallaroo_oci::signing::SigningKey::from_pem(
            "cosign.key",
            &std::fs::read_to_string(dir.join("cosign.key")).unwrap(),
            "",
        )
        .unwrap()
    };
    let verifier = wallaroo_oci::verify::VerifyKey::from_pem(
        "one/cosign.pub",
        &std::fs::read_to_string(&pub_one).unwrap(),
    )
    .unwrap();

    // Parts smaller than the largest layer, so that one spans two parts.
    let plain = tempfile::tempdir().unwrap();
    let whole = plain.path().join("release.tar");
    create(&whole, "2025.1.0-6290", &inputs, &BTreeSet::new())
        .await
        .unwrap();
    let largest = *Bundle::open(&whole)
        .unwrap()
        .manifest
        .blobs
        .values()
        .max()
        .unwrap();
    let split = (largest * 2 / 3).max(4096);
    let made = tempfile::tempdir().unwrap();
    let file = made.path().join("release.tar");
    let key = signer(&one);
    let report = create_with(
        &file,
        "2025.1.0-6290",
        &inputs,
        &BTreeSet::new(),
        &CreateOptions {
            split: Some(split),
            sign: Some(&key),
            tools: vec![ToolFile {
                name: "helm".into(),
                platform: wallaroo_oci::bundle::host_platform(),
                version: Some(wallaroo_testenv::versions::HELM.into()),
                path: env.helm.clone(),
            }],
        },
    )
    .await
    .unwrap();
    let parts: Vec<_> = report
        .files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e.len() == 3 && e != "sig"))
        .cloned()
        .collect();
    assert!(parts.len() >= 3, "{:?}", report.files);
    for p in &parts {
        assert!(std::fs::metadata(p).unwrap().len() <= split, "{p:?}");
    }
    assert!(!file.exists(), "no whole archive beside the parts");

    // A second machine: only the copied parts, the index and its signature.
    let far = tempfile::tempdir().unwrap();
    for f in &report.files {
        std::fs::copy(f, far.path().join(f.file_name().unwrap())).unwrap();
    }
    let far_file = far.path().join("release.tar");
    let checked = verify_with(&far_file, Some(&verifier), None).unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    assert_eq!(checked.parts, parts.len());
    assert_eq!(checked.signed_by.as_deref(), Some("one/cosign.pub"));
    // cosign itself accepts the signature with the public key.
    let index = index_path(&far_file);
    wallaroo_testenv::cosign::run(
        env,
        far.path(),
        &[
            "verify-blob",
            "--key",
            pub_one.to_str().unwrap(),
            "--signature",
            signature_path(&index).to_str().unwrap(),
            "--insecure-ignore-tlog=true",
            index.to_str().unwrap(),
        ],
        &[],
    )
    .unwrap();

    // Read in place from the parts: an image into the private registry, byte for byte, and
    // the carried helm runs.
    let bundle = Bundle::open(&far_file).unwrap();
    let private = registry(env, &env.private);
    let ns = unique("fromparts");
    for input in &inputs {
        let (_, repo, tag) = wallaroo_model::split_reference(&input.source);
        let target = format!("{ns}/{}", repo.rsplit('/').next().unwrap());
        copy(
            &bundle,
            &repo,
            &tag,
            &private,
            &target,
            &tag,
            CopyOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            private
                .manifest(&target, &tag)
                .await
                .unwrap()
                .unwrap()
                .digest,
            input.digest
        );
    }
    let tools = bundle
        .extract_tools(
            &far.path().join("bin"),
            Some(&wallaroo_oci::bundle::host_platform()),
        )
        .unwrap();
    let out = std::process::Command::new(&tools[0])
        .arg("version")
        .output()
        .unwrap();
    // (helm built with `go install` reports its minor version only: `v3.16`.)
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(printed.contains("Version:\"v3.16"), "{printed}");

    let n = parts.len();
    let part = |i: usize| far.path().join(format!("release.tar.{i:03}"));
    // One flipped byte in the middle of a blob that part 2 holds: named by part and blob.
    let idx = bundle.index.clone().unwrap();
    let part_two_start = idx.parts[0].size;
    let (name, (at, _, _)) = idx
        .files
        .iter()
        .find(|(name, (at, size, _))| {
            name.starts_with("blobs/")
                && *at >= part_two_start
                && at + size <= part_two_start + idx.parts[1].size
        })
        .or_else(|| {
            idx.files.iter().find(|(_, (at, size, _))| {
                *at < part_two_start + idx.parts[1].size && at + size > part_two_start
            })
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .unwrap();
    let flip_at = at.max(part_two_start) - part_two_start;
    let mut bytes = std::fs::read(part(2)).unwrap();
    bytes[flip_at as usize] ^= 0x01;
    std::fs::write(part(2), &bytes).unwrap();
    let checked = verify_with(&far_file, Some(&verifier), None).unwrap();
    let digest = name.strip_prefix("blobs/sha256/").unwrap();
    assert!(
        checked.problems.iter().any(|p| p.starts_with(&format!(
            "part 2 of {n} (release.tar.002) does not match its checksum in the index: the difference is in "
        )) && p.contains(digest)),
        "{:?}",
        checked.problems
    );
    // A part checked alone, as a copy is made: the altered one fails, the first passes.
    let alone = verify_with(&part(2), None, None).unwrap();
    assert_eq!(alone.problems.len(), 1, "{:?}", alone.problems);
    assert!(
        verify_with(&part(1), None, None)
            .unwrap()
            .problems
            .is_empty()
    );
    bytes[flip_at as usize] ^= 0x01;
    std::fs::write(part(2), &bytes).unwrap();
    // A part cut short, then one missing.
    std::fs::write(part(2), &bytes[..bytes.len() / 2]).unwrap();
    let e = Bundle::open(&far_file).err().unwrap().to_string();
    assert!(
        e.contains(&format!("part 2 of {n} (release.tar.002) is cut short")),
        "{e}"
    );
    std::fs::remove_file(part(2)).unwrap();
    let e = verify_with(&far_file, None, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains(&format!("part 2 of {n} (release.tar.002) is missing")),
        "{e}"
    );
    std::fs::write(part(2), &bytes).unwrap();
    assert!(
        verify_with(&far_file, Some(&verifier), None)
            .unwrap()
            .problems
            .is_empty()
    );

    // The index signed again with another key: refused before anything else.
    let sig = signature_path(&index);
    let other = signer(&two).sign(&std::fs::read(&index).unwrap()).unwrap();
    std::fs::write(&sig, other).unwrap();
    let e = verify_with(&far_file, Some(&verifier), None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("is not one the key one/cosign.pub made"), "{e}");
    // And with no signature at all.
    std::fs::remove_file(&sig).unwrap();
    let e = verify_with(&far_file, Some(&verifier), None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("the bundle is not signed"), "{e}");

    // A delta bundle splits the same way and loads from its parts.
    let first = inputs[0].digest.clone();
    let skip: BTreeSet<String> = blobs_of(
        &BTreeMap::from([(env.vendor.address(), vendor.clone())]),
        &BTreeMap::from([(inputs[0].source.clone(), first)]),
    )
    .await
    .unwrap();
    let delta = made.path().join("delta.tar");
    create_with(
        &delta,
        "2025.1.0-6290",
        &inputs,
        &skip,
        &CreateOptions {
            split: Some(split),
            ..CreateOptions::default()
        },
    )
    .await
    .unwrap();
    let checked = verify_with(&delta, None, None).unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    assert!(checked.omitted > 0 && checked.parts >= 2, "{checked:?}");
    // Loaded from its parts: an image the delta carries whole goes in byte for byte.
    let delta_bundle = Bundle::open(&delta).unwrap();
    let carried = inputs
        .iter()
        .skip(1)
        .find(|i| {
            delta_bundle
                .manifest
                .images
                .iter()
                .any(|b| b.source == i.source)
        })
        .unwrap();
    let (_, repo, tag) = wallaroo_model::split_reference(&carried.source);
    let target = format!("{}/delta", unique("fromdelta"));
    // The previous release is there already (its blobs are what the delta leaves out).
    let (_, prev_repo, prev_tag) = wallaroo_model::split_reference(&inputs[0].source);
    copy(
        vendor.as_ref(),
        &prev_repo,
        &prev_tag,
        &private,
        &target,
        "previous",
        CopyOptions::default(),
    )
    .await
    .unwrap();
    copy(
        &delta_bundle,
        &repo,
        &tag,
        &private,
        &target,
        &tag,
        CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        private
            .manifest(&target, &tag)
            .await
            .unwrap()
            .unwrap()
            .digest,
        carried.digest
    );
}
