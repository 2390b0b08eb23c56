//! How fast the language server answers on a large spec: examples/full.hcl grown to about
//! 2,000 lines with nodepools and users, the time from an edit to its diagnostics (what the
//! server does once the debounce has passed; goal 50 ms), completion and hover (medians of
//! 21 runs).
//!
//! Run: `cargo bench -p wallaroo-lsp --bench diagnostics`.

use std::path::Path;
use std::time::Instant;

use lsp_types::Position;

fn median(mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..21)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = repo.join("examples/full.hcl");
    let mut text = std::fs::read_to_string(&path).unwrap();
    let mut i = 0;
    while text.lines().count() < 2000 {
        text.push_str(&format!(
            "\nnodepool \"pool-{i}\" {{\n  nodes  = [\"bench-node-{i}\"]\n  labels = {{ \"team\" = \"t{i}\" }}\n}}\n\nuser \"user-{i}@example.com\" {{\n  role      = \"user\"\n  password  = \"Str0ng-pass-{i}\"\n  temporary = true\n}}\n"
        ));
        i += 1;
    }
    let lines = text.lines().count();
    let k = wallaroo_lsp::knowledge::Knowledge::load();
    // An edit: one attribute misspelt near the end.
    let edited = text.replacen("temporary = true", "temporary = ture", 1);
    let diagnose = median(|| {
        std::hint::black_box(wallaroo_lsp::diagnostics(&path, &edited));
    });
    let found = wallaroo_lsp::diagnostics(&path, &edited).len();
    let last = (lines - 3) as u32;
    let complete = median(|| {
        std::hint::black_box(wallaroo_lsp::completion(
            &k,
            &text,
            Position {
                line: last,
                character: 2,
            },
        ));
    });
    let hover = median(|| {
        std::hint::black_box(wallaroo_lsp::hover(
            &k,
            &text,
            Position {
                line: last,
                character: 4,
            },
        ));
    });
    println!("\nlanguage server on a spec of {lines} lines (medians of 21):");
    println!("| request | ms |");
    println!("|---|---|");
    println!("| diagnostics after an edit ({found} found) | {diagnose:.1} (goal 50) |");
    println!("| completion | {complete:.1} |");
    println!("| hover | {hover:.1} |");
}
