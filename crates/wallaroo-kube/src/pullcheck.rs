//! The pull check: proof, before apply, that a node of each nodepool pulls from the private
//! registry with the release's pull secret.
//!
//! For each pool, one node is picked (a node that really runs containers; kwok's simulated
//! nodes cannot pull, and a pool of only those is passed as unverified, never as verified).
//! In a namespace of its own, made for this check and deleted after it, the check creates the
//! pull secret the release will use and one pod per picked node, pinned to it by `nodeName`,
//! tolerating every taint, pulling the probe image (`imagePullPolicy: Always`, so TLS and
//! credentials are exercised even when the image is already on the node). All pools are
//! checked at once and the whole check is bounded in time. A failure names the node, the
//! pool and what to do, from what the kubelet reported (container status and events).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

use crate::Cluster;
use crate::preflight::{Check, Outcome};

/// The nodes of one pool: by name, or by a label selector (`k=v,...`).
#[derive(Debug, Clone)]
pub enum PoolNodes {
    Names(Vec<String>),
    Selector(String),
}

/// What the pull check needs, taken from the spec by the caller.
#[derive(Debug, Clone)]
pub struct PullCheckInput {
    pub pools: BTreeMap<String, PoolNodes>,
    /// The probe, `host/repo@digest`, already pushed.
    pub image: String,
    /// The private registry's host (`name[:port]`), as the nodes reach it.
    pub registry: String,
    /// The `.dockerconfigjson` the release's pull secret carries (`None`: no credentials).
    pub pull_secret: Option<String>,
    /// The name the release's pull secret has, for messages.
    pub pull_secret_name: String,
    /// The release's namespace, for messages.
    pub namespace: String,
    /// The CA file the spec names for the registry, for the hint.
    pub ca_file: Option<String>,
    /// Platforms the mirror copies (`all`, or `os/arch` entries).
    pub platforms: Vec<String>,
    /// How long to wait for every node to pull.
    pub timeout: Duration,
}

/// Whether a node only simulates a kubelet (kwok), and so never pulls an image.
pub fn simulated(node: &Node) -> bool {
    let annotated = node
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kwok.x-k8s.io/node"));
    let runtime = node
        .status
        .as_ref()
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.container_runtime_version.as_str())
        .unwrap_or("");
    annotated || runtime.starts_with("kwok") || runtime.is_empty()
}

fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn arch(node: &Node) -> String {
    node.status
        .as_ref()
        .and_then(|s| s.node_info.as_ref())
        .map(|i| format!("{}/{}", i.operating_system, i.architecture))
        .unwrap_or_default()
}

fn check_name(pool: &str) -> String {
    format!("pull from the private registry (nodepool {pool})")
}

fn check(pool: &str, outcome: Outcome, detail: impl Into<String>, hint: Option<String>) -> Check {
    Check {
        name: check_name(pool),
        outcome,
        detail: detail.into(),
        hint,
    }
}

/// What a pool's node did with the probe.
enum Pulled {
    Yes,
    Failed { reason: String, message: String },
    Waiting(String),
}

