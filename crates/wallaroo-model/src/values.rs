//! The one mapping from spec settings to what the release is installed with: the chart's
//! values, KOTS's config values and `image-values.yaml`. Secrets never enter the plain
//! values: each function returns them apart, as a sensitive attribute of the release.

use serde_json::{Value, json};
use wallaroo_engine::json::merge;
use wallaroo_spec::Spec;
use wallaroo_spec::model::AssaysVersion;

use crate::desired::TLS_SECRET;

/// The one mapping from spec settings to chart values keys, and the secret values apart.
/// Keys the public documentation confirms: `ingress_mode`, `imageRegistry`,
/// `deploymentStage`, `custTlsSecret`. The others are our assumption until the real chart
/// is at hand; `helm { values }` can set any key we do not model.
pub fn chart_values(spec: &Spec) -> (Value, Value) {
    values_with(spec, true)
}

/// The values discovery renders the chart with (`helm template`): those the release is
/// installed with, secret values included as helm gets them, so that required values are
/// present and images behind a setting (edge registry, private PyPI, assays, GPU) are found;
/// but without the image registry keys of [`image_values`] (unless `helm { values }` sets
/// them), so that rendered references name the vendor's images, which are what is mirrored.
/// Sensitive: never show it.
/// A key the operator already pointed at the private registry in `helm { values }` reads
/// as the chart wrote it here, so that discovery still learns the vendor's image behind it.
pub fn render_values(spec: &Spec) -> Value {
    let (mut v, secrets) = values_with(spec, false);
    merge(&mut v, &secrets);
    if let Some(reg) = &spec.registry {
        let mut private = Vec::new();
        leaves_naming(&spec.helm.values, &reg.host, &mut Vec::new(), &mut private);
        for path in private {
            let keys: Vec<&str> = path.iter().map(String::as_str).collect();
            remove_path(&mut v, &keys);
        }
    }
    v
}

/// Paths of the string leaves of `v` that name `host`.
fn leaves_naming(v: &Value, host: &str, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                at.push(k.clone());
                leaves_naming(child, host, at, out);
                at.pop();
            }
        }
        Value::String(s) if s == host || s.starts_with(&format!("{host}/")) => out.push(at.clone()),
        _ => {}
    }
}

/// Removes the value at `path` (and the maps it leaves empty).
pub(crate) fn remove_path(v: &mut Value, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let Some(parent) = parents.iter().try_fold(&mut *v, |v, k| v.get_mut(*k)) else {
        return;
    };
    if let Some(m) = parent.as_object_mut() {
        m.remove(*last);
    }
    if !parents.is_empty()
        && parents
            .iter()
            .try_fold(&*v, |v, k| v.get(*k))
            .and_then(Value::as_object)
            .is_some_and(serde_json::Map::is_empty)
    {
        remove_path(v, parents);
    }
}

/// The spec setting each chart values key comes from, for messages about a chart that
/// refuses its values (`domainSuffix` -> `wallaroo { domain }`).
pub const VALUE_SOURCES: &[(&str, &str)] = &[
    (
        "kubernetes_distribution",
        "wallaroo { kubernetes_distribution }",
    ),
    ("ingress_mode", "networking { ingress_mode }"),
    ("domainPrefix", "wallaroo { domain_prefix }"),
    ("domainSuffix", "wallaroo { domain }"),
    (
        "external_inference_endpoints_enabled",
        "networking { external_inference_endpoints }",
    ),
    ("assays", "assays { version }"),
    ("nodeAffinityKey", "scheduling { affinity_key }"),
    ("engineAffinity", "scheduling { engine_affinity }"),
    ("tolerations", "scheduling { tolerations }"),
    ("nodeSelectors", "scheduling { node_selectors }"),
    ("imageRegistry", "registry \"private\" { host, namespace }"),
    ("imagePullSecrets", "registry \"private\" { username }"),
    ("deploymentStage", "tls"),
    ("custTlsSecret", "tls { secret_name }"),
    ("ociRegistry", "edge_registry"),
    ("privatePypi", "private_pypi"),
];

