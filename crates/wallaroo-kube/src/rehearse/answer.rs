//! Reading the API server's answer to a dry run: accepted (with its `Warning` headers) or
//! refused, and why, in terms an operator acts on.

use serde_json::Value;
use wallaroo_engine::{Refusal, RefusalReason};

/// What one dry-run request came back with.
#[derive(Debug)]
pub enum Answer {
    /// Accepted; the server's warnings (`would violate PodSecurity ...`).
    Accepted(Vec<String>),
    /// Refused: why, the field the server named, its message.
    Refused {
        reason: RefusalReason,
        field: Option<String>,
        message: String,
    },
    /// The write could not be rehearsed (a webhook that does not support dry runs, a
    /// right the rehearsing identity lacks): why.
    NotRehearsed(String),
}

/// The text of each `Warning` header (`299 - "text"`).
pub fn warnings(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::WARNING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| {
            // `299 - "text"`: the text between the first and the last quote.
            match (v.find('"'), v.rfind('"')) {
                (Some(a), Some(b)) if b > a => v[a + 1..b].replace("\\\"", "\""),
                _ => v.to_string(),
            }
        })
        .collect()
}

/// What an answer with `status` and body `body` (a `Status` object, or anything else) means.
pub fn classify(status: u16, headers: &http::HeaderMap, body: &[u8]) -> Answer {
    if (200..300).contains(&status) {
        return Answer::Accepted(warnings(headers));
    }
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = parsed["message"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| {
            String::from_utf8_lossy(body)
                .trim()
                .chars()
                .take(500)
                .collect()
        });
    let causes: Vec<&Value> = parsed["details"]["causes"]
        .as_array()
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    let field = causes
        .iter()
        .find_map(|c| c["field"].as_str().filter(|f| !f.is_empty()))
        .map(String::from);
    let lower = message.to_lowercase();
    let reason_word = parsed["reason"].as_str().unwrap_or_default();
    if lower.contains("does not support dry run") {
        return Answer::NotRehearsed(message);
    }
    // An admission policy's or webhook's denial, whatever status it chose (a
    // ValidatingAdmissionPolicy answers 422 unless its validation names a reason).
    let denied = lower.contains("denied request")
        || lower.contains("denied the request")
        || lower.contains("validatingadmissionpolicy")
        || lower.contains("violates podsecurity");
    let reason = match status {
        _ if denied => RefusalReason::Policy,
        422 if lower.contains("field is immutable")
            || lower.contains("updates to statefulset spec for fields other than")
            || causes.iter().any(|c| {
                c["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("field is immutable"))
            }) =>
        {
            RefusalReason::Immutable
        }
        422 | 400 => RefusalReason::Invalid,
        403 if lower.contains("exceeded quota")
            || lower.contains("limitrange")
            || lower.contains("maximum ") && lower.contains("per container")
            || lower.contains("minimum ") && lower.contains("per container") =>
        {
            RefusalReason::Quota
        }
        403 if lower.contains("cannot ") && lower.contains(" resource ") => {
            // The rehearsing identity may not make it: rehearsing is not possible, and the
            // permission check speaks for the rights.
            return Answer::NotRehearsed(message);
        }
        403 => RefusalReason::Forbidden,
        404 if lower.contains("the server could not find the requested resource") => {
            RefusalReason::Unserved
        }
        500 if lower.contains("failed calling webhook") => RefusalReason::Policy,
        _ if reason_word == "Invalid" => RefusalReason::Invalid,
        _ => RefusalReason::Other,
    };
    Answer::Refused {
        reason,
        field,
        message,
    }
}

/// What to do about a refusal of `object` (`Kind ns/name`).
pub fn hint(reason: RefusalReason, object: &str, namespace: Option<&str>) -> String {
    match reason {
        RefusalReason::Immutable => "this field cannot change on an existing object: let apply delete it and helm make it again with `helm { replace_immutable = true }` (a StatefulSet's pods and volumes are kept), or keep the field as it is".into(),
        RefusalReason::Policy => "a policy of the cluster denies it: change the values so that the object complies, or ask the cluster's admins for an exception (the policy's message says what it wants)".into(),
        RefusalReason::Quota => format!(
            "it does not fit the namespace's ResourceQuota or LimitRange{}: raise them, or lower what the release asks for",
            namespace.map(|n| format!(" ({n})")).unwrap_or_default()
        ),
        RefusalReason::Invalid => format!("the server finds {object} invalid as the chart renders it: check the values that feed that field, or a chart version made for this Kubernetes version"),
        RefusalReason::Forbidden => "the server forbids it: `wallaroo rbac` prints the rights apply needs".into(),
        RefusalReason::Unserved => "install what serves it first (its CRD or operator), or use a chart version made for this Kubernetes version".into(),
        RefusalReason::Ownership => String::new(),
        RefusalReason::Other => "see the server's message".into(),
    }
}

/// A refusal of `object` for the plan resource `address`, secrets scrubbed from the message.
pub fn refusal(
    address: &str,
    object: &str,
    namespace: Option<&str>,
    reason: RefusalReason,
    field: Option<String>,
    message: String,
    redact: &[String],
) -> Refusal {
    Refusal {
        address: address.to_string(),
        object: object.to_string(),
        reason,
        field,
        message: scrub(message, redact),
        hint: hint(reason, object, namespace),
    }
}

/// `text` with each secret string replaced by `(sensitive)`.
pub fn scrub(text: String, redact: &[String]) -> String {
    redact
        .iter()
        .filter(|s| s.len() >= 4)
        .fold(text, |t, s| t.replace(s.as_str(), "(sensitive)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, message: &str, causes: Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "kind": "Status", "status": "Failure", "code": code, "message": message,
            "reason": "Invalid", "details": {"causes": causes},
        }))
        .unwrap()
    }

    #[test]
    fn an_immutable_selector_names_its_field() {
        let body = status(
            422,
            "Deployment.apps \"minio\" is invalid: spec.selector: Invalid value: ...: field is immutable",
            serde_json::json!([{"reason": "FieldValueInvalid", "message": "Invalid value: field is immutable", "field": "spec.selector"}]),
        );
        match classify(422, &http::HeaderMap::new(), &body) {
            Answer::Refused { reason, field, .. } => {
                assert_eq!(reason, RefusalReason::Immutable);
                assert_eq!(field.as_deref(), Some("spec.selector"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_webhook_without_dry_run_is_not_rehearsed_and_warnings_are_read() {
        let body = status(
            400,
            "admission webhook \"audit.example.com\" does not support dry run",
            Value::Null,
        );
        assert!(matches!(
            classify(400, &http::HeaderMap::new(), &body),
            Answer::NotRehearsed(m) if m.contains("audit.example.com")
        ));
        let mut headers = http::HeaderMap::new();
        headers.append(
            http::header::WARNING,
            "299 - \"would violate PodSecurity \\\"restricted:latest\\\": runAsNonRoot != true\""
                .parse()
                .unwrap(),
        );
        match classify(201, &headers, b"{}") {
            Answer::Accepted(w) => assert_eq!(
                w,
                ["would violate PodSecurity \"restricted:latest\": runAsNonRoot != true"]
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn quotas_and_policies_are_told_apart() {
        let quota = status(
            403,
            "services \"api-lb-ext\" is forbidden: exceeded quota: no-lb, requested: services.loadbalancers=1, used: services.loadbalancers=0, limited: services.loadbalancers=0",
            Value::Null,
        );
        assert!(matches!(
            classify(403, &http::HeaderMap::new(), &quota),
            Answer::Refused {
                reason: RefusalReason::Quota,
                ..
            }
        ));
        let policy = status(
            403,
            "deployments.apps \"engine\" is forbidden: ValidatingAdmissionPolicy 'memory-limits' with binding 'memory-limits' denied request: every container needs a memory limit",
            Value::Null,
        );
        assert!(matches!(
            classify(403, &http::HeaderMap::new(), &policy),
            Answer::Refused {
                reason: RefusalReason::Policy,
                ..
            }
        ));
        let rbac = status(
            403,
            "deployments.apps is forbidden: User \"x\" cannot create resource \"deployments\" in API group \"apps\" in the namespace \"n\"",
            Value::Null,
        );
        assert!(matches!(
            classify(403, &http::HeaderMap::new(), &rbac),
            Answer::NotRehearsed(_)
        ));
    }
}
