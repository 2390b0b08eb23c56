//! Credentials the way docker keeps them: `auths` in `~/.docker/config.json` (or
//! `$DOCKER_CONFIG/config.json`), and the credential helpers it names (`credHelpers` per
//! registry, `credsStore` for all), run as `docker-credential-NAME get`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

use crate::registry::{Credentials, OciError};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: std::collections::BTreeMap<String, String>,
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// A docker config file, read once.
#[derive(Debug, Default)]
pub struct DockerConfig {
    path: PathBuf,
    file: ConfigFile,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; empty when there is none.
    pub fn load_default() -> Result<DockerConfig, OciError> {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
        match dir {
            Some(dir) => DockerConfig::load(&dir.join("config.json")),
            None => Ok(DockerConfig::default()),
        }
    }

    /// The config at `path`; empty when the file does not exist.
    pub fn load(path: &Path) -> Result<DockerConfig, OciError> {
        let err = |m: String| OciError::Registry {
            registry: "(docker config)".into(),
            message: format!("{}: {m}", path.display()),
        };
        let file = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ConfigFile::default(),
            Err(e) => return Err(err(e.to_string())),
        };
        Ok(DockerConfig {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The credentials for `host`: its credential helper's (or the store's) when one is
    /// named, else its `auths` entry; `None` when docker knows none.
    pub fn credentials(&self, host: &str) -> Result<Option<Credentials>, OciError> {
        if let Some(helper) = self
            .file
            .cred_helpers
            .get(host)
            .or(self.file.creds_store.as_ref())
            && let Some(c) = run_helper(helper, host)?
        {
            return Ok(Some(c));
        }
        let keys = [
            host.to_string(),
            format!("https://{host}"),
            format!("https://{host}/v1/"),
            format!("https://{host}/v2/"),
        ];
        let Some(entry) = keys.iter().find_map(|k| self.file.auths.get(k)) else {
            return Ok(None);
        };
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials {
                username: u.clone(),
                password: p.clone(),
            }));
        }
        if let Some(auth) = &entry.auth {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| {
                    s.split_once(':')
                        .map(|(u, p)| (u.to_string(), p.to_string()))
                });
            let Some((username, password)) = decoded else {
                return Err(OciError::Registry {
                    registry: host.into(),
                    message: format!(
                        "the `auth` of {host} in {} is not base64 of user:password",
                        self.path.display()
                    ),
                });
            };
            return Ok(Some(Credentials { username, password }));
        }
        Ok(entry.identitytoken.as_ref().map(|t| Credentials {
            username: "<token>".into(),
            password: t.clone(),
        }))
    }
}

/// `docker-credential-HELPER get` with the host on stdin; `None` when it has no entry.
fn run_helper(helper: &str, host: &str) -> Result<Option<Credentials>, OciError> {
    let program = format!("docker-credential-{helper}");
    let err = |m: String| OciError::Registry {
        registry: host.into(),
        message: format!("credential helper {program}: {m}"),
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(e.to_string()))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(host.as_bytes())
        .map_err(|e| err(e.to_string()))?;
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        // Helpers say "credentials not found in native keychain" for an unknown host.
        if text.to_ascii_lowercase().contains("not found") {
            return Ok(None);
        }
        return Err(err(format!("exit {}: {}", out.status, text.trim())));
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        username: String,
        secret: String,
    }
    let a: Answer =
        serde_json::from_slice(&out.stdout).map_err(|e| err(format!("unreadable answer: {e}")))?;
    Ok(Some(Credentials {
        username: a.username,
        password: a.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auths_entries_and_credential_helpers_give_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        // A credential helper speaking docker's protocol: host on stdin, JSON on stdout.
        let helper = bin.join("docker-credential-wtest");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread host\nif [ \"$host\" = helped.example ]; then\n  printf '{\"ServerURL\":\"%s\",\"Username\":\"robot\",\"Secret\":\"s3cret\"}' \"$host\"\nelse\n  echo 'credentials not found in native keychain'; exit 1\nfi\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = dir.path().join("config.json");
        let basic = base64::engine::general_purpose::STANDARD.encode("alice:pw1");
        std::fs::write(
            &config,
            format!(
                r#"{{"auths":{{"plain.example:5000":{{"auth":"{basic}"}},"https://old.example/v1/":{{"username":"bob","password":"pw2"}},"bad.example":{{"auth":"!!"}}}},
                   "credHelpers":{{"helped.example":"wtest","missing.example":"wtest"}}}}"#
            ),
        )
        .unwrap();
        // SAFETY: this test is the only one in this binary that reads or writes PATH.
        unsafe {
            std::env::set_var(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
        };
        let c = DockerConfig::load(&config).unwrap();
        let get = |h: &str| c.credentials(h).unwrap().map(|c| (c.username, c.password));
        assert_eq!(
            get("plain.example:5000"),
            Some(("alice".into(), "pw1".into()))
        );
        assert_eq!(get("old.example"), Some(("bob".into(), "pw2".into())));
        assert_eq!(
            get("helped.example"),
            Some(("robot".into(), "s3cret".into()))
        );
        assert_eq!(get("missing.example"), None, "the helper has no entry");
        assert_eq!(get("nowhere.example"), None);
        let bad = c.credentials("bad.example").unwrap_err().to_string();
        assert!(bad.contains("not base64"), "{bad}");
        assert!(
            DockerConfig::load(&dir.path().join("absent.json"))
                .unwrap()
                .credentials("plain.example:5000")
                .unwrap()
                .is_none()
        );
    }
}
