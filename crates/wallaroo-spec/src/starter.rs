//! `wallaroo init` with no cluster: a commented starting spec from what the operator knows
//! already (version, registries, domain), laid out as `wallaroo fmt` lays it out and valid
//! once its secret variables are set. Secrets are never written: each is a sensitive
//! `variable` to fill through `WALLAROO_VAR_NAME` (or `-var`, or a var file).

/// What the starting spec is made from; `None` leaves the example's placeholder.
#[derive(Debug, Clone, Default)]
pub struct Starter {
    pub version: Option<String>,
    pub license_channel: Option<String>,
    pub domain: Option<String>,
    /// The vendor registry (`registry.wallaroo.ai` by default).
    pub vendor_registry: Option<String>,
    pub vendor_username: Option<String>,
    pub vendor_ca_file: Option<std::path::PathBuf>,
    /// The private registry inside the air gap, `host[:port]`.
    pub registry: Option<String>,
    pub registry_namespace: Option<String>,
    pub registry_ca_file: Option<std::path::PathBuf>,
    pub kubernetes_distribution: Option<String>,
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// The starting spec's text.
pub fn starter(s: &Starter) -> String {
    let or = |v: &Option<String>, d: &str| quoted(v.as_deref().unwrap_or(d));
    let version = or(&s.version, "2025.1.0-6290");
    let channel = s
        .license_channel
        .clone()
        .or_else(|| {
            // `2025.1.0-6290` is on channel `2025-1`.
            let v = s.version.as_deref()?;
            let mut parts = v.split('.');
            Some(format!("{}-{}", parts.next()?, parts.next()?))
        })
        .unwrap_or_else(|| "2025-1".into());
    let channel = quoted(&channel);
    let text = format!(
        r#"# A starting spec written by `wallaroo init`. Fill in what is marked CHANGE ME, set the
# secret variables in the environment (WALLAROO_VAR_NAME=...), then:
#   wallaroo validate && wallaroo plan
# docs/spec.md describes every block; `wallaroo lsp` completes and explains them in an editor.

# Secrets: never written here. Each is read from WALLAROO_VAR_<name> (or -var, --var-file).
variable "vendor_password" {{
  type        = string
  sensitive   = true
  description = "The password or token for the vendor registry, from Wallaroo."
}}

variable "registry_password" {{
  type        = string
  sensitive   = true
  description = "The password of the private registry's user."
}}

variable "admin_password" {{
  type        = string
  sensitive   = true
  description = "The first admin's temporary password (changed at first login)."
}}

wallaroo {{
  version                 = {version}
  license_channel         = {channel}
  domain                  = {domain} # CHANGE ME: the instance's DNS suffix
  kubernetes_distribution = {distribution} # aks, eks, gke, oke or kurl
}}

# Where the release comes from: the vendor registry (or `bundle = "release.tar"` across an
# air gap, made with `wallaroo bundle create`).
source "wallaroo" {{
  registry = {vendor}
  username = {vendor_username}
  password = var.vendor_password
  license  = var.vendor_password{vendor_ca}
}}

# The registry inside the air gap that the cluster pulls from.
registry "private" {{
  host      = {registry} # CHANGE ME: host[:port]
  namespace = {namespace}
  username  = "wallaroo"
  password  = var.registry_password
  {registry_ca}
}}

# The guide's three nodepools: name the nodes (CHANGE ME), or select them by a label they
# share (`selector = {{ "pool" = "general" }}`).
nodepool "general" {{
  nodes = ["node-1"]
}}

nodepool "persistent" {{
  nodes = ["node-2"]
}}

nodepool "pipelines-x86" {{
  nodes = ["node-3"]
}}

networking {{
  ingress_mode = "internal" # none, internal or external
}}

# The first user; more `user` blocks add more.
user "admin@example.com" {{
  role      = "admin"
  password  = var.admin_password
  temporary = true
}}
"#,
        domain = or(&s.domain, "wallaroo.example.com"),
        distribution = or(&s.kubernetes_distribution, "kurl"),
        vendor = or(&s.vendor_registry, "registry.wallaroo.ai"),
        registry = or(&s.registry, "registry.internal.example.com"),
        namespace = or(&s.registry_namespace, "wallaroo"),
        vendor_username = match &s.vendor_username {
            Some(u) => quoted(u),
            None => "\"CHANGE ME\" # the vendor registry user from Wallaroo".into(),
        },
        vendor_ca = s
            .vendor_ca_file
            .as_ref()
            .map(|p| format!("\n  ca_file  = {}", quoted(&p.display().to_string())))
            .unwrap_or_default(),
        registry_ca = match &s.registry_ca_file {
            Some(p) => format!("ca_file   = {}", quoted(&p.display().to_string())),
            None => "# ca_file = \"ca.crt\" # the CA of its certificate, when it is private".into(),
        },
    );
    crate::format::format_hcl(&text).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_starting_spec_is_valid_once_its_secrets_are_set_and_holds_none() {
        let text = starter(&Starter {
            version: Some("2025.2.1-7001".into()),
            domain: Some("ml.corp.example".into()),
            registry: Some("harbor.corp.example:8443".into()),
            ..Starter::default()
        });
        assert_eq!(crate::format::format_hcl(&text).unwrap(), text, "fmt-clean");
        assert!(
            text.contains("license_channel         = \"2025-2\""),
            "{text}"
        );
        let inputs = crate::VarInputs {
            env: [
                ("vendor_password", "v-secret"),
                ("registry_password", "r-secret"),
                ("admin_password", "a-secret"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ..Default::default()
        };
        let spec = crate::parse_str("wallaroo.hcl", &text, std::path::Path::new("."), &inputs)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(spec.wallaroo.domain, "ml.corp.example");
        assert_eq!(spec.registry.unwrap().host, "harbor.corp.example:8443");
        // Without the secrets it says which variables to set.
        let err = crate::parse_str(
            "wallaroo.hcl",
            &text,
            std::path::Path::new("."),
            &crate::VarInputs::default(),
        )
        .unwrap_err();
        assert!(
            err.0.iter().any(|d| d.message.contains("vendor_password")),
            "{err:?}"
        );
    }
}
