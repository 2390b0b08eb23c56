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

use serde_json::{Value, json};
use wallaroo_testenv::webhook::AdmissionWebhook;
use wallaroo_testenv::{Env, shared, unique};

mod common;
use common::{operator_spec, sample_chart_copy, wallaroo_in};

fn run(env: &Env, dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    common::outcome(wallaroo_in(env, dir).args(args))
}

/// As the cluster's admin (for charts whose kinds the kit's identity may not touch).
fn run_as_admin(env: &Env, dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    common::wallaroo_as(env, dir, &env.admin_kubeconfig, args)
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

/// The issue's bad day, rehearsed: a site policy (CEL, in-process, bound by a namespace
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
        &json!({"metadata": {"labels": {
            "wallaroo-test-policy": id,
            "wallaroo-test-site": id,
            // Pod Security in warn mode: the server's warnings are the plan's.
            "pod-security.kubernetes.io/warn": "restricted",
        }}}),
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
    assert!(
        out.contains(&format!(
            "Warning: the API server warns: Deployment {id}/conductor-wallsvc: would violate PodSecurity \"restricted:latest\""
        )),
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

/// The sample chart with a Deployment whose selector, and a StatefulSet whose volume claim
/// size, come from values: what two chart versions that changed them would render.
fn chart_with_immutables(dir: &Path) -> std::path::PathBuf {
    let chart = sample_chart_copy(dir);
    std::fs::write(
        chart.join("templates/store.yaml"),
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: minio
spec:
  replicas: 1
  selector:
    matchLabels: {{ toJson .Values.minioSelector }}
  template:
    metadata:
      labels: {{ toJson .Values.minioSelector }}
    spec:
      containers:
        - name: minio
          image: {{ include "sample.image" (dict "root" . "name" "fitzroy-mini") }}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: store
spec:
  serviceName: store
  replicas: 1
  selector:
    matchLabels: {app: store}
  template:
    metadata:
      labels: {app: store}
    spec:
      containers:
        - name: store
          image: {{ include "sample.image" (dict "root" . "name" "fitzroy-mini") }}
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: ["ReadWriteOnce"]
        resources:
          requests:
            storage: {{ .Values.storeSize }}
"#,
    )
    .unwrap();
    let values = std::fs::read_to_string(chart.join("values.yaml")).unwrap();
    std::fs::write(
        chart.join("values.yaml"),
        // Before `images:`, which the seeder writes anew from there on.
        values.replace(
            "\nimages:",
            "\nminioSelector:\n  app: minio\nstoreSize: 1Gi\nimages:",
        ),
    )
    .unwrap();
    chart
}

/// An upgrade that changes a Deployment's selector and a StatefulSet's volume claim
/// templates: the plan refuses, naming each object and field and the setting that allows a
/// replacement; with `helm { replace_immutable = true }` the plan shows each as `-/+`, the
/// saved plan applies (both deleted, the StatefulSet without its pods and volumes, and made
/// again by helm), the release is deployed, and the next plan is empty.
#[test]
fn an_immutable_change_is_refused_or_replaced_as_the_spec_allows() {
    let env = shared();
    let id = unique("immutable");
    let charts = tempfile::tempdir().unwrap();
    let chart = chart_with_immutables(charts.path());
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &id, &chart).unwrap();
    let op = operator_spec(env, &id, Some(&id));
    let dir = op.dir.path();
    std::fs::write(dir.join("wallaroo.hcl"), &op.spec).unwrap();
    let api = env.api().unwrap();
    // A volume for the StatefulSet's claim (the kit has no provisioner).
    let pv = format!("{id}-data");
    api.create(
        "/api/v1/persistentvolumes",
        &json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
                "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
                         "hostPath": {"path": format!("/tmp/{pv}")},
                         "claimRef": {"namespace": id, "name": "data-store-0"}}}),
    )
    .unwrap();
    let (code, out, err) = run(env, dir, &["apply", "--auto-approve"]);
    assert_eq!(code, Some(0), "{out}{err}");
    // The StatefulSet's claim, made by the controller: it must outlive the replacement.
    let claim = format!("/api/v1/namespaces/{id}/persistentvolumeclaims/data-store-0");
    let mut claim_uid = Value::Null;
    for _ in 0..60 {
        if let Ok(c) = api.get(&claim) {
            claim_uid = c["metadata"]["uid"].clone();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(claim_uid.is_string(), "the StatefulSet's claim was made");
    let installed = revisions(env, &id);

    let changed = |extra: &str| {
        op.spec.replace(
            "helm {\n  timeout = \"2m\"\n}\n",
            &format!(
                "helm {{\n  timeout = \"2m\"\n  values  = {{ minioSelector = {{ app = \"minio\", tier = \"store\" }}, storeSize = \"2Gi\" }}\n{extra}}}\n"
            ),
        )
    };
    std::fs::write(dir.join("wallaroo.hcl"), changed("")).unwrap();
    let (code, out, err) = run(env, dir, &["plan", "--json"]);
    assert_eq!(code, Some(1), "{out}{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    let refusals = refused(&plan);
    let minio = refusals
        .iter()
        .find(|r| r["object"] == format!("Deployment {id}/minio"))
        .unwrap_or_else(|| panic!("{refusals:#?}"));
    assert_eq!(minio["reason"], "immutable");
    assert_eq!(minio["field"], "spec.selector");
    assert!(
        minio["message"]
            .as_str()
            .unwrap()
            .contains("field is immutable")
    );
    assert!(
        minio["hint"]
            .as_str()
            .unwrap()
            .contains("replace_immutable = true"),
        "{minio}"
    );
    assert!(
        refusals
            .iter()
            .any(|r| r["object"] == format!("StatefulSet {id}/store") && r["reason"] == "immutable"),
        "{refusals:#?}"
    );
    let (code, out, err) = run(env, dir, &["apply", "--auto-approve"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert_eq!(revisions(env, &id), installed, "nothing changed");

    // Allowed: shown as replacements, and applied from the saved plan.
    std::fs::write(
        dir.join("wallaroo.hcl"),
        changed("  replace_immutable = true\n"),
    )
    .unwrap();
    let (code, out, err) = run(
        env,
        dir,
        &["plan", "--detailed-exitcode", "--out", "replace.plan"],
    );
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        out.contains(&format!(
            "-/+ Deployment {id}/minio: spec.selector is immutable"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("-/+ StatefulSet {id}/store: ")),
        "{out}"
    );
    let (code, out, err) = run(env, dir, &["apply", "replace.plan"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let minio = api
        .get(&format!("/apis/apps/v1/namespaces/{id}/deployments/minio"))
        .unwrap();
    assert_eq!(
        minio["spec"]["selector"]["matchLabels"],
        json!({"app": "minio", "tier": "store"})
    );
    let store = api
        .get(&format!("/apis/apps/v1/namespaces/{id}/statefulsets/store"))
        .unwrap();
    assert_eq!(
        store["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "2Gi"
    );
    assert_eq!(
        api.get(&claim).unwrap()["metadata"]["uid"],
        claim_uid,
        "the claim (the data) was kept"
    );
    assert_eq!(revisions(env, &id), installed + 1);
    let (code, out, err) = run(env, dir, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run(env, dir, &["destroy", "--auto-approve", "--delete-data"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let _ = api.delete(&format!("/api/v1/persistentvolumes/{pv}"));
}

/// A first install into a namespace the platform team made beforehand, holding a quota that
/// allows no LoadBalancer and a Service of the release's name made by hand, of a chart that
/// renders a kind the cluster does not serve (a ServiceMonitor) and carries a CRD in crds/
/// with an object of its kind. The plan (as the cluster's admin, so that rights are not what
/// stops it) refuses the three, each with its reason and what to do, rehearses the CRD and
/// says its object waits for it; nothing is made. With the Service gone, the quota lifted and
/// the ServiceMonitor off, the install goes through, wallaroo applying the CRD; a next chart
/// whose CRD drops the version the object is stored in is refused.
#[test]
fn objects_helm_cannot_own_quotas_and_unserved_kinds_stop_a_first_install() {
    let env = shared();
    let id = unique("refuse");
    let charts = tempfile::tempdir().unwrap();
    let chart = sample_chart_copy(charts.path());
    let group = format!("{id}.example.com");
    std::fs::create_dir_all(chart.join("crds")).unwrap();
    std::fs::write(
        chart.join("crds/widgets.yaml"),
        format!(
            r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"#
        ),
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/extras.yaml"),
        format!(
            r#"apiVersion: {group}/v1
kind: Widget
metadata:
  name: gadget
spec:
  size: 3
{{{{- if .Values.monitor }}}}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: api
spec:
  selector: {{matchLabels: {{app: conductor-wallsvc}}}}
  endpoints: [{{port: http}}]
{{{{- end }}}}
"#
        ),
    )
    .unwrap();
    let values = std::fs::read_to_string(chart.join("values.yaml")).unwrap();
    std::fs::write(
        chart.join("values.yaml"),
        values.replace("\nimages:", "\nmonitor: true\nimages:"),
    )
    .unwrap();
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &id, &chart).unwrap();
    let op = operator_spec(env, &id, Some(&id));
    let dir = op.dir.path();
    std::fs::write(dir.join("wallaroo.hcl"), &op.spec).unwrap();
    let api = env.api().unwrap();

    // What the platform team made: the namespace, its quota, a Service of the same name.
    api.create(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": id}}),
    )
    .unwrap();
    api.create(
        &format!("/api/v1/namespaces/{id}/resourcequotas"),
        &json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-lb"},
                "spec": {"hard": {"services.loadbalancers": "0"}}}),
    )
    .unwrap();
    api.create(
        &format!("/api/v1/namespaces/{id}/services"),
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api-lb"},
                "spec": {"selector": {"app": "legacy"}, "ports": [{"port": 80}]}}),
    )
    .unwrap();

    let (code, out, err) = run_as_admin(env, dir, &["plan", "--json"]);
    assert_eq!(code, Some(1), "{out}{err}");
    let plan: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let refusals = refused(&plan);
    let find = |object: &str| {
        refusals
            .iter()
            .find(|r| r["object"] == object)
            .unwrap_or_else(|| panic!("{object} in {refusals:#?}"))
            .clone()
    };
    let quota = find(&format!("Service {id}/api-lb-ext"));
    assert_eq!(quota["reason"], "quota");
    assert!(
        quota["message"]
            .as_str()
            .unwrap()
            .contains("services.loadbalancers"),
        "{quota}"
    );
    let owned = find(&format!("Service {id}/api-lb"));
    assert_eq!(owned["reason"], "ownership");
    assert!(
        owned["hint"].as_str().unwrap().contains(&format!(
            "meta.helm.sh/release-name=wallaroo meta.helm.sh/release-namespace={id}"
        )),
        "{owned}"
    );
    // Its scope is unknown where its kind is not served: named without a namespace.
    let monitor = find("ServiceMonitor api");
    assert_eq!(monitor["reason"], "unserved");
    assert_eq!(refusals.len(), 3, "{refusals:#?}");
    let rehearsal = &plan["rehearsal"];
    assert!(
        rehearsal["not_rehearsed"].to_string().contains(&format!(
            "Widget {id}/gadget: its kind comes with the chart's CRDs"
        )),
        "{rehearsal}"
    );
    assert!(
        rehearsal["notes"].to_string().contains("crds/"),
        "{rehearsal}"
    );
    assert!(err.contains("what to do: "), "{err}");
    // Nothing was made.
    assert_eq!(revisions(env, &id), 0);
    assert!(
        api.get(&format!(
            "/api/v1/namespaces/{id}/secrets/wallaroo-registry"
        ))
        .is_err()
    );
    assert!(
        api.get(&format!(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{group}"
        ))
        .is_err()
    );

    // Put right: the install goes through, the chart's CRD and its object with it.
    api.delete(&format!("/api/v1/namespaces/{id}/services/api-lb"))
        .unwrap();
    api.delete(&format!("/api/v1/namespaces/{id}/resourcequotas/no-lb"))
        .unwrap();
    let spec = op.spec.replace(
        "helm {\n  timeout = \"2m\"\n}\n",
        "helm {\n  timeout = \"2m\"\n  values  = { monitor = false }\n}\n",
    );
    std::fs::write(dir.join("wallaroo.hcl"), spec).unwrap();
    let (code, out, err) = run_as_admin(env, dir, &["apply", "--auto-approve"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        api.get(&format!("/apis/{group}/v1/namespaces/{id}/widgets/gadget"))
            .is_ok()
    );
    // wallaroo applied the chart's CRD (helm would have, once, and never again).
    let crd_path =
        format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{group}");
    let crd = api.get(&crd_path).unwrap();
    assert!(
        crd["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["manager"] == "wallaroo" && m["operation"] == "Apply"),
        "{crd:#}"
    );
    assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));

    // The next chart version's CRD serves v2 only: the widget stored as v1 could no longer be
    // read, and the plan says so.
    std::fs::write(
        chart.join("crds/widgets.yaml"),
        std::fs::read_to_string(chart.join("crds/widgets.yaml"))
            .unwrap()
            .replace("    - name: v1\n", "    - name: v2\n"),
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/extras.yaml"),
        std::fs::read_to_string(chart.join("templates/extras.yaml"))
            .unwrap()
            .replace(
                &format!("apiVersion: {group}/v1"),
                &format!("apiVersion: {group}/v2"),
            ),
    )
    .unwrap();
    wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &id, &chart).unwrap();
    // (A new chart version changes the release; here one value stands for it.)
    let spec = op.spec.replace(
        "helm {\n  timeout = \"2m\"\n}\n",
        "helm {\n  timeout = \"2m\"\n  values  = { monitor = false, widgets = \"v2\" }\n}\n",
    );
    std::fs::write(dir.join("wallaroo.hcl"), spec).unwrap();
    let (code, out, err) = run_as_admin(env, dir, &["plan", "--refresh-pins", "--json"]);
    assert_eq!(code, Some(1), "{out}{err}");
    let plan: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let refusals = refused(&plan);
    let dropped = refusals
        .iter()
        .find(|r| r["object"] == format!("CustomResourceDefinition widgets.{group}"))
        .unwrap_or_else(|| panic!("{refusals:#?}"));
    assert_eq!(dropped["field"], "spec.versions");
    assert!(
        dropped["message"]
            .as_str()
            .unwrap()
            .contains("version(s) v1,"),
        "{dropped}"
    );
    let (code, out, err) = run_as_admin(env, dir, &["destroy", "--auto-approve"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let _ = api.delete(&format!(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{group}"
    ));
}
