//! The typed spec: one struct per HCL block, named as in the spec language.
//!
//! Every block type denies unknown attributes, so a typo is an error with a location rather
//! than a silently ignored setting. Values that are secret by nature are [`Secret`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// A whole, validated spec.
#[derive(Debug, Clone, Serialize)]
pub struct Spec {
    /// The file the spec was read from.
    #[serde(skip)]
    pub path: PathBuf,
    pub wallaroo: Wallaroo,
    pub source: Option<Source>,
    pub registry: Option<PrivateRegistry>,
    pub images: Images,
    /// Nodepools by name, with the built-in defaults of the well-known pools merged in.
    pub nodepool: BTreeMap<String, Nodepool>,
    pub tls: Option<Tls>,
    pub networking: Networking,
    pub edge_registry: Option<EdgeRegistry>,
    pub assays: Assays,
    pub scheduling: Scheduling,
    pub private_pypi: Option<PrivatePypi>,
    pub gpu: Gpu,
    /// The vendor's own troubleshoot checks.
    pub troubleshoot: Troubleshoot,
    /// Vendor signatures every image must carry before it is mirrored or bundled.
    pub verify: Option<Verify>,
    /// Settings of the kots method.
    pub kots: Option<Kots>,
    /// Users by email.
    pub user: BTreeMap<String, User>,
    /// `lifecycle "ADDRESS" { ignore_changes = [...] }` by resource address.
    pub lifecycle: BTreeMap<String, Lifecycle>,
    /// `removed "ADDRESS" { destroy = false }` by resource address.
    pub removed: BTreeMap<String, Removed>,
    /// `import "ADDRESS" { id = "..." }` by resource address.
    pub import: BTreeMap<String, Import>,
    pub state: StateSettings,
    pub helm: HelmSettings,
    /// The identity that applies, when plans run as others (`apply_identity { }`).
    pub apply_identity: Option<ApplyIdentity>,
    /// Declared variables (values are not kept here; see `sensitive_paths`).
    pub variable: BTreeMap<String, VariableInfo>,
    /// JSON pointers (into this struct's serialized form) whose value came from a sensitive
    /// variable. Renderers replace them with `(sensitive)`.
    #[serde(skip)]
    pub sensitive_paths: BTreeSet<String>,
}

/// `wallaroo { ... }`: which release to install, where, and how.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Wallaroo {
    /// The Wallaroo version, e.g. `2025.1.0-6290`.
    pub version: String,
    /// The license channel, e.g. `2025-1`.
    pub license_channel: String,
    /// Namespace of the installation.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// `helm` (default) or `kots`.
    #[serde(default)]
    pub method: Method,
    /// The DNS suffix of the instance, e.g. `wallaroo.example.com` (chart key `domainSuffix`).
    pub domain: String,
    /// Optional DNS prefix (chart key `domainPrefix`); URLs are `https://{prefix}.{service}.{domain}`.
    #[serde(default)]
    pub domain_prefix: String,
    /// The cluster's distribution (chart key `kubernetes_distribution`).
    pub kubernetes_distribution: KubernetesDistribution,
    /// Name of the helm release.
    #[serde(default = "default_release_name")]
    pub release_name: String,
    /// Name of the chart in the vendor registry (`oci://{registry}/wallaroo/{channel}/{chart}`).
    #[serde(default = "default_chart")]
    pub chart: String,
    /// Keycloak's base URL for creating users; default `https://{prefix.}keycloak.{domain}/auth`.
    pub keycloak_url: Option<String>,
    /// How long a request to the Kubernetes API server is tried again while the server cannot
    /// answer (it restarts, or answers 429, 503, 504), counted from the first failure. A
    /// duration: `30s`, `2m`.
    #[serde(default = "default_api_retry")]
    pub api_retry: String,
}

fn default_api_retry() -> String {
    "30s".into()
}

