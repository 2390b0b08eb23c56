//! Expression evaluation: `var.NAME`, `env("X")` and `file("path")`, with every reference
//! checked beforehand so that a problem points at the exact expression.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl_edit::expr::{Expression, FuncCall, ObjectKey, Traversal, TraversalOperator};
use hcl_edit::visit::{Visit, visit_expr, visit_for_expr, visit_func_call};
use hcl_edit::{Span, expr::ForExpr};

use crate::diag::{SourceFile, SpecDiagnostic, closest};

/// Functions the spec language offers. `sensitive(x)` is `x`, marked sensitive (for a
/// secret read with `env()` or `file()`).
pub const FUNCTIONS: &[&str] = &["env", "file", "sensitive"];

thread_local! {
    /// `file()` reads relative to the spec's directory; eval functions are plain `fn`s.
    static BASE_DIR: RefCell<PathBuf> = RefCell::new(PathBuf::from("."));
}

/// A declared variable's resolved value.
#[derive(Debug, Clone)]
pub struct VarValue {
    pub value: hcl::Value,
    pub sensitive: bool,
}

/// Evaluates the expressions of one spec.
pub struct Evaluator<'a> {
    file: &'a SourceFile,
    base_dir: PathBuf,
    vars: &'a BTreeMap<String, VarValue>,
    ctx: Context<'static>,
}

/// An evaluated attribute value.
pub struct Evaluated {
    pub value: serde_json::Value,
    /// The value depends on a sensitive variable.
    pub sensitive: bool,
    /// Where inside the value the sensitive parts are, as JSON pointer suffixes (`""` is the
    /// whole value; `/extra/token` a key of a map): maps and lists written out in the spec
    /// keep sensitivity per element, anything computed is sensitive whole.
    pub sensitive_paths: Vec<String>,
}

impl<'a> Evaluator<'a> {
    pub fn new(
        file: &'a SourceFile,
        base_dir: &Path,
        vars: &'a BTreeMap<String, VarValue>,
    ) -> Self {
        let mut ctx = Context::new();
        let object: hcl::Map<String, hcl::Value> = vars
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect();
        ctx.declare_var("var", hcl::Value::Object(object));
        ctx.declare_func("env", FuncDef::new(env_func, [ParamType::String]));
        ctx.declare_func("file", FuncDef::new(file_func, [ParamType::String]));
        ctx.declare_func("sensitive", FuncDef::new(identity_func, [ParamType::Any]));
        Evaluator {
            file,
            base_dir: base_dir.to_path_buf(),
            vars,
            ctx,
        }
    }

    fn check(&self) -> ReferenceCheck<'_> {
        ReferenceCheck {
            file: self.file,
            base_dir: &self.base_dir,
            vars: self.vars,
            locals: Vec::new(),
            sensitive: false,
            problems: Vec::new(),
        }
    }

    /// Whether `expr` uses a sensitive value (a sensitive variable, `sensitive(...)`).
    fn uses_sensitive(&self, expr: &Expression) -> bool {
        let mut check = self.check();
        check.visit_expr(expr);
        check.sensitive
    }

    /// The sensitive parts of `expr` under `prefix` (see [`Evaluated::sensitive_paths`]).
    fn sensitive_parts(&self, expr: &Expression, prefix: &str, out: &mut Vec<String>) {
        match expr {
            Expression::Parenthesis(inner) => self.sensitive_parts(inner.inner(), prefix, out),
            Expression::Object(object) => {
                let mut parts = Vec::new();
                for (key, value) in object.iter() {
                    let name = match key {
                        ObjectKey::Ident(id) => id.as_str().to_string(),
                        ObjectKey::Expression(Expression::String(s)) => s.value().to_string(),
                        // A computed key: its place is not known before evaluation.
                        ObjectKey::Expression(k) => {
                            if self.uses_sensitive(k) || self.uses_sensitive(value.expr()) {
                                out.push(prefix.to_string());
                                return;
                            }
                            continue;
                        }
                    };
                    let path = format!("{prefix}/{}", crate::decode::pointer_escape(&name));
                    self.sensitive_parts(value.expr(), &path, &mut parts);
                }
                out.extend(parts);
            }
            Expression::Array(array) => {
                for (i, item) in array.iter().enumerate() {
                    self.sensitive_parts(item, &format!("{prefix}/{i}"), out);
                }
            }
            other => {
                if self.uses_sensitive(other) {
                    out.push(prefix.to_string());
                }
            }
        }
    }

    /// Checks references, then evaluates `expr`.
    pub fn eval(&self, expr: &Expression) -> Result<Evaluated, Vec<SpecDiagnostic>> {
        let mut check = self.check();
        check.visit_expr(expr);
        if !check.problems.is_empty() {
            return Err(check.problems);
        }
        let span = expr.span().unwrap_or(0..0);
        let plain: hcl::Expression = expr.clone().into();
        BASE_DIR.with(|b| *b.borrow_mut() = self.base_dir.clone());
        let value = plain.evaluate(&self.ctx).map_err(|e| {
            let message = if check.sensitive {
                "this expression could not be evaluated (details hidden: it uses a sensitive value)"
                    .to_string()
            } else {
                format!("this expression could not be evaluated: {e}")
            };
            vec![
                SpecDiagnostic::at(self.file, span.clone(), message)
                    .with_help("check the operands' types and the names it uses"),
            ]
        })?;
        let value = serde_json::to_value(&value).map_err(|e| {
            vec![SpecDiagnostic::at(
                self.file,
                span,
                format!("unsupported value: {e}"),
            )]
        })?;
        let mut sensitive_paths = Vec::new();
        if check.sensitive {
            self.sensitive_parts(expr, "", &mut sensitive_paths);
        }
        Ok(Evaluated {
            value,
            sensitive: check.sensitive,
            sensitive_paths,
        })
    }
}

