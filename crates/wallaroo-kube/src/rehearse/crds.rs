//! The chart's own CRDs (its `crds/` directory). helm installs them before a first install
//! and never again, so an upgrade that brings a new CRD version would leave the cluster on the
//! old one; wallaroo applies them before every upgrade, server-side (rehearsed first like
//! every write), and never deletes one. A new CRD that drops a version objects are stored in
//! is refused: the API server could no longer read them.

use std::time::Duration;

use serde_json::Value;
use wallaroo_engine::ResourceError;

use super::{body_text, send, wait_for};

/// The field manager of the CRDs wallaroo applies.
pub const MANAGER: &str = "wallaroo";

/// The versions `live` (a CRD as the API server holds it) has objects stored in that `new`
/// (the chart's) no longer lists.
pub fn dropped_versions(live: &Value, new: &Value) -> Vec<String> {
    let listed: Vec<&str> = new["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    live["status"]["storedVersions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|v| !listed.contains(v))
        .map(String::from)
        .collect()
}

/// The API path of a CRD.
pub fn path_of(name: &str) -> String {
    format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
}

/// Applies `crds` server-side and waits until each is Established (at most a minute).
pub async fn apply_crds(client: &kube::Client, crds: &[Value]) -> Result<(), ResourceError> {
    for crd in crds {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        let failed = |e: &dyn std::fmt::Display| {
            ResourceError::new(format!("applying the chart's CRD {name}: {e}"))
        };
        let (status, _, answer) = send(
            client,
            http::Method::PATCH,
            &format!(
                "{}?fieldManager={MANAGER}&force=true&fieldValidation=Strict",
                path_of(name)
            ),
            Some((
                "application/apply-patch+yaml",
                serde_json::to_vec(crd).unwrap_or_default(),
            )),
        )
        .await
        .map_err(|e| failed(&e))?;
        if !(200..300).contains(&status) {
            return Err(failed(&format!("{status}: {}", body_text(&answer))));
        }
        let established = wait_for(
            client,
            &path_of(name),
            Duration::from_secs(60),
            |_, live| {
                live["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Established" && c["status"] == "True")
            },
        )
        .await
        .map_err(|e| failed(&e))?;
        if !established {
            return Err(failed(&"not Established a minute after it was applied"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_version_the_new_crd_leaves_out_is_dropped() {
        let live = serde_json::json!({"status": {"storedVersions": ["v1alpha1", "v1"]}});
        let new = serde_json::json!({"spec": {"versions": [{"name": "v1"}, {"name": "v2"}]}});
        assert_eq!(dropped_versions(&live, &new), ["v1alpha1"]);
        let kept =
            serde_json::json!({"spec": {"versions": [{"name": "v1alpha1"}, {"name": "v1"}]}});
        assert!(dropped_versions(&live, &kept).is_empty());
    }
}
