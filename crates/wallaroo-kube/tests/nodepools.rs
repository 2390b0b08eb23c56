//! Nodepools chosen by label selector, against the real API server as the least-privilege
//! ServiceAccount: every matched node gets the labels and taints, a node that joins later
//! shows as a change, and destroy takes back only what wallaroo set.

use std::time::Duration;

use serde_json::json;
use wallaroo_engine::*;
use wallaroo_state::StateStore;
use wallaroo_testenv::{Env, shared, unique};

async fn engine(env: &Env) -> Engine {
    wallaroo_testenv::install_crypto_provider();
    let kc = kube::config::Kubeconfig::read_from(&env.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let mut kinds = KindRegistry::new();
    wallaroo_kube::register_with(
        &mut kinds,
        client,
        wallaroo_kube::ClusterConfig {
            helm: env.helm.clone(),
            chart_registry: None,
            ca_file: None,
            keycloak_url: env.keycloak_url.clone(),
            namespace: "unused".into(),
            output_timeout: Duration::from_secs(5),
        },
    );
    Engine::new(kinds)
}

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
    let mut desired = DesiredSet::default();
    desired.insert(DesiredResource::new(
        Address::named("nodepool", &pool),
        "nodepool_selector",
        Attrs::from([
            ("selector".into(), json!({"pool": pool})),
            (
                "labels".into(),
                json!({"wallaroo.ai/node-purpose": "pipelines"}),
            ),
            (
                "taints".into(),
                json!(["wallaroo.ai/pipelines=true:NoSchedule"]),
            ),
        ]),
    ));
    let dir = tempfile_dir(&pool);
    let store = StateStore::new(dir.join("wallaroo.lock"));
    let plan = engine
        .plan(&desired, None, &PlanOptions::default())
        .await
        .unwrap();
    assert_eq!(
        plan.changes[0].action,
        Action::Update,
        "existing nodes are changed, not created"
    );
    let report = engine
        .apply(&plan, &desired, &store, &ApplyOptions::default(), &Silent)
        .await
        .unwrap();
    assert!(report.success(), "{report:?}");
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
    let state = store.load().unwrap();
    let plan = engine
        .plan(&desired, state.as_ref(), &PlanOptions::default())
        .await
        .unwrap();
    assert_eq!(plan.changes[0].action, Action::Update);
    engine
        .apply(&plan, &desired, &store, &ApplyOptions::default(), &Silent)
        .await
        .unwrap();
    assert_eq!(
        labels_and_taints(env, &joined[0]).await.0["wallaroo.ai/node-purpose"],
        "pipelines"
    );

    // Destroy removes wallaroo's label and taint, and nothing else.
    let state = store.load().unwrap();
    let opts = PlanOptions {
        mode: PlanMode::Destroy,
        ..PlanOptions::default()
    };
    let plan = engine.plan(&desired, state.as_ref(), &opts).await.unwrap();
    let report = engine
        .apply(&plan, &desired, &store, &ApplyOptions::default(), &Silent)
        .await
        .unwrap();
    assert!(report.success());
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
