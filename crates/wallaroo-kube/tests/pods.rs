//! The apply summary's account of the release's pods, read from the real API server as the
//! least-privilege ServiceAccount: a pod that failed to pull is named whether it is still
//! there, already gone, or being deleted (the pods of an upgrade helm rolled back, which a
//! real node takes a moment to stop).
//!
//! The kubelet's "Failed to pull image" events are written here by the test as the kubelet
//! writes them (the real node's own are exercised by `tests/e2e/realnode.rs`); what is under
//! test is how the report reads pods and events, including a pod held in deletion by a
//! finalizer, a state a real node passes through too briefly to catch on purpose.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use wallaroo_kube::Cluster;
use wallaroo_testenv::{shared, unique};

async fn client(kubeconfig: &std::path::Path) -> kube::Client {
    wallaroo_testenv::install_crypto_provider();
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// A pod no node will take (its selector matches none), held by a finalizer once deleted.
fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "finalizers": ["wallaroo.test/hold"]},
        "spec": {
            "nodeSelector": {"wallaroo.test/no-such-node": "true"},
            "containers": [{"name": "app", "image": "private.example/app:1"}],
        },
    }))
    .unwrap()
}

/// The event the kubelet records when a pull fails.
fn failed_pull(ns: &str, pod: &str, node: &str) -> Event {
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    serde_json::from_value(json!({
        "metadata": {"name": format!("{pod}.failed"), "namespace": ns},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": ns},
        "reason": "Failed",
        "type": "Warning",
        "message": format!("Failed to pull image \"private.example/app:1\": tls: failed to verify certificate: x509: certificate signed by unknown authority ({pod})"),
        "source": {"component": "kubelet", "host": node},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }))
    .unwrap()
}

#[tokio::test]
async fn a_pod_that_failed_to_pull_is_named_whether_there_gone_or_being_deleted() {
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    let admin = client(&env.admin_kubeconfig).await;
    let ns = unique("pods");
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
    let since = SystemTime::now() - Duration::from_secs(5);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let events: Api<Event> = Api::namespaced(admin.clone(), &ns);
    for name in ["app-going", "app-kept"] {
        pods.create(&PostParams::default(), &pod(name))
            .await
            .unwrap();
    }
    for (name, node) in [
        ("app-going", "node-a"),
        ("app-gone", "node-b"),
        ("app-kept", "node-c"),
    ] {
        events
            .create(&PostParams::default(), &failed_pull(&ns, name, node))
            .await
            .unwrap();
    }
    pods.delete("app-going", &DeleteParams::default())
        .await
        .unwrap();
    let going = pods.get("app-going").await.unwrap();
    assert!(going.metadata.deletion_timestamp.is_some());

    // As the least-privilege identity the apply runs as.
    let cluster = Cluster::from(client(&env.kubeconfig).await);
    let report = wallaroo_kube::pullcheck::release_pods(&cluster, &ns, since)
        .await
        .unwrap();

    // Counted: the pod that stays; named: each of the three, where its node said so.
    assert_eq!(report.total, 1, "{report:?}");
    let named: Vec<(&str, &str)> = report
        .stuck
        .iter()
        .map(|s| (s.pod.as_str(), s.node.as_str()))
        .collect();
    assert!(
        named.contains(&("app-going (being removed)", "node-a")),
        "{report:?}"
    );
    assert!(
        named.contains(&("app-gone (since removed)", "node-b")),
        "{report:?}"
    );
    assert_eq!(
        named.len(),
        2,
        "the pod that stays is pending, not stuck pulling: {report:?}"
    );
    for s in &report.stuck {
        assert!(s.message.contains("x509"), "{s:?}");
    }

    // Events older than the run are not this run's.
    let later = SystemTime::now() + Duration::from_secs(60);
    let report = wallaroo_kube::pullcheck::release_pods(&cluster, &ns, later)
        .await
        .unwrap();
    assert!(report.stuck.is_empty(), "{report:?}");

    for name in ["app-going", "app-kept"] {
        let _ = pods
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await;
    }
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}