/// Runs the check for every pool at once. Problems of the check's own making (it may not
/// create pods, say) fail it with what to do, never silently pass it.
pub async fn run(cluster: &Cluster, input: &PullCheckInput) -> Vec<Check> {
    let started = Instant::now();
    let nodes_api: Api<Node> = Api::all(cluster.client().clone());
    // Pick a node per pool.
    let mut picked: BTreeMap<String, Node> = BTreeMap::new();
    let mut checks: BTreeMap<String, Check> = BTreeMap::new();
    for (pool, which) in &input.pools {
        let nodes: Vec<Node> = match which {
            // All of a pool's nodes at once (one round trip behind a slow link, not one each).
            PoolNodes::Names(names) => {
                futures_util::future::join_all(names.iter().map(|n| nodes_api.get_opt(n)))
                    .await
                    .into_iter()
                    .filter_map(|r| r.ok().flatten())
                    .collect()
            }
            PoolNodes::Selector(s) => cluster
                .nodes_matching(s)
                .await
                .map(|l| l.as_ref().clone())
                .unwrap_or_default(),
        };
        if nodes.is_empty() {
            // The nodepool check says so already.
            continue;
        }
        let real: Vec<&Node> = nodes.iter().filter(|n| !simulated(n)).collect();
        match real.iter().find(|n| ready(n)).or(real.first()) {
            Some(node) => {
                picked.insert(pool.clone(), (*node).clone());
            }
            None => {
                checks.insert(
                    pool.clone(),
                    check(
                        pool,
                        Outcome::Pass,
                        format!(
                            "unverified: its {} node(s) are simulated (kwok) and pull nothing",
                            nodes.len()
                        ),
                        None,
                    ),
                );
            }
        }
    }
    // A static look at architectures first: a node the mirror's platform filter leaves out.
    let filtered = !input.platforms.iter().any(|p| p == "all");
    if filtered {
        for (pool, node) in &picked {
            let platform = arch(node);
            let covered = input
                .platforms
                .iter()
                .any(|p| p == &platform || p.starts_with(&format!("{platform}/")));
            if !platform.is_empty() && !covered {
                checks.insert(
                    pool.clone(),
                    check(
                        pool,
                        Outcome::Fail,
                        format!(
                            "node {} is {platform}, which the mirror leaves out (images {{ platforms = {:?} }})",
                            name_of(node),
                            input.platforms
                        ),
                        Some(format!(
                            "add \"{platform}\" to `images {{ platforms }}`, or move the pool's workloads to nodes of a mirrored platform"
                        )),
                    ),
                );
            }
        }
        picked.retain(|pool, _| !checks.contains_key(pool));
    }
    if !picked.is_empty() {
        for (pool, c) in pods_pull(cluster, input, &picked, started).await {
            checks.insert(pool, c);
        }
    }
    checks.into_values().collect()
}

fn name_of(node: &Node) -> String {
    node.metadata.name.clone().unwrap_or_default()
}

/// The check's pod for the `i`th pool it pulls on.
fn pod_name(i: usize) -> String {
    format!("pull-{i}")
}

/// A random suffix for the check's namespace.
fn suffix() -> String {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("the OS has a random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Creates the namespace, secret and pods, waits for every node to pull, deletes the
/// namespace (and with it everything the check made).
async fn pods_pull(
    cluster: &Cluster,
    input: &PullCheckInput,
    picked: &BTreeMap<String, Node>,
    started: Instant,
) -> Vec<(String, Check)> {
    let client = cluster.client().clone();
    let ns_name = format!("wallaroo-pull-check-{}", suffix());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let fail_all = |detail: String, hint: String| -> Vec<(String, Check)> {
        picked
            .keys()
            .map(|pool| {
                (
                    pool.clone(),
                    check(pool, Outcome::Fail, detail.clone(), Some(hint.clone())),
                )
            })
            .collect()
    };
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": ns_name, "labels": {"app.kubernetes.io/managed-by": "wallaroo", "wallaroo.dev/purpose": "pull-check"}},
    }))
    .expect("a namespace");
    if let Err(e) = namespaces.create(&PostParams::default(), &ns).await {
        return fail_all(
            format!("cannot create the check's namespace: {}", crate::short_error(&e)),
            "let wallaroo create namespaces, Secrets and Pods (`wallaroo rbac` prints the Role), or set `registry { pull_check = false }`".into(),
        );
    }
    let results = in_namespace(&client, &ns_name, input, picked, started).await;
    // Delete everything the check made. The pods first, at once (grace 0: the API server
    // forgets them without waiting for the kubelet, which stops the containers after), so
    // the namespace has nothing left that makes it linger.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns_name);
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::background()
    };
    futures_util::future::join_all((0..picked.len()).map(|i| {
        let name = pod_name(i);
        let pods = &pods;
        let now = &now;
        async move { pods.delete(&name, now).await }
    }))
    .await;
    let _ = namespaces
        .delete(
            &ns_name,
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::background()
            },
        )
        .await;
    match results {
        Ok(r) => r,
        Err((detail, hint)) => fail_all(detail, hint),
    }
}

