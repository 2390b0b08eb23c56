//! `daemonset.kube-system/nvidia-device-plugin`: NVIDIA's device plugin, as its upstream
//! static manifest has it, with the image from the private registry. Applied server-side;
//! apply waits until every scheduled pod is ready and some node offers `nvidia.com/gpu`.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use serde_json::{Value, json};
use wallaroo_engine::{Address, Attrs, ReadRequest, ResourceError, ResourceKind};

use crate::{apply, delete_if_present, is_not_found, kube_err, str_attr};

pub struct DaemonSetKind {
    pub client: kube::Client,
    pub timeout: Duration,
}

/// The upstream manifest (NVIDIA/k8s-device-plugin deployments/static), image replaced, and
/// the private registry's pull secret named when it needs one.
pub fn manifest(ns: &str, name: &str, image: &str, pull_secret: Option<&str>) -> Value {
    let mut m = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": ns, "labels": {"app.kubernetes.io/managed-by": "wallaroo"}},
        "spec": {
            "selector": {"matchLabels": {"name": "nvidia-device-plugin-ds"}},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {"name": "nvidia-device-plugin-ds"}},
                "spec": {
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "priorityClassName": "system-node-critical",
                    "containers": [{
                        "name": "nvidia-device-plugin-ctr",
                        "image": image,
                        "env": [{"name": "FAIL_ON_INIT_ERROR", "value": "false"}],
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "device-plugin", "mountPath": "/var/lib/kubelet/device-plugins"}],
                    }],
                    "volumes": [{"name": "device-plugin", "hostPath": {"path": "/var/lib/kubelet/device-plugins"}}],
                },
            },
        },
    });
    if let Some(secret) = pull_secret {
        m["spec"]["template"]["spec"]["imagePullSecrets"] = json!([{ "name": secret }]);
    }
    m
}

impl DaemonSetKind {
    /// Waits until the rollout is complete and a node offers `nvidia.com/gpu`.
    async fn wait_ready(&self, ns: &str, name: &str) -> Result<(), ResourceError> {
        let sets: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
        let nodes: Api<Node> = Api::all(self.client.clone());
        let deadline = Instant::now() + self.timeout;
        loop {
            let ds = sets
                .get(name)
                .await
                .map_err(kube_err(format!("reading daemonset {ns}/{name}")))?;
            let generation = ds.metadata.generation.unwrap_or(0);
            let rolled_out = ds.status.as_ref().is_some_and(|s| {
                s.observed_generation.unwrap_or(0) >= generation
                    && s.updated_number_scheduled.unwrap_or(0) == s.desired_number_scheduled
                    && s.number_ready == s.desired_number_scheduled
            });
            let gpus = nodes
                .list(&Default::default())
                .await
                .map_err(kube_err("listing nodes"))?
                .items
                .iter()
                .any(|n| {
                    n.status
                        .as_ref()
                        .and_then(|s| s.allocatable.as_ref())
                        .and_then(|a| a.get("nvidia.com/gpu"))
                        .is_some_and(|q| q.0 != "0")
                });
            if rolled_out && gpus {
                return Ok(());
            }
            if Instant::now() > deadline {
                let why = if rolled_out {
                    "no node offers nvidia.com/gpu"
                } else {
                    "its pods are not all ready"
                };
                return Err(ResourceError::new(format!(
                    "daemonset {ns}/{name} not ready after {:?}: {why}",
                    self.timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[async_trait]
impl ResourceKind for DaemonSetKind {
    fn name(&self) -> &'static str {
        "daemonset"
    }

    fn force_new(&self) -> &'static [&'static str] {
        &["namespace", "name"]
    }

    async fn read(&self, req: ReadRequest<'_>) -> Result<Option<Attrs>, ResourceError> {
        let Some(attrs) = req.prior.or(req.desired) else {
            return Ok(None);
        };
        let (ns, name) = (str_attr(attrs, "namespace")?, str_attr(attrs, "name")?);
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
        let ds = match api.get(name).await {
            Ok(d) => d,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(kube_err(format!("reading daemonset {ns}/{name}"))(e)),
        };
        let pod = ds.spec.and_then(|s| s.template.spec);
        let pull_secret = pod
            .as_ref()
            .and_then(|p| p.image_pull_secrets.as_ref())
            .and_then(|s| s.first())
            .map(|s| s.name.clone());
        let image = pod
            .and_then(|s| s.containers.into_iter().next())
            .and_then(|c| c.image)
            .unwrap_or_default();
        let mut live = Attrs::from([
            ("namespace".to_string(), json!(ns)),
            ("name".to_string(), json!(name)),
            ("image".to_string(), json!(image)),
        ]);
        if let Some(secret) = pull_secret {
            live.insert("pull_secret".into(), json!(secret));
        }
        Ok(Some(live))
    }

    async fn create(&self, _: &Address, desired: &Attrs) -> Result<Attrs, ResourceError> {
        let (ns, name, image) = (
            str_attr(desired, "namespace")?,
            str_attr(desired, "name")?,
            str_attr(desired, "image")?,
        );
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
        apply(
            &api,
            name,
            &manifest(
                ns,
                name,
                image,
                desired.get("pull_secret").and_then(Value::as_str),
            ),
            format!("daemonset {ns}/{name}"),
        )
        .await?;
        self.wait_ready(ns, name).await?;
        Ok(desired.clone())
    }

    async fn rehearse(
        &self,
        address: &Address,
        _: Option<&Attrs>,
        desired: &Attrs,
    ) -> Result<Option<wallaroo_engine::Rehearsal>, ResourceError> {
        let (ns, name, image) = (
            str_attr(desired, "namespace")?,
            str_attr(desired, "name")?,
            str_attr(desired, "image")?,
        );
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
        let body = manifest(
            ns,
            name,
            image,
            desired.get("pull_secret").and_then(Value::as_str),
        );
        let result = crate::dry_run_apply(&api, name, &body).await;
        crate::rehearse::own::answered(address, &format!("DaemonSet {ns}/{name}"), Some(ns), result)
    }

    async fn delete(&self, _: &Address, prior: &Attrs) -> Result<(), ResourceError> {
        let (ns, name) = (str_attr(prior, "namespace")?, str_attr(prior, "name")?);
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
        delete_if_present(&api, name, format!("daemonset {ns}/{name}")).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_manifest_names_the_pull_secret_only_when_there_is_one() {
        let with = super::manifest("kube-system", "p", "r/p:1", Some("wallaroo-registry"));
        assert_eq!(
            with["spec"]["template"]["spec"]["imagePullSecrets"][0]["name"],
            "wallaroo-registry"
        );
        let without = super::manifest("kube-system", "p", "r/p:1", None);
        assert!(without["spec"]["template"]["spec"]["imagePullSecrets"].is_null());
    }
}
