//! The lockfile: what wallaroo last applied, the image digests it pinned, and the lock that
//! keeps two runs apart.
//!
//! State is plain serde data with a format version ([`Lockfile`]); [`StateStore`] reads and
//! writes it atomically (temp file, fsync, rename, with a backup of the previous version)
//! and holds an exclusive OS file lock with holder information. Secrets never enter it:
//! sensitive attributes are kept only as salted hashes ([`hash_sensitive`]).

mod lock;
mod lockfile;
mod writer;

pub use lock::{LockInfo, RunLock, format_utc, holder};
pub use lockfile::{
    FORMAT_VERSION, Lockfile, OutputState, ResourceState, hash_sensitive, new_salt,
};
pub use writer::StateWriter;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// What can go wrong with the lockfile or the run lock.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the lockfile {path} is locked by {holder}")]
    Locked { path: PathBuf, holder: LockInfo },
    #[error("cannot read the lockfile {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the lockfile {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "the lockfile {path} has format version {found}; this wallaroo reads version {FORMAT_VERSION}"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("cannot write the lockfile {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state backend {location}: {message}")]
    Backend { location: String, message: String },
    #[error(
        "the run lock {path} is held by a running process ({holder}); stop it instead of unlocking"
    )]
    StillHeld { path: PathBuf, holder: LockInfo },
}

/// Somewhere other than a local file that keeps a lockfile and its run lock (the
/// `kubernetes` backend keeps them in a Secret and a Lease).
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Where, for messages: e.g. `secret default/wallaroo-state-prod`.
    fn location(&self) -> String;
    /// The lockfile's bytes, or `None` before the first apply.
    fn read(&self) -> Result<Option<Vec<u8>>, StateError>;
    /// Replaces the lockfile's bytes.
    fn write(&self, bytes: &[u8]) -> Result<(), StateError>;
    /// Takes the run lock for `holder`, waiting up to `timeout`; released when the guard drops.
    fn lock(&self, holder: &LockInfo, timeout: Duration) -> Result<Box<dyn Send>, StateError>;
    /// Removes a lock left behind; the holder it named.
    fn force_unlock(&self) -> Result<Option<LockInfo>, StateError>;
}

/// A held run lock, of whichever backend; released when dropped.
pub enum StateLock {
    File(RunLock),
    Remote(#[allow(dead_code)] Box<dyn Send>),
}

impl std::fmt::Debug for StateLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateLock::File(l) => write!(f, "StateLock::File({})", l.path().display()),
            StateLock::Remote(_) => f.write_str("StateLock::Remote"),
        }
    }
}

/// Reads and writes one lockfile: a local file, or through a [`Backend`].
#[derive(Debug, Clone)]
pub struct StateStore {
    path: PathBuf,
    backend: Option<std::sync::Arc<dyn Backend>>,
}

impl StateStore {
    pub fn new(path: impl Into<PathBuf>) -> StateStore {
        StateStore {
            path: path.into(),
            backend: None,
        }
    }

    /// A store kept by `backend`.
    pub fn remote(backend: std::sync::Arc<dyn Backend>) -> StateStore {
        StateStore {
            path: PathBuf::from(backend.location()),
            backend: Some(backend),
        }
    }

    /// The lockfile's path, or for a backend its location.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a backend keeps it (not a local file).
    pub fn is_remote(&self) -> bool {
        self.backend.is_some()
    }

    /// Where the previous version is kept.
    pub fn backup_path(&self) -> PathBuf {
        with_suffix(&self.path, ".backup")
    }

    /// The run-lock file beside the lockfile (hidden: `.wallaroo.lock.run-lock`). It stays
    /// after a run: removing it would race with a run waiting on it.
    pub fn lock_path(&self) -> PathBuf {
        let name = self.path.file_name().unwrap_or_default().to_string_lossy();
        self.path.with_file_name(format!(".{name}.run-lock"))
    }

    /// Takes the run lock for `command`, waiting up to `timeout` for another run to finish.
    pub fn lock(&self, command: &str, timeout: Duration) -> Result<StateLock, StateError> {
        match &self.backend {
            Some(b) => b.lock(&holder(command), timeout).map(StateLock::Remote),
            None => RunLock::acquire(&self.lock_path(), command, timeout).map(StateLock::File),
        }
    }