async fn in_namespace(
    client: &kube::Client,
    ns: &str,
    input: &PullCheckInput,
    picked: &BTreeMap<String, Node>,
    started: Instant,
) -> Result<Vec<(String, Check)>, (String, String)> {
    let no_rights = |what: &str, e: &kube::Error| {
        (
            format!("cannot create the check's {what}: {}", crate::short_error(e)),
            "let wallaroo create Secrets and Pods in namespaces it makes (`wallaroo rbac` prints the Role), or set `registry { pull_check = false }`".to_string(),
        )
    };
    if let Some(config) = &input.pull_secret {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "pull-check"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": config},
        }))
        .expect("a secret");
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .map_err(|e| no_rights("pull secret", &e))?;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut pod_pool: BTreeMap<String, String> = BTreeMap::new();
    for (i, (pool, node)) in picked.iter().enumerate() {
        let name = pod_name(i);
        let mut spec = json!({
            "nodeName": name_of(node),
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": false,
            "tolerations": [{"operator": "Exists"}],
            // Admitted under the `restricted` Pod Security Standard, which many clusters
            // enforce by default.
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "pull", "image": input.image, "imagePullPolicy": "Always",
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
            }],
        });
        if input.pull_secret.is_some() {
            spec["imagePullSecrets"] = json!([{"name": "pull-check"}]);
        }
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "wallaroo"}},
            "spec": spec,
        }))
        .expect("a pod");
        // The namespace's default ServiceAccount appears a moment after the namespace, and
        // pods are refused until it does.
        let mut attempt = 0;
        loop {
            match pods.create(&PostParams::default(), &pod).await {
                Ok(_) => break,
                Err(kube::Error::Api(e))
                    if e.message.contains("serviceaccount") && attempt < 50 =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(no_rights("pods", &e)),
            }
        }
        pod_pool.insert(name, pool.clone());
    }

    // Wait until every pod's node pulled or failed, or the time is up.
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let mut outcome: BTreeMap<String, Pulled> = BTreeMap::new();
    loop {
        let pod_list = pods.list(&ListParams::default()).await.map_err(|e| {
            (
                format!("cannot read the check's pods: {}", crate::short_error(&e)),
                "let wallaroo read Pods and Events in namespaces it makes".to_string(),
            )
        })?;
        let event_list = events
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        for pod in &pod_list.items {
            let name = pod.metadata.name.clone().unwrap_or_default();
            outcome.insert(name.clone(), pulled(pod, &name, &event_list));
        }
        let done = outcome.values().all(|o| !matches!(o, Pulled::Waiting(_)))
            && outcome.len() == pod_pool.len();
        if done || started.elapsed() > input.timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(pod_pool
        .iter()
        .map(|(pod, pool)| {
            let node = name_of(&picked[pool]);
            let c = match outcome.remove(pod) {
                Some(Pulled::Yes) => check(
                    pool,
                    Outcome::Pass,
                    format!("node {node} pulled {} ({elapsed:.1}s)", input.image),
                    None,
                ),
                Some(Pulled::Failed { reason, message }) => {
                    let (what, hint) = diagnose(input, &reason, &message);
                    check(
                        pool,
                        Outcome::Fail,
                        format!("node {node}: {what}: {}", one_line(&message)),
                        Some(hint),
                    )
                }
                other => {
                    let last = match other {
                        Some(Pulled::Waiting(l)) => last_or(&l),
                        _ => String::new(),
                    };
                    check(
                        pool,
                        Outcome::Fail,
                        format!(
                            "node {node} did not pull {} within {}s{last}",
                            input.image,
                            input.timeout.as_secs()
                        ),
                        Some("look at the node's kubelet and container runtime; the pod's events say what it waits for".into()),
                    )
                }
            };
            (pool.clone(), c)
        })
        .collect())
}

fn last_or(last: &str) -> String {
    if last.is_empty() {
        String::new()
    } else {
        format!(" (last: {})", one_line(last))
    }
}

