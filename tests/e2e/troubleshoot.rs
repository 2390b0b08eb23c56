//! The vendor's own checks in every plan: a chart that carries a troubleshoot.sh preflight
//! Secret (analyzers on the Kubernetes version, the node count, a node label and a storage
//! class), run with the real `preflight` program built by the test kit. A passing plan lists
//! each analyzer with its outcome (text, JSON and Markdown); a failing analyzer stops `plan`
//! and `apply` before any change, naming the analyzer and its message.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use wallaroo_testenv::{shared, unique};

mod common;
use common::{operator_spec, sample_chart_copy};

const PREFLIGHT: &str = r#"apiVersion: v1
kind: Secret
metadata:
  name: wallaroo-preflight
  labels:
    troubleshoot.sh/kind: preflight
stringData:
  preflight.yaml: |
    apiVersion: troubleshoot.sh/v1beta2
    kind: Preflight
    metadata:
      name: wallaroo
    spec:
      analyzers:
        - clusterVersion:
            checkName: Kubernetes version
            outcomes:
              - fail:
                  when: "< 1.29.0"
                  message: Wallaroo needs Kubernetes 1.29 or later
              - warn:
                  when: "< 1.99.0"
                  message: Kubernetes 1.99 is recommended
              - pass:
                  message: Kubernetes is recent enough
        - nodeResources:
            checkName: Node count
            outcomes:
              - fail:
                  when: "count() < {{ .Values.minNodes | default 1 }}"
                  message: Wallaroo needs at least {{ .Values.minNodes | default 1 }} nodes
              - pass:
                  message: enough nodes
        - nodeResources:
            checkName: Linux nodes
            filters:
              selector:
                matchLabel:
                  kubernetes.io/os: linux
            outcomes:
              - fail:
                  when: "count() < 1"
                  message: no Linux node
              - pass:
                  message: Linux nodes found
        - nodeResources:
            checkName: Support contract
            outcomes:
              - pass:
                  message: registered with token {{ .Values.supportToken | default "none" }}
        - storageClass:
            checkName: Storage class
            storageClassName: wallaroo-fast
            outcomes:
              - fail:
                  message: there is no storage class wallaroo-fast
              - pass:
                  message: storage class wallaroo-fast found
"#;

/// A sensitive value the vendor's check prints in its message.
const TOKEN: &str = "SupportTokenMarker7431";

fn run(
    env: &wallaroo_testenv::Env,
    dir: &Path,
    args: &[&str],
    preflight: &Path,
) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wallaroo"))
        .args(args)
        .current_dir(dir)
        .envs(env.exports())
        .env("WALLAROO_PREFLIGHT", preflight)
        .env("WALLAROO_VAR_support_token", TOKEN)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_vendors_preflights_run_in_every_plan_and_a_failure_stops_it() {
    let env = shared();
    let preflight = wallaroo_testenv::provision::go_program("preflight").unwrap();
    let id = unique("vendorpf");
    let charts = tempfile::tempdir().unwrap();
    let chart = sample_chart_copy(charts.path());
    std::fs::write(chart.join("templates/preflight.yaml"), PREFLIGHT).unwrap();
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &id, &chart).unwrap();
    let mut op = operator_spec(env, &id, Some(&id));
    op.spec = op.spec.replace(
        "helm {\n  timeout = \"2m\"\n}\n",
        "variable \"support_token\" {\n  type      = string\n  sensitive = true\n}\n\nhelm {\n  timeout = \"2m\"\n  values  = { supportToken = var.support_token }\n}\n",
    );
    let dir = op.dir.path();
    // The storage class the vendor's check asks for, made by the cluster's admin.
    let _ = env.api().unwrap().create(
        "/apis/storage.k8s.io/v1/storageclasses",
        &serde_json::json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "wallaroo-fast"}, "provisioner": "kubernetes.io/no-provisioner"}),
    );
    std::fs::write(dir.join("wallaroo.hcl"), &op.spec).unwrap();

    // Passing: each analyzer with its outcome, in every view.
    let (code, out, err) = run(env, dir, &["plan"], &preflight);
    assert_eq!(code, Some(0), "{out}{err}");
    for needle in [
        "warn vendor preflight: Kubernetes version: Kubernetes 1.99 is recommended",
        "ok   vendor preflight: Node count: enough nodes",
        "ok   vendor preflight: Linux nodes: Linux nodes found",
        "ok   vendor preflight: Storage class: storage class wallaroo-fast found",
    ] {
        assert!(err.contains(needle), "`{needle}` missing from:\n{err}");
    }
    assert!(
        err.contains("Support contract: registered with token (sensitive)") && !err.contains(TOKEN),
        "{err}"
    );
    let (code, json, err) = run(env, dir, &["plan", "--json"], &preflight);
    assert_eq!(code, Some(0), "{err}");
    let plan: Value = serde_json::from_str(&json).unwrap();
    let vendor = plan["vendor_preflight"].as_array().unwrap();
    assert_eq!(vendor.len(), 5, "{vendor:?}");
    assert!(!json.contains(TOKEN));
    assert!(
        vendor
            .iter()
            .any(|c| c["check"] == "Kubernetes version" && c["outcome"] == "warn")
    );
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("schemas/plan.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(
        validator.is_valid(&plan),
        "the plan matches plans/plan.schema.json"
    );
    let (code, md, _) = run(env, dir, &["plan", "--format", "markdown"], &preflight);
    assert_eq!(code, Some(0));
    assert!(
        md.contains("| Node count | ✅ pass | enough nodes |")
            && md.contains("| Kubernetes version | ⚠️ warn | Kubernetes 1.99 is recommended |"),
        "{md}"
    );

    // A failing analyzer stops plan and apply before any change.
    let failing = op.spec.replace(
        "  values  = { supportToken = var.support_token }\n",
        "  values  = { supportToken = var.support_token, minNodes = 100000 }\n",
    );
    assert_ne!(failing, op.spec);
    std::fs::write(dir.join("wallaroo.hcl"), &failing).unwrap();
    for args in [&["plan"][..], &["apply", "--auto-approve"][..]] {
        let (code, out, err) = run(env, dir, args, &preflight);
        assert_eq!(code, Some(1), "{out}{err}");
        assert!(
            err.contains("FAIL vendor preflight: Node count: Wallaroo needs at least 100000 nodes"),
            "{args:?}:\n{err}"
        );
    }
    assert!(
        env.api()
            .unwrap()
            .get(&format!("/api/v1/namespaces/{id}"))
            .is_err(),
        "nothing was applied"
    );
    // Printing roles runs no preflight: the admin gets them while the analyzer still fails.
    let (code, yaml, err) = run(env, dir, &["rbac"], &preflight);
    assert_eq!(code, Some(0), "{err}");
    assert!(yaml.contains("kind: ClusterRole\n"), "{yaml}");
    assert!(!err.contains("vendor preflight"), "{err}");

    // Without the program, the plan says what is missing (and how to go on without).
    let (code, _, err) = Command::new(env!("CARGO_BIN_EXE_wallaroo"))
        .arg("plan")
        .current_dir(dir)
        .envs(env.exports())
        .env("PATH", "/usr/bin:/bin")
        .env("WALLAROO_VAR_support_token", TOKEN)
        .env("NO_COLOR", "1")
        .output()
        .map(|o| {
            (
                o.status.code(),
                String::new(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("the `preflight` program is not installed")
            && err.contains("troubleshoot { preflights = false }"),
        "{err}"
    );
}
