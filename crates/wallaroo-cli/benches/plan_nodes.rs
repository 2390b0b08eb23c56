//! A no-op plan of the quickstart spec against 1,000 kwok nodes: its wall time (median of 5
//! runs of the `wallaroo` binary) and the requests the API server counted for each plan
//! (from its `apiserver_request_total` metric, so every request counts, whoever made it).
//! The nodepools select their nodes by label, so a plan should read them in one LIST per
//! pool, not one GET per node.
//!
//! Run: `cargo bench -p wallaroo-cli --bench plan_nodes` (brings the test environment up).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

const NODES: usize = 1000;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let env = wallaroo_testenv::shared();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    wallaroo_testenv::seed::seed(
        env,
        &preset,
        &env.vendor,
        "wallaroo",
        &repo.join("tests/charts/wallaroo-sample"),
    )
    .unwrap();
    let id = wallaroo_testenv::unique("bench");
    let started = Instant::now();
    for (pool, n) in [("general", 400), ("persistent", 100), ("pipelines", 500)] {
        env.add_nodes(
            &format!("{id}-{pool}"),
            n,
            &json!({"bench.wallaroo.ai/pool": format!("{id}-{pool}")}),
            &json!([]),
            &json!({}),
        )
        .unwrap();
    }
    eprintln!(
        "bench: {NODES} kwok nodes in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // The quickstart spec, its nodepools selecting the bench's nodes by label.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tls")).unwrap();
    for f in ["tls/wallaroo.crt", "tls/wallaroo.key"] {
        std::fs::copy(repo.join("examples").join(f), dir.path().join(f)).unwrap();
    }
    let quickstart = std::fs::read_to_string(repo.join("examples/quickstart.hcl")).unwrap();
    let mut spec = quickstart
        .replace(
            "namespace               = \"wallaroo\"",
            &format!("namespace               = \"{id}\""),
        )
        .replace(
            "  namespace = \"wallaroo\"",
            &format!("  namespace = \"{id}\""),
        );
    for (pool, key) in [
        ("general", "\"node-1\", \"node-2\""),
        ("persistent", "\"node-3\""),
        ("pipelines-x86", "\"node-4\""),
    ] {
        let label = if pool == "pipelines-x86" {
            "pipelines"
        } else {
            pool
        };
        spec = spec.replace(
            &format!("  nodes = [{key}]"),
            &format!("  selector = {{ \"bench.wallaroo.ai/pool\" = \"{id}-{label}\" }}"),
        );
    }
    std::fs::write(dir.path().join("wallaroo.hcl"), &spec).unwrap();
    let wallaroo = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_wallaroo"))
            .args(args)
            .current_dir(dir.path())
            .envs(env.exports())
            .env("WALLAROO_VAR_admin_password", "Adm1n-bench-pass")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let applied = wallaroo(&["apply", "--auto-approve"]);
    assert!(
        applied.status.success(),
        "{}{}",
        String::from_utf8_lossy(&applied.stdout),
        String::from_utf8_lossy(&applied.stderr)
    );

    let api = env.api().unwrap();
    let mut walls = Vec::new();
    let mut per_plan: BTreeMap<String, f64> = BTreeMap::new();
    const RUNS: usize = 5;
    for _ in 0..RUNS {
        let before = requests(&api);
        let t = Instant::now();
        let out = wallaroo(&["plan", "--detailed-exitcode"]);
        walls.push(t.elapsed());
        assert_eq!(
            out.status.code(),
            Some(0),
            "a no-op plan: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let after = requests(&api);
        for (k, v) in &after {
            let d = v - before.get(k).copied().unwrap_or(0.0);
            if d > 0.0 {
                *per_plan.entry(k.clone()).or_default() += d / RUNS as f64;
            }
        }
    }
    walls.sort();
    let median: Duration = walls[RUNS / 2];
    let total: f64 = per_plan.values().sum();
    let nodes: f64 = per_plan
        .iter()
        .filter(|(k, _)| k.ends_with(" nodes"))
        .map(|(_, v)| v)
        .sum();
    println!("\nNo-op plan of the quickstart spec against {NODES} kwok nodes (median of {RUNS})\n");
    println!("| nodes | plan wall | API requests per plan | of them on nodes |");
    println!("|---|---|---|---|");
    println!(
        "| {NODES} | {:.2} s | {total:.0} | {nodes:.0} |",
        median.as_secs_f64()
    );
    println!(
        "\nRequests per plan by verb and resource (the metric counts the whole API server):\n"
    );
    for (k, v) in &per_plan {
        if *v >= 0.5 {
            println!("  {v:>6.1}  {k}");
        }
    }
    let _ = wallaroo(&["destroy", "--auto-approve"]);
}

/// `apiserver_request_total` summed by verb and resource.
fn requests(api: &wallaroo_testenv::KubeApi) -> BTreeMap<String, f64> {
    let text = api.get_text("/metrics").unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let get = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let key = format!("{} {}", get("verb"), get("resource"));
        *out.entry(key).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    out
}
