//! The desired model: the spec turned into resources with addresses and dependencies.
//!
//! Which chart values each spec setting becomes is kept in one function,
//! [`chart_values`](crate::values::chart_values), so it can follow the real chart. Secrets never enter `values`: they go to
//! `secret_values`, a sensitive attribute of the release.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use serde_json::{Value, json};
use wallaroo_engine::{Address, Attrs, DesiredResource, DesiredSet};
use wallaroo_spec::Spec;
use wallaroo_spec::model::{Method, Role};

use crate::images::{
    CHART_ORIGIN, MirrorImage, chart_source, gpu_plugin_image, image_sources, image_target,
    split_tag,
};
use crate::values::{chart_values, kots_config_values};

/// Why the desired model could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    #[error("the TLS certificate `{cert}` and key `{key}` cannot be used: {}", problems.join("; "))]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        problems: Vec<String>,
    },
    #[error("{block} \"{label}\": not a resource address: {message}")]
    Address {
        block: &'static str,
        label: String,
        message: String,
    },
    #[error("import \"{label}\": {message}")]
    Import { label: String, message: String },
    #[error("cannot read {what} `{path}`: {source}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Name of the Secret holding the customer certificate (chart key `custTlsSecret`).
pub const TLS_SECRET: &str = "cust-cert-secret";
/// Name of the Secret the cluster pulls images from the private registry with.
pub const PULL_SECRET: &str = "wallaroo-registry";

/// The name of the private registry's pull secret: `registry { pull_secret }`, else
/// [`PULL_SECRET`].
pub fn pull_secret_name(reg: &wallaroo_spec::model::PrivateRegistry) -> String {
    reg.pull_secret
        .clone()
        .unwrap_or_else(|| PULL_SECRET.to_string())
}

/// Builds the desired resources of a spec, mirroring its extra images only (no release list,
/// no pins): what can be known without reading the chart or the lockfile.
pub fn from_spec(spec: &Spec) -> Result<DesiredSet, DesiredError> {
    from_spec_with(spec, &image_sources(spec, &BTreeMap::new()))
}

