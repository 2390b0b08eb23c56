//! Every pinned version of the test environment, in one place. Changing one rebuilds that
//! component into a new cache entry; old entries stay until removed by hand.

/// k8s.io/kubernetes, the oldest minor that k8s-openapi 0.29 models.
pub const KUBERNETES: &str = "v1.33.5";
/// The etcd server that Kubernetes 1.33.5 itself requires.
pub const ETCD: &str = "v3.5.21";
/// kwok: fake kubelets. Newer releases want a newer Go than the machine's 1.26.
pub const KWOK: &str = "v0.6.1";
pub const HELM: &str = "v3.16.4";
pub const TOXIPROXY: &str = "v2.12.0";
/// org.keycloak:keycloak-quarkus-dist on Maven Central.
pub const KEYCLOAK: &str = "26.0.7";

/// The staging modules of Kubernetes 1.33 that need a `replace` line in a module that
/// requires k8s.io/kubernetes.
pub const K8S_STAGING: &[&str] = &[
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
];

/// github.com/distribution/distribution/v3, `cmd/registry`: the CNCF registry's current line.
pub const DISTRIBUTION_V3: &str = "v3.1.2";
/// github.com/google/go-containerregistry: its `pkg/registry`, as `crane registry serve`
/// runs it, served over TLS by a throwaway main.
pub const GGCR: &str = "v0.22.1";
/// oras.land/oras: the ORAS command line, a reader of OCI layouts and archives.
pub const ORAS: &str = "v1.3.6";
/// github.com/sigstore/cosign/v2: signs test images the way vendors do.
pub const COSIGN: &str = "v2.6.5";
/// github.com/regclient/regclient: `regsync`, the mirroring peer of the mirror benchmark.
pub const REGCLIENT: &str = "v0.11.7";

/// A real node's runtime, each built from the Go module proxy (the kubelet comes from the
/// Kubernetes build above): github.com/containerd/containerd/v2 (containerd, its runc shim,
/// ctr).
pub const CONTAINERD: &str = "v2.4.2";
/// github.com/opencontainers/runc: the newest release that is not a release candidate.
pub const RUNC: &str = "v1.5.3";
/// github.com/containernetworking/plugins: bridge, host-local and loopback.
pub const CNI_PLUGINS: &str = "v1.10.0";
/// sigs.k8s.io/cri-tools: crictl.
pub const CRICTL: &str = "v1.37.0";
/// The sample images' program (`crates/wallaroo-testenv/src/sampleapp.go`): bump when it
/// changes, so the cache builds it again.
pub const SAMPLE_APP: &str = "v1";

/// github.com/replicatedhq/troubleshoot: `preflight` and `support-bundle`, the air-gap
/// guide's `kubectl preflight` and `kubectl support-bundle`.
pub const TROUBLESHOOT: &str = "v0.133.0";
