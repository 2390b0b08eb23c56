//! Bundles at disk speed: `bundle create` (every image of a preset read from the vendor
//! registry over TLS and written into one OCI layout tar) and `bundle verify` (every blob of
//! it read and hashed again), each against `cat` of the same bytes on the same disk: for
//! create, `cat` of the vendor registry's blob files into a file beside the bundle; for verify,
//! `cat` of the bundle to /dev/null. A third row runs create with the bundle just written as
//! its source: create's own pipeline with no registry sharing the machine's cores. The page
//! cache is dropped before each measurement when
//! the machine allows it (root, a writable /proc/sys/vm/drop_caches), so both sides read from
//! the disk; the table says which.
//!
//! Two more rows split the same bundle into parts (`--split`, a quarter of the bundle each,
//! at least 64 MiB): create writing the parts (and checksumming each for the index) and verify
//! reading them, beside the one-file figures (goal: within 5%).
//!
//! Run: `cargo bench -p wallaroo-oci --bench bundle` (the `release` preset);
//! `WALLAROO_BENCH_PRESET=large` for real size (about 11 GB; the disk must hold it twice
//! beside the vendor registry). The table shows medians of `WALLAROO_BENCH_RUNS` rounds (3).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wallaroo_oci::bundle::{Bundle, BundleInput, CreateOptions, create, create_with, verify};
use wallaroo_oci::{Credentials, ImageSource, Registry};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    wallaroo_testenv::install_crypto_provider();
    let env = wallaroo_testenv::shared();
    let preset_name = std::env::var("WALLAROO_BENCH_PRESET").unwrap_or_else(|_| "release".into());
    let preset = wallaroo_testenv::seed::preset(&preset_name)
        .unwrap_or_else(|| panic!("no preset named {preset_name}"));
    let path = wallaroo_testenv::seed::default_path(&preset);
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/charts/wallaroo-sample");
    wallaroo_testenv::seed::seed(env, &preset, &env.vendor, path, &chart).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let vendor: Arc<dyn ImageSource> = Arc::new(
        Registry::new(
            &env.vendor.address(),
            Some(Credentials {
                username: env.vendor.username.clone(),
                password: env.vendor.password.clone(),
            }),
            Some(&env.ca_file),
        )
        .unwrap(),
    );
    let inputs: Vec<BundleInput> = rt.block_on(async {
        let mut out = Vec::new();
        for image in &preset.images {
            let repo = format!("{path}/{}", image.name);
            let digest = vendor
                .manifest(&repo, image.tag)
                .await
                .unwrap()
                .unwrap()
                .digest;
            out.push(BundleInput {
                source: format!("{}/{repo}:{}", env.vendor.address(), image.tag),
                origin: "bench".into(),
                digest,
                from: vendor.clone(),
            });
        }
        out
    });

    // Beside the test environment, on the disk the registries use. Each round measures
    // create, cat of the blob files, verify and cat of the bundle, one after another, so that
    // the disk's moods fall on both sides; the table shows medians.
    let rounds: usize = std::env::var("WALLAROO_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir_in(&env.run_dir).unwrap();
    let file = dir.path().join("release.tar");
    let mut cold = true;
    let (mut create_t, mut cat_t, mut cat_sync_t, mut verify_t, mut cat_verify_t) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut report, mut size, mut blob_bytes) = (Default::default(), 0, 0);
    let mut cpu = vec![];
    let mut local_t = vec![];
    let (mut split_create_t, mut split_verify_t, mut parts_n) = (vec![], vec![], 0);
    for round in 0..rounds {
        let _ = std::fs::remove_file(&file);
        cold &= drop_caches();
        let (own, served) = (own_cpu(), cpu_of(env.vendor.proc.pid));
        let t = Instant::now();
        report = rt
            .block_on(create(&file, preset.version, &inputs, &BTreeSet::new()))
            .unwrap();
        create_t.push(t.elapsed());
        cpu.push((
            t.elapsed(),
            own_cpu() - own,
            cpu_of(env.vendor.proc.pid) - served,
        ));
        size = std::fs::metadata(&file).unwrap().len();

        // The same blob bytes, as files of the vendor registry's storage, through cat; then
        // sync of that file (create ends with an fsync of the bundle; cat does not).
        let bundle = Bundle::open(&file).unwrap();
        let blobs: Vec<PathBuf> = bundle
            .manifest
            .blobs
            .keys()
            .map(|d| blob_file(&env.run_dir, d))
            .filter(|p| p.exists())
            .collect();
        blob_bytes = blobs
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        cold &= drop_caches();
        let copy = dir.path().join("cat.out");
        let cat = timed(
            Command::new("sh")
                .arg("-c")
                .arg("cat \"$@\" > \"$0\"")
                .arg(&copy)
                .args(&blobs),
        );
        let sync = timed(Command::new("sync").arg(&copy));
        cat_t.push(cat);
        cat_sync_t.push(cat + sync);
        std::fs::remove_file(&copy).unwrap();

        // The same create with the bundle just written as its source: create's own pipeline
        // (lay out, read, hash, write, fsync) with no registry and no TLS on the machine's
        // cores, reading and writing the one disk as cat does.
        let local: Arc<dyn ImageSource> = Arc::new(Bundle::open(&file).unwrap());
        let again: Vec<BundleInput> = inputs
            .iter()
            .map(|i| BundleInput {
                source: i.source.clone(),
                origin: i.origin.clone(),
                digest: i.digest.clone(),
                from: local.clone(),
            })
            .collect();
        let rebundle = dir.path().join("again.tar");
        cold &= drop_caches();
        let t = Instant::now();
        rt.block_on(create(&rebundle, preset.version, &again, &BTreeSet::new()))
            .unwrap();
        local_t.push(t.elapsed());
        std::fs::remove_file(&rebundle).unwrap();

        cold &= drop_caches();
        let t = Instant::now();
        let checked = verify(&file).unwrap();
        verify_t.push(t.elapsed());
        assert!(checked.problems.is_empty(), "{:?}", checked.problems);
        cold &= drop_caches();
        cat_verify_t.push(timed(
            Command::new("sh")
                .arg("-c")
                .arg(format!("cat '{}' > /dev/null", file.display())),
        ));
        // The same bundle in parts: create (with each part hashed for the index), verify.
        let split = (size / 4).max(64 << 20);
        let parts_file = dir.path().join("parts.tar");
        cold &= drop_caches();
        let t = Instant::now();
        let made = rt
            .block_on(create_with(
                &parts_file,
                preset.version,
                &inputs,
                &BTreeSet::new(),
                &CreateOptions {
                    split: Some(split),
                    ..CreateOptions::default()
                },
            ))
            .unwrap();
        split_create_t.push(t.elapsed());
        parts_n = made.files.len() - 1;
        cold &= drop_caches();
        let t = Instant::now();
        let checked = verify(&parts_file).unwrap();
        split_verify_t.push(t.elapsed());
        assert!(checked.problems.is_empty(), "{:?}", checked.problems);
        for f in &made.files {
            let _ = std::fs::remove_file(f);
        }
        eprintln!(
            "round {}/{rounds}: create {:.2} s, cat {:.2} s (+ sync {:.2} s), create from the bundle {:.2} s, verify {:.2} s, cat {:.2} s",
            round + 1,
            create_t[round].as_secs_f64(),
            cat.as_secs_f64(),
            sync.as_secs_f64(),
            local_t[round].as_secs_f64(),
            verify_t[round].as_secs_f64(),
            cat_verify_t[round].as_secs_f64()
        );
    }

    let rate = |bytes: u64, d: Duration| bytes as f64 / d.as_secs_f64() / 1e6;
    println!(
        "\nBundle benchmark: preset `{preset_name}` ({} images, {} blobs, {} MB in the bundle); medians of {rounds}; page cache {}\n",
        report.images,
        report.blobs,
        size / 1_000_000,
        if cold {
            "dropped before each run"
        } else {
            "not dropped (not allowed here): reads may come from memory"
        }
    );
    println!("| operation | wallaroo | cat of the same bytes | wallaroo / cat |");
    println!("|---|---|---|---|");
    let (create_wall, cat, cat_sync) = (median(create_t), median(cat_t), median(cat_sync_t));
    let create_rate = rate(size, create_wall);
    let cat_rate = rate(blob_bytes, cat);
    let cat_sync_rate = rate(blob_bytes, cat_sync);
    println!(
        "| bundle create (registry -> tar, fsync) | {:.2} s, {create_rate:.0} MB/s | {:.2} s, {cat_rate:.0} MB/s (blob files -> file); {:.2} s, {cat_sync_rate:.0} MB/s with its sync | {:.0}%; {:.0}% of cat with sync |",
        create_wall.as_secs_f64(),
        cat.as_secs_f64(),
        cat_sync.as_secs_f64(),
        create_rate * 100.0 / cat_rate,
        create_rate * 100.0 / cat_sync_rate
    );
    let local = median(local_t);
    let local_rate = rate(size, local);
    println!(
        "| bundle create from a bundle (same disk, no registry) | {:.2} s, {local_rate:.0} MB/s | as above | {:.0}%; {:.0}% of cat with sync |",
        local.as_secs_f64(),
        local_rate * 100.0 / cat_rate,
        local_rate * 100.0 / cat_sync_rate
    );
    // Where create's time goes: the machine's cores are shared with the vendor registry,
    // which reads the same disk and encrypts what it serves.
    cpu.sort();
    let (wall, own, served) = cpu[cpu.len() / 2];
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let create_cpu = format!(
        "bundle create's CPU (its median round): wallaroo {:.1} s, the vendor registry {:.1} s, of {:.1} s ({cores} cores x {:.1} s)",
        own.as_secs_f64(),
        served.as_secs_f64(),
        wall.as_secs_f64() * cores as f64,
        wall.as_secs_f64()
    );
    let (verify_wall, cat_verify) = (median(verify_t), median(cat_verify_t));
    let verify_rate = rate(size, verify_wall);
    let cat_rate = rate(size, cat_verify);
    println!(
        "| bundle verify (read and hash) | {:.2} s, {verify_rate:.0} MB/s | {:.2} s, {cat_rate:.0} MB/s (tar -> /dev/null) | {:.0}% |",
        verify_wall.as_secs_f64(),
        cat_verify.as_secs_f64(),
        verify_rate * 100.0 / cat_rate
    );
    let (split_create, split_verify) = (median(split_create_t), median(split_verify_t));
    println!(
        "| bundle create --split ({parts_n} parts, each checksummed for the index) | {:.2} s, {:.0} MB/s | one file: {:.2} s | {:.0}% of one file's time |",
        split_create.as_secs_f64(),
        rate(size, split_create),
        create_wall.as_secs_f64(),
        split_create.as_secs_f64() * 100.0 / create_wall.as_secs_f64()
    );
    println!(
        "| bundle verify of the parts (every file hashed, every part checksummed) | {:.2} s, {:.0} MB/s | one file: {:.2} s | {:.0}% of one file's time |",
        split_verify.as_secs_f64(),
        rate(size, split_verify),
        verify_wall.as_secs_f64(),
        split_verify.as_secs_f64() * 100.0 / verify_wall.as_secs_f64()
    );
    println!("\n{create_cpu}");
}

/// CPU time (user and system) this process has used.
fn own_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time (user and system) process `pid` has used, from /proc.
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf only reads a constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// Where distribution keeps blob `digest` of the vendor registry.
fn blob_file(run_dir: &Path, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    run_dir
        .join("vendor-registry/storage/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// Writes back and drops the page cache; whether the machine allowed it.
fn drop_caches() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

fn timed(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let status = cmd.status().unwrap();
    assert!(status.success(), "{cmd:?}");
    t.elapsed()
}
