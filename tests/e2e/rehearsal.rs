//! The API server's rehearsal, against the real control plane: every write a plan would make
//! is sent as a dry run, and what the server would refuse stops the plan (exit 1, each
//! object named with the server's message and what to do) and apply before anything
//! changes. Site policies of both kinds regulated clusters run (a CEL
//! `ValidatingAdmissionPolicy` bound by a namespace label, and an admission webhook on
//! 127.0.0.1), an immutable selector (refused, or replaced when the spec allows it), objects
//! helm cannot own, a quota the release does not fit, and a kind the cluster does not serve.
//! When a webhook that judges real writes only denies the upgrade, the Secret the release
//! still used outlives the failure.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use wallaroo_testenv::webhook::AdmissionWebhook;
use wallaroo_testenv::{Env, shared, unique};

mod common;
use common::{operator_spec, sample_chart_copy, wallaroo_in};

fn run(env: &Env, dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    run_with(wallaroo_in(env, dir), args)
}

/// As the cluster's admin (for charts whose kinds the kit's identity may not touch).
fn run_as_admin(env: &Env, dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = wallaroo_in(env, dir);
    cmd.env("KUBECONFIG", &env.admin_kubeconfig);
    run_with(cmd, args)
}

fn run_with(mut cmd: Command, args: &[&str]) -> (Option<i32>, String, String) {
    let out = cmd.args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The helm release's stored revisions in `ns`.
fn revisions(env: &Env, ns: &str) -> usize {
    env.api()
        .unwrap()
        .get(&format!(
            "/api/v1/namespaces/{ns}/secrets?labelSelector=owner%3Dhelm"
        ))
        .unwrap()["items"]
        .as_array()
        .map_or(0, Vec::len)
}

fn refused(plan: &Value) -> Vec<Value> {
    plan["rehearsal"]["refused"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn tls_env(env: &Env, ns: &str) -> Value {
    let d = env
        .api()
        .unwrap()
        .get(&format!(
            "/apis/apps/v1/namespaces/{ns}/deployments/conductor-wallsvc"
        ))
        .unwrap();
    d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "TLS_SECRET")
        .cloned()
        .unwrap()
}

/// A validating webhook configuration calling `hook` for Deployments in namespaces labelled
/// `wallaroo-test-site={id}`.
fn webhook_config(env: &Env, id: &str, hook: &AdmissionWebhook, side_effects: &str) -> Value {
    use base64::Engine;
    let ca = std::fs::read(&env.ca_file).unwrap();
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": format!("{id}-site")},
        "webhooks": [{
            "name": "cost-center.site.example.com",
            "clientConfig": {
                "url": hook.url(),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(ca),
            },
            "rules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}],
            "namespaceSelector": {"matchLabels": {"wallaroo-test-site": id}},
            "sideEffects": side_effects,
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Fail",
            "timeoutSeconds": 5,
        }],
    })
}

