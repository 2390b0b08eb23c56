//! Apply progress for people: on a TTY, indicatif bars (one overall, one per running step,
//! at most [`MAX_BARS`]); otherwise one line per event and, while bytes move, one plain
//! line every few seconds with the same figures (never a carriage-return animation).

use std::collections::{BTreeMap, VecDeque};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanDuration, MultiProgress, ProgressBar, ProgressStyle};
use wallaroo_engine::{Action, Address, ApplyReporter, Plan, Transfer};

/// Running steps shown with a bar of their own; more are counted in the overall line.
const MAX_BARS: usize = 6;

/// How often a plain progress line is printed without a TTY, unless
/// `WALLAROO_PROGRESS_INTERVAL` (seconds) says otherwise.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// How often progress is shown without a TTY: `WALLAROO_PROGRESS_INTERVAL` (seconds), else
/// `default`.
pub fn interval(default: Duration) -> Duration {
    std::env::var("WALLAROO_PROGRESS_INTERVAL")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .map_or(default, Duration::from_secs_f64)
}

/// The window over which a rate is measured.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// A transfer rate over the last [`RATE_WINDOW`], from readings of bytes moved.
#[derive(Debug, Default)]
pub struct Meter {
    samples: VecDeque<(Instant, u64)>,
}

impl Meter {
    pub fn record(&mut self, at: Instant, moved: u64) {
        self.samples.push_back((at, moved));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| at.duration_since(*t) > RATE_WINDOW)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
    }

    /// Bytes a second, once two readings are at least a quarter of a second apart.
    pub fn rate(&self) -> Option<f64> {
        let (t0, m0) = self.samples.front()?;
        let (t1, m1) = self.samples.back()?;
        let secs = t1.duration_since(*t0).as_secs_f64();
        (secs >= 0.25).then(|| m1.saturating_sub(*m0) as f64 / secs)
    }
}

/// "1.20 GiB of 3.40 GiB (35%), 85.00 MiB/s, about 26 seconds left".
pub fn describe(bytes: Transfer, rate: Option<f64>) -> String {
    describe_known(bytes, rate, true)
}

/// [`describe`]; when the total is not `whole` yet (steps that will move bytes have not
/// started), it says "known so far" and gives no time left.
pub fn describe_known(bytes: Transfer, rate: Option<f64>, whole: bool) -> String {
    let mut text = if bytes.total > 0 {
        format!(
            "{} of {}{} ({}%)",
            HumanBytes(bytes.done()),
            HumanBytes(bytes.total),
            if whole { "" } else { " known so far" },
            bytes.done().min(bytes.total) * 100 / bytes.total
        )
    } else {
        format!("{}", HumanBytes(bytes.done()))
    };
    if let Some(rate) = rate.filter(|r| *r > 0.0) {
        text.push_str(&format!(", {}/s", HumanBytes(rate as u64)));
        let left = bytes.total.saturating_sub(bytes.done());
        if left > 0 && whole {
            text.push_str(&format!(
                ", about {} left",
                HumanDuration(Duration::from_secs_f64(left as f64 / rate))
            ));
        }
    }
    text
}

fn doing(action: Action) -> (&'static str, &'static str) {
    match action {
        Action::Create => ("Creating", "Creation"),
        Action::Update => ("Modifying", "Modifications"),
        Action::Replace => ("Replacing", "Replacement"),
        Action::Delete => ("Destroying", "Destruction"),
        Action::Read => ("Reading", "Read"),
        Action::NoOp => ("Checking", "Check"),
    }
}

struct Running {
    action: Action,
    bytes: Transfer,
    bar: Option<ProgressBar>,
}

#[derive(Default)]
struct State {
    running: BTreeMap<Address, Running>,
    /// Bytes of the steps that ended.
    finished: Transfer,
    done: usize,
    meter: Meter,
    last_line: Option<Instant>,
}

impl State {
    fn overall(&self) -> Transfer {
        let mut all = self.finished;
        for r in self.running.values() {
            all += r.bytes;
        }
        all
    }
}