    /// Removes a lock left behind, unless a live process still holds it.
    pub fn force_unlock(&self) -> Result<Option<LockInfo>, StateError> {
        match &self.backend {
            Some(b) => b.force_unlock(),
            None => RunLock::force_unlock(&self.lock_path()),
        }
    }

    /// The lockfile, or `None` before the first apply.
    pub fn load(&self) -> Result<Option<Lockfile>, StateError> {
        let text = match &self.backend {
            Some(b) => match b.read()? {
                Some(bytes) => String::from_utf8(bytes).map_err(|e| StateError::Invalid {
                    path: self.path.clone(),
                    message: e.to_string(),
                })?,
                None => return Ok(None),
            },
            None => match std::fs::read_to_string(&self.path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(source) => {
                    return Err(StateError::Read {
                        path: self.path.clone(),
                        source,
                    });
                }
            },
        };
        let probe: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| StateError::Invalid {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        let found = probe
            .get("format_version")
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as u32;
        if found != FORMAT_VERSION {
            return Err(StateError::Version {
                path: self.path.clone(),
                found,
            });
        }
        serde_json::from_value(probe)
            .map(Some)
            .map_err(|e| StateError::Invalid {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }

    /// Replaces the lockfile's bytes where it lives: the backend, or the local file
    /// (atomically).
    pub fn write_bytes(&self, bytes: &[u8]) -> Result<(), StateError> {
        match &self.backend {
            Some(b) => b.write(bytes),
            None => write_atomically(&self.path, bytes).map_err(|source| StateError::Write {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Writes `lockfile` atomically after copying the current file to the backup.
    pub fn save(&self, lockfile: &Lockfile) -> Result<(), StateError> {
        let err = |source| StateError::Write {
            path: self.path.clone(),
            source,
        };
        let text =
            serde_json::to_string_pretty(lockfile).expect("the lockfile always serializes") + "\n";
        if let Some(b) = &self.backend {
            return b.write(text.as_bytes());
        }
        if self.path.exists() {
            std::fs::copy(&self.path, self.backup_path()).map_err(err)?;
        }
        write_atomically(&self.path, text.as_bytes()).map_err(err)
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Temp file in the same directory, fsync, rename over the target, fsync the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = with_suffix(path, &format!(".tmp-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(&dir)?.sync_all()
}

/// The JSON Schema of the lockfile (`schemas/lockfile.schema.json`).
pub fn lockfile_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Lockfile).to_value();
    schema["$id"] =
        serde_json::Value::String("https://wallaroo.dev/schemas/lockfile.schema.json".into());
    schema["description"] = serde_json::Value::String(
        "wallaroo.lock: what wallaroo last applied, resolved image digests, salted hashes of secrets.".into(),
    );
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_keeps_a_backup_and_load_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("wallaroo.lock"));
        assert!(store.load().unwrap().is_none());
        let mut lf = Lockfile::new();
        store.save(&lf).unwrap();
        lf.serial += 1;
        lf.outputs.insert(
            "api_lb_ip".into(),
            OutputState {
                value: "10.0.0.1".into(),
                sensitive: false,
                hash: None,
            },
        );
        store.save(&lf).unwrap();
        let back = store.load().unwrap().unwrap();
        assert_eq!(back.serial, 1);
        assert_eq!(back.lineage, lf.lineage);
        let backup: Lockfile =
            serde_json::from_str(&std::fs::read_to_string(store.backup_path()).unwrap()).unwrap();
        assert_eq!(backup.serial, 0);
    }

    #[test]
    fn other_format_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("wallaroo.lock"));
        std::fs::write(store.path(), r#"{"format_version": 99}"#).unwrap();
        assert!(matches!(
            store.load(),
            Err(StateError::Version { found: 99, .. })
        ));
        std::fs::write(store.path(), "not json").unwrap();
        assert!(matches!(store.load(), Err(StateError::Invalid { .. })));
    }
}
