//! Nodepools read backwards: a pool per `wallaroo.ai/node-purpose` value, selected by a label
//! only its nodes carry, or named node by node; what differs from the guide's marks is
//! reported.

use super::*;

/// The guide's pool of a `wallaroo.ai/node-purpose` value.
pub(super) fn pool_of(purpose: &str) -> String {
    match purpose {
        "pipelines" => "pipelines-x86".into(),
        other => other.to_string(),
    }
}

pub(super) fn pool_order(name: &str) -> (usize, &str) {
    let rank = ["general", "persistent", "pipelines-x86"]
        .iter()
        .position(|p| *p == name)
        .unwrap_or(3);
    (rank, name)
}

fn wallaroo_key(key: &str) -> bool {
    key.starts_with("wallaroo.ai/")
}

/// Labels Kubernetes, its distributions and its tools set on their own (`kubernetes.io`,
/// `k8s.io` and their subdomains): never an operator's pool label.
fn system_label(key: &str) -> bool {
    let Some((domain, _)) = key.split_once('/') else {
        return false;
    };
    ["kubernetes.io", "k8s.io"]
        .iter()
        .any(|d| domain == *d || domain.ends_with(&format!(".{d}")))
}

/// Labels clouds give every node of a node group: preferred as a pool's selector.
const NODE_GROUP_LABELS: &[&str] = &[
    "eks.amazonaws.com/nodegroup",
    "cloud.google.com/gke-nodepool",
    "kubernetes.azure.com/agentpool",
    "agentpool",
    "oci.oraclecloud.com/node-pool-id",
];

pub(super) fn map_nodepools(d: &mut Draft<'_>) {
    let nodes = &d.live.nodes;
    let mut groups: BTreeMap<String, Vec<&LiveNode>> = BTreeMap::new();
    for n in nodes.iter().filter(|n| n.in_scope) {
        match n.labels.get(NODE_PURPOSE_LABEL) {
            Some(purpose) => groups.entry(pool_of(purpose)).or_default().push(n),
            None => {
                let marks: Vec<&String> = n
                    .taints
                    .iter()
                    .filter(|t| wallaroo_key(t))
                    .chain(n.labels.keys().filter(|k| wallaroo_key(k)))
                    .collect();
                if !marks.is_empty() {
                    d.report.push(format!(
                        "node {} carries {} but no {NODE_PURPOSE_LABEL} label: in no pool",
                        n.name,
                        marks
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
    }
    if groups.is_empty() {
        d.report.push(format!(
            "no node carries {NODE_PURPOSE_LABEL}: no nodepool is written"
        ));
    }
    let mut names: Vec<String> = groups.keys().cloned().collect();
    names.sort_by(|a, b| pool_order(a).cmp(&pool_order(b)));
    for name in names {
        let members = &groups[&name];
        let (default_labels, default_taints) = nodepool_defaults(&name).unwrap_or_else(|| {
            let purpose = members[0].labels[NODE_PURPOSE_LABEL].clone();
            (
                BTreeMap::from([(NODE_PURPOSE_LABEL.to_string(), purpose)]),
                Vec::new(),
            )
        });
        let mut attrs = Vec::new();
        // A label the operator gave exactly these nodes selects them; else their names.
        let selector = pool_selector(members, nodes);
        match &selector {
            Some((k, v)) => attrs.push(("selector", json!({ k.clone(): v }))),
            None => attrs.push((
                "nodes",
                json!(members.iter().map(|n| &n.name).collect::<Vec<_>>()),
            )),
        }
        // Wallaroo's labels every node of the pool carries, beyond the pool's own.
        let mut labels = BTreeMap::new();
        for (k, v) in &members[0].labels {
            if wallaroo_key(k)
                && !default_labels.contains_key(k)
                && members.iter().all(|n| n.labels.get(k) == Some(v))
            {
                labels.insert(k.clone(), v.clone());
            }
        }
        if nodepool_defaults(&name).is_none() {
            labels.extend(default_labels.clone());
        }
        if !labels.is_empty() {
            attrs.push(("labels", json!(labels)));
        }
        // Wallaroo's taints: those the pool's nodes share, else the guide's.
        let sets: Vec<Vec<String>> = members
            .iter()
            .map(|n| {
                let mut t: Vec<String> = n
                    .taints
                    .iter()
                    .filter(|t| wallaroo_key(t))
                    .cloned()
                    .collect();
                t.sort();
                t
            })
            .collect();
        let mut counts: BTreeMap<&Vec<String>, usize> = BTreeMap::new();
        for s in sets.iter().filter(|s| !s.is_empty()) {
            *counts.entry(s).or_default() += 1;
        }
        let mut default_sorted = default_taints.clone();
        default_sorted.sort();
        let chosen: Vec<String> = counts
            .iter()
            .max_by_key(|(_, c)| **c)
            .map(|(s, _)| (*s).clone())
            .unwrap_or_else(|| default_sorted.clone());
        if chosen != default_sorted {
            attrs.push(("taints", json!(chosen)));
        }
        for (n, set) in members.iter().zip(&sets) {
            if *set != chosen {
                let missing: Vec<&String> = chosen.iter().filter(|t| !set.contains(t)).collect();
                let extra: Vec<&String> = set.iter().filter(|t| !chosen.contains(t)).collect();
                let mut what = Vec::new();
                if !missing.is_empty() {
                    what.push(format!(
                        "add the taint {}",
                        missing
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                if !extra.is_empty() {
                    what.push(format!(
                        "remove {}",
                        extra
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                d.report.push(format!(
                    "node {} is labelled for pool {name} but its taints differ: the plan will {} \
                     (write `taints = [...]` in nodepool \"{name}\" to keep it as it is)",
                    n.name,
                    what.join(" and ")
                ));
            }
        }
        if let Some((k, v)) = &selector {
            let which = match members.len() {
                1 => "its node is the only one".to_string(),
                n => format!("its {n} nodes are the only ones"),
            };
            d.report.push(format!(
                "nodepool {name}: {which} labelled {k}={v}, so it selects by that label \
                 (nodes that join with it join the pool)"
            ));
        }
        d.block(format!("nodepool \"{name}\""), attrs);
    }
}

/// A label (not Kubernetes' own, not Wallaroo's) that exactly `members` carry among `all`.
fn pool_selector(members: &[&LiveNode], all: &[LiveNode]) -> Option<(String, String)> {
    let first = members.first()?;
    let mut candidates: Vec<(&String, &String)> = first
        .labels
        .iter()
        .filter(|(k, _)| !system_label(k) && !wallaroo_key(k))
        .filter(|(k, v)| members.iter().all(|n| n.labels.get(*k) == Some(*v)))
        .filter(|(k, v)| {
            all.iter().filter(|n| n.labels.get(*k) == Some(*v)).count() == members.len()
        })
        .collect();
    candidates.sort_by_key(|(k, _)| (!NODE_GROUP_LABELS.contains(&k.as_str()), (*k).clone()));
    candidates
        .first()
        .map(|(k, v)| ((*k).clone(), (*v).clone()))
}
