//! The wallaroo spec language: HCL in, a typed and validated [`Spec`] out.
//!
//! Parsing keeps every span, so each problem becomes a [`SpecDiagnostic`] naming the file,
//! line and column with a one-line help. This crate reads files and environment variables
//! only; it never talks to a cluster or a registry and never prints.

mod checks;
mod decode;
mod diag;
mod eval;
pub mod format;
pub mod model;
pub mod schema;
mod secret;
pub mod starter;
mod vars;

use std::path::{Path, PathBuf};

pub use decode::pointer_escape;
pub use diag::{SourceFile, SpecDiagnostic, SpecErrors};
pub use model::Spec;
pub use secret::{REDACTED, Secret};
pub use vars::{VarInputs, VarType};

/// Reads and validates the spec at `path`.
pub fn load(path: &Path, inputs: &VarInputs) -> Result<Spec, SpecErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        SpecDiagnostic::general(format!("cannot read spec `{}`: {e}", path.display()))
            .with_help("pass the spec with -c PATH (default ./wallaroo.hcl)")
    })?;
    let file = SourceFile::new(path.display().to_string(), text);
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    decode::parse(&file, base, inputs)
}

/// Validates spec text that did not come from a file of its own (tests, stdin).
pub fn parse_str(
    name: &str,
    text: &str,
    base_dir: &Path,
    inputs: &VarInputs,
) -> Result<Spec, SpecErrors> {
    decode::parse(&SourceFile::new(name, text), base_dir, inputs)
}

impl Spec {
    /// The directory relative paths in the spec are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// A path from the spec, resolved against the spec's directory.
    pub fn resolve_path(&self, p: &Path) -> PathBuf {
        self.base_dir().join(p)
    }

    /// Where the lockfile lives: `state { path }`, or `wallaroo.lock` beside the spec.
    pub fn lockfile_path(&self) -> PathBuf {
        match &self.state.path {
            Some(p) => self.resolve_path(p),
            None => self.base_dir().join("wallaroo.lock"),
        }
    }

    /// The spec as JSON with every secret and every value derived from a sensitive
    /// variable shown as `(sensitive)`.
    pub fn redacted_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("the spec model always serializes");
        for pointer in &self.sensitive_paths {
            if let Some(v) = value.pointer_mut(pointer) {
                *v = serde_json::Value::String(REDACTED.into());
            }
        }
        value
    }

    /// Every string the spec holds at a sensitive place (a value derived from a sensitive
    /// variable or `sensitive(...)`, whole or inside a map or list). Where one of them turns up
    /// in something derived from the spec, that thing is sensitive too.
    pub fn sensitive_strings(&self) -> std::collections::BTreeSet<String> {
        fn strings(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
            match v {
                serde_json::Value::String(s) if !s.is_empty() && s != REDACTED => {
                    out.insert(s.clone());
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
                serde_json::Value::Object(m) => m.values().for_each(|v| strings(v, out)),
                _ => {}
            }
        }
        let value = serde_json::to_value(self).expect("the spec model always serializes");
        let mut out = std::collections::BTreeSet::new();
        for pointer in &self.sensitive_paths {
            if let Some(v) = value.pointer(pointer) {
                strings(v, &mut out);
            }
        }
        out
    }

    /// Whether the attribute at `pointer` (e.g. `/wallaroo/domain`) came from a sensitive variable.
    pub fn is_sensitive(&self, pointer: &str) -> bool {
        self.sensitive_paths.contains(pointer)
    }
}
