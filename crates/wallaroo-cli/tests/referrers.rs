//! Signatures and SBOMs travel with their images: an image signed both ways (cosign's
//! `sha256-<hex>.sig` tag, and an OCI 1.1 SBOM artifact listed under the referrers tag
//! schema's `sha256-<hex>` index) is listed with its two referrers, mirrored with them into the
//! private registry byte for byte, and carried in a bundle; `--exclude-referrers` leaves them
//! out.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn run(env: &wallaroo_testenv::Env, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wallaroo"))
        .args(args)
        .current_dir(dir)
        .envs(env.exports())
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn ok(env: &wallaroo_testenv::Env, dir: &Path, args: &[&str]) -> String {
    let out = run(env, dir, args);
    assert!(
        out.status.success(),
        "wallaroo {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn signatures_and_sboms_travel_with_their_images() {
    let env = wallaroo_testenv::shared();
    let path = wallaroo_testenv::unique("signed");
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/charts/wallaroo-sample");
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &path, &chart).unwrap();
    let repo = format!("{path}/keycloak");
    let tags = wallaroo_testenv::seed::sign(env, &env.vendor, &repo, "2025.1.0-6290").unwrap();
    let ns = wallaroo_testenv::unique("signed");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wallaroo.hcl"), env.mirror_spec(&path, &ns)).unwrap();

    let listed: Vec<Value> =
        serde_json::from_str(&ok(env, dir.path(), &["images", "--json"])).unwrap();
    let keycloak = format!("{}/{repo}:2025.1.0-6290", env.vendor.address());
    let referrers: Vec<&Value> = listed
        .iter()
        .filter(|i| i["origin"] == format!("referrer of {keycloak}"))
        .collect();
    assert_eq!(referrers.len(), 2, "{listed:#?}");
    for t in &tags {
        assert!(
            referrers
                .iter()
                .any(|r| r["source"].as_str().unwrap().ends_with(&format!(":{t}"))),
            "{t}"
        );
    }
    let without: Vec<Value> = serde_json::from_str(&ok(
        env,
        dir.path(),
        &["images", "--json", "--exclude-referrers"],
    ))
    .unwrap();
    assert_eq!(without.len(), listed.len() - 2);

    // Mirror the image and its referrers (only those resources).
    let mut args = vec!["apply".to_string(), "--auto-approve".to_string()];
    for tag in ["2025.1.0-6290"]
        .iter()
        .map(|t| t.to_string())
        .chain(tags.clone())
    {
        args.push("--target".into());
        args.push(format!("image[\"{ns}/keycloak:{tag}\"]"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let applied = ok(env, dir.path(), &args);
    assert!(applied.contains("Mirrored 3 images"), "{applied}");
    let http = wallaroo_testenv::https_client(&env.ca_file).unwrap();
    let raw = |r: &wallaroo_testenv::env::Registry, repo: &str, reference: &str| {
        http.get(format!(
            "https://{}/v2/{repo}/manifests/{reference}",
            r.address()
        ))
        .header(
            "Accept",
            "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
        )
        .basic_auth(&r.username, Some(&r.password))
        .send()
        .unwrap()
        .bytes()
        .unwrap()
    };
    for tag in &tags {
        assert_eq!(
            raw(&env.private, &format!("{ns}/keycloak"), tag),
            raw(&env.vendor, &repo, tag),
            "{tag} is in the private registry byte for byte"
        );
    }
    // The SBOM the index lists came along too, by digest.
    let index: Value = serde_json::from_slice(&raw(&env.vendor, &repo, &tags[1])).unwrap();
    let sbom = index["manifests"][0]["digest"].as_str().unwrap();
    let mirrored: Value =
        serde_json::from_slice(&raw(&env.private, &format!("{ns}/keycloak"), sbom)).unwrap();
    assert_eq!(mirrored["artifactType"], "application/spdx+json");

    // And in a bundle.
    ok(
        env,
        dir.path(),
        &["bundle", "create", "--out", "release.tar"],
    );
    let list = ok(env, dir.path(), &["bundle", "list", "release.tar"]);
    for t in &tags {
        assert!(list.contains(&format!(":{t}@")), "{t} in\n{list}");
    }
    let verified = ok(env, dir.path(), &["bundle", "verify", "release.tar"]);
    assert!(verified.contains("Every digest matches."), "{verified}");
}
