//! Walks the HCL body block by block and builds the typed [`Spec`], keeping the span of
//! every block, key and value so each problem points where it is.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;

use hcl_edit::Span;
use hcl_edit::structure::{Block, Body};
use serde::de::DeserializeOwned;

use crate::diag::{SourceFile, SpecDiagnostic, SpecErrors, closest};
use crate::eval::Evaluator;
use crate::model::*;
use crate::secret::REDACTED;
use crate::vars::{self, VarInputs};

/// The block types of the spec language: name, the one label it must carry (if any), and
/// whether several blocks of the type may appear (told apart by label).
const BLOCKS: &[(&str, Label, bool)] = &[
    ("wallaroo", Label::None, false),
    ("source", Label::Fixed("wallaroo"), false),
    ("registry", Label::Fixed("private"), false),
    ("images", Label::None, false),
    ("nodepool", Label::Name("the nodepool's name"), true),
    ("tls", Label::None, false),
    ("networking", Label::None, false),
    ("edge_registry", Label::None, false),
    ("assays", Label::None, false),
    ("scheduling", Label::None, false),
    ("private_pypi", Label::None, false),
    ("gpu", Label::None, false),
    ("troubleshoot", Label::None, false),
    ("verify", Label::None, false),
    ("kots", Label::None, false),
    ("user", Label::Name("the user's email"), true),
    ("lifecycle", Label::Name("the resource's address"), true),
    ("removed", Label::Name("the resource's address"), true),
    ("import", Label::Name("the resource's address"), true),
    ("state", Label::None, false),
    ("helm", Label::None, false),
    ("apply_identity", Label::None, false),
    ("variable", Label::Name("the variable's name"), true),
];