fn one_line(s: &str) -> String {
    let s = s.replace('\n', " ");
    if s.len() > 400 {
        let mut end = 400;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}

/// What the kubelet reported for `pod`.
fn pulled(pod: &Pod, name: &str, events: &[Event]) -> Pulled {
    let mine: Vec<&Event> = events
        .iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .collect();
    if mine.iter().any(|e| e.reason.as_deref() == Some("Pulled")) {
        return Pulled::Yes;
    }
    let status = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first());
    if let Some(s) = status {
        if !s.image_id.is_empty() {
            return Pulled::Yes;
        }
        if let Some(state) = &s.state {
            if state.running.is_some() || state.terminated.is_some() {
                return Pulled::Yes;
            }
            if let Some(w) = &state.waiting {
                let reason = w.reason.clone().unwrap_or_default();
                if matches!(
                    reason.as_str(),
                    "ErrImagePull"
                        | "ImagePullBackOff"
                        | "InvalidImageName"
                        | "RegistryUnavailable"
                ) {
                    // The kubelet's "Failed to pull image ..." event carries the runtime's
                    // whole error; the status only says `Error: ErrImagePull` or backs off.
                    let message = mine
                        .iter()
                        .filter(|e| e.reason.as_deref() == Some("Failed"))
                        .filter_map(|e| e.message.clone())
                        .rfind(|m| !m.starts_with("Error: "))
                        .or(w.message.clone().filter(|m| !m.starts_with("Back-off")))
                        .unwrap_or_default();
                    if message.is_empty() {
                        // The event may come a moment after the status.
                        return Pulled::Waiting(reason);
                    }
                    return Pulled::Failed { reason, message };
                }
            }
        }
    }
    if let Some(e) = mine
        .iter()
        .rev()
        .find(|e| e.reason.as_deref() == Some("FailedCreatePodSandBox"))
    {
        return Pulled::Failed {
            reason: "FailedCreatePodSandBox".into(),
            message: e.message.clone().unwrap_or_default(),
        };
    }
    Pulled::Waiting(
        mine.last()
            .and_then(|e| e.message.clone())
            .unwrap_or_default(),
    )
}

/// What went wrong, and what to do, from the runtime's message.
fn diagnose(input: &PullCheckInput, reason: &str, message: &str) -> (String, String) {
    let m = message.to_ascii_lowercase();
    let host = &input.registry;
    if reason == "FailedCreatePodSandBox" {
        let sandbox = sandbox_image(message).unwrap_or_else(|| "its sandbox (pause) image".into());
        let outside = !sandbox.starts_with(&format!("{host}/"));
        let what = if outside {
            format!(
                "the sandbox image the node's runtime uses, {sandbox}, is not in the private registry"
            )
        } else {
            format!("the node cannot get its sandbox image {sandbox}")
        };
        return (
            what,
            format!(
                "mirror the sandbox image into the private registry (`images {{ extra = [\"{sandbox}\"] }}`) and point the runtime at the copy: containerd's `sandbox` under [plugins.'io.containerd.cri.v1.images'.pinned_images] (CRI-O: `pause_image`); the CRI pulls it without the pod's pull secret, so load it onto the nodes or give the runtime credentials"
            ),
        );
    }
    if m.contains("x509") || m.contains("certificate") || m.contains("tls:") {
        let ca = input
            .ca_file
            .as_deref()
            .map(|c| format!("the CA in the spec's `ca_file` ({c})"))
            .unwrap_or_else(|| "the CA that signed the registry's certificate".into());
        return (
            format!("does not trust the private registry's certificate ({host})"),
            format!(
                "install {ca} on every node of the pool where the runtime reads it: containerd's /etc/containerd/certs.d/{host}/ca.crt (CRI-O and podman: /etc/containers/certs.d/{host}/ca.crt); containerd reads it on the next pull, no restart"
            ),
        );
    }
    if m.contains("no match for platform") {
        return (
            "the probe has no entry for the node's platform".into(),
            format!(
                "the mirror's platform filter (`images {{ platforms = {:?} }}`) leaves out this node's platform; add it",
                input.platforms
            ),
        );
    }
    if m.contains("401")
        || m.contains("unauthorized")
        || m.contains("403")
        || m.contains("forbidden")
        || m.contains("authorization failed")
        || m.contains("no basic auth")
    {
        if input.pull_secret.is_none() {
            return (
                "the private registry refused an anonymous pull".into(),
                "the release has no pull secret: set `username` and `password` in `registry \"private\"` (wallaroo then manages the pull secret `wallaroo-registry`), or give the nodes' runtime credentials for the registry".into(),
            );
        }
        return (
            "the private registry refused the credentials".into(),
            format!(
                "the release's pull secret `{}` in namespace `{}` carries the `username` and `password` of `registry \"private\"`; fix them (the registry refuses them for pulls)",
                input.pull_secret_name, input.namespace
            ),
        );
    }
    if m.contains("not found") || m.contains("manifest unknown") || m.contains("name unknown") {
        return (
            format!("{} is not in the private registry", input.image),
            "the mirror lacks it: run `wallaroo apply` to mirror, or check `registry { namespace }` and `images { path }`".into(),
        );
    }
    if m.contains("no such host") || m.contains("lookup ") || m.contains("server misbehaving") {
        return (
            format!("the registry's name {host} does not resolve from the node"),
            format!("add {host} to the DNS the nodes use (or their /etc/hosts)"),
        );
    }
    if m.contains("connection refused")
        || m.contains("i/o timeout")
        || m.contains("no route to host")
        || m.contains("network is unreachable")
        || m.contains("deadline exceeded")
    {
        return (
            format!("the node cannot reach the registry at {host}"),
            "open the way from the nodes to the registry's host and port (firewall, proxy, NO_PROXY of the runtime)".into(),
        );
    }
    (
        format!("the pull failed ({reason})"),
        "the runtime's message above says why".into(),
    )
}

