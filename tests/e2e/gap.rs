//! Across the gap with nothing else: on the connected side, a signed bundle of the test
//! release with its tools, split into parts smaller than its largest layer; on the far side,
//! only a directory with copies of those parts, the index, its signature and the public key,
//! and a PATH without helm. `plan` and `apply` install the release from the bundle with the
//! bundle's own helm, and say so. A spec that reads a bundle without a key is refused unless
//! it says `allow_unsigned`, and a part altered on the way stops the plan before anything is
//! pushed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wallaroo_testenv::{shared, unique};

mod common;

/// The PATH with every directory that holds a `helm` left out.
fn path_without_helm() -> String {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !Path::new(d).join("helm").exists())
        .collect::<Vec<_>>()
        .join(":")
}

fn run(env: &wallaroo_testenv::Env, dir: &Path, args: &[&str], far: bool) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wallaroo"));
    cmd.args(args)
        .current_dir(dir)
        .envs(env.exports())
        .env("NO_COLOR", "1")
        .env("COSIGN_PASSWORD", "");
    if far {
        cmd.env_remove("HELM").env("PATH", path_without_helm());
    }
    let out: Output = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `spec` with its `source "wallaroo"` block replaced by `source`.
fn with_source(spec: &str, source: &str) -> String {
    let start = spec.find("source \"wallaroo\" {").unwrap();
    let end = start + spec[start..].find("\n}\n").unwrap() + 3;
    format!("{}{source}{}", &spec[..start], &spec[end..])
}

#[test]
fn a_signed_split_bundle_with_its_tools_installs_on_a_machine_without_helm() {
    let env = shared();
    let path = unique("gap");
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    wallaroo_testenv::seed::seed(
        env,
        &preset,
        &env.vendor,
        &path,
        &common::repo().join("tests/charts/wallaroo-sample"),
    )
    .unwrap();
    let id = unique("gap");
    let common::OperatorSpec { dir, spec, .. } = common::operator_spec(env, &id, Some(&path));
    let near = dir.path();
    std::fs::write(near.join("wallaroo.hcl"), &spec).unwrap();
    let keys = near.join("keys");
    let public = wallaroo_testenv::cosign::key_pair(env, &keys).unwrap();

    // The connected side.
    let (code, out) = run(
        env,
        near,
        &[
            "bundle",
            "create",
            "--out",
            "release.tar",
            "--split",
            "512KiB",
            "--sign-key",
            keys.join("cosign.key").to_str().unwrap(),
        ],
        false,
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("programs carried: helm, wallaroo") && out.contains("the index is signed"),
        "{out}"
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(near.join("release.tar.index.json")).unwrap())
            .unwrap();
    let largest_layer = index["files"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| name.starts_with("blobs/"))
        .map(|(_, v)| v[1].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(
        largest_layer > 512 << 10,
        "a layer spans parts: {largest_layer}"
    );
    let parts = index["parts"].as_array().unwrap().len();
    assert!(parts > 3, "{parts}");

    // The far side: a directory with copies of what crossed, and the public key.
    let far_dir = tempfile::tempdir().unwrap();
    let far = far_dir.path();
    let mut carried = 0;
    for entry in std::fs::read_dir(near).unwrap() {
        let p: PathBuf = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("release.tar.") {
            std::fs::copy(&p, far.join(&name)).unwrap();
            carried += 1;
        }
    }
    assert_eq!(carried, parts + 2, "the parts, the index and its signature");
    assert!(!far.join("release.tar").exists());
    std::fs::copy(&public, far.join("cosign.pub")).unwrap();
    // The site's own TLS pair, which the spec names.
    std::fs::create_dir_all(far.join("tls")).unwrap();
    for f in ["wallaroo.crt", "wallaroo.key"] {
        std::fs::copy(near.join("tls").join(f), far.join("tls").join(f)).unwrap();
    }
    let far_spec = with_source(
        &spec,
        "source \"wallaroo\" {\n  bundle = \"release.tar\"\n  key    = \"cosign.pub\"\n}\n",
    );
    std::fs::write(far.join("wallaroo.hcl"), &far_spec).unwrap();
    assert!(
        path_without_helm()
            .split(':')
            .all(|d| !Path::new(d).join("helm").exists())
    );

    // Unsigned reading needs the spec's word for it.
    std::fs::write(
        far.join("unsigned.hcl"),
        with_source(
            &spec,
            "source \"wallaroo\" {\n  bundle = \"release.tar\"\n}\n",
        ),
    )
    .unwrap();
    let (code, out) = run(env, far, &["-c", "unsigned.hcl", "validate"], true);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no `key`") && out.contains("allow_unsigned = true"),
        "{out}"
    );

    let (code, out) = run(env, far, &["plan"], true);
    assert_eq!(code, 0, "{out}");
    for want in [
        "helm: the bundle's (v3.16",
        "$HELM names none",
        "signed by",
        "every byte as its index names",
    ] {
        assert!(out.contains(want), "{want} not in:\n{out}");
    }
    let (code, out) = run(env, far, &["apply", "--auto-approve"], true);
    assert_eq!(code, 0, "{out}");
    let api = env.api().unwrap();
    let d = api
        .get(&format!(
            "/apis/apps/v1/namespaces/{id}/deployments/keycloak"
        ))
        .unwrap();
    let image = d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    assert!(
        image.starts_with(&format!("{}/{id}/", env.private.address())),
        "{image}"
    );
    assert!(far.join(".wallaroo-tools").exists());

    // A part altered on the way: stopped before anything is pushed, named.
    let bad_dir = tempfile::tempdir().unwrap();
    let bad = bad_dir.path();
    for entry in std::fs::read_dir(far).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, bad.join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::create_dir_all(bad.join("tls")).unwrap();
    for f in ["wallaroo.crt", "wallaroo.key"] {
        std::fs::copy(far.join("tls").join(f), bad.join("tls").join(f)).unwrap();
    }
    let third = bad.join("release.tar.003");
    let mut bytes = std::fs::read(&third).unwrap();
    bytes[100] ^= 0x10;
    std::fs::write(&third, bytes).unwrap();
    let (code, out) = run(env, bad, &["plan"], true);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("is not what its signed index names; nothing was pushed")
            && out.contains(&format!("part 3 of {parts} (release.tar.003)")),
        "{out}"
    );
}
