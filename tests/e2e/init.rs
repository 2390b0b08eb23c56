//! Starting from what is running: an install made by hand exactly as the air-gap guide makes
//! it (nodes labelled and tainted with the API as kubectl does, images and chart pushed with
//! skopeo, `helm install` of the mirrored chart with image-values.yaml, a site values file,
//! `--set`s and a `--set-file`, users made through Keycloak's admin API), then
//! `wallaroo init --from-cluster`. The spec it writes holds no secret; with its variables set
//! the plan changes nothing in the release or the users and adds only the taint the report
//! names; apply records state without a new helm revision; the next plan is empty.

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

fn wallaroo(env: &Env, dir: &Path, args: &[&str], vars: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wallaroo"))
        .args(args)
        .current_dir(dir)
        .envs(env.exports())
        .envs(vars.iter().map(|(k, v)| (k.clone(), v.clone())))
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A user made in Keycloak's console (its admin API), with the admin role when asked.
fn keycloak_user(env: &Env, username: &str, email: Option<&str>, admin: bool) {
    let kc = reqwest::blocking::Client::new();
    let bearer = common::keycloak_admin_token(&kc, env);
    let mut body = json!({"username": username, "enabled": true});
    if let Some(e) = email {
        body["email"] = json!(e);
        body["emailVerified"] = json!(true);
    }
    let r = kc
        .post(format!("{}/admin/realms/master/users", env.keycloak_url))
        .bearer_auth(&bearer)
        .json(&body)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    if admin {
        let users: Value = kc
            .get(format!("{}/admin/realms/master/users", env.keycloak_url))
            .query(&[("username", username), ("exact", "true")])
            .bearer_auth(&bearer)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let id = users[0]["id"].as_str().unwrap();
        let role: Value = kc
            .get(format!(
                "{}/admin/realms/master/roles/admin",
                env.keycloak_url
            ))
            .bearer_auth(&bearer)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let r = kc
            .post(format!(
                "{}/admin/realms/master/users/{id}/role-mappings/realm",
                env.keycloak_url
            ))
            .bearer_auth(&bearer)
            .json(&json!([role]))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
}

#[test]
fn an_install_made_by_hand_becomes_a_spec_whose_plan_changes_nothing() {
    let env = shared();
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    let chart_dir = repo().join("tests/charts/wallaroo-sample");
    wallaroo_testenv::seed::seed(env, &preset, &env.vendor, "wallaroo", &chart_dir).unwrap();
    let ns = unique("init");
    // Marker secrets, one wherever an operator's install keeps one.
    let edge_secret = format!("edge-pw-{}", unique("m"));
    let tls_key = format!(
        "-----BEGIN PRIVATE KEY-----\ntls-key-{}\n-----END PRIVATE KEY-----\n",
        unique("m")
    );
    let nodes = env
        .add_nodes(&ns, 4, &json!({"e2e-init": ns}), &json!([]), &json!({}))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let api = env.api().unwrap();

    // By hand, as the guide does it.
    api.create(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    )
    .unwrap();
    let disk = format!("ssd-{ns}");
    let general_pool = format!("{ns}-general");
    let marks = [
        // kubectl label node N wallaroo.ai/node-purpose=general team-pool=...
        (
            &nodes[0],
            json!({"wallaroo.ai/node-purpose": "general", "team-pool": general_pool}),
            None,
        ),
        // Labelled for persistent, never tainted; shares `disk` with the pipelines nodes.
        (
            &nodes[1],
            json!({"wallaroo.ai/node-purpose": "persistent", "disk": disk}),
            None,
        ),
        (
            &nodes[2],
            json!({"wallaroo.ai/node-purpose": "pipelines", "disk": disk}),
            Some("pipelines"),
        ),
        (
            &nodes[3],
            json!({"wallaroo.ai/node-purpose": "pipelines", "disk": disk}),
            Some("pipelines"),
        ),
    ];
    for (node, labels, taint) in &marks {
        let taints: Vec<Value> = taint
            .map(|t| json!({"key": format!("wallaroo.ai/{t}"), "value": "true", "effect": "NoSchedule"}))
            .into_iter()
            .collect();
        api.merge_patch(
            &format!("/api/v1/nodes/{node}"),
            &json!({"metadata": {"labels": labels}, "spec": {"taints": taints}}),
        )
        .unwrap();
    }
    // kubectl create secret docker-registry (Go's key order, not ours).
    let (u, p) = (&env.private.username, &env.private.password);
    let b64 = base64::engine::general_purpose::STANDARD;
    let auth = format!(
        r#"{{"auths":{{"{}":{{"username":"{u}","password":"{p}","auth":"{}"}}}}}}"#,
        env.private.address(),
        b64.encode(format!("{u}:{p}"))
    );
    api.create(
        &format!("/api/v1/namespaces/{ns}/secrets"),
        &json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                "metadata": {"name": "wallaroo-registry", "namespace": ns},
                "data": {".dockerconfigjson": b64.encode(&auth)}}),
    )
    .unwrap();
    // kubectl create secret tls corp-tls
    let ca_pem = std::fs::read_to_string(&env.ca_file).unwrap();
    api.create(
        &format!("/api/v1/namespaces/{ns}/secrets"),
        &json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": "corp-tls", "namespace": ns},
                "data": {"tls.crt": b64.encode(&ca_pem), "tls.key": b64.encode(&tls_key)}}),
    )
    .unwrap();
    // load-images.bash: every image and the chart into the private registry.
    let mut copies = vec![(
        "wallaroo/2025-1/wallaroo".to_string(),
        format!("{ns}/charts/wallaroo"),
    )];
    for image in &preset.images {
        copies.push((
            format!("wallaroo/{}", image.name),
            format!("{ns}/{}", image.name),
        ));
    }
    common::skopeo_mirror(env, &copies, VERSION);
    // image-values.yaml, the site's values file, and helm install of the mirrored chart with
    // --set and --set-file.
    let hand = dir.path().join("by-hand");
    std::fs::create_dir_all(&hand).unwrap();
    std::fs::write(
        hand.join("image-values.yaml"),
        format!(
            "imageRegistry: {}/{ns}\nimagePullSecrets:\n  - name: wallaroo-registry\n",
            env.private.address()
        ),
    )
    .unwrap();
    std::fs::write(
        hand.join("site.yaml"),
        format!(
            "kubernetes_distribution: eks\ndomainSuffix: {ns}.example.com\ningress_mode: external\n\
             deploymentStage: cust\ncustTlsSecret: corp-tls\nassays:\n  version: v1\n\
             tolerations:\n  - key: dedicated\n    operator: Exists\n    effect: NoSchedule\n\
             ociRegistry:\n  enabled: true\n  registry: edge.example:5000\n  username: edge\n  \
             password: {edge_secret}\n  observability: false\n"
        ),
    )
    .unwrap();
    let helm = |args: &[&str]| {
        let out = Command::new(&env.helm)
            .args(args)
            .env("HELM_REGISTRY_CONFIG", hand.join("registry.json"))
            .arg("--kubeconfig")
            .arg(&env.admin_kubeconfig)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "helm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ca = env.ca_file.display().to_string();
    let private = env.private.address();
    let login = Command::new(&env.helm)
        .args([
            "registry",
            "login",
            &private,
            "--username",
            u,
            "--password-stdin",
        ])
        .args(["--ca-file", &ca])
        .env("HELM_REGISTRY_CONFIG", hand.join("registry.json"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(p.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    let chart_ref = format!("oci://{private}/{ns}/charts/wallaroo");
    let hand_dir = hand.display().to_string();
    helm(&[
        "pull",
        &chart_ref,
        "--version",
        VERSION,
        "--destination",
        &hand_dir,
        "--ca-file",
        &ca,
    ]);
    let archive = hand.join(format!("wallaroo-{VERSION}.tgz"));
    let keycloak_admin = format!("keycloakAdmin.password={}", env.keycloak_password);
    let ca_bundle = format!("caBundle={ca}");
    helm(&[
        "install",
        "wallaroo",
        &archive.display().to_string(),
        "--namespace",
        &ns,
        "--values",
        &hand.join("image-values.yaml").display().to_string(),
        "--values",
        &hand.join("site.yaml").display().to_string(),
        "--set",
        "analytics.enabled=false",
        "--set",
        &keycloak_admin,
        "--set-file",
        &ca_bundle,
    ]);
    // Users clicked into Keycloak: an admin named by email, a user with a username of its
    // own, and one with no email.
    let alice = format!("alice-{ns}@example.com");
    let bob = format!("bob-{ns}@example.com");
    let bob_username = format!("bob-{ns}");
    let carol = format!("carol-{ns}");
    keycloak_user(env, &alice, Some(&alice), true);
    keycloak_user(env, &bob_username, Some(&bob), false);
    keycloak_user(env, &carol, None, false);

    // wallaroo init --from-cluster
    let spec_path = dir.path().join("wallaroo.hcl");
    let out = wallaroo(
        env,
        dir.path(),
        &[
            "init",
            "--from-cluster",
            "--namespace",
            &ns,
            "--nodes",
            &format!("e2e-init={ns}"),
            "--keycloak-url",
            &env.keycloak_url,
            "--vendor-registry",
            &env.vendor.address(),
            "--vendor-username",
            &env.vendor.username,
            "--vendor-ca-file",
            &ca,
            "--registry-ca-file",
            &ca,
        ],
        &[],
    );
    let printed = format!("{}{}", ok(&out), String::from_utf8_lossy(&out.stderr));
    let spec = std::fs::read_to_string(&spec_path).unwrap();
    for (what, secret) in [
        ("edge registry password", edge_secret.as_str()),
        ("TLS key", tls_key.lines().nth(1).unwrap()),
        ("private registry password", p.as_str()),
        ("Keycloak admin password", env.keycloak_password.as_str()),
        ("vendor password", env.vendor.password.as_str()),
    ] {
        assert!(!spec.contains(secret), "the {what} is in the spec:\n{spec}");
        assert!(
            !printed.contains(secret),
            "the {what} was printed:\n{printed}"
        );
    }
    let fmt = wallaroo(env, dir.path(), &["fmt", "--check"], &[]);
    assert_eq!(fmt.status.code(), Some(0), "{spec}");
    // The report: the untainted node, the user with no email, the pool found by a label.
    for want in [
        format!(
            "node {} is labelled for pool persistent but its taints differ: the plan will add the taint wallaroo.ai/persistent=true:NoSchedule",
            nodes[1]
        ),
        format!("Keycloak user {carol} has no email"),
        format!("nodepool general: its node is the only one labelled team-pool={general_pool}"),
        "the value keycloakAdmin.password looks secret".to_string(),
    ] {
        assert!(printed.contains(&want), "{want}\nnot in:\n{printed}");
    }
    // Two pools share `disk`: neither is selected by it.
    assert!(
        spec.contains(&format!(
            "nodepool \"persistent\" {{\n  nodes = [\"{}\"]\n}}",
            nodes[1]
        )),
        "{spec}"
    );
    assert!(
        spec.contains(&format!(
            "nodepool \"pipelines-x86\" {{\n  nodes = [\"{}\", \"{}\"]\n}}",
            nodes[2], nodes[3]
        )),
        "{spec}"
    );
    // Values the spec language has no attribute for, kept in helm { values }.
    for want in [
        "analytics = {",
        "caBundle = \"-----BEGIN CERTIFICATE-----\\n",
        "password = var.helm_keycloak_admin_password",
        "operator = \"Exists\"",
    ] {
        assert!(spec.contains(want), "{want} not in:\n{spec}");
    }
    assert!(
        spec.contains(&format!(
            "import \"user[\\\"{bob}\\\"]\" {{\n  id = \"{bob_username}\"\n}}"
        )),
        "{spec}"
    );

    // The kit's Keycloak serves every test at once: users other tests made are in the realm
    // too. They are dropped from the spec here (a cluster of one install has none).
    let spec = drop_foreign_users(&spec, &ns);
    std::fs::write(&spec_path, &spec).unwrap();
    let vars = vec![
        (
            "WALLAROO_VAR_vendor_password".to_string(),
            env.vendor.password.clone(),
        ),
        ("WALLAROO_VAR_registry_password".to_string(), p.clone()),
        (
            "WALLAROO_VAR_edge_registry_password".to_string(),
            edge_secret.clone(),
        ),
        (
            "WALLAROO_VAR_helm_keycloak_admin_password".to_string(),
            env.keycloak_password.clone(),
        ),
    ];
    // Without the secrets, validate says which to set (the kit's environment sets the
    // registries' own).
    let bare = wallaroo(env, dir.path(), &["validate"], &[]);
    assert!(!bare.status.success());
    assert!(
        String::from_utf8_lossy(&bare.stderr)
            .contains("variable `edge_registry_password` has no value"),
        "{}",
        String::from_utf8_lossy(&bare.stderr)
    );

    let plan: Value =
        serde_json::from_str(&ok(&wallaroo(env, dir.path(), &["plan", "--json"], &vars))).unwrap();
    let changes = plan["changes"].as_array().unwrap();
    let changed: Vec<(String, Vec<String>)> = changes
        .iter()
        .filter(|c| c["action"] != "no-op" && c["action"] != "read")
        .map(|c| {
            (
                c["address"].as_str().unwrap().to_string(),
                c["attributes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| format!("{} = {}", a["path"].as_str().unwrap(), a["after"]))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        changed,
        vec![(
            format!("nodepool.persistent.node[\"{}\"]", nodes[1]),
            vec!["taints = [\"wallaroo.ai/persistent=true:NoSchedule\"]".to_string()]
        )],
        "only the taint the report named"
    );
    let adopted: Vec<&str> = changes
        .iter()
        .filter(|c| c["adopted"] == true)
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    for want in [
        "helm_release.wallaroo".to_string(),
        "nodepool.general".to_string(),
        format!("user[\"{alice}\"]"),
        format!("user[\"{bob}\"]"),
        format!("secret.{ns}/wallaroo-registry"),
    ] {
        assert!(
            adopted.contains(&want.as_str()),
            "{want} not adopted: {adopted:?}"
        );
    }

    // Apply: the taint, and state; no new helm revision.
    ok(&wallaroo(
        env,
        dir.path(),
        &["apply", "--auto-approve"],
        &vars,
    ));
    let revisions = api
        .get(&format!(
            "/api/v1/namespaces/{ns}/secrets?labelSelector=owner%3Dhelm"
        ))
        .unwrap()["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(revisions, 1, "no helm upgrade ran");
    let taints = api.get(&format!("/api/v1/nodes/{}", nodes[1])).unwrap()["spec"]["taints"].clone();
    assert_eq!(
        taints,
        json!([{"key": "wallaroo.ai/persistent", "value": "true", "effect": "NoSchedule"}])
    );
    let lock = std::fs::read_to_string(dir.path().join("wallaroo.lock")).unwrap();
    for secret in [
        edge_secret.as_str(),
        p.as_str(),
        env.keycloak_password.as_str(),
    ] {
        assert!(!lock.contains(secret));
    }
    let again = wallaroo(env, dir.path(), &["plan", "--detailed-exitcode"], &vars);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );

    // A user the spec adds without a password is refused at plan time, not half-made.
    let dave = format!("dave-{ns}@example.com");
    std::fs::write(&spec_path, format!("{spec}\nuser \"{dave}\" {{\n}}\n")).unwrap();
    let refused = wallaroo(env, dir.path(), &["plan"], &vars);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&format!(
            "user[\"{dave}\"] is not in Keycloak, and the spec gives no password"
        )),
        "{err}"
    );
}

/// The spec without the `user` and `import "user[...]"` blocks of users that are not this
/// test's (their emails do not name its namespace).
fn drop_foreign_users(spec: &str, ns: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in spec.split_inclusive('\n') {
        if (line.starts_with("user \"") || line.starts_with("import \"user[")) && !line.contains(ns)
        {
            skipping = true;
        }
        if !skipping {
            out.push_str(line);
        }
        if skipping && line.starts_with('}') {
            skipping = false;
        }
    }
    out
}

/// The sample chart as another vendor's chart would be: no `assays`, `nodeAffinityKey`,
/// `engineAffinity` or `nodeSelectors` in its values (its templates fix what they decided).
fn chart_without_wallaroos_keys(dir: &Path) -> PathBuf {
    let chart = common::sample_chart_copy(dir);
    let values = std::fs::read_to_string(chart.join("values.yaml")).unwrap();
    let mut kept = Vec::new();
    let mut skipping = false;
    for line in values.lines() {
        let top = !line.starts_with(' ') && !line.starts_with('#');
        if top {
            skipping = [
                "assays:",
                "nodeAffinityKey:",
                "engineAffinity:",
                "nodeSelectors:",
            ]
            .iter()
            .any(|k| line.starts_with(k));
        }
        if !skipping {
            kept.push(line);
        }
    }
    std::fs::write(chart.join("values.yaml"), kept.join("\n") + "\n").unwrap();
    let templates = chart.join("templates/deployments.yaml");
    let text = std::fs::read_to_string(&templates)
        .unwrap()
        .replace(
            "            - {name: ASSAYS, value: \"{{ $.Values.assays.enabled }}/{{ $.Values.assays.version }}\"}\n",
            "",
        )
        .replace("{{ .Values.nodeAffinityKey | quote }}", "\"wallaroo.ai/node-purpose\"")
        .replace("{{ .Values.engineAffinity | quote }}", "\"pipelines\"");
    assert!(!text.contains("assays") && !text.contains("engineAffinity"));
    std::fs::write(&templates, text).unwrap();
    let helpers = chart.join("templates/_helpers.tpl");
    let text = std::fs::read_to_string(&helpers).unwrap().replace(
        "{{- $sel := index .root.Values.nodeSelectors .service | default dict }}",
        "{{- $sel := dict }}",
    );
    assert!(!text.contains("nodeSelectors"));
    std::fs::write(&helpers, text).unwrap();
    chart
}

/// A guide-style install of a chart that lacks keys the spec always sets, whose pull secret
/// was made with `kubectl create secret docker-registry regcred`: init finds the registry's
/// login in it and keeps it under its own name; the plan sends none of the values this chart
/// does not read (and says which), so it changes nothing in the release, the nodes or the
/// users; apply makes no helm revision; the next plan is empty.
#[test]
fn a_foreign_chart_and_a_hand_made_pull_secret_are_adopted_with_no_change() {
    let env = shared();
    let ns = unique("adoptfor");
    let charts = tempfile::tempdir().unwrap();
    let chart_dir = chart_without_wallaroos_keys(charts.path());
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &ns, &chart_dir).unwrap();
    let nodes = env
        .add_nodes(&ns, 4, &json!({"e2e-init": ns}), &json!([]), &json!({}))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
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
        (&nodes[3], "pipelines", Some("pipelines")),
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
    // kubectl create secret docker-registry regcred --docker-server=... (Go's key order).
    let (u, p) = (&env.private.username, &env.private.password);
    let b64 = base64::engine::general_purpose::STANDARD;
    let auth = format!(
        r#"{{"auths":{{"{}":{{"username":"{u}","password":"{p}","auth":"{}"}}}}}}"#,
        env.private.address(),
        b64.encode(format!("{u}:{p}"))
    );
    api.create(
        &format!("/api/v1/namespaces/{ns}/secrets"),
        &json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                "metadata": {"name": "regcred", "namespace": ns},
                "data": {".dockerconfigjson": b64.encode(&auth)}}),
    )
    .unwrap();
    let mut copies = vec![(
        format!("{ns}/2025-1/wallaroo"),
        format!("{ns}/charts/wallaroo"),
    )];
    for image in &preset.images {
        copies.push((
            format!("{ns}/{}", image.name),
            format!("{ns}/{}", image.name),
        ));
    }
    common::skopeo_mirror(env, &copies, VERSION);
    let hand = dir.path().join("by-hand");
    std::fs::create_dir_all(&hand).unwrap();
    std::fs::write(
        hand.join("image-values.yaml"),
        format!(
            "imageRegistry: {}/{ns}\nimagePullSecrets:\n  - name: regcred\n",
            env.private.address()
        ),
    )
    .unwrap();
    let ca = env.ca_file.display().to_string();
    let private = env.private.address();
    let helm = |args: &[&str]| {
        let out = Command::new(&env.helm)
            .args(args)
            .env("HELM_REGISTRY_CONFIG", hand.join("registry.json"))
            .arg("--kubeconfig")
            .arg(&env.admin_kubeconfig)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "helm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    helm(&[
        "registry",
        "login",
        &private,
        "--username",
        u,
        "--password",
        p,
        "--ca-file",
        &ca,
    ]);
    let hand_dir = hand.display().to_string();
    helm(&[
        "pull",
        &format!("oci://{private}/{ns}/charts/wallaroo"),
        "--version",
        VERSION,
        "--destination",
        &hand_dir,
        "--ca-file",
        &ca,
    ]);
    let keycloak_admin = format!("keycloakAdmin.password={}", env.keycloak_password);
    helm(&[
        "install",
        "wallaroo",
        &hand
            .join(format!("wallaroo-{VERSION}.tgz"))
            .display()
            .to_string(),
        "--namespace",
        &ns,
        "--values",
        &hand.join("image-values.yaml").display().to_string(),
        "--set",
        "domainSuffix=foreign.example.com",
        "--set",
        &keycloak_admin,
    ]);

    let out = wallaroo(
        env,
        dir.path(),
        &[
            "init",
            "--from-cluster",
            "--namespace",
            &ns,
            "--nodes",
            &format!("e2e-init={ns}"),
            "--keycloak-url",
            &env.keycloak_url,
            "--vendor-registry",
            &env.vendor.address(),
            "--vendor-username",
            &env.vendor.username,
            "--vendor-ca-file",
            &ca,
            "--registry-ca-file",
            &ca,
        ],
        &[],
    );
    let printed = format!("{}{}", ok(&out), String::from_utf8_lossy(&out.stderr));
    assert!(
        printed.contains(&format!(
            "the private registry's login ({u}) comes from the pull secret `regcred` in {ns}, which the release names: kept under its name (`pull_secret`)"
        )),
        "{printed}"
    );
    let spec_path = dir.path().join("wallaroo.hcl");
    let spec = std::fs::read_to_string(&spec_path).unwrap();
    assert!(spec.contains("pull_secret = \"regcred\""), "{spec}");
    assert!(
        spec.lines()
            .any(|l| l.trim().starts_with("username") && l.ends_with(&format!("\"{u}\""))),
        "{spec}"
    );
    assert!(
        !printed.contains("the plan will add the value"),
        "{printed}"
    );
    assert!(!spec.contains(p.as_str()), "no password in the spec");
    // This vendor publishes under its own path (the cluster cannot know it).
    assert!(spec.contains("source \"wallaroo\" {\n"), "{spec}");
    let spec = drop_foreign_users(&spec, &ns).replace(
        "source \"wallaroo\" {\n",
        &format!("source \"wallaroo\" {{\n  path = \"{ns}\"\n"),
    );
    std::fs::write(&spec_path, &spec).unwrap();
    let vars = vec![
        (
            "WALLAROO_VAR_vendor_password".to_string(),
            env.vendor.password.clone(),
        ),
        ("WALLAROO_VAR_registry_password".to_string(), p.clone()),
        (
            "WALLAROO_VAR_helm_keycloak_admin_password".to_string(),
            env.keycloak_password.clone(),
        ),
    ];
    let planned = wallaroo(env, dir.path(), &["plan", "--json"], &vars);
    let plan: Value = serde_json::from_str(&ok(&planned)).unwrap();
    let changed: Vec<String> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] != "no-op" && c["action"] != "read")
        .map(|c| c["address"].as_str().unwrap().to_string())
        .collect();
    assert!(
        changed.is_empty(),
        "nothing to change: {changed:?}\n{plan:#}"
    );
    let warnings = plan["warnings"].to_string();
    assert!(
        warnings.contains("this chart does not read")
            && warnings.contains("assays (assays { version })")
            && warnings.contains("engineAffinity (scheduling { engine_affinity })"),
        "{warnings}"
    );
    assert!(
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["address"] == format!("secret.{ns}/regcred") && c["adopted"] == true),
        "the hand-made pull secret is adopted under its name"
    );
    ok(&wallaroo(
        env,
        dir.path(),
        &["apply", "--auto-approve"],
        &vars,
    ));
    let revisions = api
        .get(&format!(
            "/api/v1/namespaces/{ns}/secrets?labelSelector=owner%3Dhelm"
        ))
        .unwrap()["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(revisions, 1, "no helm upgrade ran");
    assert!(
        api.get(&format!(
            "/api/v1/namespaces/{ns}/secrets/wallaroo-registry"
        ))
        .is_err(),
        "no second pull secret"
    );
    let again = wallaroo(env, dir.path(), &["plan", "--detailed-exitcode"], &vars);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&again.stdout),
        String::from_utf8_lossy(&again.stderr)
    );
    for node in &nodes {
        let _ = api.delete(&format!("/api/v1/nodes/{node}"));
    }
}
