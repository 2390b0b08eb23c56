//! A no-op plan of the quickstart spec against 1,000 kwok nodes: its wall time (median of 5
//! runs of the `wallaroo` binary) and the requests the API server counted for each plan
//! (from its `apiserver_request_total` metric, so every request counts, whoever made it).
//! The nodepools select their nodes by label, so a plan should read them in one LIST per
//! pool, not one GET per node.
//!
//! Two settings: the API server on loopback, and behind a 50 ms round trip (the test kit's
//! toxiproxy in front of it, 25 ms each way, reached through a copy of the kubeconfig naming
//! the proxy). The goal at 50 ms is 1.2 s. Each as the applying identity and as the drift cron
//! job's (what `wallaroo rbac --read-only` grants), whose plan must cost no more. And the
//! quickstart's first plan (four named nodes), with the part of it the API server's rehearsal
//! of its writes takes (goal: at most 1 s more behind 50 ms).
//!
//! Run: `cargo bench -p wallaroo-cli --bench plan_nodes` (brings the test environment up).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::json;

const NODES: usize = 1000;

/// Requests the cluster makes on its own whether a plan runs or not: kwok's node heartbeats
/// (leases, node status) and what the controllers list and record. A plan makes none of them.
const BACKGROUND: &[&str] = &[
    "PUT leases",
    "PATCH nodes",
    "GET nodes",
    "LIST pods",
    "POST events",
    "GET ",
];

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
    // The kubeconfig the 50 ms setting uses: the same credentials, the proxy's address.
    let direct = std::fs::read_to_string(&env.kubeconfig).unwrap();
    let server = direct
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .map(|s| s.trim().trim_matches('"').to_string())
        .expect("the kubeconfig names its server");
    let slow = dir.path().join("slow.kubeconfig");
    std::fs::write(
        &slow,
        direct.replace(
            &server,
            &format!("https://127.0.0.1:{}", env.proxies["kube-apiserver"]),
        ),
    )
    .unwrap();
    let set_latency = |ms: u64| env.set_latency("kube-apiserver", ms).unwrap();

    // The drift cron job's identity: what `wallaroo rbac --read-only` prints, applied by the
    // admin, and a token for it; the same two settings.
    let printed = wallaroo(&[
        "rbac",
        "--read-only",
        "--name",
        &format!("{id}-drift"),
        "--service-account",
        &format!("{id}/drift"),
    ]);
    assert!(printed.status.success());
    api.create(
        &format!("/api/v1/namespaces/{id}/serviceaccounts"),
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "drift"}}),
    )
    .unwrap();
    let docs: Vec<Option<serde_json::Value>> =
        serde_saphyr::from_multiple(&String::from_utf8_lossy(&printed.stdout)).unwrap();
    // The namespace (first in the stream) is there already.
    let docs: Vec<serde_json::Value> = docs
        .into_iter()
        .flatten()
        .filter(|d| d["kind"] != "Namespace")
        .collect();
    for doc in &docs {
        let plural = format!("{}s", doc["kind"].as_str().unwrap().to_lowercase());
        let path = match doc["metadata"]["namespace"].as_str() {
            Some(ns) => format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/{plural}"),
            None => format!("/apis/rbac.authorization.k8s.io/v1/{plural}"),
        };
        api.create(&path, doc).unwrap();
    }
    let read_only = dir.path().join("drift.kubeconfig");
    env.service_account_kubeconfig(&id, "drift", &read_only)
        .unwrap();
    let read_only_slow = dir.path().join("drift-slow.kubeconfig");
    std::fs::write(
        &read_only_slow,
        std::fs::read_to_string(&read_only).unwrap().replace(
            &server,
            &format!("https://127.0.0.1:{}", env.proxies["kube-apiserver"]),
        ),
    )
    .unwrap();

    const RUNS: usize = 5;
    let mut rows = Vec::new();
    for (setting, kubeconfig, latency) in [
        ("loopback", env.kubeconfig.clone(), 0),
        ("50 ms round trip", slow.clone(), 25),
        ("loopback, read-only identity", read_only.clone(), 0),
        ("50 ms, read-only identity", read_only_slow.clone(), 25),
    ] {
        set_latency(latency);
        let mut walls = Vec::new();
        let mut per_plan: BTreeMap<String, f64> = BTreeMap::new();
        for _ in 0..RUNS {
            let before = requests(&api);
            let t = Instant::now();
            let out = Command::new(env!("CARGO_BIN_EXE_wallaroo"))
                .args(["plan", "--detailed-exitcode"])
                .current_dir(dir.path())
                .envs(env.exports())
                .env("KUBECONFIG", &kubeconfig)
                .env("WALLAROO_VAR_admin_password", "Adm1n-bench-pass")
                .env("NO_COLOR", "1")
                .output()
                .unwrap();
            walls.push(t.elapsed());
            assert_eq!(
                out.status.code(),
                Some(0),
                "a no-op plan: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
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
        rows.push((setting, walls[RUNS / 2], per_plan));
    }

    // The quickstart's first plan (four named nodes, nothing installed): what the API
    // server's rehearsal of its writes adds, from the plan's own profile.
    let first = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(first.path().join("tls")).unwrap();
    for f in ["tls/wallaroo.crt", "tls/wallaroo.key"] {
        std::fs::copy(repo.join("examples").join(f), first.path().join(f)).unwrap();
    }
    let q_nodes = env
        .add_nodes(&format!("{id}-q"), 4, &json!({}), &json!([]), &json!({}))
        .unwrap();
    let mut q_spec = quickstart
        .replace(
            "namespace               = \"wallaroo\"",
            &format!("namespace               = \"{id}-q\""),
        )
        .replace(
            "  namespace = \"wallaroo\"",
            &format!("  namespace = \"{id}-q\""),
        );
    for (i, node) in q_nodes.iter().enumerate() {
        q_spec = q_spec.replace(&format!("\"node-{}\"", i + 1), &format!("\"{node}\""));
    }
    std::fs::write(first.path().join("wallaroo.hcl"), &q_spec).unwrap();
    let mut first_rows = Vec::new();
    for (setting, kubeconfig, latency) in [
        ("loopback", env.kubeconfig.clone(), 0),
        ("50 ms round trip", slow.clone(), 25),
    ] {
        set_latency(latency);
        let mut runs = Vec::new();
        for _ in 0..RUNS {
            let profile = first.path().join("profile.json");
            let t = Instant::now();
            let out = Command::new(env!("CARGO_BIN_EXE_wallaroo"))
                .args(["plan", "--detailed-exitcode"])
                .current_dir(first.path())
                .envs(env.exports())
                .env("KUBECONFIG", &kubeconfig)
                .env("WALLAROO_VAR_admin_password", "Adm1n-bench-pass")
                .env("WALLAROO_PROFILE", &profile)
                .env("NO_COLOR", "1")
                .output()
                .unwrap();
            let wall = t.elapsed();
            assert_eq!(
                out.status.code(),
                Some(2),
                "a first plan: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let figures: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&profile).unwrap()).unwrap();
            let phase = |name: &str| {
                figures["phases"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| p["name"] == name)
                    .map(|p| {
                        (
                            p["wall_ms"].as_f64().unwrap_or(0.0),
                            p["requests"].as_u64().unwrap_or(0),
                        )
                    })
                    .unwrap_or((0.0, 0))
            };
            let (rehearsal, _) = phase("rehearsal");
            let requests = phase("rehearsal").1
                + phase("rehearsal: wallaroo's writes").1
                + phase("rehearsal: the release").1;
            runs.push((wall, rehearsal, requests));
        }
        runs.sort_by_key(|r| r.0);
        first_rows.push((setting, runs[RUNS / 2]));
    }
    set_latency(0);

    println!("\nFirst plan of the quickstart (4 nodes, nothing installed; median of {RUNS})\n");
    println!("| API server | plan wall | of which the API server's rehearsal | its requests |");
    println!("|---|---|---|---|");
    for (setting, (wall, rehearsal, requests)) in &first_rows {
        println!(
            "| {setting} | {:.2} s | {:.2} s | {requests} |",
            wall.as_secs_f64(),
            rehearsal / 1000.0
        );
    }

    println!("\nNo-op plan of the quickstart spec against {NODES} kwok nodes (median of {RUNS})\n");
    println!(
        "| API server | plan wall | API requests while it ran | without kwok's and the controllers' own | LIST nodes |"
    );
    println!("|---|---|---|---|---|");
    for (setting, median, per_plan) in &rows {
        let total: f64 = per_plan.values().sum();
        let own: f64 = per_plan
            .iter()
            .filter(|(k, _)| !BACKGROUND.contains(&k.as_str()))
            .map(|(_, v)| v)
            .sum();
        println!(
            "| {setting} | {:.2} s | {total:.0} | {own:.0} | {:.0} |",
            median.as_secs_f64(),
            per_plan.get("LIST nodes").copied().unwrap_or(0.0)
        );
    }
    for (setting, _, per_plan) in &rows {
        println!(
            "\nRequests per plan by verb and resource, {setting} (the metric counts the whole API server):\n"
        );
        for (k, v) in per_plan {
            if *v >= 0.5 {
                println!("  {v:>6.1}  {k}");
            }
        }
    }
    let _ = wallaroo(&["destroy", "--auto-approve"]);
    for doc in docs.iter().filter(|d| d["metadata"]["namespace"].is_null()) {
        let plural = format!("{}s", doc["kind"].as_str().unwrap().to_lowercase());
        let _ = api.delete(&format!(
            "/apis/rbac.authorization.k8s.io/v1/{plural}/{}",
            doc["metadata"]["name"].as_str().unwrap()
        ));
    }
    for node in &q_nodes {
        let _ = api.delete(&format!("/api/v1/nodes/{node}"));
    }
    // The nodes go too: kwok keeps every node alive with heartbeats, so the next run (or
    // test) would share the machine with them.
    for (pool, n) in [("general", 400), ("persistent", 100), ("pipelines", 500)] {
        for i in 1..=n {
            let _ = api.delete(&format!("/api/v1/nodes/{id}-{pool}-{i}"));
        }
    }
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
