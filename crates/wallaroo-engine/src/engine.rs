//! Refresh, plan and apply over the registered resource kinds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use wallaroo_state::{Lockfile, OutputState, StateStore, StateWriter, hash_sensitive, new_salt};

use crate::address::Address;
use crate::diff::{diff_drift, diff_resource, fingerprint, sensitive_names, to_state};
use crate::error::EngineError;
use crate::exec::{StepOutcome, walk};
use crate::graph;
use crate::plan::*;
use crate::progress::{StepProgress, Transfer};
use crate::resource::{
    Attrs, DesiredResource, DesiredSet, KindRegistry, ReadRequest, ResourceKind,
};

/// Live state of every resource in scope: `None` where it does not exist.
#[derive(Debug, Clone, Default)]
pub struct LiveSnapshot {
    pub resources: BTreeMap<Address, Option<Attrs>>,
}

/// Options of `plan`.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub mode: PlanMode,
    pub targets: Vec<Address>,
    /// Concurrent live reads.
    pub refresh_parallelism: usize,
    /// `--exclude`: resources left out, with what depends on them.
    pub excludes: Vec<Address>,
    /// Delete resources of kinds that are kept on removal (mirrored images) as well, when
    /// they leave the spec or on destroy (`destroy --include-images`).
    pub delete_kept: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            mode: PlanMode::Apply,
            targets: Vec::new(),
            excludes: Vec::new(),
            refresh_parallelism: 32,
            delete_kept: false,
        }
    }
}

/// Options of `apply`.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub parallelism: usize,
    /// Turns true on Ctrl-C: running steps finish, no new one starts.
    pub interrupt: Option<watch::Receiver<bool>>,
    /// After a failure, still run every step whose dependencies succeeded.
    pub keep_going: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: 10,
            interrupt: None,
            keep_going: false,
        }
    }
}

/// What apply reports as it goes; the CLI draws progress from it. Called on the apply task.
pub trait ApplyReporter: Send + Sync {
    fn started(&self, _address: &Address, _action: Action) {}
    /// The bytes of a running step that moves data (see [`crate::progress`]): called every
    /// [`PROGRESS_EVERY`] while it runs, and once more with the final figures just before
    /// [`ApplyReporter::finished`] or [`ApplyReporter::failed`].
    fn progress(&self, _address: &Address, _bytes: Transfer) {}
    /// A note a running step made (see [`crate::progress::StepProgress::note`]).
    fn note(&self, _address: &Address, _text: &str) {}
    fn finished(&self, _address: &Address, _action: Action, _elapsed: Duration) {}
    fn failed(&self, _address: &Address, _action: Action, _error: &str) {}
}

/// How often the executor reads the byte counters of running steps.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// A reporter that reports nothing.
pub struct Silent;
impl ApplyReporter for Silent {}

/// How one step of an apply ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StepResult {
    Applied {
        action: Action,
        elapsed: Duration,
    },
    Failed {
        action: Action,
        error: String,
    },
    /// Not run, and why: a dependency failed (named), a failure elsewhere stopped the
    /// apply, or an interrupt.
    Skipped {
        action: Action,
        reason: String,
    },
}

/// The result of an apply.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    pub steps: BTreeMap<Address, StepResult>,
    /// The bytes each step that moved data handled (see [`crate::progress`]).
    pub transfers: BTreeMap<Address, Transfer>,
    pub interrupted: bool,
    pub summary: Summary,
    pub wall: Duration,
}

impl ApplyReport {
    /// The bytes of every step, summed.
    pub fn transferred(&self) -> Transfer {
        let mut all = Transfer::default();
        for t in self.transfers.values() {
            all += *t;
        }
        all
    }

    pub fn success(&self) -> bool {
        !self.interrupted
            && self
                .steps
                .values()
                .all(|s| matches!(s, StepResult::Applied { .. }))
    }
}

/// The engine: the kinds it knows.
#[derive(Clone)]
pub struct Engine {
    kinds: KindRegistry,
}

/// The profile's phase of live reads (see `wallaroo_profile`).
const REFRESH: &str = "refresh";

impl Engine {
    pub fn new(kinds: KindRegistry) -> Engine {
        Engine { kinds }
    }

