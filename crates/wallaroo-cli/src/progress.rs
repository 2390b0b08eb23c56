//! Apply progress: bars on a TTY, one line per event otherwise.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use wallaroo_engine::{Action, Address, ApplyReporter, Plan};

pub struct Progress {
    bars: Option<(MultiProgress, ProgressBar)>,
    running: Mutex<BTreeMap<Address, ProgressBar>>,
    done: Mutex<usize>,
    total: usize,
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
                ProgressStyle::with_template("{bar:30} {pos}/{len} steps, {elapsed}")
                    .expect("valid template"),
            );
            (multi, overall)
        });
        Progress {
            bars,
            running: Mutex::new(BTreeMap::new()),
            done: Mutex::new(0),
            total,
        }
    }

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

    fn step_done(&self, address: &Address) -> usize {
        if let Some(bar) = self.running.lock().unwrap().remove(address) {
            bar.finish_and_clear();
        }
        if let Some((_, overall)) = &self.bars {
            overall.inc(1);
        }
        let mut done = self.done.lock().unwrap();
        *done += 1;
        *done
    }
}

impl ApplyReporter for Progress {
    fn started(&self, address: &Address, action: Action) {
        let (verb, _) = doing(action);
        match &self.bars {
            Some((multi, overall)) => {
                let bar = multi.insert_before(overall, ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                        .expect("valid template"),
                );
                bar.set_message(format!("{address}: {verb}..."));
                bar.enable_steady_tick(Duration::from_millis(120));
                self.running.lock().unwrap().insert(address.clone(), bar);
            }
            None => eprintln!("{address}: {verb}..."),
        }
    }

    fn finished(&self, address: &Address, action: Action, elapsed: Duration) {
        let n = self.step_done(address);
        let (_, noun) = doing(action);
        self.line(format!(
            "{address}: {noun} complete after {:.1}s [{n}/{}]",
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
