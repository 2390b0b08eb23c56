//! Builds or fetches each component once, cached by version: Kubernetes, etcd and kwok,
//! helm and toxiproxy from the Go module proxy with the machine's Go toolchain; Keycloak
//! from Maven Central. Idempotent: what is in the cache is not built again.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::paths::{bin, cache_dir};
use crate::process::run;
use crate::{Error, versions as v};

/// Paths of every provisioned component.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kube_scheduler: PathBuf,
    pub kwok: PathBuf,
    pub helm: PathBuf,
    pub toxiproxy: PathBuf,
    pub keycloak_home: PathBuf,
    pub registry: PathBuf,
    pub kubelet: PathBuf,
}

/// Provisions what is missing, one process at a time (a file lock guards the cache).
/// `report` hears what is being built.
pub fn provision(report: &mut dyn FnMut(&str)) -> Result<Binaries, Error> {
    let cache = cache_dir();
    let lock = provision_lock()?;

    let k8s = [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
    ];
    if k8s.iter().any(|n| !bin(n, v::KUBERNETES).exists()) {
        report(&format!(
            "building Kubernetes {} (several minutes, once)",
            v::KUBERNETES
        ));
        build_kubernetes(&k8s)?;
    }
    if !bin("etcd", v::ETCD).exists() {
        report(&format!("building etcd {}", v::ETCD));
        build_etcd()?;
    }
    go_install(
        "kwok",
        &format!("sigs.k8s.io/kwok/cmd/kwok@{}", v::KWOK),
        "kwok",
        v::KWOK,
        report,
    )?;
    go_install(
        "helm",
        &format!("helm.sh/helm/v3/cmd/helm@{}", v::HELM),
        "helm",
        v::HELM,
        report,
    )?;
    go_install(
        "toxiproxy-server",
        &format!(
            "github.com/Shopify/toxiproxy/v2/cmd/server@{}",
            v::TOXIPROXY
        ),
        "server",
        v::TOXIPROXY,
        report,
    )?;
    let keycloak_home = cache.join(format!("keycloak-{}", v::KEYCLOAK));
    if !keycloak_home.join("bin/kc.sh").exists() {
        report(&format!(
            "fetching Keycloak {} from Maven Central",
            v::KEYCLOAK
        ));
        fetch_keycloak(&cache)?;
    }
    // Debian's packages, when this machine lets us install them (root with apt).
    let missing: Vec<&str> = DEBIAN
        .iter()
        .filter(|(tool, _)| which(tool).is_none())
        .map(|(_, deb)| *deb)
        .collect();
    if !missing.is_empty() && which("apt-get").is_some() && is_root() {
        report(&format!("installing {} with apt-get", missing.join(", ")));
        apt_install(&missing)?;
    }
    let registry = which("docker-registry").ok_or_else(|| Error::Missing {
        what: "docker-registry".into(),
        fix: "apt-get install docker-registry apache2-utils (the CNCF distribution registry; .ci/run does it)".into(),
    })?;
    for tool in ["htpasswd", "openssl", "go", "mvn", "unzip"] {
        if which(tool).is_none() {
            return Err(Error::Missing {
                what: tool.into(),
                fix: format!("install {tool} (see .ci/run)"),
            });
        }
    }
    drop(lock);
    Ok(Binaries {
        etcd: bin("etcd", v::ETCD),
        kube_apiserver: bin("kube-apiserver", v::KUBERNETES),
        kube_controller_manager: bin("kube-controller-manager", v::KUBERNETES),
        kube_scheduler: bin("kube-scheduler", v::KUBERNETES),
        kwok: bin("kwok", v::KWOK),
        helm: bin("helm", v::HELM),
        toxiproxy: bin("toxiproxy-server", v::TOXIPROXY),
        keycloak_home,
        registry,
        kubelet: bin("kubelet", v::KUBERNETES),
    })
}

/// The provisioning lock: one process at a time builds or installs into the cache (held until
/// the file is dropped).
fn provision_lock() -> Result<File, Error> {
    let cache = cache_dir();
    std::fs::create_dir_all(cache.join("bin")).map_err(|e| Error::io(&cache, e))?;
    let lock_path = cache.join("provision.lock");
    let lock = File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
    lock.lock().map_err(|e| Error::io(&lock_path, e))?;
    Ok(lock)
}

