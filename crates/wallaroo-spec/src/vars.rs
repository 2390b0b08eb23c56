//! Variables: their declared types, and values from defaults, `WALLAROO_VAR_*`,
//! `--var-file` and `-var`, in that order of precedence (last wins).

use std::collections::BTreeMap;
use std::path::PathBuf;

use hcl_edit::Span;
use hcl_edit::structure::Block;

use crate::diag::{SourceFile, SpecDiagnostic, closest};
use crate::eval::{VarValue, eval_constant};

/// Where variable values come from, gathered by the caller.
#[derive(Debug, Clone, Default)]
pub struct VarInputs {
    /// `-var NAME=VALUE`, in command-line order.
    pub cli: Vec<(String, String)>,
    /// `--var-file PATH`, in command-line order.
    pub files: Vec<PathBuf>,
    /// `WALLAROO_VAR_NAME=VALUE` from the environment, by NAME.
    pub env: BTreeMap<String, String>,
}

impl VarInputs {
    /// Collects `WALLAROO_VAR_*` from the process environment.
    pub fn env_from_process() -> BTreeMap<String, String> {
        std::env::vars()
            .filter_map(|(k, v)| k.strip_prefix("WALLAROO_VAR_").map(|n| (n.to_string(), v)))
            .collect()
    }

    /// Parses `NAME=VALUE` of `-var`.
    pub fn parse_cli(arg: &str) -> Result<(String, String), String> {
        arg.split_once('=')
            .map(|(k, v)| (k.trim().to_string(), v.to_string()))
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| format!("`-var {arg}` must look like NAME=VALUE"))
    }
}

/// A variable's type constraint.
#[derive(Debug, Clone, PartialEq)]
pub enum VarType {
    String,
    Number,
    Bool,
    Any,
    List(Box<VarType>),
    Map(Box<VarType>),
}

impl VarType {
    pub fn parse(text: &str) -> Option<VarType> {
        let text = text.trim();
        let inner = |prefix: &str| {
            text.strip_prefix(prefix)
                .and_then(|r| r.trim_start().strip_prefix('('))
                .and_then(|r| r.strip_suffix(')'))
                .and_then(VarType::parse)
                .map(Box::new)
        };
        Some(match text {
            "string" => VarType::String,
            "number" => VarType::Number,
            "bool" => VarType::Bool,
            "any" => VarType::Any,
            t if t.starts_with("list") => VarType::List(inner("list")?),
            t if t.starts_with("map") => VarType::Map(inner("map")?),
            _ => return None,
        })
    }

    pub fn name(&self) -> String {
        match self {
            VarType::String => "string".into(),
            VarType::Number => "number".into(),
            VarType::Bool => "bool".into(),
            VarType::Any => "any".into(),
            VarType::List(t) => format!("list({})", t.name()),
            VarType::Map(t) => format!("map({})", t.name()),
        }
    }

    /// Whether `value` fits, converting strings of numbers and bools as HCL does.
    pub fn convert(&self, value: serde_json::Value) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        match (self, value) {
            // Any variable may be null: an optional attribute left unset.
            (_, J::Null) => Some(J::Null),
            (VarType::Any, v) => Some(v),
            (VarType::String, J::String(s)) => Some(J::String(s)),
            (VarType::String, J::Number(n)) => Some(J::String(n.to_string())),
            (VarType::String, J::Bool(b)) => Some(J::String(b.to_string())),
            (VarType::Number, J::Number(n)) => Some(J::Number(n)),
            (VarType::Number, J::String(s)) => serde_json::from_str::<serde_json::Number>(s.trim())
                .ok()
                .map(J::Number),
            (VarType::Bool, J::Bool(b)) => Some(J::Bool(b)),
            (VarType::Bool, J::String(s)) => match s.as_str() {
                "true" => Some(J::Bool(true)),
                "false" => Some(J::Bool(false)),
                _ => None,
            },
            (VarType::List(t), J::Array(items)) => items
                .into_iter()
                .map(|i| t.convert(i))
                .collect::<Option<Vec<_>>>()
                .map(J::Array),
            (VarType::Map(t), J::Object(map)) => map
                .into_iter()
                .map(|(k, v)| t.convert(v).map(|v| (k, v)))
                .collect::<Option<serde_json::Map<_, _>>>()
                .map(J::Object),
            _ => None,
        }
    }

    /// Reads a value given as text (`-var`, environment): strings as they are, other types
    /// as HCL expressions.
    fn read_text(&self, text: &str) -> Option<serde_json::Value> {
        match self {
            VarType::String | VarType::Any => Some(serde_json::Value::String(text.to_string())),
            VarType::Number | VarType::Bool => self.convert(serde_json::Value::String(text.into())),
            _ => {
                let expr = hcl_edit::parser::parse_expr(text).ok()?;
                let file = SourceFile::new("<value>", text);
                self.convert(eval_constant(&file, &expr).ok()?)
            }
        }
    }
}

