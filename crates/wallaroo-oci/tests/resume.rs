//! Resume at real size: a 4 GiB layer's upload is killed (SIGKILL of the process doing it) at
//! a random point, then run again, on every registry of the test kit that tells an upload's
//! status:
//!
//! - distribution v3 keeps every byte it received, also of a request cut in the middle: the
//!   second run asks it how much it holds and sends only the rest, so at most one chunk (the
//!   bytes that were on their way when the process died) is sent twice;
//! - distribution 2.8 (Debian's registry) signs the offset it expects into the upload's
//!   location and cancels an upload whose stored size differs from it, which is what a cut
//!   request leaves: it allows no resume after a kill, so the second run says so and sends
//!   the blob from the beginning, the smallest re-send it allows.
//!
//! go-containerregistry's registry does not tell an upload's status (and keeps uploads in
//! memory); the registry matrix test covers its fall-back with a small blob.
//!
//! The kill point is drawn from a seed printed by the test (`WALLAROO_RESUME_SEED` repeats
//! it); `WALLAROO_RESUME_BYTES` makes the blob smaller for a quick local run.

use std::io::{BufRead, Read};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};
use wallaroo_oci::resume::{CHUNK, UploadJournal};
use wallaroo_oci::{Credentials, Registry};
use wallaroo_testenv::env::Implementation;
use wallaroo_testenv::faultproxy::FaultProxy;
use wallaroo_testenv::{Env, shared, unique};

const CHILD: &str = "WALLAROO_RESUME_TEST_CHILD";
const REPO: &str = "resume/big";

fn size() -> u64 {
    std::env::var("WALLAROO_RESUME_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4 << 30)
}

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
        left: size(),
    }
}

fn registry(address: &str, user: &str, password: &str, ca: &std::path::Path) -> Registry {
    let credentials = (!user.is_empty()).then(|| Credentials {
        username: user.to_string(),
        password: password.to_string(),
    });
    Registry::new(address, credentials, Some(ca)).unwrap()
}

/// In the child: upload from the proxy into the target until killed.
#[tokio::test]
async fn child_uploads_until_killed() {
    let Ok(args) = std::env::var(CHILD) else {
        return;
    };
    wallaroo_testenv::install_crypto_provider();
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    let parts: Vec<&str> = args.split('|').collect();
    let [proxy, target, user, password, repo, digest, journal] = parts[..] else {
        panic!("child arguments: {args}");
    };
    let src = registry(
        proxy,
        &env.vendor.username,
        &env.vendor.password,
        &env.ca_file,
    );
    let dst = registry(target, user, password, &env.ca_file);
    println!("STARTED");
    dst.put_blob_resumable(
        repo,
        digest,
        size(),
        &src,
        REPO,
        &UploadJournal::new(journal),
    )
    .await
    .unwrap();
    println!("FINISHED");
}

/// The generated blob's digest, hashed as a stream.
fn digest_of_noise() -> String {
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
    format!(
        "sha256:{}",
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// Puts the generated blob into the vendor registry's [`REPO`] unless it is there (it stays
/// for the next run of the suite). Its digest.
fn vendor_blob(env: &Env) -> String {
    let digest = digest_of_noise();
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&env.ca_file).unwrap()).unwrap(),
        )
        .timeout(std::time::Duration::from_secs(1800))
        .build()
        .unwrap();
    let base = format!("https://{}", env.vendor.address());
    let auth = |r: reqwest::blocking::RequestBuilder| {
        r.basic_auth(&env.vendor.username, Some(&env.vendor.password))
    };
    let held = auth(client.head(format!("{base}/v2/{REPO}/blobs/{digest}")))
        .send()
        .unwrap();
    if held.status() == 200 {
        return digest;
    }
    let started = auth(client.post(format!("{base}/v2/{REPO}/blobs/uploads/")))
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
    let put = auth(client.put(format!("{url}{sep}digest={digest}")))
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::blocking::Body::sized(noise(), size()))
        .send()
        .unwrap();
    assert_eq!(put.status(), 201, "{:?}", put.text());
    digest
}