/// The sandbox image named in a FailedCreatePodSandBox message, e.g.
/// `failed to get sandbox image "registry.k8s.io/pause:3.10": ...`.
/// containerd 2.4 says `failed to pull image "127.0.0.1:9/pause:3.10"`.
fn sandbox_image(message: &str) -> Option<String> {
    ["sandbox image \"", "pull image \""]
        .iter()
        .find_map(|lead| {
            let at = message.find(lead)? + lead.len();
            let rest = &message[at..];
            Some(rest[..rest.find('"')?].to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> PullCheckInput {
        PullCheckInput {
            pools: BTreeMap::new(),
            image: "private.example:5000/wallaroo/wallaroo-pull-check@sha256:ab".into(),
            registry: "private.example:5000".into(),
            pull_secret: None,
            pull_secret_name: "wallaroo-registry".into(),
            namespace: "wallaroo".into(),
            ca_file: Some("/etc/ssl/private-ca.crt".into()),
            platforms: vec!["all".into()],
            timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn an_untrusted_certificate_names_the_file_containerd_reads() {
        let (what, hint) = diagnose(
            &input(),
            "ErrImagePull",
            "failed to pull and unpack image: failed to resolve reference: failed to do request: Head \"https://private.example:5000/v2/x/manifests/y\": tls: failed to verify certificate: x509: certificate signed by unknown authority",
        );
        assert!(what.contains("does not trust"), "{what}");
        assert!(
            hint.contains("/etc/containerd/certs.d/private.example:5000/ca.crt"),
            "{hint}"
        );
        assert!(hint.contains("/etc/ssl/private-ca.crt"), "{hint}");
    }

    #[test]
    fn a_refused_login_names_the_pull_secret() {
        let with_secret = PullCheckInput {
            pull_secret: Some("{}".into()),
            ..input()
        };
        let (what, hint) = diagnose(
            &with_secret,
            "ErrImagePull",
            "failed to authorize: failed to fetch anonymous token: unexpected status: 401 Unauthorized",
        );
        assert!(what.contains("refused the credentials"), "{what}");
        assert!(
            hint.contains("`wallaroo-registry` in namespace `wallaroo`"),
            "{hint}"
        );
    }

    #[test]
    fn a_sandbox_image_outside_is_named() {
        let (what, hint) = diagnose(
            &input(),
            "FailedCreatePodSandBox",
            "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox image \"registry.k8s.io/pause:3.10\": failed to pull image",
        );
        assert!(what.contains("registry.k8s.io/pause:3.10"), "{what}");
        assert!(what.contains("not in the private registry"), "{what}");
        assert!(hint.contains("pinned_images"), "{hint}");
    }

    #[test]
    fn containerd_2_4_names_the_sandbox_image_it_could_not_pull() {
        let (what, _) = diagnose(
            &input(),
            "FailedCreatePodSandBox",
            "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to pull image \"127.0.0.1:9/pause:3.10\": failed to pull and unpack image: connection refused",
        );
        assert!(
            what.contains("uses, 127.0.0.1:9/pause:3.10, is not in the private registry"),
            "{what}"
        );
    }

    #[test]
    fn a_missing_image_and_an_unknown_host_are_told_apart() {
        let (what, _) = diagnose(&input(), "ErrImagePull", "rpc error: ... not found");
        assert!(what.contains("is not in the private registry"), "{what}");
        let (what, _) = diagnose(
            &input(),
            "ErrImagePull",
            "dial tcp: lookup private.example on 10.0.0.2:53: no such host",
        );
        assert!(what.contains("does not resolve"), "{what}");
    }
}

/// How the release's pods stand after an apply: whether their images were pulled and they
/// are Ready, and which are stuck pulling (with the kubelet's reason and message).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PodsReport {
    pub total: usize,
    pub ready: usize,
    /// Pods whose every container's image was pulled by a real runtime.
    pub pulled: usize,
    /// Pods on simulated (kwok) nodes: Ready without pulling anything.
    pub simulated: usize,
    pub stuck: Vec<StuckPod>,
}

/// A pod whose node cannot pull one of its images.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StuckPod {
    pub pod: String,
    pub node: String,
    pub reason: String,
    pub message: String,
}

/// The pods of namespace `ns`, as [`PodsReport`] counts them (pods being deleted are not
/// counted). Pods gone or being deleted (an upgrade helm rolled back, say) that failed to
/// pull since `since` are named too, from their events.
pub async fn release_pods(
    cluster: &Cluster,
    ns: &str,
    since: std::time::SystemTime,
) -> Result<PodsReport, kube::Error> {
    let client = cluster.client().clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let nodes: Api<Node> = Api::all(client);
    let all = ListParams::default();
    let (pods, events) = tokio::join!(pods.list(&all), events.list(&all));
    let pods = pods?;
    let events = events.map(|l| l.items).unwrap_or_default();
    let mut simulated_nodes: BTreeMap<String, bool> = BTreeMap::new();
    let mut report = PodsReport::default();
    for pod in &pods.items {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        report.total += 1;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let status = pod.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready {
            report.ready += 1;
        }
        let simulated = if node.is_empty() {
            false
        } else {
            match simulated_nodes.get(&node) {
                Some(s) => *s,
                None => {
                    let s = nodes
                        .get_opt(&node)
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|n| simulated(&n));
                    simulated_nodes.insert(node.clone(), s);
                    s
                }
            }
        };
        let containers = status
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
        if simulated {
            report.simulated += 1;
        } else if !containers.is_empty() && containers.iter().all(|c| !c.image_id.is_empty()) {
            report.pulled += 1;
        }
        if let Pulled::Failed { reason, message } = pulled(pod, &name, &events) {
            report.stuck.push(StuckPod {
                pod: name,
                node,
                reason,
                message: one_line(&message),
            });
        }
    }
    // Pods that are gone, or going (a rolled-back upgrade's, which a real node takes a
    // moment to stop), but could not pull while they lived, during this run.
    let since = k8s_openapi::jiff::Timestamp::try_from(since).ok();
    let (going, live): (Vec<&Pod>, Vec<&Pod>) = pods
        .items
        .iter()
        .partition(|p| p.metadata.deletion_timestamp.is_some());
    let names = |pods: Vec<&Pod>| -> std::collections::BTreeSet<String> {
        pods.iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect()
    };
    let (going, live) = (names(going), names(live));
    let mut gone: BTreeMap<String, StuckPod> = BTreeMap::new();
    for e in &events {
        let Some(pod) = e.involved_object.name.clone() else {
            continue;
        };
        let when = e
            .last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or(e.event_time.as_ref().map(|t| t.0));
        let recent = match (since, when) {
            (Some(since), Some(when)) => when >= since,
            _ => false,
        };
        let message = e.message.clone().unwrap_or_default();
        if e.involved_object.kind.as_deref() == Some("Pod")
            && !live.contains(&pod)
            && recent
            && e.reason.as_deref() == Some("Failed")
            && message.starts_with("Failed to pull image")
        {
            let node = e
                .source
                .as_ref()
                .and_then(|s| s.host.clone())
                .unwrap_or_default();
            gone.insert(
                pod.clone(),
                StuckPod {
                    pod: if going.contains(&pod) {
                        format!("{pod} (being removed)")
                    } else {
                        format!("{pod} (since removed)")
                    },
                    node,
                    reason: "ErrImagePull".into(),
                    message: one_line(&message),
                },
            );
        }
    }
    report.stuck.extend(gone.into_values());
    Ok(report)
}