/// A duration as Go reads it (validation has checked it), else `secs` seconds.
fn duration_or(text: &str, secs: u64) -> std::time::Duration {
    go_parse_duration::parse_duration(text)
        .ok()
        .and_then(|ns| u64::try_from(ns).ok())
        .map(std::time::Duration::from_nanos)
        .unwrap_or(std::time::Duration::from_secs(secs))
}

impl Wallaroo {
    /// `api_retry` as a duration (validation has checked it; 30 s otherwise).
    pub fn api_retry(&self) -> std::time::Duration {
        duration_or(&self.api_retry, 30)
    }

    /// The host name of a service, `{prefix.}{service}.{domain}` (the documented URL form).
    pub fn service_host(&self, service: &str) -> String {
        match self.domain_prefix.as_str() {
            "" => format!("{service}.{}", self.domain),
            prefix => format!("{prefix}.{service}.{}", self.domain),
        }
    }

    /// Keycloak's base URL: `keycloak_url`, or the one the chart serves.
    pub fn keycloak_url(&self) -> String {
        match &self.keycloak_url {
            Some(u) => u.clone(),
            None => format!("https://{}/auth", self.service_host("keycloak")),
        }
    }
}

fn default_namespace() -> String {
    "wallaroo".into()
}
fn default_release_name() -> String {
    "wallaroo".into()
}
fn default_chart() -> String {
    "wallaroo".into()
}

/// How Wallaroo is installed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    #[default]
    Helm,
    Kots,
}

/// Distributions the chart knows how to configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KubernetesDistribution {
    Aks,
    Eks,
    Gke,
    Oke,
    Kurl,
}

/// `source "wallaroo" { ... }`: where the release comes from, the vendor registry or an offline bundle.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Vendor registry host, e.g. `registry.wallaroo.ai` or `proxy.replicated.com`.
    pub registry: Option<String>,
    /// Path of the vendor's repositories in that registry.
    #[serde(default = "default_source_path")]
    pub path: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The Wallaroo license identifier.
    pub license: Option<Secret>,
    /// PEM file of a CA that signs the vendor registry's certificate.
    pub ca_file: Option<PathBuf>,
    /// An offline bundle (`wallaroo bundle`) instead of a registry: its one archive, or for
    /// a bundle in parts the name they share (`release.tar` for `release.tar.001`, ...).
    pub bundle: Option<PathBuf>,
    /// The public key (`cosign.pub`) the bundle's index is signed with: every plan and apply
    /// refuses the bundle unless its signature matches and every byte is what the signed
    /// index names, before anything is pushed.
    pub key: Option<PathBuf>,
    /// Read a bundle that carries no signature (with no `key`).
    #[serde(default)]
    pub allow_unsigned: bool,
}

fn default_source_path() -> String {
    "wallaroo".into()
}

/// `registry "private" { ... }`: the registry inside the air gap that the cluster pulls from.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrivateRegistry {
    /// Host and optional port, e.g. `registry.example.com:5000`.
    pub host: String,
    /// Registry namespace all images go under, e.g. `wallaroo`.
    pub namespace: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Delete images wallaroo mirrored that left the spec or the release (an upgrade's old
    /// tags); images it did not mirror are never touched.
    #[serde(default)]
    pub prune: bool,
    /// Prove at every plan that a node of each nodepool can pull from this registry with
    /// the release's pull secret: a short-lived pod per pool pulls a tiny image wallaroo
    /// pushes for the purpose. Turn it off where pods cannot be created at plan time.
    #[serde(default = "yes")]
    pub pull_check: bool,
    /// How long a passed pull check stands: a plan runs it again when it is older than this,
    /// or when anything a pull depends on changed since it passed (the registry's host and
    /// CA, the pull secret, the pools' nodes, the platforms). `wallaroo preflight` always
    /// runs it. A duration: `30m`, `24h`.
    #[serde(default = "default_pull_check_max_age")]
    pub pull_check_max_age: String,
    /// The name of the pull secret wallaroo keeps for this registry in the release's
    /// namespace (and `kube-system` for the device plugin), and names in the release's
    /// `imagePullSecrets`: `wallaroo-registry` unless set. An install made by hand keeps its
    /// own (`kubectl create secret docker-registry regcred`): `init --from-cluster` writes it.
    pub pull_secret: Option<String>,
}

