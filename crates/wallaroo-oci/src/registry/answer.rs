//! What a registry says when it refuses: the OCI distribution error body (`{"errors": [{"code",
//! "message", "detail"}]}`, and the variants Artifactory and Harbor send), cut to a readable
//! length and scrubbed of the credentials, and whether it means the registry is out of space.
//!
//! Out of space, as each implementation says it (each checked against the implementation or
//! its maintainers' threads):
//! - CNCF distribution (2.8, v3): `500` with `code: UNKNOWN` and a `detail` naming the upload's
//!   file and `no space left on device` (so does any registry whose disk filled), or, for a
//!   link file it writes, the storage driver's error as JSON with `"Err":28` (ENOSPC);
//! - `507 Insufficient Storage` (WebDAV's status, used by registries behind such stores);
//! - Artifactory: `413` with `message: "Datastore disk usage is too high. Contact your
//!   Artifactory administrator ..."` (a plain `413` from a proxy's body limit is not this);
//! - Harbor: `code: DENIED` (403; 500 before Harbor 1.9) with a message that the request
//!   `will exceed the configured upper limit` of the project's storage quota.

use reqwest::StatusCode;

/// How long the registry's own words may run in an error, in characters.
const READABLE: usize = 400;

/// A registry's refusal, read from its status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub status: StatusCode,
    /// The body's errors as `CODE: message (detail)`, joined; or the start of a body that is
    /// not the OCI error JSON. Empty when the body said nothing.
    pub said: String,
    /// The registry says its storage (disk, quota) is full.
    pub out_of_space: bool,
}

impl Answer {
    /// Reads `body` (as the registry sent it) with `status`; `secrets` are replaced wherever
    /// they appear (a registry may echo what it was sent).
    pub fn read(status: StatusCode, body: &[u8], secrets: &[&str]) -> Answer {
        let text = String::from_utf8_lossy(body);
        let said = match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(json) => errors_of(&json),
            // A proxy's error page says no more than its status.
            Err(_) if text.trim_start().starts_with('<') => String::new(),
            Err(_) => text.split_whitespace().collect::<Vec<_>>().join(" "),
        };
        let mut said = secrets
            .iter()
            .filter(|s| s.len() >= 4)
            .fold(said, |t, s| t.replace(s, "(sensitive)"));
        if said.chars().count() > READABLE {
            said = said.chars().take(READABLE).collect::<String>() + "...";
        }
        let lower = text.to_ascii_lowercase();
        let out_of_space = status == StatusCode::INSUFFICIENT_STORAGE
            || lower.contains("no space left on device")
            // distribution's storage driver error as JSON: Go's errno 28 is ENOSPC.
            || lower.replace(' ', "").contains("\"err\":28}")
            || lower.contains("disk quota exceeded")
            || (status == StatusCode::PAYLOAD_TOO_LARGE
                && (lower.contains("disk")
                    || lower.contains("storage")
                    || lower.contains("quota")))
            || (lower.contains("quota") && lower.contains("exceed"))
            || lower.contains("exceed the configured upper limit");
        Answer {
            status,
            said,
            out_of_space,
        }
    }

    /// `500 Internal Server Error: UNKNOWN: unknown error (write ...: no space left on device)`.
    pub fn describe(&self) -> String {
        if self.said.is_empty() {
            self.status.to_string()
        } else {
            format!("{}: {}", self.status, self.said)
        }
    }
}

