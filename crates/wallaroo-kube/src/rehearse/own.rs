//! Rehearsing wallaroo's own writes (the namespace, Secrets, nodes' labels and taints, the
//! device plugin): each kind sends its write with `dryRun=All` and reads the answer here.

use wallaroo_engine::{Address, Rehearsal, ResourceError};

use super::answer::{Answer, classify, refusal};

/// A rehearsal of one write of plan resource `address` to `object` (`Secret ns/name`), from
/// what the dry run returned.
pub fn answered(
    address: &Address,
    object: &str,
    namespace: Option<&str>,
    result: Result<(), kube::Error>,
) -> Result<Option<Rehearsal>, ResourceError> {
    let status = match result {
        Ok(()) => {
            return Ok(Some(Rehearsal {
                rehearsed: 1,
                ..Rehearsal::default()
            }));
        }
        Err(kube::Error::Api(status)) => status,
        Err(e) => return Err(crate::kube_err(format!("rehearsing {object}"))(e)),
    };
    let body = serde_json::to_vec(&status).unwrap_or_default();
    Ok(Some(
        match classify(status.code, &http::HeaderMap::new(), &body) {
            Answer::Accepted(warnings) => Rehearsal {
                rehearsed: 1,
                warnings,
                ..Rehearsal::default()
            },
            Answer::NotRehearsed(why) => Rehearsal {
                not_rehearsed: vec![format!("{object}: could not be rehearsed: {why}")],
                ..Rehearsal::default()
            },
            Answer::Refused {
                reason,
                field,
                message,
            } => Rehearsal {
                rehearsed: 1,
                refused: vec![refusal(
                    &address.to_string(),
                    object,
                    namespace,
                    reason,
                    field,
                    message,
                    &[],
                )],
                ..Rehearsal::default()
            },
        },
    ))
}
