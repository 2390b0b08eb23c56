//! `bundle create|verify|list`: offline bundles of the release's images.

use std::collections::BTreeMap;
use std::path::Path;

use wallaroo_oci::bundle::{Bundle, CreateReport, ToolFile, VerifyReport};

use crate::error::OperationError;
use crate::workspace::Workspace;

/// A part size as `--split` takes it (`4GiB`, `4.7GB`, `700MB`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    wallaroo_oci::parts::parse_size(text)
}

/// What `bundle create` is asked for.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub out: std::path::PathBuf,
    /// Leave out what the release in this lockfile already has (a delta bundle).
    pub since: Option<std::path::PathBuf>,
    pub refresh_pins: bool,
    /// Numbered parts of at most this many bytes.
    pub split: Option<u64>,
    /// A private key in a format cosign uses, to sign the index with (its password from
    /// `COSIGN_PASSWORD`).
    pub sign_key: Option<std::path::PathBuf>,
    /// Carry the programs the far side's apply runs (helm, wallaroo).
    pub tools: bool,
    /// The platforms to carry them for (default: this machine's).
    pub tools_platforms: Vec<String>,
}

/// The programs a bundle carries for `platforms`: the helm this workspace runs (with the
/// version it reports) and the wallaroo that makes the bundle. Only this machine's platform
/// can be had here.
async fn tools(ws: &Workspace, platforms: &[String]) -> Result<Vec<ToolFile>, OperationError> {
    let host = wallaroo_oci::bundle::host_platform();
    let platforms: Vec<String> = if platforms.is_empty() {
        vec![host.clone()]
    } else {
        platforms.to_vec()
    };
    if let Some(other) = platforms.iter().find(|p| **p != host) {
        return Err(OperationError::message(format!(
            "--tools-platform {other}: wallaroo carries the programs it runs with, so only this machine's platform ({host}); make the bundle on a {other} machine, or pass --no-tools"
        )));
    }
    let helm = which(&ws.helm).ok_or_else(|| {
        OperationError::message(format!(
            "the bundle carries the helm wallaroo runs, and {} is not found: set HELM, or pass --no-tools",
            ws.helm.display()
        ))
    })?;
    let version = tokio::process::Command::new(&helm)
        .args(["version", "--template", "{{.Version}}"])
        .output()
        .await
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let wallaroo = std::env::current_exe()
        .map_err(|e| OperationError::message(format!("the wallaroo binary: {e}")))?;
    let mut tools = vec![
        ToolFile {
            name: "helm".into(),
            platform: host.clone(),
            version,
            path: helm,
        },
        ToolFile {
            name: "wallaroo".into(),
            platform: host.clone(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
            path: wallaroo,
        },
    ];
    // troubleshoot's `preflight`, which plan runs on the vendor's checks, when this machine
    // has it (the spec's, `$WALLAROO_PREFLIGHT`, or on the PATH).
    let t = &ws.spec.troubleshoot;
    let configured = t
        .preflight_program
        .as_ref()
        .map(|p| ws.spec.resolve_path(p));
    if t.preflights
        && let Some(p) = wallaroo_kube::troubleshoot::find_program(configured.as_deref())
        && p.is_file()
    {
        tools.push(ToolFile {
            name: "preflight".into(),
            platform: host,
            version: None,
            path: p,
        });
    }
    Ok(tools)
}

/// `program` as a path: itself when it has a `/`, else the first of that name on the PATH.
fn which(program: &Path) -> Option<std::path::PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// Writes the bundle of the spec's images (only what the release in `since` lacks, when
/// given) to `out`, in parts, signed and with its tools as `request` says.
pub async fn create(
    ws: &Workspace,
    request: &CreateRequest,
) -> Result<CreateReport, OperationError> {
    let out = request.out.as_path();
    let since = request.since.as_deref();
    let refresh_pins = request.refresh_pins;
    let sign_key = match &request.sign_key {
        Some(path) => {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                OperationError::message(format!("--sign-key {}: {e}", path.display()))
            })?;
            let password = std::env::var("COSIGN_PASSWORD").unwrap_or_default();
            Some(
                wallaroo_oci::signing::SigningKey::from_pem(
                    &path.display().to_string(),
                    &pem,
                    &password,
                )
                .map_err(OperationError::Message)?,
            )
        }
        None => None,
    };
    let tool_files = if request.tools {
        tools(ws, &request.tools_platforms).await?
    } else {
        Vec::new()
    };
    if ws.bundle.is_some() {
        return Err(OperationError::message(
            "this spec reads from a bundle (`source { bundle = ... }`); create bundles with a spec that names the vendor registry",
        ));
    }
    let state = ws.store.load()?;
    let (images, sources) = ws.images(state.as_ref(), refresh_pins).await?;
    let mut inputs = Vec::new();
    let signatures = ws.signatures()?;
    for image in &images {
        let (host, _, _) = wallaroo_model::split_reference(&image.source);
        let pin = image.pin.as_ref().expect("images() pins every image");
        // Nothing enters a bundle that the vendor's key does not verify.
        if let Some(s) = &signatures {
            s.check(
                sources[&host].as_ref(),
                &image.source,
                &image.origin,
                &pin.source_digest,
            )
            .await
            .map_err(|e| OperationError::message(e.to_string()))?;
        }
        inputs.push(wallaroo_oci::bundle::BundleInput {
            source: image.source.clone(),
            origin: image.origin.clone(),
            digest: pin.source_digest.clone(),
            from: sources[&host].clone(),
        });
    }
    let skip = match since {
        Some(path) => {
            let previous = wallaroo_state::StateStore::new(path)
                .load()?
                .ok_or_else(|| {
                    OperationError::message(format!("{} does not exist", path.display()))
                })?;
            let pins: BTreeMap<String, String> = wallaroo_oci::pins::recorded(
                previous
                    .resources
                    .values()
                    .filter(|r| r.kind == "image")
                    .map(|r| &r.attributes),
            )
            .into_iter()
            .map(|(source, pin)| (source, pin.source_digest))
            .collect();
            wallaroo_oci::bundle::blobs_of(&sources, &pins).await?
        }
        None => Default::default(),
    };
    let options = wallaroo_oci::bundle::CreateOptions {
        split: request.split,
        sign: sign_key.as_ref(),
        tools: tool_files,
    };
    Ok(
        wallaroo_oci::bundle::create_with(out, &ws.spec.wallaroo.version, &inputs, &skip, &options)
            .await?,
    )
}