/// The errors of an OCI error body (or Artifactory's `{"errors": [{"status", "message"}]}`),
/// each `CODE: message (detail)`, joined with `; `.
fn errors_of(json: &serde_json::Value) -> String {
    let Some(errors) = json["errors"].as_array() else {
        return json["message"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| json.to_string());
    };
    errors
        .iter()
        .map(|e| {
            let code = e["code"].as_str().unwrap_or("");
            let message = e["message"].as_str().unwrap_or("");
            let detail = match &e["detail"] {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let mut out = String::new();
            if !code.is_empty() {
                out.push_str(code);
            }
            if !message.is_empty() {
                if !out.is_empty() {
                    out.push_str(": ");
                }
                out.push_str(message);
            }
            if !detail.is_empty() && detail != message {
                out.push_str(&format!(" ({detail})"));
            }
            out
        })
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// distribution 2.8's answer to an upload on a full disk, as the test kit's registry on a
    /// small tmpfs sent it.
    #[test]
    fn distributions_full_disk_is_out_of_space_with_its_detail() {
        let body = br#"{"errors":[{"code":"UNKNOWN","message":"unknown error","detail":"write /var/lib/registry/docker/registry/v2/repositories/x/_uploads/0a1b/data: no space left on device"}]}"#;
        let a = Answer::read(StatusCode::INTERNAL_SERVER_ERROR, body, &[]);
        assert!(a.out_of_space);
        assert_eq!(
            a.describe(),
            "500 Internal Server Error: UNKNOWN: unknown error (write /var/lib/registry/docker/registry/v2/repositories/x/_uploads/0a1b/data: no space left on device)"
        );
    }

    /// distribution 2.8 writing a manifest's link on a full disk, as the test kit saw it.
    #[test]
    fn distributions_storage_driver_errno_28_is_out_of_space() {
        let body = br#"{"errors":[{"code":"UNKNOWN","message":"unknown error","detail":{"DriverName":"filesystem","Enclosed":{"Op":"write","Path":"/var/lib/registry/docker/registry/v2/repositories/wallaroo/engine-lb/_manifests/revisions/sha256/74ef/link","Err":28}}}]}"#;
        let a = Answer::read(StatusCode::INTERNAL_SERVER_ERROR, body, &[]);
        assert!(a.out_of_space, "{a:?}");
        let other = br#"{"errors":[{"code":"UNKNOWN","message":"unknown error","detail":{"DriverName":"filesystem","Enclosed":{"Op":"write","Path":"/x","Err":13}}}]}"#;
        assert!(!Answer::read(StatusCode::INTERNAL_SERVER_ERROR, other, &[]).out_of_space);
    }

    #[test]
    fn artifactory_and_harbor_quota_answers_are_out_of_space_a_proxys_limit_is_not() {
        let artifactory = br#"{"errors":[{"status":413,"message":"Datastore disk usage is too high. Contact your Artifactory administrator to add additional storage space or change the disk quota limits."}]}"#;
        assert!(Answer::read(StatusCode::PAYLOAD_TOO_LARGE, artifactory, &[]).out_of_space);
        let harbor = br#"{"errors":[{"code":"DENIED","message":"adding 29.0 MiB of storage resource, which when updated to current usage of 152.4 MiB will exceed the configured upper limit of 10.0 MiB."}]}"#;
        assert!(Answer::read(StatusCode::FORBIDDEN, harbor, &[]).out_of_space);
        let nginx = b"<html><head><title>413 Request Entity Too Large</title></head><body><center><h1>413 Request Entity Too Large</h1></center><hr><center>nginx</center></body></html>";
        let a = Answer::read(StatusCode::PAYLOAD_TOO_LARGE, nginx, &[]);
        assert!(!a.out_of_space);
        assert_eq!(a.describe(), "413 Payload Too Large", "no error page");
        assert!(Answer::read(StatusCode::INSUFFICIENT_STORAGE, b"", &[]).out_of_space);
    }

    #[test]
    fn long_answers_are_cut_and_credentials_scrubbed() {
        let body = format!(
            r#"{{"errors":[{{"code":"DENIED","message":"token hunter2-secret refused","detail":"{}"}}]}}"#,
            "x".repeat(2000)
        );
        let a = Answer::read(StatusCode::FORBIDDEN, body.as_bytes(), &["hunter2-secret"]);
        assert!(!a.said.contains("hunter2"), "{}", a.said);
        assert!(a.said.contains("(sensitive)"));
        assert!(a.said.chars().count() <= READABLE + 3);
    }
}
