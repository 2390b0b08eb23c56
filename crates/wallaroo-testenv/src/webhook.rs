//! `AdmissionWebhook`: a validating admission webhook served on 127.0.0.1 over TLS from the
//! kit's CA, speaking `admission.k8s.io/v1` as any site's webhook does (the API server calls
//! it, it answers allowed or denied). What it enforces is a site rule of the test's choosing:
//! objects of one kind must carry a label. It records every review it answers, with whether
//! the API server marked it a dry run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::Error;
use crate::env::Env;

/// One review the webhook answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// `Kind namespace/name`.
    pub object: String,
    pub dry_run: bool,
    pub allowed: bool,
}

/// A running webhook; it stops with the process.
pub struct AdmissionWebhook {
    pub port: u16,
    reviews: Arc<Mutex<Vec<Review>>>,
}

impl AdmissionWebhook {
    /// Starts a webhook that denies objects of `kind` without label `label`, with the
    /// message `"{kind} must carry the label {label} (site policy)"`.
    pub fn start(env: &Env, kind: &str, label: &str) -> Result<AdmissionWebhook, Error> {
        AdmissionWebhook::start_with(env, kind, label, true)
    }

    /// [`AdmissionWebhook::start`]; with `judge_dry_runs` false it allows every dry run and
    /// enforces its rule on real writes only, as webhooks do whose decision rests on what a
    /// dry run cannot show (a change freeze, an outside system's state).
    pub fn start_with(
        env: &Env,
        kind: &str,
        label: &str,
        judge_dry_runs: bool,
    ) -> Result<AdmissionWebhook, Error> {
        let pki = crate::pki::Pki::create(&env.run_dir.join("pki"))?;
        pki.issue("webhook", &["127.0.0.1"])?;
        let config = crate::pki::server_config(&pki.cert("webhook"), &pki.key("webhook"))?;
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Start {
            name: "admission webhook".into(),
            message: e.to_string(),
        })?;
        let port = listener.local_addr().expect("bound").port();
        let reviews: Arc<Mutex<Vec<Review>>> = Default::default();
        let (kind, label) = (kind.to_string(), label.to_string());
        let seen = reviews.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (config, seen, kind, label) =
                    (config.clone(), seen.clone(), kind.clone(), label.clone());
                std::thread::spawn(move || {
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut tls = rustls::StreamOwned::new(conn, stream);
                    // The API server keeps connections open: one review after another.
                    while let Ok(true) = serve_one(&mut tls, &kind, &label, judge_dry_runs, &seen) {
                    }
                });
            }
        });
        Ok(AdmissionWebhook { port, reviews })
    }

    /// The URL to give a webhook configuration's `clientConfig.url`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/validate", self.port)
    }

    /// The reviews answered so far.
    pub fn reviews(&self) -> Vec<Review> {
        self.reviews.lock().expect("reviews").clone()
    }
}

/// Reads one HTTP request and answers it; `false` when the connection closed.
fn serve_one(
    stream: &mut (impl Read + Write),
    kind: &str,
    label: &str,
    judge_dry_runs: bool,
    seen: &Mutex<Vec<Review>>,
) -> std::io::Result<bool> {
    let mut reader = BufReader::new(&mut *stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(false);
    }
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    drop(reader);
    let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let request = &review["request"];
    let object = &request["object"];
    let of_kind = request["kind"]["kind"].as_str() == Some(kind);
    let dry_run = request["dryRun"].as_bool().unwrap_or(false);
    let allowed =
        !of_kind || object["metadata"]["labels"][label].is_string() || (dry_run && !judge_dry_runs);
    seen.lock().expect("reviews").push(Review {
        object: format!(
            "{} {}/{}",
            request["kind"]["kind"].as_str().unwrap_or_default(),
            request["namespace"].as_str().unwrap_or_default(),
            request["name"].as_str().unwrap_or_default()
        ),
        dry_run,
        allowed,
    });
    let mut response = json!({"uid": request["uid"], "allowed": allowed});
    if !allowed {
        response["status"] = json!({
            "code": 403,
            "message": format!("{kind} must carry the label {label} (site policy)"),
        });
    }
    let answer = serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    }))
    .expect("JSON");
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        answer.len()
    )?;
    stream.write_all(&answer)?;
    stream.flush()?;
    Ok(true)
}
