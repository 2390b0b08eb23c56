//! The machine-readable view of `apply`, `destroy` and the bundle commands (`--json`): one
//! JSON object per line on stdout, in the manner of Terraform's `-json` UI. Every object
//! carries `@version` (the schema's, see `schemas/events.schema.json`), `@timestamp` and
//! `type`. Nothing secret enters it: steps are named by address, errors are the ones the
//! text view prints (already redacted by the kinds), and attributes are never written.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use wallaroo_engine::{Action, Address, ApplyReport, ApplyReporter, Plan, StepResult, Transfer};

use crate::progress::Meter;

/// The version of the event schema; a change that removes or renames a field bumps it.
pub const SCHEMA_VERSION: &str = "1.0";

/// How often a running step's bytes are written, unless `WALLAROO_PROGRESS_INTERVAL` says.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// An RFC 3339 UTC time with milliseconds.
fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let day = wallaroo_state::format_utc(now.as_secs());
    // `YYYY-MM-DD HH:MM:SS UTC` -> `YYYY-MM-DDTHH:MM:SS.mmmZ`
    format!(
        "{}T{}.{:03}Z",
        &day[..10],
        &day[11..19],
        now.subsec_millis()
    )
}

pub fn action_name(action: Action) -> &'static str {
    match action {
        Action::Create => "create",
        Action::Update => "update",
        Action::Replace => "replace",
        Action::Delete => "delete",
        Action::Read => "read",
        Action::NoOp => "no-op",
    }
}

pub fn bytes_json(t: Transfer) -> Value {
    json!({"total": t.total, "moved": t.moved, "present": t.present})
}

struct Step {
    meter: Meter,
    last: Option<Instant>,
    bytes: Transfer,
}

/// Writes events to stdout, one line each, flushed at once.
pub struct Events {
    out: Mutex<std::io::Stdout>,
    steps: Mutex<BTreeMap<String, Step>>,
    every: Duration,
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    pub fn new() -> Events {
        Events {
            out: Mutex::new(std::io::stdout()),
            steps: Mutex::default(),
            every: crate::progress::interval(PROGRESS_EVERY),
        }
    }

    /// Writes one event of `kind` with `fields` beside the common ones.
    pub fn emit(&self, kind: &str, fields: Value) {
        let mut event = json!({
            "@version": SCHEMA_VERSION,
            "@timestamp": timestamp(),
            "type": kind,
        });
        if let (Some(e), Value::Object(f)) = (event.as_object_mut(), fields) {
            e.extend(f);
        }
        let mut out = self.out.lock().unwrap();
        let _ = writeln!(out, "{event}");
        let _ = out.flush();
    }

    /// The first event of every stream.
    pub fn version(&self, command: &str) {
        self.emit(
            "version",
            json!({"wallaroo": env!("CARGO_PKG_VERSION"), "command": command}),
        );
    }

    pub fn diagnostic(&self, severity: &str, message: &str) {
        self.emit(
            "diagnostic",
            json!({"severity": severity, "message": message}),
        );
    }

    /// What the run will do: the plan's counts and each step with its action.
    pub fn plan(&self, plan: &Plan, saved: bool) {
        for warning in &plan.warnings {
            self.diagnostic("warning", warning);
        }
        let s = &plan.summary;
        let changes: Vec<Value> = plan
            .changes
            .iter()
            .filter(|c| c.action != Action::NoOp)
            .map(|c| json!({"address": c.address.to_string(), "action": action_name(c.action)}))
            .collect();
        self.emit(
            "plan",
            json!({
                "mode": match plan.mode {
                    wallaroo_engine::PlanMode::Apply => "apply",
                    wallaroo_engine::PlanMode::Destroy => "destroy",
                },
                "saved": saved,
                "summary": {
                    "add": s.add, "change": s.change, "destroy": s.destroy, "read": s.read,
                },
                "changes": changes,
            }),
        );
    }

    /// A step's bytes, at most once per interval (always when `last` is set).
    pub fn step_progress(&self, step: &str, bytes: Transfer, last: bool) {
        let now = Instant::now();
        let rate = {
            let mut steps = self.steps.lock().unwrap();
            let s = steps.entry(step.to_string()).or_insert(Step {
                meter: Meter::default(),
                last: None,
                bytes,
            });
            s.bytes = bytes;
            s.meter.record(now, bytes.moved);
            if !last && s.last.is_some_and(|t| now.duration_since(t) < self.every) {
                return;
            }
            s.last = Some(now);
            s.meter.rate()
        };
        self.emit(
            "step_progress",
            json!({
                "address": step,
                "bytes": bytes_json(bytes),
                "rate_bytes_per_second": rate.map(|r| r.round() as u64),
            }),
        );
    }

    /// The last bytes seen of a step, forgetting it.
    fn last_bytes(&self, step: &str) -> Option<Transfer> {
        self.steps.lock().unwrap().remove(step).map(|s| s.bytes)
    }

    /// The steps that did not run, with why; written once the run ended.
    pub fn skipped(&self, report: &ApplyReport) {
        for (address, step) in &report.steps {
            if let StepResult::Skipped { action, reason } = step {
                self.emit(
                    "step_skipped",
                    json!({
                        "address": address.to_string(),
                        "action": action_name(*action),
                        "reason": reason,
                    }),
                );
            }
        }
    }
}

impl ApplyReporter for Events {
    fn started(&self, address: &Address, action: Action) {
        self.emit(
            "step_started",
            json!({"address": address.to_string(), "action": action_name(action)}),
        );
    }

    fn progress(&self, address: &Address, bytes: Transfer) {
        self.step_progress(&address.to_string(), bytes, false);
    }

    fn note(&self, address: &Address, text: &str) {
        self.emit(
            "diagnostic",
            json!({"severity": "warning", "address": address.to_string(), "message": text}),
        );
    }

    fn finished(&self, address: &Address, action: Action, elapsed: Duration) {
        let mut event = json!({
            "address": address.to_string(),
            "action": action_name(action),
            "outcome": "applied",
            "elapsed_seconds": elapsed.as_secs_f64(),
        });
        if let Some(bytes) = self.last_bytes(&address.to_string()) {
            event["bytes"] = bytes_json(bytes);
        }
        self.emit("step_finished", event);
    }

    fn failed(&self, address: &Address, action: Action, error: &str) {
        let mut event = json!({
            "address": address.to_string(),
            "action": action_name(action),
            "outcome": "failed",
            "error": error,
        });
        if let Some(bytes) = self.last_bytes(&address.to_string()) {
            event["bytes"] = bytes_json(bytes);
        }
        self.emit("step_finished", event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = timestamp();
        assert_eq!(t.len(), "2026-11-28T22:05:49.123Z".len(), "{t}");
        assert_eq!(&t[10..11], "T");
        assert!(t.ends_with('Z'));
        assert!(t[..4].parse::<u32>().unwrap() >= 2026);
    }
}
