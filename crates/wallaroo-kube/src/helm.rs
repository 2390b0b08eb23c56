//! `helm_release.NAME`: read natively from helm's storage (the `sh.helm.release.v1.NAME.vN`
//! Secrets: base64, gzip, JSON) without running helm; applied with the real helm binary
//! (`helm upgrade --install --atomic --wait`), values passed in a temp file removed after.

use std::io::Read;
use std::process::Stdio;

use async_trait::async_trait;
use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use wallaroo_engine::{Address, Attrs, ReadRequest, ResourceError, ResourceKind};

use crate::{ClusterConfig, kube_err, str_attr};

pub struct HelmReleaseKind {
    pub client: kube::Client,
    pub config: std::sync::Arc<ClusterConfig>,
}

/// What wallaroo reads of a stored release.
#[derive(Debug, Clone, Deserialize)]
pub struct HelmRelease {
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    pub version: u32,
    pub info: ReleaseInfo,
    pub chart: ReleaseChart,
    /// The user-supplied values.
    #[serde(default)]
    pub config: Value,
    /// The manifests helm rendered and applied (YAML documents).
    #[serde(default)]
    pub manifest: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReleaseInfo {
    pub status: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReleaseChart {
    pub metadata: ChartMetadata,
    /// The chart's own default values (its values.yaml), which helm keeps with the release.
    #[serde(default)]
    pub values: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChartMetadata {
    pub name: String,
    pub version: String,
}

/// Decodes the `release` field of a helm storage Secret (its bytes as the API returns
/// them: base64 text of a gzipped JSON document).
pub fn decode_release(data: &[u8]) -> Result<HelmRelease, String> {
    let gz = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| format!("not base64: {e}"))?;
    let mut json = Vec::new();
    if gz.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut json)
            .map_err(|e| format!("not gzip: {e}"))?;
    } else {
        json = gz;
    }
    serde_json::from_slice(&json).map_err(|e| format!("not a helm release: {e}"))
}

