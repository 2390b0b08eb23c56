//! Smoke tests of the environment, each against the real program.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use wallaroo_testenv::{Env, https_client, shared, unique};

async fn client(kubeconfig: &std::path::Path) -> kube::Client {
    wallaroo_testenv::install_crypto_provider();
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The blocking setup calls, off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

async fn nodes(env: &'static Env, prefix: &str, n: usize) -> Vec<String> {
    let prefix = prefix.to_string();
    blocking(move || {
        env.add_nodes(
            &prefix,
            n,
            &json!({}),
            &json!([]),
            &json!({"nvidia.com/gpu": "1"}),
        )
        .unwrap()
    })
    .await
}

#[tokio::test]
async fn least_privilege_user_lists_and_labels_kwok_nodes_but_cannot_delete_them() {
    let env = blocking(shared).await;
    let prefix = unique("smoke");
    let names = nodes(env, &prefix, 2).await;
    let api: Api<Node> = Api::all(client(&env.kubeconfig).await);
    // kwok turns them Ready.
    let mut ready = false;
    for _ in 0..50 {
        let node = api.get(&names[0]).await.unwrap();
        let conditions = node.status.and_then(|s| s.conditions).unwrap_or_default();
        if conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ready, "kwok made the node Ready");
    let listed = api.list(&ListParams::default()).await.unwrap();
    assert!(names.iter().all(|n| {
        listed
            .items
            .iter()
            .any(|i| i.metadata.name.as_deref() == Some(n))
    }));
    let gpu = listed
        .items
        .iter()
        .find(|i| i.metadata.name.as_deref() == Some(&names[0]))
        .unwrap();
    assert_eq!(
        gpu.status.as_ref().unwrap().allocatable.as_ref().unwrap()["nvidia.com/gpu"].0,
        "1"
    );

    let patched = api
        .patch(
            &names[0],
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"wallaroo.ai/node-purpose": "general"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.metadata.labels.unwrap()["wallaroo.ai/node-purpose"],
        "general"
    );

    let err = api
        .delete(&names[1], &Default::default())
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(status) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403, got {other:?}"),
    }
}

#[test]
fn registries_take_the_right_password_over_tls_with_the_ca_only() {
    let env = shared();
    let client = https_client(&env.ca_file).unwrap();
    for reg in [&env.vendor, &env.private] {
        let url = format!("https://{}/v2/", reg.address());
        let wrong = client
            .get(&url)
            .basic_auth(&reg.username, Some("wrong"))
            .send()
            .unwrap();
        assert_eq!(wrong.status(), 401);
        let right = client
            .get(&url)
            .basic_auth(&reg.username, Some(&reg.password))
            .send()
            .unwrap();
        assert_eq!(right.status(), 200);
        let plain = reqwest::blocking::Client::builder().build().unwrap();
        let err = plain
            .get(&url)
            .basic_auth(&reg.username, Some(&reg.password))
            .send()
            .unwrap_err();
        assert!(
            format!("{err:?}").contains("UnknownIssuer") || err.is_connect(),
            "{err:?}"
        );
    }
}

#[test]
fn keycloak_creates_and_lists_a_user_under_auth() {
    let env = shared();
    let client = reqwest::blocking::Client::new();
    let token: serde_json::Value = client
        .post(format!(
            "{}/realms/master/protocol/openid-connect/token",
            env.keycloak_url
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", "admin"),
            ("password", &env.keycloak_password),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let token = token["access_token"].as_str().expect("an admin token");
    let email = format!("{}@example.com", unique("user"));
    let created = client
        .post(format!("{}/admin/realms/master/users", env.keycloak_url))
        .bearer_auth(token)
        .json(&json!({"username": email, "email": email, "enabled": true,
                      "credentials": [{"type": "password", "value": "s3cret-Pass", "temporary": true}]}))
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    let found: Vec<serde_json::Value> = client
        .get(format!("{}/admin/realms/master/users", env.keycloak_url))
        .query(&[("email", email.as_str()), ("exact", "true")])
        .bearer_auth(token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["requiredActions"], json!(["UPDATE_PASSWORD"]));
}

#[tokio::test]
async fn helm_installs_the_sample_chart_from_the_vendor_registry_and_waits() {
    let env = blocking(shared).await;
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    let chart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/charts/wallaroo-sample");
    let seeded = preset.clone();
    blocking(move || {
        wallaroo_testenv::seed::seed(env, &seeded, &env.vendor, "wallaroo", &chart).unwrap()
    })
    .await;
    let prefix = unique("helm");
    let pool = nodes(env, &prefix, 2).await;
    // The engine Deployment needs a pipelines node.
    let admin: Api<Node> = Api::all(client(&env.admin_kubeconfig).await);
    admin
        .patch(
            &pool[1],
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"wallaroo.ai/node-purpose": "pipelines"}}}),
            ),
        )
        .await
        .unwrap();

    let ns = unique("wallaroo");
    let helm_home = tempfile_dir(&ns);
    let helm = |args: &[&str]| {
        let mut cmd = Command::new(&env.helm);
        cmd.args(args)
            .env("KUBECONFIG", &env.kubeconfig)
            .env("HELM_REGISTRY_CONFIG", helm_home.join("registry.json"))
            .env("HELM_CACHE_HOME", helm_home.join("cache"))
            .env("HELM_CONFIG_HOME", helm_home.join("config"));
        cmd
    };
    let ca = env.ca_file.display().to_string();
    let mut login = helm(&[
        "registry",
        "login",
        &env.vendor.address(),
        "--username",
        &env.vendor.username,
        "--password-stdin",
        "--ca-file",
        &ca,
    ]);
    run_with_stdin(&mut login, &env.vendor.password);
    let out = helm(&[
        "install",
        "wallaroo",
        &format!("oci://{}/wallaroo/2025-1/wallaroo", env.vendor.address()),
        "--version",
        preset.version,
        "--namespace",
        &ns,
        "--create-namespace",
        "--wait",
        "--timeout",
        "120s",
        "--ca-file",
        &ca,
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "helm install failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let services: Api<Service> = Api::namespaced(client(&env.kubeconfig).await, &ns);
    let lb = services.get("api-lb-ext").await.unwrap();
    let ip = lb.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0]
        .ip
        .clone()
        .unwrap();
    assert!(ip.starts_with("172.18.255."), "{ip}");
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_with_stdin(cmd: &mut Command, input: &str) {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Parses `Bearer realm="...",service="...",scope="..."`.
fn challenge(header: &str) -> std::collections::BTreeMap<String, String> {
    header
        .trim_start_matches("Bearer ")
        .split("\",")
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim_matches('"').to_string()))
        .collect()
}

