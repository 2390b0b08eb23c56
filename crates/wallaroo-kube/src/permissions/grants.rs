//! What the chart's own RBAC objects take to create. Kubernetes lets an identity create a
//! Role or ClusterRole only when it holds every rule in it (or `escalate` on that kind), and a
//! RoleBinding or ClusterRoleBinding only when it holds every rule of the role bound (or
//! `bind` on that role, by name); a ClusterRole with an `aggregationRule` gathers rules it
//! cannot know ahead, so only `escalate` creates it. Each of the chart's RBAC objects becomes
//! a [`Grant`]: the needs that let an identity make it, and the `escalate`/`bind` needs that
//! do instead.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Need;

const RBAC: &str = "rbac.authorization.k8s.io";

/// How `wallaroo rbac` lets its identity create the chart's Roles and bindings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChartRbac {
    /// By holding every rule they grant (the least privilege).
    #[default]
    Rules,
    /// By `escalate` on roles and cluster roles and `bind` on the roles bound.
    Escalate,
}

/// One RBAC object of the chart and what creating (or changing) it takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// `Role ns/name`, `ClusterRoleBinding name`.
    pub object: String,
    /// Holding all of these lets the identity make it: the rules it grants.
    pub rules: BTreeSet<Need>,
    /// Or all of these: `escalate` on the role's kind, `bind` on the role bound.
    pub instead: BTreeSet<Need>,
}

impl Grant {
    /// The needs `wallaroo rbac` grants for this object.
    pub fn needs(&self, how: ChartRbac) -> &BTreeSet<Need> {
        match how {
            ChartRbac::Rules => &self.rules,
            ChartRbac::Escalate => &self.instead,
        }
    }
}

/// The Roles, ClusterRoles and bindings of rendered manifests (what [`grants_of`] reads).
pub fn rbac_objects(manifests: &str) -> Vec<Value> {
    crate::helm::manifest_documents(manifests)
        .filter_map(|doc| serde_saphyr::from_str::<Option<Value>>(doc).ok().flatten())
        .filter(|v| {
            v["apiVersion"]
                .as_str()
                .is_some_and(|a| a.starts_with(RBAC))
                && matches!(
                    v["kind"].as_str(),
                    Some("Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding")
                )
        })
        .collect()
}

/// What each of `objects` (from [`rbac_objects`]) takes to create, in release namespace `ns`.
pub fn grants_of(objects: &[Value], ns: &str) -> Vec<Grant> {
    let name_of = |v: &Value| {
        v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let ns_of = |v: &Value| {
        v["metadata"]["namespace"]
            .as_str()
            .unwrap_or(ns)
            .to_string()
    };
    let mut roles: BTreeMap<(String, String), &Value> = BTreeMap::new();
    let mut cluster_roles: BTreeMap<String, &Value> = BTreeMap::new();
    for v in objects {
        match v["kind"].as_str() {
            Some("Role") => {
                roles.insert((ns_of(v), name_of(v)), v);
            }
            Some("ClusterRole") => {
                cluster_roles.insert(name_of(v), v);
            }
            _ => {}
        }
    }
    let aggregated = |v: &Value| !v["aggregationRule"].is_null();
    let mut out = Vec::new();
    for v in objects {
        let name = name_of(v);
        match v["kind"].as_str() {
            Some("Role") => {
                let ns = ns_of(v);
                out.push(Grant {
                    object: format!("Role {ns}/{name}"),
                    rules: rules_of(v, Some(&ns)),
                    instead: one(Need::new(RBAC, "roles", Some(&ns), "escalate")),
                });
            }
            Some("ClusterRole") => {
                let escalate = one(Need::new(RBAC, "clusterroles", None, "escalate"));
                out.push(Grant {
                    object: format!("ClusterRole {name}"),
                    // Its rules are gathered from other ClusterRoles after it is made: the API
                    // server asks for `escalate` (or every right there is).
                    rules: if aggregated(v) {
                        escalate.clone()
                    } else {
                        rules_of(v, None)
                    },
                    instead: escalate,
                });
            }
            Some(kind @ ("RoleBinding" | "ClusterRoleBinding")) => {
                let scope = (kind == "RoleBinding").then(|| ns_of(v));
                let role_kind = v["roleRef"]["kind"].as_str().unwrap_or_default();
                let role = v["roleRef"]["name"].as_str().unwrap_or_default();
                let resource = if role_kind == "Role" {
                    "roles"
                } else {
                    "clusterroles"
                };
                let mut bind = Need::new(RBAC, resource, scope.as_deref(), "bind");
                bind.name = Some(role.to_string());
                let bound = match (role_kind, &scope) {
                    ("Role", Some(ns)) => roles.get(&(ns.clone(), role.to_string())).copied(),
                    ("ClusterRole", _) => {
                        cluster_roles.get(role).copied().filter(|c| !aggregated(c))
                    }
                    _ => None,
                };
                let object = match &scope {
                    Some(ns) => format!("{kind} {ns}/{name}"),
                    None => format!("{kind} {name}"),
                };
                out.push(Grant {
                    object,
                    // A role the chart does not carry (the cluster's `view`, say), or one whose
                    // rules are gathered later, is bound by name.
                    rules: match bound {
                        Some(r) => rules_of(r, scope.as_deref()),
                        None => one(bind.clone()),
                    },
                    instead: one(bind),
                });
            }
            _ => {}
        }
    }
    out
}

/// Of `grants`, the needs whose lack stops their creation: for each grant neither whose rules
/// nor whose `instead` the identity holds all of (by `lacking`), the rules it lacks, with
/// the object that grants them.
pub fn lacking_of<'g>(grants: &'g [Grant], lacking: &[Need]) -> Vec<(Need, &'g str)> {
    let lacks = |n: &Need| lacking.contains(n);
    let mut out = Vec::new();
    for g in grants {
        if g.rules.iter().any(lacks) && g.instead.iter().any(lacks) {
            out.extend(
                g.rules
                    .iter()
                    .filter(|n| lacks(n))
                    .map(|n| (n.clone(), g.object.as_str())),
            );
        }
    }
    out
}

