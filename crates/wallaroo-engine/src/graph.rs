//! The plan DAG (petgraph): dependency edges, cycle reports, deterministic order, DOT.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::address::Address;
use crate::error::EngineError;
use crate::plan::{Action, Plan};

/// Nodes are indexes into a list of resources; an edge `a -> b` means `a` runs before `b`.
pub type StepGraph = DiGraph<Address, ()>;

/// Builds the graph of `items` (address, action, dependencies). Creates and updates run
/// after their dependencies; deletes run before the deletes of what they depended on.
pub fn build(items: &[(Address, Action, Vec<Address>)]) -> Result<StepGraph, EngineError> {
    let mut g = StepGraph::new();
    let mut index = BTreeMap::new();
    for (addr, _, _) in items {
        index.insert(addr.clone(), g.add_node(addr.clone()));
    }
    let actions: BTreeMap<&Address, Action> = items.iter().map(|(a, act, _)| (a, *act)).collect();
    for (addr, action, deps) in items {
        let me = index[addr];
        for dep in deps {
            let Some(&d) = index.get(dep) else {
                // A dependency outside the scope (a --target plan) is already in place.
                continue;
            };
            let dep_deleted = actions[dep] == Action::Delete;
            if *action == Action::Delete {
                // A delete runs before what it depended on goes; a dependency that stays
                // asks no order (and an edge to it could close a cycle with the changes
                // that must run before this delete).
                if matches!(actions[dep], Action::Delete | Action::Replace) {
                    g.update_edge(me, d, ());
                }
            } else if dep_deleted {
                // A change of what used a resource leaving the spec runs before its delete.
                g.update_edge(me, d, ());
            } else {
                g.update_edge(d, me, ());
            }
        }
    }
    if let Err(cycle) = petgraph::algo::toposort(&g, None) {
        return Err(EngineError::Cycle {
            resources: cycle_members(&g, cycle.node_id()),
        });
    }
    Ok(g)
}

/// The addresses of the strongly connected component holding `node`, in cycle order.
fn cycle_members(g: &StepGraph, node: NodeIndex) -> Vec<Address> {
    let cycles: Vec<Vec<NodeIndex>> = petgraph::algo::tarjan_scc(g)
        .into_iter()
        .filter(|c| c.len() > 1)
        .collect();
    let scc = cycles.iter().find(|c| c.contains(&node)).or(cycles.first());
    let mut members: Vec<Address> = match scc {
        Some(c) => c.iter().map(|n| g[*n].clone()).collect(),
        None => vec![g[node].clone()],
    };
    members.sort();
    members
}

/// Topological order, ties broken by address so plans are stable.
pub fn ordered(g: &StepGraph) -> Vec<NodeIndex> {
    let mut indegree: BTreeMap<NodeIndex, usize> = g
        .node_indices()
        .map(|n| (n, g.neighbors_directed(n, Direction::Incoming).count()))
        .collect();
    let mut ready: BTreeSet<(Address, NodeIndex)> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(n, _)| (g[*n].clone(), *n))
        .collect();
    let mut out = Vec::with_capacity(g.node_count());
    while let Some(first) = ready.pop_first() {
        let n = first.1;
        out.push(n);
        for next in g.neighbors_directed(n, Direction::Outgoing) {
            let d = indegree.get_mut(&next).expect("every node has an indegree");
            *d -= 1;
            if *d == 0 {
                ready.insert((g[next].clone(), next));
            }
        }
    }
    out
}

/// Addresses in scope for `--target`: those a target contains, plus everything they
/// depend on, transitively.
pub fn target_scope(
    targets: &[Address],
    deps: &BTreeMap<Address, Vec<Address>>,
) -> BTreeSet<Address> {
    let mut scope = BTreeSet::new();
    let mut todo: Vec<Address> = deps
        .keys()
        .filter(|a| targets.iter().any(|t| t.contains(a)))
        .cloned()
        .collect();
    while let Some(a) = todo.pop() {
        if scope.insert(a.clone()) {
            todo.extend(deps.get(&a).into_iter().flatten().cloned());
        }
    }
    scope
}

