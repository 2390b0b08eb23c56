//! Mirroring benchmark: wallaroo against `skopeo sync` (Debian's skopeo) and regclient's
//! `regsync` (built from the Go module proxy by the test kit, `parallel: 4`, its default
//! concurrency per registry) on the same real
//! registries and the `release` preset (40 images, about 1.5 GB), each full run into a new,
//! empty registry, on plain loopback and with the vendor registry behind a 50 ms round trip
//! (toxiproxy latency, 25 ms each way). Also measured in the same run: the time of a no-op
//! second run of each, and the floor, every unique blob piped GET -> PUT eight at a time with
//! no manifests. Wall time and peak RSS of wallaroo and skopeo are measured on child
//! processes with GNU time.
//!
//! Run: `cargo bench -p wallaroo-oci --bench mirror` (brings the test environment up and
//! seeds the preset if needed).

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use wallaroo_engine::*;
use wallaroo_oci::pins::{PinRequest, recorded, resolve_all};
use wallaroo_oci::resume::Chunking;
use wallaroo_oci::{Credentials, ImageKind, ImageSource, Registry};
use wallaroo_testenv::env::ScratchRegistry;

/// What a child run needs (passed as JSON in an environment variable).
#[derive(Serialize, Deserialize)]
struct ChildConfig {
    vendor: String,
    vendor_user: String,
    vendor_password: String,
    target: String,
    target_user: String,
    target_password: String,
    ca_file: String,
    /// `repo:tag` on the vendor registry.
    images: Vec<String>,
    namespace: String,
    lockfile: String,
    /// How resumable uploads send (`WALLAROO_BENCH_CHUNKING`: `whole` or a chunk in MiB).
    chunking: Option<String>,
}

#[derive(Default, Clone)]
struct Measured {
    wall: Duration,
    rss_kb: u64,
}

