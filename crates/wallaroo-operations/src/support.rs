//! `wallaroo support-bundle`: one `.tar.gz` with what vendor support asks for, safe to send
//! from an air gap: versions, preflight results, the lockfile, the cluster's view (nodes,
//! pods, events, logs, the helm release's history and values; see
//! `wallaroo_kube::support`) and the plan the caller adds. Every file is scrubbed of every
//! secret string the spec knows (sensitive values, passwords, the license), on top of the
//! redaction each part does by itself.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::error::OperationError;
use crate::workspace::WorkspaceOptions;

/// The files of a support bundle, by path inside it.
#[derive(Debug, Default)]
pub struct SupportBundle {
    pub files: BTreeMap<String, Vec<u8>>,
    /// What the files must not hold.
    secrets: BTreeSet<String>,
    /// The installation's namespace (troubleshoot's collectors look there).
    namespace: String,
}

/// What [`SupportBundle::write`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub files: usize,
    pub bytes: u64,
    /// Secret strings replaced by `(sensitive)` across the files.
    pub scrubbed: usize,
}

/// troubleshoot's `support-bundle` program, when this host has it.
pub fn support_bundle_program() -> Option<std::path::PathBuf> {
    wallaroo_kube::troubleshoot::find_support_bundle()
}

/// Collects everything but the plan (which the caller renders and adds with
/// [`SupportBundle::add`]). Reads only; a part that fails is recorded as an error file.
pub async fn collect(
    options: &WorkspaceOptions,
    log_lines: i64,
) -> Result<SupportBundle, OperationError> {
    let spec = crate::workspace::load_spec(options)?;
    let helm = options.helm_binary();
    let mut bundle = SupportBundle {
        files: BTreeMap::new(),
        secrets: wallaroo_model::sensitive::secret_strings(&spec),
        namespace: spec.wallaroo.namespace.clone(),
    };
    let helm_version = tokio::process::Command::new(&helm)
        .args(["version", "--short"])
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("cannot run {}: {e}", helm.display()));
    bundle.add_json(
        "versions.json",
        &json!({
            "wallaroo": env!("CARGO_PKG_VERSION"),
            "helm": helm_version,
            "release": spec.wallaroo.version,
            "method": spec.wallaroo.method,
        }),
    );
    let cluster = wallaroo_kube::Cluster::connect().await;
    let checks = match &cluster {
        // No registry to push to: the pull check does not run here.
        Ok(cluster) => {
            let record = crate::render_cache::RenderCache::beside(&spec.lockfile_path());
            let when = crate::preflight::PullWhen {
                record: &record,
                always: false,
            };
            crate::preflight::checks_on(&spec, &helm, cluster, None, when).await
        }
        Err(e) => Err(OperationError::message(e.to_string())),
    };
    match checks {
        Ok(checks) => bundle.add_json(
            "preflight.json",
            &serde_json::Value::Array(
                checks
                    .iter()
                    .map(|c| {
                        json!({"check": c.name, "outcome": format!("{:?}", c.outcome).to_lowercase(),
                               "detail": c.detail, "hint": c.hint})
                    })
                    .collect(),
            ),
        ),
        Err(e) => bundle.add("preflight.error.txt", e.to_string().into_bytes()),
    }
    let store = crate::workspace::state_store(&spec)?;
    match store.load() {
        Ok(Some(lock)) => bundle.add_json(
            "wallaroo.lock.json",
            &serde_json::to_value(&lock).expect("the lockfile serializes"),
        ),
        Ok(None) => bundle.add("wallaroo.lock.missing.txt", b"no lockfile yet".to_vec()),
        Err(e) => bundle.add("wallaroo.lock.error.txt", e.to_string().into_bytes()),
    }
    match cluster {
        Ok(cluster) => {
            let parts = wallaroo_kube::support::collect(
                cluster.client(),
                &wallaroo_kube::support::Collect {
                    namespace: &spec.wallaroo.namespace,
                    release: &spec.wallaroo.release_name,
                    helm: &helm,
                    kubeconfig: crate::prepare::helm_kubeconfig(),
                    log_lines,
                },
            )
            .await;
            bundle.files.extend(parts);
        }
        Err(e) => bundle.add("cluster.error.txt", e.to_string().into_bytes()),
    }
    Ok(bundle)
}

impl SupportBundle {
    pub fn add(&mut self, name: &str, bytes: Vec<u8>) {
        self.files.insert(name.to_string(), bytes);
    }

    pub fn add_json(&mut self, name: &str, value: &serde_json::Value) {
        self.add(
            name,
            serde_json::to_vec_pretty(value).expect("JSON values always print"),
        );
    }

