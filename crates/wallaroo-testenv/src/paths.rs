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

/// The running environment: state file, PKI, data, logs. `$WALLAROO_TESTENV_RUN`; else,
/// for test binaries and `cargo run`, `<cargo target dir>/wallaroo-testenv` (so component
/// logs stay under the target dir, and tests, the sandbox and `down` share one
/// environment); else `<cache>/run`.
pub fn run_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WALLAROO_TESTENV_RUN") {
        return PathBuf::from(d);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|a| a.join("CACHEDIR.TAG").is_file())
                .map(|t| t.join("wallaroo-testenv"))
        })
        .unwrap_or_else(|| cache_dir().join("run"))
}
