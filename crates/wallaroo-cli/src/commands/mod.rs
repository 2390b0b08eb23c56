//! One module per subcommand.

pub mod completions;
pub mod fmt;
pub mod validate;

use wallaroo_spec::{Spec, VarInputs};

use crate::args::Global;
use crate::report::Failure;

/// Loads the spec named by the global options, with variables from every source.
pub fn load_spec(global: &Global) -> Result<Spec, Failure> {
    let mut inputs = VarInputs {
        env: VarInputs::env_from_process(),
        files: global.var_files.clone(),
        ..Default::default()
    };
    for v in &global.vars {
        inputs.cli.push(VarInputs::parse_cli(v).map_err(Failure::Message)?);
    }
    Ok(wallaroo_spec::load(&global.config, &inputs)?)
}