/// Runs `plan` until `done` holds for its outcome (a policy takes a moment to be in force),
/// at most 20 times.
fn plan_until(
    env: &Env,
    dir: &Path,
    args: &[&str],
    done: impl Fn(Option<i32>, &str, &str) -> bool,
) -> (Option<i32>, String, String) {
    let mut last = (None, String::new(), String::new());
    for _ in 0..20 {
        last = run(env, dir, args);
        if done(last.0, &last.1, &last.2) {
            return last;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    last
}

/// The bad day, rehearsed: a site policy (CEL, in-process, bound by a namespace
/// label: every container needs a memory limit) and the spec's `tls` block removed. The plan
/// names the Deployment and the policy's message and exits 1; apply refuses with nothing
/// changed (no new helm revision, the Secret and the nodes as they were). An admission
/// webhook with `sideEffects: None` is rehearsed the same way (it sees the dry runs). One
/// that allows every dry run and judges real writes only (`NoneOnDryRun`, a change freeze)
/// passes the rehearsal; apply then meets its denial in helm's upgrade, the Secret the
/// release used is still there (deleted only after the release's change succeeds), and the
/// next plan shows the same change again. (`sideEffects: Unknown`, whose dry runs the API
/// server refuses, cannot be made since admissionregistration.k8s.io/v1; that answer is read
/// as "not rehearsed", in `answer.rs`'s tests.)
#[test]
fn site_policies_stop_the_plan_and_a_failed_upgrade_keeps_what_the_release_used() {
    let env = shared();
    let id = unique("rehearse");
    let charts = tempfile::tempdir().unwrap();
    let chart = sample_chart_copy(charts.path());
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &id, &chart).unwrap();
    let op = operator_spec(env, &id, Some(&id));
    let dir = op.dir.path();
    std::fs::write(dir.join("wallaroo.hcl"), &op.spec).unwrap();
    let api = env.api().unwrap();

    // A first install: rehearsed in a short-lived namespace, which is gone after.
    let (code, out, err) = run(env, dir, &["plan", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    let rehearsal = &plan["rehearsal"];
    assert!(rehearsal["rehearsed"].as_u64().unwrap() >= 6, "{rehearsal}");
    assert!(
        rehearsal["notes"]
            .to_string()
            .contains("short-lived namespace"),
        "{rehearsal}"
    );
    let stand_ins = api
        .get(&format!(
            "/api/v1/namespaces?labelSelector=wallaroo.ai%2Frehearsal-for%3D{id}"
        ))
        .unwrap();
    let stand_ins = stand_ins["items"].as_array().unwrap();
    assert!(!stand_ins.is_empty(), "one was made");
    assert!(
        stand_ins
            .iter()
            .all(|n| n["metadata"]["deletionTimestamp"].is_string()),
        "the stand-in namespace is being deleted: {stand_ins:#?}"
    );
    let (code, out, err) = run(env, dir, &["apply", "--auto-approve"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let installed = revisions(env, &id);
    let node_labels =
        |n: &str| api.get(&format!("/api/v1/nodes/{n}")).unwrap()["metadata"]["labels"].clone();
    let labels_before: Vec<Value> = op.nodes.iter().map(|n| node_labels(n)).collect();

    // The site's policy, bound by a label the platform team puts on the namespace.
    let policy = format!("{id}-memory-limits");
    api.create(
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
        &json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": policy},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
                "validations": [{
                    "expression": "object.spec.template.spec.containers.all(c, has(c.resources) && has(c.resources.limits) && 'memory' in c.resources.limits)",
                    "message": "every container needs a memory limit",
                }],
            },
        }),
    )
    .unwrap();
    api.create(
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings",
        &json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": policy},
            "spec": {
                "policyName": policy,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"wallaroo-test-policy": id}}},
            },
        }),
    )
    .unwrap();
    api.merge_patch(
        &format!("/api/v1/namespaces/{id}"),
        &json!({"metadata": {"labels": {"wallaroo-test-policy": id, "wallaroo-test-site": id}}}),
    )
    .unwrap();

    // The spec without its `tls` block: the release's Deployments change, the Secret goes.
    let start = op.spec.find("tls {").unwrap();
    let end = start + op.spec[start..].find("}\n").unwrap() + 2;
    let no_tls = format!("{}{}", &op.spec[..start], &op.spec[end..]);
    std::fs::write(dir.join("wallaroo.hcl"), &no_tls).unwrap();
    let (code, out, err) = plan_until(env, dir, &["plan", "--json"], |c, _, _| c == Some(1));
    assert_eq!(code, Some(1), "{out}{err}");
    let plan: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let refusals = refused(&plan);
    let engine = refusals
        .iter()
        .find(|r| r["object"] == format!("Deployment {id}/conductor-wallsvc"))
        .unwrap_or_else(|| panic!("{refusals:#?}"));
    assert_eq!(engine["reason"], "policy");
    assert!(
        engine["message"]
            .as_str()
            .unwrap()
            .contains("every container needs a memory limit"),
        "{engine}"
    );
    assert!(err.contains("the API server would refuse"), "{err}");
    assert!(
        err.contains("what to do: a policy of the cluster denies it"),
        "{err}"
    );
    // The text view lists it too.
    let (code, text, _) = run(env, dir, &["plan"]);
    assert_eq!(code, Some(1));
    assert!(
        text.contains("Rehearsal: the API server would refuse"),
        "{text}"
    );
    assert!(
        text.contains(&format!("! Deployment {id}/conductor-wallsvc")),
        "{text}"
    );

    let (code, out, err) = run(env, dir, &["apply", "--auto-approve"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("every container needs a memory limit"),
        "{err}"
    );
    assert_eq!(revisions(env, &id), installed, "no new helm revision");
    assert!(
        api.get(&format!("/api/v1/namespaces/{id}/secrets/cust-cert-secret"))
            .is_ok(),
        "the Secret is still there"
    );
    let labels_after: Vec<Value> = op.nodes.iter().map(|n| node_labels(n)).collect();
    assert_eq!(labels_after, labels_before, "no node touched");

    // A webhook that supports dry runs refuses as the policy did, and saw the dry runs.
    api.delete(&format!(
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings/{policy}"
    ))
    .unwrap();
    let hook = AdmissionWebhook::start(env, "Deployment", "cost-center").unwrap();
    let hooks = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";
    api.create(hooks, &webhook_config(env, &id, &hook, "None"))
        .unwrap();
    let (code, out, err) = plan_until(env, dir, &["plan", "--json"], |c, out, _| {
        c == Some(1) && out.contains("must carry the label cost-center")
    });
    assert_eq!(code, Some(1), "{out}{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert!(
        refused(&plan).iter().all(|r| r["reason"] == "policy"
            && r["message"]
                .as_str()
                .unwrap()
                .contains("Deployment must carry the label cost-center (site policy)")),
        "{plan:#}"
    );
    assert!(
        hook.reviews().iter().any(|r| r.dry_run && !r.allowed),
        "{:?}",
        hook.reviews()
    );
    assert!(
        hook.reviews().iter().all(|r| r.dry_run),
        "nothing was written"
    );

    // One that judges real writes only (its decision rests on what a dry run cannot show):
    // the rehearsal passes, as it must say it cannot see such a thing.
    api.delete(&format!("{hooks}/{id}-site")).unwrap();
    let freeze = AdmissionWebhook::start_with(env, "Deployment", "cost-center", false).unwrap();
    api.create(hooks, &webhook_config(env, &id, &freeze, "NoneOnDryRun"))
        .unwrap();
    let (code, out, err) = plan_until(env, dir, &["plan", "--detailed-exitcode"], |c, _, _| {
        c == Some(2) && freeze.reviews().iter().any(|r| r.dry_run)
    });
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        out.contains("Rehearsal: the API server accepts all"),
        "{out}"
    );
    // Apply meets the webhook's denial in helm's upgrade: it fails, and the Secret the
    // release's pods still name is kept (deleted only after the release changes).
    let (code, out, err) = run(env, dir, &["apply", "--auto-approve"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        format!("{out}{err}").contains("must carry the label cost-center"),
        "{out}{err}"
    );
    assert!(
        api.get(&format!("/api/v1/namespaces/{id}/secrets/cust-cert-secret"))
            .is_ok(),
        "the Secret outlives the failed upgrade"
    );
    assert_eq!(tls_env(env, &id)["value"], "cust-cert-secret");
    assert!(freeze.reviews().iter().any(|r| !r.dry_run && !r.allowed));
    let (code, out, err) = run(env, dir, &["plan", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    let actions: Vec<(String, String)> = plan["changes"]
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
    assert!(
        actions.contains(&("helm_release.wallaroo".into(), "update".into()))
            && actions.contains(&(format!("secret.{id}/cust-cert-secret"), "delete".into())),
        "the same change again: {actions:?}"
    );

    // Without the site's rules the change goes through, the Secret last.
    api.delete(&format!("{hooks}/{id}-site")).unwrap();
    let (code, out, err) = run(env, dir, &["apply", "--auto-approve"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        api.get(&format!("/api/v1/namespaces/{id}/secrets/cust-cert-secret"))
            .is_err()
    );
    assert_eq!(tls_env(env, &id)["value"].as_str().unwrap_or(""), "");
    let (code, out, err) = run(env, dir, &["destroy", "--auto-approve"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let _ = api.delete(&format!(
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/{policy}"
    ));
}
