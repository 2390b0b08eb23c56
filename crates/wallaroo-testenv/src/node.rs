//! A real node joined to the test control plane, beside the kwok nodes: the kubelet of the
//! same Kubernetes build, containerd 2.x with runc, the CNI bridge, host-local and loopback
//! plugins, and crictl, each built from the Go module proxy ([`crate::provision::node_binaries`]).
//! Unlike a kwok node it pulls images and runs containers, so what it shows is what a
//! customer's node does: whether it trusts the private registry's CA, has the pull secret,
//! finds every reference and its platform.
//!
//! It is configured the way an air-gapped operator configures a node:
//! - the CA of the private registry goes to containerd's `certs.d/HOST:PORT/ca.crt`
//!   ([`RealNode::trust_ca`] puts it there or takes it away; containerd reads the directory
//!   on every pull, no restart);
//! - the sandbox (pause) image is the private registry's, loaded onto the node before the
//!   kubelet starts (as operators load it: the CRI pulls a sandbox image without pull
//!   secrets), never taken from the internet.
//!
//! The node carries the taint [`REAL_NODE_TAINT`], so only pods that tolerate it run there:
//! the tests that share the environment schedule onto kwok nodes as before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Error;
use crate::env::{Env, Proc, Registry};
use crate::process::{alive, free_port, spawn, stop, wait_until};
use crate::provision::{NodeBinaries, node_binaries};

/// The taint every real node carries: `key=value:Effect`.
pub const REAL_NODE_TAINT: &str = "wallaroo-testenv/real-node=true:NoSchedule";
/// Where the sandbox image lives in the private registry.
pub const PAUSE_REPOSITORY: &str = "wallaroo-testenv/pause";
pub const PAUSE_TAG: &str = "1";

/// How to make a real node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Whether containerd trusts the private registry's CA from the start.
    pub trust_ca: bool,
    /// The sandbox image: `None` for the private registry's (loaded onto the node), or a
    /// reference the node must pull itself (e.g. `registry.k8s.io/pause:3.10`, which cannot
    /// be reached here: the air-gap mistake of a node left at containerd's default).
    pub sandbox_image: Option<String>,
    /// Node labels (`wallaroo.ai/...`; the kubelet may not set `kubernetes.io` ones).
    pub labels: BTreeMap<String, String>,
    /// Taints beside [`REAL_NODE_TAINT`], as `key=value:Effect`.
    pub taints: Vec<String>,
}

impl Default for NodeOptions {
    fn default() -> NodeOptions {
        NodeOptions {
            trust_ca: true,
            sandbox_image: None,
            labels: BTreeMap::new(),
            taints: Vec::new(),
        }
    }
}

/// A running real node, recorded in the environment's state file so `down` stops it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RealNode {
    pub name: String,
    pub dir: PathBuf,
    pub containerd: Proc,
    pub kubelet: Proc,
    /// containerd's socket (for crictl and ctr).
    pub socket: PathBuf,
    /// The Linux bridge its pods attach to.
    pub bridge: String,
    /// The sandbox image its containerd uses.
    pub sandbox_image: String,
    /// `crictl`, for tests that look at the node's runtime.
    pub crictl: PathBuf,
}

