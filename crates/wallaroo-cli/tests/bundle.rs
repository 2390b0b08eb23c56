//! `wallaroo bundle create|verify|list` and `wallaroo images` through the real binary, on the
//! connected side (the vendor registry of the test environment) and on the air-gapped side
//! (`source { bundle = ... }`), with no cluster involved.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn wallaroo(args: &[&str], dir: &Path) -> Output {
    let env = wallaroo_testenv::shared();
    Command::new(env!("CARGO_BIN_EXE_wallaroo"))
        .env("HELM", &env.helm)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        // No cluster: charts are rendered for wallaroo's default Kubernetes version.
        .env("KUBECONFIG", dir.join("no-such-kubeconfig"))
        .env("DOCKER_CONFIG", dir.join("docker"))
        .output()
        .unwrap()
}

fn ok(args: &[&str], dir: &Path) -> String {
    let out = wallaroo(args, dir);
    assert!(
        out.status.success(),
        "wallaroo {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_bundle_made_on_the_connected_side_lists_the_same_images_inside_the_air_gap() {
    let env = wallaroo_testenv::shared();
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/charts/wallaroo-sample");
    wallaroo_testenv::seed::seed(env, &preset, &env.vendor, "wallaroo", &chart).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let private = format!(
        "registry \"private\" {{\n  host      = \"{}\"\n  namespace = \"wallaroo\"\n  username  = \"{}\"\n  password  = \"{}\"\n  ca_file   = \"{}\"\n}}\n",
        env.private.address(),
        env.private.username,
        env.private.password,
        env.ca_file.display()
    );
    let head = "wallaroo {\n  version                 = \"2025.1.0-6290\"\n  license_channel         = \"2025-1\"\n  domain                  = \"wallaroo.example.com\"\n  kubernetes_distribution = \"kurl\"\n}\n";
    std::fs::write(
        dir.path().join("connected.hcl"),
        format!(
            "{head}source \"wallaroo\" {{\n  registry = \"{}\"\n  username = \"{}\"\n  password = \"{}\"\n  ca_file  = \"{}\"\n}}\n{private}",
            env.vendor.address(),
            env.vendor.username,
            env.vendor.password,
            env.ca_file.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("airgapped.hcl"),
        format!("{head}source \"wallaroo\" {{\n  bundle         = \"release.tar\"\n  allow_unsigned = true\n}}\n{private}"),
    )
    .unwrap();

    let created = ok(
        &[
            "-c",
            "connected.hcl",
            "bundle",
            "create",
            "--out",
            "release.tar",
        ],
        dir.path(),
    );
    assert!(created.contains("4 images"), "{created}");
    let verified = ok(&["bundle", "verify", "release.tar"], dir.path());
    assert!(verified.contains("Every digest matches."), "{verified}");
    let listed = ok(&["bundle", "list", "release.tar"], dir.path());
    assert!(listed.contains("release 2025.1.0-6290"), "{listed}");

    let images = |spec: &str| -> Vec<Value> {
        let text = ok(&["-c", spec, "images", "--json"], dir.path());
        serde_json::from_str(&text).unwrap()
    };
    let outside = images("connected.hcl");
    let inside = images("airgapped.hcl");
    assert_eq!(outside.len(), 4);
    assert_eq!(
        outside, inside,
        "the same sources, origins, pins and targets on both sides"
    );

    // A damaged archive fails verification with exit 1.
    let mut bytes = std::fs::read(dir.path().join("release.tar")).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0xff;
    std::fs::write(dir.path().join("damaged.tar"), bytes).unwrap();
    let out = wallaroo(&["bundle", "verify", "damaged.tar"], dir.path());
    assert_eq!(out.status.code(), Some(1));

    // With --json, both commands write a stream the event schema accepts, whose bytes
    // are the archive's: every listed byte written, then every byte read back and checked.
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/events.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let schema = jsonschema::validator_for(&schema).unwrap();
    let stream = |args: &[&str]| -> (Option<i32>, Vec<Value>) {
        let out = wallaroo(args, dir.path());
        let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                let errors: Vec<String> = schema.iter_errors(&v).map(|e| e.to_string()).collect();
                assert!(errors.is_empty(), "{l}: {errors:?}");
                v
            })
            .collect();
        assert_eq!(events[0]["type"], "version");
        assert_eq!(events.last().unwrap()["type"], "summary");
        (out.status.code(), events)
    };
    let (code, created) = stream(&[
        "-c",
        "connected.hcl",
        "bundle",
        "create",
        "--out",
        "again.tar",
        "--json",
    ]);
    assert_eq!(code, Some(0));
    let summary = created.last().unwrap();
    assert_eq!(summary["outcome"], "complete");
    assert_eq!(summary["images"], 4);
    let written = &summary["bytes"];
    assert!(written["moved"].as_u64().unwrap() > 0);
    assert_eq!(written["moved"], written["total"], "{summary}");
    let (code, verified) = stream(&["bundle", "verify", "again.tar", "--json"]);
    assert_eq!(code, Some(0));
    let summary = verified.last().unwrap();
    assert_eq!(summary["outcome"], "complete");
    let last_progress = verified
        .iter()
        .rfind(|e| e["type"] == "step_progress")
        .expect("progress of the check");
    assert_eq!(last_progress["address"], "bundle.verify");
    assert_eq!(
        last_progress["bytes"]["moved"], last_progress["bytes"]["total"],
        "every listed byte read and checked"
    );
    let (code, damaged) = stream(&["bundle", "verify", "damaged.tar", "--json"]);
    assert_eq!(code, Some(1));
    assert_eq!(damaged.last().unwrap()["outcome"], "failed");
    assert_eq!(
        damaged.iter().filter(|e| e["type"] == "summary").count(),
        1,
        "one summary, at the end"
    );
    assert!(
        damaged
            .iter()
            .any(|e| e["type"] == "diagnostic" && e["severity"] == "error"),
        "{damaged:?}"
    );
}