#[derive(Clone, Copy)]
enum Label {
    None,
    Fixed(&'static str),
    Name(&'static str),
}

/// Parses and validates one spec text.
pub fn parse(file: &SourceFile, base_dir: &Path, inputs: &VarInputs) -> Result<Spec, SpecErrors> {
    let body =
        hcl_edit::parser::parse_body(&file.text).map_err(|e| SpecDiagnostic::syntax(file, &e))?;
    let mut d = Decoder {
        file,
        problems: Vec::new(),
        sensitive_paths: BTreeSet::new(),
    };
    let blocks = d.sort_blocks(&body);

    // Variables first: every other block may reference them.
    let mut declared = BTreeMap::new();
    for block in blocks.get("variable").into_iter().flatten() {
        match vars::declare(file, block) {
            Ok(v) => {
                declared.insert(v.name.clone(), v);
            }
            Err(mut p) => d.problems.append(&mut p),
        }
    }
    let values = match vars::resolve(&declared, inputs, file) {
        Ok(v) => v,
        Err(mut p) => {
            d.problems.append(&mut p);
            return Err(SpecErrors(d.problems));
        }
    };
    let ev = Evaluator::new(file, base_dir, &values);

    let one = |name: &str| blocks.get(name).and_then(|b| b.first().copied());
    let wallaroo: Option<Wallaroo> = one("wallaroo").and_then(|b| d.block(&ev, b, "/wallaroo"));
    if one("wallaroo").is_none() {
        d.problems.push(
            SpecDiagnostic::at(file, 0..0, "the spec has no `wallaroo` block")
                .with_help("add wallaroo { version = \"...\", license_channel = \"...\", domain = \"...\", kubernetes_distribution = \"...\" }"),
        );
    }
    let source: Option<Source> = one("source").and_then(|b| d.block(&ev, b, "/source"));
    if let (Some(s), Some(b)) = (&source, one("source")) {
        match (&s.registry, &s.bundle) {
            (Some(_), Some(_)) => d.at_block(
                b,
                "`source` sets both `registry` and `bundle`",
                "keep one: a vendor registry, or an offline bundle",
            ),
            (None, None) => d.at_block(
                b,
                "`source` sets neither `registry` nor `bundle`",
                "set registry = \"registry.wallaroo.ai\" or bundle = \"wallaroo-bundle.tar\"",
            ),
            _ => {}
        }
    }
    let registry: Option<PrivateRegistry> =
        one("registry").and_then(|b| d.block(&ev, b, "/registry"));
    for (name, what) in [
        ("source", "source \"wallaroo\""),
        ("registry", "registry \"private\""),
    ] {
        if one(name).is_none() && one("wallaroo").is_some() {
            let span = one("wallaroo").and_then(|b| b.ident.span()).unwrap_or(0..0);
            d.problems.push(
                SpecDiagnostic::at(file, span, format!("the spec has no `{what}` block"))
                    .with_help(format!("an air-gapped install needs `{what} {{ ... }}`")),
            );
        }
    }
    let images: Images = one("images")
        .and_then(|b| d.block(&ev, b, "/images"))
        .unwrap_or_default();

    let mut nodepool = BTreeMap::new();
    for b in blocks.get("nodepool").into_iter().flatten() {
        let name = label(b);
        let pointer = format!("/nodepool/{}", pointer_escape(&name));
        let Some(mut pool) = d.block::<Nodepool>(&ev, b, &pointer) else {
            continue;
        };
        if pool.nodes.is_empty() == pool.selector.is_empty() {
            d.at_block(
                b,
                &format!("nodepool \"{name}\" must set exactly one of `nodes` or `selector`"),
                "list the node names, or give a label selector",
            );
        }
        if let Some(taints) = &pool.taints {
            for t in taints {
                if let Err(e) = Taint::parse(t) {
                    let span = attr_value_span(b, "taints");
                    d.problems.push(
                        SpecDiagnostic::at(file, span, e)
                            .with_help("write taints as \"key=value:NoSchedule\""),
                    );
                }
            }
        }
        if let Some((labels, taints)) = nodepool_defaults(&name) {
            let mut merged = labels;
            merged.extend(std::mem::take(&mut pool.labels));
            pool.labels = merged;
            pool.taints.get_or_insert(taints);
        }
        nodepool.insert(name, pool);
    }

    let tls: Option<Tls> = one("tls").and_then(|b| d.block(&ev, b, "/tls"));
    if let (Some(t), Some(b)) = (&tls, one("tls")) {
        let files = t.cert_file.is_some() || t.key_file.is_some();
        if files == t.secret_name.is_some()
            || (files && (t.cert_file.is_none() || t.key_file.is_none()))
        {
            d.at_block(
                b,
                "`tls` needs `cert_file` and `key_file`, or `secret_name`",
                "give both files, or name an existing kubernetes.io/tls Secret",
            );
        }
        for (attr, path) in [("cert_file", &t.cert_file), ("key_file", &t.key_file)] {
            if let Some(p) = path {
                d.check_path(b, attr, p, base_dir, true);
            }
        }
    }
    for (block, attr) in [
        ("registry", "ca_file"),
        ("source", "ca_file"),
        ("source", "bundle"),
    ] {
        if let Some(b) = one(block)
            && let Some(p) = string_attr(&ev, b, attr)
        {
            d.check_path(b, attr, Path::new(&p), base_dir, attr != "bundle");
        }
    }
    let networking = one("networking")
        .and_then(|b| d.block(&ev, b, "/networking"))
        .unwrap_or_default();
    let edge_registry = one("edge_registry").and_then(|b| d.block(&ev, b, "/edge_registry"));
    let assays = one("assays")
        .and_then(|b| d.block(&ev, b, "/assays"))
        .unwrap_or_default();
    let scheduling = one("scheduling")
        .and_then(|b| d.block(&ev, b, "/scheduling"))
        .unwrap_or_default();
    let private_pypi = one("private_pypi").and_then(|b| d.block(&ev, b, "/private_pypi"));
    let gpu = one("gpu")
        .and_then(|b| d.block(&ev, b, "/gpu"))
        .unwrap_or_default();
    let troubleshoot = one("troubleshoot")
        .and_then(|b| d.block(&ev, b, "/troubleshoot"))
        .unwrap_or_default();
    let verify: Option<Verify> = one("verify").and_then(|b| d.block(&ev, b, "/verify"));
    if let (Some(v), Some(b)) = (&verify, one("verify")) {
        if v.keys.is_empty() {
            d.at_block(
                b,
                "`verify` needs at least one key",
                "keys = [\"vendor-cosign.pub\"] (the vendor's cosign public key)",
            );
        }
        for k in &v.keys {
            d.check_path(b, "keys", k, base_dir, true);
        }
    }
    let kots: Option<Kots> = one("kots").and_then(|b| d.block(&ev, b, "/kots"));
    if let (Some(w), Some(b)) = (&wallaroo, one("wallaroo"))
        && w.method == Method::Kots
        && one("kots").is_none()
    {
        d.at_block(
            b,
            "`method = \"kots\"` needs a `kots` block",
            "add kots { admin_console_password = var.kots_password }",
        );
    }
    let mut user = BTreeMap::new();
    for b in blocks.get("user").into_iter().flatten() {
        let email = label(b);
        if !looks_like_email(&email) {
            let span = b.labels.first().and_then(|l| l.span()).unwrap_or(0..0);
            d.problems.push(
                SpecDiagnostic::at(file, span, format!("`{email}` is not an email address"))
                    .with_help("users are named by email: user \"alice@example.com\" { ... }"),
            );
        }
        let pointer = format!("/user/{}", pointer_escape(&email));
        if let Some(u) = d.block::<User>(&ev, b, &pointer) {
            user.insert(email, u);
        }
    }
    let mut lifecycle = BTreeMap::new();
    for b in blocks.get("lifecycle").into_iter().flatten() {
        let address = label(b);
        let pointer = format!("/lifecycle/{}", pointer_escape(&address));
        if let Some(l) = d.block::<Lifecycle>(&ev, b, &pointer) {
            lifecycle.insert(address, l);
        }
    }
    let mut removed = BTreeMap::new();
    for b in blocks.get("removed").into_iter().flatten() {
        let address = label(b);
        let pointer = format!("/removed/{}", pointer_escape(&address));
        if let Some(r) = d.block::<Removed>(&ev, b, &pointer) {
            removed.insert(address, r);
        }
    }
    let mut import = BTreeMap::new();
    for b in blocks.get("import").into_iter().flatten() {
        let address = label(b);
        let pointer = format!("/import/{}", pointer_escape(&address));
        if let Some(i) = d.block::<Import>(&ev, b, &pointer) {
            import.insert(address, i);
        }
    }
    let state = one("state")
        .and_then(|b| d.block(&ev, b, "/state"))
        .unwrap_or_default();
    let helm = one("helm")
        .and_then(|b| d.block(&ev, b, "/helm"))
        .unwrap_or_default();
    let apply_identity: Option<ApplyIdentity> =
        one("apply_identity").and_then(|b| d.block(&ev, b, "/apply_identity"));

    if !d.problems.is_empty() {
        d.problems.sort_by_key(|p| p.location);
        return Err(SpecErrors(d.problems));
    }
    let variable = declared
        .into_values()
        .map(|v| {
            (
                v.name.clone(),
                VariableInfo {
                    type_name: v.var_type.name(),
                    sensitive: v.sensitive,
                    description: v.description,
                },
            )
        })
        .collect();
    let spec = Spec {
        path: file.name.clone().into(),
        wallaroo: wallaroo.expect("a missing wallaroo block is reported above"),
        source,
        registry,
        images,
        nodepool,
        tls,
        networking,
        edge_registry,
        assays,
        scheduling,
        private_pypi,
        gpu,
        troubleshoot,
        verify,
        kots,
        user,
        lifecycle,
        removed,
        import,
        state,
        helm,
        apply_identity,
        variable,
        sensitive_paths: d.sensitive_paths,
    };
    let mut problems = crate::checks::run(file, &blocks, &spec);
    if !problems.is_empty() {
        problems.sort_by_key(|p| p.location);
        return Err(SpecErrors(problems));
    }
    Ok(spec)
}

struct Decoder<'a> {
    file: &'a SourceFile,
    problems: Vec<SpecDiagnostic>,
    sensitive_paths: BTreeSet<String>,
}

impl<'a> Decoder<'a> {
    /// Groups the top-level blocks by type, reporting unknown types, wrong labels,
    /// duplicates and top-level attributes.
    fn sort_blocks<'b>(&mut self, body: &'b Body) -> BTreeMap<&'static str, Vec<&'b Block>> {
        let mut out: BTreeMap<&'static str, Vec<&'b Block>> = BTreeMap::new();
        let mut seen: BTreeMap<(String, String), Range<usize>> = BTreeMap::new();
        for attr in body.attributes() {
            let span = attr.key.span().unwrap_or(0..0);
            self.problems.push(
                SpecDiagnostic::at(
                    self.file,
                    span,
                    format!("attribute `{}` outside of any block", attr.key.as_str()),
                )
                .with_help("put it inside the block it belongs to, e.g. wallaroo { ... }"),
            );
        }
        for block in body.blocks() {
            let ident = block.ident.as_str();
            let ident_span = block.ident.span().unwrap_or(0..0);
            let Some(&(name, lab, many)) = BLOCKS.iter().find(|(n, _, _)| *n == ident) else {
                let help = match closest(ident, BLOCKS.iter().map(|b| b.0)) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!(
                        "known blocks: {}",
                        BLOCKS.iter().map(|b| b.0).collect::<Vec<_>>().join(", ")
                    ),
                };
                self.problems.push(
                    SpecDiagnostic::at(
                        self.file,
                        ident_span,
                        format!("unknown block type `{ident}`"),
                    )
                    .with_help(help),
                );
                continue;
            };
            let labels: Vec<&str> = block.labels.iter().map(|l| l.as_str()).collect();
            let label_ok = match lab {
                Label::None => labels.is_empty(),
                Label::Fixed(want) => labels == [want],
                Label::Name(_) => labels.len() == 1 && !labels[0].is_empty(),
            };
            if !label_ok {
                let (message, help) = match lab {
                    Label::None => (
                        format!("block `{name}` takes no label"),
                        format!("write {name} {{ ... }}"),
                    ),
                    Label::Fixed(want) => (
                        format!("block `{name}` must be labelled \"{want}\""),
                        format!("write {name} \"{want}\" {{ ... }}"),
                    ),
                    Label::Name(what) => (
                        format!("block `{name}` needs exactly one label: {what}"),
                        format!("write {name} \"NAME\" {{ ... }}"),
                    ),
                };
                self.problems.push(
                    SpecDiagnostic::at(self.file, block_header_span(block), message)
                        .with_help(help),
                );
                continue;
            }
            let key = (
                name.to_string(),
                if many {
                    labels[0].to_string()
                } else {
                    String::new()
                },
            );
            if let Some(first) = seen.get(&key) {
                let what = if many {
                    format!("{name} \"{}\"", key.1)
                } else {
                    name.to_string()
                };
                self.problems.push(
                    SpecDiagnostic::at(
                        self.file,
                        block_header_span(block),
                        format!("duplicate block `{what}`"),
                    )
                    .with_label("defined again here")
                    .with_secondary(first.clone(), "first defined here")
                    .with_help("merge the two blocks into one"),
                );
                continue;
            }
            seen.insert(key, block_header_span(block));
            out.entry(name).or_default().push(block);
        }
        out
    }

    /// Reports a path attribute that names nothing (a file, or for bundles anything).
    fn check_path(
        &mut self,
        block: &Block,
        attr: &str,
        path: &Path,
        base_dir: &Path,
        must_be_file: bool,
    ) {
        let full = base_dir.join(path);
        // A bundle in parts is named by what its parts share; its index stands for it.
        let parts_index = !must_be_file
            && std::path::PathBuf::from(format!("{}.index.json", full.display())).is_file();
        if parts_index
            || if must_be_file {
                full.is_file()
            } else {
                full.exists()
            }
        {
            return;
        }
        self.problems.push(
            SpecDiagnostic::at(
                self.file,
                attr_value_span(block, attr),
                format!("`{}` does not exist", path.display()),
            )
            .with_help(format!(
                "paths are relative to the spec's directory ({})",
                base_dir.display()
            )),
        );
    }

    fn at_block(&mut self, block: &Block, message: &str, help: &str) {
        self.problems
            .push(SpecDiagnostic::at(self.file, block_header_span(block), message).with_help(help));
    }

    /// Evaluates a block's attributes and deserializes them into `T`, mapping serde's
    /// errors back onto the attribute's key or value.
    fn block<T: DeserializeOwned>(
        &mut self,
        ev: &Evaluator,
        block: &Block,
        pointer: &str,
    ) -> Option<T> {
        let mut object = serde_json::Map::new();
        let mut spans: BTreeMap<String, (Range<usize>, Range<usize>)> = BTreeMap::new();
        let mut sensitive_attrs = BTreeSet::new();
        let mut ok = true;
        for inner in block.body.blocks() {
            ok = false;
            let ident = inner.ident.as_str();
            self.problems.push(
                SpecDiagnostic::at(
                    self.file,
                    inner.ident.span().unwrap_or(0..0),
                    format!(
                        "unexpected block `{ident}` inside `{}`",
                        block.ident.as_str()
                    ),
                )
                .with_help(format!(
                    "`{}` holds attributes only; write `{ident} = {{ ... }}` if it is a map",
                    block.ident.as_str()
                )),
            );
        }
        for attr in block.body.attributes() {
            let key = attr.key.as_str().to_string();
            let key_span = attr.key.span().unwrap_or(0..0);
            let value_span = attr.value.span().unwrap_or(key_span.clone());
            if let Some((first, _)) = spans.get(&key) {
                ok = false;
                self.problems.push(
                    SpecDiagnostic::at(
                        self.file,
                        key_span,
                        format!("attribute `{key}` is set twice"),
                    )
                    .with_secondary(first.clone(), "first set here")
                    .with_help("keep one of them"),
                );
                continue;
            }
            spans.insert(key.clone(), (key_span, value_span));
            match ev.eval(&attr.value) {
                Ok(e) => {
                    if e.sensitive {
                        sensitive_attrs.insert(key.clone());
                        for part in &e.sensitive_paths {
                            self.sensitive_paths
                                .insert(format!("{pointer}/{}{part}", pointer_escape(&key)));
                        }
                    }
                    object.insert(key, e.value);
                }
                Err(mut p) => {
                    ok = false;
                    self.problems.append(&mut p);
                }
            }
        }
        if !ok {
            return None;
        }
        let value = serde_json::Value::Object(object);
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(t) => Some(t),
            Err(e) => {
                let path = e.path().to_string();
                let message = e.inner().to_string();
                let first = path.split(['.', '[']).next().unwrap_or("").to_string();
                self.problems.push(self.serde_problem(
                    block,
                    &spans,
                    &sensitive_attrs,
                    &first,
                    &message,
                ));
                None
            }
        }
    }

    fn serde_problem(
        &self,
        block: &Block,
        spans: &BTreeMap<String, (Range<usize>, Range<usize>)>,
        sensitive: &BTreeSet<String>,
        attr: &str,
        message: &str,
    ) -> SpecDiagnostic {
        let name = block.ident.as_str();
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let field = rest.split('`').next().unwrap_or_default();
            let expected: Vec<&str> = rest.split('`').skip(2).step_by(2).collect();
            let help = match closest(field, expected.iter().copied()) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("`{name}` takes: {}", expected.join(", ")),
            };
            let span = spans
                .get(field)
                .map(|s| s.0.clone())
                .unwrap_or_else(|| block_header_span(block));
            return SpecDiagnostic::at(
                self.file,
                span,
                format!("unknown attribute `{field}` in `{name}`"),
            )
            .with_help(help);
        }
        if let Some(rest) = message.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or_default();
            return SpecDiagnostic::at(
                self.file,
                block_header_span(block),
                format!("`{name}` is missing the required attribute `{field}`"),
            )
            .with_label(format!("add `{field} = ...` to this block"))
            .with_help(format!("set `{field}` inside `{name}`"));
        }
        let span = spans
            .get(attr)
            .map(|s| s.1.clone())
            .unwrap_or_else(|| block_header_span(block));
        let hidden = sensitive.contains(attr);
        if let Some(rest) = message.strip_prefix("unknown variant `") {
            let expected: Vec<&str> = rest.split('`').skip(2).step_by(2).collect();
            let got = if hidden {
                REDACTED
            } else {
                rest.split('`').next().unwrap_or_default()
            };
            return SpecDiagnostic::at(
                self.file,
                span,
                format!("`{got}` is not a valid value for `{attr}`"),
            )
            .with_help(format!("use one of: {}", expected.join(", ")));
        }
        if let Some(rest) = message.strip_prefix("invalid type: ") {
            let (found, expected) = rest
                .split_once(", expected ")
                .unwrap_or((rest, "another type"));
            let expected = match expected {
                "a sequence" => "a list",
                "a boolean" => "a bool (true or false)",
                "a map" => "an object",
                other => other,
            };
            return SpecDiagnostic::at(
                self.file,
                span,
                format!(
                    "`{attr}` has the wrong type: expected {expected}, found {}",
                    kind_of(found)
                ),
            )
            .with_help(format!("give `{attr}` {expected}"));
        }
        let message = if hidden {
            "invalid value (details hidden: it is sensitive)"
        } else {
            message
        };
        SpecDiagnostic::at(self.file, span, format!("`{attr}`: {message}"))
    }
}

