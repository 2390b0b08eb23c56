//! Values checked against what their consumers accept, after the spec decoded: what helm,
//! the Kubernetes API, registries and container runtimes would refuse in the change window is
//! refused here, at its file, line and column. Every problem is reported at once.
//!
//! Image references are parsed by `oci-spec` (the distribution reference grammar) and
//! durations by `go-parse-duration` (Go's `time.ParseDuration`, what helm reads).

use std::collections::BTreeMap;
use std::ops::Range;

use hcl_edit::Span;
use hcl_edit::expr::{Expression, ObjectKey};
use hcl_edit::structure::Block;

use crate::diag::{SourceFile, SpecDiagnostic};
use crate::model::Spec;

type Blocks<'b> = BTreeMap<&'static str, Vec<&'b Block>>;

struct Checker<'a, 'b> {
    file: &'a SourceFile,
    blocks: &'a Blocks<'b>,
    problems: Vec<SpecDiagnostic>,
}

/// Every check over a decoded spec.
pub(crate) fn run(file: &SourceFile, blocks: &Blocks<'_>, spec: &Spec) -> Vec<SpecDiagnostic> {
    let mut c = Checker {
        file,
        blocks,
        problems: Vec::new(),
    };
    let w = &spec.wallaroo;
    c.check(
        "wallaroo",
        None,
        "version",
        None,
        semver(&w.version),
        "the release's version as its chart is versioned (SemVer 2), e.g. 2025.1.0-6290",
    );
    c.check(
        "wallaroo",
        None,
        "license_channel",
        None,
        repository_path(&w.license_channel),
        "the channel as the vendor registry's path names it, e.g. 2025-1",
    );
    c.check("wallaroo", None, "namespace", None, dns_label(&w.namespace, 63), "a namespace is a DNS-1123 label: lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit");
    c.check(
        "wallaroo",
        None,
        "release_name",
        None,
        dns_label(&w.release_name, 53),
        "helm release names are DNS-1123 labels of at most 53 characters",
    );
    c.check(
        "wallaroo",
        None,
        "domain",
        None,
        dns_name(&w.domain),
        "a DNS name such as wallaroo.example.com, without scheme or path",
    );
    if !w.domain_prefix.is_empty() {
        c.check(
            "wallaroo",
            None,
            "domain_prefix",
            None,
            dns_name(&w.domain_prefix),
            "a DNS label such as `ml`, or empty",
        );
    }
    if let Some(url) = &w.keycloak_url {
        c.check(
            "wallaroo",
            None,
            "keycloak_url",
            None,
            http_url(url),
            "a URL such as https://keycloak.example.com/auth",
        );
    }
    if let Some(r) = &spec.registry {
        c.check("registry", None, "host", None, registry_host(&r.host), "a registry host and optional port, e.g. registry.example.com:5000 (no scheme, no path)");
        c.check(
            "registry",
            None,
            "namespace",
            None,
            repository_path(&r.namespace),
            "a repository path such as `wallaroo` or `team/wallaroo`",
        );
        c.check(
            "registry",
            None,
            "pull_check_max_age",
            None,
            duration(&r.pull_check_max_age),
            "how long a passed pull check stands, as a duration: 30m, 24h",
        );
    }
    if let Some(id) = &spec.apply_identity {
        match (&id.service_account, &id.user) {
            (Some(sa), None) => c.check(
                "apply_identity",
                None,
                "service_account",
                None,
                service_account(sa),
                "a ServiceAccount as NAMESPACE/NAME, e.g. wallaroo-system/wallaroo",
            ),
            (None, Some(_)) => {}
            (Some(_), Some(_)) => c.problem(
                "apply_identity",
                None,
                "user",
                None,
                "`apply_identity` names a ServiceAccount and a user; it is one identity".into(),
                "keep `service_account` or `user`, not both",
            ),
            (None, None) => c.problem(
                "apply_identity",
                None,
                "service_account",
                None,
                "`apply_identity` names no identity".into(),
                "service_account = \"NAMESPACE/NAME\", or user = \"NAME\" (with groups = [...])",
            ),
        }
        if id.service_account.is_some() && !id.groups.is_empty() {
            c.problem(
                "apply_identity",
                None,
                "groups",
                None,
                "`groups` goes with `user`: a ServiceAccount's groups are the API server's".into(),
                "remove `groups`",
            );
        }
    }
    if let Some(s) = &spec.source
        && let Some(host) = &s.registry
    {
        c.check(
            "source",
            None,
            "registry",
            None,
            registry_host(host),
            "a registry host and optional port, e.g. registry.wallaroo.ai (no scheme, no path)",
        );
    }
    // A bundle crosses the gap by hand: unless the spec opts out, its signature is checked.
    if let Some(s) = &spec.source
        && s.bundle.is_some()
        && spec.wallaroo.method == crate::model::Method::Helm
    {
        c.check(
            "source",
            None,
            "bundle",
            None,
            if s.key.is_none() && !s.allow_unsigned {
                Err("nothing checks that the bundle is the one that was sent: no `key`".into())
            } else {
                Ok(())
            },
            "name the public key its index is signed with (`key = \"cosign.pub\"`, for a bundle made with `bundle create --sign-key cosign.key`), or read it unsigned with `allow_unsigned = true`",
        );
    }
    if let Some(t) = &spec.tls
        && let Some(name) = &t.secret_name
    {
        c.check(
            "tls",
            None,
            "secret_name",
            None,
            dns_subdomain(name),
            "a Secret name: a DNS-1123 subdomain (lowercase, digits, '-', '.')",
        );
    }
    if let Some(r) = &spec.registry
        && let Some(name) = &r.pull_secret
    {
        c.check(
            "registry",
            Some("private"),
            "pull_secret",
            None,
            dns_subdomain(name),
            "a Secret name: a DNS-1123 subdomain (lowercase, digits, '-', '.')",
        );
    }
    if let Some(p) = &spec.private_pypi {
        c.check(
            "private_pypi",
            None,
            "url",
            None,
            http_url(&p.url),
            "a URL such as https://pypi.internal.example.com/simple",
        );
    }
    if let Some(e) = &spec.edge_registry {
        c.check(
            "edge_registry",
            None,
            "url",
            None,
            registry_with_path(&e.url),
            "a registry host with an optional path, e.g. us-west1-docker.pkg.dev/project/edge (no scheme)",
        );
        if let Some(email) = &e.email
            && !crate::decode::looks_like_email(email)
        {
            c.problem(
                "edge_registry",
                None,
                "email",
                None,
                format!("`email`: `{email}` is not an email address"),
                "the account's email, e.g. ml-team@example.com",
            );
        }
    }
    c.check(
        "wallaroo",
        None,
        "api_retry",
        None,
        duration(&spec.wallaroo.api_retry),
        "how long requests to the API server are tried again, as a duration: 30s, 2m",
    );
    c.check(
        "helm",
        None,
        "timeout",
        None,
        duration(&spec.helm.timeout),
        "a duration as helm reads it: 300s, 10m, 1h30m",
    );

    for (i, extra) in spec.images.extra.iter().enumerate() {
        c.check(
            "images",
            None,
            "extra",
            Some(Item::Index(i)),
            image_reference(extra),
            "an image reference: host/path/name:tag or name@sha256:<64 hex>",
        );
    }
    for (i, allowed) in spec.images.allow_external.iter().enumerate() {
        c.check(
            "images",
            None,
            "allow_external",
            Some(Item::Index(i)),
            image_reference(allowed),
            "an image reference as the rendered manifests name it",
        );
    }
    for (i, p) in spec.images.platforms.iter().enumerate() {
        c.check(
            "images",
            None,
            "platforms",
            Some(Item::Index(i)),
            platform(p),
            "`all`, or os/arch[/variant] such as linux/amd64 or linux/arm64/v8",
        );
    }
    if let Some(v) = &spec.verify {
        for (i, u) in v.unsigned.iter().enumerate() {
            c.check(
                "verify",
                None,
                "unsigned",
                Some(Item::Index(i)),
                image_reference(u),
                "an image reference as the plan lists it",
            );
        }
    }

    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, pool) in &spec.nodepool {
        for (i, node) in pool.nodes.iter().enumerate() {
            c.check(
                "nodepool",
                Some(name),
                "nodes",
                Some(Item::Index(i)),
                dns_subdomain(node),
                "node names are DNS-1123 subdomains",
            );
            if let Some(first) = owner.insert(node, name) {
                c.problem(
                    "nodepool",
                    Some(name),
                    "nodes",
                    Some(Item::Index(i)),
                    format!("node `{node}` is in nodepool \"{first}\" and nodepool \"{name}\": both would own its labels, and every apply would flip them"),
                    "keep each node in one nodepool",
                );
            }
        }
        for (k, v) in &pool.labels {
            if let Err(e) = label_key(k) {
                c.problem("nodepool", Some(name), "labels", Some(Item::Key(k)), format!("label key `{k}`: {e}"), "keys are [prefix/]name: a DNS subdomain prefix, a name of at most 63 alphanumerics, '-', '_', '.'");
            }
            if let Err(e) = label_value(v) {
                c.problem("nodepool", Some(name), "labels", Some(Item::Key(k)), format!("label `{k}`'s value: {e}"), "values are empty or at most 63 alphanumerics, '-', '_', '.', starting and ending alphanumeric");
            }
        }
        for (i, t) in pool.taints.iter().flatten().enumerate() {
            if let Ok(taint) = crate::model::Taint::parse(t) {
                let problem = label_key(&taint.key)
                    .map_err(|e| format!("taint key `{}`: {e}", taint.key))
                    .and_then(|_| {
                        label_value(&taint.value).map_err(|e| format!("taint `{t}`'s value: {e}"))
                    });
                if let Err(e) = problem {
                    c.problem(
                        "nodepool",
                        Some(name),
                        "taints",
                        Some(Item::Index(i)),
                        e,
                        "taints are key=value:Effect with a label key and a label value",
                    );
                }
            }
        }
    }

    for address in spec.import.keys() {
        if spec.removed.contains_key(address) {
            c.at_label(
                "import",
                address,
                format!(
                    "`import \"{address}\"` and `removed \"{address}\"` name the same resource"
                ),
                "a resource is either brought under management or let go: keep one",
            );
        }
    }
    for kind in ["lifecycle", "removed", "import"] {
        for b in blocks.get(kind).into_iter().flatten() {
            let text = b
                .labels
                .first()
                .map(|l| l.as_str().to_string())
                .unwrap_or_default();
            if let Err(e) = address(&text) {
                c.at_label(kind, &text, format!("`{text}` is not a resource address: {e}"), "addresses look like nodepool.general, user[\"a@example.com\"] or image[\"wallaroo/x:1\"]");
            }
        }
    }
    c.problems
}

