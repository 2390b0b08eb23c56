//! The values mapping read backwards: the spec of an install that is already running. A
//! release installed by hand (the operator's values files, `--set`s and `--set-file`s, as
//! helm keeps them), nodes labelled and tainted with kubectl and users made in Keycloak
//! become the spec that says the same, so that its first plan changes nothing.
//!
//! Each value the operator set lands on the spec attribute [`crate::values`] maps it from,
//! or stays in `helm { values }` where no attribute does. A round trip proves it: the
//! written spec is parsed, its values computed by [`chart_values`] and compared with the
//! release's as the helm kind compares them; whatever differs is kept from the release in
//! `helm { values }`, and what still differs is reported. Secrets become sensitive
//! `variable`s: no secret is ever part of what is written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{Value, json};
use wallaroo_engine::json::{fill_defaults, merge, set_path, split};
use wallaroo_spec::model::{NODE_PURPOSE_LABEL, Toleration, nodepool_defaults};

use crate::desired::{PULL_SECRET, TLS_SECRET};
use crate::values::values_with;

mod hcl;
mod nodepools;

use hcl::{quoted, render};
use nodepools::map_nodepools;

/// What is running, as `wallaroo init --from-cluster` reads it.
#[derive(Debug, Clone)]
pub struct LiveInstall {
    pub release_name: String,
    pub namespace: String,
    /// The release's newest revision.
    pub revision: u32,
    pub chart_name: String,
    pub chart_version: String,
    /// The values the operator set (helm's `config`: values files, `--set`, `--set-file`
    /// merged). Sensitive.
    pub config: Value,
    /// The chart's own defaults (its values.yaml), which helm keeps with the release.
    pub chart_defaults: Value,
    /// Every node of the cluster.
    pub nodes: Vec<LiveNode>,
    /// Pull secrets in the release's namespace: name -> registry host -> username.
    pub pull_secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// Secrets in the release's namespace: name -> type.
    pub secrets: BTreeMap<String, String>,
    /// Keycloak's users (not its admin, not service accounts), or why they could not be read.
    pub users: Result<Vec<LiveUser>, String>,
    /// Secret strings seen while reading (registry passwords, Keycloak's admin password,
    /// TLS keys): a value that holds one is written as a variable. Never written.
    pub known_secrets: BTreeSet<String>,
}

#[derive(Debug, Clone, Default)]
pub struct LiveNode {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `key=value:Effect`.
    pub taints: Vec<String>,
    /// The node may join a pool (`init --nodes SELECTOR` leaves the others out; they still
    /// count when a label is checked to select a pool's nodes and no others).
    pub in_scope: bool,
}

#[derive(Debug, Clone)]
pub struct LiveUser {
    pub username: String,
    pub email: Option<String>,
    pub admin: bool,
}

/// What the cluster cannot say: where the release came from and the registries' CAs.
#[derive(Debug, Clone, Default)]
pub struct Hints {
    pub license_channel: Option<String>,
    pub vendor_registry: Option<String>,
    pub vendor_username: Option<String>,
    pub vendor_ca_file: Option<PathBuf>,
    pub registry_ca_file: Option<PathBuf>,
    /// The private registry's user, when no pull secret in the namespace holds a login.
    pub registry_username: Option<String>,
    /// Keycloak's base URL, when not the one the chart serves.
    pub keycloak_url: Option<String>,
    /// Where the spec will be written (relative paths in it resolve there).
    pub base_dir: PathBuf,
}

/// A sensitive variable the written spec declares, to be set before `plan`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    pub description: String,
}

/// The written spec, the variables it needs and what could not be mapped.
#[derive(Debug, Clone)]
pub struct Generated {
    pub text: String,
    pub variables: Vec<Variable>,
    pub report: Vec<String>,
}

/// Marks a string to be written as an expression (`var.NAME`), not a quoted string.
const EXPR: char = '\u{1}';

