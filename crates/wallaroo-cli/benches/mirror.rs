//! Mirroring benchmark: `wallaroo apply --target image` (the whole command, as an operator
//! runs it: spec load, discovery of the release's images from its chart, pins, signature
//! and referrer lookups, the checks, refresh, manifests, blobs, lockfile) against
//! `skopeo sync` (Debian's skopeo) and regclient's `regsync once` (built from the Go module
//! proxy by the test kit, `parallel: 4`, its default concurrency per registry) on the same
//! real registries (distribution 2.8, TLS from the test CA, bcrypt htpasswd on both) and the
//! same images of a preset (`release`: 40 images, about 1.5 GB), each full run into a new,
//! empty registry, on plain loopback and with the vendor registry behind a 50 ms round trip
//! (toxiproxy latency, 25 ms each way). Also measured in the same run: a no-op second run of
//! each (wallaroo: the same `apply` again), wallaroo's apply of a saved plan (`plan --target
//! image --out`, not measured, then `apply` of it into another empty registry: the change
//! window's way, with no `helm template` in it), and the floor, every unique blob piped
//! GET -> PUT eight at a time with no manifests. Wall time and peak RSS come from GNU time
//! around each child process (for wallaroo that includes helm when it runs one: the peak of
//! the process tree); wallaroo's per-phase table comes from its own profile
//! (`WALLAROO_PROFILE`) of the median run.
//!
//! Run: `cargo bench -p wallaroo-cli --bench mirror` (brings the test environment up and
//! seeds the preset if needed). `WALLAROO_BENCH_PRESET=large` measures at real size;
//! `WALLAROO_BENCH_TOOLS=wallaroo,skopeo,regsync,floor`, `WALLAROO_BENCH_SETTINGS=loopback,50ms`
//! and `WALLAROO_BENCH_RUNS=3` choose what runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use wallaroo_oci::{Credentials, ImageSource, Registry};
use wallaroo_testenv::env::ScratchRegistry;

#[derive(Default, Clone)]
struct Measured {
    wall: Duration,
    rss_kb: u64,
    /// wallaroo's own peak RSS (its profile's), without the children it runs (`helm
    /// template` while discovering the release's images).
    own_rss_kb: u64,
    /// wallaroo's own profile of the run (`WALLAROO_PROFILE`), when it is wallaroo.
    profile: Option<Value>,
}