/// Builds the desired resources of a spec, with the images to mirror (see [`image_sources`];
/// pinned where the pins are known).
pub fn from_spec_with(spec: &Spec, images: &[MirrorImage]) -> Result<DesiredSet, DesiredError> {
    let mut set = DesiredSet::default();
    let ns = spec.wallaroo.namespace.clone();
    let namespace = Address::named("namespace", &ns);
    set.insert(DesiredResource::new(
        namespace.clone(),
        "namespace",
        attrs([("name", json!(ns))]),
    ));
    let mut release_deps = vec![namespace.clone()];

    if let Some(tls) = &spec.tls
        && let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file)
    {
        let read = |what, p: &PathBuf| {
            let path = spec.resolve_path(p);
            std::fs::read_to_string(&path).map_err(|source| DesiredError::ReadFile {
                what,
                path,
                source,
            })
        };
        let (cert_pem, key_pem) = (read("TLS certificate", cert)?, read("TLS key", key)?);
        let host = spec.wallaroo.service_host("api");
        let report = crate::tls::check(&cert_pem, &key_pem, &host, std::time::SystemTime::now());
        if !report.errors.is_empty() {
            return Err(DesiredError::Tls {
                cert: spec.resolve_path(cert),
                key: spec.resolve_path(key),
                problems: report.errors,
            });
        }
        set.warnings.extend(report.warnings);
        let data = json!({"tls.crt": cert_pem, "tls.key": key_pem});
        let addr = Address::named("secret", &format!("{ns}/{TLS_SECRET}"));
        set.insert(
            DesiredResource::new(
                addr.clone(),
                "secret",
                attrs([
                    ("namespace", json!(ns)),
                    ("name", json!(TLS_SECRET)),
                    ("type", json!("kubernetes.io/tls")),
                    ("data", data),
                ]),
            )
            .sensitive(["data"])
            .depends_on([namespace.clone()]),
        );
        release_deps.push(addr);
    }

    let registry = spec.registry.as_ref();
    // The pull secret of the private registry, in the release's namespace and, for the
    // NVIDIA device plugin, in kube-system.
    let mut plugin_pull_secret = None;
    let secret_name = registry.map(pull_secret_name).unwrap_or_default();
    if let Some(auth) = registry.and_then(pull_secret_config) {
        let mut pull_secret = |namespace: &str, deps: Vec<Address>| {
            let addr = Address::named("secret", &format!("{namespace}/{secret_name}"));
            set.insert(
                DesiredResource::new(
                    addr.clone(),
                    "secret",
                    attrs([
                        ("namespace", json!(namespace)),
                        ("name", json!(secret_name)),
                        ("type", json!("kubernetes.io/dockerconfigjson")),
                        ("data", json!({".dockerconfigjson": auth})),
                    ]),
                )
                .sensitive(["data"])
                .depends_on(deps),
            );
            addr
        };
        release_deps.push(pull_secret(&ns, vec![namespace.clone()]));
        if spec.gpu.nvidia_device_plugin {
            plugin_pull_secret = Some(pull_secret("kube-system", Vec::new()));
        }
    }

    for (pool, np) in &spec.nodepool {
        let mut taints: Vec<String> = np.taints.clone().unwrap_or_default();
        // Live taints are read back sorted; keep the same order here.
        taints.sort();
        let base = Address::named("nodepool", pool);
        if np.nodes.is_empty() {
            set.insert(DesiredResource::new(
                base.clone(),
                "nodepool_selector",
                attrs([
                    ("selector", json!(np.selector)),
                    ("labels", json!(np.labels)),
                    ("taints", json!(taints)),
                    // No node differs from what was applied (the kind reads which do).
                    ("node_drift", json!({})),
                ]),
            ));
            release_deps.push(base);
        } else {
            for node in &np.nodes {
                let addr = base.child("node", Some(node));
                set.insert(DesiredResource::new(
                    addr.clone(),
                    "node",
                    attrs([
                        ("name", json!(node)),
                        ("labels", json!(np.labels)),
                        ("taints", json!(taints)),
                    ]),
                ));
                release_deps.push(addr);
            }
        }
    }

    let mut image_addrs = BTreeMap::new();
    let mut chart_image = None;
    if let Some(reg) = registry {
        for image in images {
            let (_, target_ref) = image_target(spec, reg, image);
            // One resource per target tag: an upgrade's new tag is a new image, and the old
            // one leaves the spec (kept, or deleted with `prune`).
            let key = target_ref
                .split_once('/')
                .map_or(target_ref.as_str(), |(_, rest)| rest);
            let addr = Address::keyed("image", key);
            let mut a = attrs([
                ("source", json!(image.source)),
                ("origin", json!(image.origin)),
                ("target", json!(target_ref)),
                // A referrer (a signature's index) is copied whole.
                (
                    "platforms",
                    if image.origin.starts_with("referrer of ") {
                        json!(["all"])
                    } else {
                        json!(spec.images.platforms)
                    },
                ),
            ]);
            if let Some(pin) = &image.pin {
                a.insert("source_digest".into(), json!(pin.source_digest));
                a.insert("digest".into(), json!(pin.digest));
            }
            // What apply checks before copying (signatures and SBOMs themselves are not).
            if let Some(v) = &spec.verify
                && !image.origin.starts_with("referrer of ")
            {
                let keys: Vec<String> = v.keys.iter().map(|k| k.display().to_string()).collect();
                let how = if v.unsigned.contains(&image.source) {
                    "not checked: allowed unsigned by verify { unsigned }".to_string()
                } else {
                    format!("must verify with {}", keys.join(" or "))
                };
                a.insert("signature".into(), json!(how));
            }
            set.insert(DesiredResource::new(addr.clone(), "image", a));
            if image.origin == CHART_ORIGIN {
                chart_image = Some((addr.clone(), target_ref.clone()));
            }
            image_addrs.insert(image.source.clone(), (addr.clone(), target_ref));
            release_deps.push(addr);
        }
    }
    let plugin = gpu_plugin_image(spec);

    if spec.gpu.nvidia_device_plugin {
        let (image_addr, image_ref) = image_addrs
            .get(&plugin)
            .cloned()
            .unwrap_or((Address::keyed("image", "nvidia"), plugin.clone()));
        let mut a = attrs([
            ("namespace", json!("kube-system")),
            ("name", json!("nvidia-device-plugin-daemonset")),
            ("image", json!(image_ref)),
        ]);
        let mut deps = vec![image_addr];
        if let Some(secret) = plugin_pull_secret {
            a.insert("pull_secret".into(), json!(secret_name));
            deps.push(secret);
        }
        set.insert(
            DesiredResource::new(
                Address::named("daemonset", "kube-system/nvidia-device-plugin"),
                "daemonset",
                a,
            )
            .depends_on(deps),
        );
    }

    let (values, secret_values) = chart_values(spec);
    let release = match spec.wallaroo.method {
        Method::Helm => Address::named("helm_release", &spec.wallaroo.release_name),
        Method::Kots => Address::named("kots_app", "wallaroo"),
    };
    // The chart from the private registry once it is mirrored there, else from the source.
    let chart = match &chart_image {
        Some((_, target)) => Some(format!("oci://{}", split_tag(target).0)),
        None => chart_source(spec).map(|c| format!("oci://{}", split_tag(&c).0)),
    };
    if spec.wallaroo.method == Method::Helm {
        set.insert(
            DesiredResource::new(
                release.clone(),
                "helm_release",
                attrs([
                    ("namespace", json!(ns)),
                    ("chart", json!(chart)),
                    ("version", json!(spec.wallaroo.version)),
                    ("values", values),
                    ("secret_values", secret_values),
                    ("timeout", json!(spec.helm.timeout)),
                    ("status", json!("deployed")),
                    // The rendered objects as helm left them: any difference is drift.
                    ("drifted_objects", json!({})),
                ]),
            )
            .sensitive(["secret_values"])
            .depends_on(release_deps),
        );
    } else {
        let (config, secret_config) = kots_config_values(spec);
        let kots = spec.kots.as_ref();
        let source = spec.source.as_ref();
        let mut secrets = json!({
            "admin_console_password": kots.map(|k| k.admin_console_password.expose()),
            "license": source.and_then(|s| s.license.as_ref()).map(|l| l.expose()),
            "config": secret_config,
        });
        if let Some(reg) = registry
            && let Some(p) = &reg.password
        {
            secrets["registry_password"] = json!(p.expose());
        }
        set.insert(
            DesiredResource::new(
                release.clone(),
                "kots_app",
                attrs([
                    ("namespace", json!(ns)),
                    (
                        "app_slug",
                        json!(kots.map_or("wallaroo", |k| k.app_slug.as_str())),
                    ),
                    ("channel", json!(spec.wallaroo.license_channel)),
                    ("version", json!(spec.wallaroo.version)),
                    ("config_values", config),
                    (
                        "airgap_bundle",
                        json!(
                            source
                                .and_then(|s| s.bundle.as_ref())
                                .map(|b| spec.resolve_path(b))
                        ),
                    ),
                    (
                        "registry",
                        json!(registry.map(|r| format!("{}/{}", r.host, r.namespace))),
                    ),
                    (
                        "registry_username",
                        json!(registry.and_then(|r| r.username.clone())),
                    ),
                    ("secrets", secrets),
                ]),
            )
            .sensitive(["secrets"])
            .depends_on(release_deps),
        );
    }

    for (email, user) in &spec.user {
        set.insert(
            DesiredResource::new(
                Address::keyed("user", email),
                "keycloak_user",
                attrs([
                    ("email", json!(email)),
                    (
                        "role",
                        json!(if user.role == Role::Admin {
                            "admin"
                        } else {
                            "user"
                        }),
                    ),
                    ("temporary", json!(user.temporary)),
                ])
                .into_iter()
                .chain(
                    user.password
                        .as_ref()
                        .map(|p| ("password".to_string(), json!(p.expose()))),
                )
                .collect(),
            )
            .sensitive(["password"])
            .depends_on([release.clone()]),
        );
    }
    if spec.networking.ingress_mode != wallaroo_spec::model::IngressMode::None {
        set.insert(
            DesiredResource::new(
                Address::named("output", "api_lb_ip"),
                "service_address",
                attrs([("namespace", json!(ns)), ("service", json!("api-lb-ext"))]),
            )
            .depends_on([release.clone()]),
        );
    }
    // The first admin of Keycloak, as the chart records it; the password only as a hash.
    for (name, key) in [
        ("admin_username", "KEYCLOAK_ADMIN_USER"),
        ("admin_password", "KEYCLOAK_ADMIN_PASSWORD"),
    ] {
        let r = DesiredResource::new(
            Address::named("output", name),
            "secret_value",
            attrs([
                ("namespace", json!(ns)),
                ("secret", json!("keycloak-admin-secret")),
                ("key", json!(key)),
            ]),
        )
        .depends_on([release.clone()]);
        set.insert(if name == "admin_password" {
            r.sensitive(["value"])
        } else {
            r
        });
    }
    // Assumed from the documented URL form https://{prefix}.{service}.{suffix}: the
    // dashboard has no service part.
    let host = match spec.wallaroo.domain_prefix.as_str() {
        "" => spec.wallaroo.domain.clone(),
        prefix => format!("{prefix}.{}", spec.wallaroo.domain),
    };
    set.insert(
        DesiredResource::new(
            Address::named("output", "dashboard_url"),
            "static_value",
            attrs([("value", json!(format!("https://{host}")))]),
        )
        .depends_on([release]),
    );
    for (text, lifecycle) in &spec.lifecycle {
        let prefix = parse_address("lifecycle", text)?;
        let mut matched = false;
        for r in set.resources.values_mut() {
            if prefix.contains(&r.address) {
                r.ignore_changes
                    .extend(lifecycle.ignore_changes.iter().cloned());
                matched = true;
            }
        }
        if !matched {
            set.warnings.push(format!(
                "lifecycle \"{text}\" matches no resource of the spec"
            ));
        }
    }
    for (text, import) in &spec.import {
        let address = parse_address("import", text)?;
        match set.resources.get_mut(&address) {
            Some(r) if r.kind == "keycloak_user" => {
                r.attrs.insert("import_id".into(), json!(import.id));
            }
            Some(_) => {
                return Err(DesiredError::Import {
                    label: text.clone(),
                    message: "only users (user[\"EMAIL\"]) are imported by another id; every other resource is found by its own name, and adopted when it is already there".into(),
                });
            }
            None => {
                return Err(DesiredError::Import {
                    label: text.clone(),
                    message: "the spec has no such resource".into(),
                });
            }
        }
    }
    for (text, removed) in &spec.removed {
        let address = parse_address("removed", text)?;
        if set.resources.keys().any(|a| address.contains(a)) {
            set.warnings.push(format!(
                "removed \"{text}\" names a resource the spec still has; the block does nothing until it leaves the spec"
            ));
        }
        if !removed.destroy {
            set.forget.push(address);
        }
    }
    // Any other attribute that holds a sensitive value is sensitive itself.
    let secrets = spec.sensitive_strings();
    if !secrets.is_empty() {
        for r in set.resources.values_mut() {
            let hidden: Vec<String> = r
                .attrs
                .iter()
                .filter(|(k, v)| {
                    !r.sensitive.contains(*k) && crate::sensitive::holds_secret(v, &secrets)
                })
                .map(|(k, _)| k.clone())
                .collect();
            r.sensitive.extend(hidden);
        }
    }
    Ok(set)
}

