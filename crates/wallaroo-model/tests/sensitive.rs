//! Sensitivity follows the value, as a property: for any `helm { values }` tree (maps, lists,
//! strings) whose leaves are plain strings, a sensitive variable, a template around it, or
//! `sensitive("...")`, the release's plain values hold no secret, every resource attribute
//! that holds one is sensitive, and what helm gets (the plain values with the secret values
//! merged over them) is exactly what the spec says.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use serde_json::{Value, json};
use wallaroo_engine::json::merge;
use wallaroo_model::sensitive::holds_secret;

const SECRET: &str = "S3CRET-marker-7e1";

/// A leaf as written in HCL, and the value it evaluates to.
#[derive(Debug, Clone)]
enum Leaf {
    Plain(String),
    Var,
    Template(String),
    Marked(String),
}

impl Leaf {
    fn hcl(&self) -> String {
        match self {
            Leaf::Plain(s) => format!("\"{s}\""),
            Leaf::Var => "var.secret".into(),
            Leaf::Template(s) => format!("\"{s}-${{var.secret}}\""),
            Leaf::Marked(s) => format!("sensitive(\"{s}\")"),
        }
    }

    fn value(&self) -> Value {
        match self {
            Leaf::Plain(s) | Leaf::Marked(s) => json!(s),
            Leaf::Var => json!(SECRET),
            Leaf::Template(s) => json!(format!("{s}-{SECRET}")),
        }
    }
}

#[derive(Debug, Clone)]
enum Tree {
    Leaf(Leaf),
    List(Vec<Tree>),
    Map(BTreeMap<String, Tree>),
}

impl Tree {
    fn hcl(&self) -> String {
        match self {
            Tree::Leaf(l) => l.hcl(),
            Tree::List(items) => format!(
                "[{}]",
                items.iter().map(Tree::hcl).collect::<Vec<_>>().join(", ")
            ),
            Tree::Map(m) => format!(
                "{{\n{}\n}}",
                m.iter()
                    .map(|(k, v)| format!("\"{k}\" = {}", v.hcl()))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }

    fn value(&self) -> Value {
        match self {
            Tree::Leaf(l) => l.value(),
            Tree::List(items) => Value::Array(items.iter().map(Tree::value).collect()),
            Tree::Map(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), v.value())).collect()),
        }
    }

    /// The strings marked with `sensitive(...)`: secret too, though no variable says so.
    fn marked(&self, out: &mut Vec<String>) {
        match self {
            Tree::Leaf(Leaf::Marked(s)) => out.push(s.clone()),
            Tree::Leaf(_) => {}
            Tree::List(items) => items.iter().for_each(|t| t.marked(out)),
            Tree::Map(m) => m.values().for_each(|t| t.marked(out)),
        }
    }
}

fn leaf() -> impl Strategy<Value = Leaf> {
    let word = "[a-z]{3,8}";
    prop_oneof![
        3 => word.prop_map(Leaf::Plain),
        1 => Just(Leaf::Var),
        1 => word.prop_map(Leaf::Template),
        1 => "[a-z]{10,14}".prop_map(|s| Leaf::Marked(format!("m{s}"))),
    ]
}

fn tree() -> impl Strategy<Value = Tree> {
    leaf()
        .prop_map(Tree::Leaf)
        .prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 1..4).prop_map(Tree::List),
                proptest::collection::btree_map("k[a-z]{1,6}", inner, 1..4).prop_map(Tree::Map),
            ]
        })
}

fn spec(values: &Tree) -> wallaroo_spec::Spec {
    let text = format!(
        r#"
variable "secret" {{
  type      = string
  sensitive = true
  default   = "{SECRET}"
}}
wallaroo {{
  version                 = "2025.1.0-6290"
  license_channel         = "2025-1"
  domain                  = "wallaroo.example.com"
  kubernetes_distribution = "kurl"
}}
source "wallaroo" {{
  registry = "registry.wallaroo.ai"
}}
registry "private" {{
  host      = "registry.internal.example.com"
  namespace = "wallaroo"
}}
helm {{
  values = {{
    extra = {}
  }}
}}
"#,
        values.hcl()
    );
    wallaroo_spec::parse_str("prop.hcl", &text, Path::new("."), &Default::default())
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn secrets_in_helm_values_stay_secret_and_helm_gets_them_all(tree in tree()) {
        let spec = spec(&tree);
        let mut secrets: Vec<String> = vec![SECRET.to_string()];
        tree.marked(&mut secrets);
        let secrets: std::collections::BTreeSet<String> = secrets.into_iter().collect();
        let (plain, secret) = wallaroo_model::chart_values(&spec);
        prop_assert!(!holds_secret(&plain, &secrets), "plain values hold a secret: {plain}");

        // What helm gets is what the spec says.
        let mut helm_gets = plain.clone();
        merge(&mut helm_gets, &secret);
        prop_assert_eq!(&helm_gets["extra"], &tree.value());

        // Every desired attribute that holds a secret is sensitive.
        let set = wallaroo_model::from_spec(&spec).unwrap();
        for r in set.resources.values() {
            for (k, v) in &r.attrs {
                if holds_secret(v, &secrets) {
                    prop_assert!(
                        r.sensitive.contains(k) || k == "secret_values",
                        "{}.{k} holds a secret and is not sensitive", r.address
                    );
                }
            }
        }
    }
}
