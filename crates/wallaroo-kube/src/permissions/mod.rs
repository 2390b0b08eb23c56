//! The permissions each operation needs, known at plan time: from the release's rendered
//! objects (helm creates, reads, patches and deletes each kind it renders, and reads what
//! `--wait` watches), from the rules the chart's own Roles and bindings grant (RBAC lets an
//! identity grant only what it holds, [`grants`]) and from everything else wallaroo touches
//! (the namespace, Secrets, nodes, the state Secret and Lease, the pull check, a support
//! bundle). [`review`] asks the API server which of them an identity lacks; [`yaml`] writes
//! the least ClusterRole and Roles that grant them.

pub mod grants;
pub mod review;
pub mod yaml;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use grants::{ChartRbac, Grant, grants_of, lacking_of};
pub use review::{Reviewed, forbidden, missing, missing_for, whoami};
pub use yaml::{Grantee, rbac_yaml};

/// One thing an operation does: `verb` on `resource` of API group `group` in `namespace`
/// (`None`: a cluster-scoped resource, or a namespaced one in every namespace), on the
/// object `name` only when it names one. A `resource` that starts with `/` is a
/// non-resource URL (`/metrics`), which only a ClusterRole grants; a `resource` with a `/`
/// inside names a subresource (`pods/log`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Need {
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub verb: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Need {
    /// `verb` on `group`/`resource` in `namespace` (`None`: cluster-wide), any object.
    pub fn new(group: &str, resource: &str, namespace: Option<&str>, verb: &str) -> Need {
        Need {
            group: group.into(),
            resource: resource.into(),
            namespace: namespace.map(String::from),
            verb: verb.into(),
            name: None,
        }
    }

    /// Whether this is a non-resource URL (`/metrics`, `/healthz`).
    pub fn is_non_resource(&self) -> bool {
        self.resource.starts_with('/')
    }

    /// `create cronjobs.batch in namespace ns` / `patch nodes (cluster-wide)` /
    /// `bind clusterroles.rbac.authorization.k8s.io named "view" in namespace ns` /
    /// `get non-resource URL /metrics`.
    pub fn describe(&self) -> String {
        if self.is_non_resource() {
            return format!("{} non-resource URL {}", self.verb, self.resource);
        }
        let resource = if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        let named = match &self.name {
            Some(name) => format!(" named \"{name}\""),
            None => String::new(),
        };
        match &self.namespace {
            Some(ns) => format!("{} {resource}{named} in namespace {ns}", self.verb),
            None => format!("{} {resource}{named} (cluster-wide)", self.verb),
        }
    }

    /// Whether holding `self` also grants `other`: the same verb on the same object, where
    /// `self` is cluster-wide or in `other`'s namespace and names no object or `other`'s.
    pub fn covers(&self, other: &Need) -> bool {
        self.group == other.group
            && self.resource == other.resource
            && self.verb == other.verb
            && (self.namespace.is_none() || self.namespace == other.namespace)
            && (self.name.is_none() || self.name == other.name)
    }
}

/// `needs` without those another of them already grants (a namespaced need beside the
/// same one cluster-wide, a named one beside the same for every object).
pub fn least(needs: BTreeSet<Need>) -> BTreeSet<Need> {
    needs
        .iter()
        .filter(|n| !needs.iter().any(|m| m != *n && m.covers(n)))
        .cloned()
        .collect()
}

/// An object of the rendered release: its API version, kind and namespace (if it names one).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RenderedKind {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
}

/// The kinds (with namespaces) of the objects in rendered manifests.
pub fn rendered_kinds(manifests: &str) -> Vec<RenderedKind> {
    let kinds: BTreeSet<RenderedKind> = crate::helm::manifest_documents(manifests)
        .filter_map(|doc| serde_saphyr::from_str::<Option<Value>>(doc).ok().flatten())
        .filter_map(|v| {
            Some(RenderedKind {
                api_version: v["apiVersion"].as_str()?.to_string(),
                kind: v["kind"].as_str()?.to_string(),
                namespace: v["metadata"]["namespace"].as_str().map(String::from),
            })
        })
        .collect();
    kinds.into_iter().collect()
}