pub struct Progress {
    bars: Option<(MultiProgress, ProgressBar)>,
    state: Mutex<State>,
    total: usize,
    plain_every: Duration,
}

impl Progress {
    pub fn new(plan: &Plan) -> Progress {
        let total = plan
            .changes
            .iter()
            .filter(|c| c.action != Action::NoOp)
            .count();
        let bars = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::new();
            let overall = multi.add(ProgressBar::new(total as u64));
            overall.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} steps, {elapsed} {wide_msg}")
                    .expect("valid template"),
            );
            overall.enable_steady_tick(Duration::from_millis(250));
            (multi, overall)
        });
        Progress {
            bars,
            state: Mutex::default(),
            total,
            plain_every: interval(PLAIN_EVERY),
        }
    }

    /// Clears the bars.
    pub fn finish(&self) {
        if let Some((_, overall)) = &self.bars {
            overall.finish_and_clear();
        }
    }

    fn line(&self, text: String) {
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    /// Whether every step has started, so that the byte total is whole.
    fn all_started(&self, state: &State) -> bool {
        state.done + state.running.len() >= self.total
    }

    fn step_done(&self, address: &Address) -> usize {
        let mut state = self.state.lock().unwrap();
        if let Some(r) = state.running.remove(address) {
            if let Some(bar) = r.bar {
                bar.finish_and_clear();
            }
            state.finished += r.bytes;
        }
        if let Some((_, overall)) = &self.bars {
            overall.inc(1);
        }
        state.done += 1;
        state.done
    }

    /// The overall line's figures: bytes, rate, time left, and running steps without a bar.
    fn overall_text(&self, state: &State) -> String {
        let bytes = state.overall();
        let mut text = if bytes.is_empty() {
            String::new()
        } else {
            describe_known(bytes, state.meter.rate(), self.all_started(state))
        };
        let hidden = state.running.values().filter(|r| r.bar.is_none()).count();
        if hidden > 0 {
            text.push_str(&format!(" (+{hidden} more running)"));
        }
        text
    }
}

impl ApplyReporter for Progress {
    fn started(&self, address: &Address, action: Action) {
        let (verb, _) = doing(action);
        let mut state = self.state.lock().unwrap();
        let shown = state.running.values().filter(|r| r.bar.is_some()).count();
        let bar = match &self.bars {
            Some((multi, overall)) if shown < MAX_BARS => {
                let bar = multi.insert_before(overall, ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                        .expect("valid template"),
                );
                bar.set_message(format!("{address}: {verb}..."));
                bar.enable_steady_tick(Duration::from_millis(120));
                Some(bar)
            }
            Some(_) => None,
            None => {
                eprintln!("{address}: {verb}...");
                None
            }
        };
        state.running.insert(
            address.clone(),
            Running {
                action,
                bytes: Transfer::default(),
                bar,
            },
        );
    }

    fn progress(&self, address: &Address, bytes: Transfer) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap();
        let Some(r) = state.running.get_mut(address) else {
            return;
        };
        r.bytes = bytes;
        if let Some(bar) = &r.bar {
            let (verb, _) = doing(r.action);
            bar.set_message(format!("{address}: {verb}... {}", describe(bytes, None)));
        }
        let moved = state.overall().moved;
        state.meter.record(now, moved);
        match &self.bars {
            Some((_, overall)) => overall.set_message(self.overall_text(&state)),
            None => {
                let due = state
                    .last_line
                    .is_none_or(|t| now.duration_since(t) >= self.plain_every);
                let transferring = state.running.values().any(|r| r.bytes.total > 0);
                if due && transferring {
                    state.last_line = Some(now);
                    let running = state.running.len();
                    eprintln!(
                        "Progress: {}; {} of {} steps done, {running} running",
                        describe_known(
                            state.overall(),
                            state.meter.rate(),
                            self.all_started(&state)
                        ),
                        state.done,
                        self.total
                    );
                }
            }
        }
    }

    fn note(&self, address: &Address, text: &str) {
        self.line(format!("{address}: note: {text}"));
    }

    fn finished(&self, address: &Address, action: Action, elapsed: Duration) {
        let bytes = self
            .state
            .lock()
            .unwrap()
            .running
            .get(address)
            .map(|r| r.bytes)
            .unwrap_or_default();
        let n = self.step_done(address);
        let (_, noun) = doing(action);
        let moved = if bytes.is_empty() {
            String::new()
        } else {
            format!(
                " ({} sent, {} already there)",
                HumanBytes(bytes.moved),
                HumanBytes(bytes.present)
            )
        };
        self.line(format!(
            "{address}: {noun} complete after {:.1}s{moved} [{n}/{}]",
            elapsed.as_secs_f64(),
            self.total
        ));
    }

    fn failed(&self, address: &Address, action: Action, error: &str) {
        let n = self.step_done(address);
        let (_, noun) = doing(action);
        self.line(format!(
            "{address}: {noun} failed: {error} [{n}/{}]",
            self.total
        ));
    }
}

