//! The API server's rehearsal of a plan: every write it would make in the cluster, sent as a
//! dry run before anything is changed. Wallaroo's own writes (namespace, Secrets, nodes'
//! labels and taints, the device plugin) are rehearsed by their kinds
//! ([`wallaroo_engine::Engine::rehearse`]); the release's objects from the render the plan
//! made of it ([`wallaroo_kube::rehearse::release`]). A plan with a refusal exits 1 and
//! apply refuses before it writes anything.

use std::collections::BTreeMap;

use serde_json::Value;
use wallaroo_engine::{Action, DesiredSet, Plan, Rehearsal};
use wallaroo_kube::rehearse::Replacement;
use wallaroo_state::Lockfile;

use crate::error::OperationError;
use crate::workspace::Workspace;

/// What a rehearsal found, and the release's objects apply replaces.
#[derive(Debug, Clone, Default)]
pub struct Rehearsed {
    pub found: Rehearsal,
    pub replacing: Vec<Replacement>,
    /// The chart's CRDs (its `crds/`), which apply applies before the release.
    pub crds: Vec<Value>,
    /// Why nothing was rehearsed (an identity that may only read).
    pub skipped: Option<String>,
}

impl Rehearsed {
    /// The plan's `rehearsal` input.
    pub fn summary(&self) -> Value {
        let mut v = serde_json::to_value(&self.found).expect("rehearsals serialize");
        if !self.replacing.is_empty() {
            v["replacing"] = Value::from(
                self.replacing
                    .iter()
                    .map(|r| format!("{}: {}", r.object, r.why))
                    .collect::<Vec<_>>(),
            );
        }
        if let Some(s) = &self.skipped {
            v["skipped"] = Value::from(s.clone());
        }
        v
    }

    /// Puts the rehearsal in `plan`: its `rehearsal` input, and warnings for what the
    /// server warned of, what could not be rehearsed, and a rehearsal that did not run.
    pub fn annotate(&self, plan: &mut Plan) {
        plan.inputs.insert("rehearsal".into(), self.summary());
        if let Some(why) = &self.skipped {
            plan.warnings.push(format!(
                "the API server did not rehearse this plan's writes: {why}"
            ));
        }
        plan.warnings.extend(
            self.found
                .warnings
                .iter()
                .map(|w| format!("the API server warns: {w}")),
        );
        plan.warnings.extend(
            self.found
                .not_rehearsed
                .iter()
                .map(|w| format!("not rehearsed: {w}")),
        );
    }

    /// The error that stops a plan or apply the API server would refuse.
    pub fn refusal_error(&self) -> Option<OperationError> {
        if self.found.refused.is_empty() {
            return None;
        }
        Some(OperationError::Rehearsal(self.found.refused.clone()))
    }
}

/// Whether `plan` writes anything to the cluster that a rehearsal would send.
pub(crate) fn writes_to_cluster(plan: &Plan) -> bool {
    plan.changes.iter().any(|c| {
        matches!(c.action, Action::Create | Action::Update | Action::Replace) && to_cluster(&c.kind)
    })
}

/// The kinds whose changes go to the API server.
fn to_cluster(kind: &str) -> bool {
    !matches!(
        kind,
        "image" | "static_value" | "keycloak_user" | "service_address" | "secret_value"
    )
}