fn main() {
    if let Ok(mode) = std::env::var("WALLAROO_BENCH_CHILD") {
        child(&mode);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    wallaroo_testenv::install_crypto_provider();
    let env = wallaroo_testenv::shared();
    // `WALLAROO_BENCH_PRESET=large` measures at real size (about 11 GB; the disk must hold it
    // in the vendor registry and once more in the scratch one).
    let preset_name = std::env::var("WALLAROO_BENCH_PRESET").unwrap_or_else(|_| "release".into());
    let preset = wallaroo_testenv::seed::preset(&preset_name)
        .unwrap_or_else(|| panic!("no preset named {preset_name}"));
    let path = wallaroo_testenv::seed::default_path(&preset);
    let chart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/charts/wallaroo-sample");
    wallaroo_testenv::seed::seed(env, &preset, &env.vendor, path, &chart).unwrap();
    let images: Vec<String> = preset
        .images
        .iter()
        .map(|i| format!("{path}/{}:{}", i.name, i.tag))
        .collect();
    let set_latency = |ms: u64| env.set_latency("vendor-registry", ms).unwrap();

    let runs: usize = std::env::var("WALLAROO_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // `WALLAROO_BENCH_TOOLS=wallaroo,floor` leaves skopeo out (for comparing wallaroo's own
    // choices, e.g. `WALLAROO_BENCH_CHUNKING`); `WALLAROO_BENCH_SETTINGS=50ms` keeps one link.
    let tools =
        std::env::var("WALLAROO_BENCH_TOOLS").unwrap_or("wallaroo,skopeo,regsync,floor".into());
    let with = |tool: &str| tools.split(',').any(|t| t.trim() == tool);
    let settings = std::env::var("WALLAROO_BENCH_SETTINGS").unwrap_or("loopback,50ms".into());
    let mut rows = Vec::new();
    for (setting, vendor_addr, latency) in [
        ("loopback", env.vendor.address(), 0),
        (
            "50 ms round trip",
            format!("{}:{}", env.vendor.host, env.proxies["vendor-registry"]),
            25,
        ),
    ] {
        let key = if latency == 0 { "loopback" } else { "50ms" };
        if !settings.split(',').any(|s| s.trim() == key) {
            continue;
        }
        set_latency(latency);
        let mut w_runs = Vec::new();
        let mut s_runs = Vec::new();
        let mut f_runs = Vec::new();
        for run in 1..=runs {
            if !with("wallaroo") {
                break;
            }
            eprintln!("bench: {setting}: run {run}/{runs}: wallaroo");
            let scratch = env.scratch_registry("bench-registry").unwrap();
            let work = tempfile::tempdir().unwrap();
            let config = ChildConfig {
                vendor: vendor_addr.clone(),
                vendor_user: env.vendor.username.clone(),
                vendor_password: env.vendor.password.clone(),
                target: scratch.registry.address(),
                target_user: scratch.registry.username.clone(),
                target_password: scratch.registry.password.clone(),
                ca_file: env.ca_file.display().to_string(),
                images: images.clone(),
                namespace: "mirror".into(),
                lockfile: work.path().join("wallaroo.lock").display().to_string(),
                chunking: std::env::var("WALLAROO_BENCH_CHUNKING").ok(),
            };
            let full = run_child("apply", &config);
            let bytes = scratch.stored_bytes();
            let noop = run_child("noop", &config);
            scratch.stop();
            w_runs.push((full, noop, bytes));
        }
        for run in 1..=runs {
            if !with("skopeo") {
                break;
            }
            eprintln!("bench: {setting}: run {run}/{runs}: skopeo sync");
            let scratch = env.scratch_registry("bench-registry").unwrap();
            let full = skopeo_sync(env, &vendor_addr, path, &images, &scratch);
            let bytes = scratch.stored_bytes();
            let noop = skopeo_sync(env, &vendor_addr, path, &images, &scratch);
            scratch.stop();
            s_runs.push((full, noop, bytes));
        }
        let mut r_runs = Vec::new();
        for run in 1..=runs {
            if !with("regsync") {
                break;
            }
            eprintln!("bench: {setting}: run {run}/{runs}: regsync once");
            let scratch = env.scratch_registry("bench-registry").unwrap();
            let full = regsync(env, &vendor_addr, &images, &scratch);
            let bytes = scratch.stored_bytes();
            let noop = regsync(env, &vendor_addr, &images, &scratch);
            scratch.stop();
            r_runs.push((full, noop, bytes));
        }
        for run in 1..=runs {
            if !with("floor") {
                break;
            }
            eprintln!("bench: {setting}: run {run}/{runs}: floor");
            let scratch = env.scratch_registry("bench-registry").unwrap();
            f_runs.push(floor(env, &vendor_addr, &images, &scratch));
            scratch.stop();
        }
        let (wallaroo, wallaroo_noop, wallaroo_bytes) = median(w_runs);
        let (skopeo, skopeo_noop, skopeo_bytes) = median(s_runs);
        let regsync_row = median(r_runs);
        f_runs.sort_by_key(|(d, _)| *d);
        let (floor, floor_bytes) = f_runs.get(f_runs.len() / 2).copied().unwrap_or_default();
        rows.push((
            setting,
            wallaroo,
            wallaroo_noop,
            wallaroo_bytes,
            skopeo,
            skopeo_noop,
            skopeo_bytes,
            floor,
            floor_bytes,
            regsync_row,
        ));
    }
    set_latency(0);

    println!(
        "\nMirror benchmark: preset `{preset_name}` ({} images), each full run into an empty registry; medians of {runs} runs; resumable uploads: {}\n",
        images.len(),
        std::env::var("WALLAROO_BENCH_CHUNKING")
            .map(|c| if c == "whole" {
                "one request".to_string()
            } else {
                format!("{c} MiB chunks")
            })
            .unwrap_or_else(|_| "as shipped".into()),
    );
    println!(
        "| setting | tool | wall | peak RSS | bytes stored | no-op run | vs skopeo | vs regsync | vs floor |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (setting, w, wn, wb, s, sn, sb, f, fb, (r, rn, rb)) in rows {
        let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
        let mb = |b: u64| format!("{} MB", b >> 20);
        // Ratios only between tools that ran.
        let ratio = |a: Duration, b: Duration| {
            if a.is_zero() || b.is_zero() {
                String::new()
            } else {
                format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64())
            }
        };
        let faster = |a: Duration, b: Duration| {
            let r = ratio(a, b);
            if r.is_empty() {
                r
            } else {
                format!("{r} faster")
            }
        };
        if !w.wall.is_zero() {
            println!(
                "| {setting} | wallaroo | {} | {} MB | {} | {} | {} | {} | {} |",
                secs(w.wall),
                w.rss_kb >> 10,
                mb(wb),
                secs(wn.wall),
                faster(s.wall, w.wall),
                faster(r.wall, w.wall),
                ratio(w.wall, f),
            );
        }
        if !s.wall.is_zero() {
            println!(
                "| {setting} | skopeo sync | {} | {} MB | {} | {} | | | {} |",
                secs(s.wall),
                s.rss_kb >> 10,
                mb(sb),
                secs(sn.wall),
                ratio(s.wall, f),
            );
        }
        if !r.wall.is_zero() {
            println!(
                "| {setting} | regsync once (parallel 4) | {} | {} MB | {} | {} | | | {} |",
                secs(r.wall),
                r.rss_kb >> 10,
                mb(rb),
                secs(rn.wall),
                ratio(r.wall, f),
            );
        }
        if !f.is_zero() {
            println!(
                "| {setting} | floor (blobs GET -> PUT, 8 at a time) | {} | | {} | | | | 1.00x |",
                secs(f),
                mb(fb),
            );
        }
        if !w.wall.is_zero() && !s.wall.is_zero() {
            println!(
                "| {setting} | no-op: wallaroo plan vs skopeo sync, vs regsync | | | | {:.0}x faster | | {} | |",
                sn.wall.as_secs_f64() / wn.wall.as_secs_f64(),
                if rn.wall.is_zero() {
                    String::new()
                } else {
                    format!(
                        "{:.1}x faster",
                        rn.wall.as_secs_f64() / wn.wall.as_secs_f64()
                    )
                }
            );
        }
    }
}

/// The run with the median full-run wall time (its no-op time, peak RSS and bytes with it),
/// and the highest peak RSS of all runs.
fn median(mut runs: Vec<(Measured, Measured, u64)>) -> (Measured, Measured, u64) {
    if runs.is_empty() {
        return Default::default();
    }
    let peak = runs.iter().map(|r| r.0.rss_kb).max().unwrap_or(0);
    runs.sort_by_key(|r| r.0.wall);
    let mut mid = runs[runs.len() / 2].clone();
    mid.0.rss_kb = peak;
    mid
}

/// Runs this binary as a child in `mode` under GNU time: wall time and peak RSS.
fn run_child(mode: &str, config: &ChildConfig) -> Measured {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%e %M"])
        .arg(exe)
        .env("WALLAROO_BENCH_CHILD", mode)
        .env(
            "WALLAROO_BENCH_CONFIG",
            serde_json::to_string(config).unwrap(),
        );
    timed(&mut cmd)
}

fn timed(cmd: &mut Command) -> Measured {
    let started = Instant::now();
    let out = cmd.output().expect("/usr/bin/time runs");
    let wall = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    if std::env::var_os("WALLAROO_BENCH_TRACE").is_some() {
        for line in stderr.lines().filter(|l| l.starts_with("child")) {
            eprintln!("{line} (wall {wall:?})");
        }
    }
    let last = stderr.lines().last().unwrap_or("");
    let rss_kb = last
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Measured { wall, rss_kb }
}

fn skopeo_sync(
    env: &wallaroo_testenv::Env,
    vendor: &str,
    path: &str,
    images: &[String],
    scratch: &ScratchRegistry,
) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&env.ca_file, dir.path().join("ca.crt")).unwrap();
    let mut yaml = format!(
        "{vendor}:\n  cert-dir: {}\n  credentials:\n    username: {}\n    password: {}\n  images:\n",
        dir.path().display(),
        env.vendor.username,
        env.vendor.password
    );
    for image in images {
        let (repo, tag) = image.rsplit_once(':').unwrap();
        yaml.push_str(&format!("    {repo}:\n      - \"{tag}\"\n"));
    }
    let file = dir.path().join("sync.yaml");
    std::fs::write(&file, yaml).unwrap();
    let _ = path;
    let skopeo = wallaroo_testenv::program("skopeo").unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%e %M"])
        .arg(skopeo)
        .args(["sync", "--all", "--src", "yaml", "--dest", "docker"])
        .arg("--dest-cert-dir")
        .arg(dir.path())
        .arg("--dest-creds")
        .arg(format!(
            "{}:{}",
            scratch.registry.username, scratch.registry.password
        ))
        .arg(&file)
        .arg(format!("{}/mirror", scratch.registry.address()));
    timed(&mut cmd)
}

