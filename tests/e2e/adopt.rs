//! Taking over an install made by hand, the way the air-gap guide does it: nodes labelled and
//! tainted with the API (kubectl's way), the images and chart pushed with a script (skopeo),
//! the namespace and pull secret created, and `helm install` run with the operator's values.
//! The first `wallaroo plan` then has nothing to add, change or destroy, only adoptions; apply
//! writes nothing to the adopted objects (resourceVersions and helm revision unchanged), and
//! the next plan is empty.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use serde_json::{Value, json};
use wallaroo_testenv::{Env, shared, unique};

mod common;

const VERSION: &str = "2025.1.0-6290";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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

fn plan_json(env: &Env, dir: &Path) -> Value {
    let out = run(env, dir, &["plan", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn an_install_made_by_hand_is_adopted_without_writing_to_it() {
    let env = shared();
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    let chart_dir = repo().join("tests/charts/wallaroo-sample");
    wallaroo_testenv::seed::seed(env, &preset, &env.vendor, "wallaroo", &chart_dir).unwrap();
    let ns = unique("adopt");
    let nodes = env
        .add_nodes(&ns, 3, &json!({}), &json!([]), &json!({}))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("wallaroo.hcl"),
        format!(
            r#"wallaroo {{
  version                 = "{VERSION}"
  license_channel         = "2025-1"
  namespace               = "{ns}"
  domain                  = "wallaroo.example.com"
  kubernetes_distribution = "kurl"
  keycloak_url            = "{kc}"
}}
source "wallaroo" {{
  registry = "{vendor}"
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
            private = env.private.address(),
            pu = env.private.username,
            pp = env.private.password,
            ca = env.ca_file.display(),
            n1 = nodes[0],
            n2 = nodes[1],
            n3 = nodes[2],
        ),
    )
    .unwrap();
    // The operator's values: what the spec means, as a values file.
    let fresh = plan_json(env, dir.path());
    let values = fresh["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "helm_release.wallaroo")
        .unwrap()["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == "values")
        .unwrap()["after"]
        .clone();
    // As an operator writes it: only what differs from the chart's own defaults (the keys
    // left out are where the chart's values.yaml already says the same).
    let defaults: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart_dir.join("values.yaml")).unwrap())
            .unwrap();
    let mut values = values;
    let left_out: Vec<String> = values
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, v)| defaults.get(k.as_str()) == Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    for k in &left_out {
        values.as_object_mut().unwrap().remove(k);
    }
    assert!(
        left_out.iter().any(|k| k == "kubernetes_distribution") && left_out.len() >= 4,
        "{left_out:?}"
    );
    std::fs::write(dir.path().join("values.json"), values.to_string()).unwrap();

    // By hand.
    let api = env.api().unwrap();
    api.create(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    )
    .unwrap();
    for (node, purpose, taint) in [
        (&nodes[0], "general", None),
        (&nodes[1], "persistent", Some("persistent")),
        (&nodes[2], "pipelines", Some("pipelines")),
    ] {
        let taints: Vec<Value> = taint
            .map(|t| json!({"key": format!("wallaroo.ai/{t}"), "value": "true", "effect": "NoSchedule"}))
            .into_iter()
            .collect();
        api.merge_patch(
            &format!("/api/v1/nodes/{node}"),
            &json!({"metadata": {"labels": {"wallaroo.ai/node-purpose": purpose}}, "spec": {"taints": taints}}),
        )
        .unwrap();
    }
    let (u, p) = (&env.private.username, &env.private.password);
    let b64 = base64::engine::general_purpose::STANDARD;
    let auth = json!({"auths": {env.private.address(): {
        "username": u, "password": p, "auth": b64.encode(format!("{u}:{p}"))}}})
    .to_string();
    api.create(
        &format!("/api/v1/namespaces/{ns}/secrets"),
        &json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                "metadata": {"name": "wallaroo-registry", "namespace": ns},
                "data": {".dockerconfigjson": b64.encode(&auth)}}),
    )
    .unwrap();
    common::skopeo_mirror(
        env,
        &[
            (
                "wallaroo/2025-1/wallaroo".to_string(),
                format!("{ns}/charts/wallaroo"),
            ),
            (
                "wallaroo/conductor-wallsvc".into(),
                format!("{ns}/conductor-wallsvc"),
            ),
            ("wallaroo/fitzroy-mini".into(), format!("{ns}/fitzroy-mini")),
            ("wallaroo/keycloak".into(), format!("{ns}/keycloak")),
        ],
        VERSION,
    );
    let helm = Command::new(&env.helm)
        .args(["install", "wallaroo"])
        .arg(&chart_dir)
        .args(["--namespace", &ns, "--values"])
        .arg(dir.path().join("values.json"))
        .arg("--kubeconfig")
        .arg(&env.admin_kubeconfig)
        .output()
        .unwrap();
    assert!(
        helm.status.success(),
        "{}",
        String::from_utf8_lossy(&helm.stderr)
    );

    // The first plan: only adoptions.
    let plan = plan_json(env, dir.path());
    let changes = plan["changes"].as_array().unwrap();
    let changed: Vec<&Value> = changes
        .iter()
        .filter(|c| c["action"] != "no-op" && c["action"] != "read")
        .collect();
    assert!(changed.is_empty(), "{changed:#?}");
    let mut adopted: Vec<String> = changes
        .iter()
        .filter(|c| c["adopted"] == true)
        .map(|c| c["address"].as_str().unwrap().to_string())
        .collect();
    adopted.sort();
    let mut want: Vec<String> = vec![
        format!("namespace.{ns}"),
        format!("secret.{ns}/wallaroo-registry"),
        "helm_release.wallaroo".into(),
        format!("image[\"{ns}/charts/wallaroo:{VERSION}\"]"),
        format!("image[\"{ns}/conductor-wallsvc:{VERSION}\"]"),
        format!("image[\"{ns}/fitzroy-mini:{VERSION}\"]"),
        format!("image[\"{ns}/keycloak:{VERSION}\"]"),
        format!("nodepool.general.node[\"{}\"]", nodes[0]),
        format!("nodepool.persistent.node[\"{}\"]", nodes[1]),
        format!("nodepool.pipelines-x86.node[\"{}\"]", nodes[2]),
    ];
    want.sort();
    assert_eq!(adopted, want);
    assert_eq!(plan["summary"]["adopt"], 10);
    let text = String::from_utf8_lossy(&run(env, dir.path(), &["plan"]).stdout).into_owned();
    assert!(
        text.contains("Plan: 10 to adopt, 0 to add, 0 to change, 0 to destroy."),
        "{text}"
    );

    // Apply writes nothing to them.
    let versions = |api: &wallaroo_testenv::KubeApi| -> Vec<String> {
        let mut paths = vec![
            format!("/api/v1/namespaces/{ns}"),
            format!("/api/v1/namespaces/{ns}/secrets/wallaroo-registry"),
        ];
        paths.extend(nodes.iter().map(|n| format!("/api/v1/nodes/{n}")));
        paths
            .iter()
            .map(|p| api.get(p).unwrap()["metadata"]["resourceVersion"].to_string())
            .collect()
    };
    // Node status heartbeats move nodes' resourceVersions on their own; compare the rest,
    // and the nodes' labels and taints.
    let node_marks = |api: &wallaroo_testenv::KubeApi| -> Vec<Value> {
        nodes
            .iter()
            .map(|n| {
                let v = api.get(&format!("/api/v1/nodes/{n}")).unwrap();
                json!([v["metadata"]["labels"], v["spec"]["taints"]])
            })
            .collect()
    };
    let before = (versions(&api)[..2].to_vec(), node_marks(&api));
    let applied = run(env, dir.path(), &["apply", "--auto-approve"]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let after = (versions(&api)[..2].to_vec(), node_marks(&api));
    assert_eq!(before, after, "apply wrote nothing to the adopted objects");
    let revisions = api
        .get(&format!(
            "/api/v1/namespaces/{ns}/secrets?labelSelector=owner%3Dhelm"
        ))
        .unwrap()["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(revisions, 1, "no helm upgrade ran");
    // Ten plans in a row: no drift in the release's live objects either.
    for i in 0..10 {
        let out = run(env, dir.path(), &["plan", "--detailed-exitcode"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "plan {i}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // Drift in the live objects: a Deployment scaled, a container image edited, an object
    // deleted; each named, exit 2.
    api.merge_patch(
        &format!("/apis/apps/v1/namespaces/{ns}/deployments/keycloak"),
        &json!({"spec": {"replicas": 3}}),
    )
    .unwrap();
    let mut engine = api
        .get(&format!("/apis/apps/v1/namespaces/{ns}/deployments/engine"))
        .unwrap();
    engine["spec"]["template"]["spec"]["containers"][0]["image"] = json!("elsewhere/engine:evil");
    api.merge_patch(
        &format!("/apis/apps/v1/namespaces/{ns}/deployments/engine"),
        &json!({"spec": {"template": {"spec": {"containers": engine["spec"]["template"]["spec"]["containers"]}}}}),
    )
    .unwrap();
    api.delete(&format!("/api/v1/namespaces/{ns}/services/api-lb"))
        .unwrap();
    let drifted = |dir: &Path| -> (Option<i32>, Vec<String>) {
        let out = run(env, dir, &["plan", "--detailed-exitcode", "--json"]);
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        let paths = plan["drift"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["address"] == "helm_release.wallaroo")
            .flat_map(|d| d["attributes"].as_array().cloned().unwrap_or_default())
            .map(|a| format!("{} = {}", a["path"].as_str().unwrap(), a["after"]))
            .collect();
        (out.status.code(), paths)
    };
    let (code, paths) = drifted(dir.path());
    assert_eq!(code, Some(2));
    let joined = paths.join("\n");
    for want in [
        "Deployment/keycloak\"] = [\"spec.replicas\"]",
        "Deployment/engine\"] = [\"spec.template.spec.containers[0].image\"]",
        "Service/api-lb\"] = \"deleted\"",
    ] {
        assert!(joined.contains(want), "{want} not in:\n{joined}");
    }

    // An ignore rule silences one named field and nothing else.
    let spec = std::fs::read_to_string(dir.path().join("wallaroo.hcl")).unwrap();
    std::fs::write(
        dir.path().join("wallaroo.hcl"),
        spec.replace(
            "  timeout = \"2m\"",
            "  timeout      = \"2m\"\n  ignore_drift = [\"Deployment/keycloak:spec.replicas\"]",
        ),
    )
    .unwrap();
    let (code, paths) = drifted(dir.path());
    assert_eq!(code, Some(2));
    let joined = paths.join("\n");
    assert!(!joined.contains("Deployment/keycloak"), "{joined}");
    assert!(joined.contains("Deployment/engine") && joined.contains("Service/api-lb"));

    // Apply (a helm upgrade) puts the rendered objects back; replicas stay ignored.
    let applied = run(env, dir.path(), &["apply", "--auto-approve"]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let out = run(env, dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