fn default_pull_check_max_age() -> String {
    "24h".into()
}

impl PrivateRegistry {
    /// `pull_check_max_age` as a duration (validation has checked it; a day otherwise).
    pub fn pull_check_max_age(&self) -> std::time::Duration {
        duration_or(&self.pull_check_max_age, 24 * 3600)
    }
}

impl ApplyIdentity {
    /// The username and groups the API server gives this identity (a ServiceAccount's are
    /// `system:serviceaccount:NS:NAME`, in `system:serviceaccounts` and its namespace's group).
    pub fn subject(&self) -> (String, Vec<String>) {
        match (&self.service_account, &self.user) {
            (Some(sa), _) => {
                let (ns, name) = sa.split_once('/').unwrap_or(("default", sa));
                (
                    format!("system:serviceaccount:{ns}:{name}"),
                    vec![
                        "system:serviceaccounts".into(),
                        format!("system:serviceaccounts:{ns}"),
                        "system:authenticated".into(),
                    ],
                )
            }
            (None, Some(user)) => {
                let mut groups = self.groups.clone();
                if !groups.iter().any(|g| g == "system:authenticated") {
                    groups.push("system:authenticated".into());
                }
                (user.clone(), groups)
            }
            (None, None) => (String::new(), Vec::new()),
        }
    }

    /// How plans name it: `ServiceAccount wallaroo-system/wallaroo`, `user alice`.
    pub fn describe(&self) -> String {
        match (&self.service_account, &self.user) {
            (Some(sa), _) => format!("ServiceAccount {sa}"),
            (None, Some(user)) => format!("user {user}"),
            (None, None) => "no identity".into(),
        }
    }
}

/// `apply_identity { ... }`: the identity that applies this spec (the change window's), when
/// plans are also run by others (a drift cron job, a pull request's CI). A plan run by
/// another identity asks the API server (SubjectAccessReview) whether this one may do
/// everything apply needs. Name a ServiceAccount or a user, not both.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyIdentity {
    /// A ServiceAccount, as `NAMESPACE/NAME`.
    pub service_account: Option<String>,
    /// A user as the API server authenticates it (a client certificate's common name, an
    /// OIDC username).
    pub user: Option<String>,
    /// The user's groups, as the API server authenticates them.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `images { ... }`: which images to mirror and where they land.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Images {
    /// Mirror every image of the release's image list.
    #[serde(default = "yes")]
    pub release: bool,
    /// Further images to mirror, e.g. `nvcr.io/nvidia/k8s-device-plugin:v0.17.0`.
    #[serde(default)]
    pub extra: Vec<String>,
    /// Repositories of the release list to leave out.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Target path template in the private registry: `{namespace}`, `{name}` (last path
    /// component) and `{path}` (the whole source repository path) are replaced.
    #[serde(default = "default_image_path")]
    pub path: String,
    /// Platforms to copy from multi-arch images (`os/arch[/variant]`); `all` (the default)
    /// copies the index byte for byte, a filter pushes an index of only those platforms.
    #[serde(default = "default_platforms")]
    pub platforms: Vec<String>,
    /// Images the release may run from outside the private registry (exact references as
    /// the rendered manifests name them). Every plan lists them; anything else that points
    /// outside stops the plan.
    #[serde(default)]
    pub allow_external: Vec<String>,
    /// Point the chart's own image keys at the private registry, as the chart's own render
    /// shows they work (a marker in each candidate key): every rendered reference becomes
    /// exactly its mirrored target. Keys written in `helm { values }` are never rewritten.
    /// Turn off to set them all by hand; the air-gap check still runs.
    #[serde(default = "yes")]
    pub rewrite: bool,
}