/// A `variable` block as declared.
#[derive(Debug, Clone)]
pub struct Declared {
    pub name: String,
    pub var_type: VarType,
    pub default: Option<serde_json::Value>,
    pub sensitive: bool,
    pub description: Option<String>,
    pub label_span: std::ops::Range<usize>,
}

/// Resolves every declared variable's value, or says which ones are missing or wrong.
pub fn resolve(
    declared: &BTreeMap<String, Declared>,
    inputs: &VarInputs,
    spec_file: &SourceFile,
) -> Result<BTreeMap<String, VarValue>, Vec<SpecDiagnostic>> {
    let mut values: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut problems = Vec::new();
    let unknown = |name: &str| {
        let help = match closest(name, declared.keys().map(String::as_str)) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!("declare it in the spec: variable \"{name}\" {{ type = string }}"),
        };
        (
            format!("variable `{name}` is not declared in the spec"),
            help,
        )
    };
    let wrong_type = |d: &Declared, origin: &str| {
        (
            format!(
                "the value of variable `{}` from {origin} is not a {}",
                d.name,
                d.var_type.name()
            ),
            format!("give `{}` a value of type {}", d.name, d.var_type.name()),
        )
    };

    for (name, d) in declared {
        if let Some(default) = &d.default {
            values.insert(name.clone(), default.clone());
        }
    }
    for (name, text) in &inputs.env {
        // Unknown WALLAROO_VAR_* are ignored, as Terraform ignores unknown TF_VAR_*.
        if let Some(d) = declared.get(name) {
            match d.var_type.read_text(text) {
                Some(v) => {
                    values.insert(name.clone(), v);
                }
                None => {
                    let (m, h) = wrong_type(d, &format!("WALLAROO_VAR_{name}"));
                    problems
                        .push(SpecDiagnostic::at(spec_file, d.label_span.clone(), m).with_help(h));
                }
            }
        }
    }
    for path in &inputs.files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(SpecDiagnostic::general(format!(
                    "cannot read var file `{}`: {e}",
                    path.display()
                )));
                continue;
            }
        };
        let file = SourceFile::new(path.display().to_string(), text);
        let body = match hcl_edit::parser::parse_body(&file.text) {
            Ok(b) => b,
            Err(e) => {
                problems.push(SpecDiagnostic::syntax(&file, &e));
                continue;
            }
        };
        for block in body.blocks() {
            problems.push(
                SpecDiagnostic::at(
                    &file,
                    block.ident.span().unwrap_or(0..0),
                    "a var file holds only `NAME = value` lines",
                )
                .with_help("move blocks into the spec"),
            );
        }
        for attr in body.attributes() {
            let name = attr.key.as_str();
            let key_span = attr.key.span().unwrap_or(0..0);
            let Some(d) = declared.get(name) else {
                let (m, h) = unknown(name);
                problems.push(SpecDiagnostic::at(&file, key_span, m).with_help(h));
                continue;
            };
            match eval_constant(&file, &attr.value) {
                Ok(v) => match d.var_type.convert(v) {
                    Some(v) => {
                        values.insert(name.to_string(), v);
                    }
                    None => {
                        let (m, h) = wrong_type(d, "this var file");
                        problems.push(
                            SpecDiagnostic::at(&file, attr.value.span().unwrap_or(key_span), m)
                                .with_help(h),
                        );
                    }
                },
                Err(mut p) => problems.append(&mut p),
            }
        }
    }
    for (name, text) in &inputs.cli {
        let Some(d) = declared.get(name) else {
            let (m, h) = unknown(name);
            problems.push(SpecDiagnostic::general(format!("-var: {m}")).with_help(h));
            continue;
        };
        match d.var_type.read_text(text) {
            Some(v) => {
                values.insert(name.clone(), v);
            }
            None => {
                let (m, h) = wrong_type(d, "-var");
                problems.push(SpecDiagnostic::at(spec_file, d.label_span.clone(), m).with_help(h));
            }
        }
    }
    for (name, d) in declared {
        if !values.contains_key(name) {
            problems.push(
                SpecDiagnostic::at(spec_file, d.label_span.clone(), format!("variable `{name}` has no value"))
                    .with_help(format!(
                        "set it with -var {name}=..., a --var-file, or WALLAROO_VAR_{name}; or give it a default"
                    )),
            );
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(values
        .into_iter()
        .map(|(name, v)| {
            let sensitive = declared[&name].sensitive;
            let value: hcl::Value = hcl::to_value(&v).unwrap_or(hcl::Value::Null);
            (name, VarValue { value, sensitive })
        })
        .collect())
}

/// Reads the header of a `variable` block.
pub fn declare(file: &SourceFile, block: &Block) -> Result<Declared, Vec<SpecDiagnostic>> {
    let label_span = block
        .labels
        .first()
        .and_then(|l| l.span())
        .or_else(|| block.ident.span())
        .unwrap_or(0..0);
    let name = block
        .labels
        .first()
        .map(|l| l.as_str().to_string())
        .unwrap_or_default();
    let mut problems = Vec::new();
    let mut var_type = VarType::Any;
    let mut default = None;
    let mut sensitive = false;
    let mut description = None;
    for attr in block.body.attributes() {
        let value_span = attr.value.span().unwrap_or(0..0);
        match attr.key.as_str() {
            "type" => {
                let text = &file.text[value_span.clone()];
                match VarType::parse(text) {
                    Some(t) => var_type = t,
                    None => problems.push(
                        SpecDiagnostic::at(
                            file,
                            value_span,
                            format!("unknown type `{}`", text.trim()),
                        )
                        .with_help("use string, number, bool, any, list(T) or map(T)"),
                    ),
                }
            }
            "default" => match eval_constant(file, &attr.value) {
                Ok(v) => default = Some((v, value_span)),
                Err(mut p) => problems.append(&mut p),
            },
            "sensitive" => match eval_constant(file, &attr.value) {
                Ok(serde_json::Value::Bool(b)) => sensitive = b,
                _ => problems.push(SpecDiagnostic::at(
                    file,
                    value_span,
                    "`sensitive` must be true or false",
                )),
            },
            "description" => match eval_constant(file, &attr.value) {
                Ok(serde_json::Value::String(s)) => description = Some(s),
                _ => problems.push(SpecDiagnostic::at(
                    file,
                    value_span,
                    "`description` must be a string",
                )),
            },
            other => {
                let help = match closest(other, ["type", "default", "sensitive", "description"]) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => "a variable takes type, default, sensitive and description".into(),
                };
                problems.push(
                    SpecDiagnostic::at(
                        file,
                        attr.key.span().unwrap_or(0..0),
                        format!("unknown attribute `{other}` in variable \"{name}\""),
                    )
                    .with_help(help),
                );
            }
        }
    }
    for inner in block.body.blocks() {
        problems.push(SpecDiagnostic::at(
            file,
            inner.ident.span().unwrap_or(0..0),
            "a variable block holds no blocks",
        ));
    }
    let default = match default {
        Some((v, span)) => match var_type.convert(v) {
            Some(v) => Some(v),
            None => {
                problems.push(
                    SpecDiagnostic::at(
                        file,
                        span,
                        format!("the default of `{name}` is not a {}", var_type.name()),
                    )
                    .with_help("make the default match the type"),
                );
                None
            }
        },
        None => None,
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Declared {
        name,
        var_type,
        default,
        sensitive,
        description,
        label_span,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_and_convert() {
        let t = VarType::parse("list(number)").unwrap();
        assert_eq!(t.name(), "list(number)");
        assert_eq!(t.read_text("[1, 2]"), Some(serde_json::json!([1, 2])));
        assert_eq!(t.read_text("[\"x\"]"), None);
        assert_eq!(VarType::Bool.read_text("yes"), None);
        assert_eq!(VarType::Number.read_text("42"), Some(serde_json::json!(42)));
        assert!(VarType::parse("tuple").is_none());
    }
}
