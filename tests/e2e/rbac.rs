//! The permissions apply needs, known before it starts: a chart with a kind the
//! least-privilege identity may not touch (a CronJob) stops the plan naming verb, resource
//! and namespace, where before helm stopped half way through the install; the Role and
//! ClusterRole `wallaroo rbac` prints, applied by an admin, make the same plan pass and apply
//! succeed.

use std::path::Path;

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
    common::outcome(common::wallaroo_in(env, dir).args(args))
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
        "`wallaroo rbac --for apply` prints",
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
    // The namespace comes with it.
    let docs: Vec<Option<Value>> = serde_saphyr::from_multiple(&yaml).unwrap();
    apply_as_admin(env, &docs.into_iter().flatten().collect::<Vec<_>>());
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

/// The sample chart with RBAC of its own (a Role granting one named ConfigMap and reads, a
/// ClusterRole granting node and volume reads and a non-resource URL, their bindings to a
/// ServiceAccount of the chart) and a CronJob, an Ingress, a NetworkPolicy and a
/// PodDisruptionBudget.
fn chart_with_everything(dir: &Path) -> std::path::PathBuf {
    let chart = chart_with_cronjob(dir);
    std::fs::write(
        chart.join("templates/rbac.yaml"),
        r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: report
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: report-config
rules:
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["get", "list", "watch"]
  - apiGroups: [""]
    resources: ["configmaps"]
    resourceNames: ["report-settings"]
    verbs: ["update"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: report-config
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: report-config}
subjects: [{kind: ServiceAccount, name: report, namespace: {{ .Release.Namespace }}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ .Release.Namespace }}-report-nodes
rules:
  - apiGroups: [""]
    resources: ["nodes", "persistentvolumes"]
    verbs: ["get", "list"]
  - nonResourceURLs: ["/metrics"]
    verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ .Release.Namespace }}-report-nodes
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {{ .Release.Namespace }}-report-nodes}
subjects: [{kind: ServiceAccount, name: report, namespace: {{ .Release.Namespace }}}]
"#,
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/network.yaml"),
        r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: api
spec:
  rules:
    - host: api.{{ .Values.domainSuffix }}
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service: {name: api-lb, port: {number: 8080}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: api-only
spec:
  podSelector: {matchLabels: {app: conductor-wallsvc}}
  policyTypes: ["Ingress"]
  ingress:
    - ports: [{port: 8080}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: api
spec:
  minAvailable: 1
  selector: {matchLabels: {app: conductor-wallsvc}}
"#,
    )
    .unwrap();
    chart
}

/// The API path of a document of `wallaroo rbac`'s output.
fn path_of(doc: &Value) -> String {
    let kind = doc["kind"].as_str().unwrap();
    let plural = format!("{}s", kind.to_lowercase());
    let base = if kind == "Namespace" {
        "/api/v1".to_string()
    } else {
        "/apis/rbac.authorization.k8s.io/v1".to_string()
    };
    match doc["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{base}/namespaces/{ns}/{plural}"),
        None => format!("{base}/{plural}"),
    }
}

/// `kubectl apply -f` of `wallaroo rbac`'s output as the admin, in its order: each document
/// created, or its rules and subjects put in place when it exists.
fn apply_as_admin(env: &wallaroo_testenv::Env, docs: &[Value]) {
    let api = env.api().unwrap();
    for doc in docs {
        let path = path_of(doc);
        let name = doc["metadata"]["name"].as_str().unwrap();
        if api.get(&format!("{path}/{name}")).is_ok() {
            if doc["kind"] != "Namespace" {
                api.merge_patch(&format!("{path}/{name}"), doc).unwrap();
            }
        } else {
            api.create(&path, doc).unwrap();
        }
    }
}

use common::wallaroo_as as run_as;

