//! The permissions an apply needs, known at plan time: from the release's rendered objects
//! (helm creates, reads, patches and deletes each kind it renders, and reads what `--wait`
//! watches) and from everything else apply touches (the namespace, Secrets, nodes, the state
//! Secret and Lease, the pull check). [`missing`] asks the API server which of them the
//! current identity lacks, with SelfSubjectAccessReviews sent at once; [`rbac_yaml`] writes the
//! least ClusterRole and Role that grant them.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec, SubjectAccessReview,
    SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Cluster;

/// One thing apply will do: `verb` on `resource` of API group `group` in `namespace` (`None`:
/// a cluster-scoped resource, or a namespaced one in every namespace).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Need {
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub verb: String,
}

impl Need {
    /// `create cronjobs.batch in namespace ns` / `patch nodes (cluster-wide)`.
    pub fn describe(&self) -> String {
        let resource = if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        match &self.namespace {
            Some(ns) => format!("{} {resource} in namespace {ns}", self.verb),
            None => format!("{} {resource} (cluster-wide)", self.verb),
        }
    }
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
    // wallaroo creates the release's namespace.
    add("", "namespaces", None, &["get", "create", "patch"]);
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
        out.insert(Need {
            group: group.into(),
            resource: resource.into(),
            namespace: namespace.map(String::from),
            verb: (*verb).into(),
        });
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

/// Whose rights a review asks about: the identity making the request, or another one (the
/// identity that applies, asked about by a plan run as someone else).
#[derive(Debug, Clone, Copy)]
pub enum Reviewed<'a> {
    /// SelfSubjectAccessReview: any authenticated identity may ask it.
    Own,
    /// SubjectAccessReview of this username and groups: needs `create subjectaccessreviews`.
    Subject { user: &'a str, groups: &'a [String] },
}

/// Whether the API server refused a review because the identity may not ask it.
pub fn forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403)
}

/// The username the API server knows the current identity by (SelfSubjectReview, which
/// every authenticated identity may ask).
pub async fn whoami(cluster: &Cluster) -> Result<String, kube::Error> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let api: Api<SelfSubjectReview> = Api::all(cluster.client().clone());
    let answer = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    Ok(answer
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .unwrap_or_default())
}

/// The needs the current identity lacks, asked of the API server all at once (a few at a
/// time). A review the server cannot answer counts as missing, with its error.
pub async fn missing(cluster: &Cluster, needs: &BTreeSet<Need>) -> Result<Vec<Need>, kube::Error> {
    missing_for(cluster, needs, Reviewed::Own).await
}

