//! Byte progress of long steps (an image copy, a bundle): counters a kind adds to as bytes
//! move, which the executor reads on a timer and hands to the [`crate::ApplyReporter`].
//!
//! A step's counters are reachable from the step's task through [`current`], so a kind needs
//! no extra argument; a kind that spawns tasks clones the handle into them. Adding to a
//! counter is one relaxed atomic add: progress never slows a transfer.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Byte counters of one step (or one bundle run).
#[derive(Debug, Default)]
pub struct StepProgress {
    total: AtomicU64,
    moved: AtomicU64,
    present: AtomicU64,
    /// What the step has to say besides its bytes (an upload that could not be taken up
    /// where it stopped, and why), until the executor hands it on.
    notes: Mutex<Vec<String>>,
}

/// A reading of [`StepProgress`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Transfer {
    /// Bytes the step will handle in all, as far as known (grows as manifests are read).
    pub total: u64,
    /// Bytes sent (or written, or read and checked) by this step.
    pub moved: u64,
    /// Bytes already where they had to go (present, or mounted from another repository).
    pub present: u64,
}

impl Transfer {
    /// Bytes accounted for: moved or already there.
    pub fn done(&self) -> u64 {
        self.moved + self.present
    }

    pub fn is_empty(&self) -> bool {
        *self == Transfer::default()
    }
}

impl std::ops::AddAssign for Transfer {
    fn add_assign(&mut self, o: Transfer) {
        self.total += o.total;
        self.moved += o.moved;
        self.present += o.present;
    }
}

impl StepProgress {
    pub fn new() -> Arc<StepProgress> {
        Arc::default()
    }

    /// More bytes to handle (a manifest's blobs, as it is read).
    pub fn add_total(&self, bytes: u64) {
        self.total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes sent.
    pub fn add_moved(&self, bytes: u64) {
        self.moved.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Takes back bytes counted as sent that have to go again (an upload restarted from the
    /// beginning).
    pub fn take_back(&self, bytes: u64) {
        let _ = self
            .moved
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                Some(m.saturating_sub(bytes))
            });
    }

    /// Bytes found already in place.
    pub fn add_present(&self, bytes: u64) {
        self.present.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Something the operator should know about this step (not a failure).
    pub fn note(&self, text: impl Into<String>) {
        self.notes.lock().expect("notes lock").push(text.into());
    }

    /// The notes not handed on yet.
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.notes.lock().expect("notes lock"))
    }

    pub fn read(&self) -> Transfer {
        Transfer {
            total: self.total.load(Ordering::Relaxed),
            moved: self.moved.load(Ordering::Relaxed),
            present: self.present.load(Ordering::Relaxed),
        }
    }
}

tokio::task_local! {
    static CURRENT: Arc<StepProgress>;
}

/// The counters of the step running on this task, if it runs under [`scope`].
pub fn current() -> Option<Arc<StepProgress>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// Runs `fut` with `progress` as its [`current`] counters.
pub async fn scope<F: Future>(progress: Arc<StepProgress>, fut: F) -> F::Output {
    CURRENT.scope(progress, fut).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counters_are_reachable_from_the_step_task_only() {
        assert!(current().is_none());
        let p = StepProgress::new();
        scope(p.clone(), async {
            let c = current().expect("inside the scope");
            c.add_total(100);
            c.add_moved(60);
            c.add_present(10);
            c.take_back(20);
            c.take_back(1000);
        })
        .await;
        assert_eq!(
            p.read(),
            Transfer {
                total: 100,
                moved: 0,
                present: 10
            }
        );
        assert!(current().is_none());
    }
}
