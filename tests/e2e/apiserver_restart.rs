//! The API server restarts in the middle of an apply's `helm upgrade` (the test kit stops
//! kube-apiserver and starts it again a few seconds later, as a control-plane upgrade does):
//! the apply fails with a clear error or succeeds; either way the next apply converges, the
//! release is deployed and the plan after it is empty. This binary holds this one test, so the
//! restart disturbs no other test (test binaries run one after another).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use wallaroo_testenv::{Env, shared, unique};

mod common;
use common::{operator_spec, seed_tiny, wallaroo_in};

fn wallaroo(env: &Env, dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = wallaroo_in(env, dir).args(args).output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The status helm's newest stored revision of release `wallaroo` in `ns` carries.
fn release_status(env: &Env, ns: &str) -> Option<String> {
    let list = env
        .api()
        .ok()?
        .get(&format!(
            "/api/v1/namespaces/{ns}/secrets?labelSelector=owner%3Dhelm%2Cname%3Dwallaroo"
        ))
        .ok()?;
    list["items"]
        .as_array()?
        .iter()
        .max_by_key(|s| {
            s["metadata"]["labels"]["version"]
                .as_str()
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        })
        .and_then(|s| s["metadata"]["labels"]["status"].as_str().map(String::from))
}

#[test]
fn an_api_server_restarted_during_helm_upgrade_leaves_a_release_the_next_apply_recovers() {
    let env = shared();
    seed_tiny(env);
    let id = unique("restart");
    let op = operator_spec(env, &id, None);
    let dir = op.dir.path();
    std::fs::write(dir.join("wallaroo.hcl"), &op.spec).unwrap();
    let (code, out) = wallaroo(env, dir, &["apply", "--auto-approve"]);
    assert_eq!(code, Some(0), "{out}");

    // A change that upgrades the release (the engine's environment), applied in the
    // background; the API server goes down once helm has marked the upgrade pending.
    let spec = op.spec.replace(
        "helm {\n  timeout = \"2m\"\n}\n",
        "helm {\n  timeout = \"2m\"\n  values  = { deploymentStage = \"restarted\" }\n}\n",
    );
    assert_ne!(spec, op.spec);
    std::fs::write(dir.join("wallaroo.hcl"), &spec).unwrap();
    let logs = tempfile::tempdir().unwrap();
    let child = wallaroo_in(env, dir)
        .args(["apply", "--auto-approve"])
        .stdout(std::fs::File::create(logs.path().join("out")).unwrap())
        .stderr(std::fs::File::create(logs.path().join("err")).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut restarted = false;
    let mut child = child;
    while started.elapsed() < Duration::from_secs(180) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if release_status(env, &id).as_deref() == Some("pending-upgrade") {
            env.restart_apiserver(Duration::from_secs(3)).unwrap();
            restarted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.wait().unwrap();
    let said = format!(
        "{}{}",
        std::fs::read_to_string(logs.path().join("out")).unwrap(),
        std::fs::read_to_string(logs.path().join("err")).unwrap()
    );
    assert!(restarted, "the upgrade was never seen pending:\n{said}");
    assert!(!said.contains("panicked"), "{said}");
    if !status.success() {
        assert!(
            said.contains("Error: ") && said.contains("helm_release.wallaroo"),
            "a failed apply names what failed:\n{said}"
        );
    }
    eprintln!(
        "the apply during the restart {}",
        if status.success() {
            "succeeded"
        } else {
            "failed"
        }
    );

    // Whatever that apply did, the next one converges.
    let (code, out) = wallaroo(env, dir, &["apply", "--auto-approve"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(release_status(env, &id).as_deref(), Some("deployed"));
    let engine: Value = env
        .api()
        .unwrap()
        .get(&format!(
            "/apis/apps/v1/namespaces/{id}/deployments/conductor-wallsvc"
        ))
        .unwrap();
    assert!(
        engine.to_string().contains("restarted"),
        "the upgrade's value is live: {engine}"
    );
    let (code, out) = wallaroo(env, dir, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = wallaroo(env, dir, &["destroy", "--auto-approve"]);
    assert_eq!(code, Some(0), "{out}");
}
