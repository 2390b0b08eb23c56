//! `kots_app.wallaroo`: Wallaroo installed through KOTS (`method = "kots"`). The spec's
//! settings become a KOTS `ConfigValues` file (`kots.io/v1beta1`, the format Wallaroo's own
//! template uses); apply runs `kubectl kots install` the first time and
//! `kubectl kots set config --merge --deploy` after; plan reads the live values with
//! `kubectl kots get config`. Files with secrets are written 0600 and removed after.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use wallaroo_engine::{Address, Attrs, ReadRequest, ResourceError, ResourceKind};

use crate::str_attr;

pub struct KotsAppKind {
    /// The `kubectl-kots` plugin binary.
    pub binary: PathBuf,
    pub kubeconfig: Option<PathBuf>,
}

/// A `ConfigValues` document: every item as `value`, the secret ones as `valuePlaintext`
/// (KOTS encrypts those on receipt).
pub fn config_values_yaml(app_slug: &str, values: &Value, secrets: &Value) -> String {
    let mut items = Map::new();
    for (k, v) in values.as_object().into_iter().flatten() {
        items.insert(k.clone(), json!({ "value": item_text(v) }));
    }
    for (k, v) in secrets.as_object().into_iter().flatten() {
        items.insert(k.clone(), json!({ "valuePlaintext": item_text(v) }));
    }
    let doc = json!({
        "apiVersion": "kots.io/v1beta1",
        "kind": "ConfigValues",
        "metadata": { "name": app_slug },
        "spec": { "values": items },
    });
    serde_saphyr::to_string(&doc).expect("YAML serializes")
}

