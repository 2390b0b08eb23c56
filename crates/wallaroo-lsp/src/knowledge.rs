//! What the server knows about the language, from the two sources the rest of wallaroo uses:
//! the spec types' JSON Schema (`wallaroo_spec::schema::spec_schema`: blocks, attributes,
//! enum values) for structure, and `docs/spec.md` (each block's section and its table of
//! attributes: type, default, meaning) for words. Hover text is the documentation itself,
//! read at build time, so the two cannot disagree; a test checks that every attribute the
//! schema has is documented and every documented one exists.

use std::collections::BTreeMap;

use serde_json::Value;

/// docs/spec.md, as built into the binary.
pub const SPEC_DOCS: &str = include_str!("../../../docs/spec.md");

/// One attribute's documentation row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttrDoc {
    pub ty: String,
    pub default: String,
    pub meaning: String,
}

/// One block: what the docs say, and what the schema allows.
#[derive(Debug, Clone, Default)]
pub struct Block {
    /// The section's heading, e.g. `nodepool "NAME"`.
    pub heading: String,
    /// The section's text before its table.
    pub intro: String,
    pub docs: BTreeMap<String, AttrDoc>,
    /// Attribute names the schema allows, with their enum values (empty when free).
    pub attrs: BTreeMap<String, Vec<String>>,
    /// The label a block of this type must carry, if fixed (`source "wallaroo"`).
    pub fixed_label: Option<String>,
    /// Whether the block carries a free label (`nodepool "NAME"`).
    pub labelled: bool,
}

/// Every block of the language.
#[derive(Debug, Clone, Default)]
pub struct Knowledge {
    pub blocks: BTreeMap<String, Block>,
    /// Enum values of attributes of objects inside blocks (a toleration's `effect`), by name.
    pub nested_enums: BTreeMap<String, Vec<String>>,
}

/// The block a `## ` heading documents: its first backquoted word (`` `nodepool "NAME"` ``).
fn heading_block(line: &str) -> Option<(String, String)> {
    let inner = line.trim_start_matches('#').trim();
    let code = inner.strip_prefix('`')?;
    let code = &code[..code.find('`')?];
    let name = code.split_whitespace().next()?.to_string();
    Some((name, code.to_string()))
}

fn cell(s: &str) -> String {
    s.trim().replace("\\|", "|")
}

/// The blocks docs/spec.md documents, with their attribute tables.
pub fn parse_docs(md: &str) -> BTreeMap<String, Block> {
    let mut blocks: BTreeMap<String, Block> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_table = false;
    // The current table's column names (`attribute`, `type`, `default`, `meaning ...`).
    let mut columns: Vec<String> = Vec::new();
    for line in md.lines() {
        if line.starts_with("## ") {
            current = heading_block(line).map(|(name, heading)| {
                let b = blocks.entry(name.clone()).or_default();
                b.heading = heading;
                name
            });
            in_table = false;
            continue;
        }
        if line.starts_with("# ") {
            current = None;
            continue;
        }
        let Some(name) = &current else { continue };
        let block = blocks.get_mut(name).expect("entered above");
        if line.starts_with('|') {
            // Split on unescaped pipes.
            let mut cells = Vec::new();
            let mut cur = String::new();
            let mut prev = ' ';
            for c in line.trim().trim_matches('|').chars() {
                if c == '|' && prev != '\\' {
                    cells.push(std::mem::take(&mut cur));
                } else {
                    cur.push(c);
                }
                prev = c;
            }
            cells.push(cur);
            if !in_table {
                columns = cells.iter().map(|c| c.trim().to_lowercase()).collect();
                in_table = true;
                continue;
            }
            let column = |prefix: &str| {
                columns
                    .iter()
                    .position(|c| c.starts_with(prefix))
                    .and_then(|i| cells.get(i))
                    .map(|c| cell(c))
                    .unwrap_or_default()
            };
            let first = cells.first().map(|c| c.trim()).unwrap_or("");
            if let Some(attr) = first.strip_prefix('`').and_then(|a| a.strip_suffix('`'))
                && !attr.contains(' ')
                && columns.first().is_some_and(|c| c == "attribute")
            {
                block.docs.insert(
                    attr.to_string(),
                    AttrDoc {
                        ty: column("type"),
                        default: column("default"),
                        meaning: column("meaning"),
                    },
                );
            }
        } else {
            in_table = false;
            if !line.trim().is_empty() && block.docs.is_empty() {
                if !block.intro.is_empty() {
                    block.intro.push(' ');
                }
                block.intro.push_str(line.trim());
            }
        }
    }
    blocks
}

fn resolve<'a>(schema: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(name) => &schema["$defs"][name],
        None => v,
    }
}

