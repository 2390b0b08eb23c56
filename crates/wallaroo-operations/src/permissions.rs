//! The permissions apply needs, checked at plan time, and `wallaroo rbac`, which writes the
//! least Role and ClusterRole that grant them ([`wallaroo_kube::permissions`]).

use std::collections::BTreeSet;

use wallaroo_engine::DesiredSet;
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

    /// Asks the API server whether the identity may do all that apply needs; stops the plan
    /// naming every (verb, resource, namespace) it may not.
    pub(crate) async fn permissions(&self, desired: &DesiredSet) -> Result<(), OperationError> {
        let needs = wallaroo_kube::permissions::needs(&self.touches(desired));
        let cluster = self.cluster().await?;
        let lacking = wallaroo_kube::permissions::missing(cluster, &needs)
            .await
            .map_err(|e| {
                OperationError::message(format!(
                    "cannot ask the API server what this identity may do (SelfSubjectAccessReview): {e}"
                ))
            })?;
        if lacking.is_empty() {
            return Ok(());
        }
        Err(OperationError::message(format!(
            "this identity may not do everything apply needs, so apply would stop half way; nothing was changed. It may not:\n{}\n`wallaroo rbac` prints the Role and ClusterRole that grant exactly what this spec and chart need.",
            lacking
                .iter()
                .map(|n| format!("  - {}", n.describe()))
                .collect::<Vec<_>>()
                .join("\n")
        )))
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
}

/// The least Role and ClusterRole that let an identity apply this spec: the release is
/// rendered as a plan renders it (no permission check, so the current identity may lack
/// them). Returns the YAML and the needs.
pub async fn rbac(
    ws: &mut Workspace,
    request: &RbacRequest,
) -> Result<(String, BTreeSet<Need>), OperationError> {
    ws.check_permissions = false;
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
    let needs = wallaroo_kube::permissions::needs(&ws.touches(&prepared.desired));
    let yaml = wallaroo_kube::permissions::rbac_yaml(
        &needs,
        &request.name,
        &request.service_account.0,
        &request.service_account.1,
        request.cluster_wide,
    );
    Ok((yaml, needs))
}
