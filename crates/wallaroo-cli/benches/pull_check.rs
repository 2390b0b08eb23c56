//! What the pull check adds to a plan: `wallaroo preflight` of the quickstart spec with its
//! three nodepools each on a real node of the test kit (kubelet, containerd, runc), with the
//! check off and on (medians of 5 runs of the binary), the first run with the probe not yet
//! on the nodes apart. Goal: under 3 s added when the image is already on the nodes. Also
//! counts what the check left behind: its namespaces are deleted as it ends and gone once
//! their pods have stopped.
//!
//! Run: `cargo bench -p wallaroo-cli --bench pull_check` (brings the test environment and
//! three real nodes up, and stops the nodes at the end).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 5;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let env = wallaroo_testenv::shared();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let id = wallaroo_testenv::unique("pullbench");
    let names: Vec<String> = (1..=3).map(|i| format!("{id}-r{i}")).collect();
    let started = Instant::now();
    for n in &names {
        env.start_real_node(n, &wallaroo_testenv::node::NodeOptions::default())
            .unwrap();
    }
    eprintln!(
        "bench: 3 real nodes Ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tls")).unwrap();
    for f in ["tls/wallaroo.crt", "tls/wallaroo.key"] {
        std::fs::copy(repo.join("examples").join(f), dir.path().join(f)).unwrap();
    }
    let spec = std::fs::read_to_string(repo.join("examples/quickstart.hcl"))
        .unwrap()
        .replace(
            "  namespace = \"wallaroo\"",
            &format!("  namespace = \"{id}\""),
        )
        .replace("[\"node-1\", \"node-2\"]", &format!("[\"{}\"]", names[0]))
        .replace("[\"node-3\"]", &format!("[\"{}\"]", names[1]))
        .replace("[\"node-4\"]", &format!("[\"{}\"]", names[2]));
    let off = spec.replace(
        "  ca_file   = var.private_ca_file\n",
        "  ca_file   = var.private_ca_file\n  pull_check = false\n",
    );
    let preflight = |spec: &str| -> f64 {
        std::fs::write(dir.path().join("wallaroo.hcl"), spec).unwrap();
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_wallaroo"))
            .arg("preflight")
            .current_dir(dir.path())
            .envs(env.exports())
            .output()
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        secs
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let first = preflight(&spec);
    let mut with = Vec::new();
    let mut without = Vec::new();
    for _ in 0..RUNS {
        without.push(preflight(&off));
        with.push(preflight(&spec));
    }
    let (with, without) = (median(with), median(without));

    // What the check made is gone once its pods stopped.
    let api = env.api().unwrap();
    let left = || {
        api.get("/api/v1/namespaces").unwrap()["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| {
                n["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("wallaroo-pull-check-"))
            })
            .count()
    };
    let at_end = left();
    let t = Instant::now();
    while left() > 0 && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(250));
    }
    let gone_after = t.elapsed().as_secs_f64();
    let remaining = left();

    println!(
        "\npull check, `wallaroo preflight`, 3 nodepools on 3 real nodes (medians of {RUNS}):"
    );
    println!("| | seconds |");
    println!("|---|---|");
    println!("| check off | {without:.2} |");
    println!("| check on, probe already on the nodes | {with:.2} |");
    println!(
        "| added by the check | {:.2} (goal < 3.00) |",
        with - without
    );
    println!("| first run, probe pulled for the first time | {first:.2} |");
    println!(
        "| check namespaces terminating when the last run ended | {at_end} (all gone {gone_after:.1} s later; {remaining} left after 60 s) |"
    );
    for n in &names {
        env.stop_real_node(n).unwrap();
    }
}