    fn kind(&self, address: &Address, name: &str) -> Result<Arc<dyn ResourceKind>, EngineError> {
        self.kinds
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::UnknownKind {
                address: address.clone(),
                kind: name.to_string(),
            })
    }

    /// The addresses a plan covers: desired and recorded, cut down to `--target` scope.
    pub fn scope(
        desired: &DesiredSet,
        state: Option<&Lockfile>,
        opts: &PlanOptions,
    ) -> Result<BTreeSet<Address>, EngineError> {
        let mut deps: BTreeMap<Address, Vec<Address>> = BTreeMap::new();
        if opts.mode == PlanMode::Apply {
            for (a, r) in &desired.resources {
                for d in &r.depends_on {
                    if !desired.resources.contains_key(d) {
                        return Err(EngineError::UnknownDependency {
                            address: a.clone(),
                            missing: d.clone(),
                        });
                    }
                }
                deps.insert(a.clone(), r.depends_on.clone());
            }
        }
        for (a, r) in state.map(|s| &s.resources).into_iter().flatten() {
            let addr: Address = a.parse().map_err(|e: crate::address::AddressError| {
                EngineError::State(wallaroo_state::StateError::Invalid {
                    path: "lockfile".into(),
                    message: e.to_string(),
                })
            })?;
            deps.entry(addr)
                .or_insert_with(|| r.depends_on.iter().filter_map(|d| d.parse().ok()).collect());
        }
        for t in opts.targets.iter().chain(&opts.excludes) {
            if !deps.keys().any(|a| t.contains(a)) {
                return Err(EngineError::NoSuchTarget(t.clone()));
            }
        }
        let mut scope: BTreeSet<Address> = if opts.targets.is_empty() {
            deps.keys().cloned().collect()
        } else {
            graph::target_scope(&opts.targets, &deps)
        };
        if !opts.excludes.is_empty() {
            // Left out: the excluded resources, and what cannot be done without them: in an
            // apply what depends on them, in a destroy what they depend on.
            let mut out: BTreeSet<Address> = deps
                .keys()
                .filter(|a| opts.excludes.iter().any(|x| x.contains(a)))
                .cloned()
                .collect();
            loop {
                let more: Vec<Address> = match opts.mode {
                    PlanMode::Apply => deps
                        .iter()
                        .filter(|(a, ds)| !out.contains(*a) && ds.iter().any(|d| out.contains(d)))
                        .map(|(a, _)| a.clone())
                        .collect(),
                    PlanMode::Destroy => deps
                        .iter()
                        .filter(|(a, _)| out.contains(*a))
                        .flat_map(|(_, ds)| ds.iter().filter(|d| !out.contains(*d)).cloned())
                        .collect(),
                };
                if more.is_empty() {
                    break;
                }
                out.extend(more);
            }
            scope.retain(|a| !out.contains(a));
        }
        Ok(scope)
    }

    /// Reads the live state of every address in scope, concurrently (bounded): one round of
    /// parallel requests, not one after another.
    pub async fn refresh(
        &self,
        desired: &DesiredSet,
        state: Option<&Lockfile>,
        scope: &BTreeSet<Address>,
        parallelism: usize,
    ) -> Result<LiveSnapshot, EngineError> {
        let permits = Arc::new(Semaphore::new(parallelism.max(1)));
        let mut tasks = JoinSet::new();
        for address in scope {
            let wanted = desired.resources.get(address);
            let prior = state.and_then(|s| s.resources.get(&address.to_string()));
            let kind_name = wanted
                .map(|d| d.kind.clone())
                .or(prior.map(|p| p.kind.clone()))
                .unwrap_or_default();
            let kind = self.kind(address, &kind_name)?;
            let address = address.clone();
            let wanted_attrs = wanted.map(|d| d.attrs.clone());
            let prior_attrs = prior.map(|p| p.attributes.clone());
            let permits = permits.clone();
            tasks.spawn(wallaroo_profile::within(REFRESH, async move {
                let _permit = permits
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let live = kind
                    .read(ReadRequest {
                        address: &address,
                        desired: wanted_attrs.as_ref(),
                        prior: prior_attrs.as_ref(),
                        during_apply: false,
                    })
                    .await;
                (address, live)
            }));
        }
        let mut snapshot = LiveSnapshot::default();
        while let Some(joined) = tasks.join_next().await {
            let (address, live) = joined.map_err(|e| EngineError::Refresh {
                address: "refresh".parse().unwrap(),
                message: e.to_string(),
            })?;
            let live = live.map_err(|e| EngineError::Refresh {
                address: address.clone(),
                message: e.message,
            })?;
            snapshot.resources.insert(address, live);
        }
        Ok(snapshot)
    }

    /// Reads one desired resource's live state now (e.g. a sensitive output, which the
    /// lockfile keeps only as a hash).
    pub async fn read_live(&self, desired: &DesiredResource) -> Result<Option<Attrs>, EngineError> {
        let kind = self.kind(&desired.address, &desired.kind)?;
        kind.read(ReadRequest {
            address: &desired.address,
            desired: Some(&desired.attrs),
            prior: None,
            during_apply: false,
        })
        .await
        .map_err(|e| EngineError::Refresh {
            address: desired.address.clone(),
            message: e.message,
        })
    }

    /// Refreshes and diffs: the plan to review.
    pub async fn plan(
        &self,
        desired: &DesiredSet,
        state: Option<&Lockfile>,
        opts: &PlanOptions,
    ) -> Result<Plan, EngineError> {
        let scope = Self::scope(desired, state, opts)?;
        let live = self
            .refresh(desired, state, &scope, opts.refresh_parallelism)
            .await?;
        let salt = state.map(|s| s.salt.clone()).unwrap_or_else(new_salt);
        let mut items = Vec::new();
        let mut by_addr: BTreeMap<Address, ResourceChange> = BTreeMap::new();
        // What each resource used, as the lockfile records (for the destroy edges below).
        let mut used_before: BTreeMap<Address, Vec<Address>> = BTreeMap::new();
        let mut drift = Vec::new();
        let mut warnings = desired.warnings.clone();
        for address in &scope {
            let wanted = if opts.mode == PlanMode::Apply {
                desired.resources.get(address)
            } else {
                None
            };
            let prior = state.and_then(|s| s.resources.get(&address.to_string()));
            let kind_name = wanted
                .map(|d| d.kind.as_str())
                .or(prior.map(|p| p.kind.as_str()))
                .unwrap_or_default();
            let kind = self.kind(address, kind_name)?;
            let now = live.resources.get(address).cloned().flatten();
            if let Some(p) = prior.filter(|_| !kind.read_only()) {
                match &now {
                    None => drift.push(Drift {
                        address: address.clone(),
                        kind: p.kind.clone(),
                        deleted: true,
                        attributes: vec![],
                    }),
                    Some(l) => {
                        let mut changed = diff_drift(p, l, address, &salt);
                        if let Some(d) = wanted {
                            changed
                                .retain(|c| !crate::resource::ignored(&c.path, &d.ignore_changes));
                        }
                        if !changed.is_empty() {
                            drift.push(Drift {
                                address: address.clone(),
                                kind: p.kind.clone(),
                                deleted: false,
                                attributes: changed,
                            });
                        }
                    }
                }
            }
            let (action, attributes, depends_on) = match (wanted, &now) {
                (Some(d), now) => {
                    let (action, attrs) =
                        diff_resource(kind.as_ref(), d, now.as_ref(), prior, &salt);
                    (action, attrs, d.depends_on.clone())
                }
                (None, Some(_)) if desired.forget.iter().any(|f| f.contains(address)) => {
                    warnings.push(format!(
                        "{address} is removed from the lockfile, not destroyed (a removed block with destroy = false)"
                    ));
                    (Action::NoOp, Vec::new(), Vec::new())
                }
                (None, Some(_)) if kind.kept_on_removal() && !opts.delete_kept => {
                    warnings.push(format!(
                        "{address} is kept, not deleted: wallaroo forgets it"
                    ));
                    (Action::NoOp, Vec::new(), Vec::new())
                }
                (None, Some(l)) if !kind.read_only() => {
                    let hidden = sensitive_names(kind.as_ref(), None);
                    let before_source = prior
                        .map(|p| p.attributes.clone())
                        .unwrap_or_else(|| l.clone());
                    let attrs = before_source
                        .iter()
                        .map(|(k, v)| AttrChange {
                            path: k.clone(),
                            before: (!hidden.contains(k)).then(|| v.clone()),
                            after: None,
                            sensitive: hidden.contains(k),
                            forces_replacement: false,
                        })
                        .collect();
                    let deps = prior
                        .map(|p| p.depends_on.iter().filter_map(|d| d.parse().ok()).collect())
                        .unwrap_or_default();
                    (Action::Delete, attrs, deps)
                }
                // Gone from both the spec and the cluster: nothing to do but forget it.
                (None, _) => (Action::NoOp, Vec::new(), Vec::new()),
            };
            // Already there as the spec wants it, but not in the lockfile (installed by hand,
            // or by another tool): adopted, recorded by apply with nothing written. What
            // differs is an update as usual.
            let adopted = wanted.is_some()
                && prior.is_none()
                && now.is_some()
                && !kind.read_only()
                && opts.mode == PlanMode::Apply
                && matches!(action, Action::NoOp | Action::Update);
            if action != Action::Delete
                && let Some(p) = prior
            {
                used_before.insert(
                    address.clone(),
                    p.depends_on.iter().filter_map(|d| d.parse().ok()).collect(),
                );
            }
            items.push((address.clone(), action, depends_on.clone()));
            by_addr.insert(
                address.clone(),
                ResourceChange {
                    address: address.clone(),
                    kind: kind.name().to_string(),
                    action,
                    depends_on,
                    attributes,
                    adopted,
                },
            );
        }
        // Terraform's destroy edges: a resource leaving the spec is deleted only after each
        // resource that used it (as the lockfile records) has been changed, so that a change
        // that fails leaves what it still uses in place (the executor skips the delete).
        let deleted: BTreeSet<Address> = items
            .iter()
            .filter(|(_, action, _)| *action == Action::Delete)
            .map(|(a, _, _)| a.clone())
            .collect();
        for (address, action, deps) in &mut items {
            if *action == Action::NoOp || *action == Action::Delete {
                continue;
            }
            for used in used_before.get(address).into_iter().flatten() {
                if deleted.contains(used) && !deps.contains(used) {
                    deps.push(used.clone());
                    if let Some(c) = by_addr.get_mut(address) {
                        c.depends_on.push(used.clone());
                    }
                }
            }
        }
        let g = graph::build(&items)?;
        let changes: Vec<ResourceChange> = graph::ordered(&g)
            .into_iter()
            .map(|n| by_addr.remove(&g[n]).expect("each node once"))
            .collect();
        Ok(Plan {
            format_version: PLAN_FORMAT_VERSION,
            wallaroo_version: env!("CARGO_PKG_VERSION").to_string(),
            mode: opts.mode,
            lineage: state.map(|s| s.lineage.clone()),
            state_serial: state.map(|s| s.serial),
            live_fingerprint: live_fingerprint(&live, desired, &salt, &self.kinds),
            desired_fingerprint: desired_fingerprint(desired, &salt, &self.kinds, opts.mode),
            salt,
            targets: opts.targets.clone(),
            excludes: opts.excludes.clone(),
            warnings,
            drift,
            inputs: Default::default(),
            summary: Summary::of(&changes),
            changes,
        })
    }

    /// Rehearses the creates, updates and replacements of `plan` with the kinds that can
    /// (see [`ResourceKind::rehearse`]), a few at a time, and gathers their answers; a kind
    /// that fails to rehearse is listed as not rehearsed, with why. Deletes are not
    /// rehearsed (they are not refused for what they contain).
    pub async fn rehearse(
        &self,
        plan: &Plan,
        desired: &DesiredSet,
        state: Option<&Lockfile>,
    ) -> crate::Rehearsal {
        use futures_util::StreamExt;
        let todo: Vec<_> = plan
            .changes
            .iter()
            .filter(|c| matches!(c.action, Action::Create | Action::Update | Action::Replace))
            .filter_map(|c| {
                let wanted = desired.resources.get(&c.address)?;
                let kind = self.kinds.get(&wanted.kind)?.clone();
                let prior = state
                    .and_then(|s| s.resources.get(&c.address.to_string()))
                    .filter(|_| c.action == Action::Update)
                    .map(|p| p.attributes.clone());
                Some((c.address.clone(), kind, prior, wanted.attrs.clone()))
            })
            .collect();
        let answers: Vec<(
            Address,
            Result<Option<crate::Rehearsal>, crate::ResourceError>,
        )> = futures_util::stream::iter(todo)
            .map(|(address, kind, prior, attrs)| async move {
                let answer = kind.rehearse(&address, prior.as_ref(), &attrs).await;
                (address, answer)
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut out = crate::Rehearsal::default();
        for (address, answer) in answers {
            match answer {
                Ok(Some(r)) => out.merge(r),
                Ok(None) => {}
                Err(e) => out
                    .not_rehearsed
                    .push(format!("{address}: could not be rehearsed: {e}")),
            }
        }
        out.refused
            .sort_by(|a, b| (&a.address, &a.object).cmp(&(&b.address, &b.object)));
        out.not_rehearsed.sort();
        out
    }

    /// Refuses a saved plan when the lockfile, the live state or the spec moved since.
    pub async fn check_fresh(
        &self,
        plan: &Plan,
        desired: &DesiredSet,
        state: Option<&Lockfile>,
    ) -> Result<(), EngineError> {
        if plan.format_version != PLAN_FORMAT_VERSION {
            return Err(EngineError::PlanVersion {
                found: plan.format_version,
                expected: PLAN_FORMAT_VERSION,
            });
        }
        let stale = |reason: String| Err(EngineError::StalePlan { reason });
        let now_serial = state.map(|s| s.serial);
        if state.map(|s| &s.lineage) != plan.lineage.as_ref() {
            return stale("the lockfile belongs to another installation (lineage changed)".into());
        }
        if now_serial != plan.state_serial {
            return stale(format!(
                "the lockfile changed since the plan was made (serial {} then, {} now)",
                show(plan.state_serial),
                show(now_serial)
            ));
        }
        if desired_fingerprint(desired, &plan.salt, &self.kinds, plan.mode)
            != plan.desired_fingerprint
        {
            return stale(
                "the spec (or a variable) asks for something else than when the plan was made"
                    .into(),
            );
        }
        let opts = PlanOptions {
            mode: plan.mode,
            targets: plan.targets.clone(),
            excludes: plan.excludes.clone(),
            ..PlanOptions::default()
        };
        let scope = Self::scope(desired, state, &opts)?;
        let live = self
            .refresh(desired, state, &scope, opts.refresh_parallelism)
            .await?;
        if live_fingerprint(&live, desired, &plan.salt, &self.kinds) != plan.live_fingerprint {
            return stale("the live cluster or registry changed since the plan was made".into());
        }
        Ok(())
    }

    /// Runs the plan's steps in dependency order, concurrently, writing the lockfile after
    /// every finished step.
    pub async fn apply(
        &self,
        plan: &Plan,
        desired: &DesiredSet,
        store: &StateStore,
        opts: &ApplyOptions,
        reporter: &dyn ApplyReporter,
    ) -> Result<ApplyReport, EngineError> {
        let t0 = Instant::now();
        let lockfile = store.load()?.unwrap_or_else(|| Lockfile {
            salt: plan.salt.clone(),
            ..Lockfile::new()
        });
        if lockfile.salt != plan.salt {
            return Err(EngineError::StalePlan {
                reason: "the lockfile's salt differs from the plan's".into(),
            });
        }
        let items: Vec<(Address, Action, Vec<Address>)> = plan
            .changes
            .iter()
            .map(|c| (c.address.clone(), c.action, c.depends_on.clone()))
            .collect();
        let g = graph::build(&items)?;
        let mut kinds = BTreeMap::new();
        for c in &plan.changes {
            kinds.insert(c.address.clone(), self.kind(&c.address, &c.kind)?);
        }
        let changes: BTreeMap<&Address, &ResourceChange> =
            plan.changes.iter().map(|c| (&c.address, c)).collect();
        let results: Arc<std::sync::Mutex<BTreeMap<Address, Attrs>>> = Default::default();
        let started: std::sync::Mutex<BTreeMap<Address, Instant>> = Default::default();
        let counters: std::sync::Mutex<BTreeMap<Address, Arc<StepProgress>>> = Default::default();

        // Each step's prior attributes as the apply starts (a step changes only its own).
        let priors: BTreeMap<String, Attrs> = lockfile
            .resources
            .iter()
            .map(|(k, r)| (k.clone(), r.attributes.clone()))
            .collect();
        let run = |n| {
            let change = changes[&g[n]];
            let address = change.address.clone();
            let action = change.action;
            let kind = kinds[&address].clone();
            let want = desired.resources.get(&address).map(|d| d.attrs.clone());
            let prior = priors
                .get(&address.to_string())
                .cloned()
                .unwrap_or_default();
            let results = results.clone();
            if action != Action::NoOp {
                reporter.started(&address, action);
            }
            started
                .lock()
                .unwrap()
                .insert(address.clone(), Instant::now());
            let progress = StepProgress::new();
            counters
                .lock()
                .unwrap()
                .insert(address.clone(), progress.clone());
            let phase = wallaroo_profile::name(&format!("apply: {}", kind.name()));
            let step = crate::progress::scope(progress, async move {
                let applied = match action {
                    Action::NoOp => want,
                    Action::Create => Some(
                        kind.create(&address, &want.unwrap_or_default())
                            .await
                            .map_err(|e| e.message)?,
                    ),
                    Action::Update => Some(
                        kind.update(&address, &prior, &want.unwrap_or_default())
                            .await
                            .map_err(|e| e.message)?,
                    ),
                    Action::Replace => {
                        kind.delete(&address, &prior).await.map_err(|e| e.message)?;
                        Some(
                            kind.create(&address, &want.unwrap_or_default())
                                .await
                                .map_err(|e| e.message)?,
                        )
                    }
                    Action::Delete => {
                        kind.delete(&address, &prior).await.map_err(|e| e.message)?;
                        None
                    }
                    Action::Read => kind
                        .read(ReadRequest {
                            address: &address,
                            desired: want.as_ref(),
                            prior: None,
                            during_apply: true,
                        })
                        .await
                        .map_err(|e| e.message)?,
                };
                if let Some(attrs) = applied {
                    results.lock().unwrap().insert(address, attrs);
                }
                Ok(())
            });
            wallaroo_profile::within(phase, step)
        };

        let salt = lockfile.salt.clone();
        let writer = StateWriter::start(store.clone(), lockfile)?;
        let mut steps = BTreeMap::new();
        let mut transfers = BTreeMap::new();
        let finished = |n, result: &Result<(), String>| {
            let change = changes[&g[n]];
            let address = &change.address;
            let kind = &kinds[address];
            if let Some(p) = counters.lock().unwrap().remove(address) {
                for text in p.take_notes() {
                    reporter.note(address, &text);
                }
                let bytes = p.read();
                if !bytes.is_empty() {
                    reporter.progress(address, bytes);
                    transfers.insert(address.clone(), bytes);
                }
            }
            let elapsed = started
                .lock()
                .unwrap()
                .get(address)
                .map(|t| t.elapsed())
                .unwrap_or_default();
            match result {
                Ok(()) => {
                    let key = address.to_string();
                    let applied = results.lock().unwrap().remove(address);
                    let wanted =
                        desired.resources.contains_key(address) && plan.mode == PlanMode::Apply;
                    writer.update(|lockfile| match (change.action, applied) {
                        (Action::Delete, _) | (Action::NoOp, _) if !wanted => {
                            lockfile.resources.remove(&key).is_some()
                        }
                        (Action::Read, attrs) => {
                            let value = attrs
                                .and_then(|a| a.get("value").cloned())
                                .unwrap_or(Value::Null);
                            let sensitive = desired
                                .resources
                                .get(address)
                                .is_some_and(|d| d.sensitive.contains("value"));
                            let name = address
                                .segments()
                                .get(1)
                                .map(|s| s.name.clone())
                                .unwrap_or_else(|| key.clone());
                            let output = if sensitive {
                                OutputState {
                                    hash: Some(hash_sensitive(&salt, &key, "value", &value)),
                                    value: Value::Null,
                                    sensitive,
                                }
                            } else {
                                OutputState {
                                    value,
                                    sensitive,
                                    hash: None,
                                }
                            };
                            lockfile.outputs.insert(name, output.clone()) != Some(output)
                        }
                        (_, Some(attrs)) => {
                            let state = to_state(
                                kind.as_ref(),
                                desired.resources.get(address),
                                address,
                                &attrs,
                                &salt,
                            );
                            lockfile.resources.insert(key, state.clone()) != Some(state)
                        }
                        (_, None) => false,
                    });
                    if change.action != Action::NoOp {
                        reporter.finished(address, change.action, elapsed);
                    }
                    steps.insert(
                        address.clone(),
                        StepResult::Applied {
                            action: change.action,
                            elapsed,
                        },
                    );
                }
                Err(e) => {
                    reporter.failed(address, change.action, e);
                    steps.insert(
                        address.clone(),
                        StepResult::Failed {
                            action: change.action,
                            error: e.clone(),
                        },
                    );
                }
            }
        };
        let walking = walk(
            &g,
            opts.parallelism,
            opts.keep_going,
            opts.interrupt.clone(),
            run,
            finished,
        );
        // The byte counters of running steps, read on a timer on this task (the reporter is
        // borrowed, not shared).
        let ticking = async {
            let mut every = tokio::time::interval(PROGRESS_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                every.tick().await;
                let running: Vec<(Address, Transfer, Vec<String>)> = counters
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(a, p)| (a.clone(), p.read(), p.take_notes()))
                    .filter(|(_, t, notes)| !t.is_empty() || !notes.is_empty())
                    .collect();
                for (address, bytes, notes) in running {
                    for text in notes {
                        reporter.note(&address, &text);
                    }
                    if !bytes.is_empty() {
                        reporter.progress(&address, bytes);
                    }
                }
            }
        };
        let report = tokio::select! {
            report = walking => report,
            never = ticking => never,
        };
        writer.finish()?;
        for (n, outcome) in &report.outcomes {
            if *outcome == StepOutcome::Skipped {
                let c = changes[&g[*n]];
                // The failed steps this one needed, directly or not.
                let mut failed = Vec::new();
                let mut seen = BTreeSet::new();
                let mut todo: Vec<_> = g
                    .neighbors_directed(*n, petgraph::Direction::Incoming)
                    .collect();
                while let Some(m) = todo.pop() {
                    if !seen.insert(m) {
                        continue;
                    }
                    match report.outcomes.get(&m) {
                        Some(StepOutcome::Failed(_)) => failed.push(g[m].to_string()),
                        _ => todo.extend(g.neighbors_directed(m, petgraph::Direction::Incoming)),
                    }
                }
                failed.sort();
                let reason = if !failed.is_empty() {
                    format!("it depends on {}, which failed", failed.join(", "))
                } else if report.interrupted {
                    "the apply was interrupted".to_string()
                } else {
                    "a step failed and --keep-going was not given".to_string()
                };
                steps.insert(
                    c.address.clone(),
                    StepResult::Skipped {
                        action: c.action,
                        reason,
                    },
                );
            }
        }
        Ok(ApplyReport {
            steps,
            transfers,
            interrupted: report.interrupted,
            summary: plan.summary,
            wall: t0.elapsed(),
        })
    }
}