/// A graph in Graphviz DOT: a plan's (nodes labelled with their action) or, with no
/// actions, the spec's.
pub fn to_dot(nodes: &[(Address, Option<Action>, Vec<Address>)]) -> Result<String, EngineError> {
    let items: Vec<(Address, Action, Vec<Address>)> = nodes
        .iter()
        .map(|(a, act, d)| (a.clone(), act.unwrap_or(Action::Create), d.clone()))
        .collect();
    let g = build(&items)?;
    let actions: BTreeMap<&Address, Option<Action>> =
        nodes.iter().map(|(a, act, _)| (a, *act)).collect();
    let mut out =
        String::from("digraph wallaroo {\n  rankdir = \"LR\";\n  node [shape = \"box\"];\n");
    for n in ordered(&g) {
        let name = g[n].to_string();
        let label = match actions[&g[n]] {
            Some(a) if a != Action::NoOp => format!("{} {name}", a.symbol()),
            _ => name.clone(),
        };
        out.push_str(&format!(
            "  {} [label = {}];\n",
            dot_quote(&name),
            dot_quote(&label)
        ));
    }
    let mut edges: Vec<(String, String)> = g
        .edge_indices()
        .filter_map(|e| g.edge_endpoints(e))
        .map(|(a, b)| (g[a].to_string(), g[b].to_string()))
        .collect();
    edges.sort();
    for (a, b) in edges {
        out.push_str(&format!("  {} -> {};\n", dot_quote(&a), dot_quote(&b)));
    }
    out.push_str("}\n");
    Ok(out)
}

/// The DOT graph of a plan.
pub fn plan_dot(plan: &Plan) -> Result<String, EngineError> {
    let nodes: Vec<_> = plan
        .changes
        .iter()
        .map(|c| (c.address.clone(), Some(c.action), c.depends_on.clone()))
        .collect();
    to_dot(&nodes)
}

fn dot_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Address {
        s.parse().unwrap()
    }

    #[test]
    fn creates_follow_dependencies_and_deletes_reverse_them() {
        let items = vec![
            (a("namespace.w"), Action::Create, vec![]),
            (a("secret.w/tls"), Action::Create, vec![a("namespace.w")]),
            (a("helm_release.w"), Action::Create, vec![a("secret.w/tls")]),
        ];
        let g = build(&items).unwrap();
        let order: Vec<String> = ordered(&g).into_iter().map(|n| g[n].to_string()).collect();
        assert_eq!(order, ["namespace.w", "secret.w/tls", "helm_release.w"]);

        let items: Vec<_> = items
            .into_iter()
            .map(|(x, _, d)| (x, Action::Delete, d))
            .collect();
        let g = build(&items).unwrap();
        let order: Vec<String> = ordered(&g).into_iter().map(|n| g[n].to_string()).collect();
        assert_eq!(order, ["helm_release.w", "secret.w/tls", "namespace.w"]);
    }

    #[test]
    fn cycles_name_their_members() {
        let items = vec![
            (a("x.a"), Action::Create, vec![a("x.c")]),
            (a("x.b"), Action::Create, vec![a("x.a")]),
            (a("x.c"), Action::Create, vec![a("x.b")]),
            (a("x.d"), Action::Create, vec![]),
        ];
        let err = build(&items).unwrap_err().to_string();
        assert!(
            err.contains("x.a")
                && err.contains("x.b")
                && err.contains("x.c")
                && !err.contains("x.d"),
            "{err}"
        );
    }

    #[test]
    fn dot_lists_nodes_and_edges() {
        let dot = to_dot(&[
            (a("namespace.w"), None, vec![]),
            (
                a("secret.w/tls"),
                Some(Action::Create),
                vec![a("namespace.w")],
            ),
        ])
        .unwrap();
        assert!(dot.starts_with("digraph wallaroo {"));
        assert!(
            dot.contains("\"secret.w/tls\" [label = \"+ secret.w/tls\"];"),
            "{dot}"
        );
        assert!(
            dot.contains("\"namespace.w\" -> \"secret.w/tls\";"),
            "{dot}"
        );
    }

    #[test]
    fn target_scope_takes_dependencies() {
        let deps = BTreeMap::from([
            (a("namespace.w"), vec![]),
            (a("secret.w/tls"), vec![a("namespace.w")]),
            (a("user[\"a@b.c\"]"), vec![a("secret.w/tls")]),
            (a("image[\"x\"]"), vec![]),
        ]);
        let scope = target_scope(&[a("secret.w/tls")], &deps);
        assert_eq!(
            scope.into_iter().map(|x| x.to_string()).collect::<Vec<_>>(),
            ["namespace.w", "secret.w/tls"]
        );
    }
}
