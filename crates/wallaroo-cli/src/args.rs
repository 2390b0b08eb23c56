//! Command-line arguments.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Plan and apply Wallaroo installations in air-gapped Kubernetes clusters.
///
/// Exit codes: 0 success, 1 error, 2 changes present (plan --detailed-exitcode),
/// 3 files need formatting (fmt --check).
#[derive(Debug, Parser)]
#[command(
    name = "wallaroo",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command that reads a spec takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The spec file.
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        default_value = "wallaroo.hcl",
        env = "WALLAROO_CONFIG"
    )]
    pub config: PathBuf,
    /// Set a variable: NAME=VALUE (also written -var NAME=VALUE). Repeatable.
    #[arg(long = "var", global = true, value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Read variable values from an HCL file of NAME = value lines. Repeatable.
    #[arg(long = "var-file", global = true, value_name = "PATH")]
    pub var_files: Vec<PathBuf>,
    /// Never use colour (also when NO_COLOR is set).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// Leave out the signatures, SBOMs and attestations attached to images (mirrored with
    /// their images otherwise).
    #[arg(long, global = true)]
    pub exclude_referrers: bool,
    /// An image the release may run from outside the private registry, exactly as the
    /// rendered manifests name it (the plan lists it). Repeatable.
    #[arg(long, global = true, value_name = "REF")]
    pub allow_external_image: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what apply would change: desired spec against the live cluster and registry.
    Plan(PlanArgs),
    /// Make the cluster and registry match the spec (or a saved plan).
    Apply(ApplyArgs),
    /// Remove everything the lockfile says wallaroo created, in reverse dependency order.
    Destroy(ApplyArgs),
    /// Check what must hold before an apply can work: cluster, nodes, helm, registries, DNS.
    Preflight,
    /// Check the spec: syntax, attributes, types, references.
    Validate(ValidateArgs),
    /// Show outputs recorded by the last apply (e.g. api_lb_ip).
    Output(OutputArgs),
    /// Inspect or edit the lockfile's resources.
    #[command(subcommand)]
    State(StateCommand),
    /// Print the plan's dependency graph as DOT.
    Graph(PlanArgs),
    /// List the images a plan mirrors (where each came from, its pinned digest, its target),
    /// or print image-values.yaml.
    Images(ImagesArgs),
    /// Build or inspect an offline bundle of a release's images.
    Bundle(BundleArgs),
    /// Rewrite spec files in the canonical layout.
    Fmt(FmtArgs),
    /// Print shell completions.
    Completions(CompletionsArgs),
    /// Remove a lock left behind by a crashed run.
    ForceUnlock(ForceUnlockArgs),
    /// Write one .tar.gz for vendor support: versions, preflight, lockfile, the plan, nodes,
    /// pods, events, container logs and the helm release, with every secret redacted.
    SupportBundle(SupportBundleArgs),
    /// Write a commented starting spec (to -c, default ./wallaroo.hcl) from what you know:
    /// version, registries, domain. Secrets become sensitive variables, never values.
    Init(Box<InitArgs>),
    /// Serve the Language Server Protocol on stdin and stdout, for editors: diagnostics (as
    /// `validate` gives them), completion, hover, go to definition, outline, formatting.
    Lsp,
    /// Print the least Roles and ClusterRole (with bindings, and the Namespaces they live in
    /// first) that let an identity run the operations of `--for` on this spec and chart, from
    /// the release as a plan renders it; no preflight runs
    Rbac(RbacArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Write the spec of the install that is running (the cluster of KUBECONFIG): its helm
    /// release's values, the nodes of its pools, its registry and TLS Secret, Keycloak's
    /// users. Secrets become variables. The next plan then changes nothing.
    #[arg(long)]
    pub from_cluster: bool,
    /// With --from-cluster: the helm release's name (default: the release of the chart
    /// `wallaroo`, found by looking).
    #[arg(long, requires = "from_cluster")]
    pub release: Option<String>,
    /// With --from-cluster: the release's namespace (default: every namespace is searched).
    #[arg(long, requires = "from_cluster")]
    pub namespace: Option<String>,
    /// With --from-cluster: only nodes with these labels join a pool, as KEY=VALUE[,KEY=VALUE]
    /// (for a cluster whose other labelled nodes belong to another install).
    #[arg(long, requires = "from_cluster", value_name = "SELECTOR")]
    pub nodes: Option<String>,
    /// With --from-cluster: Keycloak's base URL, when not the one the chart serves
    /// (https://keycloak.DOMAIN/auth).
    #[arg(long, requires = "from_cluster")]
    pub keycloak_url: Option<String>,
    /// The vendor registry's user (the cluster does not know it).
    #[arg(long)]
    pub vendor_username: Option<String>,
    /// PEM file of the CA that signs the vendor registry's certificate.
    #[arg(long, value_name = "PATH")]
    pub vendor_ca_file: Option<PathBuf>,
    /// PEM file of the CA that signs the private registry's certificate.
    #[arg(long, value_name = "PATH")]
    pub registry_ca_file: Option<PathBuf>,
    /// With --from-cluster: the private registry's user, when no pull secret of the release's
    /// namespace holds a login for it (its password becomes a variable).
    #[arg(long, requires = "from_cluster", value_name = "USER")]
    pub registry_username: Option<String>,
    /// The Wallaroo version, e.g. 2025.1.0-6290.
    #[arg(long, value_name = "VERSION", conflicts_with = "from_cluster")]
    pub wallaroo_version: Option<String>,
    /// The license channel (default: from the version, `2025.1.x` -> `2025-1`).
    #[arg(long)]
    pub license_channel: Option<String>,
    /// The instance's DNS suffix.
    #[arg(long, conflicts_with = "from_cluster")]
    pub domain: Option<String>,
    /// aks, eks, gke, oke or kurl.
    #[arg(long, conflicts_with = "from_cluster")]
    pub kubernetes_distribution: Option<String>,
    /// The vendor registry (default registry.wallaroo.ai).
    #[arg(long)]
    pub vendor_registry: Option<String>,
    /// The private registry inside the air gap, host[:port].
    #[arg(long, conflicts_with = "from_cluster")]
    pub registry: Option<String>,
    /// The private registry's namespace (default wallaroo).
    #[arg(long, conflicts_with = "from_cluster")]
    pub registry_namespace: Option<String>,
    /// Overwrite the file if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct RbacArgs {
    /// The ServiceAccount to bind them to, as NAMESPACE/NAME.
    #[arg(
        long,
        value_name = "NAMESPACE/NAME",
        default_value = "wallaroo-system/wallaroo"
    )]
    pub service_account: String,
    /// The name of the Roles and bindings.
    #[arg(long, default_value = "wallaroo")]
    pub name: String,
    /// Grant everything cluster-wide in one ClusterRole (an identity that installs into
    /// many namespaces), instead of a Role in each namespace.
    #[arg(long)]
    pub cluster_wide: bool,
    /// The operations to grant: `plan` (a plan that only reads: a drift cron job, a pull
    /// request's CI; with `apply_identity { }` also the right to ask whether that identity
    /// may apply), `apply` (plan and apply, the chart's own RBAC rules included), `destroy`,
    /// `support-bundle`, or `all`. Comma-separated or repeated.
    #[arg(
        long = "for",
        value_name = "OPERATION",
        value_delimiter = ',',
        default_value = "apply",
        conflicts_with = "read_only"
    )]
    pub operations: Vec<RbacFor>,
    /// Same as `--for plan`.
    #[arg(long)]
    pub read_only: bool,
    /// How the identity may create the chart's own Roles, ClusterRoles and bindings
    /// (Kubernetes lets an identity grant only what it holds): `rules` grants it their rules
    /// (the least privilege), `escalate` the `escalate` and `bind` verbs instead.
    #[arg(long, value_enum, default_value = "rules")]
    pub chart_rbac: ChartRbacArg,
}