fn show(serial: Option<u64>) -> String {
    serial.map_or("none".into(), |s| s.to_string())
}

fn hide_sensitive(
    address: &Address,
    attrs: &Attrs,
    hidden: &BTreeSet<String>,
    salt: &str,
) -> Value {
    let addr = address.to_string();
    Value::Object(
        attrs
            .iter()
            .map(|(k, v)| {
                let v = if hidden.contains(k) {
                    Value::String(hash_sensitive(salt, &addr, k, v))
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect(),
    )
}

fn kind_of<'a>(
    kinds: &'a KindRegistry,
    desired: Option<&DesiredResource>,
) -> Option<&'a Arc<dyn ResourceKind>> {
    desired.and_then(|d| kinds.get(&d.kind))
}

fn live_fingerprint(
    live: &LiveSnapshot,
    desired: &DesiredSet,
    salt: &str,
    kinds: &KindRegistry,
) -> String {
    let mut all = serde_json::Map::new();
    for (address, attrs) in &live.resources {
        let d = desired.resources.get(address);
        let hidden = kind_of(kinds, d)
            .map(|k| sensitive_names(k.as_ref(), d))
            .unwrap_or_default();
        let v = match attrs {
            Some(a) => hide_sensitive(address, a, &hidden, salt),
            None => Value::Null,
        };
        all.insert(address.to_string(), v);
    }
    fingerprint(&Value::Object(all))
}

fn desired_fingerprint(
    desired: &DesiredSet,
    salt: &str,
    kinds: &KindRegistry,
    mode: PlanMode,
) -> String {
    if mode == PlanMode::Destroy {
        return fingerprint(&json!("destroy"));
    }
    let mut all = serde_json::Map::new();
    for (address, d) in &desired.resources {
        let hidden = kind_of(kinds, Some(d))
            .map(|k| sensitive_names(k.as_ref(), Some(d)))
            .unwrap_or_else(|| d.sensitive.clone());
        all.insert(
            address.to_string(),
            json!({
                "kind": d.kind,
                "attrs": hide_sensitive(address, &d.attrs, &hidden, salt),
                "depends_on": d.depends_on.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            }),
        );
    }
    fingerprint(&Value::Object(all))
}
