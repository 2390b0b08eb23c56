//! Exactly what wallaroo needs in a cluster, granted to the `wallaroo` ServiceAccount that
//! tests use by default: so a missing permission shows up here, not at a customer.

use serde_json::{Value, json};

/// The ClusterRole of the wallaroo ServiceAccount.
pub fn cluster_role() -> Value {
    let rw = [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "wallaroo"},
        "rules": [
            // Nodepools: labels and taints on existing nodes; never create or delete nodes.
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "patch", "update"]},
            // The installation's namespace.
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": rw},
            // What the helm release and wallaroo's own resources consist of.
            {"apiGroups": [""], "resources": ["secrets", "configmaps", "services", "serviceaccounts", "persistentvolumeclaims"], "verbs": rw},
            {"apiGroups": [""], "resources": ["events", "endpoints"], "verbs": ["get", "list", "watch"]},
            // The pull check: a short-lived pod per nodepool, in a namespace of its own.
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "create", "delete"]},
            // `wallaroo support-bundle`: the last lines of each container's log.
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
            {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": rw},
            {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": rw},
            // `state { backend = "kubernetes" }`: the run lock is a Lease.
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": rw},
            // Preflight: is there a storage class for Wallaroo's persistent services?
            {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["get", "list"]},
        ]
    })
}