/// KOTS config items are strings: booleans as "1"/"0", as its bool items store them.
fn item_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "1" } else { "0" }.into(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The non-secret items of a `ConfigValues` document, as `item_text` wrote them.
pub fn parse_config_values(yaml: &str) -> Result<Map<String, Value>, String> {
    let doc: Value = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
    if doc["kind"] != "ConfigValues" {
        return Err(format!(
            "not a ConfigValues document (kind {})",
            doc["kind"]
        ));
    }
    let mut out = Map::new();
    for (k, v) in doc["spec"]["values"].as_object().into_iter().flatten() {
        if let Some(text) = v.get("value").and_then(Value::as_str) {
            out.insert(k.clone(), json!(text));
        }
    }
    Ok(out)
}

impl KotsAppKind {
    async fn kots(&self, args: &[String]) -> Result<String, ResourceError> {
        self.kots_with(args, &[]).await
    }

    /// Runs the plugin with `secrets` in its environment only, never on its command line
    /// (visible in the process list): the kots CLI reads every flag from `KOTS_<FLAG>`
    /// (viper's `AutomaticEnv` with the `KOTS` prefix), so `--shared-password` is
    /// `KOTS_SHARED_PASSWORD`.
    async fn kots_with(
        &self,
        args: &[String],
        secrets: &[(&str, &str)],
    ) -> Result<String, ResourceError> {
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.envs(secrets.iter().copied());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(k) = &self.kubeconfig {
            cmd.env("KUBECONFIG", k);
        }
        let out = cmd.output().await.map_err(|e| {
            ResourceError::new(format!(
                "cannot run {} ({e}): install the KOTS kubectl plugin (kubectl-kots; the air-gap guide uses v1.124.18) or set kots {{ binary = \"...\" }}",
                self.binary.display()
            ))
        })?;
        if !out.status.success() {
            return Err(ResourceError::new(format!(
                "kubectl kots {} failed: {}",
                args.first().map(String::as_str).unwrap_or(""),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn write_secret_file(dir: &Path, name: &str, text: &str) -> Result<PathBuf, ResourceError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| ResourceError::new(format!("{}: {e}", path.display())))?;
        f.write_all(text.as_bytes())
            .map_err(|e| ResourceError::new(format!("{}: {e}", path.display())))?;
        Ok(path)
    }
}

impl KotsAppKind {
    /// The desired ConfigValues, secrets included, as a 0600 file in `dir`.
    fn write_config_values(
        dir: &Path,
        slug: &str,
        desired: &Attrs,
    ) -> Result<PathBuf, ResourceError> {
        Self::write_secret_file(
            dir,
            "config-values.yaml",
            &config_values_yaml(
                slug,
                desired.get("config_values").unwrap_or(&json!({})),
                desired
                    .get("secrets")
                    .and_then(|s| s.get("config"))
                    .unwrap_or(&json!({})),
            ),
        )
    }
}

fn secret<'a>(desired: &'a Attrs, key: &str) -> Option<&'a str> {
    desired
        .get("secrets")
        .and_then(|s| s.get(key))
        .and_then(Value::as_str)
}

#[async_trait]
impl ResourceKind for KotsAppKind {
    fn name(&self) -> &'static str {
        "kots_app"
    }

    fn force_new(&self) -> &'static [&'static str] {
        &["namespace", "app_slug"]
    }

    async fn read(&self, req: ReadRequest<'_>) -> Result<Option<Attrs>, ResourceError> {
        let Some(attrs) = req.desired.or(req.prior) else {
            return Ok(None);
        };
        let (ns, slug) = (str_attr(attrs, "namespace")?, str_attr(attrs, "app_slug")?);
        let args: Vec<String> = ["get", "config", "--appslug", slug, "--namespace", ns]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let yaml = match self.kots(&args).await {
            Ok(y) => y,
            Err(e) if e.message.contains("not found") || e.message.contains("no app") => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let live = parse_config_values(&yaml).map_err(ResourceError::new)?;
        // The values as KOTS stores them (strings), compared with the desired ones written
        // the same way; the rest (bundle, registry, secrets) is what the last apply used.
        let mut out = attrs.clone();
        let desired_values = attrs.get("config_values").cloned().unwrap_or(json!({}));
        let mut values = Map::new();
        for (k, v) in desired_values.as_object().into_iter().flatten() {
            let now = live.get(k).and_then(Value::as_str).unwrap_or_default();
            values.insert(
                k.clone(),
                if now == item_text(v) {
                    v.clone()
                } else {
                    json!(now)
                },
            );
        }
        out.insert("config_values".into(), Value::Object(values));
        Ok(Some(out))
    }

    async fn create(&self, _: &Address, desired: &Attrs) -> Result<Attrs, ResourceError> {
        let (ns, slug, channel) = (
            str_attr(desired, "namespace")?,
            str_attr(desired, "app_slug")?,
            str_attr(desired, "channel")?,
        );
        let work = tempfile::tempdir().map_err(|e| ResourceError::new(format!("temp dir: {e}")))?;
        let values = Self::write_config_values(work.path(), slug, desired)?;
        let license = secret(desired, "license")
            .ok_or_else(|| ResourceError::new("kots needs `source { license = ... }`"))?;
        let license = Self::write_secret_file(work.path(), "license.yaml", license)?;
        let password = secret(desired, "admin_console_password")
            .ok_or_else(|| ResourceError::new("kots needs `kots { admin_console_password }`"))?;
        let mut args: Vec<String> = vec![
            "install".into(),
            format!("{slug}/{channel}"),
            "--namespace".into(),
            ns.into(),
            "--license-file".into(),
            license.display().to_string(),
            "--config-values".into(),
            values.display().to_string(),
            "--no-port-forward".into(),
            "--skip-preflights".into(),
        ];
        let mut secrets = vec![("KOTS_SHARED_PASSWORD", password)];
        if let Some(bundle) = desired.get("airgap_bundle").and_then(Value::as_str) {
            args.extend(["--airgap-bundle".into(), bundle.into()]);
        }
        if let Some(registry) = desired.get("registry").and_then(Value::as_str) {
            let (host, namespace) = registry.split_once('/').unwrap_or((registry, ""));
            args.extend([
                "--kotsadm-registry".into(),
                host.into(),
                "--kotsadm-namespace".into(),
                namespace.into(),
            ]);
            if let Some(u) = desired.get("registry_username").and_then(Value::as_str) {
                args.extend(["--registry-username".into(), u.into()]);
            }
            if let Some(p) = secret(desired, "registry_password") {
                secrets.push(("KOTS_REGISTRY_PASSWORD", p));
            }
        }
        self.kots_with(&args, &secrets).await?;
        Ok(desired.clone())
    }

    async fn update(
        &self,
        _: &Address,
        _: &Attrs,
        desired: &Attrs,
    ) -> Result<Attrs, ResourceError> {
        let (ns, slug) = (
            str_attr(desired, "namespace")?,
            str_attr(desired, "app_slug")?,
        );
        let work = tempfile::tempdir().map_err(|e| ResourceError::new(format!("temp dir: {e}")))?;
        let values = Self::write_config_values(work.path(), slug, desired)?;
        let args: Vec<String> = vec![
            "set".into(),
            "config".into(),
            slug.into(),
            "--namespace".into(),
            ns.into(),
            "--config-file".into(),
            values.display().to_string(),
            "--merge".into(),
            "--deploy".into(),
        ];
        self.kots(&args).await?;
        Ok(desired.clone())
    }

    async fn delete(&self, _: &Address, prior: &Attrs) -> Result<(), ResourceError> {
        let (ns, slug) = (str_attr(prior, "namespace")?, str_attr(prior, "app_slug")?);
        let args: Vec<String> = ["remove", slug, "--namespace", ns, "--force"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        self.kots(&args).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values_follow_the_kots_format_and_read_back() {
        let values = json!({"ingress_mode": "internal", "domainPrefix": "", "domainSuffix": "example.com",
                            "external_inference_endpoints": true, "assays": "v2"});
        let secrets = json!({"private_pypi_password": "s3cret"});
        let yaml = config_values_yaml("wallaroo", &values, &secrets);
        let doc: Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(doc["apiVersion"], "kots.io/v1beta1");
        assert_eq!(doc["kind"], "ConfigValues");
        assert_eq!(doc["metadata"]["name"], "wallaroo");
        let items = &doc["spec"]["values"];
        assert_eq!(items["ingress_mode"], json!({"value": "internal"}));
        assert_eq!(items["domainPrefix"], json!({"value": ""}));
        assert_eq!(items["external_inference_endpoints"], json!({"value": "1"}));
        assert_eq!(
            items["private_pypi_password"],
            json!({"valuePlaintext": "s3cret"})
        );
        let back = parse_config_values(&yaml).unwrap();
        assert_eq!(back["domainSuffix"], "example.com");
        assert!(
            !back.contains_key("private_pypi_password"),
            "secrets are not read back"
        );
        assert!(parse_config_values("kind: Secret\n").is_err());
    }

    /// `kubectl-kots` cannot be had here (the module proxy refuses it), so this is a
    /// **test double** of the plugin's command line: a script that records its arguments and
    /// environment. It shows what reaches the process list; what kots does with it is
    /// kots's own (its flags read `KOTS_<FLAG>` from the environment).
    #[tokio::test]
    async fn no_secret_reaches_the_kots_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("kubectl-kots");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$@\" > {0}/args\nenv > {0}/env\n",
                dir.path().display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let kind = KotsAppKind {
            binary: script,
            kubeconfig: None,
        };
        let desired = Attrs::from([
            ("namespace".to_string(), json!("wallaroo")),
            ("app_slug".to_string(), json!("wallaroo")),
            ("channel".to_string(), json!("2025-1")),
            ("registry".to_string(), json!("registry.internal/wallaroo")),
            ("registry_username".to_string(), json!("wallaroo")),
            ("config_values".to_string(), json!({"ingress_mode": "none"})),
            (
                "secrets".to_string(),
                json!({"admin_console_password": "ADMIN-s3cret", "license": "LICENSE-s3cret",
                       "registry_password": "REGISTRY-s3cret", "config": {"pypi": "PYPI-s3cret"}}),
            ),
        ]);
        kind.create(&Address::named("kots_app", "wallaroo"), &desired)
            .await
            .unwrap();
        let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
        for secret in [
            "ADMIN-s3cret",
            "LICENSE-s3cret",
            "REGISTRY-s3cret",
            "PYPI-s3cret",
        ] {
            assert!(
                !args.contains(secret),
                "{secret} on the command line:\n{args}"
            );
        }
        assert!(args.contains("--license-file"), "{args}");
        let env = std::fs::read_to_string(dir.path().join("env")).unwrap();
        assert!(env.contains("KOTS_SHARED_PASSWORD=ADMIN-s3cret"), "{env}");
        assert!(
            env.contains("KOTS_REGISTRY_PASSWORD=REGISTRY-s3cret"),
            "{env}"
        );
    }

    #[tokio::test]
    async fn a_missing_kots_plugin_is_a_clear_error() {
        let kind = KotsAppKind {
            binary: "/nonexistent/kubectl-kots".into(),
            kubeconfig: None,
        };
        let desired = Attrs::from([
            ("namespace".to_string(), json!("wallaroo")),
            ("app_slug".to_string(), json!("wallaroo")),
        ]);
        let err = kind
            .read(ReadRequest {
                address: &Address::named("kots_app", "wallaroo"),
                desired: Some(&desired),
                prior: None,
                during_apply: false,
            })
            .await
            .unwrap_err();
        assert!(
            err.message.contains("install the KOTS kubectl plugin"),
            "{}",
            err.message
        );
    }
}