fn expr(text: &str) -> Value {
    Value::String(format!("{EXPR}{text}"))
}

/// Where the operator put the values of one install, and what has been said of them.
struct Draft<'a> {
    live: &'a LiveInstall,
    hints: &'a Hints,
    /// The release's values with the chart's defaults under them.
    effective: Value,
    /// The operator's values not (yet) mapped to an attribute.
    rest: Value,
    /// Blocks as (name with labels, attributes in order).
    blocks: Vec<(String, Vec<(String, Value)>)>,
    variables: Vec<Variable>,
    report: Vec<String>,
}

impl Draft<'_> {
    fn get(&self, path: &[&str]) -> Option<&Value> {
        path.iter().try_fold(&self.effective, |v, k| v.get(*k))
    }

    /// Takes a key out of what is left for `helm { values }`.
    fn take(&mut self, path: &[&str]) {
        crate::values::remove_path(&mut self.rest, path);
    }

    fn variable(&mut self, name: &str, description: impl Into<String>) -> Value {
        if !self.variables.iter().any(|v| v.name == name) {
            self.variables.push(Variable {
                name: name.into(),
                description: description.into(),
            });
        }
        expr(&format!("var.{name}"))
    }

    fn block(&mut self, name: impl Into<String>, attrs: Vec<(&str, Value)>) {
        let attrs: Vec<(String, Value)> = attrs
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        self.blocks.push((name.into(), attrs));
    }
}

fn str_of(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
}

/// The spec of `live`. `hints` supply what the cluster does not know.
pub fn spec_from_live(live: &LiveInstall, hints: &Hints) -> Generated {
    let mut config = live.config.clone();
    if !config.is_object() {
        config = json!({});
    }
    let mut effective = if live.chart_defaults.is_object() {
        live.chart_defaults.clone()
    } else {
        json!({})
    };
    merge(&mut effective, &config);
    let mut d = Draft {
        live,
        hints,
        effective,
        rest: config,
        blocks: Vec::new(),
        variables: Vec::new(),
        report: Vec::new(),
    };
    map_values(&mut d);
    // The values no attribute maps, with their secrets made variables.
    let mut extra = d.rest.clone();
    let mut secret_paths = Vec::new();
    secret_leaves(
        &extra,
        &mut Vec::new(),
        &live.known_secrets,
        &mut secret_paths,
    );
    for (path, var) in &secret_paths {
        let value = d.variable(
            var,
            format!("The release's value {} (a secret).", path.join(".")),
        );
        set_path(&mut extra, path, value);
        d.report.push(format!(
            "the value {} looks secret: it is read from variable {var}",
            path.join(".")
        ));
    }
    // Round trip: what the spec gives against what the release has.
    let mut overrides = json!({});
    for round in 0..2 {
        let mut values = extra.clone();
        merge(&mut values, &overrides);
        let text = render(&d, &values);
        let diffs = match round_trip(&d, &text) {
            Ok(diffs) => diffs,
            Err(e) => {
                d.report
                    .push(format!("the written spec does not validate: {e}"));
                return finish(d, &values);
            }
        };
        if diffs.is_empty() {
            return finish(d, &values);
        }
        for (path, live_value) in diffs {
            let keys: Vec<&str> = path.iter().map(String::as_str).collect();
            match live_value {
                Some(v) if round == 0 => set_path(&mut overrides, &path, v),
                Some(v) => d.report.push(format!(
                    "the plan will change the release's value {}: it is {} now",
                    keys.join("."),
                    shown(&v, &live.known_secrets)
                )),
                None if round == 0 => {}
                None => d.report.push(format!(
                    "the plan will add the value {} to the release (the spec always sets it; \
                     the release and the chart's defaults do not)",
                    keys.join(".")
                )),
            }
        }
        if round == 1 {
            return finish(d, &values);
        }
    }
    unreachable!("the loop returns in its second round")
}

