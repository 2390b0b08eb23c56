//! The run lock: an exclusive OS file lock held for a whole plan or apply, with who holds it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::StateError;

/// Who holds the lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockInfo {
    pub host: String,
    pub pid: u32,
    pub command: String,
    /// Seconds since the Unix epoch.
    pub since: u64,
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` (pid {} on {}) since {}",
            self.command,
            self.pid,
            self.host,
            format_utc(self.since)
        )
    }
}

/// A held run lock; released when dropped (and by the OS if the process dies).
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl RunLock {
    pub(crate) fn acquire(
        path: &Path,
        command: &str,
        timeout: Duration,
    ) -> Result<RunLock, StateError> {
        let err = |source| StateError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(err)?;
        let deadline = Instant::now() + timeout;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    if Instant::now() >= deadline {
                        let holder = read_info(&mut file).unwrap_or_else(|| LockInfo {
                            host: "unknown host".into(),
                            pid: 0,
                            command: "unknown command".into(),
                            since: 0,
                        });
                        return Err(StateError::Locked {
                            path: path.to_path_buf(),
                            holder,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(100).min(deadline - Instant::now()));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
            }
        }
        let info = LockInfo {
            host: hostname(),
            pid: std::process::id(),
            command: command.to_string(),
            since: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        file.set_len(0).map_err(err)?;
        file.rewind().map_err(err)?;
        file.write_all(
            serde_json::to_string(&info)
                .expect("lock info serializes")
                .as_bytes(),
        )
        .map_err(err)?;
        file.sync_all().map_err(err)?;
        Ok(RunLock {
            file,
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn force_unlock(path: &Path) -> Result<Option<LockInfo>, StateError> {
        let err = |source| StateError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let info = read_info(&mut file);
        match file.try_lock() {
            Ok(()) => {
                std::fs::remove_file(path).map_err(err)?;
                Ok(info)
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(StateError::StillHeld {
                path: path.to_path_buf(),
                holder: info.unwrap_or(LockInfo {
                    host: "?".into(),
                    pid: 0,
                    command: "?".into(),
                    since: 0,
                }),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(err(e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Empty the holder info before the OS lock goes with the file handle.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

fn read_info(file: &mut File) -> Option<LockInfo> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// This process as a lock holder running `command`, now.
pub fn holder(command: &str) -> LockInfo {
    LockInfo {
        host: hostname(),
        pid: std::process::id(),
        command: command.to_string(),
        since: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// `YYYY-MM-DD HH:MM:SS UTC` from Unix seconds (civil-from-days, no time crate needed).
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StateStore;

    #[test]
    fn a_second_lock_fails_at_once_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("wallaroo.lock"));
        let held = store.lock("wallaroo apply", Duration::ZERO).unwrap();
        let started = Instant::now();
        let err = store.lock("wallaroo plan", Duration::ZERO).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        let text = err.to_string();
        assert!(text.contains("locked by `wallaroo apply`"), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(matches!(
            store.force_unlock(),
            Err(StateError::StillHeld { .. })
        ));
        drop(held);
        store.lock("wallaroo plan", Duration::ZERO).unwrap();
    }

    #[test]
    fn waiting_gets_the_lock_once_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("wallaroo.lock"));
        let held = store.lock("first", Duration::ZERO).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        store.lock("second", Duration::from_secs(5)).unwrap();
        releaser.join().unwrap();
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_795_000_000), "2026-11-18 11:06:40 UTC");
    }
}
