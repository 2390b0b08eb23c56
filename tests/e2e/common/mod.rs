//! What several end-to-end tests set up the same way: the quickstart as an operator adapts
//! it to their cluster, in a working directory of its own.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::json;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A working directory with the example TLS pair, four new kwok nodes named `{id}-N`, and
/// `examples/quickstart.hcl` adapted as an operator would: namespace `id`, those nodes, the
/// vendor path `path` when given, the example user cut, and `helm { timeout = "2m" }`.
pub struct OperatorSpec {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<String>,
    pub spec: String,
}

pub fn operator_spec(env: &wallaroo_testenv::Env, id: &str, path: Option<&str>) -> OperatorSpec {
    let nodes = env
        .add_nodes(id, 4, &json!({}), &json!([]), &json!({}))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tls")).unwrap();
    for f in ["tls/wallaroo.crt", "tls/wallaroo.key"] {
        std::fs::copy(repo().join("examples").join(f), dir.path().join(f)).unwrap();
    }
    let mut spec = std::fs::read_to_string(repo().join("examples/quickstart.hcl"))
        .unwrap()
        .replace(
            "namespace               = \"wallaroo\"",
            &format!("namespace               = \"{id}\""),
        )
        .replace(
            "  namespace = \"wallaroo\"",
            &format!("  namespace = \"{id}\""),
        );
    if let Some(path) = path {
        spec = spec.replace(
            "  ca_file  = var.vendor_ca_file\n",
            &format!("  ca_file  = var.vendor_ca_file\n  path     = \"{path}\"\n"),
        );
    }
    for (i, node) in nodes.iter().enumerate() {
        spec = spec.replace(&format!("\"node-{}\"", i + 1), &format!("\"{node}\""));
    }
    spec.truncate(spec.find("user \"admin@example.com\"").unwrap());
    spec.push_str("helm {\n  timeout = \"2m\"\n}\n");
    OperatorSpec { dir, nodes, spec }
}

/// Seeds the vendor registry with the `tiny` preset under `wallaroo`, where the quickstart
/// reads it (a no-op when it is there).
pub fn seed_tiny(env: &wallaroo_testenv::Env) {
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    wallaroo_testenv::seed::seed(
        env,
        &preset,
        &env.vendor,
        "wallaroo",
        &repo().join("tests/charts/wallaroo-sample"),
    )
    .unwrap();
}

/// A copy of the sample chart at `dir/wallaroo`, for a test to add templates to.
pub fn sample_chart_copy(dir: &Path) -> PathBuf {
    let chart = dir.join("wallaroo");
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(repo().join("tests/charts/wallaroo-sample"))
        .arg(&chart)
        .status()
        .unwrap();
    assert!(status.success());
    chart
}

/// `load-images.bash` by hand: each `(from, to)` repository at `tag` copied from the vendor
/// registry into the private one with skopeo (every platform, digests kept), as an operator
/// mirrors without wallaroo.
pub fn skopeo_mirror(env: &wallaroo_testenv::Env, copies: &[(String, String)], tag: &str) {
    let certs = tempfile::tempdir().unwrap();
    std::fs::copy(&env.ca_file, certs.path().join("ca.crt")).unwrap();
    for (from, to) in copies {
        let out = std::process::Command::new(
            wallaroo_testenv::program("skopeo").unwrap_or_else(|e| panic!("{e}")),
        )
        .args(["copy", "--all", "--preserve-digests", "--src-cert-dir"])
        .arg(certs.path())
        .arg("--dest-cert-dir")
        .arg(certs.path())
        .arg("--src-creds")
        .arg(format!("{}:{}", env.vendor.username, env.vendor.password))
        .arg("--dest-creds")
        .arg(format!("{}:{}", env.private.username, env.private.password))
        .arg(format!("docker://{}/{from}:{tag}", env.vendor.address()))
        .arg(format!("docker://{}/{to}:{tag}", env.private.address()))
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A token of the kit's Keycloak admin (the master realm's `admin-cli`).
pub fn keycloak_admin_token(kc: &reqwest::blocking::Client, env: &wallaroo_testenv::Env) -> String {
    let token: serde_json::Value = kc
        .post(format!(
            "{}/realms/master/protocol/openid-connect/token",
            env.keycloak_url
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", wallaroo_testenv::env::KEYCLOAK_ADMIN),
            ("password", env.keycloak_password.as_str()),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    token["access_token"].as_str().unwrap().to_string()
}

/// Runs `cmd` and returns its exit code, stdout and stderr.
pub fn outcome(cmd: &mut std::process::Command) -> (Option<i32>, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `wallaroo ARGS` in `dir` as the identity of `kubeconfig`.
pub fn wallaroo_as(
    env: &wallaroo_testenv::Env,
    dir: &Path,
    kubeconfig: &Path,
    args: &[&str],
) -> (Option<i32>, String, String) {
    outcome(
        wallaroo_in(env, dir)
            .env("KUBECONFIG", kubeconfig)
            .args(args),
    )
}

/// The `wallaroo` binary run in `dir` as the tests run it: the test kit's environment (its
/// kubeconfig, registries and credentials), no colour. Callers add arguments and overrides.
pub fn wallaroo_in(env: &wallaroo_testenv::Env, dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wallaroo"));
    cmd.current_dir(dir)
        .envs(env.exports())
        .env("NO_COLOR", "1");
    cmd
}