/// The enum values an attribute's schema allows (through `$ref`, `anyOf` and arrays).
fn enum_values(schema: &Value, v: &Value) -> Vec<String> {
    let v = resolve(schema, v);
    let mut out: Vec<String> = Vec::new();
    if let Some(e) = v["enum"].as_array() {
        out.extend(e.iter().filter_map(|x| x.as_str().map(String::from)));
    }
    for key in ["oneOf", "anyOf"] {
        for alt in v[key].as_array().into_iter().flatten() {
            if let Some(c) = alt["const"].as_str() {
                out.push(c.to_string());
            }
            out.extend(enum_values(schema, alt));
        }
    }
    if v["items"].is_object() {
        out.extend(enum_values(schema, &v["items"]));
    }
    out.sort();
    out.dedup();
    out
}

impl Knowledge {
    /// From the spec crate's schema and the built-in docs.
    pub fn load() -> Knowledge {
        Knowledge::from_sources(&wallaroo_spec::schema::spec_schema(), SPEC_DOCS)
    }

    pub fn from_sources(schema: &Value, md: &str) -> Knowledge {
        let mut blocks = parse_docs(md);
        for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
            let block = blocks.entry(name.clone()).or_default();
            let def = if prop.get("$ref").is_some() {
                resolve(schema, prop)
            } else if prop["additionalProperties"].is_object() {
                // `nodepool "NAME"`: a map of blocks keyed by their label.
                block.labelled = true;
                resolve(schema, &prop["additionalProperties"])
            } else if let Some((label, inner)) =
                prop["properties"].as_object().and_then(|p| p.iter().next())
            {
                // `source "wallaroo"`: keyed by the one label it allows.
                block.fixed_label = Some(label.clone());
                resolve(schema, inner)
            } else {
                prop
            };
            for (attr, v) in def["properties"].as_object().into_iter().flatten() {
                block.attrs.insert(attr.clone(), enum_values(schema, v));
            }
        }
        // Sections of the docs that are not blocks (Expressions, Values checked, ...).
        blocks.retain(|name, b| !b.attrs.is_empty() || schema["properties"].get(name).is_some());
        let mut nested_enums = BTreeMap::new();
        for def in schema["$defs"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, d)| d)
        {
            for (attr, v) in def["properties"].as_object().into_iter().flatten() {
                let values = enum_values(schema, v);
                if !values.is_empty() {
                    nested_enums.entry(attr.clone()).or_insert(values);
                }
            }
        }
        Knowledge {
            blocks,
            nested_enums,
        }
    }

    /// Hover text for attribute `attr` of block `block`, from its docs row.
    pub fn attr_hover(&self, block: &str, attr: &str) -> Option<String> {
        let b = self.blocks.get(block)?;
        let d = b.docs.get(attr)?;
        let default = match d.default.as_str() {
            "" => String::new(),
            "required" => ", required".to_string(),
            other => format!(", default {other}"),
        };
        Some(format!(
            "**{attr}** ({}{default}) in `{}`\n\n{}",
            d.ty, b.heading, d.meaning
        ))
    }

    /// Hover text for a block type.
    pub fn block_hover(&self, block: &str) -> Option<String> {
        let b = self.blocks.get(block)?;
        let mut text = format!("**{}**", b.heading);
        if !b.intro.is_empty() {
            text.push_str("\n\n");
            text.push_str(&b.intro);
        }
        if !b.attrs.is_empty() {
            text.push_str(&format!(
                "\n\nattributes: {}",
                b.attrs.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The docs and the schema describe the same language: every attribute the spec types
    /// accept has a row in docs/spec.md, and every row names an attribute they accept.
    #[test]
    fn docs_and_schema_name_the_same_attributes() {
        let k = Knowledge::load();
        let mut problems = Vec::new();
        for (name, b) in &k.blocks {
            for attr in b.attrs.keys() {
                if !b.docs.contains_key(attr) {
                    problems.push(format!(
                        "`{name}.{attr}` is accepted but not in docs/spec.md"
                    ));
                }
            }
            for attr in b.docs.keys() {
                if !b.attrs.contains_key(attr) && !b.attrs.is_empty() {
                    problems.push(format!(
                        "docs/spec.md documents `{name}.{attr}`, which the spec does not accept"
                    ));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn enum_values_come_from_the_schema() {
        let k = Knowledge::load();
        assert_eq!(
            k.blocks["networking"].attrs["ingress_mode"],
            ["external", "internal", "none"]
        );
        assert_eq!(k.blocks["source"].fixed_label.as_deref(), Some("wallaroo"));
        assert!(k.blocks["nodepool"].labelled);
        assert!(
            k.attr_hover("registry", "pull_check")
                .unwrap()
                .contains("pull")
        );
    }
}