pub(crate) fn values_with(spec: &Spec, image_registry: bool) -> (Value, Value) {
    let mut v = json!({
        "kubernetes_distribution": spec.wallaroo.kubernetes_distribution,
        "ingress_mode": spec.networking.ingress_mode,
        "domainPrefix": spec.wallaroo.domain_prefix,
        "domainSuffix": spec.wallaroo.domain,
        "apilb": { "external_inference_endpoints_enabled": spec.networking.external_inference_endpoints },
        "assays": {
            "enabled": spec.assays.version != AssaysVersion::Disabled,
            "version": spec.assays.version,
        },
        "nodeAffinityKey": spec.scheduling.affinity_key,
        "engineAffinity": spec.scheduling.engine_affinity,
        "tolerations": spec.scheduling.tolerations,
        "nodeSelectors": spec.scheduling.node_selectors,
    });
    let mut secrets = json!({});
    if image_registry {
        merge(&mut v, &image_values(spec));
    }
    if let Some(tls) = &spec.tls {
        v["deploymentStage"] = json!("cust");
        v["custTlsSecret"] = json!(tls.secret_name.clone().unwrap_or_else(|| TLS_SECRET.into()));
    }
    if let Some(edge) = &spec.edge_registry {
        v["ociRegistry"] = json!({
            "enabled": true, "registry": edge.url, "observability": edge.observability,
        });
        // Keys the spec leaves unset are left out, not written as null.
        if let Some(email) = &edge.email {
            v["ociRegistry"]["email"] = json!(email);
        }
        if let Some(username) = &edge.username {
            v["ociRegistry"]["username"] = json!(username);
        }
        if let Some(p) = &edge.password {
            secrets["ociRegistry"] = json!({ "password": p.expose() });
        }
    }
    if let Some(pypi) = &spec.private_pypi {
        v["privatePypi"] = json!({
            "enabled": true, "url": pypi.url, "onlyPrivate": pypi.only_private,
        });
        if let Some(username) = &pypi.username {
            v["privatePypi"]["username"] = json!(username);
        }
        if let Some(p) = &pypi.password {
            secrets["privatePypi"] = json!({ "password": p.expose() });
        }
    }
    merge(&mut v, &spec.helm.values);
    // Sensitivity follows the value: `helm { values }` keys written with a sensitive value,
    // and any value that holds a secret (a domain templated from one, say), go with the
    // secrets.
    let marked = spec
        .sensitive_paths
        .iter()
        .filter_map(|p| p.strip_prefix("/helm/values"))
        .flat_map(|rest| match rest {
            "" => spec
                .helm
                .values
                .as_object()
                .map(|m| {
                    m.keys()
                        .map(|k| format!("/{}", k.replace('~', "~0").replace('/', "~1")))
                        .collect()
                })
                .unwrap_or_default(),
            r if r.starts_with('/') => vec![r.to_string()],
            _ => Vec::new(),
        })
        .collect::<Vec<_>>();
    crate::sensitive::move_secret_parts(&mut v, &mut secrets, marked, &spec.sensitive_strings());
    (v, secrets)
}