fn shown(v: &Value, secrets: &BTreeSet<String>) -> String {
    if crate::sensitive::holds_secret(v, secrets) {
        wallaroo_spec::REDACTED.to_string()
    } else {
        v.to_string()
    }
}

/// The spec with the whole report at its top.
fn finish(d: Draft<'_>, values: &Value) -> Generated {
    Generated {
        text: render(&d, values),
        variables: d.variables,
        report: d.report,
    }
}

const DISTRIBUTIONS: &[&str] = &["aks", "eks", "gke", "oke", "kurl"];

/// Every values key [`crate::values`] maps, back to its attribute.
fn map_values(d: &mut Draft<'_>) {
    let live = d.live;
    // wallaroo { ... }
    let version = live.chart_version.clone();
    let channel = d.hints.license_channel.clone().unwrap_or_else(|| {
        let mut parts = version.split(['.', '-']);
        match (parts.next(), parts.next()) {
            (Some(y), Some(m)) => format!("{y}-{m}"),
            _ => "CHANGE ME".into(),
        }
    });
    let domain = match str_of(d.get(&["domainSuffix"])) {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => {
            d.report.push(
                "the release sets no domainSuffix: `domain` is a placeholder to change".into(),
            );
            "wallaroo.example.com".into()
        }
    };
    d.take(&["domainSuffix"]);
    let prefix = str_of(d.get(&["domainPrefix"])).unwrap_or("").to_string();
    d.take(&["domainPrefix"]);
    let distribution = match str_of(d.get(&["kubernetes_distribution"])) {
        Some(s) if DISTRIBUTIONS.contains(&s) => {
            let s = s.to_string();
            d.take(&["kubernetes_distribution"]);
            s
        }
        other => {
            d.report.push(format!(
                "kubernetes_distribution is {}, not one of {}: kept in helm {{ values }}",
                other.map_or("not set".into(), |s| format!("`{s}`")),
                DISTRIBUTIONS.join(", ")
            ));
            "kurl".into()
        }
    };
    let mut wallaroo = vec![
        ("version", json!(version)),
        ("license_channel", json!(channel)),
    ];
    if live.namespace != "wallaroo" {
        wallaroo.push(("namespace", json!(live.namespace)));
    }
    wallaroo.push(("domain", json!(domain)));
    if !prefix.is_empty() {
        wallaroo.push(("domain_prefix", json!(prefix)));
    }
    wallaroo.push(("kubernetes_distribution", json!(distribution)));
    if live.release_name != "wallaroo" {
        wallaroo.push(("release_name", json!(live.release_name)));
    }
    if live.chart_name != "wallaroo" {
        wallaroo.push(("chart", json!(live.chart_name)));
    }
    if let Some(url) = &d.hints.keycloak_url {
        wallaroo.push(("keycloak_url", json!(url)));
    }
    d.block("wallaroo", wallaroo);

    // source "wallaroo" { ... }: not in the cluster; from the flags.
    let vendor = d
        .hints
        .vendor_registry
        .clone()
        .unwrap_or_else(|| "registry.wallaroo.ai".into());
    let username = d.hints.vendor_username.clone().unwrap_or_else(|| {
        d.report.push(
            "the vendor registry's user is not in the cluster: `source { username }` is a \
             placeholder (or pass --vendor-username)"
                .into(),
        );
        "CHANGE ME".into()
    });
    let password = d.variable(
        "vendor_password",
        "The password or token for the vendor registry, from Wallaroo.",
    );
    let ca = d.hints.vendor_ca_file.as_ref().map(|p| json!(p));
    d.block(
        "source \"wallaroo\"",
        vec![
            ("registry", json!(vendor)),
            ("username", json!(username)),
            ("password", password),
            ("ca_file", ca.unwrap_or(Value::Null)),
        ],
    );

    map_registry(d);
    map_nodepools(d);
    map_tls(d);

    // networking { ... }
    let mut networking = Vec::new();
    match str_of(d.get(&["ingress_mode"])) {
        Some(m @ ("none" | "external")) => {
            networking.push(("ingress_mode", json!(m)));
            d.take(&["ingress_mode"]);
        }
        Some("internal") => d.take(&["ingress_mode"]),
        _ => {}
    }
    let ext = ["apilb", "external_inference_endpoints_enabled"];
    if let Some(b) = d.get(&ext).and_then(Value::as_bool) {
        if b {
            networking.push(("external_inference_endpoints", json!(true)));
        }
        d.take(&ext);
    }
    if !networking.is_empty() {
        d.block("networking", networking);
    }

    // assays { ... }
    let enabled = d.get(&["assays", "enabled"]).and_then(Value::as_bool);
    let version = str_of(d.get(&["assays", "version"])).map(String::from);
    let assays = match (enabled, version.as_deref()) {
        (Some(false), _) => Some("disabled"),
        (_, Some(v @ ("v1" | "v2"))) => Some(v),
        _ => None,
    };
    if let Some(a) = assays {
        d.take(&["assays", "enabled"]);
        d.take(&["assays", "version"]);
        if a != "v2" {
            d.block("assays", vec![("version", json!(a))]);
        }
    }

    // scheduling { ... }
    let mut scheduling = Vec::new();
    if let Some(k) = str_of(d.get(&["nodeAffinityKey"])).map(String::from) {
        if k != NODE_PURPOSE_LABEL {
            scheduling.push(("affinity_key", json!(k)));
        }
        d.take(&["nodeAffinityKey"]);
    }
    if let Some(v) = str_of(d.get(&["engineAffinity"])).map(String::from) {
        if v != "pipelines" {
            scheduling.push(("engine_affinity", json!(v)));
        }
        d.take(&["engineAffinity"]);
    }
    // Only tolerations the spec writes back exactly as they are (every field present);
    // others stay in helm { values } whole.
    if let Some(t) = d.get(&["tolerations"]).cloned()
        && serde_json::from_value::<Vec<Toleration>>(t.clone())
            .ok()
            .and_then(|parsed| serde_json::to_value(parsed).ok())
            .is_some_and(|back| back == t)
    {
        if t.as_array().is_some_and(|a| !a.is_empty()) {
            scheduling.push(("tolerations", t));
        }
        d.take(&["tolerations"]);
    }
    if let Some(s) = d.get(&["nodeSelectors"]).cloned()
        && serde_json::from_value::<BTreeMap<String, BTreeMap<String, String>>>(s.clone()).is_ok()
    {
        if s.as_object().is_some_and(|m| !m.is_empty()) {
            scheduling.push(("node_selectors", s));
        }
        d.take(&["nodeSelectors"]);
    }
    if !scheduling.is_empty() {
        d.block("scheduling", scheduling);
    }

    // edge_registry { ... } and private_pypi { ... }
    if d.get(&["ociRegistry", "enabled"]).and_then(Value::as_bool) == Some(true) {
        let field = |d: &Draft<'_>, k: &str| d.get(&["ociRegistry", k]).cloned();
        let url = field(d, "registry").unwrap_or(json!(""));
        let email = field(d, "email").filter(|v| v.as_str().is_some_and(|s| !s.is_empty()));
        let username = field(d, "username").filter(|v| v.as_str().is_some_and(|s| !s.is_empty()));
        let observability = field(d, "observability").filter(|v| v == &json!(true));
        let password = d
            .live
            .config
            .pointer("/ociRegistry/password")
            .is_some()
            .then(|| {
                d.variable(
                    "edge_registry_password",
                    "The password of the edge OCI registry (the release's ociRegistry.password).",
                )
            });
        for k in [
            "enabled",
            "registry",
            "email",
            "username",
            "observability",
            "password",
        ] {
            d.take(&["ociRegistry", k]);
        }
        d.block(
            "edge_registry",
            vec![
                ("url", url),
                ("email", email.unwrap_or(Value::Null)),
                ("username", username.unwrap_or(Value::Null)),
                ("password", password.unwrap_or(Value::Null)),
                ("observability", observability.unwrap_or(Value::Null)),
            ],
        );
    }
    if d.get(&["privatePypi", "enabled"]).and_then(Value::as_bool) == Some(true) {
        let field = |d: &Draft<'_>, k: &str| d.get(&["privatePypi", k]).cloned();
        let url = field(d, "url").unwrap_or(json!(""));
        let username = field(d, "username").filter(|v| v.as_str().is_some_and(|s| !s.is_empty()));
        let only = field(d, "onlyPrivate").filter(|v| v == &json!(true));
        let password = d
            .live
            .config
            .pointer("/privatePypi/password")
            .is_some()
            .then(|| {
                d.variable(
                    "private_pypi_password",
                    "The password of the private PyPI mirror (the release's privatePypi.password).",
                )
            });
        for k in ["enabled", "url", "username", "onlyPrivate", "password"] {
            d.take(&["privatePypi", k]);
        }
        d.block(
            "private_pypi",
            vec![
                ("url", url),
                ("username", username.unwrap_or(Value::Null)),
                ("password", password.unwrap_or(Value::Null)),
                ("only_private", only.unwrap_or(Value::Null)),
            ],
        );
    }

    map_users(d);
}

