//! The permissions apply needs, checked at plan time, and `wallaroo rbac`, which writes the
//! least Role and ClusterRole that grant them ([`wallaroo_kube::permissions`]).

use std::collections::BTreeSet;

use wallaroo_engine::{Action, DesiredSet, Plan};
pub use wallaroo_kube::permissions::ChartRbac;
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
        if t.helm {
            let rbac = self.rendered_rbac.lock().expect("rbac lock").clone();
            t.grants =
                wallaroo_kube::permissions::grants_of(&rbac.unwrap_or_default(), &t.namespace);
        } else {
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
        let purpose = match (purpose, plan.mode) {
            (Purpose::Apply, wallaroo_engine::PlanMode::Destroy) => Purpose::Destroy,
            (p, _) => p,
        };
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
        // What the chart's own Roles and bindings take: their rules, or escalate and bind.
        let (needs, grants) = match purpose {
            Purpose::Destroy => (perms::destroy_needs(&touches), Vec::new()),
            _ => (perms::needs(&touches), touches.grants.clone()),
        };
        let asked_needs: BTreeSet<Need> = needs
            .iter()
            .chain(grants.iter().flat_map(|g| g.rules.iter().chain(&g.instead)))
            .cloned()
            .collect();
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
            None => tokio::join!(
                perms::whoami(cluster),
                perms::missing(cluster, &asked_needs)
            ),
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
                match perms::missing_for(cluster, &asked_needs, who).await {
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
                            no_rehearsal: Some(not_as(id)),
                        });
                    }
                    Err(e) => return Err(asked(&e, "SubjectAccessReview")),
                }
            }
        };
        let answered = lacking.map_err(|e| asked(&e, "SelfSubjectAccessReview"))?;
        // The needs of wallaroo's own steps it lacks, then the chart's RBAC rules it lacks
        // where it holds neither them nor escalate/bind.
        let mut lacking: Vec<Need> = answered
            .iter()
            .filter(|n| needs.contains(n))
            .cloned()
            .collect();
        let mut granting: std::collections::BTreeMap<Need, Vec<&str>> = Default::default();
        for (need, object) in perms::lacking_of(&grants, &answered) {
            granting.entry(need).or_default().push(object);
        }
        lacking.extend(granting.keys().filter(|n| !needs.contains(n)).cloned());
        lacking.sort();
        lacking.dedup();
        let me = me.ok().filter(|m| !m.is_empty());
        // A plan run as someone other than the identity that applies cannot rehearse as it.
        let other = named
            .filter(|id| me.as_deref() != Some(id.subject().0.as_str()))
            .map(not_as);
        let identity = match (named, &me) {
            (Some(id), _) => id.describe(),
            (None, Some(me)) => format!("this identity ({me})"),
            (None, None) => "this identity".to_string(),
        };
        let listed = || {
            lacking
                .iter()
                .map(|n| match granting.get(n) {
                    Some(objects) => format!(
                        "  - {} (the chart's {} grants it, and Kubernetes lets an identity grant only what it holds)",
                        n.describe(),
                        objects.join(", ")
                    ),
                    None => format!("  - {}", n.describe()),
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let summary = serde_json::json!({
            "identity": identity,
            "checked": true,
            "needs": asked_needs.len(),
            "lacking": lacking.iter().map(|n| n.describe()).collect::<Vec<_>>(),
        });
        if lacking.is_empty() {
            return Ok(Checked {
                summary,
                warning: None,
                no_rehearsal: other,
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
                no_rehearsal: Some(
                    "this identity may only read, and a rehearsal sends each write; apply rehearses before it writes anything".into(),
                ),
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
            "{subject} may not do everything {} needs, so it would stop half way; nothing was changed. It may not:\n{}\n`wallaroo rbac --for {}` prints the Role and ClusterRole that grant exactly what this spec and chart need.",
            purpose.operation(),
            listed(),
            purpose.operation()
        )))
    }
}

/// Why a plan run as another identity than `id` does not rehearse.
fn not_as(id: &wallaroo_spec::model::ApplyIdentity) -> String {
    format!(
        "the plan does not run as {} (apply_identity), whose writes a rehearsal would send; apply rehearses as it before it writes anything",
        id.describe()
    )
}

/// Who asks, which decides what the permission check does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A plan: it may be run by an identity that only reads (a drift cron job, a pull
    /// request's CI), so such an identity's lack of write rights is a warning; with
    /// `apply_identity { }` the rights checked are that identity's.
    Plan,
    /// An apply, which writes as this identity: anything it lacks stops it.
    Apply,
    /// A destroy, as this identity: what it reads and deletes.
    Destroy,
}

impl Purpose {
    /// The operation whose needs are checked: what `wallaroo rbac --for` names.
    fn operation(self) -> &'static str {
        match self {
            Purpose::Destroy => "destroy",
            Purpose::Plan | Purpose::Apply => "apply",
        }
    }
}

/// What the permission check found for a plan: its line in the plan's `permissions` input,
/// and a warning when it could not check or the identity only reads.
#[derive(Debug, Clone)]
pub struct Checked {
    pub summary: serde_json::Value,
    pub warning: Option<String>,
    /// Why this identity cannot rehearse apply's writes with the API server (it may only
    /// read, or it is not the identity that applies), when it cannot.
    pub no_rehearsal: Option<String>,
}