/// An operation `wallaroo rbac --for` grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RbacFor {
    Plan,
    Apply,
    Destroy,
    SupportBundle,
    All,
}

/// `wallaroo rbac --chart-rbac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChartRbacArg {
    Rules,
    Escalate,
}

#[derive(Debug, Args)]
pub struct SupportBundleArgs {
    /// Where to write the bundle.
    #[arg(long, value_name = "FILE", default_value = "wallaroo-support.tar.gz")]
    pub out: PathBuf,
    /// Lines of each container's log, from the end.
    #[arg(long, default_value_t = 200)]
    pub log_lines: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Same as --format json.
    #[arg(long)]
    pub json: bool,
    /// Save the plan to FILE for `wallaroo apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Limit the plan to these resources and what they depend on.
    #[arg(long, value_name = "ADDR")]
    pub target: Vec<String>,
    /// Leave these resources out, and what depends on them (the inverse of --target).
    #[arg(long, value_name = "ADDR")]
    pub exclude: Vec<String>,
    /// Wait this long for the state lock, e.g. 30s.
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub lock_timeout: String,
    /// Resolve every image tag again instead of using the digests pinned in the lockfile.
    #[arg(long)]
    pub refresh_pins: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved with `wallaroo plan --out FILE`.
    pub plan_file: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// How many steps may run at once.
    #[arg(long, default_value_t = 10)]
    pub parallelism: usize,
    #[arg(long, value_name = "ADDR")]
    pub target: Vec<String>,
    /// Leave these resources out, and what depends on them (the inverse of --target).
    #[arg(long, value_name = "ADDR")]
    pub exclude: Vec<String>,
    /// After a step fails, still run every step that does not depend on it; the summary
    /// lists what was done, what failed and what was skipped, with the reason.
    #[arg(long)]
    pub keep_going: bool,
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub lock_timeout: String,
    /// destroy: also delete the namespace when it holds PersistentVolumeClaims (their data).
    #[arg(long)]
    pub delete_data: bool,
    /// Resolve every image tag again instead of using the digests pinned in the lockfile.
    #[arg(long)]
    pub refresh_pins: bool,
    /// destroy: also delete the images wallaroo mirrored into the private registry (kept
    /// otherwise).
    #[arg(long)]
    pub include_images: bool,
    /// Write a stream of JSON events to stdout, one per line (schemas/events.schema.json),
    /// instead of the text view. Needs --auto-approve or a saved plan.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Print the resolved spec as JSON (secrets shown as "(sensitive)").
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// One output's name; all when omitted.
    pub name: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// Show sensitive outputs' values.
    #[arg(long)]
    pub show_sensitive: bool,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the addresses of the resources in the lockfile.
    List,
    /// Show one resource's recorded attributes.
    Show { address: String },
    /// Forget a resource without touching the cluster.
    Rm { address: Vec<String> },
    /// Copy the lockfile between the local file and the kubernetes backend (both locked
    /// while it moves); then set `state { backend }` to the new one.
    Migrate {
        /// `kubernetes` (from the local file) or `local` (from the cluster).
        #[arg(long, value_name = "BACKEND")]
        to: String,
    },
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Print image-values.yaml (the chart values that point every image at the private
    /// registry) instead of the list.
    #[arg(long)]
    pub values: bool,
    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
    /// Resolve every tag again instead of showing the digests pinned in the lockfile.
    #[arg(long)]
    pub refresh_pins: bool,
}

#[derive(Debug, Args)]
pub struct BundleArgs {
    #[command(subcommand)]
    pub command: BundleCommand,
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Write the release's images and chart (the spec's, pinned as a plan pins them) to an
    /// OCI image layout archive, for `source { bundle = "..." }` inside the air gap.
    Create {
        /// The archive to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Leave out every blob the images pinned in this lockfile already have (a delta
        /// bundle: an upgrade carries what changed).
        #[arg(long, value_name = "LOCKFILE")]
        since: Option<PathBuf>,
        /// Resolve every tag again instead of using the lockfile's pins.
        #[arg(long)]
        refresh_pins: bool,
        /// Write numbered parts (FILE.001, FILE.002, ...) of at most SIZE each (e.g. 4GiB,
        /// 4.7GB, 700MB) instead of one archive; FILE.index.json names each by digest.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        split: Option<u64>,
        /// Sign the index (every part, file and tool by digest) with this private key, in a
        /// format cosign uses (`cosign generate-key-pair`'s cosign.key, its password from
        /// COSIGN_PASSWORD, or a PKCS#8 PEM): FILE.index.json.sig, which `cosign verify-blob`
        /// checks too.
        #[arg(long, value_name = "KEY")]
        sign_key: Option<PathBuf>,
        /// Leave out the programs the far side's apply runs (helm, wallaroo), carried by
        /// default.
        #[arg(long)]
        no_tools: bool,
        /// The platform to carry the programs for (os/arch; default this machine's).
        #[arg(long, value_name = "PLATFORM")]
        tools_platform: Vec<String>,
        /// Write a stream of JSON events to stdout (schemas/events.schema.json).
        #[arg(long)]
        json: bool,
    },
    /// Check every byte of a bundle against its index (or every blob against its digest),
    /// and that nothing the images need is missing. A part given alone (FILE.002) is checked
    /// by itself.
    Verify {
        /// The archive, the name its parts share, or one part.
        file: PathBuf,
        /// The public key (cosign.pub) the index must be signed with.
        #[arg(long, value_name = "KEY")]
        key: Option<PathBuf>,
        /// Write a stream of JSON events to stdout (schemas/events.schema.json).
        #[arg(long)]
        json: bool,
    },
    /// Write the programs a bundle carries (helm, wallaroo) into DIR, executable, each
    /// checked against its digest.
    ExtractTools {
        /// The directory to write them to.
        dir: PathBuf,
        /// The bundle (default: the spec's `source { bundle }`).
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
        /// Only this platform's (os/arch), written straight into DIR.
        #[arg(long, value_name = "PLATFORM")]
        platform: Option<String>,
    },
    /// List a bundle's images.
    List {
        /// The archive.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Files or directories (default: the spec given with -c).
    pub paths: Vec<PathBuf>,
    /// Change nothing; exit 3 if any file needs formatting.
    #[arg(long)]
    pub check: bool,
    /// Print the changes as a unified diff.
    #[arg(long)]
    pub diff: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ForceUnlockArgs {
    /// Do not ask for confirmation.
    #[arg(long)]
    pub force: bool,
}

/// Accepts Terraform's single-dash spellings `-var` and `-var-file` as well.
pub fn terraform_style(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    args.map(|a| match a.to_str() {
        Some(s)
            if s == "-var"
                || s.starts_with("-var=")
                || s == "-var-file"
                || s.starts_with("-var-file=") =>
        {
            OsString::from(format!("-{s}"))
        }
        _ => a,
    })
    .collect()
}

/// `--split`'s size (`4GiB`, `4.7GB`, `700MB`).
fn parse_size(text: &str) -> Result<u64, String> {
    wallaroo_operations::bundle::parse_size(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn single_dash_var_is_accepted() {
        let args = terraform_style(
            ["wallaroo", "validate", "-var", "a=b", "-var-file=x.hcl"]
                .map(OsString::from)
                .into_iter(),
        );
        let cli = Cli::parse_from(args);
        assert_eq!(cli.global.vars, ["a=b"]);
        assert_eq!(cli.global.var_files, [PathBuf::from("x.hcl")]);
    }
}
