//! The test environment: the real components wallaroo is tested against, on 127.0.0.1.
//!
//! etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (built from the Go
//! module proxy), two CNCF distribution registries with htpasswd and TLS from a private CA,
//! helm, toxiproxy and Keycloak, provisioned once and cached by version. A LoadBalancer
//! test double (a clearly named stand-in for a cloud controller) gives services an IP.
//! It never fakes a component that can run here.

pub mod cosign;
pub mod env;
pub mod faultproxy;
mod kubeapi;
pub mod lbdouble;
pub mod nginx;
pub mod node;
pub mod paths;
pub(crate) mod pki;
pub mod process;
pub mod provision;
pub mod rbac;
pub mod seed;
pub mod tokenauth;
pub mod versions;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use env::{Env, up};
pub use kubeapi::{KubeApi, https_client};
pub use provision::program;

/// What can go wrong bringing the environment up. Each names the component and the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {name}: {message}")]
    Start { name: String, message: String },
    #[error("{what} failed:\n{output}")]
    Command { what: String, output: String },
    #[error("{name} did not become ready ({why}); last lines of its log:\n{log}")]
    NotReady {
        name: String,
        why: String,
        log: String,
    },
    #[error("{what} is missing: {fix}")]
    Missing { what: String, fix: String },
    #[error("{what}: {message}")]
    Api { what: String, message: String },
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Installs the process-wide rustls provider (ring) once; reqwest and kube both need one.
pub fn install_crypto_provider() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The environment shared by every test (started on first use, reused while it runs).
/// Progress goes to stderr, which the test harness shows only on failure.
pub fn shared() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        install_crypto_provider();
        up(&mut |m| eprintln!("wallaroo-testenv: {m}"))
            .unwrap_or_else(|e| panic!("the test environment did not start: {e}"))
    })
}

/// A name unique to this process and call, for test namespaces and repository paths.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
