//! The examples a user copies outside the spec: the drift CronJob (every object accepted by
//! the real API server in a server-side dry run; its wallaroo command line accepted by the
//! CLI) and the CI workflow (valid YAML; every wallaroo command line in it accepted).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Runs `wallaroo ARGS` where the spec does not exist: the arguments must get as far as
/// reading the spec (clap accepted every flag).
fn accepted(args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wallaroo"))
        .args(args)
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read spec"),
        "wallaroo {args:?} was refused:\n{stderr}"
    );
}

#[test]
fn the_drift_cronjob_is_valid_kubernetes_and_its_command_line_is_valid() {
    let env = wallaroo_testenv::shared();
    let api = env.api().unwrap();
    let ns = wallaroo_testenv::unique("drift");
    api.create(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    )
    .unwrap();
    let text = std::fs::read_to_string(examples().join("drift-cronjob.yaml")).unwrap();
    let mut kinds = Vec::new();
    let docs: Vec<Option<Value>> = serde_saphyr::from_multiple(&text).unwrap();
    for mut v in docs.into_iter().flatten() {
        let kind = v["kind"].as_str().unwrap().to_string();
        if v["metadata"]["namespace"].is_string() {
            v["metadata"]["namespace"] = json!(ns);
        }
        if let Some(subjects) = v.get_mut("subjects").and_then(Value::as_array_mut) {
            for s in subjects {
                s["namespace"] = json!(ns);
            }
        }
        // Cluster-scoped names made unique so that runs do not meet.
        if kind.starts_with("ClusterRole") {
            v["metadata"]["name"] = json!(format!("{ns}-drift"));
        }
        if kind == "ClusterRoleBinding" {
            v["roleRef"]["name"] = json!(format!("{ns}-drift"));
        }
        let path = match kind.as_str() {
            "ServiceAccount" => format!("/api/v1/namespaces/{ns}/serviceaccounts"),
            "ClusterRole" => "/apis/rbac.authorization.k8s.io/v1/clusterroles".into(),
            "ClusterRoleBinding" => "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings".into(),
            "Role" => format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"),
            "RoleBinding" => {
                format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings")
            }
            "CronJob" => format!("/apis/batch/v1/namespaces/{ns}/cronjobs"),
            other => panic!("unexpected kind {other}"),
        };
        api.create(&format!("{path}?dryRun=All&fieldValidation=Strict"), &v)
            .unwrap_or_else(|e| panic!("{kind} refused: {e}"));
        if kind == "CronJob" {
            let args: Vec<String> = serde_json::from_value(
                v["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
                    .clone(),
            )
            .unwrap();
            assert!(args.contains(&"--detailed-exitcode".to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            accepted(&args);
        }
        kinds.push(kind);
    }
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "CronJob"
        ]
    );
}

#[test]
fn the_ci_workflow_is_valid_yaml_and_its_wallaroo_commands_are_accepted() {
    let text = std::fs::read_to_string(examples().join("ci/github-actions.yml")).unwrap();
    let workflow: Value = serde_saphyr::from_str(&text).unwrap();
    assert!(workflow["jobs"]["plan"].is_object() && workflow["jobs"]["apply"].is_object());
    let mut commands = 0;
    for job in workflow["jobs"].as_object().unwrap().values() {
        for step in job["steps"].as_array().unwrap() {
            let Some(run) = step["run"].as_str() else {
                continue;
            };
            // Join continued lines, then take each line that runs wallaroo.
            let joined = run.replace("\\\n", " ");
            for line in joined.lines().map(str::trim) {
                let Some(rest) = line.strip_prefix("wallaroo ") else {
                    continue;
                };
                let args: Vec<&str> = rest
                    .split_whitespace()
                    .take_while(|a| !a.starts_with('>') && *a != "|")
                    .collect();
                accepted(&args);
                commands += 1;
            }
        }
    }
    assert_eq!(commands, 2, "a plan and an apply");
}
