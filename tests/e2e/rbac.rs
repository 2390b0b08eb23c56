//! The permissions apply needs, known before it starts: a chart with a kind the
//! least-privilege identity may not touch (a CronJob) stops the plan naming verb, resource
//! and namespace, where before helm stopped half way through the install; the Role and
//! ClusterRole `wallaroo rbac` prints, applied by an admin, make the same plan pass and apply
//! succeed.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use wallaroo_testenv::{shared, unique};

mod common;
use common::{operator_spec, repo, sample_chart_copy, seed_tiny};

/// The sample chart and a nightly CronJob running one of the release's images.
fn chart_with_cronjob(dir: &Path) -> std::path::PathBuf {
    let chart = sample_chart_copy(dir);
    std::fs::write(
        chart.join("templates/cronjob.yaml"),
        r#"apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly-report
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: report
              image: {{ include "sample.image" (dict "root" . "name" "conductor-wallsvc") }}
"#,
    )
    .unwrap();
    chart
}

fn run(env: &wallaroo_testenv::Env, dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wallaroo"))
        .args(args)
        .current_dir(dir)
        .envs(env.exports())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kubectl apply -f` of RBAC objects, as the cluster's admin.
fn create_as_admin(env: &wallaroo_testenv::Env, yaml: &str) {
    let api = env.api().unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
    for doc in docs {
        let kind = doc["kind"].as_str().unwrap();
        let plural = format!("{}s", kind.to_lowercase());
        let path = match doc["metadata"]["namespace"].as_str() {
            Some(ns) => format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/{plural}"),
            None => format!("/apis/rbac.authorization.k8s.io/v1/{plural}"),
        };
        api.create(&path, &doc).unwrap();
    }
}

#[test]
fn a_cronjob_the_identity_may_not_create_stops_the_plan_and_wallaroo_rbac_grants_it() {
    let env = shared();
    let id = unique("rbac");
    let charts = tempfile::tempdir().unwrap();
    let chart = chart_with_cronjob(charts.path());
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &id, &chart).unwrap();
    let op = operator_spec(env, &id, Some(&id));
    let dir = op.dir.path();
    std::fs::write(dir.join("wallaroo.hcl"), &op.spec).unwrap();

    // The test kit's identity may not create CronJobs: the plan stops, naming each need.
    let (code, out, err) = run(env, dir, &["plan"]);
    assert_eq!(code, Some(1), "{out}{err}");
    for needle in [
        "may not do everything apply needs",
        &format!("create cronjobs.batch in namespace {id}"),
        &format!("delete cronjobs.batch in namespace {id}"),
        "`wallaroo rbac` prints",
    ] {
        assert!(err.contains(needle), "`{needle}` missing from:\n{err}");
    }
    let api = env.api().unwrap();
    assert!(
        api.get(&format!("/api/v1/namespaces/{id}")).is_err(),
        "nothing was applied"
    );

    // What `wallaroo rbac` prints, applied by an admin, is enough.
    let name = format!("wallaroo-{id}");
    let (code, yaml, err) = run(env, dir, &["rbac", "--name", &name]);
    assert_eq!(code, Some(0), "{err}");
    assert!(yaml.contains("resources: [\"cronjobs\"]"), "{yaml}");
    assert!(!yaml.contains(&env.private.password), "no secret in it");
    api.create(
        "/api/v1/namespaces",
        &serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": id}}),
    )
    .unwrap();
    create_as_admin(env, &yaml);
    let (code, out, err) = run(env, dir, &["plan"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run(env, dir, &["apply", "--auto-approve"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let cron = api
        .get(&format!(
            "/apis/batch/v1/namespaces/{id}/cronjobs/nightly-report"
        ))
        .unwrap();
    assert!(
        cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/{id}/", env.private.address())),
        "{cron}"
    );

    let (code, out, err) = run(env, dir, &["destroy", "--auto-approve"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let _ = api.delete(&format!(
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}"
    ));
    let _ = api.delete(&format!(
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}"
    ));
}

/// The test kit's ServiceAccount is made from what `wallaroo rbac --cluster-wide` prints for
/// the quickstart (`crates/wallaroo-testenv/src/rbac-quickstart.yaml`); this keeps that file
/// current (`WALLAROO_BLESS=1` rewrites it), so the role every test runs as follows the
/// command, not a hand-kept list.
#[test]
fn the_test_kits_role_is_what_wallaroo_rbac_prints_for_the_quickstart() {
    let env = shared();
    seed_tiny(env);
    let id = unique("rbackit");
    let op = operator_spec(env, &id, None);
    std::fs::write(op.dir.path().join("wallaroo.hcl"), &op.spec).unwrap();
    let (code, yaml, err) = run(env, op.dir.path(), &["rbac", "--cluster-wide"]);
    assert_eq!(code, Some(0), "{err}");
    let kept = repo().join("crates/wallaroo-testenv/src/rbac-quickstart.yaml");
    if std::env::var_os("WALLAROO_BLESS").is_some() {
        std::fs::write(&kept, &yaml).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&kept).unwrap(),
        yaml,
        "the test kit's role is stale: run WALLAROO_BLESS=1 cargo test -p wallaroo-cli --test e2e_rbac"
    );
    // And what the kit grants holds every rule of it.
    let granted = wallaroo_testenv::rbac::cluster_role();
    for rule in wallaroo_testenv::rbac::rules_of(&yaml) {
        assert!(
            granted["rules"].as_array().unwrap().contains(&rule),
            "{rule} is not granted to the test kit's ServiceAccount"
        );
    }
}