/// The programs the environment and the tests take from Debian, with their packages.
const DEBIAN: [(&str, &str); 6] = [
    ("docker-registry", "docker-registry"),
    ("htpasswd", "apache2-utils"),
    ("unzip", "unzip"),
    ("skopeo", "skopeo"),
    ("openssl", "openssl"),
    ("nginx", "nginx"),
];

/// Programs only some tests run, installed when one asks ([`program`]), never by `up`.
const ON_DEMAND: [(&str, &str); 1] = [
    // An editor with a built-in LSP client, for the language server's test.
    ("nvim", "neovim"),
];

fn apt_install(packages: &[&str]) -> Result<(), Error> {
    run(
        "apt-get update",
        Command::new("apt-get").args(["update", "-qq"]),
    )?;
    run(
        "apt-get install",
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .map(|_| ())
}

/// A program a test or benchmark runs (skopeo, openssl, ...): found on the PATH, else
/// installed from its Debian package when this machine allows it (root with apt), under the
/// provisioning lock. Otherwise the error names the program and how to get it.
pub fn program(tool: &str) -> Result<PathBuf, Error> {
    if let Some(path) = which(tool) {
        return Ok(path);
    }
    let deb = DEBIAN
        .iter()
        .chain(ON_DEMAND.iter())
        .find(|(t, _)| *t == tool)
        .map(|(_, d)| *d)
        .unwrap_or(tool);
    if which("apt-get").is_some() && is_root() {
        let _lock = provision_lock()?;
        if which(tool).is_none() {
            apt_install(&[deb])?;
        }
    }
    which(tool).ok_or_else(|| Error::Missing {
        what: tool.into(),
        fix: format!("install the Debian package `{deb}` (apt-get install {deb}, as root)"),
    })
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// A program built from the Go module proxy only when a test asks for it (the registry
/// implementations of the matrix, oras), cached by version like the rest.
pub fn go_program(name: &str) -> Result<PathBuf, Error> {
    let (version, pkg, built) = match name {
        "registry-v3" => (
            v::DISTRIBUTION_V3,
            format!(
                "github.com/distribution/distribution/v3/cmd/registry@{}",
                v::DISTRIBUTION_V3
            ),
            "registry",
        ),
        "oras" => (
            v::ORAS,
            format!("oras.land/oras/cmd/oras@{}", v::ORAS),
            "oras",
        ),
        "regsync" => (
            v::REGCLIENT,
            format!(
                "github.com/regclient/regclient/cmd/regsync@{}",
                v::REGCLIENT
            ),
            "regsync",
        ),
        "cosign" => (
            v::COSIGN,
            format!("github.com/sigstore/cosign/v2/cmd/cosign@{}", v::COSIGN),
            "cosign",
        ),
        // troubleshoot.sh's `preflight` and `support-bundle` (its `cmd/troubleshoot`), built
        // together by a throwaway module that carries the module's own `replace` lines.
        "preflight" | "support-bundle" => {
            let target = bin(name, v::TROUBLESHOOT);
            if !target.exists() {
                let _lock = provision_lock()?;
                if !target.exists() {
                    build_troubleshoot()?;
                }
            }
            return Ok(target);
        }
        "ggcr-registry" => {
            let target = bin(name, v::GGCR);
            if !target.exists() {
                let _lock = provision_lock()?;
                if !target.exists() {
                    build_ggcr_registry(&target)?;
                }
            }
            return Ok(target);
        }
        other => {
            return Err(Error::Missing {
                what: other.into(),
                fix: "not a program wallaroo-testenv builds".into(),
            });
        }
    };
    let target = bin(name, version);
    if !target.exists() {
        let _lock = provision_lock()?;
        go_install(name, &pkg, built, version, &mut |_| {})?;
    }
    Ok(target)
}

/// troubleshoot's two programs from github.com/replicatedhq/troubleshoot (its go.mod has
/// `replace` lines, so `go install` refuses it): `preflight` and `support-bundle`.
fn build_troubleshoot() -> Result<(), Error> {
    let dir = build_dir(&format!("troubleshoot-{}", v::TROUBLESHOOT))?;
    write(
        &dir.join("go.mod"),
        &format!(
            "module wallaroo.dev/testenv-troubleshoot\n\ngo 1.26\n\nrequire github.com/replicatedhq/troubleshoot {}\n\nreplace (\n\tgithub.com/StackExchange/wmi => github.com/yusufpapurcu/wmi v1.2.2\n\tgithub.com/go-ole/go-ole => github.com/go-ole/go-ole v1.2.6\n)\n",
            v::TROUBLESHOOT
        ),
    )?;
    run(
        "go mod download (troubleshoot)",
        Command::new("go")
            .args(["mod", "download", "github.com/replicatedhq/troubleshoot"])
            .current_dir(&dir)
            .env("GOFLAGS", "-mod=mod"),
    )?;
    let out = dir.join("out");
    run(
        "go build (troubleshoot)",
        Command::new("go")
            .args(["build", "-o"])
            .arg(format!("{}/", out.display()))
            .args([
                "github.com/replicatedhq/troubleshoot/cmd/preflight",
                "github.com/replicatedhq/troubleshoot/cmd/troubleshoot",
            ])
            .current_dir(&dir)
            .env("GOFLAGS", "-mod=mod"),
    )?;
    for (built, name) in [
        ("preflight", "preflight"),
        ("troubleshoot", "support-bundle"),
    ] {
        let target = bin(name, v::TROUBLESHOOT);
        std::fs::rename(out.join(built), &target).map_err(|e| Error::io(&target, e))?;
    }
    Ok(())
}

/// go-containerregistry's registry (`pkg/registry`, disk blobs, the options `crane registry
/// serve` uses) behind Go's own TLS server: a throwaway module, like etcd's.
fn build_ggcr_registry(target: &Path) -> Result<(), Error> {
    let dir = build_dir(&format!("ggcr-registry-{}", v::GGCR))?;
    write(
        &dir.join("go.mod"),
        &format!(
            "module wallaroo.dev/testenv-ggcr\n\ngo 1.24\n\nrequire github.com/google/go-containerregistry {}\n",
            v::GGCR
        ),
    )?;
    write(
        &dir.join("main.go"),
        r#"// Usage: ggcr-registry ADDR CERT KEY DIR
package main

import (
	"log"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	addr, cert, key, dir := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	h := registry.New(registry.WithBlobHandler(registry.NewDiskBlobHandler(dir)))
	s := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(s.ListenAndServeTLS(cert, key))
}
"#,
    )?;
    run(
        "go build (go-containerregistry registry)",
        Command::new("go")
            .args(["build", "-o"])
            .arg(target)
            .arg(".")
            .current_dir(&dir)
            .env("GOFLAGS", "-mod=mod"),
    )?;
    Ok(())
}

fn build_dir(name: &str) -> Result<PathBuf, Error> {
    let dir = cache_dir().join("build").join(name);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(dir)
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// A throwaway module that requires k8s.io/kubernetes with `replace` lines for its staging
/// modules; the version is set by linker flags so kubectl and helm can parse it.
fn build_kubernetes(names: &[&str]) -> Result<(), Error> {
    let dir = build_dir(&format!("kubernetes-{}", v::KUBERNETES))?;
    let minor = v::KUBERNETES.trim_start_matches("v1.");
    let mut gomod = format!(
        "module wallaroo.dev/testenv-k8s\n\ngo 1.24\n\nrequire k8s.io/kubernetes {}\n\nreplace (\n",
        v::KUBERNETES
    );
    for m in v::K8S_STAGING {
        gomod.push_str(&format!("\tk8s.io/{m} => k8s.io/{m} v0.{minor}\n"));
    }
    gomod.push_str(")\n");
    write(&dir.join("go.mod"), &gomod)?;
    let major_minor: Vec<&str> = v::KUBERNETES.trim_start_matches('v').split('.').collect();
    let mut ldflags = String::new();
    for pkg in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        ldflags.push_str(&format!(
            "-X {pkg}.gitVersion={} -X {pkg}.gitMajor={} -X {pkg}.gitMinor={} ",
            v::KUBERNETES,
            major_minor[0],
            major_minor[1]
        ));
    }
    let out = dir.join("out");
    run(
        "go mod download k8s.io/kubernetes",
        Command::new("go")
            .args(["mod", "download", "k8s.io/kubernetes"])
            .current_dir(&dir)
            .env("GOFLAGS", "-mod=mod"),
    )?;
    let mut cmd = Command::new("go");
    cmd.args(["build", "-o"])
        .arg(format!("{}/", out.display()))
        .args(["-ldflags", ldflags.trim()]);
    for n in names {
        cmd.arg(format!("k8s.io/kubernetes/cmd/{n}"));
    }
    run(
        "go build (Kubernetes)",
        cmd.current_dir(&dir).env("GOFLAGS", "-mod=mod"),
    )?;
    for n in names {
        std::fs::rename(out.join(n), bin(n, v::KUBERNETES)).map_err(|e| Error::io(&out, e))?;
    }
    Ok(())
}

fn build_etcd() -> Result<(), Error> {
    let dir = build_dir(&format!("etcd-{}", v::ETCD))?;
    write(
        &dir.join("go.mod"),
        &format!(
            "module wallaroo.dev/testenv-etcd\n\ngo 1.23\n\nrequire go.etcd.io/etcd/server/v3 {}\n",
            v::ETCD
        ),
    )?;
    write(
        &dir.join("main.go"),
        "package main\n\nimport (\n\t\"os\"\n\n\t\"go.etcd.io/etcd/server/v3/etcdmain\"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n",
    )?;
    run(
        "go build (etcd)",
        Command::new("go")
            .args(["build", "-o"])
            .arg(bin("etcd", v::ETCD))
            .arg(".")
            .current_dir(&dir)
            .env("GOFLAGS", "-mod=mod"),
    )?;
    Ok(())
}

fn go_install(
    name: &str,
    pkg: &str,
    built: &str,
    version: &str,
    report: &mut dyn FnMut(&str),
) -> Result<(), Error> {
    let target = bin(name, version);
    if target.exists() {
        return Ok(());
    }
    report(&format!("building {name} {version}"));
    let gobin = build_dir(&format!("gobin-{name}"))?;
    run(
        &format!("go install {pkg}"),
        Command::new("go")
            .args(["install", pkg])
            .env("GOBIN", &gobin),
    )?;
    std::fs::rename(gobin.join(built), &target).map_err(|e| Error::io(&target, e))
}

/// The Keycloak distribution from Maven Central, into a local repository of our own so its
/// path does not depend on the machine's Maven settings.
fn fetch_keycloak(cache: &Path) -> Result<(), Error> {
    let artifact = format!("org.keycloak:keycloak-quarkus-dist:{}:zip", v::KEYCLOAK);
    let repo = cache.join("build/m2");
    run(
        "mvn dependency:get (Keycloak)",
        Command::new("mvn").args([
            "-q",
            "dependency:get",
            &format!("-Dartifact={artifact}"),
            "-Dtransitive=false",
            &format!("-Dmaven.repo.local={}", repo.display()),
        ]),
    )?;
    let zip = repo.join(format!(
        "org/keycloak/keycloak-quarkus-dist/{0}/keycloak-quarkus-dist-{0}.zip",
        v::KEYCLOAK
    ));
    let unpack = cache.join("build/keycloak");
    let _ = std::fs::remove_dir_all(&unpack);
    run(
        "unzip (Keycloak)",
        Command::new("unzip")
            .arg("-q")
            .arg(&zip)
            .arg("-d")
            .arg(&unpack),
    )?;
    let dest = cache.join(format!("keycloak-{}", v::KEYCLOAK));
    std::fs::rename(unpack.join(format!("keycloak-{}", v::KEYCLOAK)), &dest)
        .map_err(|e| Error::io(&dest, e))
}

/// The directory of Go module `module@version` in the module cache, downloaded from the Go
/// module proxy the first time (many projects carry their Helm chart in their module).
pub fn go_module_dir(module: &str, version: &str) -> Result<PathBuf, Error> {
    let out = run(
        &format!("go mod download {module}@{version}"),
        Command::new("go").args(["mod", "download", "-json", &format!("{module}@{version}")]),
    )?;
    let info: serde_json::Value = serde_json::from_str(&out).map_err(|e| Error::Api {
        what: format!("go mod download {module}@{version}"),
        message: e.to_string(),
    })?;
    info["Dir"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| Error::Api {
            what: format!("go mod download {module}@{version}"),
            message: format!("no Dir in {out}"),
        })
}

/// What a real node runs, each built from the Go module proxy and cached by version.
#[derive(Debug, Clone)]
pub struct NodeBinaries {
    pub kubelet: PathBuf,
    /// containerd, containerd-shim-runc-v2 and ctr (the shim must be on containerd's PATH).
    pub containerd_dir: PathBuf,
    pub runc: PathBuf,
    /// bridge, host-local and loopback.
    pub cni_dir: PathBuf,
    pub crictl: PathBuf,
}

/// Builds what a real node needs and is missing (the kubelet comes with [`provision`]'s
/// Kubernetes build).
pub fn node_binaries(report: &mut dyn FnMut(&str)) -> Result<NodeBinaries, Error> {
    let kubelet = provision(report)?.kubelet;
    let _lock = provision_lock()?;
    let containerd_dir = go_install_all(
        "containerd",
        v::CONTAINERD,
        &[
            "github.com/containerd/containerd/v2/cmd/containerd",
            "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
            "github.com/containerd/containerd/v2/cmd/ctr",
        ],
        report,
    )?;
    let cni_dir = go_install_all(
        "cni-plugins",
        v::CNI_PLUGINS,
        &[
            "github.com/containernetworking/plugins/plugins/main/bridge",
            "github.com/containernetworking/plugins/plugins/ipam/host-local",
            "github.com/containernetworking/plugins/plugins/main/loopback",
        ],
        report,
    )?;
    // runc's container setup (nsenter) is C: cgo with the machine's gcc; with seccomp, as
    // distributions build it (containerd gives every sandbox the runtime's default
    // profile), which takes libseccomp's headers from Debian.
    let runc = bin("runc", v::RUNC);
    if !runc.exists() {
        if !Path::new("/usr/include/seccomp.h").exists() {
            if which("apt-get").is_some() && is_root() {
                report("installing libseccomp-dev and pkg-config with apt-get (for runc)");
                apt_install(&["libseccomp-dev", "pkg-config"])?;
            } else {
                return Err(Error::Missing {
                    what: "libseccomp's headers (to build runc)".into(),
                    fix: "apt-get install libseccomp-dev pkg-config".into(),
                });
            }
        }
        report(&format!("building runc {}", v::RUNC));
        let gobin = build_dir("gobin-runc")?;
        run(
            "go install runc",
            Command::new("go")
                .args(["install", "-tags", "seccomp"])
                .arg(format!("github.com/opencontainers/runc@{}", v::RUNC))
                .env("GOBIN", &gobin)
                .env("CGO_ENABLED", "1"),
        )?;
        std::fs::rename(gobin.join("runc"), &runc).map_err(|e| Error::io(&runc, e))?;
    }
    go_install(
        "crictl",
        &format!("sigs.k8s.io/cri-tools/cmd/crictl@{}", v::CRICTL),
        "crictl",
        v::CRICTL,
        report,
    )?;
    Ok(NodeBinaries {
        kubelet,
        containerd_dir,
        runc,
        cni_dir,
        crictl: bin("crictl", v::CRICTL),
    })
}

/// `go install` of several packages of one module version into `bin/{name}-{version}/`.
fn go_install_all(
    name: &str,
    version: &str,
    packages: &[&str],
    report: &mut dyn FnMut(&str),
) -> Result<PathBuf, Error> {
    let target = bin(name, version);
    if target.is_dir() {
        return Ok(target);
    }
    report(&format!("building {name} {version}"));
    let gobin = build_dir(&format!("gobin-{name}-{version}"))?;
    let mut cmd = Command::new("go");
    cmd.arg("install")
        .args(packages.iter().map(|p| format!("{p}@{version}")))
        .env("GOBIN", &gobin);
    run(&format!("go install ({name} {version})"), &mut cmd)?;
    std::fs::rename(&gobin, &target).map_err(|e| Error::io(&target, e))?;
    Ok(target)
}

/// The sample images' program (`sampleapp.go`), static, for `linux/{arch}`.
pub fn sample_app(arch: &str) -> Result<PathBuf, Error> {
    let target = bin(&format!("sample-app-{arch}"), v::SAMPLE_APP);
    if target.exists() {
        return Ok(target);
    }
    let _lock = provision_lock()?;
    if target.exists() {
        return Ok(target);
    }
    let dir = build_dir(&format!("sample-app-{}", v::SAMPLE_APP))?;
    write(
        &dir.join("go.mod"),
        "module wallaroo.dev/sample-app\n\ngo 1.22\n",
    )?;
    write(&dir.join("main.go"), include_str!("sampleapp.go"))?;
    run(
        &format!("go build (sample app, {arch})"),
        Command::new("go")
            .args(["build", "-trimpath", "-ldflags", "-s -w", "-o"])
            .arg(&target)
            .arg(".")
            .current_dir(&dir)
            .env("CGO_ENABLED", "0")
            .env("GOOS", "linux")
            .env("GOARCH", arch),
    )?;
    Ok(target)
}