/// `regsync once` of the images into `scratch` under `mirror/`, as skopeo sync lays them
/// out: every platform, both registries over TLS with the test CA, `parallel: 4`.
fn regsync(
    env: &wallaroo_testenv::Env,
    vendor: &str,
    images: &[String],
    scratch: &ScratchRegistry,
) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let ca = std::fs::read_to_string(&env.ca_file).unwrap();
    let indented: String = ca.lines().map(|l| format!("      {l}\n")).collect();
    let target = scratch.registry.address();
    let mut yaml = format!(
        "version: 1\ncreds:\n  - registry: {vendor}\n    user: {}\n    pass: {}\n    regcert: |\n{indented}  - registry: {target}\n    user: {}\n    pass: {}\n    regcert: |\n{indented}defaults:\n  parallel: 4\nsync:\n",
        env.vendor.username,
        env.vendor.password,
        scratch.registry.username,
        scratch.registry.password,
    );
    for image in images {
        yaml.push_str(&format!(
            "  - source: {vendor}/{image}\n    target: {target}/mirror/{image}\n    type: image\n"
        ));
    }
    let file = dir.path().join("regsync.yaml");
    std::fs::write(&file, yaml).unwrap();
    let regsync =
        wallaroo_testenv::provision::go_program("regsync").unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%e %M"])
        .arg(regsync)
        .args(["once", "-v", "warn", "-c"])
        .arg(&file)
        .env("HOME", dir.path());
    timed(&mut cmd)
}

