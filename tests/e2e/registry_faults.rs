//! When the private registry fills up or its storage is damaged, with the damage made the way
//! an outage makes it: a distribution registry whose storage is a small tmpfs fills during a
//! mirror of the ordinary release; a repository's link file for a blob the release needs is
//! cut short and the registry restarted.

use std::path::Path;
use std::process::Output;
use std::time::Instant;

use serde_json::Value;
use wallaroo_testenv::env::{Implementation, ScratchRegistry};
use wallaroo_testenv::{Env, unique};

mod common;
use common::{repo, wallaroo_in};

fn run(env: &Env, dir: &Path, args: &[String]) -> Output {
    wallaroo_in(env, dir).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The spec mirroring preset `preset` (seeded under `path`) into `ns` of the scratch
/// registry, and the apply arguments that target its images only.
fn mirror(
    env: &Env,
    scratch: &ScratchRegistry,
    dir: &Path,
    preset: &str,
    path: &str,
    ns: &str,
) -> Vec<String> {
    let chart = repo().join("tests/charts/wallaroo-sample");
    let p = wallaroo_testenv::seed::preset(preset).unwrap();
    wallaroo_testenv::seed::seed(env, &p, &env.vendor, path, &chart).unwrap();
    let spec = env.mirror_spec_of(&env.vendor, path, p.version, &scratch.registry, ns);
    std::fs::write(dir.join("wallaroo.hcl"), spec).unwrap();
    let listed = run(env, dir, &["images".into(), "--json".into()]);
    assert!(listed.status.success(), "{}", text(&listed));
    let images: Vec<Value> = serde_json::from_slice(&listed.stdout).unwrap();
    let mut args: Vec<String> = ["apply", "--auto-approve"].map(String::from).to_vec();
    for image in &images {
        let target = image["target"].as_str().unwrap();
        let (_, reference) = target.split_once('/').unwrap();
        args.push("--target".into());
        args.push(format!("image[\"{reference}\"]"));
    }
    args
}

#[test]
fn a_registry_that_fills_is_named_once_out_of_space_and_the_next_apply_after_it_grows_converges() {
    for imp in Implementation::ALL {
        fills(imp);
    }
}

fn fills(imp: Implementation) {
    let env = wallaroo_testenv::shared();
    let id = unique("full");
    let mut scratch = env.scratch_registry_sized(imp, &id, 300 << 20).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args = mirror(env, &scratch, dir.path(), "release", "release", "wallaroo");

    let started = Instant::now();
    let out = run(env, dir.path(), &args);
    let took = started.elapsed();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(&format!(
            "registry {} is out of space",
            scratch.registry.address()
        )),
        "{all}"
    );
    // The registry's own words: its detail names the write that failed for want of space.
    assert!(
        all.contains("no space left on device") || all.contains("\"Err\":28"),
        "{all}"
    );
    let said: Vec<&str> = all
        .lines()
        .filter(|l| l.starts_with("Error: ") && l.contains("is out of space"))
        .collect();
    assert_eq!(said.len(), 1, "named once:\n{all}");
    // The plan said what the mirror sends at most; the summary says what is left.
    assert!(all.contains("Mirroring sends at most 1."), "{all}");
    assert!(all.contains("Left to mirror: "), "{all}");
    assert!(
        !all.contains("attempts)"),
        "no retries spent on a full registry:\n{all}"
    );
    eprintln!(
        "{}: the full registry's apply ended after {:.1} s: {}",
        imp.label(),
        took.as_secs_f64(),
        said[0]
    );

    // The lockfile stayed valid: it reads, and lists what landed (there is none when the disk
    // filled before the first image was whole).
    let listed = run(env, dir.path(), &["state".into(), "list".into()]);
    assert!(
        listed.status.success() || text(&listed).contains("nothing has been applied yet"),
        "{}",
        text(&listed)
    );

    // The volume grows; one apply finishes, and the next plan is empty.
    scratch.resize(4 << 30).unwrap();
    let mut out = run(env, dir.path(), &args);
    // distribution can keep a manifest whose bytes the full disk cut short, and no client can
    // rewrite stored bytes: apply names each such file, and the operator deletes it, as the
    // message says, before applying again.
    let said = text(&out);
    if out.status.code() == Some(1) && said.contains("back after pushing it") {
        let mut deleted = 0;
        for part in said.split('`') {
            if part.starts_with("docker/registry/v2/blobs/sha256/") && part.ends_with("/data") {
                deleted += std::fs::remove_file(scratch.storage.join(part)).is_ok() as usize;
            }
        }
        assert!(deleted > 0, "the damaged files are named:\n{said}");
        eprintln!(
            "{}: {deleted} damaged manifest(s) named and deleted",
            imp.label()
        );
        out = run(env, dir.path(), &args);
    }
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut plan = args.clone();
    plan[0] = "plan".into();
    plan[1] = "--detailed-exitcode".into();
    let out = run(env, dir.path(), &plan);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // go-containerregistry's registry keeps manifests in memory only: a restart forgets
    // them whatever happened before, so only distribution's storage is checked so.
    if imp != Implementation::Ggcr {
        scratch.restart(env).unwrap();
        let out = run(env, dir.path(), &plan);
        assert_eq!(
            out.status.code(),
            Some(0),
            "after a restart too, nothing is damaged:\n{}",
            text(&out)
        );
    }
    scratch.stop();
}

