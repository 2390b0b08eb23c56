//! The permissions apply needs, checked at plan time, and `wallaroo rbac`, which writes the
//! least Role and ClusterRole that grant them ([`wallaroo_kube::permissions`]).

use std::collections::BTreeSet;

use wallaroo_engine::{Action, DesiredSet, Plan};
use wallaroo_kube::permissions::{Need, Touches};

use crate::error::OperationError;
use crate::prepare::Images;
use crate::workspace::Workspace;

impl Workspace {
    /// What apply will touch: the release's rendered kinds and wallaroo's own resources.
    fn touches(&self, desired: &DesiredSet) -> Touches {
        let spec = &self.spec;
        let mut t = Touches {
            namespace: spec.wallaroo.namespace.clone(),
            release: self
                .rendered_kinds
                .lock()
                .expect("kinds lock")
                .clone()
                .unwrap_or_default(),
            ..Touches::default()
        };
        for r in desired.resources.values() {
            let ns = || {
                r.attrs
                    .get("namespace")
                    .and_then(|v| v.as_str())
                    .unwrap_or(&spec.wallaroo.namespace)
                    .to_string()
            };
            match r.kind.as_str() {
                "helm_release" => t.helm = true,
                "secret" => {
                    t.secrets_in.insert(ns());
                }
                "node" | "nodepool_selector" => t.nodes = true,
                "daemonset" => t.daemonset_in = Some(ns()),
                "service_address" | "secret_value" => t.outputs = true,
                _ => {}
            }
        }
        if spec.state.backend == wallaroo_spec::model::StateBackend::Kubernetes {
            t.state_in = Some(
                spec.state
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
            );
        }
        t.pull_check = crate::preflight::pull_check_runs(spec, self.target.is_some());
        // The objects the chart renders are created only by an apply that installs it.
        if !t.helm {
            t.release = Default::default();
        }
        t
    }

    /// The permission check of what `plan` changes: nothing to ask for a plan that changes
    /// nothing in the cluster (a drift cron job's usual run, `--target image`), else
    /// [`Workspace::permissions`] for the resources it creates or changes.
    pub(crate) async fn permissions_for(
        &self,
        desired: &DesiredSet,
        plan: &Plan,
        purpose: Purpose,
    ) -> Result<Option<Checked>, OperationError> {
        let changing: BTreeSet<&wallaroo_engine::Address> = plan
            .changes
            .iter()
            .filter(|c| !matches!(c.action, Action::NoOp | Action::Read) || c.adopted)
            .map(|c| &c.address)
            .collect();
        let scoped = DesiredSet {
            resources: desired
                .resources
                .iter()
                .filter(|(a, r)| changing.contains(a) && r.kind != "image")
                .map(|(a, r)| (a.clone(), r.clone()))
                .collect(),
            ..DesiredSet::default()
        };
        if scoped.resources.is_empty() {
            return Ok(None);
        }
        wallaroo_profile::within("permissions", self.permissions(&scoped, purpose))
            .await
            .map(Some)
    }

