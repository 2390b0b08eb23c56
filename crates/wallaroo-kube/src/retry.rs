//! Requests to the API server tried again while it cannot answer: a control plane that
//! restarts (an upgrade, a crash) refuses connections for some seconds, and one that is
//! overloaded answers 429, 503 or 504. Within a bound (`wallaroo { api_retry }`, 30 s by
//! default) counted from the first failure, with backoff from 250 ms doubling to 4 s. A
//! request that never reached the server (connection refused) is tried again whatever its
//! verb; one whose connection dropped after it was sent only when trying it again cannot do a
//! thing twice (GET, HEAD, PUT, DELETE: not a POST or PATCH).

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use tokio::time::Instant;
use tower::BoxError;
use tower::retry::Policy;

/// The retry policy of one request (tower clones it for each).
#[derive(Clone, Debug)]
pub struct ApiRetry {
    bound: Duration,
    first_failure: Option<Instant>,
    attempt: u32,
}

impl ApiRetry {
    pub fn within(bound: Duration) -> ApiRetry {
        ApiRetry {
            bound,
            first_failure: None,
            attempt: 0,
        }
    }

    fn backoff(&self) -> Duration {
        let ms = 250u64.saturating_mul(1 << self.attempt.min(4));
        Duration::from_millis(ms.min(4_000))
    }
}

/// How a request that got no answer failed: never sent, or dropped after.
#[derive(Debug, PartialEq, Eq)]
enum Lost {
    NotSent,
    Dropped,
}

fn lost(e: &BoxError) -> Option<Lost> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
    let mut dropped = false;
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match io.kind() {
                ConnectionRefused | NotConnected | AddrNotAvailable => return Some(Lost::NotSent),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => dropped = true,
                _ => {}
            }
        }
        let text = err.to_string();
        if text.contains("connection closed before message completed")
            || text.contains("connection reset")
        {
            dropped = true;
        }
        source = err.source();
    }
    dropped.then_some(Lost::Dropped)
}

fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

impl<Res> Policy<Request<Body>, Response<Res>, BoxError> for ApiRetry {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request<Body>,
        result: &mut Result<Response<Res>, BoxError>,
    ) -> Option<Self::Future> {
        let again = match result {
            Ok(resp) => matches!(
                resp.status(),
                StatusCode::TOO_MANY_REQUESTS
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ),
            Err(e) => match lost(e) {
                Some(Lost::NotSent) => true,
                Some(Lost::Dropped) => idempotent(req.method()),
                None => false,
            },
        };
        if !again {
            return None;
        }
        let first = *self.first_failure.get_or_insert_with(Instant::now);
        let left = self.bound.checked_sub(first.elapsed())?;
        let wait = self.backoff().min(left);
        self.attempt += 1;
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        let body = req.body().try_clone()?;
        let mut copy = Request::builder()
            .method(req.method().clone())
            .uri(req.uri().clone())
            .version(req.version())
            .body(body)
            .ok()?;
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(copy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_is_not_sent_a_reset_one_is_dropped() {
        let refused: BoxError =
            Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(lost(&refused), Some(Lost::NotSent));
        let reset: BoxError = Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(lost(&reset), Some(Lost::Dropped));
        let other: BoxError = "certificate verify failed".into();
        assert_eq!(lost(&other), None);
        assert!(idempotent(&Method::PUT) && !idempotent(&Method::POST));
    }

    #[test]
    fn backoff_doubles_to_four_seconds() {
        let mut p = ApiRetry::within(Duration::from_secs(30));
        let mut waits = Vec::new();
        for _ in 0..7 {
            waits.push(p.backoff());
            p.attempt += 1;
        }
        assert_eq!(waits[0], Duration::from_millis(250));
        assert_eq!(waits[4], Duration::from_secs(4));
        assert_eq!(waits[6], Duration::from_secs(4));
    }
}