/// distribution (2.8 and v3) links each blob into a repository with a file of its own;
/// go-containerregistry's registry keeps no such record, so it has nothing to cut short.
#[test]
fn a_blob_whose_link_a_full_disk_cut_short_is_uploaded_again_and_said() {
    for imp in [Implementation::Distribution2, Implementation::Distribution3] {
        cut_link(imp);
    }
}

fn cut_link(imp: Implementation) {
    let env = wallaroo_testenv::shared();
    let id = unique("cutlink");
    let mut scratch = env.scratch_registry_of(imp, &id).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args = mirror(env, &scratch, dir.path(), "tiny", "wallaroo", "wallaroo");
    let out = run(env, dir.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // As a full disk leaves an image that did not land: its tag gone, and the link of one of
    // its layers in the repository emptied. distribution keeps what it knows of blobs in
    // memory, so the damage shows after a restart.
    let repo_dir = scratch
        .storage
        .join("docker/registry/v2/repositories/wallaroo/conductor-wallsvc");
    let layers: Vec<_> = std::fs::read_dir(repo_dir.join("_layers/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let cut = layers
        .iter()
        .max_by_key(|p| {
            let hex = p.file_name().unwrap().to_string_lossy().into_owned();
            std::fs::metadata(
                scratch
                    .storage
                    .join("docker/registry/v2/blobs/sha256")
                    .join(&hex[..2])
                    .join(&hex)
                    .join("data"),
            )
            .map(|m| m.len())
            .unwrap_or(0)
        })
        .unwrap();
    std::fs::write(cut.join("link"), b"").unwrap();
    std::fs::remove_dir_all(repo_dir.join("_manifests/tags")).unwrap();
    scratch.restart(env).unwrap();
    let hex = cut.file_name().unwrap().to_string_lossy().into_owned();

    let out = run(env, dir.path(), &args);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains(&format!("blob sha256:{hex} in wallaroo/conductor-wallsvc"))
            && all.contains("uploading the blob again"),
        "the repair is said:\n{all}"
    );
    assert_eq!(
        std::fs::read_to_string(cut.join("link")).unwrap(),
        format!("sha256:{hex}"),
        "the upload rewrote the link"
    );
    scratch.restart(env).unwrap();
    let mut plan = args.clone();
    plan[0] = "plan".into();
    plan[1] = "--detailed-exitcode".into();
    let out = run(env, dir.path(), &plan);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    scratch.stop();
}

/// A manifest whose stored bytes a full disk cut short: every lookup answers 500, the plan
/// says the record is unreadable, and a push does not rewrite stored bytes, so apply reads it
/// back and names the file to delete and the collector to run.
#[test]
fn a_manifest_whose_stored_bytes_are_cut_short_is_named_with_what_to_run() {
    let env = wallaroo_testenv::shared();
    let id = unique("cutmanifest");
    let mut scratch = env
        .scratch_registry_of(Implementation::Distribution2, &id)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args = mirror(env, &scratch, dir.path(), "tiny", "wallaroo", "wallaroo");
    let out = run(env, dir.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let v2 = scratch.storage.join("docker/registry/v2");
    let tags = v2.join("repositories/wallaroo/keycloak/_manifests/tags");
    let tag = std::fs::read_dir(&tags)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let digest = std::fs::read_to_string(tag.join("current/link")).unwrap();
    let hex = digest.trim().trim_start_matches("sha256:").to_string();
    let data = v2
        .join("blobs/sha256")
        .join(&hex[..2])
        .join(&hex)
        .join("data");
    std::fs::write(&data, b"").unwrap();
    scratch.restart(env).unwrap();

    let mut plan = args.clone();
    plan[0] = "plan".into();
    plan[1] = "--detailed-exitcode".into();
    let out = run(env, dir.path(), &plan);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("unreadable: the registry answered 500"),
        "{all}"
    );

    let out = run(env, dir.path(), &args);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("cannot read wallaroo/keycloak:")
            && all.contains(&format!("blobs/sha256/{}/{hex}/data", &hex[..2]))
            && all.contains("garbage-collect"),
        "{all}"
    );
}
