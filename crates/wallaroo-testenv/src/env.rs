//! Starting, finding and stopping the environment. `up` reuses a running environment whose
//! processes are all alive and ready; otherwise it starts a fresh one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::kubeapi::{KubeApi, https_client};
use crate::pki::Pki;
use crate::process::{alive, free_port, spawn, stop, wait_until};
use crate::provision::{Binaries, provision};
use crate::{Error, paths, rbac};

/// Host names of the registries; they must resolve to 127.0.0.1 (see [`ensure_hosts`]).
pub const VENDOR_HOST: &str = "vendor.registry.test";
pub const PRIVATE_HOST: &str = "private.registry.test";
pub const TOKEN_HOST: &str = "token.registry.test";
/// The Keycloak admin the sample chart's `keycloak-admin-secret` names.
pub const KEYCLOAK_ADMIN: &str = "admin";

/// One running process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proc {
    pub pid: u32,
    pub port: u16,
}

/// A registry and its credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registry {
    pub proc: Proc,
    pub host: String,
    pub username: String,
    pub password: String,
}

impl Registry {
    /// `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.proc.port)
    }
}

/// The registry implementations the test kit runs: the matrix that mirror, no-op, prune,
/// referrers, resume and bundle-load tests go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implementation {
    /// Debian's `docker-registry` (CNCF distribution 2.8): htpasswd auth, TLS.
    Distribution2,
    /// CNCF distribution v3 (`cmd/registry` from the Go module proxy): htpasswd auth, TLS.
    Distribution3,
    /// go-containerregistry's `pkg/registry` (what `crane registry serve` runs): TLS, no
    /// auth, disk blobs.
    Ggcr,
}

impl Implementation {
    pub const ALL: [Implementation; 3] = [
        Implementation::Distribution2,
        Implementation::Distribution3,
        Implementation::Ggcr,
    ];

    /// How the README's table names it.
    pub fn label(self) -> String {
        match self {
            Implementation::Distribution2 => "distribution 2.8 (Debian)".into(),
            Implementation::Distribution3 => {
                format!("distribution {}", crate::versions::DISTRIBUTION_V3)
            }
            Implementation::Ggcr => {
                format!("go-containerregistry {}", crate::versions::GGCR)
            }
        }
    }

    /// A short name for directories and process names.
    pub fn slug(self) -> &'static str {
        match self {
            Implementation::Distribution2 => "dist2",
            Implementation::Distribution3 => "dist3",
            Implementation::Ggcr => "ggcr",
        }
    }
}

/// A registry started for one run; see [`Env::scratch_registry`].
pub struct ScratchRegistry {
    pub registry: Registry,
    /// Where it keeps blobs and manifests.
    pub storage: std::path::PathBuf,
    dir: std::path::PathBuf,
    /// How it was started (program and arguments), to start it again the same way.
    command: Option<(PathBuf, Vec<String>)>,
}

impl ScratchRegistry {
    /// Stops the registry and starts it again on the same port, storage and credentials (a
    /// distribution registry keeps what it learned of its blobs in memory until then).
    pub fn restart(&mut self, env: &Env) -> Result<(), Error> {
        let Some((program, args)) = &self.command else {
            return Err(Error::Api {
                what: "restart".into(),
                message: "this registry cannot be restarted".into(),
            });
        };
        stop(self.registry.proc.pid, Duration::from_secs(5));
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut cmd = Command::new(program);
        cmd.args(args);
        let pid = spawn(&name, cmd, &env.run_dir)?;
        let client = https_client(&env.ca_file)?;
        let url = format!("https://{}/v2/", self.registry.address());
        wait_until(&name, pid, Duration::from_secs(20), &env.run_dir, || {
            client.get(&url).send().is_ok()
        })?;
        self.registry.proc.pid = pid;
        Ok(())
    }

    /// Gives its storage, a tmpfs (see [`Env::scratch_registry_sized`]), `bytes` in all: as an
    /// operator grows a full volume.
    pub fn resize(&self, bytes: u64) -> Result<(), Error> {
        crate::process::run(
            "mount",
            Command::new("mount")
                .args(["-o", &format!("remount,size={bytes}")])
                .arg(&self.storage),
        )
        .map(|_| ())
    }

    /// Bytes the registry stores (blobs and manifests).
    pub fn stored_bytes(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(p) else {
                return 0;
            };
            entries
                .filter_map(Result::ok)
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.storage.join("docker/registry/v2/blobs"))
    }

    /// Whether it stores blob `digest` at all, in any repository (distribution keeps one
    /// copy of a blob, linked into each repository that has it).
    pub fn stores(&self, digest: &str) -> bool {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        hex.len() > 2
            && self
                .storage
                .join("docker/registry/v2/blobs/sha256")
                .join(&hex[..2])
                .join(hex)
                .join("data")
                .exists()
    }

    /// Stops it and removes its storage (as dropping it does).
    pub fn stop(self) {}
}