/// Runs `work` (a bundle being written or checked) under fresh byte counters and shows
/// them while it runs: a bar on a TTY, a plain line every few seconds otherwise, or
/// `step_progress` events with `--json`. `what` names it ("Writing release.tar").
pub async fn watched<F: std::future::Future>(
    what: &str,
    step: &str,
    events: Option<&crate::events::Events>,
    work: F,
) -> F::Output {
    let counters = wallaroo_engine::StepProgress::new();
    let tty = events.is_none() && std::io::stderr().is_terminal();
    let bar = tty.then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let plain_every = interval(PLAIN_EVERY);
    let mut meter = Meter::default();
    let mut last_line = Instant::now();
    let work = wallaroo_engine::progress::scope(counters.clone(), work);
    tokio::pin!(work);
    let mut every = tokio::time::interval(wallaroo_engine::PROGRESS_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let output = loop {
        tokio::select! {
            out = &mut work => break out,
            _ = every.tick() => {
                let bytes = counters.read();
                let now = Instant::now();
                meter.record(now, bytes.moved);
                if let Some(e) = events {
                    e.step_progress(step, bytes, false);
                } else if let Some(bar) = &bar {
                    bar.set_message(format!("{what}: {}", describe(bytes, meter.rate())));
                } else if now.duration_since(last_line) >= plain_every && bytes.total > 0 {
                    last_line = now;
                    eprintln!("{what}: {}", describe(bytes, meter.rate()));
                }
            }
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(e) = events {
        e.step_progress(step, counters.read(), true);
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_like_a_transfer() {
        let t = Transfer {
            total: 4 << 30,
            moved: 1 << 30,
            present: 1 << 30,
        };
        assert_eq!(describe(t, None), "2.00 GiB of 4.00 GiB (50%)");
        assert_eq!(
            describe(t, Some((64 << 20) as f64)),
            "2.00 GiB of 4.00 GiB (50%), 64.00 MiB/s, about 32 seconds left"
        );
        let unknown = Transfer {
            total: 0,
            moved: 10,
            present: 0,
        };
        assert_eq!(describe(unknown, Some(0.0)), "10 B");
        assert_eq!(
            describe_known(t, Some((64 << 20) as f64), false),
            "2.00 GiB of 4.00 GiB known so far (50%), 64.00 MiB/s"
        );
    }

    #[test]
    fn the_rate_is_measured_over_a_window() {
        let mut m = Meter::default();
        let t0 = Instant::now();
        assert_eq!(m.rate(), None);
        m.record(t0, 0);
        m.record(t0 + Duration::from_millis(100), 10);
        assert_eq!(m.rate(), None, "too short to tell");
        m.record(t0 + Duration::from_secs(2), 2000);
        assert_eq!(m.rate(), Some(1000.0));
        // Old readings leave the window: the rate follows what happens now.
        m.record(t0 + Duration::from_secs(20), 2000);
        m.record(t0 + Duration::from_secs(21), 2000);
        assert_eq!(m.rate(), Some(0.0));
    }
}
