//! Each request against text an editor would hold, through the same functions the server
//! answers with.

use super::*;

const SPEC: &str = r#"variable "registry_password" {
  type      = string
  sensitive = true
  default   = "s3cr3t-default"
}

variable "domain" {
  type    = string
  default = "wallaroo.example.com"
}

wallaroo {
  version                 = "2025.1.0-6290"
  license_channel         = "2025-1"
  domain                  = var.domain
  kubernetes_distribution = "kurl"
}

registry "private" {
  host      = "registry.example.com:5000"
  namespace = "wallaroo"
  password  = var.registry_password
}

nodepool "general" {
  nodes = ["node-1"]
}

networking {
  ingress_mode = "in"
}
"#;

fn pos(line: u32, character: u32) -> Position {
    Position { line, character }
}

#[test]
fn diagnostics_are_validates_with_their_place_and_help() {
    let bad = SPEC.replace("ingress_mode = \"in\"", "ingress_mod = \"internal\"");
    let d = diagnostics(Path::new("/tmp/wallaroo.hcl"), &bad);
    let unknown = d
        .iter()
        .find(|d| d.message.contains("ingress_mod"))
        .unwrap_or_else(|| panic!("{d:?}"));
    assert_eq!(unknown.range.start, pos(29, 2));
    assert!(unknown.message.contains("help:"), "{}", unknown.message);
}

#[test]
fn completion_offers_attributes_enums_variables_pools_and_blocks() {
    let k = Knowledge::load();
    let labels = |items: Vec<CompletionItem>| -> Vec<String> {
        items.into_iter().map(|i| i.label).collect()
    };
    // Enum values of ingress_mode, filtered by what is typed.
    assert_eq!(labels(completion(&k, SPEC, pos(29, 20))), ["internal"]);
    // Attributes of registry "private" not set yet.
    let text = SPEC.replace(
        "  password  = var.registry_password\n",
        "  password  = var.registry_password\n  pu\n",
    );
    assert_eq!(
        labels(completion(&k, &text, pos(22, 4))),
        ["pull_check", "pull_check_max_age", "pull_secret"]
    );
    // Variables after var.
    let text = SPEC.replace(
        "domain                  = var.domain",
        "domain                  = var.d",
    );
    assert_eq!(labels(completion(&k, &text, pos(14, 33))), ["domain"]);
    // Nodepools in an address.
    let text = format!("{SPEC}\nimport \"nodepool.ge\" {{\n}}\n");
    let line = text.lines().count() as u32 - 2;
    assert_eq!(labels(completion(&k, &text, pos(line, 19))), ["general"]);
    // Blocks at the top level.
    let text = format!("{SPEC}\nsch\n");
    let line = text.lines().count() as u32 - 1;
    assert_eq!(labels(completion(&k, &text, pos(line, 3))), ["scheduling"]);
}

#[test]
fn hover_explains_attributes_from_the_docs_and_never_shows_a_sensitive_default() {
    let k = Knowledge::load();
    let h = hover(&k, SPEC, pos(29, 5)).unwrap();
    assert!(
        h.contains("ingress_mode") && h.contains("networking"),
        "{h}"
    );
    let h = hover(&k, SPEC, pos(21, 20)).unwrap();
    assert!(
        h.contains("var.registry_password") && h.contains("sensitive"),
        "{h}"
    );
    assert!(!h.contains("s3cr3t-default"), "{h}");
    let h = hover(&k, SPEC, pos(14, 32)).unwrap();
    assert!(
        h.contains("wallaroo.example.com"),
        "a plain default is shown: {h}"
    );
}

#[test]
fn definition_symbols_and_formatting() {
    assert_eq!(definition(SPEC, pos(21, 20)), Some((0, 0)));
    let names: Vec<String> = symbols(SPEC).into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "variable \"registry_password\"",
            "variable \"domain\"",
            "wallaroo",
            "registry \"private\"",
            "nodepool \"general\"",
            "networking"
        ]
    );
    let messy = "networking {\ningress_mode=\"internal\"\n}\n";
    let edits = formatting(messy);
    assert_eq!(edits.len(), 1);
    assert_eq!(
        edits[0].new_text,
        "networking {\n  ingress_mode = \"internal\"\n}\n"
    );
    assert!(formatting(&edits[0].new_text).is_empty());
}