/// A scratch registry stops with its test, passed or failed: a tmpfs left mounted holds its
/// bytes in memory until the machine restarts.
impl Drop for ScratchRegistry {
    fn drop(&mut self) {
        stop(self.registry.proc.pid, Duration::from_secs(5));
        let _ = Command::new("umount").arg(&self.storage).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Everything a running environment consists of, kept in `run/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Env {
    pub run_dir: PathBuf,
    pub ca_file: PathBuf,
    pub helm: PathBuf,
    /// Kubeconfig of the least-privilege `wallaroo` ServiceAccount (the default for tests).
    pub kubeconfig: PathBuf,
    /// Kubeconfig of a cluster admin.
    pub admin_kubeconfig: PathBuf,
    pub admin_token: String,
    pub api_port: u16,
    pub procs: BTreeMap<String, Proc>,
    pub vendor: Registry,
    pub private: Registry,
    /// A registry with Bearer token auth (a WWW-Authenticate challenge and a token issuer),
    /// the way real vendor registries authenticate. Its credentials are the issuer's.
    pub token: Registry,
    /// toxiproxy proxies by name (`vendor-registry`, `kube-apiserver`): their listen ports.
    pub proxies: BTreeMap<String, u16>,
    pub keycloak_url: String,
    pub keycloak_password: String,
    pub toxiproxy_url: String,
}

/// What kube-apiserver's audit log records: requests that may write, at the Metadata level
/// (who, verb, object; never a body), leaving out reads and what runs all the time (Leases,
/// status updates, events).
const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
  - level: None
    verbs: ["get", "list", "watch"]
  - level: None
    resources:
      - group: "coordination.k8s.io"
        resources: ["leases"]
      - group: ""
        resources: ["events", "nodes/status", "pods/status"]
  - level: Metadata
"#;

fn audit_log(run_dir: &Path) -> PathBuf {
    run_dir.join("audit.log")
}

fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("the OS has a random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn state_file(run_dir: &Path) -> PathBuf {
    run_dir.join("state.json")
}

fn real_nodes_file(run_dir: &Path) -> PathBuf {
    run_dir.join("real-nodes.json")
}

/// The lock that real nodes are started, stopped and recorded under (tests of several
/// processes share one environment).
pub(crate) fn state_lock(run_dir: &Path) -> Result<std::fs::File, Error> {
    let path = run_dir.join("real-nodes.lock");
    let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
    file.lock().map_err(|e| Error::io(&path, e))?;
    Ok(file)
}

/// The real nodes recorded in the run directory, by name.
pub(crate) fn read_real_nodes(run_dir: &Path) -> BTreeMap<String, crate::node::RealNode> {
    std::fs::read_to_string(real_nodes_file(run_dir))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Changes the record of real nodes (call under [`state_lock`]).
pub(crate) fn update_real_nodes(
    run_dir: &Path,
    change: impl FnOnce(&mut BTreeMap<String, crate::node::RealNode>),
) -> Result<(), Error> {
    let mut nodes = read_real_nodes(run_dir);
    change(&mut nodes);
    let path = real_nodes_file(run_dir);
    std::fs::write(&path, serde_json::to_string_pretty(&nodes).expect("JSON"))
        .map_err(|e| Error::io(&path, e))
}

impl Env {
    /// The running environment, if its state file exists and every process is alive.
    pub fn find() -> Option<Env> {
        let text = std::fs::read_to_string(state_file(&paths::run_dir())).ok()?;
        let env: Env = serde_json::from_str(&text).ok()?;
        let all_alive = env
            .procs
            .values()
            .chain([&env.vendor.proc, &env.private.proc])
            .all(|p| alive(p.pid));
        (all_alive && env.api().ok()?.ready()).then_some(env)
    }

    /// The audit log's events (JSON lines) of requests made as `user` that may have changed
    /// something (see `AUDIT_POLICY`): `verb`, `objectRef`, `responseStatus` and the rest.
    pub fn audited_writes_by(&self, user: &str) -> Vec<serde_json::Value> {
        let path = audit_log(&self.run_dir);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains(user))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["user"]["username"] == user)
            .collect()
    }

    /// Stops kube-apiserver, waits `down`, and starts it again as it ran (the same command
    /// line, read from `/proc`; the same port, certificates and etcd), as a control plane that
    /// restarts mid-operation does. Waits until it is ready and records its new PID, so that
    /// later test processes find the environment whole. Returns the new PID.
    pub fn restart_apiserver(&self, down: Duration) -> Result<u32, Error> {
        let _lock = state_lock(&self.run_dir)?;
        let state = state_file(&self.run_dir);
        let text = std::fs::read_to_string(&state).map_err(|e| Error::io(&state, e))?;
        let mut current: Env = serde_json::from_str(&text).map_err(|e| Error::Api {
            what: "state.json".into(),
            message: e.to_string(),
        })?;
        let pid = current.procs["kube-apiserver"].pid;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map_err(|e| Error::io(Path::new(&format!("/proc/{pid}/cmdline")), e))?;
        let mut args = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned());
        let program = args.next().unwrap_or_default();
        let args: Vec<String> = args.collect();
        stop(pid, Duration::from_secs(10));
        std::thread::sleep(down);
        let mut cmd = Command::new(&program);
        cmd.args(&args);
        let new = spawn("kube-apiserver", cmd, &self.run_dir)?;
        let api = self.api()?;
        wait_until(
            "kube-apiserver",
            new,
            Duration::from_secs(60),
            &self.run_dir,
            || api.ready(),
        )?;
        if let Some(p) = current.procs.get_mut("kube-apiserver") {
            p.pid = new;
        }
        let text = serde_json::to_string_pretty(&current).expect("JSON");
        std::fs::write(&state, text).map_err(|e| Error::io(&state, e))?;
        Ok(new)
    }

    /// A kubeconfig at `path` for ServiceAccount `namespace/name`, with a token the API server
    /// issues for it now (TokenRequest, an hour), as `kubectl create token` makes one.
    pub fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        path: &Path,
    ) -> Result<(), Error> {
        let answer = self.api()?.create(
            &format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"),
            &json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600},
            }),
        )?;
        let token = answer["status"]["token"]
            .as_str()
            .ok_or_else(|| Error::Api {
                what: format!("a token for {namespace}/{name}"),
                message: "the TokenRequest answered no token".into(),
            })?;
        write_kubeconfig(
            path,
            &format!("https://127.0.0.1:{}", self.api_port),
            &self.ca_file,
            name,
            token,
        )
    }

    /// Whether kube-apiserver writes the audit log (an environment started before it did
    /// does not).
    pub fn audits(&self) -> bool {
        audit_log(&self.run_dir).exists()
    }

    pub fn api(&self) -> Result<KubeApi, Error> {
        KubeApi::new(
            &format!("https://127.0.0.1:{}", self.api_port),
            &self.admin_token,
            &self.ca_file,
        )
    }

    /// `export NAME=value` lines for `eval "$(wallaroo-testenv up)"`.
    pub fn exports(&self) -> Vec<(String, String)> {
        let p = |p: &Path| p.display().to_string();
        vec![
            ("KUBECONFIG".into(), p(&self.kubeconfig)),
            (
                "WALLAROO_TESTENV_ADMIN_KUBECONFIG".into(),
                p(&self.admin_kubeconfig),
            ),
            ("WALLAROO_TESTENV_CA".into(), p(&self.ca_file)),
            ("HELM".into(), p(&self.helm)),
            ("VENDOR_REGISTRY".into(), self.vendor.address()),
            (
                "VENDOR_REGISTRY_USERNAME".into(),
                self.vendor.username.clone(),
            ),
            (
                "VENDOR_REGISTRY_PASSWORD".into(),
                self.vendor.password.clone(),
            ),
            ("PRIVATE_REGISTRY".into(), self.private.address()),
            (
                "PRIVATE_REGISTRY_USERNAME".into(),
                self.private.username.clone(),
            ),
            (
                "PRIVATE_REGISTRY_PASSWORD".into(),
                self.private.password.clone(),
            ),
            ("KEYCLOAK_URL".into(), self.keycloak_url.clone()),
            ("KEYCLOAK_ADMIN".into(), KEYCLOAK_ADMIN.into()),
            (
                "KEYCLOAK_ADMIN_PASSWORD".into(),
                self.keycloak_password.clone(),
            ),
            ("TOKEN_REGISTRY".into(), self.token.address()),
            (
                "TOKEN_REGISTRY_USERNAME".into(),
                self.token.username.clone(),
            ),
            (
                "TOKEN_REGISTRY_PASSWORD".into(),
                self.token.password.clone(),
            ),
            ("TOXIPROXY_URL".into(), self.toxiproxy_url.clone()),
            (
                "VENDOR_REGISTRY_VIA_TOXIPROXY".into(),
                format!("{VENDOR_HOST}:{}", self.proxies["vendor-registry"]),
            ),
            (
                "KUBE_API_VIA_TOXIPROXY".into(),
                format!("https://127.0.0.1:{}", self.proxies["kube-apiserver"]),
            ),
            // The variables of examples/quickstart.hcl, for the sandbox.
            ("WALLAROO_VAR_vendor_registry".into(), self.vendor.address()),
            (
                "WALLAROO_VAR_vendor_username".into(),
                self.vendor.username.clone(),
            ),
            (
                "WALLAROO_VAR_vendor_password".into(),
                self.vendor.password.clone(),
            ),
            (
                "WALLAROO_VAR_private_registry".into(),
                self.private.address(),
            ),
            ("WALLAROO_VAR_vendor_ca_file".into(), p(&self.ca_file)),
            ("WALLAROO_VAR_private_ca_file".into(), p(&self.ca_file)),
            (
                "WALLAROO_VAR_registry_username".into(),
                self.private.username.clone(),
            ),
            (
                "WALLAROO_VAR_keycloak_url".into(),
                self.keycloak_url.clone(),
            ),
            (
                "WALLAROO_VAR_registry_password".into(),
                self.private.password.clone(),
            ),
        ]
    }

    /// Stops every process by PID, the real nodes first.
    pub fn down(&self) {
        for node in read_real_nodes(&self.run_dir).values() {
            node.stop(self);
        }
        let _ = std::fs::remove_file(real_nodes_file(&self.run_dir));
        let mut pids: Vec<u32> = self.procs.values().map(|p| p.pid).collect();
        pids.extend([
            self.vendor.proc.pid,
            self.private.proc.pid,
            self.token.proc.pid,
        ]);
        for pid in pids.into_iter().rev() {
            stop(pid, Duration::from_secs(5));
        }
        let _ = std::fs::remove_file(state_file(&self.run_dir));
    }

    /// A new, empty registry under the private registry's host name (so its certificate and
    /// /etc/hosts line serve), with htpasswd auth, for runs that must start from nothing (the
    /// mirror benchmark). Stop it with [`ScratchRegistry::stop`]; its storage is removed then.
    pub fn scratch_registry(&self, name: &str) -> Result<ScratchRegistry, Error> {
        let bins = crate::provision::provision(&mut |_| {})?;
        let pki = Pki {
            dir: self.run_dir.join("pki"),
        };
        let dir = self.run_dir.join(name);
        let _ = Command::new("umount").arg(dir.join("storage")).output();
        let _ = std::fs::remove_dir_all(&dir);
        let registry = start_registry(
            name,
            PRIVATE_HOST,
            &bins.registry,
            &pki,
            &self.run_dir,
            None,
        )?;
        Ok(ScratchRegistry {
            registry,
            storage: dir.join("storage"),
            command: Some((
                bins.registry.clone(),
                vec!["serve".into(), dir.join("config.yml").display().to_string()],
            )),
            dir,
        })
    }

    /// A scratch registry of implementation `imp` whose storage is a tmpfs of `bytes`
    /// (mounted as root): a volume that fills during a mirror, as one sized for the last
    /// release does.
    pub fn scratch_registry_sized(
        &self,
        imp: Implementation,
        name: &str,
        bytes: u64,
    ) -> Result<ScratchRegistry, Error> {
        self.scratch_registry_on(imp, name, Some(bytes))
    }

    /// A new, empty registry of implementation `imp` under the private registry's host name,
    /// started for one test (see [`Env::scratch_registry`]). Provisions the implementation
    /// from the Go module proxy the first time.
    pub fn scratch_registry_of(
        &self,
        imp: Implementation,
        name: &str,
    ) -> Result<ScratchRegistry, Error> {
        self.scratch_registry_on(imp, name, None)
    }

    /// [`Env::scratch_registry_of`], its storage on a tmpfs of `tmpfs` bytes when given.
    fn scratch_registry_on(
        &self,
        imp: Implementation,
        name: &str,
        tmpfs: Option<u64>,
    ) -> Result<ScratchRegistry, Error> {
        let name = format!("{name}-{}", imp.slug());
        let pki = Pki {
            dir: self.run_dir.join("pki"),
        };
        let dir = self.run_dir.join(&name);
        let _ = Command::new("umount").arg(dir.join("storage")).output();
        let _ = std::fs::remove_dir_all(&dir);
        if let Some(bytes) = tmpfs {
            let storage = dir.join("storage");
            std::fs::create_dir_all(&storage).map_err(|e| Error::io(&storage, e))?;
            crate::process::run(
                "mount",
                Command::new("mount")
                    .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
                    .arg(&storage),
            )?;
        }
        let distribution = |program: PathBuf| -> Result<ScratchRegistry, Error> {
            let registry =
                start_registry(&name, PRIVATE_HOST, &program, &pki, &self.run_dir, None)?;
            Ok(ScratchRegistry {
                registry,
                storage: dir.join("storage"),
                command: Some((
                    program,
                    vec!["serve".into(), dir.join("config.yml").display().to_string()],
                )),
                dir: dir.clone(),
            })
        };
        let ggcr_command: Option<(PathBuf, Vec<String>)>;
        let registry = match imp {
            Implementation::Distribution2 => {
                return distribution(crate::provision::provision(&mut |_| {})?.registry);
            }
            Implementation::Distribution3 => {
                return distribution(crate::provision::go_program("registry-v3")?);
            }
            Implementation::Ggcr => {
                let program = crate::provision::go_program("ggcr-registry")?;
                let port = free_port();
                let storage = dir.join("storage");
                std::fs::create_dir_all(&storage).map_err(|e| Error::io(&storage, e))?;
                let args: Vec<String> = vec![
                    format!("127.0.0.1:{port}"),
                    pki.cert("registry").display().to_string(),
                    pki.key("registry").display().to_string(),
                    storage.display().to_string(),
                ];
                ggcr_command = Some((program.clone(), args.clone()));
                let mut cmd = Command::new(program);
                cmd.args(&args);
                let pid = spawn(&name, cmd, &self.run_dir)?;
                let client = https_client(&pki.ca_cert())?;
                wait_until(&name, pid, Duration::from_secs(20), &self.run_dir, || {
                    client
                        .get(format!("https://{PRIVATE_HOST}:{port}/v2/"))
                        .send()
                        .is_ok_and(|r| r.status().is_success())
                })?;
                Registry {
                    proc: Proc { pid, port },
                    host: PRIVATE_HOST.into(),
                    username: String::new(),
                    password: String::new(),
                }
            }
        };
        Ok(ScratchRegistry {
            registry,
            storage: dir.join("storage"),
            command: ggcr_command,
            dir,
        })
    }

    /// A spec that mirrors the release at `path` of the vendor registry into `namespace` of
    /// the private registry, with this environment's credentials and CA written in (no
    /// cluster settings beyond the required ones): for tests of mirroring through the binary.
    pub fn mirror_spec(&self, path: &str, namespace: &str) -> String {
        self.mirror_spec_of(
            &self.vendor,
            path,
            "2025.1.0-6290",
            &self.private,
            namespace,
        )
    }

    /// [`Env::mirror_spec`] of release `version` from `vendor` into `private` (e.g. the
    /// vendor reached through its proxy, a scratch registry).
    pub fn mirror_spec_of(
        &self,
        vendor: &Registry,
        path: &str,
        version: &str,
        private: &Registry,
        namespace: &str,
    ) -> String {
        format!(
            r#"wallaroo {{
  version                 = "{version}"
  license_channel         = "2025-1"
  domain                  = "wallaroo.example.com"
  kubernetes_distribution = "kurl"
}}
source "wallaroo" {{
  registry = "{vendor}"
  path     = "{path}"
  username = "{vu}"
  password = "{vp}"
  ca_file  = "{ca}"
}}
registry "private" {{
  host      = "{private}"
  namespace = "{namespace}"
  username  = "{pu}"
  password  = "{pp}"
  ca_file   = "{ca}"
}}
"#,
            vendor = vendor.address(),
            vu = vendor.username,
            vp = vendor.password,
            private = private.address(),
            pu = private.username,
            pp = private.password,
            ca = self.ca_file.display(),
        )
    }

    /// Sets a latency of `one_way_ms` each way on toxiproxy's proxy `proxy` (`vendor-registry`,
    /// `kube-apiserver`); 0 removes it.
    pub fn set_latency(&self, proxy: &str, one_way_ms: u64) -> Result<(), Error> {
        let http = reqwest::blocking::Client::new();
        let toxi = &self.toxiproxy_url;
        let failed = |e: String| Error::Api {
            what: format!("toxiproxy latency on {proxy}"),
            message: e,
        };
        for stream in ["upstream", "downstream"] {
            let name = format!("latency-{stream}");
            let _ = http
                .delete(format!("{toxi}/proxies/{proxy}/toxics/{name}"))
                .send();
            if one_way_ms > 0 {
                let r = http
                    .post(format!("{toxi}/proxies/{proxy}/toxics"))
                    .json(&json!({"name": name, "type": "latency", "stream": stream,
                                  "attributes": {"latency": one_way_ms, "jitter": 0}}))
                    .send()
                    .map_err(|e| failed(e.to_string()))?;
                if !r.status().is_success() {
                    return Err(failed(r.status().to_string()));
                }
            }
        }
        Ok(())
    }

    /// Creates `n` kwok nodes named `{prefix}-{i}` with labels, taints and capacity (eight
    /// requests at a time, so a thousand nodes take seconds). Existing nodes are kept.
    pub fn add_nodes(
        &self,
        prefix: &str,
        n: usize,
        labels: &serde_json::Value,
        taints: &serde_json::Value,
        capacity: &serde_json::Value,
    ) -> Result<Vec<String>, Error> {
        let names: Vec<String> = (1..=n).map(|i| format!("{prefix}-{i}")).collect();
        self.add_named_nodes(&names, labels, taints, capacity)?;
        Ok(names)
    }

    /// Creates kwok nodes named `names`, as [`Env::add_nodes`] does.
    pub fn add_named_nodes(
        &self,
        names: &[String],
        labels: &serde_json::Value,
        taints: &serde_json::Value,
        capacity: &serde_json::Value,
    ) -> Result<(), Error> {
        let api = self.api()?;
        let node = |name: &str| {
            let mut node_labels = json!({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "type": "kwok"});
            if let (Some(m), Some(extra)) = (node_labels.as_object_mut(), labels.as_object()) {
                m.extend(extra.clone());
            }
            let mut cap =
                json!({"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "200Gi"});
            if let (Some(m), Some(extra)) = (cap.as_object_mut(), capacity.as_object()) {
                m.extend(extra.clone());
            }
            json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": node_labels,
                             "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"}},
                "spec": {"taints": taints},
                "status": {"capacity": cap, "allocatable": cap},
            })
        };
        let chunk = names.len().div_ceil(8).max(1);
        std::thread::scope(|s| {
            let workers: Vec<_> = names
                .chunks(chunk)
                .map(|part| {
                    let api = &api;
                    s.spawn(move || {
                        part.iter().try_for_each(|name| {
                            api.create("/api/v1/nodes", &node(name)).map(|_| ())
                        })
                    })
                })
                .collect();
            workers
                .into_iter()
                .try_for_each(|w| w.join().expect("a node-creating thread does not panic"))
        })
    }
}

/// Makes sure the registry host names resolve to 127.0.0.1 (helm speaks plain HTTP to a
/// registry addressed by a loopback IP, so names are needed).
pub fn ensure_hosts() -> Result<(), Error> {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let missing: Vec<&str> = [VENDOR_HOST, PRIVATE_HOST, TOKEN_HOST]
        .into_iter()
        .filter(|h| {
            !hosts.lines().any(|l| {
                !l.trim_start().starts_with('#') && l.split_whitespace().skip(1).any(|w| w == *h)
            })
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let line = format!("127.0.0.1 {}\n", missing.join(" "));
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open("/etc/hosts")
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| Error::Missing {
            what: format!("/etc/hosts entries for {}", missing.join(", ")),
            fix: format!("add `{}` to /etc/hosts ({e})", line.trim()),
        })
}

/// Starts the environment, or returns the running one. `report` hears progress.
pub fn up(report: &mut dyn FnMut(&str)) -> Result<Env, Error> {
    if let Some(env) = Env::find() {
        // A running environment keeps the role it started with: bring it to this version's,
        // so a permission added since is there (and a missing one shows).
        if let Ok(api) = env.api() {
            let _ = api.merge_patch(
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/wallaroo",
                &json!({"rules": rbac::cluster_role()["rules"]}),
            );
        }
        return Ok(env);
    }
    let bins = provision(report)?;
    ensure_hosts()?;
    let run_dir = paths::run_dir();
    if let Ok(text) = std::fs::read_to_string(state_file(&run_dir))
        && let Ok(stale) = serde_json::from_str::<Env>(&text)
    {
        stale.down();
    }
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir).map_err(|e| Error::io(&run_dir, e))?;
    ensure_disk(&run_dir)?;
    report("starting the control plane");
    let mut started: Vec<u32> = Vec::new();
    let result = start_all(&bins, &run_dir, &mut started, report);
    if result.is_err() {
        for pid in started.into_iter().rev() {
            stop(pid, Duration::from_secs(2));
        }
    }
    let env = result?;
    let text = serde_json::to_string_pretty(&env).expect("state serializes");
    std::fs::write(state_file(&run_dir), text).map_err(|e| Error::io(&run_dir, e))?;
    Ok(env)
}

/// The space the environment needs on the disk of its run directory: etcd preallocates its
/// write-ahead log (64 MiB a file) and exits when it cannot, and the two registries hold the
/// seeded presets (the `release` preset is 1.5 GB in each).
const MIN_FREE_BYTES: u64 = 4 << 30;

/// Refuses to start on a nearly full disk, saying so, instead of letting etcd or a registry
/// die half-way with a log that hides the cause.
fn ensure_disk(run_dir: &Path) -> Result<(), Error> {
    match crate::process::free_bytes(run_dir) {
        Some(free) if free < MIN_FREE_BYTES => Err(Error::Missing {
            what: format!(
                "disk space for the test environment ({} MiB free on the disk of {}, {} MiB needed)",
                free >> 20,
                run_dir.display(),
                MIN_FREE_BYTES >> 20
            ),
            fix: "free space there (an old `target/debug` is often most of it: `cargo clean`)"
                .into(),
        }),
        _ => Ok(()),
    }
}

fn start_all(
    bins: &Binaries,
    run_dir: &Path,
    started: &mut Vec<u32>,
    report: &mut dyn FnMut(&str),
) -> Result<Env, Error> {
    let pki = Pki::create(&run_dir.join("pki"))?;
    pki.issue(
        "apiserver",
        &[
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default.svc",
        ],
    )?;
    pki.issue(
        "registry",
        &[VENDOR_HOST, PRIVATE_HOST, TOKEN_HOST, "127.0.0.1"],
    )?;
    pki.self_signed("token-signer", "wallaroo-testenv token signer")?;
    pki.key_pair("sa")?;
    let mut procs = BTreeMap::new();
    let arg = |k: &str, v: &dyn std::fmt::Display| format!("--{k}={v}");

    // etcd
    let (etcd_port, peer_port) = (free_port(), free_port());
    let mut cmd = Command::new(&bins.etcd);
    cmd.arg(arg("data-dir", &run_dir.join("etcd").display()))
        .arg(arg(
            "listen-client-urls",
            &format!("http://127.0.0.1:{etcd_port}"),
        ))
        .arg(arg(
            "advertise-client-urls",
            &format!("http://127.0.0.1:{etcd_port}"),
        ))
        .arg(arg(
            "listen-peer-urls",
            &format!("http://127.0.0.1:{peer_port}"),
        ))
        .arg(arg(
            "initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer_port}"),
        ))
        .arg(arg(
            "initial-cluster",
            &format!("default=http://127.0.0.1:{peer_port}"),
        ))
        .arg("--unsafe-no-fsync")
        .arg(arg("quota-backend-bytes", &(4u64 << 30)));
    let pid = spawn("etcd", cmd, run_dir)?;
    started.push(pid);
    let plain = reqwest::blocking::Client::new();
    wait_until("etcd", pid, Duration::from_secs(30), run_dir, || {
        plain
            .get(format!("http://127.0.0.1:{etcd_port}/health"))
            .send()
            .is_ok_and(|r| r.status().is_success())
    })?;
    procs.insert(
        "etcd".into(),
        Proc {
            pid,
            port: etcd_port,
        },
    );

    // kube-apiserver, with a static token for the admin.
    let admin_token = random_token(24);
    let tokens = pki.dir.join("tokens.csv");
    std::fs::write(
        &tokens,
        format!("{admin_token},admin,admin,system:masters\n"),
    )
    .map_err(|e| Error::io(&tokens, e))?;
    // The audit log: every request that may change something (reads, the Leases that locks
    // and heartbeats renew, and events left out), so a test can tell what an identity wrote.
    let audit_policy = run_dir.join("audit-policy.yaml");
    std::fs::write(&audit_policy, AUDIT_POLICY).map_err(|e| Error::io(&audit_policy, e))?;
    let api_port = free_port();
    let mut cmd = Command::new(&bins.kube_apiserver);
    cmd.arg(arg(
        "etcd-servers",
        &format!("http://127.0.0.1:{etcd_port}"),
    ))
    .arg(arg("bind-address", &"127.0.0.1"))
    .arg(arg("advertise-address", &"127.0.0.1"))
    .arg(arg("secure-port", &api_port))
    .arg(arg("tls-cert-file", &pki.cert("apiserver").display()))
    .arg(arg("tls-private-key-file", &pki.key("apiserver").display()))
    .arg(arg("client-ca-file", &pki.ca_cert().display()))
    .arg(arg("token-auth-file", &tokens.display()))
    .arg(arg(
        "service-account-issuer",
        &"https://kubernetes.default.svc.cluster.local",
    ))
    .arg(arg(
        "service-account-key-file",
        &pki.dir.join("sa.pub").display(),
    ))
    .arg(arg(
        "service-account-signing-key-file",
        &pki.key("sa").display(),
    ))
    .arg(arg("authorization-mode", &"RBAC"))
    .arg(arg("service-cluster-ip-range", &"10.96.0.0/16"))
    .arg(arg("allow-privileged", &true))
    .arg(arg("audit-policy-file", &audit_policy.display()))
    .arg(arg("audit-log-path", &audit_log(run_dir).display()))
    .arg(arg("audit-log-maxsize", &200))
    .arg(arg("audit-log-maxbackup", &1));
    let pid = spawn("kube-apiserver", cmd, run_dir)?;
    started.push(pid);
    let api = KubeApi::new(
        &format!("https://127.0.0.1:{api_port}"),
        &admin_token,
        &pki.ca_cert(),
    )?;
    wait_until(
        "kube-apiserver",
        pid,
        Duration::from_secs(60),
        run_dir,
        || api.ready(),
    )?;
    procs.insert(
        "kube-apiserver".into(),
        Proc {
            pid,
            port: api_port,
        },
    );

    let server = format!("https://127.0.0.1:{api_port}");
    let admin_kubeconfig = run_dir.join("admin.kubeconfig");
    write_kubeconfig(
        &admin_kubeconfig,
        &server,
        &pki.ca_cert(),
        "admin",
        &admin_token,
    )?;

    // Controllers, scheduler and kwok.
    let cm_port = free_port();
    let mut cmd = Command::new(&bins.kube_controller_manager);
    cmd.arg(arg("kubeconfig", &admin_kubeconfig.display()))
        .arg(arg(
            "authentication-kubeconfig",
            &admin_kubeconfig.display(),
        ))
        .arg(arg("authorization-kubeconfig", &admin_kubeconfig.display()))
        .arg(arg(
            "service-account-private-key-file",
            &pki.key("sa").display(),
        ))
        .arg(arg("root-ca-file", &pki.ca_cert().display()))
        .arg("--use-service-account-credentials")
        .arg("--leader-elect=false")
        .arg(arg("bind-address", &"127.0.0.1"))
        .arg(arg("secure-port", &cm_port))
        .arg(arg(
            "controllers",
            &"*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
        ));
    let pid = spawn("kube-controller-manager", cmd, run_dir)?;
    started.push(pid);
    procs.insert(
        "kube-controller-manager".into(),
        Proc { pid, port: cm_port },
    );

    let sched_port = free_port();
    let mut cmd = Command::new(&bins.kube_scheduler);
    cmd.arg(arg("kubeconfig", &admin_kubeconfig.display()))
        .arg(arg(
            "authentication-kubeconfig",
            &admin_kubeconfig.display(),
        ))
        .arg(arg("authorization-kubeconfig", &admin_kubeconfig.display()))
        .arg("--leader-elect=false")
        .arg(arg("bind-address", &"127.0.0.1"))
        .arg(arg("secure-port", &sched_port));
    let pid = spawn("kube-scheduler", cmd, run_dir)?;
    started.push(pid);
    procs.insert(
        "kube-scheduler".into(),
        Proc {
            pid,
            port: sched_port,
        },
    );

    let kwok_port = free_port();
    let mut cmd = Command::new(&bins.kwok);
    cmd.arg(arg("kubeconfig", &admin_kubeconfig.display()))
        .arg("--manage-all-nodes=false")
        // Leases keep the node lifecycle controller from marking kwok nodes NotReady.
        .arg("--node-lease-duration-seconds=40")
        .arg(arg(
            "manage-nodes-with-annotation-selector",
            &"kwok.x-k8s.io/node=fake",
        ))
        .arg(arg("server-address", &format!("127.0.0.1:{kwok_port}")));
    let pid = spawn("kwok", cmd, run_dir)?;
    started.push(pid);
    procs.insert(
        "kwok".into(),
        Proc {
            pid,
            port: kwok_port,
        },
    );

    // The wallaroo ServiceAccount and its exact RBAC.
    report("creating the least-privilege ServiceAccount");
    api.create(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "wallaroo-system"}}),
    )?;
    api.create(
        "/api/v1/namespaces/wallaroo-system/serviceaccounts",
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "wallaroo"}}),
    )?;
    api.create(
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        &rbac::cluster_role(),
    )?;
    api.create(
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        &json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "wallaroo"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "wallaroo"},
            "subjects": [{"kind": "ServiceAccount", "name": "wallaroo", "namespace": "wallaroo-system"}],
        }),
    )?;
    api.create(
        "/api/v1/namespaces/wallaroo-system/secrets",
        &json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
            "metadata": {"name": "wallaroo-token", "annotations": {"kubernetes.io/service-account.name": "wallaroo"}},
        }),
    )?;
    let mut sa_token = String::new();
    wait_until(
        "kube-controller-manager",
        pid_of(&procs, "kube-controller-manager"),
        Duration::from_secs(60),
        run_dir,
        || {
            let token = api
                .get("/api/v1/namespaces/wallaroo-system/secrets/wallaroo-token")
                .ok()
                .and_then(|s| s["data"]["token"].as_str().map(String::from));
            match token.and_then(|t| base64_decode(&t)) {
                Some(t) => {
                    sa_token = t;
                    true
                }
                None => false,
            }
        },
    )?;
    let kubeconfig = run_dir.join("wallaroo.kubeconfig");
    write_kubeconfig(&kubeconfig, &server, &pki.ca_cert(), "wallaroo", &sa_token)?;

    // Registries.
    report("starting the registries");
    let vendor = start_registry(
        "vendor-registry",
        VENDOR_HOST,
        &bins.registry,
        &pki,
        run_dir,
        None,
    )?;
    started.push(vendor.proc.pid);
    let private = start_registry(
        "private-registry",
        PRIVATE_HOST,
        &bins.registry,
        &pki,
        run_dir,
        None,
    )?;
    started.push(private.proc.pid);

    // The token-auth registry and its issuer.
    let exe = std::env::current_exe().map_err(|e| Error::io(Path::new("current_exe"), e))?;
    let helper = sibling_binary(&exe)?;
    let issuer_port = free_port();
    let token_password = random_token(12);
    let mut cmd = Command::new(&helper);
    cmd.args(["token-issuer", "--port", &issuer_port.to_string()])
        .env("WALLAROO_TESTENV_RUN", run_dir)
        .env("WALLAROO_TESTENV_TOKEN_PASSWORD", &token_password);
    let pid = spawn("token-issuer", cmd, run_dir)?;
    started.push(pid);
    procs.insert(
        "token-issuer".into(),
        Proc {
            pid,
            port: issuer_port,
        },
    );
    let token_auth = format!(
        "auth:\n  token:\n    realm: https://{TOKEN_HOST}:{issuer_port}/token\n    service: {TOKEN_SERVICE}\n    issuer: {}\n    rootcertbundle: {}\n",
        crate::tokenauth::ISSUER_NAME,
        pki.cert("token-signer").display()
    );
    let mut token = start_registry(
        "token-registry",
        TOKEN_HOST,
        &bins.registry,
        &pki,
        run_dir,
        Some(&token_auth),
    )?;
    started.push(token.proc.pid);
    token.username = TOKEN_USER.into();
    token.password = token_password;

    // toxiproxy, with a proxy in front of the vendor registry and one in front of the API
    // server, for WAN latency and network faults.
    let toxi_port = free_port();
    let mut cmd = Command::new(&bins.toxiproxy);
    cmd.args(["-host", "127.0.0.1", "-port", &toxi_port.to_string()]);
    let pid = spawn("toxiproxy", cmd, run_dir)?;
    started.push(pid);
    let toxiproxy_url = format!("http://127.0.0.1:{toxi_port}");
    wait_until("toxiproxy", pid, Duration::from_secs(20), run_dir, || {
        plain
            .get(format!("{toxiproxy_url}/version"))
            .send()
            .is_ok_and(|r| r.status().is_success())
    })?;
    procs.insert(
        "toxiproxy".into(),
        Proc {
            pid,
            port: toxi_port,
        },
    );
    let mut proxies = BTreeMap::new();
    for (name, upstream) in [
        ("vendor-registry", vendor.proc.port),
        ("kube-apiserver", api_port),
    ] {
        let listen = free_port();
        let r = plain
            .post(format!("{toxiproxy_url}/proxies"))
            .json(&json!({"name": name, "listen": format!("127.0.0.1:{listen}"), "upstream": format!("127.0.0.1:{upstream}"), "enabled": true}))
            .send()
            .map_err(|e| Error::Api { what: "toxiproxy".into(), message: e.to_string() })?;
        if !r.status().is_success() {
            return Err(Error::Api {
                what: format!("toxiproxy proxy {name}"),
                message: r.status().to_string(),
            });
        }
        proxies.insert(name.to_string(), listen);
    }

    // Keycloak, under /auth as in a Wallaroo install.
    report("starting Keycloak");
    let kc_port = free_port();
    let keycloak_password = random_token(12);
    let mut cmd = Command::new(bins.keycloak_home.join("bin/kc.sh"));
    // An H2 file in the run directory: fresh per environment, and unlike dev-mem it does
    // not vanish when the pool closes its last idle connection.
    let kc_db = run_dir.join("keycloak").join("keycloakdb");
    cmd.args([
        "start-dev",
        "--db=dev-file",
        "--http-host=127.0.0.1",
        "--http-relative-path=/auth",
    ])
    .arg(arg(
        "db-url",
        &format!("jdbc:h2:file:{};NON_KEYWORDS=VALUE", kc_db.display()),
    ))
    .arg(arg("http-port", &kc_port))
    .arg(arg("http-management-port", &free_port()))
    .env("KC_BOOTSTRAP_ADMIN_USERNAME", KEYCLOAK_ADMIN)
    .env("KC_BOOTSTRAP_ADMIN_PASSWORD", &keycloak_password);
    let pid = spawn("keycloak", cmd, run_dir)?;
    started.push(pid);
    let keycloak_url = format!("http://127.0.0.1:{kc_port}/auth");
    wait_until("keycloak", pid, Duration::from_secs(240), run_dir, || {
        plain
            .get(format!("{keycloak_url}/realms/master"))
            .send()
            .is_ok_and(|r| r.status().is_success())
    })?;
    procs.insert("keycloak".into(), Proc { pid, port: kc_port });

    // The LoadBalancer test double.
    let mut cmd = Command::new(&helper);
    cmd.arg("lb-double").env("WALLAROO_TESTENV_RUN", run_dir);
    let pid = spawn("lb-double", cmd, run_dir)?;
    started.push(pid);
    procs.insert("lb-double".into(), Proc { pid, port: 0 });

    // kwok must be managing nodes before the environment counts as up.
    wait_until(
        "kwok",
        pid_of(&procs, "kwok"),
        Duration::from_secs(30),
        run_dir,
        || {
            plain
                .get(format!("http://127.0.0.1:{kwok_port}/healthz"))
                .send()
                .is_ok_and(|r| r.status().is_success())
        },
    )?;

    Ok(Env {
        run_dir: run_dir.to_path_buf(),
        ca_file: pki.ca_cert(),
        helm: bins.helm.clone(),
        kubeconfig,
        admin_kubeconfig,
        admin_token,
        api_port,
        procs,
        vendor,
        private,
        token,
        proxies,
        keycloak_url,
        keycloak_password,
        toxiproxy_url,
    })
}

/// The `wallaroo-testenv` binary next to a test binary or itself, built if a test of
/// another crate runs before it exists.
fn sibling_binary(exe: &Path) -> Result<PathBuf, Error> {
    if exe.file_name().is_some_and(|n| n == "wallaroo-testenv") {
        return Ok(exe.to_path_buf());
    }
    // Test binaries live in target/<profile>/deps; the binary in target/<profile>.
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("wallaroo-testenv");
    if !bin.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-p",
            "wallaroo-testenv",
            "--bin",
            "wallaroo-testenv",
        ]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        crate::process::run("cargo build -p wallaroo-testenv", &mut cmd)?;
    }
    Ok(bin)
}

fn pid_of(procs: &BTreeMap<String, Proc>, name: &str) -> u32 {
    procs[name].pid
}

fn base64_decode(s: &str) -> Option<String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    user: &str,
    token: &str,
) -> Result<(), Error> {
    use base64::Engine;
    let ca_data = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(ca).map_err(|e| Error::io(ca, e))?);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: testenv\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca_data}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: {user}@testenv\n  context:\n    cluster: testenv\n    user: {user}\ncurrent-context: {user}@testenv\n"
    );
    std::fs::write(path, text).map_err(|e| Error::io(path, e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(path, e))
}

/// The `service` of the token registry, and the user its issuer knows.
pub const TOKEN_SERVICE: &str = "wallaroo-testenv-token-registry";
pub const TOKEN_USER: &str = "token-user";

/// Starts a registry with htpasswd auth, or with `auth` (a YAML `auth:` section) instead.
fn start_registry(
    name: &str,
    host: &str,
    program: &Path,
    pki: &Pki,
    run_dir: &Path,
    auth: Option<&str>,
) -> Result<Registry, Error> {
    let port = free_port();
    let dir = run_dir.join(name);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let username = format!("{}-user", name.trim_end_matches("-registry"));
    let password = random_token(12);
    let htpasswd = dir.join("htpasswd");
    crate::process::run(
        "htpasswd",
        Command::new("htpasswd")
            .args(["-Bbc"])
            .arg(&htpasswd)
            .args([&username, &password]),
    )?;
    let config = dir.join("config.yml");
    let htpasswd_auth = format!(
        "auth:\n  htpasswd:\n    realm: wallaroo-testenv\n    path: {}\n",
        htpasswd.display()
    );
    let yaml = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: {secret}\n  tls:\n    certificate: {cert}\n    key: {key}\n{auth}",
        storage = dir.join("storage").display(),
        secret = random_token(16),
        cert = pki.cert("registry").display(),
        key = pki.key("registry").display(),
        auth = auth.unwrap_or(&htpasswd_auth),
    );
    std::fs::write(&config, yaml).map_err(|e| Error::io(&config, e))?;
    let mut cmd = Command::new(program);
    cmd.arg("serve").arg(&config);
    let pid = spawn(name, cmd, run_dir)?;
    let client = https_client(&pki.ca_cert())?;
    wait_until(name, pid, Duration::from_secs(20), run_dir, || {
        client
            .get(format!("https://{host}:{port}/v2/"))
            .send()
            .is_ok_and(|r| r.status() == reqwest::StatusCode::UNAUTHORIZED)
    })?;
    Ok(Registry {
        proc: Proc { pid, port },
        host: host.into(),
        username,
        password,
    })
}
