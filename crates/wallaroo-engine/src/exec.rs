//! The concurrent DAG walk: ready steps run up to a parallelism bound; a step starts when all
//! its predecessors succeeded; after a failure or an interrupt no new step starts, running
//! ones finish, and the rest are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How each step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Succeeded,
    Failed(String),
    /// Not started: a step failed, or the run was interrupted.
    Skipped,
}

/// The result of a walk.
#[derive(Debug, Clone)]
pub struct WalkReport {
    pub outcomes: BTreeMap<NodeIndex, StepOutcome>,
    pub interrupted: bool,
}

impl WalkReport {
    pub fn failed(&self) -> usize {
        self.outcomes
            .values()
            .filter(|o| matches!(o, StepOutcome::Failed(_)))
            .count()
    }
}

/// Walks `graph`. `run` starts a step; `finished` is called on the calling task as each step
/// ends, in completion order, before any step that depends on it starts (the apply loop
/// writes the lockfile there). `stop` turning true is an interrupt (Ctrl-C). With
/// `keep_going`, a failure stops only the steps that depend on it; every other step runs.
pub async fn walk<N, F, Fut>(
    graph: &DiGraph<N, ()>,
    parallelism: usize,
    keep_going: bool,
    mut stop: Option<watch::Receiver<bool>>,
    mut run: F,
    mut finished: impl FnMut(NodeIndex, &Result<(), String>),
) -> WalkReport
where
    F: FnMut(NodeIndex) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let parallelism = parallelism.max(1);
    let mut waiting_on: BTreeMap<NodeIndex, usize> = graph
        .node_indices()
        .map(|n| (n, graph.neighbors_directed(n, Direction::Incoming).count()))
        .collect();
    let mut ready: BTreeSet<NodeIndex> = waiting_on
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(n, _)| *n)
        .collect();
    let mut running = JoinSet::new();
    let mut task_node = BTreeMap::new();
    let mut outcomes = BTreeMap::new();
    let mut stopping = false;
    let mut interrupted = false;
    loop {
        while !stopping && running.len() < parallelism {
            let Some(n) = ready.pop_first() else { break };
            let fut = run(n);
            let handle = running.spawn(fut);
            task_node.insert(handle.id(), n);
        }
        if running.is_empty() {
            break;
        }
        let stop_changed = async {
            match stop.as_mut() {
                Some(rx) if !*rx.borrow() => rx.changed().await.is_ok(),
                Some(_) => true,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            joined = running.join_next_with_id() => {
                let (id, result) = match joined.expect("the set is not empty") {
                    Ok((id, r)) => (id, r),
                    Err(e) => (e.id(), Err(format!("the step panicked: {e}"))),
                };
                let n = task_node.remove(&id).expect("every task belongs to a node");
                finished(n, &result);
                match result {
                    Ok(()) => {
                        outcomes.insert(n, StepOutcome::Succeeded);
                        for next in graph.neighbors_directed(n, Direction::Outgoing) {
                            let d = waiting_on.get_mut(&next).expect("every node is counted");
                            *d -= 1;
                            if *d == 0 {
                                ready.insert(next);
                            }
                        }
                    }
                    Err(e) => {
                        outcomes.insert(n, StepOutcome::Failed(e));
                        stopping |= !keep_going;
                    }
                }
            }
            true = stop_changed, if !interrupted => {
                interrupted = true;
                stopping = true;
            }
        }
    }
    for n in graph.node_indices() {
        outcomes.entry(n).or_insert(StepOutcome::Skipped);
    }
    WalkReport {
        outcomes,
        interrupted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    fn chain_and_fan() -> DiGraph<&'static str, ()> {
        // a -> b -> d, a -> c -> d, e alone.
        let mut g = DiGraph::new();
        let a = g.add_node("a");
        let b = g.add_node("b");
        let c = g.add_node("c");
        let d = g.add_node("d");
        g.add_node("e");
        g.extend_with_edges([(a, b), (a, c), (b, d), (c, d)]);
        g
    }

    #[tokio::test]
    async fn order_follows_edges_and_independent_steps_overlap() {
        let g = chain_and_fan();
        let log = Arc::new(Mutex::new(Vec::new()));
        let t0 = Instant::now();
        let report = walk(
            &g,
            4,
            false,
            None,
            |n| {
                let log = log.clone();
                let name = g[n];
                async move {
                    let start = t0.elapsed();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    log.lock().unwrap().push((name, start, t0.elapsed()));
                    Ok(())
                }
            },
            |_, _| {},
        )
        .await;
        assert!(
            report
                .outcomes
                .values()
                .all(|o| *o == StepOutcome::Succeeded)
        );
        let log = log.lock().unwrap();
        let get = |x| log.iter().find(|(n, _, _)| *n == x).copied().unwrap();
        assert!(
            get("b").1 >= get("a").2
                && get("c").1 >= get("a").2
                && get("d").1 >= get("b").2.max(get("c").2)
        );
        // b and c (and a with e) ran at the same time.
        assert!(
            get("b").1 < get("c").2 && get("c").1 < get("b").2,
            "{log:?}"
        );
        assert!(
            get("a").1 < get("e").2 && get("e").1 < get("a").2,
            "{log:?}"
        );
    }

    #[tokio::test]
    async fn a_failure_stops_new_steps_and_skips_the_rest() {
        let g = chain_and_fan();
        let started = Arc::new(Mutex::new(Vec::new()));
        let report = walk(
            &g,
            1,
            false,
            None,
            |n| {
                let started = started.clone();
                let name = g[n];
                async move {
                    started.lock().unwrap().push(name);
                    if name == "b" {
                        Err("boom".into())
                    } else {
                        Ok(())
                    }
                }
            },
            |_, _| {},
        )
        .await;
        let by_name: BTreeMap<&str, StepOutcome> = report
            .outcomes
            .iter()
            .map(|(n, o)| (g[*n], o.clone()))
            .collect();
        assert_eq!(by_name["a"], StepOutcome::Succeeded);
        assert_eq!(by_name["b"], StepOutcome::Failed("boom".into()));
        assert_eq!(by_name["c"], StepOutcome::Skipped);
        assert_eq!(by_name["d"], StepOutcome::Skipped);
        assert_eq!(*started.lock().unwrap(), ["a", "b"]);
    }

    #[tokio::test]
    async fn keep_going_runs_every_independent_step_and_skips_only_dependants() {
        let g = chain_and_fan();
        let report = walk(
            &g,
            1,
            true,
            None,
            |n| {
                let name = g[n];
                async move {
                    if name == "b" {
                        Err("boom".into())
                    } else {
                        Ok(())
                    }
                }
            },
            |_, _| {},
        )
        .await;
        let by_name: BTreeMap<&str, StepOutcome> = report
            .outcomes
            .iter()
            .map(|(n, o)| (g[*n], o.clone()))
            .collect();
        assert_eq!(by_name["b"], StepOutcome::Failed("boom".into()));
        assert_eq!(by_name["c"], StepOutcome::Succeeded, "independent of b");
        assert_eq!(by_name["e"], StepOutcome::Succeeded);
        assert_eq!(by_name["d"], StepOutcome::Skipped, "depends on b");
    }

    #[tokio::test]
    async fn running_steps_finish_after_an_interrupt() {
        let g = chain_and_fan();
        let (tx, rx) = watch::channel(false);
        let report = walk(
            &g,
            2,
            false,
            Some(rx),
            |n| {
                let name = g[n];
                let tx = tx.clone();
                async move {
                    if name == "a" {
                        tx.send(true).unwrap();
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                    Ok(())
                }
            },
            |_, _| {},
        )
        .await;
        assert!(report.interrupted);
        assert_eq!(
            report.outcomes[&NodeIndex::new(0)],
            StepOutcome::Succeeded,
            "a ran to its end"
        );
        assert_eq!(report.outcomes[&NodeIndex::new(3)], StepOutcome::Skipped);
    }
}