fn main() {
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
    // The chart names its images by the registry it was pushed to: for the slow link, a copy
    // of the release pushed through the proxy, so that its images are read through it too.
    let via_proxy = wallaroo_testenv::env::Registry {
        proc: wallaroo_testenv::env::Proc {
            pid: env.vendor.proc.pid,
            port: env.proxies["vendor-registry"],
        },
        host: env.vendor.host.clone(),
        username: env.vendor.username.clone(),
        password: env.vendor.password.clone(),
    };
    let slow_path = format!("{path}-via-proxy");
    set_latency(0);
    wallaroo_testenv::seed::seed(env, &preset, &via_proxy, &slow_path, &chart).unwrap();

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
        let mut saved_runs = Vec::new();
        let mut s_runs = Vec::new();
        let mut f_runs = Vec::new();
        for run in 1..=runs {
            if !with("wallaroo") {
                break;
            }
            eprintln!("bench: {setting}: run {run}/{runs}: wallaroo apply --target image");
            let scratch = env.scratch_registry("bench-registry").unwrap();
            let work = tempfile::tempdir().unwrap();
            let (vendor, seeded) = if latency == 0 {
                (&env.vendor, path)
            } else {
                (&via_proxy, slow_path.as_str())
            };
            let spec =
                env.mirror_spec_of(vendor, seeded, preset.version, &scratch.registry, "mirror");
            std::fs::write(work.path().join("wallaroo.hcl"), spec).unwrap();
            let full = wallaroo(env, work.path(), "full");
            let bytes = scratch.stored_bytes();
            let noop = wallaroo(env, work.path(), "noop");
            scratch.stop();
            w_runs.push((full, noop, bytes));
            // The change window's way: a plan saved at review time, then applied. The
            // apply reads the images from the plan, so no `helm template` runs in it.
            eprintln!("bench: {setting}: run {run}/{runs}: wallaroo apply of a saved plan");
            let scratch = env.scratch_registry("bench-registry").unwrap();
            let work = tempfile::tempdir().unwrap();
            let spec =
                env.mirror_spec_of(vendor, seeded, preset.version, &scratch.registry, "mirror");
            std::fs::write(work.path().join("wallaroo.hcl"), spec).unwrap();
            saved_runs.push(wallaroo_saved(env, work.path()));
            scratch.stop();
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
        let saved = median(
            saved_runs
                .into_iter()
                .map(|m| (m, Measured::default(), 0))
                .collect(),
        )
        .0;
        let (skopeo, skopeo_noop, skopeo_bytes) = median(s_runs);
        let regsync_row = median(r_runs);
        f_runs.sort_by_key(|(d, _)| *d);
        let (floor, floor_bytes) = f_runs.get(f_runs.len() / 2).copied().unwrap_or_default();
        rows.push((
            setting,
            wallaroo,
            saved,
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
        "\nMirror benchmark: preset `{preset_name}` ({} images), each full run into an empty registry; medians of {runs} runs (peak RSS: the highest of the runs)\n",
        images.len(),
    );
    println!(
        "| setting | tool | wall | peak RSS | bytes stored | no-op run | vs skopeo | vs regsync | vs floor |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let phases: Vec<(&str, Measured, Measured)> = rows
        .iter()
        .map(|r| (r.0, r.1.clone(), r.3.clone()))
        .collect();
    for (setting, w, ws, wn, wb, s, sn, sb, f, fb, (r, rn, rb)) in rows {
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
                "| {setting} | wallaroo | {} | {} MB ({} MB with helm template) | {} | {} | {} | {} | {} |",
                secs(w.wall),
                w.own_rss_kb >> 10,
                w.rss_kb >> 10,
                mb(wb),
                secs(wn.wall),
                faster(s.wall, w.wall),
                faster(r.wall, w.wall),
                ratio(w.wall, f),
            );
        }
        if !ws.wall.is_zero() {
            println!(
                "| {setting} | wallaroo, a saved plan applied (`plan --out`, then `apply` it) | {} | {} MB ({} MB with children) | | | {} | {} | {} |",
                secs(ws.wall),
                ws.own_rss_kb >> 10,
                ws.rss_kb >> 10,
                faster(s.wall, ws.wall),
                faster(r.wall, ws.wall),
                ratio(ws.wall, f),
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
                "| {setting} | no-op: wallaroo apply vs skopeo sync, vs regsync | | | | {:.0}x faster | | {} | |",
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
    if phases.iter().any(|(_, w, _)| w.profile.is_some()) {
        println!(
            "\nwallaroo's phases (its profile, `WALLAROO_PROFILE`, of the median run): when each began, how long at least one task was in it (phases overlap), the registry, API server and Keycloak requests made in it, the bytes they moved, and wallaroo's peak RSS when it last ended\n"
        );
        println!("| setting | run | phase | began at | wall | requests | bytes | peak RSS |");
        println!("|---|---|---|---|---|---|---|---|");
        for (setting, full, noop) in &phases {
            phase_rows(setting, "full", full);
            phase_rows(setting, "no-op", noop);
        }
    }
}

/// The median full run, the median no-op run (each by wall time, each with the highest
/// peak RSS of its runs), and the bytes stored by the median full run.
fn median(runs: Vec<(Measured, Measured, u64)>) -> (Measured, Measured, u64) {
    if runs.is_empty() {
        return Default::default();
    }
    let mid = |mut of: Vec<(Measured, u64)>| {
        let peak = of.iter().map(|m| m.0.rss_kb).max().unwrap_or(0);
        let own = of.iter().map(|m| m.0.own_rss_kb).max().unwrap_or(0);
        of.sort_by_key(|m| m.0.wall);
        let mut m = of[of.len() / 2].clone();
        m.0.rss_kb = peak;
        m.0.own_rss_kb = own;
        m
    };
    let (full, bytes) = mid(runs.iter().map(|r| (r.0.clone(), r.2)).collect());
    let (noop, _) = mid(runs.iter().map(|r| (r.1.clone(), 0)).collect());
    (full, noop, bytes)
}

fn timed(cmd: &mut Command) -> Measured {
    timed_with_output(cmd).0
}

/// Runs `cmd` (GNU time around a program): its wall time and peak RSS, and its stdout.
fn timed_with_output(cmd: &mut Command) -> (Measured, String) {
    let started = Instant::now();
    let out = cmd.output().expect("/usr/bin/time runs");
    let wall = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    let last = stderr.lines().last().unwrap_or("");
    let rss_kb = last
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (
        Measured {
            wall,
            rss_kb,
            own_rss_kb: 0,
            profile: None,
        },
        stdout,
    )
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

/// `wallaroo apply --auto-approve --target image` in `dir` under GNU time, with its profile.
/// `noop`: the run must find nothing to do.
fn wallaroo(env: &wallaroo_testenv::Env, dir: &Path, run: &str) -> Measured {
    let (measured, stdout) = profiled(
        env,
        dir,
        run,
        &["apply", "--auto-approve", "--target", "image"],
    );
    if run == "noop" {
        assert!(
            stdout.contains("No changes."),
            "the second run has nothing to do:\n{stdout}"
        );
    } else {
        assert!(stdout.contains("Apply complete!"), "{stdout}");
    }
    measured
}

/// `wallaroo plan --target image --out tfplan` in `dir` (not measured), then `wallaroo apply
/// tfplan` under GNU time, with its profile.
fn wallaroo_saved(env: &wallaroo_testenv::Env, dir: &Path) -> Measured {
    let out = Command::new(env!("CARGO_BIN_EXE_wallaroo"))
        .args(["plan", "--target", "image", "--out", "tfplan"])
        .current_dir(dir)
        .envs(env.exports())
        .env("NO_COLOR", "1")
        .output()
        .expect("wallaroo runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (measured, stdout) = profiled(env, dir, "saved", &["apply", "tfplan"]);
    assert!(stdout.contains("Apply complete!"), "{stdout}");
    measured
}

/// `wallaroo ARGS` in `dir` under GNU time, with its profile (`profile-{run}.json`) and its
/// own peak RSS read from it; and its stdout.
fn profiled(
    env: &wallaroo_testenv::Env,
    dir: &Path,
    run: &str,
    args: &[&str],
) -> (Measured, String) {
    let profile = dir.join(format!("profile-{run}.json"));
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%e %M"])
        .arg(env!("CARGO_BIN_EXE_wallaroo"))
        .args(args)
        .current_dir(dir)
        .envs(env.exports())
        .env("NO_COLOR", "1")
        .env("WALLAROO_PROFILE", &profile);
    let (mut measured, stdout) = timed_with_output(&mut cmd);
    measured.profile = std::fs::read_to_string(&profile)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    measured.own_rss_kb = measured
        .profile
        .as_ref()
        .and_then(|p| p["peak_rss_kb"].as_u64())
        .unwrap_or(0);
    (measured, stdout)
}

/// The phases of a wallaroo run's profile as table rows.
fn phase_rows(setting: &str, run: &str, m: &Measured) {
    let Some(profile) = &m.profile else {
        return;
    };
    for p in profile["phases"].as_array().into_iter().flatten() {
        let f = |k: &str| p[k].as_f64().unwrap_or(0.0);
        println!(
            "| {setting} | {run} | {} | {:.0} ms | {:.0} ms | {} | {} | {} |",
            p["name"].as_str().unwrap_or(""),
            f("start_ms"),
            f("wall_ms"),
            f("requests") as u64,
            human_bytes(f("bytes") as u64),
            if f("peak_rss_kb") > 0.0 {
                format!("{} MB", f("peak_rss_kb") as u64 >> 10)
            } else {
                String::new()
            },
        );
    }
    println!(
        "| {setting} | {run} | whole run (wallaroo's own peak: {} MB) | | {:.0} ms | | | {} MB |",
        profile["peak_rss_kb"].as_u64().unwrap_or(0) >> 10,
        profile["wall_ms"].as_f64().unwrap_or(0.0),
        m.rss_kb >> 10,
    );
}

fn human_bytes(b: u64) -> String {
    match b {
        0 => String::new(),
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.1} KiB", b as f64 / 1024.0),
    }
}
