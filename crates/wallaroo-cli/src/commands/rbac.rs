//! `wallaroo rbac`: the least Role and ClusterRole for applying this spec and chart.

use std::process::ExitCode;

use wallaroo_operations::permissions::{ChartRbac, Operation, RbacRequest};

use crate::args::{ChartRbacArg, Global, RbacArgs, RbacFor};
use crate::report::Failure;

pub async fn run(global: &Global, args: &RbacArgs) -> Result<ExitCode, Failure> {
    let (ns, name) = args.service_account.split_once('/').ok_or_else(|| {
        Failure::message(format!(
            "--service-account `{}` is not NAMESPACE/NAME",
            args.service_account
        ))
    })?;
    let ws = wallaroo_operations::Workspace::open(&super::workspace(global))?;
    let operations = if args.read_only {
        [Operation::Plan].into()
    } else {
        args.operations
            .iter()
            .flat_map(|o| match o {
                RbacFor::Plan => vec![Operation::Plan],
                RbacFor::Apply => vec![Operation::Apply],
                RbacFor::Destroy => vec![Operation::Destroy],
                RbacFor::SupportBundle => vec![Operation::Support],
                RbacFor::All => Operation::ALL.to_vec(),
            })
            .collect()
    };
    let request = RbacRequest {
        name: args.name.clone(),
        service_account: (ns.to_string(), name.to_string()),
        cluster_wide: args.cluster_wide,
        operations,
        chart_rbac: match args.chart_rbac {
            ChartRbacArg::Rules => ChartRbac::Rules,
            ChartRbacArg::Escalate => ChartRbac::Escalate,
        },
    };
    let (yaml, _) = wallaroo_operations::permissions::rbac(&ws, &request).await?;
    print!("{yaml}");
    Ok(ExitCode::SUCCESS)
}
