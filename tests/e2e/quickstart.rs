//! End to end, against the real control plane, registries, helm and Keycloak of the test
//! environment, as the least-privilege ServiceAccount: the quickstart applies, a second plan
//! is empty, one setting changes one key, a hand-edited taint shows as drift, a new user
//! can log in, and destroy leaves the cluster as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
mod common;

use wallaroo_testenv::{Env, shared, unique};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Case {
    env: &'static Env,
    dir: tempfile::TempDir,
    ns: String,
    nodes: Vec<String>,
    users: Vec<(String, bool)>,
    /// `import` blocks: (email, Keycloak username).
    imports: Vec<(String, String)>,
    ingress: &'static str,
}

impl Case {
    fn spec(&self) -> String {
        let quickstart = std::fs::read_to_string(repo().join("examples/quickstart.hcl")).unwrap();
        let mut spec = quickstart
            .replace(
                "namespace               = \"wallaroo\"",
                &format!("namespace               = \"{}\"", self.ns),
            )
            .replace(
                "  namespace = \"wallaroo\"",
                &format!("  namespace = \"{}\"", self.ns),
            )
            .replace(
                "ingress_mode = \"internal\"",
                &format!("ingress_mode = \"{}\"", self.ingress),
            );
        for (i, node) in self.nodes.iter().enumerate() {
            spec = spec.replace(&format!("\"node-{}\"", i + 1), &format!("\"{node}\""));
        }
        let start = spec.find("user \"admin@example.com\"").unwrap();
        spec.truncate(start);
        spec.push_str("helm {\n  timeout = \"2m\"\n}\n\n");
        // An extra image that the release lists too: mirrored once.
        spec.push_str(&format!(
            "images {{\n  extra = [\"{}/wallaroo/keycloak:2025.1.0-6290\"]\n}}\n\n",
            self.env.vendor.address(),
        ));
        for (email, username) in &self.imports {
            spec.push_str(&format!(
                "import \"user[\\\"{email}\\\"]\" {{\n  id = \"{username}\"\n}}\n\n"
            ));
        }
        for (email, temporary) in &self.users {
            spec.push_str(&format!(
                "user \"{email}\" {{\n  role      = \"admin\"\n  password  = var.admin_password\n  temporary = {temporary}\n}}\n\n"
            ));
        }
        spec
    }

    /// The real helm behind a script that logs each call to `helm-calls.log` first.
    fn logged_helm(&self) -> PathBuf {
        let script = self.dir.path().join("helm-logged");
        if !script.exists() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\necho \"$*\" >> \"$(dirname \"$0\")/helm-calls.log\"\nexec '{}' \"$@\"\n",
                    self.env.helm.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        script
    }

    /// The helm calls logged since the last time this was asked.
    fn helm_calls(&self) -> Vec<String> {
        let log = self.dir.path().join("helm-calls.log");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        text.lines().map(String::from).collect()
    }