/// What apply does besides the release, taken from the desired resources by the caller.
#[derive(Debug, Clone, Default)]
pub struct Touches {
    /// The release's namespace (helm keeps the release's Secrets there).
    pub namespace: String,
    /// The release's rendered kinds; empty with no helm release.
    pub release: Vec<RenderedKind>,
    /// Whether there is a helm release at all.
    pub helm: bool,
    /// Namespaces whose Secrets wallaroo manages (TLS, pull secrets).
    pub secrets_in: BTreeSet<String>,
    /// Whether nodepools label and taint nodes.
    pub nodes: bool,
    /// The namespace of a DaemonSet wallaroo manages (the NVIDIA device plugin).
    pub daemonset_in: Option<String>,
    /// `state { backend = "kubernetes" }`: its namespace.
    pub state_in: Option<String>,
    /// Whether the plan's pull check creates its namespace, Secret and pods.
    pub pull_check: bool,
    /// Whether outputs read Services and Secrets of the release's namespace.
    pub outputs: bool,
    /// What the chart's own Roles, ClusterRoles and bindings grant, which the identity that
    /// creates them must hold (or `escalate` and `bind` instead).
    pub grants: Vec<Grant>,
}

const READ: &[&str] = &["get", "list", "watch"];
const MANAGE: &[&str] = &[
    "get", "list", "watch", "create", "update", "patch", "delete",
];

fn scope_of(kind: &str) -> bool {
    crate::helm::CLUSTER_SCOPED.contains(&kind)
}

/// Every (verb, group, resource, namespace) apply needs.
pub fn needs(t: &Touches) -> BTreeSet<Need> {
    let mut out = BTreeSet::new();
    let mut add = |group: &str, resource: &str, namespace: Option<&str>, verbs: &[&str]| {
        add_needs(&mut out, group, resource, namespace, verbs)
    };
    let ns = t.namespace.as_str();
    // wallaroo creates the release's namespace; a first install is rehearsed in a
    // short-lived one, deleted after.
    add(
        "",
        "namespaces",
        None,
        &["get", "create", "patch", "delete"],
    );
    // Preflight: the nodepools' nodes, and whether there is a storage class.
    add("", "nodes", None, &["get", "list"]);
    add("storage.k8s.io", "storageclasses", None, &["list"]);
    for secrets_ns in &t.secrets_in {
        add("", "secrets", Some(secrets_ns), MANAGE);
    }
    if t.nodes {
        add("", "nodes", None, &["get", "list", "patch"]);
    }
    if let Some(d) = &t.daemonset_in {
        add("apps", "daemonsets", Some(d), MANAGE);
    }
    if let Some(state) = &t.state_in {
        add("", "secrets", Some(state), MANAGE);
        add("coordination.k8s.io", "leases", Some(state), MANAGE);
    }
    if t.outputs {
        add("", "services", Some(ns), &["get"]);
        add("", "secrets", Some(ns), &["get"]);
    }
    if t.helm {
        // helm's release storage, and what `--wait` reads besides the objects.
        add("", "secrets", Some(ns), MANAGE);
        add("", "pods", Some(ns), READ);
        add("", "events", Some(ns), &["list"]);
        add("apps", "replicasets", Some(ns), READ);
        for k in &t.release {
            let (group, plural, namespace) = resource_of(k, ns);
            add(&group, &plural, namespace.as_deref(), MANAGE);
        }
    }
    if t.pull_check {
        out.extend(pull_check_needs());
    }
    out
}

/// Adds `verbs` on `group`/`resource` in `namespace` (`None`: cluster-wide).
fn add_needs(
    out: &mut BTreeSet<Need>,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    verbs: &[&str],
) {
    for verb in verbs {
        out.insert(Need::new(group, resource, namespace, verb));
    }
}

/// What the pull check does: a namespace of its own each time, with a Secret and a pod per
/// pool, read back and deleted.
pub fn pull_check_needs() -> BTreeSet<Need> {
    let mut out = BTreeSet::new();
    add_needs(&mut out, "", "namespaces", None, &["create", "delete"]);
    add_needs(&mut out, "", "secrets", None, &["create"]);
    add_needs(
        &mut out,
        "",
        "pods",
        None,
        &["get", "list", "create", "delete"],
    );
    add_needs(&mut out, "", "events", None, &["list"]);
    out
}

/// Whether a verb changes something (a plan's own identity may lack every one of them).
pub fn is_write(verb: &str) -> bool {
    !matches!(verb, "get" | "list" | "watch")
}

