//! `wallaroo rbac`: the least Role and ClusterRole for applying this spec and chart.

use std::process::ExitCode;

use wallaroo_operations::permissions::RbacRequest;

use crate::args::{Global, RbacArgs};
use crate::report::Failure;

pub async fn run(global: &Global, args: &RbacArgs) -> Result<ExitCode, Failure> {
    let (ns, name) = args.service_account.split_once('/').ok_or_else(|| {
        Failure::message(format!(
            "--service-account `{}` is not NAMESPACE/NAME",
            args.service_account
        ))
    })?;
    let ws = wallaroo_operations::Workspace::open(&super::workspace(global))?;
    let request = RbacRequest {
        name: args.name.clone(),
        service_account: (ns.to_string(), name.to_string()),
        cluster_wide: args.cluster_wide,
        read_only: args.read_only,
    };
    let (yaml, _) = wallaroo_operations::permissions::rbac(&ws, &request).await?;
    print!("{yaml}");
    Ok(ExitCode::SUCCESS)
}