/// The KOTS config values of a spec (items of the app's config screen, by name), and the
/// secret ones apart. Item names the public documentation confirms (Wallaroo's own
/// ConfigValues template): `ingress_mode`, `domainPrefix`, `domainSuffix`, `keycloak_fqdn`,
/// `jupyter_fqdn`, `jupyter_mode`, `dashboard_redirect_uri`; the others are our assumption,
/// named after the console's labels.
pub fn kots_config_values(spec: &Spec) -> (Value, Value) {
    let w = &spec.wallaroo;
    let dashboard = if w.domain_prefix.is_empty() {
        w.domain.clone()
    } else {
        format!("{}.{}", w.domain_prefix, w.domain)
    };
    let mut v = json!({
        "ingress_mode": spec.networking.ingress_mode,
        "domainPrefix": w.domain_prefix,
        "domainSuffix": w.domain,
        "keycloak_fqdn": w.service_host("keycloak"),
        "jupyter_fqdn": w.service_host("jupyter"),
        "jupyter_mode": "hub",
        "dashboard_redirect_uri": format!("https://{dashboard}"),
        "assays": spec.assays.version,
        "external_inference_endpoints": spec.networking.external_inference_endpoints,
        "node_affinity_key": spec.scheduling.affinity_key,
        "engine_affinity": spec.scheduling.engine_affinity,
    });
    let mut secrets = json!({});
    if let Some(tls) = &spec.tls {
        v["tls_secret"] = json!(tls.secret_name.clone().unwrap_or_else(|| TLS_SECRET.into()));
    }
    if let Some(edge) = &spec.edge_registry {
        v["edge_registry_url"] = json!(edge.url);
        v["edge_registry_username"] = json!(edge.username);
        if let Some(p) = &edge.password {
            secrets["edge_registry_password"] = json!(p.expose());
        }
    }
    if let Some(pypi) = &spec.private_pypi {
        v["private_pypi_url"] = json!(pypi.url);
        v["private_pypi_username"] = json!(pypi.username);
        if let Some(p) = &pypi.password {
            secrets["private_pypi_password"] = json!(p.expose());
        }
    }
    crate::sensitive::move_secret_parts(
        &mut v,
        &mut secrets,
        Vec::new(),
        &spec.sensitive_strings(),
    );
    (v, secrets)
}

/// `image-values.yaml`: the chart values that point every image at the private registry
/// (`imageRegistry`, where the chart looks for all its images, which the mirror puts under
/// `{namespace}/{name}`), and the pull secret when the registry needs credentials. Empty
/// without a private registry. Part of the release's values; `wallaroo images --values`
/// prints it for those who run helm themselves.
pub fn image_values(spec: &Spec) -> Value {
    let mut v = json!({});
    if let Some(reg) = &spec.registry {
        v["imageRegistry"] = json!(format!("{}/{}", reg.host, reg.namespace));
        if reg.username.is_some() {
            v["imagePullSecrets"] = json!([{ "name": crate::desired::pull_secret_name(reg) }]);
        }
    }
    v
}

/// An image a chart (or subchart) names by parts in its `values.yaml`: where the object is
/// in the release's values, and its `registry` and `repository`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredImage {
    pub path: Vec<String>,
    pub registry: Option<String>,
    /// The object has a `registry` key, even if empty (its templates then supply a default).
    pub registry_key: bool,
    pub repository: String,
}