/// Every unique blob of the images piped GET -> PUT, eight at a time, no manifests.
fn floor(
    env: &wallaroo_testenv::Env,
    vendor: &str,
    images: &[String],
    scratch: &ScratchRegistry,
) -> (Duration, u64) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let src = Registry::new(
            vendor,
            Some(Credentials {
                username: env.vendor.username.clone(),
                password: env.vendor.password.clone(),
            }),
            Some(&env.ca_file),
        )
        .unwrap();
        let dst = Registry::new(
            &scratch.registry.address(),
            Some(Credentials {
                username: scratch.registry.username.clone(),
                password: scratch.registry.password.clone(),
            }),
            Some(&env.ca_file),
        )
        .unwrap();
        // The blob list is read before the clock starts.
        let mut blobs: BTreeMap<String, String> = BTreeMap::new();
        for image in images {
            let (repo, tag) = image.rsplit_once(':').unwrap();
            let top = src.manifest(repo, tag).await.unwrap().unwrap();
            let mut manifests = vec![top.clone()];
            if top.is_index() {
                for child in top.json()["manifests"].as_array().unwrap() {
                    let d = child["digest"].as_str().unwrap();
                    manifests.push(src.manifest(repo, d).await.unwrap().unwrap());
                }
            }
            for m in &manifests {
                for b in wallaroo_oci::blob_digests(m) {
                    blobs.entry(b).or_insert_with(|| repo.to_string());
                }
            }
        }
        let started = Instant::now();
        let moved: Vec<u64> = futures_util::stream::iter(blobs)
            .map(|(digest, repo)| {
                let (src, dst) = (&src, &dst);
                async move {
                    dst.put_blob_from("floor/blobs", &digest, src as &dyn ImageSource, &repo)
                        .await
                        .unwrap()
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        (started.elapsed(), moved.iter().sum())
    })
}