/// The needs `who` lacks (see [`missing`]).
pub async fn missing_for(
    cluster: &Cluster,
    needs: &BTreeSet<Need>,
    who: Reviewed<'_>,
) -> Result<Vec<Need>, kube::Error> {
    let own: Api<SelfSubjectAccessReview> = Api::all(cluster.client().clone());
    let other: Api<SubjectAccessReview> = Api::all(cluster.client().clone());
    let reviews = needs.iter().map(|need| {
        let (own, other) = (own.clone(), other.clone());
        async move {
            let attributes = ResourceAttributes {
                group: Some(need.group.clone()),
                resource: Some(need.resource.clone()),
                namespace: need.namespace.clone(),
                verb: Some(need.verb.clone()),
                ..Default::default()
            };
            let allowed = match who {
                Reviewed::Own => {
                    let review = SelfSubjectAccessReview {
                        spec: SelfSubjectAccessReviewSpec {
                            resource_attributes: Some(attributes),
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    let answer = own.create(&PostParams::default(), &review).await?;
                    answer.status.is_some_and(|s| s.allowed)
                }
                Reviewed::Subject { user, groups } => {
                    let review = SubjectAccessReview {
                        spec: SubjectAccessReviewSpec {
                            resource_attributes: Some(attributes),
                            user: Some(user.to_string()),
                            groups: Some(groups.to_vec()),
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    let answer = other.create(&PostParams::default(), &review).await?;
                    answer.status.is_some_and(|s| s.allowed)
                }
            };
            Ok::<_, kube::Error>((need, allowed))
        }
    });
    let answers: Vec<Result<(&Need, bool), kube::Error>> = futures_util::StreamExt::collect(
        futures_util::StreamExt::buffer_unordered(futures_util::stream::iter(reviews), 16),
    )
    .await;
    let mut lacking = Vec::new();
    for a in answers {
        let (need, allowed) = a?;
        if !allowed {
            lacking.push(need.clone());
        }
    }
    lacking.sort();
    Ok(lacking)
}

/// The least ClusterRole (cluster-scoped and every-namespace needs) and Role (needs in one
/// namespace, one Role each) that grant `needs`, bound to ServiceAccount `sa_ns/sa_name`,
/// as a YAML stream `kubectl apply -f` takes. With `cluster_wide`, every need goes into the
/// ClusterRole (an identity that installs into many namespaces, like the test kit's).
pub fn rbac_yaml(
    needs: &BTreeSet<Need>,
    name: &str,
    sa_ns: &str,
    sa_name: &str,
    cluster_wide: bool,
) -> String {
    rbac_yaml_with(
        "# The permissions wallaroo needs to apply this spec and chart (`wallaroo rbac`).\n",
        needs,
        name,
        sa_ns,
        sa_name,
        cluster_wide,
    )
}

/// [`rbac_yaml`] under a heading of the caller's (comment lines).
pub fn rbac_yaml_with(
    heading: &str,
    needs: &BTreeSet<Need>,
    name: &str,
    sa_ns: &str,
    sa_name: &str,
    cluster_wide: bool,
) -> String {
    let mut out = heading.to_string();
    // scope (a namespace, or cluster-wide) -> group -> resource -> verbs
    type Verbs = BTreeMap<String, BTreeSet<String>>;
    let mut scopes: BTreeMap<Option<String>, BTreeMap<String, Verbs>> = BTreeMap::new();
    for n in needs {
        let scope = if cluster_wide {
            None
        } else {
            n.namespace.clone()
        };
        scopes
            .entry(scope)
            .or_default()
            .entry(n.group.clone())
            .or_default()
            .entry(n.resource.clone())
            .or_default()
            .insert(n.verb.clone());
    }
    for (scope, groups) in &scopes {
        // Resources of one group with the same verbs share a rule.
        let mut rules: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
        for (group, resources) in groups {
            let mut by_verbs: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
            for (resource, verbs) in resources {
                let mut verbs: Vec<String> = verbs.iter().cloned().collect();
                verbs.sort_by_key(|v| verb_order(v));
                by_verbs.entry(verbs).or_default().push(resource.clone());
            }
            for (verbs, resources) in by_verbs {
                rules.push((group.clone(), resources, verbs));
            }
        }
        let (kind, meta) = match scope {
            None => ("ClusterRole", format!("  name: {name}\n")),
            Some(ns) => ("Role", format!("  name: {name}\n  namespace: {ns}\n")),
        };
        out.push_str(&format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}\nmetadata:\n{meta}rules:\n"
        ));
        for (group, resources, verbs) in rules {
            out.push_str(&format!(
                "  - apiGroups: [{}]\n    resources: [{}]\n    verbs: [{}]\n",
                quote(&group),
                resources
                    .iter()
                    .map(|r| quote(r))
                    .collect::<Vec<_>>()
                    .join(", "),
                verbs
                    .iter()
                    .map(|v| quote(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        out.push_str(&format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}Binding\nmetadata:\n{meta}roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: {kind}\n  name: {name}\nsubjects:\n  - kind: ServiceAccount\n    name: {sa_name}\n    namespace: {sa_ns}\n"
        ));
    }
    out
}

fn quote(s: &str) -> String {
    format!("\"{s}\"")
}

fn verb_order(v: &str) -> usize {
    [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ]
    .iter()
    .position(|x| *x == v)
    .unwrap_or(99)
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
        let create_cron = Need {
            group: "batch".into(),
            resource: "cronjobs".into(),
            namespace: Some("wallaroo".into()),
            verb: "create".into(),
        };
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

    #[test]
    fn the_yaml_has_a_role_per_namespace_and_a_cluster_role() {
        let t = Touches {
            namespace: "wallaroo".into(),
            helm: true,
            nodes: true,
            secrets_in: ["wallaroo".to_string()].into(),
            ..Touches::default()
        };
        let yaml = rbac_yaml(&needs(&t), "wallaroo", "wallaroo-system", "wallaroo", false);
        assert!(
            yaml.contains("kind: ClusterRole\nmetadata:\n  name: wallaroo\n"),
            "{yaml}"
        );
        assert!(
            yaml.contains("kind: Role\nmetadata:\n  name: wallaroo\n  namespace: wallaroo\n"),
            "{yaml}"
        );
        assert!(
            yaml.contains("resources: [\"nodes\"]\n    verbs: [\"get\", \"list\", \"patch\"]"),
            "{yaml}"
        );
        let docs: Vec<Value> = serde_saphyr::from_multiple(&yaml).unwrap();
        assert_eq!(docs.len(), 4, "two roles and their bindings");
    }
}