/// An operation `wallaroo rbac --for` grants what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// A plan that only reads (a drift cron job, a pull request's CI).
    Plan,
    /// A plan and apply as the identity that applies (the pull check included).
    Apply,
    /// `wallaroo destroy`.
    Destroy,
    /// `wallaroo support-bundle`.
    Support,
}

impl Operation {
    pub const ALL: [Operation; 4] = [
        Operation::Plan,
        Operation::Apply,
        Operation::Destroy,
        Operation::Support,
    ];

    fn name(self) -> &'static str {
        match self {
            Operation::Plan => "plan",
            Operation::Apply => "apply",
            Operation::Destroy => "destroy",
            Operation::Support => "support-bundle",
        }
    }
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
    /// The operations granted (at least one).
    pub operations: BTreeSet<Operation>,
    /// How the chart's own Roles and bindings may be created: their rules, or escalate and
    /// bind.
    pub chart_rbac: wallaroo_kube::permissions::ChartRbac,
}

/// The least Role and ClusterRole that let an identity run `request.operations` on this spec:
/// the release is rendered as a plan renders it, with no check that needs the cluster ready
/// for the install (no preflight, no permission check; an air-gap problem is a warning here,
/// since the plan reports it). Returns the YAML and the needs.
pub async fn rbac(
    ws: &Workspace,
    request: &RbacRequest,
) -> Result<(String, BTreeSet<Need>), OperationError> {
    use wallaroo_kube::permissions::{self as perms, ChartRbac};
    let state = ws.store.load()?;
    let prepared = ws
        .prepare_with(
            state.as_ref(),
            Images::Resolve {
                refresh_pins: false,
            },
            &wallaroo_engine::PlanOptions::default(),
            crate::prepare::Checks::RenderOnly,
        )
        .await?;
    let touches = ws.touches(&prepared.desired);
    if touches.helm && ws.rendered_kinds.lock().expect("kinds lock").is_none() {
        return Err(OperationError::message(
            "the release could not be rendered, so the permissions its objects need are unknown"
                .to_string(),
        ));
    }
    let mut needs = BTreeSet::new();
    for op in &request.operations {
        match op {
            Operation::Plan => {
                needs.extend(perms::read_needs(&touches));
                // The plan asks whether the identity that applies may apply it.
                if ws.spec.apply_identity.is_some() {
                    needs.insert(Need::new(
                        "authorization.k8s.io",
                        "subjectaccessreviews",
                        None,
                        "create",
                    ));
                }
            }
            Operation::Apply => {
                needs.extend(perms::needs(&touches));
                for g in &touches.grants {
                    needs.extend(g.needs(request.chart_rbac).iter().cloned());
                }
            }
            Operation::Destroy => needs.extend(perms::destroy_needs(&touches)),
            Operation::Support => needs.extend(perms::support_needs(&touches)),
        }
    }
    let needs = perms::least(needs);
    let names: Vec<&str> = request.operations.iter().map(|o| o.name()).collect();
    let mut heading = format!(
        "# The permissions wallaroo needs for: {} (`wallaroo rbac --for ...`), for this spec and chart.\n",
        names.join(", ")
    );
    if !request.cluster_wide {
        heading.push_str(
            "# Apply as a cluster admin with `kubectl apply -f` before the first install: each namespace\n\
             # that holds a Role comes first, so that the Role can be made before wallaroo would create\n\
             # it; wallaroo adopts a namespace it finds.\n",
        );
    }
    if request.operations == BTreeSet::from([Operation::Plan]) {
        heading.push_str(
            "# A plan that only reads (a drift cron job's or a pull request's CI) reads what apply\n\
             # would change and the release's objects, and takes the run lock; checks that would\n\
             # write (the pull check) are skipped with a warning.\n",
        );
    }
    if let Some(id) = &ws.spec.apply_identity
        && request.operations.contains(&Operation::Plan)
    {
        heading.push_str(&format!(
            "# With `create subjectaccessreviews`, a plan asks whether {} (apply_identity) may apply it.\n",
            id.describe()
        ));
    }
    if request.operations.contains(&Operation::Apply) && !touches.grants.is_empty() {
        heading.push_str(match request.chart_rbac {
            ChartRbac::Rules => "# The chart carries Roles or bindings of its own: Kubernetes lets an identity grant only\n\
                 # what it holds, so their rules are here too (`--chart-rbac escalate` grants the\n\
                 # escalate and bind verbs instead).\n",
            ChartRbac::Escalate => "# The chart carries Roles or bindings of its own: `escalate` and `bind` let this identity\n\
                 # create them without holding their rules (`--chart-rbac rules` grants the rules).\n",
        });
    }
    let yaml = perms::rbac_yaml(
        &heading,
        &needs,
        &perms::Grantee {
            name: &request.name,
            service_account: (&request.service_account.0, &request.service_account.1),
            cluster_wide: request.cluster_wide,
        },
    );
    Ok((yaml, needs))
}