/// An identity made from nothing and granted exactly what `wallaroo rbac --for all` prints,
/// with the release's namespace absent: plan, apply, a drift repair, a setting change and
/// destroy all pass, though the chart carries Roles and bindings of its own (which the API
/// server lets it create only because it holds their rules), and the API server refuses it
/// nothing. With one of the chart's rules taken out of the YAML, the plan stops naming it.
#[test]
fn what_wallaroo_rbac_for_all_prints_is_enough_for_every_operation_from_nothing() {
    let env = shared();
    let id = unique("rbacall");
    let charts = tempfile::tempdir().unwrap();
    let chart = chart_with_everything(charts.path());
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &id, &chart).unwrap();
    let op = operator_spec(env, &id, Some(&id));
    let dir = op.dir.path();
    std::fs::write(dir.join("wallaroo.hcl"), &op.spec).unwrap();
    let api = env.api().unwrap();

    // A ServiceAccount with no rights, and its own token.
    let ops = format!("{id}-ops");
    api.create(
        "/api/v1/namespaces",
        &serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ops}}),
    )
    .unwrap();
    api.create(
        &format!("/api/v1/namespaces/{ops}/serviceaccounts"),
        &serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer"}}),
    )
    .unwrap();
    let keep = tempfile::tempdir().unwrap();
    let kubeconfig = keep.path().join("deployer.kubeconfig");
    env.service_account_kubeconfig(&ops, "deployer", &kubeconfig)
        .unwrap();
    let user = format!("system:serviceaccount:{ops}:deployer");

    let (code, out, err) = run_as(env, dir, &kubeconfig, &["plan"]);
    assert_eq!(
        code,
        Some(1),
        "an identity with no rights cannot plan: {out}{err}"
    );

    // What the admin prints: the namespace first, then the roles; no preflight ran.
    let (code, yaml, err) = run(
        env,
        dir,
        &[
            "rbac",
            "--for",
            "all",
            "--name",
            &id,
            "--service-account",
            &format!("{ops}/deployer"),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        api.get(&format!("/api/v1/namespaces/{id}")).is_err(),
        "not made yet"
    );
    let docs: Vec<Option<Value>> = serde_saphyr::from_multiple(&yaml).unwrap();
    let docs: Vec<Value> = docs.into_iter().flatten().collect();
    assert_eq!(docs[0]["kind"], "Namespace", "{yaml}");
    assert_eq!(docs[0]["metadata"]["name"], id.as_str(), "{yaml}");
    for needle in [
        "\"persistentvolumeclaims\"", // destroy lists them before deleting the namespace
        "\"pods/log\"",               // a support bundle reads logs
        "resourceNames: [\"report-settings\"]", // the chart's Role grants only that one
        "nonResourceURLs: [\"/metrics\"]",
        "\"cronjobs\"",
        "\"ingresses\"",
        "\"networkpolicies\"",
        "\"poddisruptionbudgets\"",
    ] {
        assert!(yaml.contains(needle), "{needle} missing from:\n{yaml}");
    }

    // The same without the chart's rule on persistent volumes: the plan stops, naming it.
    let mut short = docs.clone();
    for doc in &mut short {
        if doc["kind"] == "ClusterRole" {
            let rules = doc["rules"].as_array_mut().unwrap();
            rules.retain(|r| {
                !r["resources"]
                    .as_array()
                    .is_some_and(|a| a.contains(&serde_json::json!("persistentvolumes")))
            });
        }
    }
    assert_ne!(short, docs, "the rule was there to take out");
    apply_as_admin(env, &short);
    let (code, out, err) = run_as(env, dir, &kubeconfig, &["plan"]);
    assert_eq!(code, Some(1), "{out}{err}");
    for needle in [
        "list persistentvolumes (cluster-wide)",
        &format!("ClusterRole {id}-report-nodes"),
        "grant only what it holds",
    ] {
        assert!(err.contains(needle), "`{needle}` missing from:\n{err}");
    }
    // And the API server agrees: the identity may not make that ClusterRole itself.
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    let token = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("token:"))
        .unwrap()
        .trim()
        .trim_matches('"');
    let deployer = wallaroo_testenv::KubeApi::new(
        &format!("https://127.0.0.1:{}", env.api_port),
        token,
        &env.ca_file,
    )
    .unwrap();
    let role = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": format!("{id}-probe")},
        "rules": [{"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["list"]}],
    });
    let refused = deployer
        .create("/apis/rbac.authorization.k8s.io/v1/clusterroles", &role)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("attempting to grant RBAC permissions not currently held"),
        "{refused}"
    );

    // All of it: every operation passes, and the API server refuses none of its requests.
    apply_as_admin(env, &docs);
    let step = |args: &[&str], want: i32| {
        let (code, out, err) = run_as(env, dir, &kubeconfig, args);
        assert_eq!(code, Some(want), "wallaroo {}:\n{out}{err}", args.join(" "));
        out
    };
    // An aggregated ClusterRole gathers rules it cannot show: the API server wants
    // `escalate` for it however many rules the identity holds (what the plan asks for one).
    let gathered = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": format!("{id}-gathered")},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": id}}]},
        "rules": [],
    });
    let refused = deployer
        .create("/apis/rbac.authorization.k8s.io/v1/clusterroles", &gathered)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("aggregationRule"), "{refused}");
    let before = env.audited_writes_by(&user).len();
    step(&["plan", "--detailed-exitcode"], 2);
    step(&["apply", "--auto-approve"], 0);
    assert!(
        api.get(&format!(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{id}-report-nodes"
        ))
        .is_ok()
    );
    // Drift: a hand scale, repaired.
    api.merge_patch(
        &format!("/apis/apps/v1/namespaces/{id}/deployments/conductor-wallsvc"),
        &serde_json::json!({"spec": {"replicas": 3}}),
    )
    .unwrap();
    step(&["plan", "--detailed-exitcode"], 2);
    step(&["apply", "--auto-approve"], 0);
    step(&["plan", "--detailed-exitcode"], 0);
    // A setting change: no external ingress, so the release drops a Service.
    let spec = std::fs::read_to_string(dir.join("wallaroo.hcl"))
        .unwrap()
        .replace("ingress_mode = \"internal\"", "ingress_mode = \"none\"");
    std::fs::write(dir.join("wallaroo.hcl"), spec).unwrap();
    step(&["apply", "--auto-approve"], 0);
    assert!(
        api.get(&format!("/api/v1/namespaces/{id}/services/api-lb-ext"))
            .is_err()
    );
    step(&["support-bundle", "--out", "bundle.tar.gz"], 0);
    step(&["destroy", "--auto-approve"], 0);
    assert!(
        api.get(&format!(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/{id}-report-nodes"
        ))
        .is_err(),
        "the chart's ClusterRole went with the release"
    );

    let refused: Vec<Value> = env
        .audited_writes_by(&user)
        .into_iter()
        .skip(before)
        .filter(|e| e["responseStatus"]["code"].as_i64().unwrap_or(0) >= 400)
        .filter(|e| e["responseStatus"]["code"] != 404 && e["responseStatus"]["code"] != 409)
        .collect();
    assert!(refused.is_empty(), "the API server refused: {refused:#?}");

    let _ = api.delete(&format!("/api/v1/namespaces/{ops}"));
    for kind in ["clusterrolebindings", "clusterroles"] {
        let _ = api.delete(&format!("/apis/rbac.authorization.k8s.io/v1/{kind}/{id}"));
    }
}