/// Every (verb, group, resource, namespace) a plan needs that only reads and takes the run
/// lock: what it reads of each resource kind, the release's storage and objects (their drift),
/// the nodes, and with `state { backend = "kubernetes" }` the state Secret and the Lease it
/// holds while it reads. No check that writes runs under such an identity (the pull check is
/// skipped with a warning), so none of its needs are here.
pub fn read_needs(t: &Touches) -> BTreeSet<Need> {
    let mut out = BTreeSet::new();
    let mut add = |group: &str, resource: &str, namespace: Option<&str>, verbs: &[&str]| {
        add_needs(&mut out, group, resource, namespace, verbs)
    };
    let ns = t.namespace.as_str();
    // The release's namespace; preflight's nodes and storage class.
    add("", "namespaces", None, &["get"]);
    add("", "nodes", None, &["get", "list"]);
    add("storage.k8s.io", "storageclasses", None, &["list"]);
    for secrets_ns in &t.secrets_in {
        add("", "secrets", Some(secrets_ns), &["get"]);
    }
    if let Some(d) = &t.daemonset_in {
        add("apps", "daemonsets", Some(d), &["get"]);
    }
    if let Some(state) = &t.state_in {
        add("", "secrets", Some(state), &["get"]);
        // The run lock: taken, renewed and handed back by updating the Lease.
        add(
            "coordination.k8s.io",
            "leases",
            Some(state),
            &["get", "create", "update"],
        );
    }
    if t.outputs {
        add("", "services", Some(ns), &["get"]);
        add("", "secrets", Some(ns), &["get"]);
    }
    if t.helm {
        // helm's release storage (listed by label), Keycloak's admin Secret, and each object
        // the release renders, read for its drift.
        add("", "secrets", Some(ns), &["get", "list"]);
        for k in &t.release {
            let (group, plural, namespace) = resource_of(k, ns);
            add(&group, &plural, namespace.as_deref(), &["get"]);
        }
    }
    out
}

/// Every (verb, group, resource, namespace) destroy needs: helm's uninstall reads the
/// release's storage and deletes (and waits out) each kind the release renders; the
/// namespace is deleted only when it holds no PersistentVolumeClaim, which it lists first;
/// nodepools' labels and taints are taken off; wallaroo's Secrets and DaemonSet deleted; the
/// state Secret written and the run lock held.
pub fn destroy_needs(t: &Touches) -> BTreeSet<Need> {
    let mut out = BTreeSet::new();
    let mut add = |group: &str, resource: &str, namespace: Option<&str>, verbs: &[&str]| {
        add_needs(&mut out, group, resource, namespace, verbs)
    };
    let ns = t.namespace.as_str();
    add("", "namespaces", None, &["get", "delete"]);
    add("", "persistentvolumeclaims", Some(ns), &["list"]);
    add("", "nodes", None, &["get", "list"]);
    add("storage.k8s.io", "storageclasses", None, &["list"]);
    if t.nodes {
        add("", "nodes", None, &["patch"]);
    }
    for secrets_ns in &t.secrets_in {
        add("", "secrets", Some(secrets_ns), &["get", "delete"]);
    }
    if let Some(d) = &t.daemonset_in {
        add("apps", "daemonsets", Some(d), &["get", "delete"]);
    }
    if let Some(state) = &t.state_in {
        add("", "secrets", Some(state), MANAGE);
        add("coordination.k8s.io", "leases", Some(state), MANAGE);
    }
    if t.helm {
        // helm's release storage (read, marked uninstalling, deleted); Keycloak's admin
        // Secret; each rendered kind deleted and watched until gone.
        add("", "secrets", Some(ns), MANAGE);
        for k in &t.release {
            let (group, plural, namespace) = resource_of(k, ns);
            add(
                &group,
                &plural,
                namespace.as_deref(),
                &["get", "list", "watch", "delete"],
            );
        }
    }
    out
}

/// What `wallaroo support-bundle` reads: the nodes, the release namespace's pods, their
/// logs and events, and helm's history and values of the release.
pub fn support_needs(t: &Touches) -> BTreeSet<Need> {
    let mut out = BTreeSet::new();
    let ns = t.namespace.as_str();
    add_needs(&mut out, "", "nodes", None, &["list"]);
    add_needs(&mut out, "", "pods", Some(ns), &["list"]);
    add_needs(&mut out, "", "pods/log", Some(ns), &["get"]);
    add_needs(&mut out, "", "events", Some(ns), &["list"]);
    if t.helm {
        add_needs(&mut out, "", "secrets", Some(ns), &["get", "list"]);
    }
    out
}

