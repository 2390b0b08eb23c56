//! What wallaroo needs in a cluster, granted to the `wallaroo` ServiceAccount that tests use
//! by default: so a missing permission shows up here, not at a customer.
//!
//! The role is made from what `wallaroo rbac --cluster-wide` prints for
//! `examples/quickstart.hcl` (`rbac-quickstart.yaml`, kept current by `tests/e2e/rbac.rs`:
//! `WALLAROO_BLESS=1` rewrites it), plus what other tests' charts and commands need beyond the
//! quickstart, each with its reason below.

use serde_json::{Value, json};

/// `wallaroo rbac --cluster-wide` of the quickstart.
pub const FROM_WALLAROO_RBAC: &str = include_str!("rbac-quickstart.yaml");

/// Beyond the quickstart: what the other charts and commands the tests run need.
fn extras() -> Vec<Value> {
    let rw = [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];
    vec![
        // Nodepools: `update` for the node kind's fallback when a patch is refused; `watch`
        // for the benchmarks that wait on nodes.
        json!({"apiGroups": [""], "resources": ["nodes"], "verbs": ["watch", "update"]}),
        // The namespaces tests destroy, and what the foreign and strict charts consist of.
        json!({"apiGroups": [""], "resources": ["namespaces", "secrets", "configmaps", "services", "serviceaccounts", "persistentvolumeclaims"], "verbs": rw}),
        json!({"apiGroups": [""], "resources": ["events", "endpoints"], "verbs": ["get", "list", "watch"]}),
        json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "create", "delete"]}),
        // `wallaroo support-bundle`: the last lines of each container's log.
        json!({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}),
        json!({"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": rw}),
        json!({"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list", "watch"]}),
        json!({"apiGroups": ["batch"], "resources": ["jobs"], "verbs": rw}),
        // `state { backend = "kubernetes" }`: the run lock is a Lease.
        json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": rw}),
        json!({"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["get", "list"]}),
    ]
}

/// The rules of the ClusterRole in `wallaroo rbac`'s output.
pub fn rules_of(yaml: &str) -> Vec<Value> {
    let docs: Vec<Option<Value>> = serde_saphyr::from_multiple(yaml).unwrap_or_default();
    docs.into_iter()
        .flatten()
        .filter(|d| d["kind"] == "ClusterRole")
        .flat_map(|d| d["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// The ClusterRole of the wallaroo ServiceAccount.
pub fn cluster_role() -> Value {
    let mut rules = rules_of(FROM_WALLAROO_RBAC);
    rules.extend(extras());
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "wallaroo"},
        "rules": rules,
    })
}