/// `registry "private"` from `imageRegistry` (`host/namespace`) and the pull secret.
fn map_registry(d: &mut Draft<'_>) {
    let Some(image_registry) = str_of(d.get(&["imageRegistry"])).map(String::from) else {
        d.report.push(
            "the release sets no imageRegistry: its images come from where the chart says, \
             so no `registry \"private\"` is written"
                .into(),
        );
        return;
    };
    let Some((host, namespace)) = image_registry.split_once('/') else {
        d.report.push(format!(
            "imageRegistry `{image_registry}` has no namespace (host/namespace): kept in helm {{ values }}"
        ));
        return;
    };
    d.take(&["imageRegistry"]);
    let pull = d.get(&["imagePullSecrets"]).cloned();
    let names: Vec<String> = pull
        .as_ref()
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    // The login: from the pull secrets the release names, wallaroo's own, then any
    // other of the namespace that holds one for this registry (however its key is written:
    // `host`, `https://host`, `host/v2/`).
    let login_in = |name: &str| {
        d.live.pull_secrets.get(name).and_then(|logins| {
            logins
                .iter()
                .find(|(h, _)| registry_host(h) == host)
                .map(|(_, u)| u.clone())
        })
    };
    let mut order: Vec<String> = names.clone();
    order.push(PULL_SECRET.to_string());
    order.extend(d.live.pull_secrets.keys().cloned());
    let found = order
        .iter()
        .find_map(|n| login_in(n).map(|u| (n.clone(), u)));
    let mut attrs = vec![("host", json!(host)), ("namespace", json!(namespace))];
    // The release's one pull secret, made by hand under its own name: adopted as it is.
    let adopted = match (&found, names.as_slice()) {
        (Some((secret, _)), [named]) if named == secret => Some(secret.clone()),
        _ => None,
    };
    match &adopted {
        Some(secret) => {
            d.take(&["imagePullSecrets"]);
            if secret != PULL_SECRET {
                attrs.push(("pull_secret", json!(secret)));
            }
        }
        None if !names.is_empty() => d.report.push(format!(
            "imagePullSecrets names {}, none of which holds the login: kept in helm {{ values }}; \
             wallaroo adds a `{PULL_SECRET}` pull secret of its own",
            names.join(", ")
        )),
        None => {}
    }
    let username = match (found, &d.hints.registry_username) {
        (Some((secret, u)), _) => {
            d.report.push(format!(
                "the private registry's login ({u}) comes from the pull secret `{secret}` in {}{}",
                d.live.namespace,
                if adopted.is_some() && secret != PULL_SECRET {
                    ", which the release names: kept under its name (`pull_secret`)"
                } else {
                    ""
                }
            ));
            Some(u)
        }
        (None, Some(u)) => {
            d.report.push(format!(
                "no pull secret in {} holds a login for {host}: the user given with --registry-username is written",
                d.live.namespace
            ));
            Some(u.clone())
        }
        (None, None) => {
            d.report.push(format!(
                "no pull secret in {} holds a login for {host}: the registry is written without a user (pass --registry-username)",
                d.live.namespace
            ));
            None
        }
    };
    if let Some(u) = username {
        let password = d.variable(
            "registry_password",
            format!("The password of {u} at the private registry {host}."),
        );
        attrs.push(("username", json!(u)));
        attrs.push(("password", password));
    }
    match &d.hints.registry_ca_file {
        Some(ca) => attrs.push(("ca_file", json!(ca))),
        None => d.report.push(format!(
            "the CA of {host}'s certificate is not in the cluster: set `registry {{ ca_file }}` \
             (or pass --registry-ca-file) when a private CA signs it"
        )),
    }
    d.block("registry \"private\"", attrs);
}

