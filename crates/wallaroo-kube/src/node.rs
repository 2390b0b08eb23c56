//! `nodepool.POOL.node["NAME"]`: the labels and taints wallaroo manages on one node.
//!
//! Only keys wallaroo manages are read, compared and written: those the spec asks for and
//! those the lockfile says wallaroo set before. Every other label and taint is left alone.
//! Taints are `key=value:Effect` strings, kept sorted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, Taint};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use wallaroo_engine::{Address, Attrs, ReadRequest, ResourceError, ResourceKind};

use crate::{is_not_found, kube_err, str_attr};

pub struct NodeKind {
    pub client: kube::Client,
}

fn labels_of(attrs: Option<&Attrs>) -> BTreeMap<String, String> {
    attrs
        .and_then(|a| a.get("labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn taints_of(attrs: Option<&Attrs>) -> Vec<String> {
    attrs
        .and_then(|a| a.get("taints"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn taint_key(t: &str) -> &str {
    t.split(['=', ':']).next().unwrap_or(t)
}

fn show(t: &Taint) -> String {
    match t.value.as_deref().unwrap_or("") {
        "" => format!("{}:{}", t.key, t.effect),
        v => format!("{}={v}:{}", t.key, t.effect),
    }
}

fn parse(t: &str) -> Result<Taint, ResourceError> {
    let (kv, effect) = t
        .rsplit_once(':')
        .ok_or_else(|| ResourceError::new(format!("taint `{t}` has no effect")))?;
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    Ok(Taint {
        key: key.into(),
        value: (!value.is_empty()).then(|| value.into()),
        effect: effect.into(),
        time_added: None,
    })
}

/// The labels and sorted taints of `node` that wallaroo manages: the keys the spec asks
/// for and the keys it set before.
fn managed_view(
    node: &Node,
    desired: Option<&Attrs>,
    prior: Option<&Attrs>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let managed_labels: BTreeSet<String> = labels_of(desired)
        .into_keys()
        .chain(labels_of(prior).into_keys())
        .collect();
    let managed_taints: BTreeSet<String> = taints_of(desired)
        .iter()
        .chain(&taints_of(prior))
        .map(|t| taint_key(t).to_string())
        .collect();
    let labels = node
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| managed_labels.contains(k))
        .collect();
    let mut taints: Vec<String> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| managed_taints.contains(&t.key))
        .map(show)
        .collect();
    taints.sort();
    (labels, taints)
}

/// `nodepool.POOL` of kind `nodepool_selector`: the same labels and taints on every node a
/// label selector matches. Live shows what all matched nodes have in common, so a node that
/// joins the pool unlabelled shows as a change.
pub struct SelectorKind {
    pub nodes: NodeKind,
    /// Reads shared with the rest of the plan: the refresh takes the LIST preflight made.
    pub cluster: crate::Cluster,
}

fn selector_of(attrs: &Attrs) -> String {
    attrs
        .get("selector")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// How a node's managed labels and taints differ from `applied` (`label k is "x", not "v"`,
/// `taint t removed`), or `None` when they do not.
fn deviation(
    labels: &BTreeMap<String, String>,
    taints: &[String],
    applied: &Attrs,
) -> Option<String> {
    let mut how = Vec::new();
    for (k, v) in labels_of(Some(applied)) {
        match labels.get(&k) {
            None => how.push(format!("label {k}={v} removed")),
            Some(now) if *now != v => how.push(format!("label {k} is \"{now}\", not \"{v}\"")),
            Some(_) => {}
        }
    }
    let want = taints_of(Some(applied));
    for t in &want {
        if !taints.contains(t) {
            how.push(format!("taint {t} removed"));
        }
    }
    for t in taints {
        if !want.contains(t) {
            how.push(format!("taint {t} added"));
        }
    }
    (!how.is_empty()).then(|| how.join("; "))
}

impl SelectorKind {
    /// The matched nodes as the plan saw them (one LIST per selector per operation).
    async fn seen(&self, attrs: &Attrs) -> Result<Arc<Vec<Node>>, ResourceError> {
        let selector = selector_of(attrs);
        self.cluster
            .nodes_matching(&selector)
            .await
            .map_err(kube_err(format!("listing nodes matching {selector}")))
    }

    /// The nodes matched now, for writing (a node may have joined since the plan).
    async fn matched(&self, attrs: &Attrs) -> Result<Vec<Node>, ResourceError> {
        let selector = selector_of(attrs);
        let api: Api<Node> = Api::all(self.nodes.client.clone());
        let list = api
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .map_err(kube_err(format!("listing nodes matching {selector}")))?;
        Ok(list.items)
    }

    async fn write_all(
        &self,
        attrs: &Attrs,
        prior: Option<&Attrs>,
        want: Option<&Attrs>,
    ) -> Result<(), ResourceError> {
        let nodes = self.matched(attrs).await?;
        if nodes.is_empty() && want.is_some() {
            return Err(ResourceError::new(format!(
                "no node matches the nodepool selector {}",
                selector_of(attrs)
            )));
        }
        for node in nodes {
            let name = node.metadata.name.unwrap_or_default();
            self.nodes.write(&name, prior, want).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl ResourceKind for SelectorKind {
    fn name(&self) -> &'static str {
        "nodepool_selector"
    }

    async fn read(&self, req: ReadRequest<'_>) -> Result<Option<Attrs>, ResourceError> {
        let Some(attrs) = req.desired.or(req.prior) else {
            return Ok(None);
        };
        let nodes = if req.during_apply {
            Arc::new(self.matched(attrs).await?)
        } else {
            self.seen(attrs).await?
        };
        let mut common: Option<(BTreeMap<String, String>, BTreeSet<String>)> = None;
        let mut node_drift = serde_json::Map::new();
        for node in nodes.iter() {
            let (labels, taints) = managed_view(node, req.desired, req.prior);
            if let Some(applied) = req.prior
                && let Some(how) = deviation(&labels, &taints, applied)
            {
                node_drift.insert(node.metadata.name.clone().unwrap_or_default(), json!(how));
            }
            let taints: BTreeSet<String> = taints.into_iter().collect();
            common = Some(match common {
                None => (labels, taints),
                Some((l, t)) => (
                    l.into_iter()
                        .filter(|(k, v)| labels.get(k) == Some(v))
                        .collect(),
                    t.intersection(&taints).cloned().collect(),
                ),
            });
        }
        let (labels, taints) = common.unwrap_or_default();
        let names: Vec<String> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        Ok(Some(Attrs::from([
            (
                "selector".to_string(),
                attrs.get("selector").cloned().unwrap_or(json!({})),
            ),
            ("labels".to_string(), json!(labels)),
            (
                "taints".to_string(),
                json!(taints.into_iter().collect::<Vec<_>>()),
            ),
            ("nodes".to_string(), json!(names)),
            // Each node that differs from what wallaroo last applied, and how: drift names
            // the node (the common labels and taints above cannot).
            ("node_drift".to_string(), Value::Object(node_drift)),
        ])))
    }

    async fn create(&self, _: &Address, desired: &Attrs) -> Result<Attrs, ResourceError> {
        self.write_all(desired, None, Some(desired)).await?;
        Ok(desired.clone())
    }

    async fn update(
        &self,
        _: &Address,
        prior: &Attrs,
        desired: &Attrs,
    ) -> Result<Attrs, ResourceError> {
        self.write_all(desired, Some(prior), Some(desired)).await?;
        Ok(desired.clone())
    }

    async fn delete(&self, _: &Address, prior: &Attrs) -> Result<(), ResourceError> {
        self.write_all(prior, Some(prior), None).await
    }

    async fn rehearse(
        &self,
        address: &Address,
        prior: Option<&Attrs>,
        desired: &Attrs,
    ) -> Result<Option<wallaroo_engine::Rehearsal>, ResourceError> {
        // Every node of the pool takes the same labels and taints: a few stand for the rest
        // (a pool of a thousand nodes is not a thousand dry runs).
        const SAMPLE: usize = 3;
        let mut names: Vec<String> = self
            .matched(desired)
            .await?
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        names.sort();
        let all = names.len();
        let answers = futures_util::future::join_all(names.iter().take(SAMPLE).map(|name| {
            self.nodes
                .rehearse_write(address, name, prior, Some(desired))
        }))
        .await;
        let mut out = wallaroo_engine::Rehearsal::default();
        for r in answers {
            if let Some(r) = r? {
                out.merge(r);
            }
        }
        if all > SAMPLE {
            out.notes.push(format!(
                "{address}: {SAMPLE} of its {all} nodes rehearsed; the others take the same labels and taints"
            ));
        }
        Ok(Some(out))
    }
}

impl NodeKind {
    async fn get(&self, name: &str) -> Result<Option<Node>, ResourceError> {
        let api: Api<Node> = Api::all(self.client.clone());
        match api.get(name).await {
            Ok(n) => Ok(Some(n)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(kube_err(format!("reading node {name}"))(e)),
        }
    }

    /// Sets `want` and removes the managed keys of `prior` that `want` does not have,
    /// retrying when the node changed in between (its kubelet updates it all the time).
    async fn write(
        &self,
        name: &str,
        prior: Option<&Attrs>,
        want: Option<&Attrs>,
    ) -> Result<(), ResourceError> {
        let mut attempt = 0;
        loop {
            match self.write_once(name, prior, want).await {
                Err(WriteError::Conflict(_)) if attempt < 8 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                }
                Err(WriteError::Conflict(e) | WriteError::Other(e)) => return Err(e),
                Ok(()) => return Ok(()),
            }
        }
    }

    async fn write_once(
        &self,
        name: &str,
        prior: Option<&Attrs>,
        want: Option<&Attrs>,
    ) -> Result<(), WriteError> {
        let patch = self.patch_of(name, prior, want).await?;
        let api: Api<Node> = Api::all(self.client.clone());
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let conflict = matches!(&e, kube::Error::Api(s) if s.code == 409);
                let err = kube_err(format!("labelling and tainting node {name}"))(e);
                Err(if conflict {
                    WriteError::Conflict(err)
                } else {
                    WriteError::Other(err)
                })
            }
        }
    }

    /// Sends the patch [`NodeKind::write_once`] would send as a dry run.
    async fn rehearse_write(
        &self,
        address: &Address,
        name: &str,
        prior: Option<&Attrs>,
        want: Option<&Attrs>,
    ) -> Result<Option<wallaroo_engine::Rehearsal>, ResourceError> {
        let mut patch = match self.patch_of(name, prior, want).await {
            Ok(p) => p,
            Err(WriteError::Conflict(e) | WriteError::Other(e)) => return Err(e),
        };
        // The write guards against a concurrent change with the resourceVersion (and tries
        // again); the rehearsal asks only whether the change would be taken, and a kubelet's
        // heartbeat in between must not read as a refusal.
        if let Some(meta) = patch["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
        }
        let api: Api<Node> = Api::all(self.client.clone());
        let result = api
            .patch(
                name,
                &PatchParams::default().dry_run().validation_strict(),
                &Patch::Merge(&patch),
            )
            .await
            .map(|_| ());
        crate::rehearse::own::answered(address, &format!("Node {name}"), None, result)
    }

    /// The merge patch that sets `want`'s labels and taints on node `name` and takes off
    /// the managed ones of `prior` that `want` does not have.
    async fn patch_of(
        &self,
        name: &str,
        prior: Option<&Attrs>,
        want: Option<&Attrs>,
    ) -> Result<Value, WriteError> {
        let Some(node) = self.get(name).await.map_err(WriteError::Other)? else {
            return Err(WriteError::Other(ResourceError::new(format!(
                "node `{name}` does not exist in the cluster; fix the nodepool's `nodes` list"
            ))));
        };
        let (want_labels, prior_labels) = (labels_of(want), labels_of(prior));
        let mut labels = serde_json::Map::new();
        for k in prior_labels
            .keys()
            .filter(|k| !want_labels.contains_key(*k))
        {
            labels.insert(k.clone(), Value::Null);
        }
        for (k, v) in &want_labels {
            labels.insert(k.clone(), json!(v));
        }
        let want_taints = taints_of(want);
        let managed: BTreeSet<String> = taints_of(prior)
            .iter()
            .chain(&want_taints)
            .map(|t| taint_key(t).to_string())
            .collect();
        let mut taints: Vec<Taint> = node
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !managed.contains(&t.key))
            .collect();
        for t in &want_taints {
            taints.push(parse(t).map_err(WriteError::Other)?);
        }
        // The resourceVersion makes the patch fail, rather than overwrite, if someone
        // changed the node's taints in between.
        Ok(json!({
            "metadata": {"labels": labels, "resourceVersion": node.metadata.resource_version},
            "spec": {"taints": taints},
        }))
    }
}

enum WriteError {
    /// The node changed since it was read: read again and retry.
    Conflict(ResourceError),
    Other(ResourceError),
}

#[async_trait]
impl ResourceKind for NodeKind {
    fn name(&self) -> &'static str {
        "node"
    }

    fn force_new(&self) -> &'static [&'static str] {
        &["name"]
    }

    async fn read(&self, req: ReadRequest<'_>) -> Result<Option<Attrs>, ResourceError> {
        let Some(attrs) = req.prior.or(req.desired) else {
            return Ok(None);
        };
        let name = str_attr(attrs, "name")?;
        let Some(node) = self.get(name).await? else {
            return Ok(None);
        };
        let (live_labels, live_taints) = managed_view(&node, req.desired, req.prior);
        Ok(Some(Attrs::from([
            ("name".to_string(), json!(name)),
            ("labels".to_string(), json!(live_labels)),
            ("taints".to_string(), json!(live_taints)),
        ])))
    }

    async fn create(&self, _: &Address, desired: &Attrs) -> Result<Attrs, ResourceError> {
        self.write(str_attr(desired, "name")?, None, Some(desired))
            .await?;
        Ok(desired.clone())
    }

    async fn update(
        &self,
        _: &Address,
        prior: &Attrs,
        desired: &Attrs,
    ) -> Result<Attrs, ResourceError> {
        self.write(str_attr(desired, "name")?, Some(prior), Some(desired))
            .await?;
        Ok(desired.clone())
    }

    async fn delete(&self, _: &Address, prior: &Attrs) -> Result<(), ResourceError> {
        let name = str_attr(prior, "name")?;
        if self.get(name).await?.is_none() {
            return Ok(());
        }
        self.write(name, Some(prior), None).await
    }

    async fn rehearse(
        &self,
        address: &Address,
        prior: Option<&Attrs>,
        desired: &Attrs,
    ) -> Result<Option<wallaroo_engine::Rehearsal>, ResourceError> {
        self.rehearse_write(address, str_attr(desired, "name")?, prior, Some(desired))
            .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn taints_round_trip() {
        for t in [
            "wallaroo.ai/pipelines=true:NoSchedule",
            "dedicated:NoExecute",
        ] {
            assert_eq!(super::show(&super::parse(t).unwrap()), t);
        }
        assert_eq!(super::taint_key("a/b=c:NoSchedule"), "a/b");
    }
}

/// A node two nodepools would both own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedNode {
    pub node: String,
    pub pools: (String, String),
}

/// The nodes of the cluster that more than one pool claims, by name or by selector: each would
/// have its `wallaroo.ai/node-purpose` label flipped by every apply. `pools` maps a pool's
/// name to its node names and its selector (one of the two is empty). Each selector's nodes
/// are the LIST the rest of the plan shares (see [`crate::Cluster`]).
pub async fn shared_nodes(
    cluster: &crate::Cluster,
    pools: &BTreeMap<String, (Vec<String>, BTreeMap<String, String>)>,
) -> Result<Vec<SharedNode>, kube::Error> {
    let lists = futures_util::future::try_join_all(
        pools
            .iter()
            .filter(|(_, (_, selector))| !selector.is_empty())
            .map(|(pool, (_, selector))| async move {
                let nodes = cluster
                    .nodes_matching(&crate::selector_text(selector))
                    .await?;
                Ok::<_, kube::Error>((pool, nodes))
            }),
    )
    .await?;
    // Every pool that claims each node, in pool order.
    let mut claims: BTreeMap<String, Vec<&String>> = BTreeMap::new();
    for (pool, (names, _)) in pools {
        for name in names {
            claims.entry(name.clone()).or_default().push(pool);
        }
    }
    for (pool, nodes) in &lists {
        for n in nodes.iter() {
            let name = n.metadata.name.clone().unwrap_or_default();
            claims.entry(name).or_default().push(pool);
        }
    }
    let mut shared = Vec::new();
    for (node, mut by) in claims {
        by.sort();
        by.dedup();
        if let [a, b, ..] = by.as_slice() {
            shared.push(SharedNode {
                node,
                pools: ((*a).clone(), (*b).clone()),
            });
        }
    }
    Ok(shared)
}