/// A child run: `apply` mirrors every image (plan, then apply, as `wallaroo apply` does for
/// image resources), `noop` plans again from the lockfile and expects nothing to do.
fn child(mode: &str) {
    wallaroo_testenv::install_crypto_provider();
    let config: ChildConfig =
        serde_json::from_str(&std::env::var("WALLAROO_BENCH_CONFIG").unwrap()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t0 = Instant::now();
    rt.block_on(async {
        let ca = std::path::PathBuf::from(&config.ca_file);
        let vendor: Arc<dyn ImageSource> = Arc::new(
            Registry::new(
                &config.vendor,
                Some(Credentials {
                    username: config.vendor_user.clone(),
                    password: config.vendor_password.clone(),
                }),
                Some(&ca),
            )
            .unwrap(),
        );
        let target = Arc::new(
            Registry::new(
                &config.target,
                Some(Credentials {
                    username: config.target_user.clone(),
                    password: config.target_password.clone(),
                }),
                Some(&ca),
            )
            .unwrap(),
        );
        let store = wallaroo_state::StateStore::new(&config.lockfile);
        let state = store.load().unwrap();
        let sources = BTreeMap::from([(config.vendor.clone(), vendor)]);
        let requests: Vec<PinRequest> = config
            .images
            .iter()
            .map(|i| PinRequest {
                source: format!("{}/{i}", config.vendor),
                platforms: vec!["all".into()],
            })
            .collect();
        let prior = recorded(
            state
                .iter()
                .flat_map(|s| s.resources.values())
                .map(|r| &r.attributes),
        );
        let pins = resolve_all(&sources, &requests, &prior, false)
            .await
            .unwrap();
        let mut desired = DesiredSet::default();
        for r in &requests {
            let (_, repo, tag) = wallaroo_model::split_reference(&r.source);
            let name = repo.rsplit('/').next().unwrap();
            let path = format!("{}/{name}", config.namespace);
            let pin = &pins[&r.source];
            desired.insert(DesiredResource::new(
                Address::keyed("image", &path),
                "image",
                Attrs::from([
                    ("source".into(), json!(r.source)),
                    (
                        "target".into(),
                        json!(format!("{}/{path}:{tag}", config.target)),
                    ),
                    ("platforms".into(), json!(["all"])),
                    ("source_digest".into(), json!(pin.source_digest)),
                    ("digest".into(), json!(pin.digest)),
                ]),
            ));
        }
        let mut kinds = KindRegistry::new();
        // As `wallaroo apply` sets it up: large uploads resumable, recorded beside the lockfile.
        let journal = std::path::Path::new(&config.lockfile)
            .parent()
            .unwrap()
            .join(".wallaroo-uploads");
        let mut kind = ImageKind::new(sources, target).with_journal(journal);
        if let (Some(choice), Some(journal)) = (&config.chunking, kind.journal.take()) {
            kind.journal = Some(journal.with_chunking(match choice.as_str() {
                "whole" => Chunking::Whole,
                mib => Chunking::Chunks(mib.parse::<u64>().expect("a chunk in MiB") << 20),
            }));
        }
        kinds.register(Arc::new(kind));
        let engine = Engine::new(kinds);
        let plan = engine
            .plan(&desired, state.as_ref(), &PlanOptions::default())
            .await
            .unwrap();
        if std::env::var_os("WALLAROO_BENCH_TRACE").is_some() {
            eprintln!("child {mode}: planned at {:?}", t0.elapsed());
        }
        match mode {
            "noop" => assert!(!plan.has_changes(), "the second run has nothing to do"),
            _ => {
                let report = engine
                    .apply(&plan, &desired, &store, &ApplyOptions::default(), &Silent)
                    .await
                    .unwrap();
                assert!(report.success(), "{report:?}");
                if std::env::var_os("WALLAROO_BENCH_TRACE").is_some() {
                    eprintln!("child {mode}: applied at {:?}", t0.elapsed());
                }
            }
        }
    });
}