/// The `host[:port]` of a docker config `auths` key (`https://host/v1/`, `host`).
fn registry_host(key: &str) -> &str {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    key.split('/').next().unwrap_or(key)
}

/// `tls { secret_name }` from `deploymentStage: cust` and `custTlsSecret`.
fn map_tls(d: &mut Draft<'_>) {
    if str_of(d.get(&["deploymentStage"])) != Some("cust") {
        return;
    }
    let name = str_of(d.get(&["custTlsSecret"]))
        .unwrap_or(TLS_SECRET)
        .to_string();
    d.take(&["deploymentStage"]);
    d.take(&["custTlsSecret"]);
    match d.live.secrets.get(&name).map(String::as_str) {
        Some("kubernetes.io/tls") => {}
        Some(other) => d.report.push(format!(
            "the TLS Secret {} is of type {other}, not kubernetes.io/tls",
            name
        )),
        None => d.report.push(format!(
            "the TLS Secret {name} the release names is not in {}",
            d.live.namespace
        )),
    }
    d.block("tls", vec![("secret_name", json!(name))]);
}

fn map_users(d: &mut Draft<'_>) {
    let users = match &d.live.users {
        Ok(u) => u.clone(),
        Err(why) => {
            d.report.push(format!(
                "Keycloak's users were not read ({why}): no user is written"
            ));
            return;
        }
    };
    let mut imports = Vec::new();
    for u in users {
        let Some(email) = u.email.clone().filter(|e| !e.is_empty()) else {
            d.report.push(format!(
                "Keycloak user {} has no email, and wallaroo's users are named by email: not \
                 written; to manage it, add `user \"EMAIL\" {{}}` with `import \"user[\\\"EMAIL\\\"]\" \
                 {{ id = \"{}\" }}` (apply then gives it that email)",
                u.username, u.username
            ));
            continue;
        };
        let mut attrs = Vec::new();
        if u.admin {
            attrs.push(("role", json!("admin")));
        }
        d.block(format!("user {}", quoted(&email)), attrs);
        if !u.username.eq_ignore_ascii_case(&email) {
            imports.push((email, u.username));
        }
    }
    for (email, username) in imports {
        d.block(
            format!("import {}", quoted(&format!("user[{}]", quoted(&email)))),
            vec![("id", json!(username))],
        );
    }
}

