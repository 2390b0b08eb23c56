//! Writing the spec: HCL text of values and blocks, as `wallaroo fmt` lays it out.

use super::*;

pub(super) fn quoted(s: &str) -> String {
    // HCL strings escape as JSON's do, and template sequences double their sigil.
    serde_json::to_string(s)
        .expect("strings serialize")
        .replace("${", "$${")
        .replace("%{", "%%{")
}

pub(super) fn is_identifier(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A JSON value as an HCL expression.
pub(super) fn hcl(v: &Value, indent: usize) -> String {
    let pad = "  ".repeat(indent + 1);
    let end = "  ".repeat(indent);
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => match s.strip_prefix(EXPR) {
            Some(e) => e.to_string(),
            None => quoted(s),
        },
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Array(a) if a.iter().all(|v| !v.is_object() && !v.is_array()) => format!(
            "[{}]",
            a.iter()
                .map(|v| hcl(v, indent))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Array(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|v| format!("{pad}{},\n", hcl(v, indent + 1)))
                .collect();
            format!("[\n{}{end}]", items.concat())
        }
        Value::Object(m) if m.is_empty() => "{}".into(),
        Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| {
                    let key = if is_identifier(k) {
                        k.clone()
                    } else {
                        quoted(k)
                    };
                    format!("{pad}{key} = {}\n", hcl(v, indent + 1))
                })
                .collect();
            format!("{{\n{}{end}}}", items.concat())
        }
    }
}

/// The spec's text: report, variables, blocks, then `helm { values }`.
pub(super) fn render(d: &Draft<'_>, extra: &Value) -> String {
    let live = d.live;
    let mut out = format!(
        "# Written by `wallaroo init --from-cluster` from helm release {}/{} (revision {}, \
         chart {} {}).\n# Set the variables below (WALLAROO_VAR_NAME=...), then `wallaroo plan` \
         should change nothing\n# in the release, the nodes or the users.\n",
        live.namespace, live.release_name, live.revision, live.chart_name, live.chart_version
    );
    if !d.report.is_empty() {
        out.push_str("#\n# What could not be mapped as it is:\n");
        for line in &d.report {
            out.push_str(&format!("#   - {line}\n"));
        }
    }
    out.push_str(
        "#\n# Every object found under the spec's names (namespace, release, nodes, users, \
         secrets)\n# is adopted by the first plan; `import` blocks are only needed where a \
         name differs.\n\n",
    );
    for v in &d.variables {
        out.push_str(&format!(
            "variable {} {{\n  type = string\n  sensitive = true\n  description = {}\n}}\n\n",
            quoted(&v.name),
            quoted(&v.description)
        ));
    }
    for (name, attrs) in &d.blocks {
        out.push_str(&format!("{name} {{\n"));
        for (k, v) in attrs {
            out.push_str(&format!("  {k} = {}\n", hcl(v, 1)));
        }
        out.push_str("}\n\n");
    }
    if extra.as_object().is_some_and(|m| !m.is_empty()) {
        out.push_str(
            "helm {\n  # Values the release was installed with that no spec attribute maps, kept \
             as they are.\n",
        );
        out.push_str(&format!("  values = {}\n}}\n", hcl(extra, 1)));
    }
    let out = out.trim_end().to_string() + "\n";
    wallaroo_spec::format::format_hcl(&out).unwrap_or(out)
}
