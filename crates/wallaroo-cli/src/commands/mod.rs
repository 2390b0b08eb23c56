//! One module per subcommand: each turns its arguments into an operation's options, calls
//! `wallaroo-operations`, and hands the result to a view.

pub mod apply;
pub mod bundle;
pub mod completions;
pub mod fmt;
pub mod graph;
pub mod images;
pub mod init;
pub mod output;
pub mod plan;
pub mod preflight;
pub mod rbac;
pub mod state;
pub mod support;
pub mod validate;

use std::time::Duration;

use wallaroo_engine::Address;
use wallaroo_operations::WorkspaceOptions;

use crate::args::Global;
use crate::report::Failure;

/// The workspace the global options name.
pub fn workspace(global: &Global) -> WorkspaceOptions {
    WorkspaceOptions {
        config: global.config.clone(),
        vars: global.vars.clone(),
        var_files: global.var_files.clone(),
        exclude_referrers: global.exclude_referrers,
        delete_data: false,
        helm: None,
        allow_external: global.allow_external_image.clone(),
    }
}

/// Parses `--target` addresses.
pub fn targets(raw: &[String]) -> Result<Vec<Address>, Failure> {
    raw.iter()
        .map(|t| {
            t.parse()
                .map_err(|e: wallaroo_engine::AddressError| Failure::message(e.to_string()))
        })
        .collect()
}

/// `30s`, `5m`, `1h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, Failure> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| Failure::message(format!("`{text}` is not a duration; write e.g. 30s, 5m")))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "ms" => return Ok(Duration::from_millis(n)),
        _ => {
            return Err(Failure::message(format!(
                "`{text}` is not a duration; write e.g. 30s, 5m"
            )));
        }
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::parse_duration("30s").unwrap().as_secs(), 30);
        assert_eq!(super::parse_duration("5m").unwrap().as_secs(), 300);
        assert_eq!(super::parse_duration("0").unwrap().as_secs(), 0);
        assert!(super::parse_duration("soon").is_err());
    }
}