    /// Asks the API server whether the identity that applies may do all that apply needs.
    ///
    /// For an apply, that is this identity, and anything it lacks stops it. For a plan, it is
    /// the spec's `apply_identity` when it names one (asked with SubjectAccessReview; a plan
    /// run as it asks SelfSubjectAccessReview), and anything that one lacks stops the plan;
    /// without one it is this identity, and one that may only read (a drift cron job, a pull
    /// request's CI) gets a warning saying what apply would need, not a failure.
    pub(crate) async fn permissions(
        &self,
        desired: &DesiredSet,
        purpose: Purpose,
    ) -> Result<Checked, OperationError> {
        use wallaroo_kube::permissions::{self as perms, Reviewed};
        let touches = self.touches(desired);
        let needs = perms::needs(&touches);
        let cluster = self.cluster().await?;
        let asked = |e: &dyn std::fmt::Display, how: &str| {
            OperationError::message(format!(
                "cannot ask the API server what the identity that applies may do ({how}): {e}"
            ))
        };
        let named = self
            .spec
            .apply_identity
            .as_ref()
            .filter(|_| purpose == Purpose::Plan);
        let (me, lacking) = match named {
            None => tokio::join!(perms::whoami(cluster), perms::missing(cluster, &needs)),
            Some(id) => {
                let (user, groups) = id.subject();
                let me = perms::whoami(cluster).await;
                let who = match &me {
                    Ok(me) if *me == user => Reviewed::Own,
                    _ => Reviewed::Subject {
                        user: &user,
                        groups: &groups,
                    },
                };
                match perms::missing_for(cluster, &needs, who).await {
                    Ok(lacking) => (me, Ok(lacking)),
                    // An identity that may not ask about another one plans on, and says so.
                    Err(e) if perms::forbidden(&e) => {
                        let warning = format!(
                            "whether {} may apply this plan was not checked: this identity may not create subjectaccessreviews.authorization.k8s.io (grant it with `wallaroo rbac --read-only`, which adds it when the spec names apply_identity)",
                            id.describe()
                        );
                        return Ok(Checked {
                            summary: serde_json::json!({
                                "identity": id.describe(),
                                "checked": false,
                                "needs": needs.len(),
                            }),
                            warning: Some(warning),
                        });
                    }
                    Err(e) => return Err(asked(&e, "SubjectAccessReview")),
                }
            }
        };
        let lacking = lacking.map_err(|e| asked(&e, "SelfSubjectAccessReview"))?;
        let me = me.ok().filter(|m| !m.is_empty());
        let identity = match (named, &me) {
            (Some(id), _) => id.describe(),
            (None, Some(me)) => format!("this identity ({me})"),
            (None, None) => "this identity".to_string(),
        };
        let listed = || {
            lacking
                .iter()
                .map(|n| format!("  - {}", n.describe()))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let summary = serde_json::json!({
            "identity": identity,
            "checked": true,
            "needs": needs.len(),
            "lacking": lacking.iter().map(|n| n.describe()).collect::<Vec<_>>(),
        });
        if lacking.is_empty() {
            return Ok(Checked {
                summary,
                warning: None,
            });
        }
        // Reading and the run lock are all a plan itself does: an identity that holds none of
        // the rest only reads.
        let reads = perms::read_needs(&touches);
        let read_only = needs
            .iter()
            .filter(|n| perms::is_write(&n.verb) && !reads.contains(n))
            .all(|n| lacking.contains(n));
        if purpose == Purpose::Plan && named.is_none() && read_only {
            return Ok(Checked {
                summary,
                warning: Some(format!(
                    "{identity} may only read, so this plan is complete but an apply by it would be refused: it lacks {} of the {} permissions apply needs. Name the identity that applies in `apply_identity {{ }}` and plans check its rights instead; `wallaroo rbac` prints them.",
                    lacking.len(),
                    needs.len()
                )),
            });
        }
        let subject = match named {
            Some(id) => format!("{}, which the spec names to apply,", id.describe()),
            None => identity.clone(),
        };
        Err(OperationError::message(format!(
            "{subject} may not do everything apply needs, so apply would stop half way; nothing was changed. It may not:\n{}\n`wallaroo rbac` prints the Role and ClusterRole that grant exactly what this spec and chart need.",
            listed()
        )))
    }
}

/// Who asks, which decides what the permission check does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A plan: it may be run by an identity that only reads (a drift cron job, a pull
    /// request's CI), so such an identity's lack of write rights is a warning; with
    /// `apply_identity { }` the rights checked are that identity's.
    Plan,
    /// An apply or destroy, which writes as this identity: anything it lacks stops it.
    Apply,
}

/// What the permission check found for a plan: its line in the plan's `permissions` input,
/// and a warning when it could not check or the identity only reads.
#[derive(Debug, Clone)]
pub struct Checked {
    pub summary: serde_json::Value,
    pub warning: Option<String>,
}

/// What `wallaroo rbac` writes for.
#[derive(Debug, Clone)]
pub struct RbacRequest {
    /// The Roles' (and bindings') name.
    pub name: String,
    /// The ServiceAccount they are bound to: namespace and name.
    pub service_account: (String, String),
    /// Everything in one ClusterRole (an identity that installs into many namespaces).
    pub cluster_wide: bool,
    /// What a plan that only reads needs (a drift cron job, a pull request's CI), not apply.
    pub read_only: bool,
}

/// The least Role and ClusterRole that let an identity apply this spec: the release is
/// rendered as a plan renders it (no permission check, so the current identity may lack
/// them). Returns the YAML and the needs.
pub async fn rbac(
    ws: &Workspace,
    request: &RbacRequest,
) -> Result<(String, BTreeSet<Need>), OperationError> {
    let state = ws.store.load()?;
    let prepared = ws
        .prepare(
            state.as_ref(),
            Images::Resolve {
                refresh_pins: false,
            },
            &wallaroo_engine::PlanOptions::default(),
        )
        .await?;
    let touches = ws.touches(&prepared.desired);
    if !request.read_only {
        let needs = wallaroo_kube::permissions::needs(&touches);
        let yaml = wallaroo_kube::permissions::rbac_yaml(
            &needs,
            &request.name,
            &request.service_account.0,
            &request.service_account.1,
            request.cluster_wide,
        );
        return Ok((yaml, needs));
    }
    let mut needs = wallaroo_kube::permissions::read_needs(&touches);
    let mut heading = String::from(
        "# What a plan that only reads needs (`wallaroo rbac --read-only`): a drift cron job's or a\n\
         # pull request's CI. It reads what apply would change and the release's objects,\n\
         # and takes the run lock; checks that would write (the pull check) are skipped with a\n\
         # warning.\n",
    );
    if let Some(id) = &ws.spec.apply_identity {
        // The plan asks whether the identity that applies may apply it.
        needs.insert(Need {
            group: "authorization.k8s.io".into(),
            resource: "subjectaccessreviews".into(),
            namespace: None,
            verb: "create".into(),
        });
        heading.push_str(&format!(
            "# With it, the plan asks the API server whether {} (apply_identity) may apply it.\n",
            id.describe()
        ));
    }
    let yaml = wallaroo_kube::permissions::rbac_yaml_with(
        &heading,
        &needs,
        &request.name,
        &request.service_account.0,
        &request.service_account.1,
        request.cluster_wide,
    );
    Ok((yaml, needs))
}
