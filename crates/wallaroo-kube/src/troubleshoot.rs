//! The vendor's own checks, troubleshoot.sh's: the `Preflight` specs a release carries, found
//! where troubleshoot's `kubectl preflight` finds them (Secrets and ConfigMaps labelled
//! `troubleshoot.sh/kind: preflight`, and `kind: Preflight` documents), run with the real
//! `preflight` program, non-interactively, its JSON read into checks.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;

use crate::preflight::{Check, Outcome};

/// The `Preflight` specs in rendered manifests, as YAML texts, in the order found.
pub fn preflight_specs(manifests: &str) -> Vec<String> {
    let mut out = Vec::new();
    for doc in crate::helm::manifest_documents(manifests) {
        let Ok(Some(v)) = serde_saphyr::from_str::<Option<Value>>(doc) else {
            continue;
        };
        let kind = v["kind"].as_str().unwrap_or("");
        let api = v["apiVersion"].as_str().unwrap_or("");
        if kind == "Preflight" && api.starts_with("troubleshoot.") {
            out.push(doc.to_string());
            continue;
        }
        let labelled = v["metadata"]["labels"]["troubleshoot.sh/kind"] == "preflight"
            || v["metadata"]["labels"]["troubleshoot.replicated.com/kind"] == "preflight";
        if !labelled || !matches!(kind, "Secret" | "ConfigMap") {
            continue;
        }
        // Each value that holds a Preflight spec (troubleshoot reads `preflight.yaml` and
        // any key whose value is one).
        for field in ["stringData", "data"] {
            for (_, value) in v[field].as_object().into_iter().flatten() {
                let Some(text) = value.as_str() else { continue };
                let text = if field == "data" && kind == "Secret" {
                    match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
                        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                        Err(_) => continue,
                    }
                } else {
                    text.to_string()
                };
                if text.contains("kind: Preflight") {
                    out.push(text);
                }
            }
        }
    }
    out
}

/// Where the `preflight` program is: `configured` (the spec's), `$WALLAROO_PREFLIGHT`, else
/// `preflight` or `kubectl-preflight` on the PATH.
pub fn find_program(configured: Option<&Path>) -> Option<PathBuf> {
    match configured {
        Some(p) => Some(p.to_path_buf()),
        None => find("WALLAROO_PREFLIGHT", &["preflight", "kubectl-preflight"]),
    }
}

/// A program named by environment variable `var`, else the first of `names` on the PATH
/// (troubleshoot's programs go by their own names or as kubectl plugins).
fn find(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .find_map(|dir| names.iter().map(|n| dir.join(n)).find(|p| p.is_file()))
}

/// Runs `program` on `specs` (YAML texts) against the cluster of `kubeconfig`, and turns
/// each analyzer's outcome into a check named `vendor preflight: TITLE`.
pub async fn run_preflight(
    program: &Path,
    kubeconfig: Option<&Path>,
    specs: &[String],
) -> Result<Vec<Check>, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
    let mut files = Vec::new();
    for (i, text) in specs.iter().enumerate() {
        let f = dir.path().join(format!("preflight-{i}.yaml"));
        std::fs::write(&f, text).map_err(|e| format!("{}: {e}", f.display()))?;
        files.push(f);
    }
    let mut cmd = tokio::process::Command::new(program);
    // Run where it leaves nothing behind: the program saves a "preflight bundle" of what it
    // collected to its working directory.
    // Never let it reach out: troubleshoot's programs update themselves from the internet
    // unless told not to (flag and environment both, for older and newer releases).
    cmd.args([
        "--interactive=false",
        "--format=json",
        "--auto-update=false",
    ])
    .args(&files)
    .current_dir(dir.path())
    .env("PREFLIGHT_AUTO_UPDATE", "false")
    .env("TROUBLESHOOT_AUTO_UPDATE", "false")
    .stdin(std::process::Stdio::null());
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    // 0: all passed, 3: a failure, 4: a warning; anything else is the program's own error.
    let code = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if ![0, 3, 4].contains(&code) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{} exited with {code}: {}",
            program.display(),
            stderr.trim().lines().last().unwrap_or("").trim()
        ));
    }
    parse_results(&stdout).ok_or_else(|| {
        format!(
            "{} printed no JSON results: {}",
            program.display(),
            stdout.trim()
        )
    })
}

/// troubleshoot's JSON results (`{"pass": [...], "warn": [...], "fail": [...]}`, each
/// `{title, message}`) as checks.
pub fn parse_results(stdout: &str) -> Option<Vec<Check>> {
    let start = stdout.find('{')?;
    let v: Value = serde_json::from_str(stdout[start..].trim()).ok()?;
    let mut checks = Vec::new();
    for (key, outcome) in [
        ("fail", Outcome::Fail),
        ("warn", Outcome::Warn),
        ("pass", Outcome::Pass),
    ] {
        for r in v[key].as_array().into_iter().flatten() {
            let uri = r["uri"].as_str().filter(|u| !u.is_empty());
            checks.push(Check {
                name: format!("vendor preflight: {}", r["title"].as_str().unwrap_or("?")),
                outcome,
                detail: r["message"].as_str().unwrap_or("").to_string(),
                hint: match outcome {
                    Outcome::Pass => None,
                    _ => Some(match uri {
                        Some(u) => format!("the vendor's check; see {u}"),
                        None => {
                            "the vendor's check (a troubleshoot.sh analyzer the release carries)"
                                .into()
                        }
                    }),
                },
            });
        }
    }
    Some(checks)
}

