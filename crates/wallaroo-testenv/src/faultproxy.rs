//! `FaultProxy`: a **test double** of a broken path to a registry, for what no real registry
//! does on purpose. It is an HTTPS proxy (serving the registries' certificate, so clients
//! reach it under the registry's host name on another port) that forwards GET and HEAD
//! requests to the real registry and, for chosen blobs, serves bytes that do not match the
//! digest, or drops the connection part way. Everything else passes through unchanged, and
//! it counts the bytes it served per blob.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::Error;
use crate::env::{Env, Registry};

/// What to do to one blob.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Serve it with one byte changed in the middle (same length).
    Corrupt { digest: String },
    /// The first time it is asked for, send `bytes` bytes of its body, then nothing more,
    /// with the connection open (a process stopped in the middle of a transfer).
    Stall { digest: String, bytes: u64 },
    /// Close the connection after `bytes` bytes of its body, the first `times` times.
    Cut {
        digest: String,
        bytes: u64,
        times: u32,
    },
}

/// A running proxy; it stops with the process.
pub struct FaultProxy {
    pub host: String,
    pub port: u16,
    served: Arc<Mutex<HashMap<String, u64>>>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` applying `faults`.
    pub fn start(env: &Env, upstream: &Registry, faults: Vec<Fault>) -> Result<FaultProxy, Error> {
        let pki = env.run_dir.join("pki");
        let config =
            crate::pki::server_config(&pki.join("registry.crt"), &pki.join("registry.key"))?;
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Start {
            name: "fault proxy".into(),
            message: e.to_string(),
        })?;
        let port = listener.local_addr().expect("bound").port();
        let client = crate::https_client(&env.ca_file)?;
        let host = upstream.host.clone();
        let upstream = format!("https://{}", upstream.address());
        let served: Arc<Mutex<HashMap<String, u64>>> = Default::default();
        let faults: Arc<Vec<(Fault, AtomicU32)>> =
            Arc::new(faults.into_iter().map(|f| (f, AtomicU32::new(0))).collect());
        let counts = served.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (config, client, upstream, faults, counts) = (
                    config.clone(),
                    client.clone(),
                    upstream.clone(),
                    faults.clone(),
                    counts.clone(),
                );
                std::thread::spawn(move || {
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut tls = rustls::StreamOwned::new(conn, stream);
                    let _ = handle(&mut tls, &client, &upstream, &faults, &counts);
                });
            }
        });
        Ok(FaultProxy { host, port, served })
    }

    /// `host:port` to use as the registry's address.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Body bytes served for blob `digest` so far.
    pub fn bytes_served(&self, digest: &str) -> u64 {
        self.served
            .lock()
            .expect("counts")
            .get(digest)
            .copied()
            .unwrap_or(0)
    }
}

fn handle(
    stream: &mut (impl Read + Write),
    client: &reqwest::blocking::Client,
    upstream: &str,
    faults: &[(Fault, AtomicU32)],
    counts: &Mutex<HashMap<String, u64>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(&mut *stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    drop(reader);
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let method = match method {
        "GET" => reqwest::Method::GET,
        "HEAD" => reqwest::Method::HEAD,
        _ => {
            write!(
                stream,
                "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            return stream.flush();
        }
    };
    let mut req = client.request(method.clone(), format!("{upstream}{path}"));
    for (k, v) in &headers {
        if ["authorization", "accept", "range"].contains(&k.to_ascii_lowercase().as_str()) {
            req = req.header(k, v);
        }
    }
    let mut resp = match req.send() {
        Ok(r) => r,
        Err(e) => {
            let body = e.to_string();
            write!(
                stream,
                "HTTP/1.1 502 Bad Gateway\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            return stream.flush();
        }
    };
    let status = resp.status();
    if std::env::var_os("WALLAROO_FAULTPROXY_LOG").is_some() {
        let range = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("range"))
            .map(|(_, v)| v.as_str())
            .unwrap_or("-");
        eprintln!("faultproxy: {method} {path} range={range} -> {status}");
    }
    write!(
        stream,
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )?;
    for (k, v) in resp.headers() {
        let name = k.as_str();
        if name != "connection" && name != "transfer-encoding" {
            stream.write_all(format!("{name}: ").as_bytes())?;
            stream.write_all(v.as_bytes())?;
            stream.write_all(b"\r\n")?;
        }
    }
    stream.write_all(b"Connection: close\r\n\r\n")?;
    if method == reqwest::Method::HEAD {
        return stream.flush();
    }
    let blob = path
        .split_once("/blobs/")
        .map(|(_, d)| d.split('?').next().unwrap_or(d).to_string());
    let length = resp.content_length().unwrap_or(0);
    let mut corrupt_at = None;
    let mut cut_at = None;
    let mut stall_at = None;
    // Faults apply to blob bodies only (a 401 asking for credentials does not count).
    if let Some(digest) = blob.as_ref().filter(|_| status.is_success()) {
        for (fault, used) in faults {
            match fault {
                Fault::Corrupt { digest: d } if d == digest => corrupt_at = Some(length / 2),
                Fault::Stall { digest: d, bytes }
                    if d == digest && used.fetch_add(1, Ordering::SeqCst) == 0 =>
                {
                    stall_at = Some(*bytes)
                }
                Fault::Cut {
                    digest: d,
                    bytes,
                    times,
                } if d == digest && used.fetch_add(1, Ordering::SeqCst) < *times => {
                    cut_at = Some(*bytes)
                }
                _ => {}
            }
        }
    }
    let mut sent = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = resp.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let mut chunk = &mut buf[..n];
        if let Some(at) = corrupt_at
            && at >= sent
            && at < sent + n as u64
        {
            chunk[(at - sent) as usize] ^= 0xff;
        }
        if let Some(cut) = cut_at
            && sent + n as u64 >= cut
        {
            chunk = &mut chunk[..(cut - sent) as usize];
            stream.write_all(chunk)?;
            add(counts, &blob, chunk.len() as u64);
            // Drop the connection mid-body.
            return Ok(());
        }
        if let Some(stall) = stall_at
            && sent + n as u64 >= stall
        {
            let part = &chunk[..(stall - sent) as usize];
            stream.write_all(part)?;
            stream.flush()?;
            add(counts, &blob, part.len() as u64);
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        stream.write_all(chunk)?;
        sent += n as u64;
        add(counts, &blob, n as u64);
    }
    stream.flush()
}

fn add(counts: &Mutex<HashMap<String, u64>>, blob: &Option<String>, n: u64) {
    if let Some(d) = blob {
        *counts.lock().expect("counts").entry(d.clone()).or_default() += n;
    }
}