    /// `wallaroo ARGS` in the case's directory, its spec written first.
    fn command(&self, args: &[&str]) -> Command {
        std::fs::write(self.dir.path().join("wallaroo.hcl"), self.spec()).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wallaroo"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .envs(self.env.exports())
            .env("HELM", self.logged_helm())
            .env("WALLAROO_VAR_admin_password", "Adm1n-e2e-pass")
            .env("NO_COLOR", "1");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs wallaroo with its profile on (`WALLAROO_PROFILE`): the output, and the phases
    /// by name.
    fn profiled(&self, args: &[&str]) -> (Output, BTreeMap<String, Value>) {
        let profile = self.dir.path().join("profile.json");
        let out = self
            .command(args)
            .env("WALLAROO_PROFILE", &profile)
            .output()
            .unwrap();
        let text = std::fs::read_to_string(&profile).expect("the profile is written");
        for secret in ["Adm1n-e2e-pass", self.env.vendor.password.as_str()] {
            assert!(!text.contains(secret), "a secret reached the profile");
        }
        let json: Value = serde_json::from_str(&text).unwrap();
        assert!(json["wall_ms"].as_f64().unwrap() > 0.0);
        assert!(json["peak_rss_kb"].as_u64().unwrap() > 0);
        let phases = json["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap().to_string(), p.clone()))
            .collect();
        (out, phases)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "wallaroo {} failed:\n{text}",
            args.join(" ")
        );
        text
    }

    fn plan_json(&self) -> Value {
        let out = self.run(&["plan", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Labels and taints of the case's nodes (but those the platform itself sets, under
    /// `*kubernetes.io/`, which come and go as nodes settle), namespaces, and the secrets of
    /// the case's namespace.
    fn cluster_listing(&self) -> Value {
        let ours = |k: &str| !k.contains("kubernetes.io/");
        let api = self.env.api().unwrap();
        let nodes: Vec<Value> = self
            .nodes
            .iter()
            .map(|n| {
                let node = api.get(&format!("/api/v1/nodes/{n}")).unwrap();
                let labels: serde_json::Map<String, Value> = node["metadata"]["labels"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| ours(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let taints: Vec<Value> = node["spec"]["taints"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|t| ours(t["key"].as_str().unwrap_or_default()))
                    .cloned()
                    .collect();
                json!({"labels": labels, "taints": taints})
            })
            .collect();
        let namespaces: Vec<Value> = api.get("/api/v1/namespaces").unwrap()["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["status"]["phase"] == "Active")
            .map(|n| n["metadata"]["name"].clone())
            .collect();
        let secrets: Vec<Value> = api
            .get(&format!("/api/v1/namespaces/{}/secrets", self.ns))
            .unwrap()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["metadata"]["name"].clone())
            .collect();
        json!({"nodes": nodes, "namespaces": namespaces, "secrets": secrets})
    }
}

#[test]
fn quickstart_applies_converges_detects_drift_and_destroys_cleanly() {
    let env = shared();
    common::seed_tiny(env);
    let id = unique("e2e");
    let nodes = env
        .add_nodes(
            &id,
            4,
            &json!({"team": "ml"}),
            &json!([{"key": "dedicated", "value": "x", "effect": "PreferNoSchedule"}]),
            &json!({}),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tls")).unwrap();
    for f in ["tls/wallaroo.crt", "tls/wallaroo.key"] {
        std::fs::copy(repo().join("examples").join(f), dir.path().join(f)).unwrap();
    }
    let admin = format!("{id}-admin@example.com");
    let mut case = Case {
        env,
        dir,
        ns: id.clone(),
        nodes,
        users: vec![(admin.clone(), true)],
        imports: Vec::new(),
        ingress: "internal",
    };
    let before = case.cluster_listing();

    // Preflight passes as the spec stands, and lists a refused registry password.
    let preflight = case.ok(&["preflight"]);
    assert!(
        preflight.contains("private registry") && preflight.contains("Preflight passed."),
        "{preflight}"
    );
    let refused = Command::new(env!("CARGO_BIN_EXE_wallaroo"))
        .arg("plan")
        .current_dir(case.dir.path())
        .envs(env.exports())
        .env("WALLAROO_VAR_admin_password", "Adm1n-e2e-pass")
        .env("WALLAROO_VAR_registry_password", "wrong")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr.contains("FAIL private registry") && stderr.contains("credentials refused (401)"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong"), "the password is not echoed");

    let applied = case.ok(&["apply", "--auto-approve"]);
    assert!(
        applied.contains("Apply complete! Resources: 9 added, 4 changed, 0 destroyed."),
        "{applied}"
    );
    let mirrored = wallaroo_testenv::https_client(&env.ca_file)
        .unwrap()
        .head(format!(
            "https://{}/v2/{}/keycloak/manifests/2025.1.0-6290",
            env.private.address(),
            case.ns
        ))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .basic_auth(&env.private.username, Some(&env.private.password))
        .send()
        .unwrap();
    assert_eq!(
        mirrored.status(),
        200,
        "the extra image is in the private registry"
    );
    let applied = case.helm_calls();
    assert!(
        applied.iter().any(|c| c.starts_with("template ")),
        "the apply rendered the chart: {applied:?}"
    );
    let out = case.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a second plan is empty:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("No changes."));
    let planned = case.helm_calls();
    assert!(
        !planned.iter().any(|c| c.starts_with("template ")),
        "a no-op plan renders nothing: the chart, values and helm did not change: {planned:?}"
    );
    // Where a no-op plan's time goes: the chart and the pins are kept from the first run, so
    // discovery, pins and referrers ask the vendor nothing; the checks of the release run.
    let (out, phases) = case.profiled(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0));
    let requests = |name: &str| phases.get(name).map(|p| p["requests"].as_u64().unwrap());
    assert_eq!(requests("discovery and render"), Some(0), "{phases:?}");
    assert_eq!(requests("pins").unwrap_or(0), 0, "{phases:?}");
    assert_eq!(requests("signatures and referrers").unwrap_or(0), 0);
    assert!(
        requests("refresh").unwrap() > 0,
        "the live reads are counted"
    );
    for phase in ["spec load", "preflight", "air-gap check", "refresh"] {
        assert!(phases.contains_key(phase), "{phase} in {phases:?}");
    }
    // A run that leaves the release alone needs neither its air-gap render nor the vendor's
    // preflights.
    let (out, phases) = case.profiled(&["plan", "--detailed-exitcode", "--target", "image"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(phases.contains_key("refresh"), "{phases:?}");
    assert!(!phases.contains_key("air-gap check"), "{phases:?}");
    assert!(!phases.contains_key("vendor preflights"), "{phases:?}");
    let ip = case.ok(&["output", "api_lb_ip"]);
    assert!(ip.trim().starts_with("172.18.255."), "{ip}");
    let lock = std::fs::read_to_string(case.dir.path().join("wallaroo.lock")).unwrap();
    for secret in [
        "Adm1n-e2e-pass",
        env.vendor.password.as_str(),
        env.private.password.as_str(),
    ] {
        assert!(!lock.contains(secret), "a secret reached the lockfile");
    }

    // One setting, one key.
    case.ingress = "external";
    let plan = case.plan_json();
    let changed: Vec<&Value> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] != "no-op" && c["action"] != "read")
        .collect();
    assert_eq!(changed.len(), 1, "{changed:#?}");
    assert_eq!(changed[0]["address"], "helm_release.wallaroo");
    assert_eq!(changed[0]["action"], "update");
    let paths: Vec<&str> = changed[0]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["values.ingress_mode"]);

    // A saved plan applies exactly, and is refused once the cluster moved under it.
    case.ok(&["plan", "--out", "saved.json"]);
    let general = case.nodes[0].clone();
    env.api()
        .unwrap()
        .merge_patch(
            &format!("/api/v1/nodes/{general}"),
            &json!({"metadata": {"labels": {"wallaroo.ai/node-purpose": "edited"}}}),
        )
        .unwrap();
    let out = case.run(&["apply", "saved.json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("the saved plan is stale") && stderr.contains("live cluster"),
        "{stderr}"
    );
    case.ok(&["plan", "--out", "saved.json"]);
    let applied = case.ok(&["apply", "saved.json"]);
    assert!(
        applied.contains("Apply complete! Resources: 0 added, 2 changed, 0 destroyed."),
        "{applied}"
    );
    case.ingress = "internal";

    // A taint removed by hand is drift, and apply puts it back.
    let pipelines = case.nodes[3].clone();
    let api = env.api().unwrap();
    api.merge_patch(&format!("/api/v1/nodes/{pipelines}"), &json!({"spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "PreferNoSchedule"}]}}))
        .unwrap();
    let plan = case.plan_json();
    let drift = plan["drift"].as_array().unwrap();
    assert_eq!(drift.len(), 1, "{drift:#?}");
    assert_eq!(
        drift[0]["address"],
        format!("nodepool.pipelines-x86.node[\"{pipelines}\"]")
    );
    assert_eq!(drift[0]["attributes"][0]["path"], "taints");
    assert_eq!(drift[0]["attributes"][0]["after"], json!([]));
    let out = case.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2));
    case.ok(&["apply", "--auto-approve"]);

    // The other drift a cron job must see, each with exit 2 and named in the JSON: an image
    // deleted from the private registry, helm values changed by someone running helm
    // directly, a user deleted in Keycloak.
    let http = wallaroo_testenv::https_client(&env.ca_file).unwrap();
    let manifest_url = format!(
        "https://{}/v2/{}/keycloak/manifests/2025.1.0-6290",
        env.private.address(),
        case.ns
    );
    let digest = http
        .head(&manifest_url)
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .basic_auth(&env.private.username, Some(&env.private.password))
        .send()
        .unwrap()
        .headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string();
    let deleted = http
        .delete(manifest_url.replace("2025.1.0-6290", &digest))
        .basic_auth(&env.private.username, Some(&env.private.password))
        .send()
        .unwrap();
    assert_eq!(deleted.status(), 202);
    let helm = Command::new(&env.helm)
        .args(["upgrade", "wallaroo"])
        .arg(repo().join("tests/charts/wallaroo-sample"))
        .args([
            "--namespace",
            &case.ns,
            "--reuse-values",
            "--set",
            "ingress_mode=none",
        ])
        .arg("--kubeconfig")
        .arg(&env.admin_kubeconfig)
        .output()
        .unwrap();
    assert!(
        helm.status.success(),
        "{}",
        String::from_utf8_lossy(&helm.stderr)
    );
    let kc = reqwest::blocking::Client::new();
    let bearer = common::keycloak_admin_token(&kc, env);
    let users: Value = kc
        .get(format!("{}/admin/realms/master/users", env.keycloak_url))
        .query(&[("email", admin.as_str()), ("exact", "true")])
        .bearer_auth(&bearer)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let user_id = users[0]["id"].as_str().unwrap();
    let gone = kc
        .delete(format!(
            "{}/admin/realms/master/users/{user_id}",
            env.keycloak_url
        ))
        .bearer_auth(&bearer)
        .send()
        .unwrap();
    assert!(gone.status().is_success(), "{}", gone.status());

    let out = case.run(&["plan", "--detailed-exitcode", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let drift: Vec<(String, bool, Vec<String>)> = plan["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["address"].as_str().unwrap().to_string(),
                d["deleted"].as_bool().unwrap_or(false),
                d["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| a["path"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    let find = |addr: &str| {
        drift
            .iter()
            .find(|d| d.0 == addr)
            .unwrap_or_else(|| panic!("{addr} not in the drift: {drift:#?}"))
            .clone()
    };
    assert!(
        find(&format!("image[\"{}/keycloak:2025.1.0-6290\"]", case.ns)).1,
        "image deleted"
    );
    assert_eq!(
        find("helm_release.wallaroo").2,
        ["values.ingress_mode"],
        "helm run by hand"
    );
    assert!(find(&format!("user[\"{admin}\"]")).1, "user deleted");
    case.ok(&["apply", "--auto-approve"]);
    let out = case.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "apply put everything back:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A new user logs in through Keycloak's token endpoint.
    let analyst = format!("{id}-analyst@example.com");
    case.users.push((analyst.clone(), false));
    case.ok(&["apply", "--auto-approve"]);
    let token = reqwest::blocking::Client::new()
        .post(format!(
            "{}/realms/master/protocol/openid-connect/token",
            env.keycloak_url
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", analyst.as_str()),
            ("password", "Adm1n-e2e-pass"),
        ])
        .send()
        .unwrap();
    assert_eq!(token.status(), 200, "{}", token.text().unwrap_or_default());

    // A user made in the console under a username (no email): an import block takes it over
    // as user["...-ops@example.com"]; apply gives it the email, role and password.
    let admin_token = || common::keycloak_admin_token(&kc, env);
    let username = format!("{id}-console-ops");
    let made = kc
        .post(format!("{}/admin/realms/master/users", env.keycloak_url))
        .bearer_auth(admin_token())
        .json(&json!({"username": username, "enabled": true}))
        .send()
        .unwrap();
    assert_eq!(made.status(), 201);
    let ops = format!("{id}-ops@example.com");
    case.users.push((ops.clone(), false));
    case.imports.push((ops.clone(), username.clone()));
    let plan = case.plan_json();
    let user_change = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == format!("user[\"{ops}\"]"))
        .unwrap()
        .clone();
    assert_eq!(user_change["action"], "update", "{user_change:#}");
    assert_eq!(user_change["adopted"], true);
    case.ok(&["apply", "--auto-approve"]);
    let found: Value = kc
        .get(format!("{}/admin/realms/master/users", env.keycloak_url))
        .query(&[("username", username.as_str()), ("exact", "true")])
        .bearer_auth(admin_token())
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        found.as_array().unwrap().len(),
        1,
        "the same user, not a new one"
    );
    assert_eq!(found[0]["email"], ops.as_str());
    let login = kc
        .post(format!(
            "{}/realms/master/protocol/openid-connect/token",
            env.keycloak_url
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", username.as_str()),
            ("password", "Adm1n-e2e-pass"),
        ])
        .send()
        .unwrap();
    assert_eq!(
        login.status(),
        200,
        "the imported user has the spec's password"
    );
    let out = case.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Destroy leaves labels, taints, namespaces and secrets as they were.
    let destroyed = case.ok(&["destroy", "--auto-approve", "--include-images"]);
    assert!(destroyed.contains("Destroy complete!"), "{destroyed}");
    let gone = wallaroo_testenv::https_client(&env.ca_file)
        .unwrap()
        .head(format!(
            "https://{}/v2/{}/keycloak/manifests/2025.1.0-6290",
            env.private.address(),
            case.ns
        ))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .basic_auth(&env.private.username, Some(&env.private.password))
        .send()
        .unwrap();
    assert_eq!(
        gone.status(),
        404,
        "destroy --include-images deleted the mirrored image"
    );
    assert_eq!(case.cluster_listing(), before);
    assert!(case.ok(&["state", "list"]).trim().is_empty());
}