#[test]
fn the_token_registry_serves_a_pull_after_the_challenge() {
    let env = shared();
    let reg = &env.token;
    let client = https_client(&env.ca_file).unwrap();
    let base = format!("https://{}", reg.address());
    let repo = format!("wallaroo/{}", unique("hello"));

    let token = |scope: &str, password: &str| {
        let r = client.get(format!("{base}/v2/")).send().unwrap();
        assert_eq!(r.status(), 401);
        let c = challenge(r.headers()["www-authenticate"].to_str().unwrap());
        client
            .get(&c["realm"])
            .query(&[("service", c["service"].as_str()), ("scope", scope)])
            .basic_auth(&reg.username, Some(password))
            .send()
            .unwrap()
    };
    assert_eq!(
        token(&format!("repository:{repo}:pull"), "wrong").status(),
        401
    );
    let push: serde_json::Value = token(&format!("repository:{repo}:pull,push"), &reg.password)
        .json()
        .unwrap();
    let push = push["token"].as_str().unwrap().to_string();

    // Push one blob and a manifest with the push token.
    let (layer, diff_id) = wallaroo_testenv::seed::layer(7, 4096);
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}})).unwrap();
    for blob in [&layer, &config] {
        let start = client
            .post(format!("{base}/v2/{repo}/blobs/uploads/"))
            .bearer_auth(&push)
            .send()
            .unwrap();
        assert_eq!(start.status(), 202, "{:?}", start.text());
        let location = start.headers()["location"].to_str().unwrap().to_string();
        let url = if location.starts_with("http") {
            location
        } else {
            format!("{base}{location}")
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let put = client
            .put(format!(
                "{url}{sep}digest={}",
                wallaroo_testenv::seed::digest(blob)
            ))
            .bearer_auth(&push)
            .body(blob.clone())
            .send()
            .unwrap();
        assert_eq!(put.status(), 201);
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": wallaroo_testenv::seed::digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": wallaroo_testenv::seed::digest(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let put = client
        .put(format!("{base}/v2/{repo}/manifests/v1"))
        .bearer_auth(&push)
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .unwrap();
    assert_eq!(put.status(), 201);

    // A pull: challenge, then a pull-scoped token, then the manifest.
    let anonymous = client
        .get(format!("{base}/v2/{repo}/manifests/v1"))
        .send()
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let c = challenge(anonymous.headers()["www-authenticate"].to_str().unwrap());
    assert_eq!(c["scope"], format!("repository:{repo}:pull"));
    let pull: serde_json::Value = token(&c["scope"], &reg.password).json().unwrap();
    let got = client
        .get(format!("{base}/v2/{repo}/manifests/v1"))
        .bearer_auth(pull["token"].as_str().unwrap())
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(
        got.headers()["docker-content-digest"].to_str().unwrap(),
        wallaroo_testenv::seed::digest(&manifest)
    );
}

#[test]
fn toxiproxy_adds_latency_in_front_of_the_vendor_registry() {
    let env = shared();
    let client = https_client(&env.ca_file).unwrap();
    let via = format!(
        "https://{}:{}/v2/",
        wallaroo_testenv::env::VENDOR_HOST,
        env.proxies["vendor-registry"]
    );
    // The fastest of five requests: robust against a busy machine.
    let time = || {
        (0..5)
            .map(|_| {
                let t = std::time::Instant::now();
                let r = client
                    .get(&via)
                    .basic_auth(&env.vendor.username, Some(&env.vendor.password))
                    .send()
                    .unwrap();
                assert_eq!(r.status(), 200);
                t.elapsed()
            })
            .min()
            .unwrap()
    };
    let plain = time();
    let toxics = format!("{}/proxies/vendor-registry/toxics", env.toxiproxy_url);
    let http = reqwest::blocking::Client::new();
    let name = unique("latency");
    let r = http
        .post(&toxics)
        .json(&json!({"name": name, "type": "latency", "stream": "downstream", "attributes": {"latency": 50}}))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let slow = time();
    http.delete(format!("{toxics}/{name}")).send().unwrap();
    assert!(
        slow >= plain + Duration::from_millis(40),
        "plain {plain:?}, with 50 ms latency {slow:?}"
    );
}
