//! `wallaroo rbac`'s output: the least ClusterRole and Roles that grant a set of needs, their
//! bindings to one ServiceAccount, and the Namespaces those Roles live in, first, so that the
//! stream applies on a cluster where the release's namespace does not exist yet.

use std::collections::{BTreeMap, BTreeSet};

use super::Need;

/// Who the roles are for, and how they are laid out.
#[derive(Debug, Clone, Copy)]
pub struct Grantee<'a> {
    /// The name of every Role, ClusterRole and binding.
    pub name: &'a str,
    /// The ServiceAccount bound: namespace and name.
    pub service_account: (&'a str, &'a str),
    /// Everything in one ClusterRole (an identity that installs into many namespaces, like
    /// the test kit's), instead of a Role in each namespace.
    pub cluster_wide: bool,
}

/// The least ClusterRole (cluster-scoped and every-namespace needs) and Role (needs in one
/// namespace, one Role each) that grant `needs`, bound to the grantee's ServiceAccount, as a
/// YAML stream `kubectl apply -f` takes, under `heading` (comment lines). Each namespace that
/// holds a Role is created first: a first install's namespace does not exist until wallaroo
/// would create it, and wallaroo adopts it as it finds it.
pub fn rbac_yaml(heading: &str, needs: &BTreeSet<Need>, to: &Grantee<'_>) -> String {
    let mut out = heading.to_string();
    // scope (a namespace, or cluster-wide) -> the needs granted there
    let mut scopes: BTreeMap<Option<String>, Vec<&Need>> = BTreeMap::new();
    for n in needs {
        let scope = if to.cluster_wide || n.is_non_resource() {
            None
        } else {
            n.namespace.clone()
        };
        scopes.entry(scope).or_default().push(n);
    }
    for ns in scopes.keys().flatten() {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"
        ));
    }
    let (sa_ns, sa_name) = to.service_account;
    let name = to.name;
    for (scope, needs) in &scopes {
        let (kind, meta) = match scope {
            None => ("ClusterRole", format!("  name: {name}\n")),
            Some(ns) => ("Role", format!("  name: {name}\n  namespace: {ns}\n")),
        };
        out.push_str(&format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}\nmetadata:\n{meta}rules:\n"
        ));
        out.push_str(&rules(needs));
        out.push_str(&format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}Binding\nmetadata:\n{meta}roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: {kind}\n  name: {name}\nsubjects:\n  - kind: ServiceAccount\n    name: {sa_name}\n    namespace: {sa_ns}\n"
        ));
    }
    out
}

/// The rules of one role: resources of a group (and object name, when a need names one)
/// with the same verbs share a rule; non-resource URLs with the same verbs share one.
fn rules(needs: &[&Need]) -> String {
    // (group, name) -> resource -> verbs
    type Verbs = BTreeMap<String, BTreeSet<String>>;
    let mut resources: BTreeMap<(String, Option<String>), Verbs> = BTreeMap::new();
    let mut urls: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for n in needs {
        if n.is_non_resource() {
            urls.entry(n.resource.clone())
                .or_default()
                .insert(n.verb.clone());
            continue;
        }
        resources
            .entry((n.group.clone(), n.name.clone()))
            .or_default()
            .entry(n.resource.clone())
            .or_default()
            .insert(n.verb.clone());
    }
    let mut out = String::new();
    for ((group, name), by_resource) in resources {
        let mut by_verbs: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
        for (resource, verbs) in by_resource {
            by_verbs.entry(sorted(verbs)).or_default().push(resource);
        }
        for (verbs, resources) in by_verbs {
            out.push_str(&format!(
                "  - apiGroups: [{}]\n    resources: [{}]\n",
                quote(&group),
                list(&resources)
            ));
            if let Some(name) = &name {
                out.push_str(&format!("    resourceNames: [{}]\n", quote(name)));
            }
            out.push_str(&format!("    verbs: [{}]\n", list(&verbs)));
        }
    }
    let mut by_verbs: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for (url, verbs) in urls {
        by_verbs.entry(sorted(verbs)).or_default().push(url);
    }
    for (verbs, urls) in by_verbs {
        out.push_str(&format!(
            "  - nonResourceURLs: [{}]\n    verbs: [{}]\n",
            list(&urls),
            list(&verbs)
        ));
    }
    out
}

fn sorted(verbs: BTreeSet<String>) -> Vec<String> {
    let mut verbs: Vec<String> = verbs.into_iter().collect();
    verbs.sort_by_key(|v| verb_order(v));
    verbs
}

fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| quote(s))
        .collect::<Vec<_>>()
        .join(", ")
}

fn quote(s: &str) -> String {
    format!("\"{s}\"")
}

fn verb_order(v: &str) -> usize {
    [
        "get", "list", "watch", "create", "update", "patch", "delete", "bind", "escalate",
    ]
    .iter()
    .position(|x| *x == v)
    .unwrap_or(99)
}

#[cfg(test)]
mod tests {
    use super::super::{Touches, needs};
    use super::*;
    use serde_json::Value;

    const TO: Grantee<'static> = Grantee {
        name: "wallaroo",
        service_account: ("wallaroo-system", "wallaroo"),
        cluster_wide: false,
    };

    #[test]
    fn the_yaml_has_the_namespace_first_a_role_per_namespace_and_a_cluster_role() {
        let t = Touches {
            namespace: "wallaroo".into(),
            helm: true,
            nodes: true,
            secrets_in: ["wallaroo".to_string()].into(),
            ..Touches::default()
        };
        let yaml = rbac_yaml("# h\n", &needs(&t), &TO);
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
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding"
            ]
        );
        assert_eq!(docs[0]["metadata"]["name"], "wallaroo");
    }

    #[test]
    fn named_objects_and_urls_get_rules_of_their_own() {
        let need =
            |group: &str, resource: &str, ns: Option<&str>, verb: &str, name: Option<&str>| Need {
                group: group.into(),
                resource: resource.into(),
                namespace: ns.map(String::from),
                verb: verb.into(),
                name: name.map(String::from),
            };
        let needs: BTreeSet<Need> = [
            need("", "configmaps", Some("a"), "get", Some("settings")),
            need("", "configmaps", Some("a"), "list", None),
            need("", "/metrics", None, "get", None),
            need(
                "rbac.authorization.k8s.io",
                "clusterroles",
                Some("a"),
                "bind",
                Some("view"),
            ),
        ]
        .into();
        let yaml = rbac_yaml("", &needs, &TO);
        let docs: Vec<Value> = serde_saphyr::from_multiple(&yaml).unwrap();
        let role = docs.iter().find(|d| d["kind"] == "Role").unwrap();
        let rules = role["rules"].as_array().unwrap();
        assert!(rules.contains(&serde_json::json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"], "verbs": ["get"]})), "{yaml}");
        assert!(rules.contains(&serde_json::json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]})), "{yaml}");
        assert!(rules.contains(&serde_json::json!({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "resourceNames": ["view"], "verbs": ["bind"]})), "{yaml}");
        let cluster = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
        assert_eq!(
            cluster["rules"],
            serde_json::json!([{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}])
        );
    }
}