/// Re-hashes every blob of a bundle, or every part (counting bytes in the caller's
/// [`wallaroo_engine::progress`] counters, when it runs under them); with `key`, its index's
/// signature first.
pub async fn verify(file: &Path, key: Option<&Path>) -> Result<VerifyReport, OperationError> {
    let path = file.to_path_buf();
    let key = match key {
        Some(k) => {
            let pem = std::fs::read_to_string(k)
                .map_err(|e| OperationError::message(format!("--key {}: {e}", k.display())))?;
            Some(
                wallaroo_oci::verify::VerifyKey::from_pem(&k.display().to_string(), &pem)
                    .map_err(OperationError::Message)?,
            )
        }
        None => None,
    };
    // The blocking reader counts in the caller's progress counters, when it has them.
    let progress = wallaroo_engine::progress::current();
    Ok(tokio::task::spawn_blocking(move || {
        wallaroo_oci::bundle::verify_with(&path, key.as_ref(), progress.as_deref())
    })
    .await
    .expect("verify does not panic")?)
}

/// Writes the programs a bundle carries into `dir`: their paths.
pub fn extract_tools(
    file: &Path,
    dir: &Path,
    platform: Option<&str>,
) -> Result<Vec<std::path::PathBuf>, OperationError> {
    Ok(Bundle::open(file)?.extract_tools(dir, platform)?)
}

/// A bundle's index.
pub fn open(file: &Path) -> Result<Bundle, OperationError> {
    Ok(Bundle::open(file)?)
}
