//! Writes the lockfile from a thread of its own while an apply runs, so a step never waits
//! for a disk write. Every change is followed by a write that includes it; changes that
//! arrive during a write are coalesced into the next one.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::{Lockfile, StateError, StateStore};

struct Shared {
    lockfile: Lockfile,
    dirty: bool,
    closing: bool,
}

/// A background writer of one lockfile.
pub struct StateWriter {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    thread: Option<JoinHandle<Result<(), StateError>>>,
}

impl StateWriter {
    /// Starts writing `lockfile` to `store`, after keeping the current file as the backup.
    pub fn start(store: StateStore, lockfile: Lockfile) -> Result<StateWriter, StateError> {
        if !store.is_remote() && store.path().exists() {
            std::fs::copy(store.path(), store.backup_path()).map_err(|source| {
                StateError::Write {
                    path: store.path().to_path_buf(),
                    source,
                }
            })?;
        }
        let shared = Arc::new((
            Mutex::new(Shared {
                lockfile,
                dirty: false,
                closing: false,
            }),
            Condvar::new(),
        ));
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("lockfile-writer".into())
            .spawn(move || write_loop(&store, &worker))
            .map_err(|source| StateError::Write {
                path: "lockfile writer thread".into(),
                source,
            })?;
        Ok(StateWriter {
            shared,
            thread: Some(thread),
        })
    }

    /// Changes the lockfile; `change` returns whether it changed anything.
    pub fn update(&self, change: impl FnOnce(&mut Lockfile) -> bool) {
        let (lock, cvar) = &*self.shared;
        let mut s = lock
            .lock()
            .expect("the writer never panics holding the lock");
        if change(&mut s.lockfile) {
            s.dirty = true;
            cvar.notify_one();
        }
    }

    /// Reads the current in-memory lockfile.
    pub fn read<T>(&self, f: impl FnOnce(&Lockfile) -> T) -> T {
        f(&self
            .shared
            .0
            .lock()
            .expect("the writer never panics holding the lock")
            .lockfile)
    }

    /// Writes what is left and stops; the first write error, if any.
    pub fn finish(mut self) -> Result<Lockfile, StateError> {
        self.close()?;
        let s = self
            .shared
            .0
            .lock()
            .expect("the writer never panics holding the lock");
        Ok(s.lockfile.clone())
    }

    fn close(&mut self) -> Result<(), StateError> {
        {
            let (lock, cvar) = &*self.shared;
            lock.lock()
                .expect("the writer never panics holding the lock")
                .closing = true;
            cvar.notify_one();
        }
        match self.thread.take() {
            Some(t) => t.join().expect("the lockfile writer does not panic"),
            None => Ok(()),
        }
    }
}

impl Drop for StateWriter {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

fn write_loop(store: &StateStore, shared: &(Mutex<Shared>, Condvar)) -> Result<(), StateError> {
    let (lock, cvar) = shared;
    loop {
        let (phase, bytes) = {
            let mut s = lock
                .lock()
                .expect("the writer never panics holding the lock");
            while !s.dirty && !s.closing {
                s = cvar
                    .wait(s)
                    .expect("the writer never panics holding the lock");
            }
            if !s.dirty {
                return Ok(());
            }
            s.dirty = false;
            s.lockfile.serial += 1;
            let phase = wallaroo_profile::enter("lockfile writes");
            let bytes =
                serde_json::to_vec_pretty(&s.lockfile).expect("the lockfile always serializes");
            (phase, bytes)
        };
        store.write_bytes(&bytes)?;
        phase.bytes(bytes.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OutputState;

    #[test]
    fn every_update_is_written_and_coalesced() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("wallaroo.lock"));
        store.save(&Lockfile::new()).unwrap();
        let writer = StateWriter::start(store.clone(), store.load().unwrap().unwrap()).unwrap();
        for i in 0..200 {
            writer.update(|lf| {
                lf.outputs.insert(
                    format!("o{i}"),
                    OutputState {
                        value: i.into(),
                        sensitive: false,
                        hash: None,
                    },
                );
                true
            });
        }
        writer.update(|_| false);
        let last = writer.finish().unwrap();
        let on_disk = store.load().unwrap().unwrap();
        assert_eq!(on_disk, last);
        assert_eq!(on_disk.outputs.len(), 200);
        assert!(
            on_disk.serial >= 1 && on_disk.serial <= 200,
            "serial {}",
            on_disk.serial
        );
        let backup: Lockfile =
            serde_json::from_str(&std::fs::read_to_string(store.backup_path()).unwrap()).unwrap();
        assert_eq!(backup.serial, 0, "the backup is the version before the run");
    }
}