/// An item of a list or map attribute, for pointing at it.
enum Item<'k> {
    Index(usize),
    Key(&'k str),
}

impl Checker<'_, '_> {
    fn block(&self, kind: &str, label: Option<&str>) -> Option<&Block> {
        self.blocks
            .get(kind)?
            .iter()
            .copied()
            .find(|b| match label {
                None => true,
                Some(l) => b.labels.first().is_some_and(|x| x.as_str() == l),
            })
    }

    fn span(
        &self,
        kind: &str,
        label: Option<&str>,
        attr: &str,
        item: Option<Item>,
    ) -> Range<usize> {
        let Some(block) = self.block(kind, label) else {
            return 0..0;
        };
        let Some(a) = block.body.get_attribute(attr) else {
            return block.ident.span().unwrap_or(0..0);
        };
        let whole = a.value.span().unwrap_or(0..0);
        let found = match (&a.value, item) {
            (Expression::Array(arr), Some(Item::Index(i))) => {
                arr.iter().nth(i).and_then(|e| e.span())
            }
            (Expression::Object(obj), Some(Item::Key(k))) => obj.iter().find_map(|(key, value)| {
                let name = match key {
                    ObjectKey::Ident(id) => id.as_str().to_string(),
                    ObjectKey::Expression(Expression::String(s)) => s.value().to_string(),
                    _ => return None,
                };
                (name == k)
                    .then(|| key.span().or_else(|| value.expr().span()))
                    .flatten()
            }),
            _ => None,
        };
        found.unwrap_or(whole)
    }

