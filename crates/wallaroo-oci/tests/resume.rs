//! A 1 GiB blob upload killed halfway (SIGKILL of the process doing it), then run again:
//! the second run asks the private registry how much it holds and sends only the rest,
//! counted both at the test kit's proxy in front of the vendor registry and as the bytes the
//! upload sends.
//!
//! The kill comes while the source is stalled at the halfway mark (the proxy stops sending
//! there), so the registry holds whole chunks. Distribution 2.8 (Debian's registry) cancels an
//! upload whose stored size differs from the offset it signed into the upload's location, so
//! after a kill in the middle of a chunk it refuses the resume; wallaroo then starts over.

use std::io::{BufRead, Read};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};
use wallaroo_oci::resume::UploadJournal;
use wallaroo_oci::{Credentials, Registry};
use wallaroo_testenv::faultproxy::{Fault, FaultProxy};
use wallaroo_testenv::{Env, shared, unique};

const CHILD: &str = "WALLAROO_RESUME_TEST_CHILD";
const SIZE: u64 = 1 << 30;

/// Seeded bytes, quickly: xorshift64 over 8-byte words.
struct Noise {
    state: u64,
    left: u64,
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize / 8 * 8;
        let n = if n == 0 {
            self.left.min(buf.len() as u64) as usize
        } else {
            n
        };
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let bytes = self.state.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn noise() -> Noise {
    Noise {
        state: 0x9E37_79B9_7F4A_7C15,
        left: SIZE,
    }
}

fn registry(env: &Env, address: &str, r: &wallaroo_testenv::env::Registry) -> Registry {
    let credentials = Credentials {
        username: r.username.clone(),
        password: r.password.clone(),
    };
    Registry::new(address, Some(credentials), Some(&env.ca_file)).unwrap()
}

/// In the child: upload through the proxy until killed.
#[tokio::test]
async fn child_uploads_until_killed() {
    let Ok(args) = std::env::var(CHILD) else {
        return;
    };
    wallaroo_testenv::install_crypto_provider();
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    let parts: Vec<&str> = args.split('|').collect();
    let (proxy, repo, digest, journal) = (parts[0], parts[1], parts[2], parts[3]);
    let src = registry(env, proxy, &env.vendor);
    let dst = registry(env, &env.private.address(), &env.private);
    println!("STARTED");
    dst.put_blob_resumable(repo, digest, SIZE, &src, repo, &UploadJournal::new(journal))
        .await
        .unwrap();
    println!("FINISHED");
}

/// Pushes the generated blob to the vendor registry's `repo`; its digest.
fn push_blob(env: &Env, repo: &str) -> String {
    let mut hasher = Sha256::new();
    let mut n = noise();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let k = n.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        hasher.update(&buf[..k]);
    }
    let digest = format!(
        "sha256:{}",
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&env.ca_file).unwrap()).unwrap(),
        )
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .unwrap();
    let base = format!("https://{}", env.vendor.address());
    let started = client
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .basic_auth(&env.vendor.username, Some(&env.vendor.password))
        .send()
        .unwrap();
    assert_eq!(started.status(), 202);
    let location = started.headers()["location"].to_str().unwrap().to_string();
    let url = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let put = client
        .put(format!("{url}{sep}digest={digest}"))
        .basic_auth(&env.vendor.username, Some(&env.vendor.password))
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::blocking::Body::sized(noise(), SIZE))
        .send()
        .unwrap();
    assert_eq!(put.status(), 201, "{:?}", put.text());
    digest
}

#[tokio::test]
async fn a_killed_upload_resumes_and_sends_at_most_55_percent_again() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    wallaroo_testenv::install_crypto_provider();
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    let repo = format!("{}/big", unique("resume"));
    let r = repo.clone();
    let digest = tokio::task::spawn_blocking(move || push_blob(env, &r))
        .await
        .unwrap();
    let d = digest.clone();
    let proxy = tokio::task::spawn_blocking(move || {
        FaultProxy::start(
            env,
            &env.vendor,
            vec![Fault::Stall {
                digest: d,
                bytes: SIZE / 2,
            }],
        )
        .unwrap()
    })
    .await
    .unwrap();
    let journal = tempfile::tempdir().unwrap();

    // Another process uploads through the proxy; it is killed once half the blob went by.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_uploads_until_killed", "--nocapture"])
        .env(
            CHILD,
            format!(
                "{}|{repo}|{digest}|{}",
                proxy.address(),
                journal.path().display()
            ),
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("STARTED") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the child ended");
    }
    while proxy.bytes_served(&digest) < SIZE / 2 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The last chunk's bytes reach the registry and are acknowledged (the journal names the
    // upload, and the registry says it holds half the blob); then the kill.
    let dir = journal.path().to_path_buf();
    let (host, user, password, ca) = (
        env.private.address(),
        env.private.username.clone(),
        env.private.password.clone(),
        env.ca_file.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let client = wallaroo_testenv::https_client(&ca).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "the first half never landed"
            );
            let entry = std::fs::read_dir(&dir)
                .ok()
                .and_then(|mut d| d.next())
                .and_then(|e| e.ok())
                .and_then(|e| std::fs::read(e.path()).ok())
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
            if let Some(location) = entry.as_ref().and_then(|e| e["location"].as_str()) {
                let url = if location.starts_with("http") {
                    location.to_string()
                } else {
                    format!("https://{host}{location}")
                };
                let held = client
                    .get(url)
                    .basic_auth(&user, Some(&password))
                    .send()
                    .ok()
                    .and_then(|r| {
                        r.headers()
                            .get("range")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.rsplit('-').next())
                            .and_then(|n| n.parse::<u64>().ok())
                    });
                if held.map(|end| end + 1) == Some(SIZE / 2) {
                    break;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let before = proxy.bytes_served(&digest);
    eprintln!("served at kill: {before}");
    assert!(before < SIZE, "killed before the end: {before}");

    // The rerun: the registry reports what it holds; only the rest is read and sent.
    let src = registry(env, &proxy.address(), &env.vendor);
    let dst = registry(env, &env.private.address(), &env.private);
    let sent = dst
        .put_blob_resumable(
            &repo,
            &digest,
            SIZE,
            &src,
            &repo,
            &UploadJournal::new(journal.path()),
        )
        .await
        .unwrap()
        .sent;
    let read_again = proxy.bytes_served(&digest) - before;
    let limit = SIZE * 55 / 100;
    assert!(sent <= limit, "sent {sent} of {SIZE} again");
    assert!(read_again <= limit, "read {read_again} of {SIZE} again");
    assert!(sent > 0, "the first run did not finish it");
    assert!(dst.has_blob(&repo, &digest).await.unwrap());
    println!(
        "resumed: {} MiB of {} MiB sent again ({:.1}%)",
        sent >> 20,
        SIZE >> 20,
        sent as f64 * 100.0 / SIZE as f64
    );
}