    /// Replaces every secret string in every file by `(sensitive)`; returns how many.
    fn scrub(&mut self) -> usize {
        let mut scrubbed = 0;
        for bytes in self.files.values_mut() {
            let (clean, n) = scrub_bytes(bytes, &self.secrets);
            *bytes = clean;
            scrubbed += n;
        }
        scrubbed
    }

    /// A bundle in troubleshoot's layout, so that `support-bundle analyze` and the vendor's
    /// analyzers read it: the real `support-bundle` `program` collects with the vendor's
    /// specs from the cluster (`--load-cluster-specs`) and a spec of ours that adds these
    /// files (under `wallaroo/`). Every file of what it wrote is scrubbed again of every
    /// secret the spec knows, whatever troubleshoot's own redactors missed.
    pub async fn write_troubleshoot(
        mut self,
        out: &Path,
        program: &Path,
        log_lines: i64,
    ) -> Result<Written, OperationError> {
        let mut scrubbed = self.scrub();
        let spec = wallaroo_kube::troubleshoot::support_bundle_spec(
            &self.namespace,
            log_lines,
            &self.files,
        );
        let dir = tempfile::tempdir()
            .map_err(|e| OperationError::message(format!("a temporary directory: {e}")))?;
        let archive = wallaroo_kube::troubleshoot::run_support_bundle(
            program,
            crate::prepare::helm_kubeconfig().as_deref(),
            &spec,
            dir.path(),
        )
        .await
        .map_err(OperationError::message)?;
        let err = |e: std::io::Error| {
            OperationError::message(format!("cannot write {}: {e}", out.display()))
        };
        let read = std::fs::File::open(&archive).map_err(err)?;
        let mut input = tar::Archive::new(flate2::read::GzDecoder::new(read));
        let partial = out.with_extension("partial");
        let file = std::fs::File::create(&partial).map_err(err)?;
        let mut output = tar::Builder::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::default(),
        ));
        let (mut files, mut bytes) = (0, 0u64);
        for entry in input.entries().map_err(err)? {
            let mut entry = entry.map_err(err)?;
            let mut header = entry.header().clone();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).map_err(err)?;
            if header.entry_type().is_file() {
                let (clean, n) = scrub_bytes(&data, &self.secrets);
                scrubbed += n;
                data = clean;
                header.set_size(data.len() as u64);
                header.set_cksum();
                files += 1;
                bytes += data.len() as u64;
            }
            let path = entry.path().map_err(err)?.into_owned();
            output
                .append_data(&mut header, path, data.as_slice())
                .map_err(err)?;
        }
        let mut gz = output.into_inner().map_err(err)?;
        gz.flush().map_err(err)?;
        gz.finish().map_err(err)?.sync_all().map_err(err)?;
        std::fs::rename(&partial, out).map_err(err)?;
        Ok(Written {
            files,
            bytes,
            scrubbed,
        })
    }

    /// Scrubs every file and writes the `.tar.gz` (to a temporary name, renamed when
    /// complete).
    pub fn write(mut self, out: &Path) -> Result<Written, OperationError> {
        let scrubbed = self.scrub();
        let err = |e: std::io::Error| {
            OperationError::message(format!("cannot write {}: {e}", out.display()))
        };
        let partial = out.with_extension("partial");
        let file = std::fs::File::create(&partial).map_err(err)?;
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let mut bytes = 0;
        for (name, data) in &self.files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_mtime(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            );
            header.set_cksum();
            tar.append_data(&mut header, format!("support/{name}"), data.as_slice())
                .map_err(err)?;
            bytes += data.len() as u64;
        }
        let mut gz = tar.into_inner().map_err(err)?;
        gz.flush().map_err(err)?;
        gz.finish().map_err(err)?.sync_all().map_err(err)?;
        std::fs::rename(&partial, out).map_err(err)?;
        Ok(Written {
            files: self.files.len(),
            bytes,
            scrubbed,
        })
    }
}

/// `data` with every occurrence of every secret replaced by `(sensitive)`, and how many.
fn scrub_bytes(data: &[u8], secrets: &BTreeSet<String>) -> (Vec<u8>, usize) {
    let mut data = data.to_vec();
    let mut count = 0;
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        let needle = s.as_bytes();
        if data.len() < needle.len() {
            continue;
        }
        let mut out = Vec::with_capacity(data.len());
        let mut i = 0;
        while i < data.len() {
            if data[i..].starts_with(needle) {
                out.extend_from_slice(wallaroo_spec::REDACTED.as_bytes());
                i += needle.len();
                count += 1;
            } else {
                out.push(data[i]);
                i += 1;
            }
        }
        data = out;
    }
    (data, count)
}