/// Secret-looking leaves of the values left for `helm { values }`: by key name, or by a
/// value that holds a secret read elsewhere, or a private key. Each becomes a variable
/// named after its path.
fn secret_leaves(
    v: &Value,
    path: &mut Vec<String>,
    known: &BTreeSet<String>,
    out: &mut Vec<(Vec<String>, String)>,
) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                path.push(k.clone());
                secret_leaves(child, path, known, out);
                path.pop();
            }
        }
        Value::String(s) => {
            let key = path
                .last()
                .map(|k| k.to_ascii_lowercase())
                .unwrap_or_default();
            let by_name = SECRET_KEY_PARTS.iter().any(|p| key.contains(p));
            let private_key = s.contains("-----BEGIN") && s.contains("PRIVATE KEY");
            let holds = known
                .iter()
                .any(|k| !k.is_empty() && s.contains(k.as_str()));
            if (by_name && !s.is_empty()) || private_key || holds {
                out.push((path.clone(), variable_name(path)));
            }
        }
        // A list holding a secret is one value (helm replaces lists whole).
        Value::Array(_) if crate::sensitive::holds_secret(v, known) => {
            out.push((path.clone(), variable_name(path)));
        }
        _ => {}
    }
}

/// Parts of a values key that name a secret (`adminPassword`, `apiToken`, `license`, ...).
const SECRET_KEY_PARTS: &[&str] = &[
    "password",
    "passwd",
    "token",
    "apikey",
    "api_key",
    "accesskey",
    "access_key",
    "secretkey",
    "secret_key",
    "privatekey",
    "private_key",
    "license",
    "credential",
];