impl HelmReleaseKind {
    async fn stored(&self, ns: &str, name: &str) -> Result<Option<HelmRelease>, ResourceError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let list = api
            .list(&ListParams::default().labels(&format!("owner=helm,name={name}")))
            .await
            .map_err(kube_err(format!("reading helm release {name} in {ns}")))?;
        // helm labels each revision with its number: decode only the newest, not all of them
        // (helm keeps ten by default, each a gzipped copy of the whole release).
        let revision = |s: &Secret| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("version"))
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        };
        let Some(newest) = list.items.iter().max_by_key(|s| revision(s)) else {
            return Ok(None);
        };
        let Some(data) = newest.data.as_ref().and_then(|d| d.get("release")) else {
            return Ok(None);
        };
        decode_release(&data.0)
            .map(Some)
            .map_err(|e| ResourceError::new(format!("helm release {name}: {e}")))
    }

    async fn helm(
        &self,
        args: &[String],
        stdin: Option<&str>,
        env: &[(&str, &std::path::Path)],
    ) -> Result<String, ResourceError> {
        let mut cmd = tokio::process::Command::new(&self.config.helm);
        if let Some(kubeconfig) = &self.config.kubeconfig {
            cmd.arg("--kubeconfig").arg(kubeconfig);
        }
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| {
            ResourceError::new(format!(
                "cannot run helm ({}): {e}",
                self.config.helm.display()
            ))
        })?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            pipe.write_all(input.as_bytes())
                .await
                .map_err(|e| ResourceError::new(e.to_string()))?;
        }
        drop(child.stdin.take());
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| ResourceError::new(e.to_string()))?;
        if !out.status.success() {
            return Err(ResourceError::new(format!(
                "helm {} failed: {}",
                args.first().map(String::as_str).unwrap_or(""),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The objects of `manifest` that differ from what is live, as `Kind/name` -> the paths
    /// that differ (or `deleted`). Only the fields the chart rendered are compared, so what
    /// the API server defaults or adds (status, managed fields, resource versions,
    /// annotations of its own) never counts; `ignore` holds `Kind/name:path` prefixes that
    /// are not compared (fields a controller owns, such as replicas under an autoscaler).
    async fn object_drift(
        &self,
        ns: &str,
        manifest: &str,
        ignore: &[String],
    ) -> Result<Value, ResourceError> {
        use kube::api::{Api, DynamicObject};
        use kube::discovery::ApiResource;
        let mut out = serde_json::Map::new();
        // Parsed before the first await: the YAML parser is not Send.
        let docs: Vec<Value> = manifest_documents(manifest)
            .filter_map(|doc| serde_saphyr::from_str::<Option<Value>>(doc).ok().flatten())
            .collect();
        // Every object is read at once (a few at a time): a release renders a hundred
        // objects, and one GET after another would cost a round trip each.
        let reads = docs.into_iter().filter_map(|rendered| {
            let (Some(api_version), Some(kind), Some(name)) = (
                rendered["apiVersion"].as_str(),
                rendered["kind"].as_str(),
                rendered["metadata"]["name"].as_str(),
            ) else {
                return None;
            };
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
            let ar = ApiResource::from_gvk(&gvk);
            let object_ns = rendered["metadata"]["namespace"].as_str().unwrap_or(ns);
            let api: Api<DynamicObject> = if CLUSTER_SCOPED.contains(&kind) {
                Api::all_with(self.client.clone(), &ar)
            } else {
                Api::namespaced_with(self.client.clone(), object_ns, &ar)
            };
            let key = format!("{kind}/{name}");
            let (kind, name) = (kind.to_string(), name.to_string());
            Some(async move {
                let live = api
                    .get_opt(&name)
                    .await
                    .map_err(crate::kube_err(format!("reading {key} of the release")))?;
                Ok::<_, ResourceError>((key, kind, rendered, live))
            })
        });
        let read: Vec<_> = futures_util::StreamExt::collect(futures_util::StreamExt::buffered(
            futures_util::stream::iter(reads),
            OBJECT_READS,
        ))
        .await;
        for result in read {
            let (key, kind, rendered, live) = result?;
            let Some(live) = live else {
                out.insert(key, json!("deleted"));
                continue;
            };
            let live = serde_json::to_value(&live).unwrap_or(Value::Null);
            let mut rendered = rendered;
            // The API server stores a Secret's `stringData` base64-encoded under `data`.
            if kind == "Secret"
                && let Some(Value::Object(plain)) = rendered
                    .as_object_mut()
                    .and_then(|o| o.remove("stringData"))
            {
                for (k, v) in plain {
                    let text = v
                        .as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.to_string());
                    rendered["data"][k] =
                        json!(base64::engine::general_purpose::STANDARD.encode(text));
                }
            }
            let mut paths = Vec::new();
            differences(&rendered, &live, String::new(), &mut paths);
            paths.retain(|p| {
                !p.starts_with("metadata.namespace")
                    && !ignore.iter().any(|rule| match rule.split_once(':') {
                        Some((obj, prefix)) => obj == key && p.starts_with(prefix),
                        None => *rule == key,
                    })
            });
            if !paths.is_empty() {
                out.insert(key, json!(paths));
            }
        }
        Ok(Value::Object(out))
    }

    /// A helm killed mid-operation leaves the release `pending-*`, and helm then refuses
    /// every upgrade ("another operation is in progress"). Roll a pending upgrade or rollback
    /// back to the last good revision; remove a pending first install, which has none.
    async fn unstick(&self, name: &str, ns: &str) -> Result<(), ResourceError> {
        let Some(stored) = self.stored(ns, name).await? else {
            return Ok(());
        };
        let args: Vec<String> = match stored.info.status.as_str() {
            "pending-install" => ["uninstall", name, "--namespace", ns, "--wait"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            "pending-upgrade" | "pending-rollback" => {
                ["rollback", name, "0", "--namespace", ns, "--wait"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            }
            _ => return Ok(()),
        };
        self.helm(&args, None, &[]).await.map(|_| ())
    }

    async fn upgrade(&self, address: &Address, desired: &Attrs) -> Result<Attrs, ResourceError> {
        let name = release_name(address)?;
        let ns = str_attr(desired, "namespace")?;
        let chart = str_attr(desired, "chart")?;
        let version = str_attr(desired, "version")?;
        let timeout = desired
            .get("timeout")
            .and_then(Value::as_str)
            .unwrap_or("15m");
        self.unstick(name, ns).await?;
        // What apply's rehearsal found to do first: the chart's CRDs applied (helm installs
        // them on a first install only, and never upgrades them), and the objects whose
        // change a field's immutability refuses (the spec allows it) deleted, for the
        // upgrade to make again.
        let first = std::mem::take(&mut *self.config.before_upgrade.lock().expect("upgrade lock"));
        crate::rehearse::crds::apply_crds(&self.client, &first.crds).await?;
        for r in &first.replacing {
            crate::rehearse::replace::delete_for_replacement(
                &self.client,
                r,
                std::time::Duration::from_secs(120),
            )
            .await?;
        }
        let mut values = desired.get("values").cloned().unwrap_or(json!({}));
        if let Some(secret) = desired.get("secret_values") {
            wallaroo_engine::json::merge(&mut values, secret);
        }
        let work = tempfile::tempdir().map_err(|e| ResourceError::new(format!("temp dir: {e}")))?;
        // JSON is YAML; the file is created 0600 and removed with the temp dir.
        let values_file = work.path().join("values.yaml");
        std::fs::write(&values_file, serde_json::to_vec(&values).expect("JSON"))
            .map_err(|e| ResourceError::new(e.to_string()))?;
        let registry_config = work.path().join("registry.json");
        let env = [("HELM_REGISTRY_CONFIG", registry_config.as_path())];
        let ca: Vec<String> = self
            .config
            .ca_file
            .iter()
            .flat_map(|c| ["--ca-file".to_string(), c.display().to_string()])
            .collect();
        if let (Some(login), true) = (&self.config.chart_registry, chart.starts_with("oci://")) {
            let mut args = vec![
                "registry".into(),
                "login".into(),
                login.host.clone(),
                "--username".into(),
                login.username.clone(),
                "--password-stdin".into(),
            ];
            args.extend(ca.clone());
            self.helm(&args, Some(&login.password), &env).await?;
        }
        // Pull first: `helm pull` honours --ca-file for OCI registries where
        // `helm upgrade` (3.16) does not; the upgrade then installs the local archive.
        let source = if chart.starts_with("oci://") {
            let mut pull: Vec<String> = ["pull", chart, "--version", version, "--destination"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            pull.push(work.path().display().to_string());
            pull.extend(ca.clone());
            self.helm(&pull, None, &env).await?;
            let archive = std::fs::read_dir(work.path())
                .map_err(|e| ResourceError::new(e.to_string()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "tgz"))
                .ok_or_else(|| {
                    ResourceError::new(format!("helm pull {chart} left no chart archive"))
                })?;
            archive.display().to_string()
        } else {
            chart.to_string()
        };
        let mut args: Vec<String> = [
            "upgrade",
            "--install",
            name,
            &source,
            "--version",
            version,
            "--namespace",
            ns,
            "--values",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(values_file.display().to_string());
        args.extend([
            "--atomic".into(),
            "--wait".into(),
            "--timeout".into(),
            timeout.into(),
        ]);
        self.helm(&args, None, &env).await?;
        let mut applied = desired.clone();
        applied.insert("status".into(), json!("deployed"));
        Ok(applied)
    }
}

/// How many of the release's objects are read at once when looking for drift.
const OBJECT_READS: usize = 16;

/// Kinds a chart may render that live outside any namespace.
pub(crate) const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "PriorityClass",
    "PersistentVolume",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "IngressClass",
    // Rendered by charts other projects wrote: metrics-server and kueue (APIService),
    // secrets-store-csi-driver (CSIDriver).
    "APIService",
    "CSIDriver",
    "CSINode",
    "RuntimeClass",
    "VolumeSnapshotClass",
    "FlowSchema",
    "PriorityLevelConfiguration",
    "Node",
];

/// The paths where `rendered` has a value `live` does not match. Objects are compared key by
/// key and lists item by item; what only `live` has does not count, nor an empty rendered
/// value that `live` leaves out. Numbers and strings that print the same are equal (YAML
/// `80` and an API's `"80"` in an int-or-string field).
fn differences(rendered: &Value, live: &Value, path: String, out: &mut Vec<String>) {
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    match (rendered, live) {
        (Value::Object(r), Value::Object(l)) => {
            for (k, v) in r {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match l.get(k) {
                    Some(lv) => differences(v, lv, p, out),
                    None if empty(v) => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(r), Value::Array(l)) => {
            if r.len() != l.len() {
                out.push(path);
                return;
            }
            for (i, (rv, lv)) in r.iter().zip(l).enumerate() {
                differences(rv, lv, format!("{path}[{i}]"), out);
            }
        }
        (r, l) if empty(r) && empty(l) => {}
        (r, l) if r == l => {}
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n))
            if n.to_string() == *s => {}
        _ => out.push(path),
    }
}

fn release_name(address: &Address) -> Result<&str, ResourceError> {
    address
        .segments()
        .get(1)
        .map(|s| s.name.as_str())
        .ok_or_else(|| ResourceError::new(format!("{address} has no release name")))
}

#[async_trait]
impl ResourceKind for HelmReleaseKind {
    fn name(&self) -> &'static str {
        "helm_release"
    }

    fn force_new(&self) -> &'static [&'static str] {
        &["namespace"]
    }

    fn sensitive(&self) -> &'static [&'static str] {
        &["secret_values"]
    }

    async fn read(&self, req: ReadRequest<'_>) -> Result<Option<Attrs>, ResourceError> {
        let Some(attrs) = req.prior.or(req.desired) else {
            return Ok(None);
        };
        let ns = str_attr(attrs, "namespace")?;
        let name = release_name(req.address)?;
        let Some(release) = self.stored(ns, name).await? else {
            return Ok(None);
        };
        if release.info.status == "uninstalled" {
            return Ok(None);
        }
        let shape = req
            .desired
            .and_then(|d| d.get("secret_values"))
            .cloned()
            .unwrap_or(json!({}));
        let config = if release.config.is_null() {
            json!({})
        } else {
            release.config.clone()
        };
        let (mut values, secret_values) = wallaroo_engine::json::split(&config, &shape);
        // A key the spec sets to exactly the chart's own default, which the release's
        // values do not name (an install made by hand leaves most keys at their defaults),
        // is no change: helm computes the same value either way.
        if let Some(desired) = req.desired.and_then(|d| d.get("values")) {
            wallaroo_engine::json::fill_defaults(&mut values, desired, &release.chart.values);
        }
        // Helm does not record where the chart came from, nor the timeout used.
        let same = |k: &str| {
            req.prior
                .or(req.desired)
                .and_then(|a| a.get(k))
                .cloned()
                .unwrap_or(Value::Null)
        };
        // Drift in the objects the release rendered (only for a deployed release: a failed
        // or pending one is a change of its own).
        let ignore = &self.config.ignore_drift;
        let drifted = if release.info.status == "deployed" {
            self.object_drift(ns, &release.manifest, ignore).await?
        } else {
            json!({})
        };
        Ok(Some(Attrs::from([
            ("namespace".to_string(), json!(ns)),
            ("drifted_objects".to_string(), drifted),
            ("chart".to_string(), same("chart")),
            ("version".to_string(), json!(release.chart.metadata.version)),
            ("values".to_string(), values),
            ("secret_values".to_string(), secret_values),
            ("timeout".to_string(), same("timeout")),
            ("status".to_string(), json!(release.info.status)),
        ])))
    }

    async fn create(&self, address: &Address, desired: &Attrs) -> Result<Attrs, ResourceError> {
        self.upgrade(address, desired).await
    }

    async fn delete(&self, address: &Address, prior: &Attrs) -> Result<(), ResourceError> {
        let name = release_name(address)?;
        let ns = str_attr(prior, "namespace")?;
        if self.stored(ns, name).await?.is_none() {
            return Ok(());
        }
        let timeout = prior
            .get("timeout")
            .and_then(Value::as_str)
            .unwrap_or("15m")
            .to_string();
        let args: Vec<String> = [
            "uninstall",
            name,
            "--namespace",
            ns,
            "--wait",
            "--timeout",
            &timeout,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        self.helm(&args, None, &[]).await.map(|_| ())
    }
}

/// The documents of a manifest helm rendered, split where helm splits them (a line that is
/// `---`, with what may follow it on that line), so that one document it cannot read does
/// not hide the others.
pub(crate) fn manifest_documents(manifest: &str) -> impl Iterator<Item = &str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut at = 0;
    for line in manifest.split_inclusive('\n') {
        if line.starts_with("---") && line[3..].trim().is_empty() {
            docs.push(&manifest[start..at]);
            start = at + line.len();
        }
        at += line.len();
    }
    docs.push(&manifest[start..]);
    docs.into_iter().filter(|d| !d.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_left_at_the_charts_defaults_count_as_set() {
        let defaults = json!({"ingress_mode": "internal", "assays": {"enabled": true, "version": "v2"}, "tolerations": [], "domainSuffix": "example.com"});
        let desired = json!({"ingress_mode": "internal", "assays": {"enabled": true, "version": "v1"}, "tolerations": [], "domainSuffix": "corp.example", "extra": 1});
        // The operator set only the domain and assays' version by hand.
        let mut live = json!({"domainSuffix": "corp.example", "assays": {"version": "v1"}});
        wallaroo_engine::json::fill_defaults(&mut live, &desired, &defaults);
        assert_eq!(
            live,
            json!({"domainSuffix": "corp.example", "assays": {"version": "v1", "enabled": true}, "ingress_mode": "internal", "tolerations": []})
        );
        // A value the chart does not default to stays a difference.
        let mut live = json!({});
        wallaroo_engine::json::fill_defaults(
            &mut live,
            &json!({"ingress_mode": "external"}),
            &defaults,
        );
        assert_eq!(live, json!({}));
    }

    #[test]
    fn a_manifest_splits_where_helm_splits_it_and_a_bad_document_hides_no_other() {
        let manifest = "---\n# Source: a.yaml\nkind: A\n---\n\n--- \nkind: [broken\n---\nkind: B\nnote: \"---\"\n";
        let docs: Vec<&str> = manifest_documents(manifest).collect();
        assert_eq!(docs.len(), 3, "{docs:?}");
        let kinds: Vec<Value> = docs
            .iter()
            .filter_map(|d| serde_saphyr::from_str::<Option<Value>>(d).ok().flatten())
            .map(|v| v["kind"].clone())
            .collect();
        assert_eq!(kinds, [json!("A"), json!("B")]);
    }

    #[test]
    fn secret_values_split_along_their_shape() {
        let config = json!({"a": 1, "ociRegistry": {"enabled": true, "password": "p"}, "privatePypi": {"password": "q"}});
        let shape = json!({"ociRegistry": {"password": "x"}, "privatePypi": {"password": "y"}});
        let (values, secrets) = wallaroo_engine::json::split(&config, &shape);
        assert_eq!(values, json!({"a": 1, "ociRegistry": {"enabled": true}}));
        assert_eq!(
            secrets,
            json!({"ociRegistry": {"password": "p"}, "privatePypi": {"password": "q"}})
        );
    }

    #[test]
    fn decodes_helm_storage() {
        use std::io::Write;
        let release = json!({"name": "w", "version": 3, "info": {"status": "deployed"},
                             "chart": {"metadata": {"name": "wallaroo", "version": "1.2.3"}}, "config": {"a": 1}});
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(release.to_string().as_bytes()).unwrap();
        let data = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
        let r = decode_release(data.as_bytes()).unwrap();
        assert_eq!(
            (
                r.version,
                r.chart.metadata.version.as_str(),
                r.info.status.as_str()
            ),
            (3, "1.2.3", "deployed")
        );
    }
}