fn one(n: Need) -> BTreeSet<Need> {
    [n].into()
}

/// The needs a role's rules grant, in `namespace` (`None`: cluster-wide): each API group,
/// resource, verb and object name of each rule; a rule's non-resource URLs only cluster-wide
/// (a RoleBinding cannot grant them).
fn rules_of(role: &Value, namespace: Option<&str>) -> BTreeSet<Need> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        let verbs = strings(&rule["verbs"]);
        if namespace.is_none() {
            for url in strings(&rule["nonResourceURLs"]) {
                for verb in &verbs {
                    out.insert(Need::new("", &url, None, verb));
                }
            }
        }
        let names = strings(&rule["resourceNames"]);
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in &verbs {
                    let need = Need::new(&group, &resource, namespace, verb);
                    if names.is_empty() {
                        out.insert(need.clone());
                    }
                    for name in &names {
                        out.insert(Need {
                            name: Some(name.clone()),
                            ..need.clone()
                        });
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHART: &str = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: reader
rules:
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["get", "list"]
  - apiGroups: [""]
    resources: ["secrets"]
    resourceNames: ["app-token"]
    verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: reader
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects: [{kind: ServiceAccount, name: app}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: node-reader
rules:
  - apiGroups: [""]
    resources: ["nodes"]
    verbs: ["get"]
  - nonResourceURLs: ["/metrics"]
    verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: viewer
  namespace: other
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: ServiceAccount, name: app}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: gathered
aggregationRule:
  clusterRoleSelectors: [{matchLabels: {x: "true"}}]
rules: []
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: not-rbac
"#;

    fn grant<'a>(grants: &'a [Grant], object: &str) -> &'a Grant {
        grants
            .iter()
            .find(|g| g.object == object)
            .unwrap_or_else(|| panic!("{object} in {grants:?}"))
    }

    #[test]
    fn each_rbac_object_needs_what_it_grants_or_escalate_and_bind() {
        let objects = rbac_objects(CHART);
        assert_eq!(objects.len(), 5, "the ConfigMap is not RBAC");
        let grants = grants_of(&objects, "app-ns");
        let role = grant(&grants, "Role app-ns/reader");
        assert!(
            role.rules
                .contains(&Need::new("", "configmaps", Some("app-ns"), "list"))
        );
        let named = Need {
            name: Some("app-token".into()),
            ..Need::new("", "secrets", Some("app-ns"), "get")
        };
        assert!(role.rules.contains(&named), "only the named Secret");
        assert!(
            !role
                .rules
                .contains(&Need::new("", "secrets", Some("app-ns"), "get"))
        );
        assert_eq!(
            role.instead,
            one(Need::new(RBAC, "roles", Some("app-ns"), "escalate"))
        );
        // The binding of a role the chart carries needs that role's rules.
        assert_eq!(
            grant(&grants, "RoleBinding app-ns/reader").rules,
            role.rules
        );
        let cluster = grant(&grants, "ClusterRole node-reader");
        assert!(cluster.rules.contains(&Need::new("", "nodes", None, "get")));
        assert!(
            cluster
                .rules
                .contains(&Need::new("", "/metrics", None, "get"))
        );
        // A role the chart does not carry is bound by name, in the binding's namespace.
        let viewer = grant(&grants, "RoleBinding other/viewer");
        let bind = Need {
            name: Some("view".into()),
            ..Need::new(RBAC, "clusterroles", Some("other"), "bind")
        };
        assert_eq!(viewer.rules, one(bind.clone()));
        assert_eq!(
            bind.describe(),
            "bind clusterroles.rbac.authorization.k8s.io named \"view\" in namespace other"
        );
        // An aggregated ClusterRole takes escalate whichever way.
        let gathered = grant(&grants, "ClusterRole gathered");
        assert_eq!(gathered.rules, gathered.instead);
    }

    #[test]
    fn a_grant_is_lacking_only_when_neither_way_is_held() {
        let grants = grants_of(&rbac_objects(CHART), "app-ns");
        let role = grant(&grants, "Role app-ns/reader");
        let list = Need::new("", "configmaps", Some("app-ns"), "list");
        // Lacking one rule but holding escalate: made.
        let lacking = vec![list.clone()];
        assert!(lacking_of(&grants, &lacking).is_empty());
        // Lacking it and escalate: that rule is named, with the object granting it.
        let mut lacking = vec![list.clone()];
        lacking.extend(role.instead.iter().cloned());
        let found = lacking_of(&grants, &lacking);
        assert!(
            found.contains(&(list.clone(), "Role app-ns/reader")),
            "{found:?}"
        );
        // The binding of that Role: made, since `bind` on it is held.
        assert!(
            !found.iter().any(|(_, o)| o.starts_with("RoleBinding")),
            "{found:?}"
        );
        let bind = grant(&grants, "RoleBinding app-ns/reader").instead.clone();
        lacking.extend(bind);
        let found = lacking_of(&grants, &lacking);
        assert!(
            found.contains(&(list, "RoleBinding app-ns/reader")),
            "{found:?}"
        );
    }
}
