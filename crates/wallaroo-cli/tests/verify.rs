//! `verify { keys, unsigned }` through the binary, with a signature the real cosign made: the
//! plan shows each image's verdict, apply mirrors the signed image and refuses the unsigned
//! one in one sentence (`--keep-going` lets the rest finish), and `bundle create` refuses too.

use std::path::Path;
use std::process::{Command, Output};

fn run(env: &wallaroo_testenv::Env, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wallaroo"))
        .args(args)
        .current_dir(dir)
        .envs(env.exports())
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn plans_show_verdicts_and_apply_copies_only_what_verifies() {
    let env = wallaroo_testenv::shared();
    let path = wallaroo_testenv::unique("verify");
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/charts/wallaroo-sample");
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &path, &chart).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    wallaroo_testenv::cosign::key_pair(env, &keys).unwrap();
    let http = wallaroo_testenv::https_client(&env.ca_file).unwrap();
    let digest = |repo: &str| -> String {
        http.head(format!(
            "https://{}/v2/{repo}/manifests/{}",
            env.vendor.address(),
            preset.version
        ))
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        )
        .basic_auth(&env.vendor.username, Some(&env.vendor.password))
        .send()
        .unwrap()
        .headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_string()
    };
    let keycloak = format!("{path}/keycloak");
    wallaroo_testenv::cosign::sign(
        env,
        &keys,
        &format!("{}/{keycloak}@{}", env.vendor.address(), digest(&keycloak)),
        &[],
        &[],
    )
    .unwrap();
    let conductor_digest = digest(&format!("{path}/conductor-wallsvc"));
    let ns = wallaroo_testenv::unique("verified");
    let vendor = env.vendor.address();
    std::fs::write(
        dir.path().join("wallaroo.hcl"),
        env.mirror_spec(&path, &ns)
            + &format!(
                "verify {{\n  keys     = [\"keys/cosign.pub\"]\n  unsigned = [\"{vendor}/{path}/2025-1/wallaroo:2025.1.0-6290\"]\n}}\n"
            ),
    )
    .unwrap();

    let targets = [
        format!("image[\"{ns}/keycloak:{}\"]", preset.version),
        format!("image[\"{ns}/conductor-wallsvc:{}\"]", preset.version),
    ];
    let mut plan_args = vec!["plan"];
    for t in &targets {
        plan_args.extend(["--target", t.as_str()]);
    }
    let out = run(env, dir.path(), &plan_args);
    let plan = text(&out);
    assert!(out.status.success(), "{plan}");
    assert!(
        plan.contains("signature     = \"verified with keys/cosign.pub\""),
        "{plan}"
    );
    assert!(
        plan.contains("NOT VERIFIED") && plan.contains(&conductor_digest),
        "{plan}"
    );

    let mut apply_args = vec!["apply", "--auto-approve", "--keep-going"];
    for t in &targets {
        apply_args.extend(["--target", t.as_str()]);
    }
    let out = run(env, dir.path(), &apply_args);
    let applied = text(&out);
    assert_eq!(out.status.code(), Some(1), "{applied}");
    assert!(
        applied.contains(&format!(
            "conductor-wallsvc:2025.1.0-6290@{conductor_digest} is not signed"
        )),
        "{applied}"
    );
    let there = |repo: &str| {
        http.head(format!(
            "https://{}/v2/{ns}/{repo}/manifests/{}",
            env.private.address(),
            preset.version
        ))
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        )
        .basic_auth(&env.private.username, Some(&env.private.password))
        .send()
        .unwrap()
        .status()
        .is_success()
    };
    assert!(there("keycloak"), "the signed image is mirrored");
    assert!(!there("conductor-wallsvc"), "the unsigned one is not");

    let out = run(
        env,
        dir.path(),
        &["bundle", "create", "--out", "release.tar"],
    );
    let refused = text(&out);
    assert_eq!(out.status.code(), Some(1), "{refused}");
    assert!(refused.contains("is not signed"), "{refused}");
    assert!(!dir.path().join("release.tar").exists());
}
