//! Where the environment keeps its cache (built binaries, by version) and its run state.

use std::path::PathBuf;

/// `$WALLAROO_TESTENV_CACHE`, or `${XDG_CACHE_HOME:-~/.cache}/wallaroo-testenv`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WALLAROO_TESTENV_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".cache")
        });
    base.join("wallaroo-testenv")
}

/// Built binaries: `bin/<name>-<version>`.
pub fn bin(name: &str, version: &str) -> PathBuf {
    cache_dir().join("bin").join(format!("{name}-{version}"))
}

/// The running environment: state file, PKI, data, logs.
pub fn run_dir() -> PathBuf {
    std::env::var_os("WALLAROO_TESTENV_RUN")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("run"))
}