/// A seeded draw in `[lo, hi)`.
fn draw(seed: u64, lo: u64, hi: u64) -> u64 {
    let mut x = seed ^ 0xD1B5_4A32_D192_ED03;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    lo + x % (hi - lo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_layer_killed_at_a_random_point_resumes_where_the_registry_allows() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    wallaroo_testenv::install_crypto_provider();
    let env = tokio::task::spawn_blocking(shared).await.unwrap();
    let size = size();
    let digest = tokio::task::spawn_blocking(move || vendor_blob(env))
        .await
        .unwrap();
    let seed: u64 = std::env::var("WALLAROO_RESUME_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("WALLAROO_RESUME_SEED={seed}");

    for (i, imp) in [Implementation::Distribution3, Implementation::Distribution2]
        .into_iter()
        .enumerate()
    {
        let label = imp.label();
        let scratch = tokio::task::spawn_blocking(move || {
            env.scratch_registry_of(imp, &unique("resume")).unwrap()
        })
        .await
        .unwrap();
        let d = digest.clone();
        let proxy = tokio::task::spawn_blocking(move || {
            let _ = &d;
            FaultProxy::start(env, &env.vendor, Vec::new()).unwrap()
        })
        .await
        .unwrap();
        let journal = tempfile::tempdir().unwrap();
        // Anywhere between a tenth and nine tenths of the blob, not on a chunk boundary.
        let kill_at = draw(seed.wrapping_add(i as u64), size / 10, size * 9 / 10) | 1;
        let target = &scratch.registry;

        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_uploads_until_killed", "--nocapture"])
            .env(
                CHILD,
                format!(
                    "{}|{}|{}|{}|{REPO}|{digest}|{}",
                    proxy.address(),
                    target.address(),
                    target.username,
                    target.password,
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
        while proxy.bytes_served(&digest) < kill_at {
            assert!(
                child.try_wait().unwrap().is_none(),
                "{label}: the upload ended before the kill"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let before = proxy.bytes_served(&digest);
        assert!(before < size, "{label}: killed before the end: {before}");

        // The rerun.
        let src = registry(
            &proxy.address(),
            &env.vendor.username,
            &env.vendor.password,
            &env.ca_file,
        );
        let dst = registry(
            &target.address(),
            &target.username,
            &target.password,
            &env.ca_file,
        );
        let again = dst
            .put_blob_resumable(
                REPO,
                &digest,
                size,
                &src,
                REPO,
                &UploadJournal::new(journal.path()),
            )
            .await
            .unwrap_or_else(|e| panic!("{label}: resume: {e}"));
        let read_again = proxy.bytes_served(&digest) - before;
        assert!(dst.has_blob(REPO, &digest).await.unwrap(), "{label}");
        println!(
            "{label}: killed after {} MiB of {} MiB; {:?}; sent again {} MiB, read again {} MiB",
            before >> 20,
            size >> 20,
            again,
            again.sent >> 20,
            read_again >> 20
        );
        match imp {
            Implementation::Distribution3 => {
                assert_eq!(again.restarted, None, "{label}: {again:?}");
                let at = again.resumed_at.expect("the journal was used");
                // Sent twice: what left the source before the kill but never reached the
                // registry's storage.
                let twice = before.saturating_sub(at);
                assert!(
                    twice <= CHUNK,
                    "{label}: {twice} bytes sent twice, more than a chunk ({again:?}, killed at {before})"
                );
                assert_eq!(again.sent, size - at, "{label}: only the rest is sent");
                // Only the rest is read, besides what a chunk the registry refused as out of
                // range took before the refusal (it was still writing the cut request when
                // first asked; see `put_blob_resumable`).
                assert!(
                    read_again <= size - at + CHUNK,
                    "{label}: only the rest is read: {read_again}"
                );
            }
            _ => {
                let why = again
                    .restarted
                    .as_deref()
                    .unwrap_or_else(|| panic!("{label}: a resume is not expected here: {again:?}"));
                assert!(why.contains("404"), "{label}: {why}");
                assert_eq!(again.sent, size, "{label}: the whole blob again");
            }
        }
        drop(proxy);
        tokio::task::spawn_blocking(move || scratch.stop())
            .await
            .unwrap();
    }
}
