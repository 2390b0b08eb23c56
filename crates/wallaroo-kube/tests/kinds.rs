//! Cluster kinds against the real API server as the least-privilege ServiceAccount:
//! nodepools chosen by label selector (every matched node gets the labels and taints, a node
//! that joins later shows as a change, destroy takes back only what wallaroo set), and a
//! destroy that keeps a namespace holding data unless told otherwise.

use std::time::Duration;

use serde_json::json;
use wallaroo_engine::*;
use wallaroo_state::StateStore;
use wallaroo_testenv::{Env, shared, unique};

/// The cluster configuration the tests share; each test changes what it needs.
fn config(env: &Env) -> wallaroo_kube::ClusterConfig {
    wallaroo_kube::ClusterConfig {
        helm: env.helm.clone(),
        kubeconfig: Some(env.kubeconfig.clone()),
        chart_registry: None,
        ca_file: None,
        keycloak_url: env.keycloak_url.clone(),
        namespace: "unused".into(),
        output_timeout: Duration::from_secs(5),
        delete_data: false,
        kots_binary: "kubectl-kots".into(),
        ignore_drift: Vec::new(),
        before_upgrade: Default::default(),
    }
}

async fn engine(env: &Env) -> Engine {
    engine_with(env, config(env)).await
}

/// An engine with every cluster kind, talking as the least-privilege ServiceAccount.
async fn engine_with(env: &Env, config: wallaroo_kube::ClusterConfig) -> Engine {
    wallaroo_testenv::install_crypto_provider();
    let kc = kube::config::Kubeconfig::read_from(&env.kubeconfig).unwrap();
    let client_config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(client_config).unwrap();
    let mut kinds = KindRegistry::new();
    wallaroo_kube::register_with(&mut kinds, client, config);
    Engine::new(kinds)
}

/// Plans against the lockfile in `store`, applies, asserts every step succeeded, and
/// returns the plan that was applied.
async fn converge(
    engine: &Engine,
    desired: &DesiredSet,
    store: &StateStore,
    mode: PlanMode,
) -> Plan {
    let state = store.load().unwrap();
    let opts = PlanOptions {
        mode,
        ..PlanOptions::default()
    };
    let plan = engine.plan(desired, state.as_ref(), &opts).await.unwrap();
    let report = engine
        .apply(&plan, desired, store, &ApplyOptions::default(), &Silent)
        .await
        .unwrap();
    assert!(report.success(), "{report:?}");
    plan
}

/// `nodepool.POOL` over the nodes labelled `pool=POOL`, as the model builds it: the purpose
/// label and its taint on each, and no node differing from what was applied.
fn selector_pool(pool: &str, purpose: &str) -> DesiredSet {
    let mut desired = DesiredSet::default();
    desired.insert(DesiredResource::new(
        Address::named("nodepool", pool),
        "nodepool_selector",
        Attrs::from([
            ("selector".into(), json!({"pool": pool})),
            (
                "labels".into(),
                json!({"wallaroo.ai/node-purpose": purpose}),
            ),
            (
                "taints".into(),
                json!([format!("wallaroo.ai/{purpose}=true:NoSchedule")]),
            ),
            ("node_drift".into(), json!({})),
        ]),
    ));
    desired
}

/// Held by every test of this binary that adds nodes: a DaemonSet's status counts every
/// schedulable node, so nodes joining while another test reads it make that test's counts
/// disagree.
static NODES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn labels_and_taints(
    env: &'static Env,
    node: &str,
) -> (serde_json::Value, serde_json::Value) {
    let path = format!("/api/v1/nodes/{node}");
    let n = tokio::task::spawn_blocking(move || env.api().unwrap().get(&path).unwrap())
        .await
        .unwrap();
    (n["metadata"]["labels"].clone(), n["spec"]["taints"].clone())
}