    fn problem(
        &mut self,
        kind: &str,
        label: Option<&str>,
        attr: &str,
        item: Option<Item>,
        message: String,
        help: &str,
    ) {
        let span = self.span(kind, label, attr, item);
        self.problems
            .push(SpecDiagnostic::at(self.file, span, message).with_help(help.to_string()));
    }

    fn check(
        &mut self,
        kind: &str,
        label: Option<&str>,
        attr: &str,
        item: Option<Item>,
        result: Result<(), String>,
        help: &str,
    ) {
        if let Err(e) = result {
            self.problem(kind, label, attr, item, format!("`{attr}`: {e}"), help);
        }
    }

    fn at_label(&mut self, kind: &str, label: &str, message: String, help: &str) {
        let span = self
            .block(kind, Some(label))
            .and_then(|b| b.labels.first().and_then(|l| l.span()))
            .unwrap_or(0..0);
        self.problems
            .push(SpecDiagnostic::at(self.file, span, message).with_help(help.to_string()));
    }
}

fn alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// A SemVer 2 version (`MAJOR.MINOR.PATCH[-pre][+build]`), what helm requires of a chart's.
fn semver(s: &str) -> Result<(), String> {
    let (core, rest) = match s.find(['-', '+']) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    let number = |n: &&str| {
        !n.is_empty()
            && n.chars().all(|c| c.is_ascii_digit())
            && (n.len() == 1 || !n.starts_with('0'))
    };
    let tail_ok = rest.is_empty()
        || rest[1..]
            .split(['.', '+'])
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if numbers.len() == 3 && numbers.iter().all(number) && tail_ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a SemVer version (MAJOR.MINOR.PATCH[-pre][+build])"
        ))
    }
}