/// The users a plan would create (or replace) though the spec gives them no password:
/// Keycloak would then hold a user nobody can sign in as. The plan stops on them.
pub fn users_without_password(plan: &wallaroo_engine::Plan, desired: &DesiredSet) -> Vec<String> {
    plan.changes
        .iter()
        .filter(|c| {
            c.kind == "keycloak_user"
                && matches!(
                    c.action,
                    wallaroo_engine::Action::Create | wallaroo_engine::Action::Replace
                )
        })
        .filter(|c| {
            desired
                .resources
                .get(&c.address)
                .is_some_and(|r| !r.attrs.contains_key("password"))
        })
        .map(|c| c.address.to_string())
        .collect()
}

/// The `.dockerconfigjson` of the private registry's pull secret (`None` without a user):
/// what the release's pods, the NVIDIA plugin and the plan's pull check pull with.
pub fn pull_secret_config(reg: &wallaroo_spec::model::PrivateRegistry) -> Option<String> {
    let user = reg.username.clone()?;
    let password = reg.password.as_ref().map(|p| p.expose()).unwrap_or("");
    // `auth` (base64 of user:password) is what kubelets and containerd read.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    Some(
        json!({
            "auths": { reg.host.clone(): { "username": user, "password": password, "auth": basic } }
        })
        .to_string(),
    )
}