/// The values that point a chart's own image keys at the private registry, with one line per
/// key set saying why: every declared image that is mirrored gets its target's `registry` and
/// `repository` (or, with no `registry` key, a `repository` with the host in it), and
/// `global.imageRegistry` is set when the chart declares it. Images the chart names only
/// through `imageRegistry` are already covered by [`image_values`].
pub fn image_rewrites(
    spec: &Spec,
    declared: &[DeclaredImage],
    global_image_registry: bool,
    images: &[crate::MirrorImage],
) -> (Value, Vec<String>) {
    let mut out = json!({});
    let mut why = Vec::new();
    let Some(reg) = &spec.registry else {
        return (out, why);
    };
    let mirrored: Vec<(String, String, String)> = images
        .iter()
        .filter(|i| i.origin != crate::CHART_ORIGIN && !i.origin.starts_with("referrer of "))
        .map(|i| {
            let (host, repo, _) = crate::split_reference(&i.source);
            let (_, target) = crate::image_target(spec, reg, i);
            (host, repo, target)
        })
        .collect();
    for d in declared {
        let named = match &d.registry {
            Some(r) => format!("{r}/{}", d.repository),
            None => d.repository.clone(),
        };
        let (host, repo, _) = crate::split_reference(&named);
        let names_host = d.registry.is_some()
            || d.repository.split_once('/').is_some_and(|(first, _)| {
                first.contains('.') || first.contains(':') || first == "localhost"
            });
        // With no registry in the values the templates supply one: match the repository
        // alone, when exactly one mirrored image has it.
        let candidates: Vec<&(String, String, String)> = mirrored
            .iter()
            .filter(|(h, r, _)| *r == repo && (!names_host || *h == host))
            .collect();
        let [(host, _, target)] = candidates.as_slice() else {
            continue;
        };
        let host = host.clone();
        let (thost, rest) = target.split_once('/').unwrap_or((target.as_str(), ""));
        let rest = rest.split('@').next().unwrap_or(rest);
        let (tpath, _) = crate::images::split_tag(rest);
        let mut node = &mut out;
        for seg in &d.path {
            node = &mut node[seg.as_str()];
        }
        let key = d.path.join(".");
        if d.registry_key {
            node["registry"] = json!(thost);
            node["repository"] = json!(tpath);
            why.push(format!(
                "{key}.registry, {key}.repository: the chart's {host}/{repo} is mirrored to {thost}/{tpath}"
            ));
        } else {
            node["repository"] = json!(format!("{thost}/{tpath}"));
            why.push(format!(
                "{key}.repository: the chart's {host}/{repo} is mirrored to {thost}/{tpath}"
            ));
        }
    }
    if global_image_registry {
        out["global"]["imageRegistry"] = json!(reg.host);
        why.push(format!(
            "global.imageRegistry: the chart declares it; images are in {}",
            reg.host
        ));
    }
    (out, why)
}

#[cfg(test)]
mod rewrite_tests {
    use super::*;

    #[test]
    fn declared_image_keys_point_at_the_mirrored_targets() {
        let spec = wallaroo_spec::parse_str(
            "t.hcl",
            r#"
wallaroo {
  version                 = "2025.1.0-6290"
  license_channel         = "2025-1"
  domain                  = "wallaroo.example.com"
  kubernetes_distribution = "kurl"
}
source "wallaroo" { registry = "vendor.example:5000" }
registry "private" {
  host      = "private.example:5000"
  namespace = "ns"
}
"#,
            std::path::Path::new("."),
            &Default::default(),
        )
        .unwrap();
        let image = |s: &str| crate::MirrorImage {
            source: s.into(),
            origin: "helm template".into(),
            pin: None,
        };
        let images = [
            image("vendor.example:5000/p/sidecar@sha256:abc"),
            image("vendor.example:5000/p/worker:1.0"),
            image("docker.io/bitnami/cache:7"),
        ];
        let declared = [
            DeclaredImage {
                path: vec!["sidecar".into()],
                registry: Some("vendor.example:5000".into()),
                registry_key: true,
                repository: "p/sidecar".into(),
            },
            DeclaredImage {
                path: vec!["worker".into()],
                registry: None,
                registry_key: false,
                repository: "vendor.example:5000/p/worker".into(),
            },
            DeclaredImage {
                path: vec!["cache".into(), "image".into()],
                registry: Some("docker.io".into()),
                registry_key: true,
                repository: "bitnami/cache".into(),
            },
        ];
        let (values, why) = image_rewrites(&spec, &declared, true, &images);
        assert_eq!(
            values,
            json!({
                "sidecar": {"registry": "private.example:5000", "repository": "ns/sidecar"},
                "worker": {"repository": "private.example:5000/ns/worker"},
                "cache": {"image": {"registry": "private.example:5000", "repository": "ns/cache"}},
                "global": {"imageRegistry": "private.example:5000"},
            })
        );
        assert_eq!(why.len(), 4, "{why:?}");
    }
}
