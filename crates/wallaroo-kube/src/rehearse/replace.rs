//! Replacing an object of the release whose change a field's immutability refuses: apply
//! deletes it (a StatefulSet with `Orphan`, so that its pods and volumes stay) and waits
//! until it is gone; helm's upgrade then makes it again from the chart.

use std::time::Duration;

use wallaroo_engine::ResourceError;

use super::{Replacement, body_text, send, wait_for};

/// Deletes `r` and waits until the API server no longer has it (up to `timeout`).
pub async fn delete_for_replacement(
    client: &kube::Client,
    r: &Replacement,
    timeout: Duration,
) -> Result<(), ResourceError> {
    let failed = |e: &dyn std::fmt::Display| {
        ResourceError::new(format!("replacing {} ({}): {e}", r.object, r.why))
    };
    let policy = if r.orphan { "Orphan" } else { "Background" };
    let body = serde_json::json!({
        "apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": policy,
    });
    let (status, _, answer) = send(
        client,
        http::Method::DELETE,
        &r.path,
        Some((
            "application/json",
            serde_json::to_vec(&body).unwrap_or_default(),
        )),
    )
    .await
    .map_err(|e| failed(&e))?;
    if !matches!(status, 200 | 202 | 404) {
        return Err(failed(&format!(
            "the delete answered {status}: {}",
            body_text(&answer)
        )));
    }
    let gone = wait_for(client, &r.path, timeout, |status, _| status == 404)
        .await
        .map_err(|e| failed(&e))?;
    if gone {
        Ok(())
    } else {
        Err(failed(&format!(
            "it was still there {}s after its delete",
            timeout.as_secs()
        )))
    }
}