impl Workspace {
    /// Rehearses the writes of `plan` with the API server (see the module's documentation).
    /// `None` when the plan writes nothing to the cluster: a no-op plan sends nothing.
    pub(crate) async fn rehearse(
        &self,
        engine: &wallaroo_engine::Engine,
        desired: &DesiredSet,
        plan: &Plan,
        state: Option<&Lockfile>,
    ) -> Result<Option<Rehearsed>, OperationError> {
        if !writes_to_cluster(plan) {
            return Ok(None);
        }
        let changing: Vec<&wallaroo_engine::ResourceChange> = plan
            .changes
            .iter()
            .filter(|c| matches!(c.action, Action::Create | Action::Update | Action::Replace))
            .filter(|c| to_cluster(&c.kind))
            .collect();
        let ns = self.spec.wallaroo.namespace.clone();
        let first_install = changing.iter().any(|c| {
            c.kind == "namespace"
                && c.action == Action::Create
                && desired
                    .resources
                    .get(&c.address)
                    .and_then(|r| r.attrs.get("name"))
                    .and_then(Value::as_str)
                    == Some(ns.as_str())
        });
        let cluster = self.cluster().await?;
        let asked = |e: &dyn std::fmt::Display| {
            OperationError::message(format!("rehearsing the plan with the API server: {e}"))
        };
        // The API server takes no write into a namespace that does not exist: a first
        // install is rehearsed in a short-lived one, deleted after.
        let scratch = if first_install {
            Some(
                wallaroo_kube::rehearse::scratch_namespace(cluster, &ns, &BTreeMap::new())
                    .await
                    .map_err(|e| asked(&e))?,
            )
        } else {
            None
        };
        let into = scratch.clone().unwrap_or_else(|| ns.clone());
        let result = async {
            // Wallaroo's own writes into the release's namespace go to the stand-in too.
            let mut sent = desired.clone();
            if scratch.is_some() {
                for r in sent
                    .resources
                    .values_mut()
                    .filter(|r| r.kind != "namespace")
                {
                    if r.attrs.get("namespace").and_then(Value::as_str) == Some(ns.as_str()) {
                        r.attrs
                            .insert("namespace".into(), Value::String(into.clone()));
                    }
                }
            }
            let mut out = Rehearsed {
                found: wallaroo_profile::within(
                    "rehearsal: wallaroo's writes",
                    engine.rehearse(plan, &sent, state),
                )
                .await,
                ..Rehearsed::default()
            };
            if let Some(release) = changing.iter().find(|c| c.kind == "helm_release") {
                let r = wallaroo_profile::within(
                    "rehearsal: the release",
                    self.rehearse_release(desired, &release.address.to_string(), &into),
                )
                .await?;
                out.found.merge(r.found);
                out.replacing = r.replacing;
                out.crds = r.crds;
            }
            Ok::<_, OperationError>(out)
        }
        .await;
        if let Some(s) = &scratch {
            let _ = wallaroo_kube::rehearse::drop_namespace(cluster, s).await;
        }
        let mut out = result?;
        if let Some(s) = &scratch {
            // Said of the namespace the objects will live in, not of the stand-in.
            let back = |t: &mut String| *t = t.replace(s.as_str(), &ns);
            for r in &mut out.found.refused {
                back(&mut r.object);
                back(&mut r.message);
            }
            out.found.warnings.iter_mut().for_each(back);
            out.found.not_rehearsed.iter_mut().for_each(back);
            out.found.notes.push(format!(
                "namespace {ns} does not exist yet: what goes into it was rehearsed in a short-lived namespace, deleted after"
            ));
        }
        out.found
            .refused
            .sort_by(|a, b| (&a.address, &a.object).cmp(&(&b.address, &b.object)));
        Ok(Some(out))
    }

    async fn rehearse_release(
        &self,
        desired: &DesiredSet,
        address: &str,
        into: &str,
    ) -> Result<wallaroo_kube::rehearse::ReleaseRehearsal, OperationError> {
        let Some((chart, kube_version)) = self.chart.lock().expect("chart cache").clone() else {
            return Ok(Default::default());
        };
        let Some(release) = desired
            .resources
            .values()
            .find(|r| r.kind == "helm_release")
        else {
            return Ok(Default::default());
        };
        let redact: Vec<String> = wallaroo_model::sensitive::secret_strings(&self.spec)
            .into_iter()
            .collect();
        let ns = self.spec.wallaroo.namespace.clone();
        let kept = self
            .rendered_manifest
            .lock()
            .expect("manifest lock")
            .clone();
        let manifests = match kept {
            Some(m) => m,
            None => {
                let render = self.release_render(
                    kube_version,
                    crate::airgap::with_secret(
                        release.attrs.get("values").unwrap_or(&Value::Null),
                        release.attrs.get("secret_values"),
                    ),
                );
                wallaroo_oci::release::render_manifests(&render, &chart).await?
            }
        };
        let crds = wallaroo_oci::release::chart_crds(&chart)?;
        let cluster = self.cluster().await?;
        let release_name = if self.spec.wallaroo.release_name.is_empty() {
            "wallaroo".to_string()
        } else {
            self.spec.wallaroo.release_name.clone()
        };
        let writes = wallaroo_kube::rehearse::ReleaseWrites {
            address,
            release: &release_name,
            namespace: &ns,
            into,
            manifests: &manifests,
            crds: &crds,
            replace_immutable: self.spec.helm.replace_immutable,
            redact: &redact,
        };
        wallaroo_kube::rehearse::release(cluster, &writes)
            .await
            .map_err(|e| {
                OperationError::message(format!("rehearsing the release with the API server: {e}"))
            })
    }
}