/// A DNS-1123 label of at most `max` characters.
fn dns_label(s: &str, max: usize) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.len() > max {
        return Err(format!("`{s}` is {} characters, more than {max}", s.len()));
    }
    if !s.chars().all(|c| alnum(c) || c == '-') {
        return Err(format!(
            "`{s}` has characters other than lowercase letters, digits and '-'"
        ));
    }
    if !s.starts_with(alnum) || !s.ends_with(alnum) {
        return Err(format!("`{s}` must start and end with a letter or digit"));
    }
    Ok(())
}

/// A DNS-1123 subdomain: labels joined by dots, at most 253 characters.
fn dns_subdomain(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err(format!("`{s}` is longer than 253 characters"));
    }
    for part in s.split('.') {
        dns_label(part, 63).map_err(|e| {
            if part == s {
                e
            } else {
                format!("in `{s}`, {e}")
            }
        })?;
    }
    Ok(())
}

/// A DNS name (case-insensitive, as users write domains).
fn dns_name(s: &str) -> Result<(), String> {
    if s.contains("://") || s.contains('/') {
        return Err(format!("`{s}` is a URL or a path, not a DNS name"));
    }
    dns_subdomain(&s.to_ascii_lowercase())
}

/// `host[:port]` of a registry.
fn registry_host(s: &str) -> Result<(), String> {
    if s.contains("://") {
        return Err(format!(
            "`{s}` has a scheme; registries are named by host (HTTPS is always used)"
        ));
    }
    if s.contains('/') {
        return Err(format!("`{s}` has a path; put it in `namespace` or `path`"));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if let Some(p) = port
        && p.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(format!("`{s}`: port `{p}` is not a port number"));
    }
    if host == "localhost" || host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(());
    }
    dns_name(host)
}

/// `host[:port][/path]`: a registry and a repository path in it.
fn registry_with_path(s: &str) -> Result<(), String> {
    if s.contains("://") {
        return Err(format!("`{s}` has a scheme; name the registry by host"));
    }
    match s.split_once('/') {
        Some((host, path)) => {
            registry_host(host)?;
            repository_path(path)
        }
        None => registry_host(s),
    }
}