impl RealNode {
    /// containerd's registry configuration directory (`config_path`).
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join("certs.d")
    }

    /// The CA file containerd reads for `registry` (`certs.d/HOST:PORT/ca.crt`).
    pub fn ca_path(&self, registry: &Registry) -> PathBuf {
        self.certs_dir().join(registry.address()).join("ca.crt")
    }

    /// Puts the environment's CA where containerd looks for `registry`'s, or removes it.
    pub fn trust_ca(&self, env: &Env, registry: &Registry, trust: bool) -> Result<(), Error> {
        let path = self.ca_path(registry);
        if trust {
            let dir = path.parent().expect("a directory");
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            std::fs::copy(&env.ca_file, &path).map_err(|e| Error::io(&path, e))?;
        } else if path.exists() {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }

    /// `crictl` against this node's containerd, e.g. `["images", "-o", "json"]`.
    pub fn crictl(&self, args: &[&str]) -> Result<String, Error> {
        crate::process::run(
            &format!("crictl {}", args.join(" ")),
            Command::new(&self.crictl)
                .arg("--runtime-endpoint")
                .arg(format!("unix://{}", self.socket.display()))
                .arg("--timeout=20s")
                .args(args),
        )
    }

    /// Stops the node: its pods, the kubelet, containerd and every shim, its mounts, its
    /// bridge and its Node object; removes its directory.
    pub fn stop(&self, env: &Env) {
        if alive(self.containerd.pid) {
            let _ = self.crictl(&["rmp", "--all", "--force"]);
        }
        stop(self.kubelet.pid, Duration::from_secs(5));
        stop(self.containerd.pid, Duration::from_secs(5));
        kill_shims(&self.socket);
        unmount_under(&self.dir);
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .stderr(std::process::Stdio::null())
            .status();
        remove_cgroups(&cgroup_name(&self.name, &self.dir));
        if let Ok(api) = env.api() {
            let _ = api.delete(&format!("/api/v1/nodes/{}", self.name));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The architecture Go and OCI call this machine's.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

impl Env {
    /// Starts a real node named `name` (a Node of that name must not exist) and waits until
    /// it is Ready. Builds the node's programs the first time (minutes, once).
    pub fn start_real_node(&self, name: &str, opts: &NodeOptions) -> Result<RealNode, Error> {
        let bins = node_binaries(&mut |m| eprintln!("wallaroo-testenv: {m}"))?;
        let _lock = crate::env::state_lock(&self.run_dir)?;
        let index = next_bridge_index(&self.real_nodes());
        let dir = self.run_dir.join("nodes").join(name);
        if let Some(old) = self.real_nodes().remove(name) {
            old.stop(self);
            self.forget_real_node(name)?;
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;

        // The sandbox image: the private registry's, loaded onto the node below.
        let private_pause = format!("{}/{PAUSE_REPOSITORY}:{PAUSE_TAG}", self.private.address());
        let sandbox_image = opts
            .sandbox_image
            .clone()
            .unwrap_or_else(|| private_pause.clone());
        if opts.sandbox_image.is_none() {
            crate::seed::app_image(
                self,
                &self.private,
                PAUSE_REPOSITORY,
                PAUSE_TAG,
                &[host_arch()],
            )?;
        }

        let bridge = format!("wtbr{index}");
        let subnet = format!("10.88.{index}.0/24");
        let socket = dir.join("containerd.sock");
        let node = RealNode {
            name: name.into(),
            dir: dir.clone(),
            containerd: Proc { pid: 0, port: 0 },
            kubelet: Proc { pid: 0, port: 0 },
            socket: socket.clone(),
            bridge: bridge.clone(),
            sandbox_image: sandbox_image.clone(),
            crictl: bins.crictl.clone(),
        };
        let mut node = node;
        let started = self.start_processes(&bins, &mut node, opts, &subnet, &private_pause);
        if let Err(e) = started {
            node.stop(self);
            return Err(e);
        }
        self.record_real_node(&node)?;
        Ok(node)
    }

    fn start_processes(
        &self,
        bins: &NodeBinaries,
        node: &mut RealNode,
        opts: &NodeOptions,
        subnet: &str,
        private_pause: &str,
    ) -> Result<(), Error> {
        let dir = node.dir.clone();
        let write = |path: &Path, text: &str| -> Result<(), Error> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            std::fs::write(path, text).map_err(|e| Error::io(path, e))
        };
        if opts.trust_ca {
            node.trust_ca(self, &self.private, true)?;
        } else {
            std::fs::create_dir_all(node.certs_dir()).map_err(|e| Error::io(&dir, e))?;
        }
        write(
            &dir.join("net.d/10-bridge.conflist"),
            &serde_json::to_string_pretty(&json!({
                "cniVersion": "1.0.0",
                "name": format!("wallaroo-testenv-{}", node.name),
                "plugins": [{
                    "type": "bridge", "bridge": node.bridge, "isGateway": true,
                    "ipMasq": false, "hairpinMode": true,
                    "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                             "dataDir": dir.join("cni-ipam")},
                }],
            }))
            .expect("JSON"),
        )?;
        let q = |p: &Path| format!("'{}'", p.display());
        write(
            &dir.join("containerd.toml"),
            &format!(
                r#"version = 4
root = {root}
state = {state}
imports = []
disabled_plugins = ['io.containerd.nri.v1.nri']

[plugins.'io.containerd.server.v1.grpc']
  address = {socket}
[plugins.'io.containerd.server.v1.ttrpc']
  address = {ttrpc}
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '{sandbox}'
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = {certs}
[plugins.'io.containerd.cri.v1.runtime']
  netns_mounts_under_state_dir = true
  # This machine's root lacks CAP_SYS_RESOURCE: no score below containerd's own.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = 'io.containerd.runc.v2'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = {runc}
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [{cni}]
    conf_dir = {netd}
"#,
                root = q(&dir.join("containerd/root")),
                state = q(&dir.join("containerd/state")),
                socket = q(&node.socket),
                ttrpc = q(&dir.join("containerd.sock.ttrpc")),
                sandbox = node.sandbox_image,
                certs = q(&node.certs_dir()),
                runc = q(&bins.runc),
                cni = q(&bins.cni_dir),
                netd = q(&dir.join("net.d")),
            ),
        )?;
        let path = format!(
            "{}:{}",
            bins.containerd_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(bins.containerd_dir.join("containerd"));
        cmd.arg("--config")
            .arg(dir.join("containerd.toml"))
            .env("PATH", &path);
        let log_name = format!("containerd-{}", node.name);
        let pid = spawn(&log_name, cmd, &self.run_dir)?;
        node.containerd = Proc { pid, port: 0 };
        let ctr = bins.containerd_dir.join("ctr");
        wait_until(
            &log_name,
            pid,
            Duration::from_secs(30),
            &self.run_dir,
            || {
                Command::new(&ctr)
                    .arg("--address")
                    .arg(&node.socket)
                    .arg("version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            },
        )?;

        // Load the sandbox image as an operator does, through a hosts directory that
        // trusts the CA whatever the node's own says.
        if opts.sandbox_image.is_none() {
            let kit_hosts = dir.join("kit-certs.d");
            let ca = kit_hosts.join(self.private.address()).join("ca.crt");
            write(
                &ca,
                &std::fs::read_to_string(&self.ca_file).map_err(|e| Error::io(&self.ca_file, e))?,
            )?;
            crate::process::run(
                "ctr images pull (the sandbox image)",
                Command::new(&ctr)
                    .arg("--address")
                    .arg(&node.socket)
                    .args(["--namespace", "k8s.io", "images", "pull", "--hosts-dir"])
                    .arg(&kit_hosts)
                    .arg("--user")
                    .arg(format!(
                        "{}:{}",
                        self.private.username, self.private.password
                    ))
                    .arg(private_pause),
            )?;
        }

        // The kubelet, in a cgroup subtree of its own so that several real nodes on one
        // machine never take each other's pods for orphans.
        let cgroup = cgroup_name(&node.name, &dir);
        let cgroup_root = format!("/wallaroo-testenv/{cgroup}");
        make_cgroups(&cgroup)?;
        let port = free_port();
        let healthz = free_port();
        let mut taints = vec![REAL_NODE_TAINT.to_string()];
        taints.extend(opts.taints.iter().cloned());
        let taints: Vec<serde_json::Value> = taints
            .iter()
            .filter_map(|t| {
                let (kv, effect) = t.rsplit_once(':')?;
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                Some(json!({"key": k, "value": v, "effect": effect}))
            })
            .collect();
        let config = json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": "127.0.0.1",
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "authentication": {"anonymous": {"enabled": true}, "webhook": {"enabled": false}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": cgroup_root,
            "failSwapOn": false,
            "failCgroupV1": false,
            "containerRuntimeEndpoint": format!("unix://{}", node.socket.display()),
            "registerWithTaints": taints,
            "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": false,
            "resolvConf": "/etc/resolv.conf",
            "podLogsDir": dir.join("pod-logs"),
            "podCIDR": subnet,
            "maxPods": 30,
        });
        write(
            &dir.join("kubelet.yaml"),
            &serde_json::to_string_pretty(&config).expect("JSON"),
        )?;
        let labels: Vec<String> = opts
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut cmd = Command::new(&bins.kubelet);
        cmd.arg(format!("--config={}", dir.join("kubelet.yaml").display()))
            .arg(format!("--kubeconfig={}", self.admin_kubeconfig.display()))
            .arg(format!("--root-dir={}", dir.join("kubelet").display()))
            .arg(format!("--cert-dir={}", dir.join("kubelet-pki").display()))
            .arg(format!("--hostname-override={}", node.name));
        if !labels.is_empty() {
            cmd.arg(format!("--node-labels={}", labels.join(",")));
        }
        let log_name = format!("kubelet-{}", node.name);
        let pid = spawn(&log_name, cmd, &self.run_dir)?;
        node.kubelet = Proc { pid, port };
        let api = self.api()?;
        let started = Instant::now();
        wait_until(
            &log_name,
            pid,
            Duration::from_secs(120),
            &self.run_dir,
            || {
                // A Node object left by an earlier node of this name is not this one.
                api.get(&format!("/api/v1/nodes/{}", node.name))
                    .ok()
                    .filter(|n| {
                        n["status"]["nodeInfo"]["containerRuntimeVersion"]
                            .as_str()
                            .is_some_and(|v| v.starts_with("containerd://"))
                    })
                    .and_then(|n| {
                        n["status"]["conditions"].as_array().map(|c| {
                            c.iter().any(|c| {
                                c["type"] == "Ready"
                                    && c["status"] == "True"
                                    && started.elapsed() > Duration::from_millis(500)
                            })
                        })
                    })
                    .unwrap_or(false)
            },
        )?;
        Ok(())
    }

    /// The real nodes this environment runs, by name.
    pub fn real_nodes(&self) -> BTreeMap<String, RealNode> {
        crate::env::read_real_nodes(&self.run_dir)
    }

    fn record_real_node(&self, node: &RealNode) -> Result<(), Error> {
        crate::env::update_real_nodes(&self.run_dir, |nodes| {
            nodes.insert(node.name.clone(), node.clone());
        })
    }

    fn forget_real_node(&self, name: &str) -> Result<(), Error> {
        crate::env::update_real_nodes(&self.run_dir, |nodes| {
            nodes.remove(name);
        })
    }

    /// Stops the real node `name` and forgets it.
    pub fn stop_real_node(&self, name: &str) -> Result<(), Error> {
        let _lock = crate::env::state_lock(&self.run_dir)?;
        if let Some(node) = self.real_nodes().remove(name) {
            node.stop(self);
        }
        self.forget_real_node(name)
    }
}

/// A bridge index no recorded real node and no existing link uses (bridges are named
/// `wtbrN`, subnets `10.88.N.0/24`; a bridge appears with a node's first pod).
fn next_bridge_index(nodes: &BTreeMap<String, RealNode>) -> usize {
    (1..250)
        .find(|i| {
            let name = format!("wtbr{i}");
            !nodes.values().any(|n| n.bridge == name)
                && !Path::new("/sys/class/net").join(&name).exists()
        })
        .unwrap_or(250)
}

/// The node's cgroup under `/wallaroo-testenv`: its name and a hash of its directory, so two
/// environments on one machine (a sandbox and a fresh run beside it) never share one.
fn cgroup_name(name: &str, dir: &Path) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in dir.as_os_str().as_encoded_bytes() {
        h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
    }
    format!("{name}-{h:08x}")
}

/// The cgroup v1 hierarchies (or the v2 one) the kubelet manages.
fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let v1: Vec<PathBuf> = [
        "cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer", "blkio", "hugetlb",
        "systemd",
    ]
    .iter()
    .map(|c| base.join(c))
    .filter(|p| p.is_dir())
    .collect();
    let roots = if v1.is_empty() {
        vec![base.to_path_buf()]
    } else {
        v1
    };
    roots
        .into_iter()
        .map(|r| r.join("wallaroo-testenv").join(name))
        .collect()
}

fn make_cgroups(name: &str) -> Result<(), Error> {
    for dir in cgroup_dirs(name) {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        // cpuset children start empty: give them their parent's CPUs and memory nodes.
        if dir.starts_with("/sys/fs/cgroup/cpuset") {
            for parent in [dir.parent().expect("a parent"), dir.as_path()] {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let from = parent.parent().expect("a parent").join(file);
                    if let Ok(v) = std::fs::read_to_string(&from) {
                        let _ = std::fs::write(parent.join(file), v.trim());
                    }
                }
            }
        }
    }
    Ok(())
}

/// Removes the node's cgroups, deepest first (a cgroup with processes stays).
fn remove_cgroups(name: &str) {
    fn remove_tree(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.filter_map(Result::ok) {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    for dir in cgroup_dirs(name) {
        remove_tree(&dir);
    }
}

/// Kills the shims (and so their containers) that served the containerd at `socket`.
fn kill_shims(socket: &Path) {
    let needle = socket.display().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for p in procs.filter_map(Result::ok) {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("containerd-shim") && cmdline.contains(&needle) {
            stop(pid, Duration::from_secs(2));
        }
    }
}

/// Unmounts everything mounted under `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount")
            .args(["-l", p])
            .stderr(std::process::Stdio::null())
            .status();
    }
}
