//! How a request reaches a registry: its URL, the auth a registry asks for (Basic, or a
//! Bearer token per scope, learned from the first request's challenge), and retries with
//! backoff when the registry cannot be reached or answers 429 or 5xx.

use reqwest::{RequestBuilder, Response, StatusCode};
use std::collections::HashMap;
use wallaroo_engine::error_chain;

use super::answer::Answer;
use super::{OciError, Registry};

/// How often a request is tried in all when the registry is unavailable.
const ATTEMPTS: u32 = 5;

/// The wait before attempt `n + 1` (n >= 1): 250 ms doubling, at most 8 s, with up to 50%
/// jitter so that concurrent copies do not retry in step; a `Retry-After` of at most 60 s
/// is honoured instead.
pub(crate) fn backoff(n: u32, retry_after: Option<std::time::Duration>) -> std::time::Duration {
    if let Some(after) = retry_after.filter(|d| d.as_secs() <= 60) {
        return after;
    }
    let base = 250u64.saturating_mul(1 << (n - 1).min(5)).min(8_000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    std::time::Duration::from_millis(base + nanos % (base / 2 + 1))
}

pub(super) fn retryable_status(s: StatusCode) -> bool {
    s == StatusCode::TOO_MANY_REQUESTS
        || s == StatusCode::INTERNAL_SERVER_ERROR
        || s == StatusCode::BAD_GATEWAY
        || s == StatusCode::SERVICE_UNAVAILABLE
        || s == StatusCode::GATEWAY_TIMEOUT
}

impl Registry {
    pub(crate) fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("https://{}{path}", self.api_host)
        }
    }

    /// Sends a request (see [`Registry::send_once`]), again with backoff and jitter when the
    /// connection fails or the registry answers 429 or 5xx.
    pub(crate) async fn send(
        &self,
        scope: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, OciError> {
        self.send_on(&self.http, scope, build).await
    }

    pub(super) async fn send_on(
        &self,
        client: &reqwest::Client,
        scope: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, OciError> {
        let mut attempt = 1;
        loop {
            let (message, retry_after) = match self.send_once(client, scope, &build).await {
                Ok(resp) if retryable_status(resp.status()) => {
                    let after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|h| h.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(std::time::Duration::from_secs);
                    // The registry's own words: a full disk is said once, never retried.
                    let answer = self.answer(resp).await;
                    if answer.out_of_space {
                        return Err(self.out_of_space(&answer));
                    }
                    (format!("answered {}", answer.describe()), after)
                }
                Ok(resp) => return Ok(resp),
                Err(OciError::Unavailable { message, .. }) => (message, None),
                Err(e) => return Err(e),
            };
            if attempt >= ATTEMPTS {
                return Err(OciError::Unavailable {
                    registry: self.host.clone(),
                    message: format!("{message} ({attempt} attempts)"),
                });
            }
            tokio::time::sleep(backoff(attempt, retry_after)).await;
            attempt += 1;
        }
    }

    /// Reads a refusal's status and body (at most 64 KiB of it).
    pub(crate) async fn answer(&self, resp: Response) -> Answer {
        let status = resp.status();
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(Ok(chunk)) = futures_util::StreamExt::next(&mut stream).await {
            body.extend_from_slice(&chunk);
            if body.len() >= 64 * 1024 {
                break;
            }
        }
        let secrets = self.secrets();
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        Answer::read(status, &body, &secrets)
    }

    /// The error for a request the registry refused with `resp`: its own words, and out of
    /// space when it says so (which stops every later upload to it, see
    /// [`Registry::refuse_when_full`]).
    pub(crate) async fn refused(&self, what: &str, resp: Response) -> OciError {
        let answer = self.answer(resp).await;
        if answer.out_of_space {
            return self.out_of_space(&answer);
        }
        self.err(format!("{what}: {}", answer.describe()))
    }

    /// Records that the registry is out of space (the first answer that said so wins) and
    /// the error naming it.
    fn out_of_space(&self, answer: &Answer) -> OciError {
        let said = answer.describe();
        let mut full = self.full.lock().expect("full");
        let first = full.get_or_insert(said).clone();
        OciError::OutOfSpace {
            registry: self.host.clone(),
            message: first,
        }
    }

    /// Refuses to start another upload to a registry that said it is out of space: nothing
    /// more is sent to it in this run, and no retries are spent on it.
    pub(crate) fn refuse_when_full(&self) -> Result<(), OciError> {
        match self.full.lock().expect("full").as_ref() {
            Some(said) => Err(OciError::OutOfSpace {
                registry: self.host.clone(),
                message: said.clone(),
            }),
            None => Ok(()),
        }
    }

    /// What must never appear in an error: the password and the tokens issued for it.
    fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .tokens
            .lock()
            .expect("token cache")
            .values()
            .cloned()
            .collect();
        if let Some(c) = &self.credentials {
            out.push(c.password.clone());
        }
        out
    }

    pub(super) fn unavailable(&self, e: &reqwest::Error) -> OciError {
        OciError::Unavailable {
            registry: self.host.clone(),
            message: error_chain(e),
        }
    }

    /// Sends a request, answering a 401 challenge once (Basic, or a Bearer token for `scope`).
    /// Until a first request has shown how the registry authenticates, requests wait their
    /// turn behind it.
    pub(super) async fn send_once(
        &self,
        client: &reqwest::Client,
        scope: &str,
        build: &impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, OciError> {
        use std::sync::atomic::Ordering::Relaxed;
        let _probe = if self.learned.load(Relaxed) {
            None
        } else {
            let guard = self.probe.lock().await;
            (!self.learned.load(Relaxed)).then_some(guard)
        };
        let sent = self.send_authorized(client, scope, build).await;
        self.learned.store(true, Relaxed);
        sent
    }

    /// [`Registry::send_once`] past the first request: with a token asked for up front where
    /// the registry's challenge is known, else answering the 401.
    async fn send_authorized(
        &self,
        client: &reqwest::Client,
        scope: &str,
        build: &impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, OciError> {
        let known = self.challenge.lock().expect("challenge").clone();
        let has_token = self.tokens.lock().expect("token cache").contains_key(scope);
        if let Some(challenge) = known
            && !has_token
        {
            self.token(&challenge, scope).await?;
        }
        let first = self.authorize(build(client), scope);
        wallaroo_profile::request();
        let resp = first.send().await.map_err(|e| self.unavailable(&e))?;
        if resp.version() == reqwest::Version::HTTP_2 {
            self.multiplexed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        let retry = if challenge.to_ascii_lowercase().starts_with("bearer") {
            *self.challenge.lock().expect("challenge") = Some(challenge.clone());
            let token = self.token(&challenge, scope).await?;
            build(client).bearer_auth(token)
        } else {
            self.basic.store(true, std::sync::atomic::Ordering::Relaxed);
            match &self.credentials {
                Some(c) => build(client).basic_auth(&c.username, Some(&c.password)),
                None => {
                    return Err(OciError::Auth {
                        registry: self.host.clone(),
                        what: scope.into(),
                        status: resp.status(),
                    });
                }
            }
        };
        wallaroo_profile::request();
        let resp = retry.send().await.map_err(|e| self.unavailable(&e))?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            return Err(OciError::Auth {
                registry: self.host.clone(),
                what: scope.into(),
                status: resp.status(),
            });
        }
        Ok(resp)
    }

    /// The auth already known to work for `scope`: a cached token, or Basic.
    pub(super) fn authorize(&self, req: RequestBuilder, scope: &str) -> RequestBuilder {
        if let Some(t) = self.tokens.lock().expect("token cache").get(scope) {
            return req.bearer_auth(t);
        }
        match (
            &self.credentials,
            self.basic.load(std::sync::atomic::Ordering::Relaxed),
        ) {
            (Some(c), true) => req.basic_auth(&c.username, Some(&c.password)),
            _ => req,
        }
    }

    /// A Bearer token for `scope` from the challenge's realm, with the credentials if any.
    async fn token(&self, challenge: &str, scope: &str) -> Result<String, OciError> {
        let params: HashMap<String, String> = challenge[6..]
            .split(',')
            .filter_map(|kv| kv.trim().split_once('='))
            .map(|(k, v)| {
                (
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_string(),
                )
            })
            .collect();
        let realm = params
            .get("realm")
            .ok_or_else(|| self.err("a Bearer challenge without a realm"))?;
        let mut query: Vec<(&str, String)> =
            scope.split(' ').map(|s| ("scope", s.to_string())).collect();
        if let Some(service) = params.get("service") {
            query.push(("service", service.clone()));
        }
        let mut req = self.http.get(realm).query(&query);
        if let Some(c) = &self.credentials {
            req = req.basic_auth(&c.username, Some(&c.password));
        }
        wallaroo_profile::request();
        let resp = req.send().await.map_err(|e| OciError::Unavailable {
            registry: self.host.clone(),
            message: format!("token from {realm}: {}", error_chain(&e)),
        })?;
        if !resp.status().is_success() {
            return Err(OciError::Auth {
                registry: self.host.clone(),
                what: format!("a token for {scope}"),
                status: resp.status(),
            });
        }
        let body: serde_json::Value = resp.json().await.map_err(|e| self.err(e))?;
        let token = body["token"]
            .as_str()
            .or(body["access_token"].as_str())
            .ok_or_else(|| self.err("the token endpoint sent no token"))?;
        self.tokens
            .lock()
            .expect("token cache")
            .insert(scope.to_string(), token.to_string());
        Ok(token.to_string())
    }
}
