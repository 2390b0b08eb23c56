//! `wallaroo state`, `output`, `force-unlock`, and the run lock, through the real binary
//! against a lockfile written by the state crate.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::json;
use wallaroo_state::{Lockfile, OutputState, ResourceState, StateStore};

const SPEC: &str = r#"
wallaroo {
  version                 = "2025.1.0-6290"
  license_channel         = "2025-1"
  domain                  = "wallaroo.example.com"
  kubernetes_distribution = "eks"
}
source "wallaroo" {
  registry = "registry.wallaroo.ai"
}
registry "private" {
  host      = "registry.example.com"
  namespace = "wallaroo"
}
"#;

fn wallaroo(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wallaroo"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn setup() -> (tempfile::TempDir, StateStore) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wallaroo.hcl"), SPEC).unwrap();
    let store = StateStore::new(dir.path().join("wallaroo.lock"));
    let mut lf = Lockfile::new();
    lf.resources.insert(
        "namespace.wallaroo".into(),
        ResourceState {
            kind: "namespace".into(),
            attributes: [("name".into(), json!("wallaroo"))].into(),
            sensitive_hashes: Default::default(),
            depends_on: vec![],
        },
    );
    lf.resources.insert(
        "user[\"a@example.com\"]".into(),
        ResourceState {
            kind: "keycloak_user".into(),
            attributes: [("email".into(), json!("a@example.com"))].into(),
            sensitive_hashes: [("password".into(), "sha256:00".into())].into(),
            depends_on: vec!["namespace.wallaroo".into()],
        },
    );
    lf.outputs.insert(
        "api_lb_ip".into(),
        OutputState {
            value: json!("10.1.2.3"),
            sensitive: false,
            hash: None,
        },
    );
    store.save(&lf).unwrap();
    (dir, store)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn state_list_show_and_rm() {
    let (dir, store) = setup();
    let out = wallaroo(&["state", "list"], dir.path());
    assert_eq!(
        stdout(&out),
        "namespace.wallaroo\nuser[\"a@example.com\"]\n"
    );

    let out = wallaroo(&["state", "show", "user[\"a@example.com\"]"], dir.path());
    let shown: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["attributes"]["password"], "(sensitive)");
    assert!(!stdout(&out).contains("sha256:00"));

    let serial = store.load().unwrap().unwrap().serial;
    let out = wallaroo(&["state", "rm", "user"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = store.load().unwrap().unwrap();
    assert_eq!(
        after.resources.keys().collect::<Vec<_>>(),
        ["namespace.wallaroo"]
    );
    assert_eq!(after.serial, serial + 1);
    assert!(store.backup_path().exists());

    let out = wallaroo(&["state", "show", "nope.x"], dir.path());
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn outputs() {
    let (dir, _store) = setup();
    assert_eq!(
        stdout(&wallaroo(&["output", "api_lb_ip"], dir.path())),
        "10.1.2.3\n"
    );
    assert_eq!(
        stdout(&wallaroo(&["output"], dir.path())),
        "api_lb_ip = \"10.1.2.3\"\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&wallaroo(&["output", "--json"], dir.path()))).unwrap();
    assert_eq!(json["api_lb_ip"]["value"], "10.1.2.3");
    assert_eq!(
        wallaroo(&["output", "missing"], dir.path()).status.code(),
        Some(1)
    );
}

#[test]
fn a_held_lock_stops_a_second_run_at_once_and_force_unlock_refuses_a_live_holder() {
    let (dir, store) = setup();
    let held = store.lock("wallaroo apply", Duration::ZERO).unwrap();
    let out = wallaroo(&["state", "list"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("is locked by `wallaroo apply`")
            && stderr.contains(&format!("pid {}", std::process::id())),
        "{stderr}"
    );

    let out = wallaroo(&["force-unlock"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("held by a running process"));
    drop(held);
    let out = wallaroo(&["force-unlock"], dir.path());
    assert!(out.status.success());
    assert!(wallaroo(&["state", "list"], dir.path()).status.success());
}

#[test]
fn plan_without_a_cluster_says_how_to_point_at_one_and_graph_needs_none() {
    let (dir, _store) = setup();
    let out = Command::new(env!("CARGO_BIN_EXE_wallaroo"))
        .arg("plan")
        .current_dir(dir.path())
        .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("cannot reach the cluster") && stderr.contains("Set KUBECONFIG"),
        "{stderr}"
    );
    let out = wallaroo(&["graph"], dir.path());
    assert!(stdout(&out).contains("\"namespace.wallaroo\" -> \"helm_release.wallaroo\";"));
}

/// `state migrate` moves the lockfile into the cluster and back, and with
/// `state { backend = "kubernetes" }` every command reads it from there.
#[test]
fn migrate_moves_the_lockfile_into_the_cluster_and_back() {
    let env = wallaroo_testenv::shared();
    let (dir, store) = setup();
    let suffix = wallaroo_testenv::unique("mig");
    let spec = format!(
        "{SPEC}state {{\n  backend       = \"kubernetes\"\n  secret_suffix = \"{suffix}\"\n}}\n"
    );
    std::fs::write(dir.path().join("wallaroo.hcl"), spec).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_wallaroo"))
            .args(args)
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env("KUBECONFIG", &env.kubeconfig)
            .output()
            .unwrap()
    };
    let out = run(&["state", "migrate", "--to", "kubernetes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains(&format!("secret default/wallaroo-state-{suffix}")));
    // The spec says kubernetes: list reads the cluster's copy.
    std::fs::remove_file(dir.path().join("wallaroo.lock")).unwrap();
    let listed = run(&["state", "list"]);
    assert_eq!(
        stdout(&listed),
        "namespace.wallaroo\nuser[\"a@example.com\"]\n",
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let out = run(&["state", "migrate", "--to", "local"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = store.load().unwrap().unwrap();
    assert_eq!(back.resources.len(), 2);
    // Another installation's lockfile is never overwritten.
    let mut other = Lockfile::new();
    other.serial = 3;
    store.save(&other).unwrap();
    let out = run(&["state", "migrate", "--to", "kubernetes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another installation"));
}
