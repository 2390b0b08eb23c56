//! Bundles at disk speed: `bundle create` (every image of a preset read from the vendor
//! registry over TLS and written into one OCI layout tar) and `bundle verify` (every blob of
//! it read and hashed again), each against `cat` of the same bytes on the same disk: for
//! create, `cat` of the vendor registry's blob files into a file beside the bundle; for verify,
//! `cat` of the bundle to /dev/null. The page cache is dropped before each measurement when
//! the machine allows it (root, a writable /proc/sys/vm/drop_caches), so both sides read from
//! the disk; the table says which.
//!
//! Run: `cargo bench -p wallaroo-oci --bench bundle` (the `release` preset);
//! `WALLAROO_BENCH_PRESET=large` for real size (about 11 GB; the disk must hold it twice
//! beside the vendor registry).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wallaroo_oci::bundle::{Bundle, BundleInput, create, verify};
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

    // Beside the test environment, on the disk the registries use.
    let dir = tempfile::tempdir_in(&env.run_dir).unwrap();
    let file = dir.path().join("release.tar");
    let cold = drop_caches();
    let t = Instant::now();
    let report = rt
        .block_on(create(&file, preset.version, &inputs, &BTreeSet::new()))
        .unwrap();
    let create_wall = t.elapsed();
    let size = std::fs::metadata(&file).unwrap().len();

    // The same blob bytes, as files of the vendor registry's storage, through cat.
    let bundle = Bundle::open(&file).unwrap();
    let blobs: Vec<PathBuf> = bundle
        .manifest
        .blobs
        .keys()
        .map(|d| blob_file(&env.run_dir, d))
        .filter(|p| p.exists())
        .collect();
    let blob_bytes: u64 = blobs
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    drop_caches();
    let copy = dir.path().join("cat.out");
    let cat_create = timed(
        Command::new("sh")
            .arg("-c")
            .arg("cat \"$@\" > \"$0\"")
            .arg(&copy)
            .args(&blobs),
    );
    std::fs::remove_file(&copy).unwrap();

    drop_caches();
    let t = Instant::now();
    let checked = verify(&file).unwrap();
    let verify_wall = t.elapsed();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    drop_caches();
    let cat_verify = timed(
        Command::new("sh")
            .arg("-c")
            .arg(format!("cat '{}' > /dev/null", file.display())),
    );

    let rate = |bytes: u64, d: Duration| bytes as f64 / d.as_secs_f64() / 1e6;
    println!(
        "\nBundle benchmark: preset `{preset_name}` ({} images, {} blobs, {} MB in the bundle); page cache {}\n",
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
    let create_rate = rate(size, create_wall);
    let cat_rate = rate(blob_bytes, cat_create);
    println!(
        "| bundle create (registry -> tar) | {:.2} s, {create_rate:.0} MB/s | {:.2} s, {cat_rate:.0} MB/s (blob files -> file) | {:.0}% |",
        create_wall.as_secs_f64(),
        cat_create.as_secs_f64(),
        create_rate * 100.0 / cat_rate
    );
    let verify_rate = rate(size, verify_wall);
    let cat_rate = rate(size, cat_verify);
    println!(
        "| bundle verify (read and hash) | {:.2} s, {verify_rate:.0} MB/s | {:.2} s, {cat_rate:.0} MB/s (tar -> /dev/null) | {:.0}% |",
        verify_wall.as_secs_f64(),
        cat_verify.as_secs_f64(),
        verify_rate * 100.0 / cat_rate
    );
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