fn parse_address(block: &'static str, text: &str) -> Result<Address, DesiredError> {
    text.parse()
        .map_err(|e: wallaroo_engine::AddressError| DesiredError::Address {
            block,
            label: text.to_string(),
            message: e.to_string(),
        })
}

fn attrs<const N: usize>(pairs: [(&str, Value); N]) -> Attrs {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
    }

    #[test]
    fn the_full_example_has_every_kind_and_dependencies_point_inside() {
        let spec = wallaroo_spec::load(&examples().join("full.hcl"), &Default::default()).unwrap();
        let set = from_spec(&spec).unwrap();
        let addrs: Vec<String> = set.resources.keys().map(|a| a.to_string()).collect();
        for want in [
            "namespace.wallaroo",
            "secret.wallaroo/cust-cert-secret",
            "secret.wallaroo/wallaroo-registry",
            "secret.kube-system/wallaroo-registry",
            "nodepool.pipelines-x86.node[\"gpu-1\"]",
            "image[\"wallaroo/k8s-device-plugin:v0.17.0\"]",
            "daemonset.kube-system/nvidia-device-plugin",
            "helm_release.wallaroo",
            "user[\"admin@example.com\"]",
            "output.api_lb_ip",
        ] {
            assert!(
                addrs.iter().any(|a| a == want),
                "{want} missing from {addrs:#?}"
            );
        }
        for r in set.resources.values() {
            for d in &r.depends_on {
                assert!(
                    set.resources.contains_key(d),
                    "{} depends on missing {d}",
                    r.address
                );
            }
        }
        let release = &set.resources[&Address::named("helm_release", "wallaroo")];
        assert_eq!(
            release.attrs["values"]["imageRegistry"],
            "registry.internal.example.com:5000/wallaroo"
        );
        assert_eq!(
            release.attrs["values"]["jupyter"]["enabled"], true,
            "helm.values merged last"
        );
        assert!(
            !release.attrs["values"]
                .to_string()
                .contains("example-only-change-me"),
            "no secret in values"
        );
        assert!(release.sensitive.contains("secret_values"));
        let plugin =
            &set.resources[&Address::named("daemonset", "kube-system/nvidia-device-plugin")];
        assert_eq!(plugin.attrs["pull_secret"], "wallaroo-registry");
        assert!(
            plugin
                .depends_on
                .contains(&Address::named("secret", "kube-system/wallaroo-registry")),
            "the plugin's pull secret is in kube-system before it"
        );
        let node = &set.resources[&"nodepool.pipelines-x86.node[\"gpu-1\"]"
            .parse::<Address>()
            .unwrap()];
        assert_eq!(
            node.attrs["labels"]["wallaroo.ai/node-purpose"],
            "pipelines"
        );
    }

    #[test]
    fn the_kots_method_renders_config_values_and_keeps_secrets_apart() {
        let spec = wallaroo_spec::load(&examples().join("kots.hcl"), &Default::default()).unwrap();
        let set = from_spec(&spec).unwrap();
        let app = &set.resources[&Address::named("kots_app", "wallaroo")];
        assert!(!set.resources.keys().any(|a| a.kind() == "helm_release"));
        let values = &app.attrs["config_values"];
        assert_eq!(values["ingress_mode"], "none");
        assert_eq!(values["domainPrefix"], "ml");
        assert_eq!(values["domainSuffix"], "wallaroo.example.com");
        assert_eq!(values["keycloak_fqdn"], "ml.keycloak.wallaroo.example.com");
        assert_eq!(app.attrs["channel"], "2025-1");
        assert!(app.sensitive.contains("secrets"));
        assert!(
            !values.to_string().contains("example-only-change-me"),
            "no secret among the plain values"
        );
        assert_eq!(
            app.attrs["secrets"]["admin_console_password"],
            "example-only-change-me"
        );
    }

    #[test]
    fn the_chart_is_rendered_with_the_install_values_but_the_vendor_registry() {
        let spec = wallaroo_spec::load(&examples().join("full.hcl"), &Default::default()).unwrap();
        let (installed, _) = crate::chart_values(&spec);
        let render = crate::render_values(&spec);
        assert!(installed["imageRegistry"].is_string());
        assert!(
            render.get("imageRegistry").is_none(),
            "the chart's own registry"
        );
        assert!(render.get("imagePullSecrets").is_none());
        assert_eq!(render["domainSuffix"], installed["domainSuffix"]);
        assert_eq!(render["privatePypi"]["enabled"], true);
        assert_eq!(render["jupyter"]["enabled"], true, "helm.values merged");
        assert_eq!(
            render["privatePypi"]["password"], "example-only-change-me",
            "secret values as helm gets them"
        );
        let mut spec = spec;
        spec.helm.values["imageRegistry"] = json!("mirror.example/vendor");
        assert_eq!(
            crate::render_values(&spec)["imageRegistry"],
            "mirror.example/vendor",
            "a registry set in helm.values is the operator's choice"
        );
    }

    #[test]
    fn the_pull_secret_carries_what_kubelets_read() {
        let spec = wallaroo_spec::load(&examples().join("full.hcl"), &Default::default()).unwrap();
        let set = from_spec(&spec).unwrap();
        let secret = &set.resources[&Address::named("secret", "wallaroo/wallaroo-registry")];
        assert!(secret.sensitive.contains("data"));
        let config: Value =
            serde_json::from_str(secret.attrs["data"][".dockerconfigjson"].as_str().unwrap())
                .unwrap();
        let entry = &config["auths"]["registry.internal.example.com:5000"];
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(entry["auth"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            "wallaroo-push:example-only-change-me"
        );
    }
}