#[tokio::test]
async fn a_selector_pool_labels_every_matched_node_and_only_takes_back_its_own() {
    let _nodes = NODES.lock().await;
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    let pool = unique("pool");
    let p = pool.clone();
    let nodes = tokio::task::spawn_blocking(move || {
        env.add_nodes(
            &p,
            2,
            &json!({"pool": p, "team": "ml"}),
            &json!([{"key": "keep", "value": "me", "effect": "NoExecute"}]),
            &json!({}),
        )
        .unwrap()
    })
    .await
    .unwrap();
    let engine = engine(env).await;
    let desired = selector_pool(&pool, "pipelines");
    let dir = tempfile_dir(&pool);
    let store = StateStore::new(dir.join("wallaroo.lock"));
    let plan = converge(&engine, &desired, &store, PlanMode::Apply).await;
    assert_eq!(
        plan.changes[0].action,
        Action::Update,
        "existing nodes are changed, not created"
    );
    for n in &nodes {
        let (labels, taints) = labels_and_taints(env, n).await;
        assert_eq!(labels["wallaroo.ai/node-purpose"], "pipelines");
        assert_eq!(labels["team"], "ml", "other labels stay");
        let keys: Vec<&str> = taints
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["key"].as_str().unwrap())
            .collect();
        assert!(
            keys.contains(&"keep") && keys.contains(&"wallaroo.ai/pipelines"),
            "{keys:?}"
        );
    }

    // A third node joins the pool unlabelled: the next plan wants to change the pool.
    let p = pool.clone();
    let joined = tokio::task::spawn_blocking(move || {
        env.add_nodes(
            &format!("{p}-late"),
            1,
            &json!({"pool": p}),
            &json!([]),
            &json!({}),
        )
        .unwrap()
    })
    .await
    .unwrap();
    let plan = converge(&engine, &desired, &store, PlanMode::Apply).await;
    assert_eq!(plan.changes[0].action, Action::Update);
    assert_eq!(
        labels_and_taints(env, &joined[0]).await.0["wallaroo.ai/node-purpose"],
        "pipelines"
    );

    // Destroy removes wallaroo's label and taint, and nothing else.
    converge(&engine, &desired, &store, PlanMode::Destroy).await;
    for n in &nodes {
        let (labels, taints) = labels_and_taints(env, n).await;
        assert!(labels.get("wallaroo.ai/node-purpose").is_none());
        assert_eq!(labels["team"], "ml");
        let keys: Vec<&str> = taints
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["key"].as_str().unwrap())
            .collect();
        assert!(
            keys.contains(&"keep") && !keys.contains(&"wallaroo.ai/pipelines"),
            "{keys:?}"
        );
    }
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn namespace_phase(env: &'static Env, ns: &str) -> Option<String> {
    let path = format!("/api/v1/namespaces/{ns}");
    tokio::task::spawn_blocking(move || {
        env.api()
            .unwrap()
            .get(&path)
            .ok()
            .and_then(|n| n["status"]["phase"].as_str().map(String::from))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn destroy_keeps_a_namespace_with_claims_unless_told_to_delete_data() {
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    for delete_data in [false, true] {
        let ns = unique("data");
        let engine = engine_with(
            env,
            wallaroo_kube::ClusterConfig {
                delete_data,
                ..config(env)
            },
        )
        .await;
        let mut desired = DesiredSet::default();
        desired.insert(DesiredResource::new(
            Address::named("namespace", &ns),
            "namespace",
            Attrs::from([("name".into(), json!(ns))]),
        ));
        let store = StateStore::new(tempfile_dir(&ns).join("wallaroo.lock"));
        converge(&engine, &desired, &store, PlanMode::Apply).await;
        let claim_ns = ns.clone();
        tokio::task::spawn_blocking(move || {
            env.api()
                .unwrap()
                .create(
                    &format!("/api/v1/namespaces/{claim_ns}/persistentvolumeclaims"),
                    &json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "minio-data"},
                            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
                )
                .unwrap()
        })
        .await
        .unwrap();
        converge(&engine, &desired, &store, PlanMode::Destroy).await;
        assert!(store.load().unwrap().unwrap().resources.is_empty());
        let phase = namespace_phase(env, &ns).await;
        if delete_data {
            assert_ne!(
                phase.as_deref(),
                Some("Active"),
                "--delete-data deletes the namespace"
            );
        } else {
            assert_eq!(
                phase.as_deref(),
                Some("Active"),
                "the namespace with its claim is kept"
            );
        }
    }
}

/// Logs helm into a registry in `home` and pulls a chart archive there (helm 3.16's
/// upgrade ignores --ca-file for OCI, so the test upgrades from the archive, as the kind does).
fn pull_chart(env: &Env, home: &std::path::Path, version: &str) -> std::path::PathBuf {
    use std::io::Write;
    let helm = |args: &[&str]| {
        let mut c = std::process::Command::new(&env.helm);
        c.args(args)
            .env("HELM_REGISTRY_CONFIG", home.join("registry.json"))
            .env("KUBECONFIG", &env.kubeconfig);
        c
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
    ])
    .stdin(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    login
        .stdin
        .take()
        .unwrap()
        .write_all(env.vendor.password.as_bytes())
        .unwrap();
    assert!(login.wait().unwrap().success());
    let chart = format!("oci://{}/wallaroo/2025-1/wallaroo", env.vendor.address());
    let dest = home.display().to_string();
    assert!(
        helm(&[
            "pull",
            &chart,
            "--version",
            version,
            "--destination",
            &dest,
            "--ca-file",
            &ca
        ])
        .status()
        .unwrap()
        .success()
    );
    home.join(format!("wallaroo-{version}.tgz"))
}

#[tokio::test]
async fn a_release_left_pending_by_a_killed_helm_is_recovered_by_apply() {
    let _nodes = NODES.lock().await;
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    let version = preset.version;
    let chart_dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/charts/wallaroo-sample");
    let ns = unique("stuck");
    let p = ns.clone();
    tokio::task::spawn_blocking(move || {
        wallaroo_testenv::seed::seed(env, &preset, &env.vendor, "wallaroo", &chart_dir).unwrap();
        env.add_nodes(
            &p,
            2,
            &json!({"wallaroo.ai/node-purpose": "pipelines"}),
            &json!([]),
            &json!({}),
        )
        .unwrap();
    })
    .await
    .unwrap();

    let engine = engine_with(
        env,
        wallaroo_kube::ClusterConfig {
            chart_registry: Some(wallaroo_kube::RegistryLogin {
                host: env.vendor.address(),
                username: env.vendor.username.clone(),
                password: env.vendor.password.clone(),
            }),
            ca_file: Some(env.ca_file.clone()),
            namespace: ns.clone(),
            ..config(env)
        },
    )
    .await;
    let namespace = Address::named("namespace", &ns);
    let release = Address::named("helm_release", "wallaroo");
    let mut desired = DesiredSet::default();
    desired.insert(DesiredResource::new(
        namespace.clone(),
        "namespace",
        Attrs::from([("name".into(), json!(ns))]),
    ));
    desired.insert(
        DesiredResource::new(
            release.clone(),
            "helm_release",
            Attrs::from([
                ("namespace".into(), json!(ns)),
                (
                    "chart".into(),
                    json!(format!(
                        "oci://{}/wallaroo/2025-1/wallaroo",
                        env.vendor.address()
                    )),
                ),
                ("version".into(), json!(version)),
                ("values".into(), json!({"ingress_mode": "none"})),
                ("secret_values".into(), json!({})),
                ("timeout".into(), json!("90s")),
                ("status".into(), json!("deployed")),
            ]),
        )
        .depends_on([namespace]),
    );
    let home = tempfile_dir(&ns);
    let store = StateStore::new(home.join("wallaroo.lock"));
    converge(&engine, &desired, &store, PlanMode::Apply).await;

    // An operator's helm upgrade that can never become ready, killed while it waits.
    let archive = tokio::task::spawn_blocking({
        let home = home.clone();
        move || pull_chart(env, &home, version)
    })
    .await
    .unwrap();
    let mut stuck = std::process::Command::new(&env.helm)
        .args(["upgrade", "wallaroo"])
        .arg(&archive)
        .args([
            "--namespace",
            &ns,
            "--reuse-values",
            "--set-string",
            "nodeSelectors.keycloak.nowhere=true",
            "--wait",
            "--timeout",
            "5m",
        ])
        .env("KUBECONFIG", &env.kubeconfig)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(home.join("helm.err")).unwrap())
        .spawn()
        .unwrap();
    let mut status = String::new();
    for _ in 0..300 {
        let state = store.load().unwrap();
        let plan = engine
            .plan(&desired, state.as_ref(), &PlanOptions::default())
            .await
            .unwrap();
        let change = plan.change(&release).unwrap();
        status = change
            .attributes
            .iter()
            .find(|a| a.path == "status")
            .and_then(|a| a.before.clone())
            .map(|v| v.to_string())
            .unwrap_or_default();
        if status.contains("pending-upgrade") {
            assert_eq!(
                change.action,
                Action::Update,
                "the plan says apply will act on it"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stuck.kill().unwrap();
    stuck.wait().unwrap();
    assert!(
        status.contains("pending-upgrade"),
        "the killed helm left {status}; its stderr: {}",
        std::fs::read_to_string(home.join("helm.err")).unwrap_or_default()
    );

    // Apply recovers the release.
    converge(&engine, &desired, &store, PlanMode::Apply).await;
    let state = store.load().unwrap();
    let again = engine
        .plan(&desired, state.as_ref(), &PlanOptions::default())
        .await
        .unwrap();
    assert!(!again.has_changes(), "{:#?}", again.changes);
}

#[tokio::test]
async fn the_nvidia_device_plugin_rolls_out_and_is_ready_when_gpus_show() {
    let _nodes = NODES.lock().await;
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    let prefix = unique("gpu");
    tokio::task::spawn_blocking(move || {
        env.add_nodes(
            &prefix,
            2,
            &json!({}),
            &json!([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]),
            &json!({"nvidia.com/gpu": "1"}),
        )
        .unwrap()
    })
    .await
    .unwrap();
    let engine = engine(env).await;
    // Each test its own namespace: DaemonSets are namespaced, and kube-system is shared.
    let ns = unique("plugin");
    let namespace = Address::named("namespace", &ns);
    let mut desired = DesiredSet::default();
    desired.insert(DesiredResource::new(
        namespace.clone(),
        "namespace",
        Attrs::from([("name".into(), json!(ns))]),
    ));
    let plugin = Address::named("daemonset", &format!("{ns}/nvidia-device-plugin"));
    desired.insert(
        DesiredResource::new(
            plugin.clone(),
            "daemonset",
            Attrs::from([
                ("namespace".into(), json!(ns)),
                ("name".into(), json!("nvidia-device-plugin-daemonset")),
                (
                    "image".into(),
                    json!(format!(
                        "{}/wallaroo/k8s-device-plugin:v0.17.0",
                        env.private.address()
                    )),
                ),
            ]),
        )
        .depends_on([namespace]),
    );
    let store = StateStore::new(tempfile_dir(&ns).join("wallaroo.lock"));
    converge(&engine, &desired, &store, PlanMode::Apply).await;
    let path = format!("/apis/apps/v1/namespaces/{ns}/daemonsets/nvidia-device-plugin-daemonset");
    let ds = tokio::task::spawn_blocking(move || env.api().unwrap().get(&path).unwrap())
        .await
        .unwrap();
    assert_eq!(
        ds["status"]["numberReady"],
        ds["status"]["desiredNumberScheduled"]
    );
    assert!(
        ds["status"]["numberReady"].as_u64().unwrap() >= 2,
        "pods on the GPU nodes too: {}",
        ds["status"]
    );
    let state = store.load().unwrap();
    assert!(
        !engine
            .plan(&desired, state.as_ref(), &PlanOptions::default())
            .await
            .unwrap()
            .has_changes()
    );
    converge(&engine, &desired, &store, PlanMode::Destroy).await;
}

#[tokio::test]
async fn drift_in_a_selector_pool_of_a_hundred_nodes_names_the_node_that_moved() {
    let _nodes = NODES.lock().await;
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    let pool = unique("hundred");
    let p = pool.clone();
    let nodes = tokio::task::spawn_blocking(move || {
        // A taint of their own keeps DaemonSets of other tests off these nodes.
        env.add_nodes(
            &p,
            100,
            &json!({"pool": p}),
            &json!([{"key": "test/hundred", "value": "x", "effect": "NoSchedule"}]),
            &json!({}),
        )
        .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(nodes.len(), 100);
    let engine = engine(env).await;
    let desired = selector_pool(&pool, "persistent");
    let dir = tempfile_dir(&pool);
    let store = StateStore::new(dir.join("wallaroo.lock"));
    let first = converge(&engine, &desired, &store, PlanMode::Apply).await;
    assert!(
        first.changes[0]
            .attributes
            .iter()
            .all(|c| !c.path.starts_with("node_drift")),
        "a first plan lists no node one by one: {:?}",
        first.changes[0].attributes
    );

    // Someone takes the taint off one node and relabels another.
    let (tainted, relabelled) = (nodes[41].clone(), nodes[77].clone());
    let (t, r) = (tainted.clone(), relabelled.clone());
    tokio::task::spawn_blocking(move || {
        let api = env.api().unwrap();
        let path = format!("/api/v1/nodes/{t}");
        let node = api.get(&path).unwrap();
        let kept: Vec<serde_json::Value> = node["spec"]["taints"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["key"] != "wallaroo.ai/persistent")
            .cloned()
            .collect();
        api.merge_patch(&path, &json!({"spec": {"taints": kept}}))
            .unwrap();
        api.merge_patch(
            &format!("/api/v1/nodes/{r}"),
            &json!({"metadata": {"labels": {"wallaroo.ai/node-purpose": "general"}}}),
        )
        .unwrap();
    })
    .await
    .unwrap();

    let state = store.load().unwrap();
    let plan = engine
        .plan(&desired, state.as_ref(), &PlanOptions::default())
        .await
        .unwrap();
    let drift = &plan.drift[0];
    let named: Vec<(String, serde_json::Value)> = drift
        .attributes
        .iter()
        .filter(|c| c.path.starts_with("node_drift"))
        .map(|c| (c.path.clone(), c.after.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        named,
        [
            (
                format!("node_drift.{tainted}"),
                json!("taint wallaroo.ai/persistent=true:NoSchedule removed")
            ),
            (
                format!("node_drift.{relabelled}"),
                json!("label wallaroo.ai/node-purpose is \"general\", not \"persistent\"")
            ),
        ],
        "{drift:?}"
    );
    // Apply puts both back, and the pool is clean again.
    converge(&engine, &desired, &store, PlanMode::Apply).await;
    let state = store.load().unwrap();
    let clean = engine
        .plan(&desired, state.as_ref(), &PlanOptions::default())
        .await
        .unwrap();
    assert!(clean.drift.is_empty(), "{:?}", clean.drift);
    assert!(!clean.has_changes());
    converge(&engine, &desired, &store, PlanMode::Destroy).await;
    // A hundred nodes would slow kwok for every later test of the shared control plane.
    tokio::task::spawn_blocking(move || {
        let api = env.api().unwrap();
        for n in &nodes {
            api.delete(&format!("/api/v1/nodes/{n}")).unwrap();
        }
    })
    .await
    .unwrap();
}

/// Two nodepools that would own one node are found before any change: a node listed by one
/// pool and matched by another's selector, and a node matched by two selectors; a node one
/// pool alone claims is not reported.
#[tokio::test]
async fn nodes_claimed_by_two_nodepools_are_named_with_both_pools() {
    let _nodes = NODES.lock().await;
    wallaroo_testenv::install_crypto_provider();
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    let id = wallaroo_testenv::unique("shared");
    let nodes = {
        let id = id.clone();
        tokio::task::spawn_blocking(move || {
            env.add_nodes(
                &id,
                3,
                &serde_json::json!({"shared-test": id, "tier": "gpu"}),
                &serde_json::json!([]),
                &serde_json::json!({}),
            )
            .unwrap()
        })
        .await
        .unwrap()
    };
    let kc = kube::config::Kubeconfig::read_from(&env.kubeconfig).unwrap();
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap(),
    )
    .unwrap();
    let selector = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let pools = std::collections::BTreeMap::from([
        (
            "general".to_string(),
            (vec![nodes[0].clone()], selector(&[])),
        ),
        (
            "pipelines-x86".to_string(),
            (
                Vec::new(),
                selector(&[("shared-test", &id), ("tier", "gpu")]),
            ),
        ),
        (
            "persistent".to_string(),
            (vec!["some-other-node".to_string()], selector(&[])),
        ),
    ]);
    let shared_nodes = wallaroo_kube::shared_nodes(&client.clone().into(), &pools)
        .await
        .unwrap();
    assert_eq!(
        shared_nodes,
        [wallaroo_kube::SharedNode {
            node: nodes[0].clone(),
            pools: ("general".into(), "pipelines-x86".into()),
        }]
    );
    // Two selectors over the same nodes: every one of them is named.
    let mut two = pools.clone();
    two.insert(
        "general".into(),
        (Vec::new(), selector(&[("shared-test", &id)])),
    );
    let found = wallaroo_kube::shared_nodes(&client.clone().into(), &two)
        .await
        .unwrap();
    assert_eq!(found.len(), 3, "{found:?}");
    for n in &nodes {
        let _ = tokio::task::spawn_blocking({
            let path = format!("/api/v1/nodes/{n}");
            move || env.api().unwrap().delete(&path)
        })
        .await;
    }
}

/// A cluster that shares reads answers a selector's LIST once per operation: a node that joins
/// meanwhile is not seen until the reads are forgotten (the next operation); a plain one asks
/// every time.
#[tokio::test]
async fn shared_reads_are_kept_until_forgotten_and_plain_reads_never() {
    let _nodes = NODES.lock().await;
    wallaroo_testenv::install_crypto_provider();
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    let id = unique("reads");
    let add = |prefix: String| {
        let id = id.clone();
        tokio::task::spawn_blocking(move || {
            env.add_nodes(
                &prefix,
                1,
                &json!({"reads-test": id}),
                &json!([]),
                &json!({}),
            )
            .unwrap()
        })
    };
    let mut names = add(format!("{id}-a")).await.unwrap();
    let kc = kube::config::Kubeconfig::read_from(&env.kubeconfig).unwrap();
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap(),
    )
    .unwrap();
    let sharing = wallaroo_kube::Cluster::from(client.clone()).sharing_reads();
    let plain = wallaroo_kube::Cluster::from(client);
    let selector = format!("reads-test={id}");
    let count = |c: &wallaroo_kube::Cluster| {
        let (c, selector) = (c.clone(), selector.clone());
        async move { c.nodes_matching(&selector).await.unwrap().len() }
    };
    assert_eq!(count(&sharing).await, 1);
    assert_eq!(count(&plain).await, 1);
    names.extend(add(format!("{id}-b")).await.unwrap());
    assert_eq!(count(&sharing).await, 1, "kept for this operation");
    assert_eq!(count(&plain).await, 2, "asked again");
    sharing.forget_reads();
    assert_eq!(count(&sharing).await, 2, "the next operation reads afresh");
    tokio::task::spawn_blocking(move || {
        let api = env.api().unwrap();
        for n in &names {
            api.delete(&format!("/api/v1/nodes/{n}")).unwrap();
        }
    })
    .await
    .unwrap();
}
