//! An upgrade end to end against the real components: install the `release` preset (40
//! images, about 1.5 GB, and the sample chart), then change `wallaroo { version }` to
//! `release-next`, in which one image in five changed. The plan holds only the changed
//! images (new tags), the chart and the release's version, and with `prune` the deletion of
//! exactly the old tags; apply copies only the changed blobs (counted), leaves the
//! Deployments of unchanged images untouched (same generation), and never touches an image
//! pushed into the same registry by hand. The private registry is a fresh one, so that the
//! bytes the upgrade sends can be held against the blobs it did not hold before.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use wallaroo_testenv::env::Registry;
use wallaroo_testenv::{Env, shared, unique};

const RELEASE: &str = "2025.1.0-6290";
const NEXT: &str = "2025.1.1-6301";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn spec(env: &Env, private: &Registry, ns: &str, nodes: &[String], version: &str) -> String {
    format!(
        r#"wallaroo {{
  version                 = "{version}"
  license_channel         = "2025-1"
  namespace               = "{ns}"
  domain                  = "wallaroo.example.com"
  kubernetes_distribution = "kurl"
  keycloak_url            = "{kc}"
}}

source "wallaroo" {{
  registry = "{vendor}"
  path     = "release"
  username = "{vu}"
  password = "{vp}"
  ca_file  = "{ca}"
}}

registry "private" {{
  host      = "{private}"
  namespace = "{ns}"
  username  = "{pu}"
  password  = "{pp}"
  ca_file   = "{ca}"
  prune     = true
}}

nodepool "general" {{
  nodes = ["{n1}"]
}}

nodepool "persistent" {{
  nodes = ["{n2}"]
}}

nodepool "pipelines-x86" {{
  nodes = ["{n3}"]
}}

helm {{
  timeout = "2m"
}}
"#,
        kc = env.keycloak_url,
        vendor = env.vendor.address(),
        vu = env.vendor.username,
        vp = env.vendor.password,
        private = private.address(),
        pu = private.username,
        pp = private.password,
        ca = env.ca_file.display(),
        n1 = nodes[0],
        n2 = nodes[1],
        n3 = nodes[2],
    )
}