fn variable_name(path: &[String]) -> String {
    let mut name = String::from("helm");
    for seg in path {
        name.push('_');
        let mut prev_lower = false;
        for c in seg.chars() {
            if c.is_ascii_uppercase() && prev_lower {
                name.push('_');
            }
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            name.push(if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            });
        }
    }
    name
}

/// Paths of values and the release's value at each (`None`: it has none).
type Differences = Vec<(Vec<String>, Option<Value>)>;

/// The leaves where the written spec's values differ from the release's, compared as the
/// helm kind compares them (secret values apart, keys left at the chart's defaults filled
/// in), each with the release's value there (`None`: the release has none).
fn round_trip(d: &Draft<'_>, text: &str) -> Result<Differences, String> {
    let inputs = wallaroo_spec::VarInputs {
        env: d
            .variables
            .iter()
            .map(|v| (v.name.clone(), format!("placeholder-of-{}", v.name)))
            .collect(),
        ..Default::default()
    };
    let spec = wallaroo_spec::parse_str("wallaroo.hcl", text, &d.hints.base_dir, &inputs).map_err(
        |e| {
            e.0.iter()
                .map(|d| d.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        },
    )?;
    let (mut desired, secrets) = values_with(&spec, true);
    // What the chart does not declare the plan does not send (when its render agrees).
    if d.live.chart_defaults.is_object() {
        for p in crate::declared::undeclared(&desired, &d.live.chart_defaults) {
            if !crate::declared::is_explicit(&p, &spec.helm.values) {
                crate::declared::remove_path(&mut desired, &p);
            }
        }
    }
    let (mut live, _) = split(&d.live.config, &secrets);
    fill_defaults(&mut live, &desired, &d.live.chart_defaults);
    let mut out = Vec::new();
    differences(&live, &desired, &mut Vec::new(), &mut out);
    // Where the release names nothing, helm computes the chart's default: written out, the
    // spec then says the same.
    for (path, value) in &mut out {
        if value.is_none() {
            *value = path
                .iter()
                .try_fold(&d.live.chart_defaults, |v, k| v.get(k))
                .cloned();
        }
    }
    Ok(out)
}

fn differences(live: &Value, want: &Value, path: &mut Vec<String>, out: &mut Differences) {
    match (live, want) {
        (Value::Object(l), Value::Object(w)) => {
            let keys: BTreeSet<&String> = l.keys().chain(w.keys()).collect();
            for k in keys {
                path.push(k.clone());
                match (l.get(k), w.get(k)) {
                    (Some(a), Some(b)) => differences(a, b, path, out),
                    (a, _) => out.push((path.clone(), a.cloned())),
                }
                path.pop();
            }
        }
        (a, b) if a != b => out.push((path.clone(), Some(a.clone()))),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
