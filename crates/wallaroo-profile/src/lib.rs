//! Where a run's time went, phase by phase: spec load, preflight, discovery and render,
//! pins, signature and referrer lookups, refresh, manifests, blobs, lockfile writes.
//!
//! A phase is entered by the code doing its work ([`enter`] for a stretch of code,
//! [`within`] for a future, which also makes it the phase of the requests that future makes).
//! Each phase records:
//! - its wall time: how long at least one task was in it (phases run concurrently, so the
//!   sum of the phases can exceed the run's wall time, and a phase entered by eight tasks at
//!   once counts its time once);
//! - the requests made in it and the bytes they moved ([`request`], [`bytes`]), counted
//!   against the innermost phase of the task that made them, `other` outside any;
//! - the process's peak resident memory when it last ended (Linux: `VmHWM`), so that a
//!   phase after which the peak rose is the one that raised it.
//!
//! Recording is always on and costs a mutex per event (a few hundred per run); [`figures`]
//! reads it, and the CLI writes it as JSON when `WALLAROO_PROFILE` names a file.

use std::future::Future;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

tokio::task_local! {
    static PHASE: &'static str;
}

/// The phase of requests made outside any phase.
pub const OTHER: &str = "other";

/// Signature and referrer lookups, wherever they are made (plan and apply name it alike).
pub const SIGNATURES: &str = "signatures and referrers";

/// One phase's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phase {
    pub name: &'static str,
    /// Milliseconds from the run's start to the phase's first entry.
    pub start_ms: f64,
    /// Milliseconds in which at least one task was in the phase.
    pub wall_ms: f64,
    /// How many times it was entered.
    pub entered: u64,
    pub requests: u64,
    pub bytes: u64,
    /// The process's peak resident memory (KiB) when the phase last ended; 0 where unknown.
    pub peak_rss_kb: u64,
}

struct Slot {
    name: &'static str,
    first: Instant,
    busy: Duration,
    active: u32,
    since: Option<Instant>,
    entered: u64,
    requests: u64,
    bytes: u64,
    peak_rss_kb: u64,
}

impl Slot {
    fn new(name: &'static str, now: Instant) -> Slot {
        Slot {
            name,
            first: now,
            busy: Duration::ZERO,
            active: 0,
            since: None,
            entered: 0,
            requests: 0,
            bytes: 0,
            peak_rss_kb: 0,
        }
    }
}

struct Profile {
    started: Instant,
    slots: Vec<Slot>,
}

static PROFILE: LazyLock<Mutex<Profile>> = LazyLock::new(|| {
    Mutex::new(Profile {
        started: Instant::now(),
        slots: Vec::new(),
    })
});

fn with_slot<T>(name: &'static str, f: impl FnOnce(&mut Slot, Instant) -> T) -> T {
    let now = Instant::now();
    let mut p = PROFILE.lock().unwrap_or_else(|e| e.into_inner());
    let i = match p.slots.iter().position(|s| s.name == name) {
        Some(i) => i,
        None => {
            p.slots.push(Slot::new(name, now));
            p.slots.len() - 1
        }
    };
    f(&mut p.slots[i], now)
}

/// A phase name made at run time (e.g. one per resource kind), kept for the process's life:
/// the same text gives the same name, so a bounded set of names costs a bounded memory.
pub fn name(text: &str) -> &'static str {
    static NAMES: LazyLock<Mutex<Vec<&'static str>>> = LazyLock::new(Default::default);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.iter().find(|n| **n == text) {
        return n;
    }
    let n: &'static str = Box::leak(text.to_string().into_boxed_str());
    names.push(n);
    n
}

/// Starts the run's clock (the first use starts it otherwise).
pub fn start() {
    LazyLock::force(&PROFILE);
}

/// While the returned guard lives, `phase` is entered (by this stretch of code).
#[must_use = "the phase ends when the guard is dropped"]
pub fn enter(phase: &'static str) -> Entered {
    with_slot(phase, |s, now| {
        s.entered += 1;
        s.active += 1;
        if s.active == 1 {
            s.since = Some(now);
        }
    });
    Entered { phase }
}

/// A phase entered with [`enter`]; leaving it when dropped.
pub struct Entered {
    phase: &'static str,
}

impl Entered {
    /// Counts `n` bytes in this phase (for work outside any task, e.g. on a thread).
    pub fn bytes(&self, n: u64) {
        with_slot(self.phase, |s, _| s.bytes += n);
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let ended = with_slot(self.phase, |s, now| {
            s.active = s.active.saturating_sub(1);
            if s.active == 0
                && let Some(since) = s.since.take()
            {
                s.busy += now - since;
                return true;
            }
            false
        });
        if ended {
            // Read outside the profile's lock: a file read.
            let peak = peak_rss_kb();
            with_slot(self.phase, |s, _| s.peak_rss_kb = s.peak_rss_kb.max(peak));
        }
    }
}

/// Runs `fut` in `phase`: entered while it runs, and the phase of the requests it makes
/// (nested phases take theirs; tasks it spawns do not inherit it).
pub async fn within<F: Future>(phase: &'static str, fut: F) -> F::Output {
    let _entered = enter(phase);
    PHASE.scope(phase, fut).await
}

/// The current task's innermost phase.
pub fn current() -> &'static str {
    PHASE.try_with(|p| *p).unwrap_or(OTHER)
}

/// Counts one request (an HTTP request to a registry, the API server or Keycloak) in the
/// current phase.
pub fn request() {
    with_slot(current(), |s, _| s.requests += 1);
}

/// Counts `n` bytes moved (sent or received bodies) in the current phase.
pub fn bytes(n: u64) {
    if n > 0 {
        with_slot(current(), |s, _| s.bytes += n);
    }
}

/// Every phase recorded so far, in the order they were first entered; a phase still
/// entered counts its time up to now.
pub fn figures() -> Vec<Phase> {
    let now = Instant::now();
    let p = PROFILE.lock().unwrap_or_else(|e| e.into_inner());
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut out: Vec<(Instant, Phase)> = p
        .slots
        .iter()
        .map(|s| {
            let running = s.since.map(|t| now - t).unwrap_or_default();
            (
                s.first,
                Phase {
                    name: s.name,
                    start_ms: ms(s.first.saturating_duration_since(p.started)),
                    wall_ms: ms(s.busy + running),
                    entered: s.entered,
                    requests: s.requests,
                    bytes: s.bytes,
                    peak_rss_kb: s.peak_rss_kb,
                },
            )
        })
        .collect();
    out.sort_by_key(|(first, _)| *first);
    out.into_iter().map(|(_, p)| p).collect()
}

/// The whole run so far: wall time since [`start`] and the peak resident memory.
pub fn total() -> (Duration, u64) {
    let started = PROFILE.lock().unwrap_or_else(|e| e.into_inner()).started;
    (started.elapsed(), peak_rss_kb())
}

/// The process's peak resident memory in KiB (Linux `VmHWM`), 0 elsewhere.
pub fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
