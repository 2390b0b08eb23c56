//! Signing test images the way vendors do: the real cosign (built from the Go module proxy,
//! see [`crate::provision::go_program`]) against the vendor registry, offline (no
//! transparency log), with key pairs made by `cosign generate-key-pair`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Env, Error};

/// Runs cosign in `dir` with the vendor registry's credentials (a docker config of its own),
/// the test CA, and an empty key password.
pub fn run(env: &Env, dir: &Path, args: &[&str], extra_env: &[(&str, &str)]) -> Result<(), Error> {
    use base64::Engine;
    let docker = dir.join(".docker");
    std::fs::create_dir_all(&docker).map_err(|e| Error::io(&docker, e))?;
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", env.vendor.username, env.vendor.password));
    let config = docker.join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({"auths": {env.vendor.address(): {"auth": auth}}}).to_string(),
    )
    .map_err(|e| Error::io(&config, e))?;
    let mut cmd = Command::new(crate::provision::go_program("cosign")?);
    cmd.args(args)
        .current_dir(dir)
        .env("COSIGN_PASSWORD", "")
        .env("DOCKER_CONFIG", &docker)
        .env("SSL_CERT_FILE", &env.ca_file)
        .env("HOME", dir)
        .envs(extra_env.iter().copied());
    crate::process::run(&format!("cosign {}", args.join(" ")), &mut cmd).map(|_| ())
}

/// A cosign key pair in `dir` (`cosign.key`, `cosign.pub`): the public key's path.
pub fn key_pair(env: &Env, dir: &Path) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    run(env, dir, &["generate-key-pair"], &[])?;
    Ok(dir.join("cosign.pub"))
}

/// Signs `reference` (`host/repo@sha256:...`) with the key pair in `dir`; `extra` flags
/// (e.g. `--registry-referrers-mode=oci-1-1`, with `COSIGN_EXPERIMENTAL=1` in `extra_env`).
pub fn sign(
    env: &Env,
    dir: &Path,
    reference: &str,
    extra: &[&str],
    extra_env: &[(&str, &str)],
) -> Result<(), Error> {
    let mut args = vec![
        "sign",
        "--key",
        "cosign.key",
        "--tlog-upload=false",
        "--yes",
    ];
    args.extend_from_slice(extra);
    args.push(reference);
    run(env, dir, &args, extra_env)
}