impl Default for Images {
    fn default() -> Self {
        Images {
            release: true,
            extra: Vec::new(),
            exclude: Vec::new(),
            path: default_image_path(),
            platforms: default_platforms(),
            allow_external: Vec::new(),
            rewrite: true,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_image_path() -> String {
    "{namespace}/{name}".into()
}
fn default_platforms() -> Vec<String> {
    vec!["all".into()]
}

/// `verify { ... }`: images are mirrored or bundled only with a cosign signature that one of
/// `keys` verifies for the exact digest copied.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// cosign public keys (PEM, as `cosign generate-key-pair` writes `cosign.pub`), paths
    /// relative to the spec. A signature verified by any one of them passes.
    pub keys: Vec<PathBuf>,
    /// Images allowed without a signature, by source reference as the plan lists them
    /// (e.g. `nvcr.io/nvidia/k8s-device-plugin:v0.17.0`). Every plan shows them.
    #[serde(default)]
    pub unsigned: Vec<String>,
}

/// `nodepool "NAME" { ... }`: nodes that get Wallaroo's labels and taints.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Nodepool {
    /// Node names in the pool.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Or: a label selector choosing the pool's nodes.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// Labels to set on every node of the pool (merged over the pool's defaults).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Taints as `key=value:Effect` (replace the pool's default taints when given).
    pub taints: Option<Vec<String>>,
}

/// A taint, parsed from `key=value:Effect`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: TaintEffect,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl Taint {
    /// Parses `key=value:Effect` (or `key:Effect`).
    pub fn parse(text: &str) -> Result<Taint, String> {
        let (kv, effect) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("taint `{text}` has no effect; write `key=value:NoSchedule`"))?;
        let effect = match effect {
            "NoSchedule" => TaintEffect::NoSchedule,
            "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
            "NoExecute" => TaintEffect::NoExecute,
            other => {
                return Err(format!(
                    "taint effect `{other}` is not one of NoSchedule, PreferNoSchedule, NoExecute"
                ));
            }
        };
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        if key.is_empty() {
            return Err(format!("taint `{text}` has an empty key"));
        }
        Ok(Taint {
            key: key.into(),
            value: value.into(),
            effect,
        })
    }
}

impl std::fmt::Display for Taint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}:{:?}", self.key, self.effect)
        } else {
            write!(f, "{}={}:{:?}", self.key, self.value, self.effect)
        }
    }
}

/// The label every Wallaroo nodepool carries.
pub const NODE_PURPOSE_LABEL: &str = "wallaroo.ai/node-purpose";

/// Built-in labels and taints of the pools the air-gap guide names.
pub fn nodepool_defaults(name: &str) -> Option<(BTreeMap<String, String>, Vec<String>)> {
    let (purpose, taint) = match name {
        "general" => ("general", None),
        "persistent" => ("persistent", Some("wallaroo.ai/persistent=true:NoSchedule")),
        "pipelines-x86" => ("pipelines", Some("wallaroo.ai/pipelines=true:NoSchedule")),
        _ => return None,
    };
    let labels = BTreeMap::from([(NODE_PURPOSE_LABEL.to_string(), purpose.to_string())]);
    Some((labels, taint.map(String::from).into_iter().collect()))
}

/// `tls { ... }`: the certificate served for the instance's domain.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Or: the name of an existing `kubernetes.io/tls` Secret (chart key `custTlsSecret`).
    pub secret_name: Option<String>,
}

/// `networking { ... }`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Networking {
    #[serde(default)]
    pub ingress_mode: IngressMode,
    /// Create pipeline inference endpoints reachable from outside the cluster.
    #[serde(default)]
    pub external_inference_endpoints: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IngressMode {
    None,
    #[default]
    Internal,
    External,
}

/// `edge_registry { ... }`: the OCI registry pipelines are published to for edge deployment.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EdgeRegistry {
    pub url: String,
    pub email: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Edge pipelines send data back to the Ops Center.
    #[serde(default)]
    pub observability: bool,
}

/// `assays { ... }`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Assays {
    #[serde(default)]
    pub version: AssaysVersion,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AssaysVersion {
    Disabled,
    V1,
    #[default]
    V2,
}