/// Where the `support-bundle` program is: `$WALLAROO_SUPPORT_BUNDLE`, else `support-bundle` or
/// `kubectl-support_bundle` on the PATH.
pub fn find_support_bundle() -> Option<PathBuf> {
    find(
        "WALLAROO_SUPPORT_BUNDLE",
        &["support-bundle", "kubectl-support_bundle"],
    )
}

/// A troubleshoot `SupportBundle` spec that collects the cluster's view of `namespace`
/// (cluster info and resources, the last `log_lines` of every container's log) and carries
/// `files` (already redacted) under `wallaroo/` in the bundle.
pub fn support_bundle_spec(
    namespace: &str,
    log_lines: i64,
    files: &std::collections::BTreeMap<String, Vec<u8>>,
) -> String {
    // JSON strings are YAML strings: every file goes in verbatim, quoted.
    let q = |s: &str| serde_json::to_string(s).expect("strings serialize");
    let mut out = format!(
        "apiVersion: troubleshoot.sh/v1beta2\nkind: SupportBundle\nmetadata:\n  name: wallaroo\nspec:\n  collectors:\n    - clusterInfo: {{}}\n    - clusterResources:\n        namespaces: [{ns}]\n    - logs:\n        name: wallaroo/logs\n        namespace: {ns}\n        limits:\n          maxLines: {log_lines}\n",
        ns = q(namespace)
    );
    for (name, bytes) in files {
        out.push_str(&format!(
            "    - data:\n        name: wallaroo\n        collectorName: {}\n        data: {}\n",
            q(name),
            q(&String::from_utf8_lossy(bytes))
        ));
    }
    out
}

/// Runs `program` (troubleshoot's `support-bundle`) on `spec` plus the vendor's specs in the
/// cluster (`--load-cluster-specs`), and returns the archive it wrote (in a directory the
/// caller keeps alive).
pub async fn run_support_bundle(
    program: &Path,
    kubeconfig: Option<&Path>,
    spec: &str,
    dir: &Path,
) -> Result<PathBuf, String> {
    let spec_file = dir.join("wallaroo-support-bundle.yaml");
    std::fs::write(&spec_file, spec).map_err(|e| format!("{}: {e}", spec_file.display()))?;
    let out = dir.join("bundle");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args([
        "--interactive=false",
        "--auto-update=false",
        "--load-cluster-specs",
        "-o",
    ])
    .arg(&out)
    .arg(&spec_file)
    .current_dir(dir)
    .env("TROUBLESHOOT_AUTO_UPDATE", "false")
    .stdin(std::process::Stdio::null());
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    let result = cmd
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let archive = dir.join("bundle.tar.gz");
    if !archive.exists() {
        return Err(format!(
            "{} wrote no bundle (exit {}): {}",
            program.display(),
            result.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&result.stderr).trim()
        ));
    }
    Ok(archive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_found_in_labelled_secrets_configmaps_and_preflight_documents() {
        let spec = "apiVersion: troubleshoot.sh/v1beta2\nkind: Preflight\nmetadata:\n  name: p\nspec:\n  analyzers: []\n";
        let encoded = base64::engine::general_purpose::STANDARD.encode(spec);
        let manifests = format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: a\n  labels:\n    troubleshoot.sh/kind: preflight\ndata:\n  preflight.yaml: {encoded}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  labels:\n    troubleshoot.sh/kind: preflight\ndata:\n  preflight.yaml: |\n    apiVersion: troubleshoot.sh/v1beta2\n    kind: Preflight\n    metadata:\n      name: q\n---\n{spec}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\ndata:\n  x: \"kind: Preflight\"\n"
        );
        let found = preflight_specs(&manifests);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0], spec);
        assert!(found[1].contains("name: q"));
    }

    #[test]
    fn results_become_checks_failures_first() {
        let checks = parse_results(
            r#"{"pass": [{"title": "Kubernetes version", "message": "ok"}], "fail": [{"title": "Node count", "message": "needs 3 nodes", "uri": "https://example.com/nodes"}]}"#,
        )
        .unwrap();
        assert_eq!(checks[0].name, "vendor preflight: Node count");
        assert_eq!(checks[0].outcome, Outcome::Fail);
        assert!(
            checks[0]
                .hint
                .as_deref()
                .unwrap()
                .contains("https://example.com/nodes")
        );
        assert_eq!(checks[1].outcome, Outcome::Pass);
    }
}