/// A repository path: components of lowercase alphanumerics with separators, joined by `/`.
fn repository_path(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.split('/').all(|c| {
            !c.is_empty()
                && c.starts_with(alnum)
                && c.ends_with(alnum)
                && c.chars()
                    .all(|ch| alnum(ch) || matches!(ch, '.' | '_' | '-'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a repository path (lowercase letters, digits, '.', '_', '-', joined by '/')"
        ))
    }
}

/// An `http`/`https` URL with a host.
fn http_url(s: &str) -> Result<(), String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!("`{s}` has no scheme"));
    };
    if scheme != "https" && scheme != "http" {
        return Err(format!("`{s}`: the scheme `{scheme}` is not http or https"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if host.is_empty() {
        return Err(format!("`{s}` has no host"));
    }
    registry_host(host).map_err(|e| format!("`{s}`: {e}"))
}

/// `NAMESPACE/NAME`: a namespace (a DNS-1123 label) and a ServiceAccount name (a subdomain).
fn service_account(s: &str) -> Result<(), String> {
    let Some((ns, name)) = s.split_once('/') else {
        return Err(format!("`{s}` is not NAMESPACE/NAME"));
    };
    dns_label(ns, 63).map_err(|e| format!("the namespace of `{s}`: {e}"))?;
    dns_subdomain(name).map_err(|e| format!("the name of `{s}`: {e}"))
}

/// A duration as Go (and so helm) reads it, positive.
fn duration(s: &str) -> Result<(), String> {
    match go_parse_duration::parse_duration(s) {
        Ok(ns) if ns > 0 => Ok(()),
        Ok(_) => Err(format!("`{s}` is not positive")),
        Err(_) => Err(format!("`{s}` is not a duration")),
    }
}

/// An image reference (the distribution grammar).
fn image_reference(s: &str) -> Result<(), String> {
    s.parse::<oci_spec::distribution::Reference>()
        .map(|_| ())
        .map_err(|e| format!("`{s}` is not an image reference ({e})"))
}

/// `all` or `os/arch[/variant]`.
fn platform(s: &str) -> Result<(), String> {
    if s == "all" {
        return Ok(());
    }
    let parts: Vec<&str> = s.split('/').collect();
    let word = |p: &&str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    if (2..=3).contains(&parts.len()) && parts.iter().all(word) {
        Ok(())
    } else {
        Err(format!("`{s}` is not os/arch[/variant]"))
    }
}

/// A label (or taint) key: `[prefix/]name`.
fn label_key(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix {
        dns_subdomain(p).map_err(|e| format!("the prefix {e}"))?;
    }
    if name.is_empty() || name.len() > 63 {
        return Err("the name must be 1 to 63 characters".into());
    }
    name_chars(name)
}

/// A label (or taint) value: empty, or at most 63 name characters.
fn label_value(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    if s.len() > 63 {
        return Err(format!("`{s}` is longer than 63 characters"));
    }
    name_chars(s)
}

fn name_chars(s: &str) -> Result<(), String> {
    let ok = s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` must be alphanumerics, '-', '_' or '.', starting and ending alphanumeric"
        ))
    }
}

/// A resource address: `kind.name` or `kind["key"]`, then more `.name` / `["key"]` steps.
fn address(s: &str) -> Result<(), String> {
    let ident = |t: &str| {
        !t.is_empty()
            && t.starts_with(|c: char| c.is_ascii_alphabetic())
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    };
    let mut rest = s;
    let end = rest.find(['.', '[']).unwrap_or(rest.len());
    if !ident(&rest[..end]) {
        return Err("it must start with a resource kind such as `nodepool` or `image`".into());
    }
    rest = &rest[end..];
    if rest.is_empty() {
        return Err("a kind alone names no resource".into());
    }
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if !ident(&r[..end]) {
                return Err(format!("`{}` is not a name", &r[..end]));
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("[\"") {
            let Some(close) = r.find("\"]") else {
                return Err("a `[\"` is not closed by `\"]`".into());
            };
            rest = &r[close + 2..];
        } else {
            return Err(format!("unexpected `{rest}`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_as_their_consumers_read_them() {
        assert!(semver("2025.1.0-6290").is_ok() && semver("1.2.3+build.1").is_ok());
        assert!(
            semver("2025.1").is_err() && semver("v2025.1.0").is_err() && semver("1.02.3").is_err()
        );
        assert!(dns_label("wallaroo", 63).is_ok());
        assert!(dns_label("Wallaroo", 63).is_err());
        assert!(dns_label("-x", 63).is_err());
        assert!(dns_label(&"a".repeat(54), 53).is_err());
        assert!(registry_host("registry.example.com:5000").is_ok());
        assert!(registry_host("https://registry.example.com").is_err());
        assert!(registry_host("registry.example.com/wallaroo").is_err());
        assert!(registry_host("r.example.com:99999").is_err());
        assert!(http_url("https://keycloak.example.com/auth").is_ok());
        assert!(http_url("keycloak.example.com").is_err());
        assert!(http_url("ftp://x.example.com").is_err());
        assert!(duration("20m").is_ok() && duration("1h30m").is_ok() && duration("300s").is_ok());
        assert!(service_account("wallaroo-system/wallaroo").is_ok());
        assert!(service_account("ci/wallaroo.plan").is_ok());
        assert!(
            service_account("wallaroo").is_err()
                && service_account("Ops/x").is_err()
                && service_account("ops/").is_err()
                && service_account("ops/a/b").is_err()
        );
        assert!(
            duration("20 minutes").is_err() && duration("0s").is_err() && duration("-5m").is_err()
        );
        assert!(image_reference("nvcr.io/nvidia/k8s-device-plugin:v0.17.0").is_ok());
        assert!(image_reference("busybox").is_ok());
        assert!(image_reference("Registry.example.com/UPPER:1").is_err());
        assert!(image_reference("r.io/a@sha256:123").is_err());
        assert!(platform("linux/arm64/v8").is_ok() && platform("all").is_ok());
        assert!(platform("linux").is_err() && platform("linux/amd64/v1/x").is_err());
        assert!(label_key("wallaroo.ai/node-purpose").is_ok() && label_key("team").is_ok());
        assert!(label_key("bad key").is_err() && label_key("UPPER.example/x").is_err());
        assert!(label_value("").is_ok() && label_value("a b").is_err());
        assert!(address("nodepool.general").is_ok());
        assert!(address("user[\"a@example.com\"]").is_ok());
        assert!(address("nodepool.general.node[\"n-1\"]").is_ok());
        assert!(
            address("nodepool").is_err() && address("[x]").is_err() && address("user[\"a").is_err()
        );
    }
}