/// serde names the found value (`string "abc"`); keep only its kind so nothing secret leaks.
fn kind_of(found: &str) -> &'static str {
    let word = found.split([' ', '`']).next().unwrap_or_default();
    match word {
        "string" | "character" => "a string",
        "integer" | "floating" => "a number",
        "boolean" => "a bool",
        "sequence" => "a list",
        "map" => "an object",
        "null" | "unit" => "null",
        _ => "another type",
    }
}

fn label(block: &Block) -> String {
    block
        .labels
        .first()
        .map(|l| l.as_str().to_string())
        .unwrap_or_default()
}

fn block_header_span(block: &Block) -> Range<usize> {
    let start = block.ident.span().map(|s| s.start).unwrap_or(0);
    let end = block
        .labels
        .last()
        .and_then(|l| l.span())
        .or_else(|| block.ident.span())
        .map(|s| s.end)
        .unwrap_or(start);
    start..end
}

fn attr_value_span(block: &Block, key: &str) -> Range<usize> {
    block
        .body
        .get_attribute(key)
        .and_then(|a| a.value.span())
        .unwrap_or_else(|| block_header_span(block))
}

fn string_attr(ev: &Evaluator, block: &Block, key: &str) -> Option<String> {
    let attr = block.body.get_attribute(key)?;
    ev.eval(&attr.value).ok()?.value.as_str().map(String::from)
}

pub(crate) fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !s.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// Escapes a JSON pointer segment.
pub fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}
