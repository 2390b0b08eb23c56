//! What vendor support asks for from a cluster, read-only and redacted: the API server's
//! version, nodes (labels, taints, allocatable, conditions), the namespace's pods (with env
//! values whose names look secret hidden), events and the last lines of every container's
//! log, and the helm release's history and computed values (keys whose names look secret
//! hidden). A part that cannot be read becomes `<part>.error.txt`, so the rest still helps.
//! Secret strings the spec knows are scrubbed from every file later, by the caller.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::Api;
use kube::api::{ListParams, LogParams};
use serde_json::{Value, json};

/// What to collect.
pub struct Collect<'a> {
    pub namespace: &'a str,
    pub release: &'a str,
    pub helm: &'a Path,
    pub kubeconfig: Option<PathBuf>,
    /// Lines of each container's log, from the end.
    pub log_lines: i64,
}

/// Written for a hidden value.
pub const HIDDEN: &str = "(sensitive)";

/// Whether a key or an environment variable's name says its value is secret.
pub fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace(['-', '.'], "_");
    [
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "apikey",
        "api_key",
        "access_key",
        "accesskey",
        "private_key",
        "privatekey",
        "license",
        "dockerconfigjson",
    ]
    .iter()
    .any(|w| n.contains(w))
        || n == "auth"
        || n.ends_with("_auth")
        || n == "key"
        || n.ends_with("_key") && !n.ends_with("affinity_key")
        || n.ends_with("tls_key")
}

/// `v` with every value under a key that looks secret replaced by [`HIDDEN`].
pub fn hide_secret_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let shown = if looks_secret(k) && !v.is_null() {
                        json!(HIDDEN)
                    } else {
                        hide_secret_keys(v)
                    };
                    (k.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(hide_secret_keys).collect()),
        other => other.clone(),
    }
}

fn pretty(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).expect("JSON values always print")
}

fn put(files: &mut BTreeMap<String, Vec<u8>>, name: &str, part: Result<Value, String>) {
    match part {
        Ok(v) => files.insert(name.to_string(), pretty(&v)),
        Err(e) => files.insert(format!("{name}.error.txt"), e.into_bytes()),
    };
}

