//! The parser and validator never panic, whatever the text: every example spec, cut, spliced
//! and sprinkled with random text, either loads or gets diagnostics. The suite runs a fixed
//! number of cases; for a longer run:
//! `PROPTEST_CASES=200000 cargo test --release -p wallaroo-spec --test fuzz`.

use std::path::Path;

use proptest::prelude::*;

fn examples() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hcl"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    out.sort();
    out
}

/// One edit: at a fraction of the text, delete some bytes and insert some text (HCL's own
/// punctuation and keywords are likely, to reach past the parser).
#[derive(Debug, Clone)]
struct Edit {
    at: f64,
    delete: usize,
    insert: String,
}

fn edit() -> impl Strategy<Value = Edit> {
    let piece = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("\"".to_string()),
        Just("=".to_string()),
        Just("${".to_string()),
        Just("var.".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("\n".to_string()),
        Just("nodepool \"x\" {".to_string()),
        Just("sensitive(".to_string()),
        "[a-zA-Z0-9_ .:/@-]{0,12}",
        any::<String>(),
    ];
    (
        0.0f64..1.0,
        0usize..24,
        proptest::collection::vec(piece, 0..4),
    )
        .prop_map(|(at, delete, pieces)| Edit {
            at,
            delete,
            insert: pieces.concat(),
        })
}

fn apply(text: &str, e: &Edit) -> String {
    let mut at = ((text.len() as f64) * e.at) as usize;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let mut end = (at + e.delete).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{}{}", &text[..at], e.insert, &text[end..])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_edit_of_an_example_loads_or_gets_diagnostics(
        which in 0usize..16,
        edits in proptest::collection::vec(edit(), 1..4),
    ) {
        let all = examples();
        let mut text = all[which % all.len()].clone();
        for e in &edits {
            text = apply(&text, e);
        }
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        if let Err(errors) = wallaroo_spec::parse_str("fuzz.hcl", &text, &base, &Default::default()) {
            for d in &errors.0 {
                prop_assert!(!d.message.is_empty());
            }
        }
    }
}
