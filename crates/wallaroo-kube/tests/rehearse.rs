//! The rehearsal and the RBAC grants on a chart this project did not write: metrics-server's
//! (from its Go module), rendered by the real helm and rehearsed against the real API server.
//! Its ClusterRoleBinding binds the cluster's `system:auth-delegator` and its RoleBinding, in
//! `kube-system`, the cluster's `extension-apiserver-authentication-reader`: roles the chart
//! does not carry, which an identity binds only with `bind` on them by name. As the cluster's
//! admin every object is accepted; a ServiceAccount of the release's name made by hand is
//! refused as helm would refuse it; as the test kit's least-privilege identity, which may not
//! create an APIService, that object is listed as not rehearsed, never as refused or passed.

use std::path::Path;

use serde_json::json;
use wallaroo_engine::RefusalReason;
use wallaroo_kube::Cluster;
use wallaroo_kube::permissions::{Need, grants};
use wallaroo_kube::rehearse::{ReleaseWrites, release};

async fn cluster_of(kubeconfig: &Path) -> Cluster {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    Cluster::from(kube::Client::try_from(config).unwrap())
}

#[test]
fn metrics_servers_chart_is_rehearsed_and_its_bindings_need_bind() {
    let env = wallaroo_testenv::shared();
    // The test kit's API client blocks; the rehearsal runs on a runtime of its own.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = wallaroo_testenv::provision::go_module_dir("sigs.k8s.io/metrics-server", "v0.7.2")
        .unwrap()
        .join("charts/metrics-server");
    let ns = wallaroo_testenv::unique("rehearse-ms");
    let out = std::process::Command::new(&env.helm)
        .args(["template", "metrics-server"])
        .arg(&dir)
        .args(["--namespace", &ns, "--kube-version", "1.33.0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifests = String::from_utf8(out.stdout).unwrap();

    // The bindings of roles the chart does not carry: `bind` on each, by name.
    let found = grants::grants_of(&grants::rbac_objects(&manifests), &ns);
    let bind = |resource: &str, ns: Option<&str>, name: &str| Need {
        name: Some(name.into()),
        ..Need::new("rbac.authorization.k8s.io", resource, ns, "bind")
    };
    let delegator = found
        .iter()
        .find(|g| g.object == "ClusterRoleBinding metrics-server:system:auth-delegator")
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert_eq!(
        delegator.rules,
        [bind("clusterroles", None, "system:auth-delegator")].into()
    );
    let reader = found
        .iter()
        .find(|g| g.object.starts_with("RoleBinding kube-system/"))
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert_eq!(
        reader.rules,
        [bind(
            "roles",
            Some("kube-system"),
            "extension-apiserver-authentication-reader"
        )]
        .into()
    );

    let api = env.api().unwrap();
    api.create(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    )
    .unwrap();
    let writes = ReleaseWrites {
        address: "helm_release.metrics-server",
        release: "metrics-server",
        namespace: &ns,
        into: &ns,
        manifests: &manifests,
        crds: &[],
        replace_immutable: false,
        redact: &[],
    };
    let admin = rt.block_on(cluster_of(&env.admin_kubeconfig));
    let r = rt.block_on(release(&admin, &writes)).unwrap();
    assert!(r.found.refused.is_empty(), "{:#?}", r.found.refused);
    assert!(
        r.found.not_rehearsed.is_empty(),
        "{:#?}",
        r.found.not_rehearsed
    );
    assert!(r.found.rehearsed >= 8, "{:#?}", r.found);
    assert!(
        api.get("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io")
            .is_err(),
        "a dry run stores nothing"
    );

    // A ServiceAccount of the release's name, made by hand: helm would refuse to own it.
    api.create(
        &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "metrics-server"}}),
    )
    .unwrap();
    let r = rt.block_on(release(&admin, &writes)).unwrap();
    let refused: Vec<_> = r
        .found
        .refused
        .iter()
        .map(|x| (x.object.clone(), x.reason))
        .collect();
    assert_eq!(
        refused,
        [(
            format!("ServiceAccount {ns}/metrics-server"),
            RefusalReason::Ownership
        )]
    );

    // As the kit's identity, which may not make an APIService: not rehearsed, and why.
    let kit = rt.block_on(cluster_of(&env.kubeconfig));
    let r = rt.block_on(release(&kit, &writes)).unwrap();
    assert!(
        r.found
            .not_rehearsed
            .iter()
            .any(|n| n.starts_with("APIService v1beta1.metrics.k8s.io: could not be rehearsed")),
        "{:#?}",
        r.found
    );
    let _ = api.delete(&format!("/api/v1/namespaces/{ns}"));
}