fn run(env: &Env, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wallaroo"))
        .args(args)
        .current_dir(dir)
        .envs(env.exports())
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn ok(env: &Env, dir: &Path, args: &[&str]) -> String {
    let out = run(env, dir, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "wallaroo {args:?}:\n{text}");
    text
}

fn generation(env: &Env, ns: &str, name: &str) -> i64 {
    env.api()
        .unwrap()
        .get(&format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}"))
        .unwrap()["metadata"]["generation"]
        .as_i64()
        .unwrap()
}

#[test]
fn an_upgrade_copies_only_changed_blobs_and_leaves_unchanged_deployments_alone() {
    let env = shared();
    let chart = repo().join("tests/charts/wallaroo-sample");
    for preset in ["release", "release-next"] {
        let preset = wallaroo_testenv::seed::preset(preset).unwrap();
        wallaroo_testenv::seed::seed(env, &preset, &env.vendor, "release", &chart).unwrap();
    }
    let scratch = env
        .scratch_registry_of(
            wallaroo_testenv::env::Implementation::Distribution2,
            "upgrade",
        )
        .unwrap();
    let reg = &scratch.registry;
    let ns = unique("upg");
    let nodes = env
        .add_nodes(&ns, 3, &json!({}), &json!([]), &json!({}))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |version: &str| {
        std::fs::write(
            dir.path().join("wallaroo.hcl"),
            spec(env, reg, &ns, &nodes, version),
        )
        .unwrap()
    };

    write(RELEASE);
    let installed = ok(env, dir.path(), &["apply", "--auto-approve"]);
    assert!(installed.contains("Mirrored 41 images"), "{installed}");
    // An image pushed into the same registry by hand: not wallaroo's, never pruned.
    let private = wallaroo_testenv::https_client(&env.ca_file).unwrap();
    let manifest = |repo: &str, tag: &str| {
        private
            .get(format!(
                "https://{}/v2/{repo}/manifests/{tag}",
                reg.address()
            ))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .basic_auth(&reg.username, Some(&reg.password))
            .send()
            .unwrap()
    };
    let conductor = manifest(&format!("{ns}/conductor-wallsvc"), RELEASE)
        .bytes()
        .unwrap();
    let pushed = private
        .put(format!(
            "https://{}/v2/{ns}/conductor-wallsvc/manifests/handmade",
            reg.address()
        ))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .basic_auth(&reg.username, Some(&reg.password))
        .body(conductor.to_vec())
        .send()
        .unwrap();
    assert_eq!(pushed.status(), 201);
    let before: Vec<i64> = ["conductor-wallsvc", "keycloak", "engine"]
        .iter()
        .map(|d| generation(env, &ns, d))
        .collect();

    write(NEXT);
    let out = run(env, dir.path(), &["plan", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let changed: Vec<(String, String)> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] != "no-op" && c["action"] != "read")
        .map(|c| {
            (
                c["address"].as_str().unwrap().to_string(),
                c["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // In release-next, images 0, 5, 10, ... 35 of the list changed: eight, plus the chart.
    let preset = wallaroo_testenv::seed::preset("release-next").unwrap();
    let changed_images: Vec<&str> = preset
        .images
        .iter()
        .filter(|i| i.tag == NEXT)
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(changed_images.len(), 8);
    let mut want: Vec<(String, String)> = Vec::new();
    for name in changed_images.iter().copied().chain(["charts/wallaroo"]) {
        want.push((format!("image[\"{ns}/{name}:{NEXT}\"]"), "create".into()));
        want.push((format!("image[\"{ns}/{name}:{RELEASE}\"]"), "delete".into()));
    }
    want.push(("helm_release.wallaroo".into(), "update".into()));
    want.sort();
    let mut got = changed.clone();
    got.sort();
    assert_eq!(got, want);
    let release = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "helm_release.wallaroo")
        .unwrap();
    let paths: Vec<&str> = release["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["version"]);
    let text = ok(env, dir.path(), &["plan"]);
    assert!(
        text.contains("`helm upgrade` is the only step that restarts pods"),
        "{text}"
    );

    // What the upgrade must send: the blobs of the changed images and the chart that the
    // registry does not hold in any repository.
    let listed: Vec<Value> =
        serde_json::from_str(&ok(env, dir.path(), &["images", "--json"])).unwrap();
    let mut expected = 0;
    let mut new_images = 0;
    for image in listed
        .iter()
        .filter(|i| i["target"].as_str().unwrap().ends_with(&format!(":{NEXT}")))
    {
        // vendor.registry.test:PORT/release/NAME:TAG
        let source = image["source"].as_str().unwrap();
        let (_, reference) = source.split_once('/').unwrap();
        let (repo, tag) = reference.rsplit_once(':').unwrap();
        new_images += 1;
        for (digest, size) in
            wallaroo_testenv::seed::image_blobs(env, &env.vendor, repo, tag).unwrap()
        {
            if !scratch.stores(&digest) {
                expected += size;
            }
        }
    }
    assert_eq!(new_images, 9, "{listed:#?}");
    let upgraded = ok(env, dir.path(), &["apply", "--auto-approve", "--json"]);
    let summary: Value = serde_json::from_str(
        upgraded
            .lines()
            .rfind(|l| l.contains("\"summary\""))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(summary["outcome"], "complete", "{upgraded}");
    assert_eq!(
        summary["resources"],
        json!({"added": 9, "changed": 1, "destroyed": 9}),
        "{summary}"
    );
    assert_eq!(
        summary["bytes"]["moved"], expected,
        "the upgrade sends exactly the bytes of the blobs the registry did not hold: {summary}"
    );
    for name in ["mlflow-deploy", "assays-v2"] {
        assert_eq!(
            manifest(&format!("{ns}/{name}"), RELEASE).status(),
            404,
            "{name}'s old tag was pruned"
        );
    }
    assert_eq!(
        manifest(&format!("{ns}/keycloak"), RELEASE).status(),
        200,
        "unchanged images keep their tag"
    );
    // The hand-pushed tag points at the old conductor-wallsvc manifest: deleting that
    // manifest would take the tag with it, so prune keeps it.
    assert_eq!(
        manifest(&format!("{ns}/conductor-wallsvc"), "handmade").status(),
        200,
        "an image wallaroo did not mirror survives"
    );
    assert_eq!(
        manifest(&format!("{ns}/conductor-wallsvc"), RELEASE).status(),
        200
    );
    // Eight new top layers and eight new configs, and the chart's content and config.
    assert_eq!(summary["mirror"]["images"], 9, "{summary}");
    assert_eq!(summary["mirror"]["blobs_copied"], 18, "{summary}");
    let after: Vec<i64> = ["conductor-wallsvc", "keycloak", "engine"]
        .iter()
        .map(|d| generation(env, &ns, d))
        .collect();
    assert_eq!(
        after[0],
        before[0] + 1,
        "conductor-wallsvc's image changed: it rolls"
    );
    assert_eq!(
        after[1..],
        before[1..],
        "keycloak and the engine (fitzroy-mini) did not change"
    );
    let out = run(env, dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    ok(
        env,
        dir.path(),
        &["destroy", "--auto-approve", "--include-images"],
    );
    scratch.stop();
}