/// Collects what [`Collect`] names; never fails as a whole.
pub async fn collect(client: &kube::Client, c: &Collect<'_>) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let version = client
        .apiserver_version()
        .await
        .map(|v| json!({"gitVersion": v.git_version, "platform": v.platform}))
        .map_err(|e| e.to_string());
    put(&mut files, "cluster/version.json", version);

    let nodes: Api<Node> = Api::all(client.clone());
    let listed = nodes.list(&ListParams::default()).await.map(|list| {
        Value::Array(
            list.items
                .iter()
                .map(|n| {
                    let status = n.status.as_ref();
                    json!({
                        "name": n.metadata.name,
                        "labels": n.metadata.labels,
                        "taints": n.spec.as_ref().and_then(|s| s.taints.clone()),
                        "allocatable": status.and_then(|s| s.allocatable.clone()),
                        "conditions": status.and_then(|s| s.conditions.as_ref()).map(|cs| cs.iter().map(|c| json!({"type": c.type_, "status": c.status, "reason": c.reason})).collect::<Vec<_>>()),
                        "kubelet": status.and_then(|s| s.node_info.as_ref()).map(|i| i.kubelet_version.clone()),
                    })
                })
                .collect(),
        )
    });
    put(
        &mut files,
        "cluster/nodes.json",
        listed.map_err(|e| e.to_string()),
    );

    let ns = c.namespace;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let listed = pods.list(&ListParams::default()).await;
    let mut containers: Vec<(String, String)> = Vec::new();
    let shown = listed.map(|list| {
        Value::Array(
            list.items
                .iter()
                .map(|p| {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let spec = p.spec.as_ref();
                    let mut described = Vec::new();
                    for ct in spec.map(|s| s.containers.iter()).into_iter().flatten() {
                        containers.push((name.clone(), ct.name.clone()));
                        let env: Vec<Value> = ct
                            .env
                            .iter()
                            .flatten()
                            .map(|e| {
                                let value = match (&e.value, looks_secret(&e.name)) {
                                    (Some(_), true) => json!(HIDDEN),
                                    (Some(v), false) => json!(v),
                                    (None, _) => json!(e.value_from.as_ref().map(|_| "(from a reference)")),
                                };
                                json!({"name": e.name, "value": value})
                            })
                            .collect();
                        described.push(json!({"name": ct.name, "image": ct.image, "env": env}));
                    }
                    let status = p.status.as_ref();
                    json!({
                        "name": name,
                        "node": spec.and_then(|s| s.node_name.clone()),
                        "phase": status.and_then(|s| s.phase.clone()),
                        "containers": described,
                        "statuses": status.and_then(|s| s.container_statuses.as_ref()).map(|cs| cs.iter().map(|c| json!({
                            "name": c.name, "ready": c.ready, "restarts": c.restart_count,
                            "state": c.state.as_ref().map(|s| if s.running.is_some() { "running" } else if s.waiting.is_some() { "waiting" } else { "terminated" }),
                            "reason": c.state.as_ref().and_then(|s| s.waiting.as_ref().and_then(|w| w.reason.clone()).or_else(|| s.terminated.as_ref().and_then(|t| t.reason.clone()))),
                        })).collect::<Vec<_>>()),
                    })
                })
                .collect(),
        )
    });
    put(
        &mut files,
        &format!("namespace/{ns}/pods.json"),
        shown.map_err(|e| e.to_string()),
    );

    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let listed = events.list(&ListParams::default()).await.map(|list| {
        Value::Array(
            list.items
                .iter()
                .map(|e| {
                    json!({
                        "type": e.type_, "reason": e.reason, "message": e.message, "count": e.count,
                        "object": format!("{}/{}", e.involved_object.kind.clone().unwrap_or_default(), e.involved_object.name.clone().unwrap_or_default()),
                        "last": e.last_timestamp.as_ref().map(|t| t.0.to_string()),
                    })
                })
                .collect(),
        )
    });
    put(
        &mut files,
        &format!("namespace/{ns}/events.json"),
        listed.map_err(|e| e.to_string()),
    );

    for (pod, container) in containers {
        let params = LogParams {
            container: Some(container.clone()),
            tail_lines: Some(c.log_lines),
            ..LogParams::default()
        };
        let name = format!("namespace/{ns}/logs/{pod}/{container}.log");
        match pods.logs(&pod, &params).await {
            Ok(text) => files.insert(name, text.into_bytes()),
            Err(e) => files.insert(format!("{name}.error.txt"), e.to_string().into_bytes()),
        };
    }

    for (part, args) in [
        (
            "helm/history.json",
            vec!["history", c.release, "-o", "json"],
        ),
        (
            "helm/values.json",
            vec!["get", "values", c.release, "--all", "-o", "json"],
        ),
    ] {
        let mut cmd = tokio::process::Command::new(c.helm);
        if let Some(k) = &c.kubeconfig {
            cmd.arg("--kubeconfig").arg(k);
        }
        let out = cmd.args(&args).args(["--namespace", ns]).output().await;
        let value = match out {
            Ok(o) if o.status.success() => serde_json::from_slice::<Value>(&o.stdout)
                .map(|v| hide_secret_keys(&v))
                .map_err(|e| format!("helm {}: {e}", args.join(" "))),
            Ok(o) => Err(format!(
                "helm {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("cannot run {}: {e}", c.helm.display())),
        };
        put(&mut files, part, value);
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_look_secret_are_hidden_and_others_kept() {
        for secret in [
            "password",
            "DB_PASSWORD",
            "apiToken",
            "AWS_SECRET_ACCESS_KEY",
            "tls.key",
            "license",
            "auth",
            ".dockerconfigjson",
            "private_key",
        ] {
            assert!(looks_secret(secret), "{secret}");
        }
        for plain in [
            "nodeAffinityKey",
            "domainSuffix",
            "ingress_mode",
            "keycloak_url",
            "PATH",
        ] {
            assert!(!looks_secret(plain), "{plain}");
        }
        let v = json!({"privatePypi": {"password": "p", "url": "u"}, "list": [{"token": "t"}], "nodeAffinityKey": "k"});
        assert_eq!(
            hide_secret_keys(&v),
            json!({"privatePypi": {"password": HIDDEN, "url": "u"}, "list": [{"token": HIDDEN}], "nodeAffinityKey": "k"})
        );
    }
}