/// `scheduling { ... }`: node affinity, tolerations and node selectors of Wallaroo's services.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scheduling {
    /// The node label key the chart's affinities use.
    #[serde(default = "default_affinity_key")]
    pub affinity_key: String,
    /// The value of that label for pipeline (engine) nodes.
    #[serde(default = "default_engine_affinity")]
    pub engine_affinity: String,
    /// Extra tolerations added to Wallaroo's pods.
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    /// Node selectors per service, e.g. `{ keycloak = { "disk" = "ssd" } }`.
    #[serde(default)]
    pub node_selectors: BTreeMap<String, BTreeMap<String, String>>,
}

impl Default for Scheduling {
    fn default() -> Self {
        Scheduling {
            affinity_key: default_affinity_key(),
            engine_affinity: default_engine_affinity(),
            tolerations: Vec::new(),
            node_selectors: BTreeMap::new(),
        }
    }
}

fn default_affinity_key() -> String {
    NODE_PURPOSE_LABEL.into()
}
fn default_engine_affinity() -> String {
    "pipelines".into()
}

/// A Kubernetes toleration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Toleration {
    pub key: String,
    #[serde(default = "default_operator")]
    pub operator: TolerationOperator,
    #[serde(default)]
    pub value: String,
    pub effect: Option<TaintEffect>,
}

fn default_operator() -> TolerationOperator {
    TolerationOperator::Equal
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum TolerationOperator {
    Equal,
    Exists,
}

/// `private_pypi { ... }`: a Python package mirror inside the air gap.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrivatePypi {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Fetch packages only from this mirror.
    #[serde(default)]
    pub only_private: bool,
}

/// `kots { ... }`: the KOTS admin console, for `method = "kots"`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Kots {
    /// The admin console's password (`kubectl kots install` reads it from `KOTS_SHARED_PASSWORD`).
    pub admin_console_password: Secret,
    /// The application's slug at the vendor.
    #[serde(default = "default_app_slug")]
    pub app_slug: String,
    /// The `kubectl-kots` binary (a kubectl plugin); found on PATH by default.
    #[serde(default = "default_kots_binary")]
    pub binary: String,
}

fn default_app_slug() -> String {
    "wallaroo".into()
}

fn default_kots_binary() -> String {
    "kubectl-kots".into()
}

/// `lifecycle "ADDRESS" { ... }`: how wallaroo treats one resource (or every resource under
/// an address prefix such as `nodepool.general`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    /// Attribute paths whose differences are neither changes nor drift, e.g. `labels` or
    /// `values.replicas`.
    #[serde(default)]
    pub ignore_changes: Vec<String>,
}

/// `import "ADDRESS" { id = "..." }`: take over an object the spec's name does not find,
/// e.g. a Keycloak user made in the console under a username, for `user["EMAIL"]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Import {
    /// How the object is found instead (for users: the Keycloak username).
    pub id: String,
}

/// `removed "ADDRESS" { destroy = false }`: a resource that left the spec is forgotten
/// (dropped from the lockfile) instead of deleted.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Removed {
    /// `false`: forget it, leave it in the cluster. `true`: delete it as usual.
    pub destroy: bool,
}

/// `troubleshoot { ... }`: the vendor's troubleshoot.sh checks (the air-gap guide's
/// `kubectl preflight`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Troubleshoot {
    /// Run the troubleshoot `Preflight` specs the release carries (Secrets and ConfigMaps
    /// labelled `troubleshoot.sh/kind: preflight`, `kind: Preflight` documents) and those in
    /// `preflight_specs` at every plan; a failing analyzer stops the plan.
    #[serde(default = "yes")]
    pub preflights: bool,
    /// More Preflight spec files, relative to the spec.
    #[serde(default)]
    pub preflight_specs: Vec<PathBuf>,
    /// The troubleshoot `preflight` program; default `$WALLAROO_PREFLIGHT`, else `preflight`
    /// or `kubectl-preflight` on the PATH.
    pub preflight_program: Option<PathBuf>,
}