/// The group, plural and namespace (`None`: cluster-scoped) of a rendered kind.
fn resource_of(k: &RenderedKind, ns: &str) -> (String, String, Option<String>) {
    let (group, version) = k
        .api_version
        .split_once('/')
        .unwrap_or(("", &k.api_version));
    let gvk = kube::core::GroupVersionKind::gvk(group, version, &k.kind);
    let plural = kube::discovery::ApiResource::from_gvk(&gvk).plural;
    let namespace = if scope_of(&k.kind) {
        None
    } else {
        Some(k.namespace.as_deref().unwrap_or(ns).to_string())
    };
    (group.to_string(), plural, namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cronjob_in_the_release_needs_its_resource_in_the_release_namespace() {
        let kinds = rendered_kinds(
            "---\n# Source: x/templates/cron.yaml\napiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: report\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: r\n",
        );
        let t = Touches {
            namespace: "wallaroo".into(),
            release: kinds,
            helm: true,
            ..Touches::default()
        };
        let n = needs(&t);
        let create_cron = Need::new("batch", "cronjobs", Some("wallaroo"), "create");
        assert!(n.contains(&create_cron));
        assert_eq!(
            create_cron.describe(),
            "create cronjobs.batch in namespace wallaroo"
        );
        assert!(
            n.iter()
                .any(|n| n.resource == "clusterroles" && n.namespace.is_none())
        );
    }

    /// Kinds that charts written by others render (metrics-server's APIService,
    /// secrets-store-csi-driver's CSIDriver) live outside namespaces.
    #[test]
    fn cluster_scoped_kinds_of_foreign_charts_are_asked_cluster_wide() {
        let kinds = rendered_kinds(
            "apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata:\n  name: v1beta1.metrics.k8s.io\n---\napiVersion: storage.k8s.io/v1\nkind: CSIDriver\nmetadata:\n  name: secrets-store.csi.k8s.io\n",
        );
        let n = needs(&Touches {
            namespace: "ns".into(),
            release: kinds,
            helm: true,
            ..Touches::default()
        });
        for resource in ["apiservices", "csidrivers"] {
            let mine: Vec<&Need> = n.iter().filter(|x| x.resource == resource).collect();
            assert!(!mine.is_empty(), "{resource}");
            assert!(mine.iter().all(|x| x.namespace.is_none()), "{mine:?}");
        }
    }

    /// A drift plan's identity reads what apply changes and takes the run lock: the Lease is
    /// the only thing it writes, and it needs no write apply needs besides.
    #[test]
    fn a_read_only_plan_needs_reads_and_the_lock_only() {
        let t = Touches {
            namespace: "wallaroo".into(),
            release: rendered_kinds(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: a\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: r\n",
            ),
            helm: true,
            nodes: true,
            secrets_in: ["wallaroo".to_string()].into(),
            state_in: Some("ops".into()),
            pull_check: true,
            ..Touches::default()
        };
        let reads = read_needs(&t);
        let writes: Vec<&Need> = reads.iter().filter(|n| is_write(&n.verb)).collect();
        assert!(
            writes
                .iter()
                .all(|n| n.resource == "leases" && n.namespace.as_deref() == Some("ops")),
            "{writes:?}"
        );
        for (resource, namespace) in [
            ("deployments", Some("wallaroo")),
            ("clusterroles", None),
            ("secrets", Some("ops")),
        ] {
            assert!(
                reads.iter().any(|n| n.resource == resource
                    && n.namespace.as_deref() == namespace
                    && n.verb == "get"),
                "get {resource} in {namespace:?}"
            );
        }
        // Every read is one apply needs too (apply reads before it writes), the lock aside.
        let apply = needs(&t);
        let extra: Vec<&Need> = reads
            .iter()
            .filter(|n| !apply.contains(n) && n.resource != "leases")
            .collect();
        assert!(extra.is_empty(), "{extra:?}");
        assert!(pull_check_needs().iter().all(|n| apply.contains(n)));
    }
}