/// Evaluates a literal expression with no variables (defaults, var files).
pub fn eval_constant(
    file: &SourceFile,
    expr: &Expression,
) -> Result<serde_json::Value, Vec<SpecDiagnostic>> {
    let vars = BTreeMap::new();
    let ev = Evaluator::new(file, Path::new("."), &vars);
    ev.eval(expr).map(|e| e.value)
}

fn env_func(args: FuncArgs) -> Result<hcl::Value, String> {
    let name = args[0].as_str().unwrap_or_default();
    std::env::var(name)
        .map(hcl::Value::String)
        .map_err(|_| format!("environment variable `{name}` is not set"))
}

fn identity_func(args: FuncArgs) -> Result<hcl::Value, String> {
    Ok(args[0].clone())
}

fn file_func(args: FuncArgs) -> Result<hcl::Value, String> {
    let rel = args[0].as_str().unwrap_or_default();
    let path = BASE_DIR.with(|b| b.borrow().join(rel));
    std::fs::read_to_string(&path)
        .map(hcl::Value::String)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))
}

struct ReferenceCheck<'a> {
    file: &'a SourceFile,
    base_dir: &'a Path,
    vars: &'a BTreeMap<String, VarValue>,
    locals: Vec<String>,
    sensitive: bool,
    problems: Vec<SpecDiagnostic>,
}

impl ReferenceCheck<'_> {
    fn problem(&mut self, span: Option<std::ops::Range<usize>>, message: String, help: String) {
        self.problems
            .push(SpecDiagnostic::at(self.file, span.unwrap_or(0..0), message).with_help(help));
    }

    fn check_var_name(&mut self, name: &str, span: Option<std::ops::Range<usize>>) {
        match self.vars.get(name) {
            Some(v) => self.sensitive |= v.sensitive,
            None => {
                let help = match closest(name, self.vars.keys().map(String::as_str)) {
                    Some(near) => format!("did you mean `var.{near}`?"),
                    None => format!("declare it: variable \"{name}\" {{ type = string }}"),
                };
                self.problem(span, format!("unknown variable `var.{name}`"), help);
            }
        }
    }
}

impl Visit for ReferenceCheck<'_> {
    fn visit_expr(&mut self, node: &Expression) {
        if let Expression::Variable(ident) = node {
            let name = ident.as_str();
            if !self.locals.iter().any(|l| l == name) {
                let message = if name == "var" {
                    "`var` alone is not a value; write `var.NAME`".to_string()
                } else {
                    format!("unknown reference `{name}`")
                };
                self.problem(
                    node.span(),
                    message,
                    "only `var.NAME` can be referenced; quote literal strings".into(),
                );
            }
            return;
        }
        visit_expr(self, node);
    }

    fn visit_traversal(&mut self, node: &Traversal) {
        let mut ops = node.operators.iter();
        match &node.expr {
            Expression::Variable(root) if root.as_str() == "var" => {
                match ops.next().map(|o| o.value()) {
                    Some(TraversalOperator::GetAttr(name)) => {
                        let name = name.as_str().to_string();
                        self.check_var_name(&name, node.span());
                    }
                    _ => self.problem(
                        node.span(),
                        "a variable reference must be `var.NAME`".into(),
                        "write `var.NAME`".into(),
                    ),
                }
            }
            other => self.visit_expr(other),
        }
        for op in ops {
            if let TraversalOperator::Index(index) = op.value() {
                self.visit_expr(index);
            }
        }
    }

    fn visit_for_expr(&mut self, node: &ForExpr) {
        let intro = &node.intro;
        let before = self.locals.len();
        if let Some(key) = &intro.key_var {
            self.locals.push(key.as_str().to_string());
        }
        self.locals.push(intro.value_var.as_str().to_string());
        visit_for_expr(self, node);
        self.locals.truncate(before);
    }

    fn visit_func_call(&mut self, node: &FuncCall) {
        let name = node.name.name.as_str();
        if !node.name.namespace.is_empty() || !FUNCTIONS.contains(&name) {
            let help = match closest(name, FUNCTIONS.iter().copied()) {
                Some(near) => {
                    format!("did you mean `{near}`? available functions: env, file, sensitive")
                }
                None => {
                    "available functions: env(\"NAME\"), file(\"path\"), sensitive(value)".into()
                }
            };
            self.problem(node.span(), format!("unknown function `{name}`"), help);
            return;
        }
        if name == "sensitive" {
            self.sensitive = true;
        }
        let args: Vec<&Expression> = node.args.iter().collect();
        if args.len() != 1 {
            self.problem(
                node.span(),
                format!("`{name}` takes exactly one argument, got {}", args.len()),
                format!("write {name}(\"...\")"),
            );
            return;
        }
        if let Expression::String(lit) = args[0]
            && name != "sensitive"
        {
            let arg = lit.value().as_str();
            match name {
                "env" if std::env::var_os(arg).is_none() => self.problem(
                    node.span(),
                    format!("environment variable `{arg}` is not set"),
                    format!(
                        "export {arg}=... before running wallaroo, or use a variable with a default"
                    ),
                ),
                "file" if !self.base_dir.join(arg).is_file() => self.problem(
                    node.span(),
                    format!("file `{arg}` does not exist"),
                    format!(
                        "paths are relative to the spec's directory ({})",
                        self.base_dir.display()
                    ),
                ),
                _ => {}
            }
        }
        visit_func_call(self, node);
    }
}