impl Default for Troubleshoot {
    fn default() -> Self {
        Troubleshoot {
            preflights: true,
            preflight_specs: Vec::new(),
            preflight_program: None,
        }
    }
}

/// `gpu { ... }`: the NVIDIA device plugin.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    #[serde(default)]
    pub nvidia_device_plugin: bool,
    #[serde(default = "default_plugin_version")]
    pub version: String,
}

impl Default for Gpu {
    fn default() -> Self {
        Gpu {
            nvidia_device_plugin: false,
            version: default_plugin_version(),
        }
    }
}

fn default_plugin_version() -> String {
    "v0.17.0".into()
}

/// `user "EMAIL" { ... }`: a Wallaroo user created in Keycloak after the install.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    #[serde(default)]
    pub role: Role,
    /// The password set when wallaroo creates the user, and again whenever it changes
    /// here. Optional for a user that already exists (one made in the console, or adopted
    /// by `wallaroo init --from-cluster`): without it wallaroo never sets or compares the
    /// password, and a plan that would have to create the user stops and asks for one.
    pub password: Option<Secret>,
    /// The user must change the password at first login.
    #[serde(default = "yes")]
    pub temporary: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    #[default]
    User,
}

/// `state { ... }`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    /// `local` (a file, the default) or `kubernetes` (a Secret and a Lease in the cluster).
    #[serde(default)]
    pub backend: StateBackend,
    /// Lockfile path, relative to the spec; default `wallaroo.lock` beside it (`local`).
    pub path: Option<PathBuf>,
    /// Namespace of the Secret and the Lease (`kubernetes`); default `default`.
    pub namespace: Option<String>,
    /// Names them `wallaroo-state-SUFFIX` and `wallaroo-state-SUFFIX-lock` (`kubernetes`);
    /// default `wallaroo`.
    pub secret_suffix: Option<String>,
    /// Seconds a run lock stays valid without renewal: how long a killed holder blocks the
    /// next run (`kubernetes`); default 30.
    pub lock_seconds: Option<u64>,
}

/// Where the lockfile is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    #[default]
    Local,
    Kubernetes,
}

/// `helm { ... }`: how the release is installed, and raw values merged last.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HelmSettings {
    /// Raw chart values merged over everything wallaroo computes.
    #[serde(default = "empty_object")]
    pub values: serde_json::Value,
    /// How long to wait for the release to become ready, e.g. `15m`.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Fields of the release's objects not compared for drift, as `Kind/name:path`
    /// (e.g. `Deployment/engine:spec.replicas` under an autoscaler), or `Kind/name` for a
    /// whole object.
    #[serde(default)]
    pub ignore_drift: Vec<String>,
    /// When an upgrade changes a field that cannot change on an existing object (a
    /// Deployment's selector, a StatefulSet's volume claim templates), apply deletes that
    /// object and helm makes it again (a StatefulSet's pods and volumes are kept). Off, such
    /// a plan stops naming the object and field.
    #[serde(default)]
    pub replace_immutable: bool,
}

impl Default for HelmSettings {
    fn default() -> Self {
        HelmSettings {
            ignore_drift: Vec::new(),
            replace_immutable: false,
            values: empty_object(),
            timeout: default_timeout(),
        }
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}
fn default_timeout() -> String {
    "15m".into()
}

/// `variable "NAME" { ... }` as kept in the model (its value is already substituted).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct VariableInfo {
    #[serde(rename = "type")]
    pub type_name: String,
    pub sensitive: bool,
    pub description: Option<String>,
}

/// The attributes of a `variable` block, before its type expression is read.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VariableBlock {
    /// `string`, `number`, `bool`, `list(T)`, `map(T)` or `any`.
    #[serde(rename = "type")]
    #[schemars(with = "String")]
    pub type_name: Option<String>,
    pub default: Option<serde_json::Value>,
    #[serde(default)]
    pub sensitive: bool,
    pub description: Option<String>,
}
