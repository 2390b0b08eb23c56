//! Long work an operator can watch: `wallaroo apply` of the `release` preset (41 images,
//! about 1.5 GB) into an empty registry, through the real binary with no TTY, prints
//! periodic byte lines and a summary of what moved; with `--json` every line validates
//! against `schemas/events.schema.json` and the bytes it reports equal what the registry
//! stored; a Ctrl-C in the middle ends the stream with an interrupted summary.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use wallaroo_testenv::env::{Env, Implementation, ScratchRegistry};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn command(env: &Env, dir: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wallaroo"));
    cmd.args(args)
        .current_dir(dir)
        .envs(env.exports())
        .env("NO_COLOR", "1")
        .env("WALLAROO_PROGRESS_INTERVAL", "0.5");
    cmd
}

fn run(env: &Env, dir: &Path, args: &[String]) -> Output {
    command(env, dir, args).output().unwrap()
}

/// What a run interrupted by [`interrupt_once_bytes_move`] left: its stdout (JSON lines),
/// exit code and stderr.
struct Interrupted {
    stdout: String,
    code: Option<i32>,
    stderr: String,
}

/// Runs wallaroo with `args` (`--json` among them) and sends it SIGINT once a `step_progress`
/// event shows bytes moved, calling `before` just then; reads the run to its end.
fn interrupt_once_bytes_move(
    env: &Env,
    dir: &Path,
    args: &[String],
    mut before: impl FnMut(),
) -> Interrupted {
    let mut child = command(env, dir, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut sent = false;
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        let event: Value = serde_json::from_str(&line).unwrap();
        if !sent && event["type"] == "step_progress" && event["bytes"]["moved"].as_u64() > Some(0) {
            before();
            let kill = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(kill.success());
            sent = true;
        }
        lines.push(std::mem::take(&mut line));
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(sent, "no bytes moved before the end:\n{}", lines.concat());
    Interrupted {
        stdout: lines.concat(),
        code: status.code(),
        stderr,
    }
}

/// The release preset in the vendor registry, a spec that mirrors it into `scratch`, and
/// the apply arguments that target every image of it.
fn setup(env: &Env, scratch: &ScratchRegistry, dir: &Path, ns: &str) -> Vec<String> {
    let chart = repo().join("tests/charts/wallaroo-sample");
    let preset = wallaroo_testenv::seed::preset("release").unwrap();
    wallaroo_testenv::seed::seed(env, &preset, &env.vendor, "release", &chart).unwrap();
    let spec = env
        .mirror_spec("release", ns)
        .replace(&env.private.address(), &scratch.registry.address())
        .replace(
            &format!("username  = \"{}\"", env.private.username),
            &format!("username  = \"{}\"", scratch.registry.username),
        )
        .replace(
            &format!("password  = \"{}\"", env.private.password),
            &format!("password  = \"{}\"", scratch.registry.password),
        );
    std::fs::write(dir.join("wallaroo.hcl"), spec).unwrap();
    let listed = run(env, dir, &["images".into(), "--json".into()]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let images: Vec<Value> = serde_json::from_slice(&listed.stdout).unwrap();
    let mut args: Vec<String> = ["apply", "--auto-approve"].map(String::from).to_vec();
    for image in &images {
        let target = image["target"].as_str().unwrap();
        let (_, reference) = target.split_once('/').unwrap();
        args.push("--target".into());
        args.push(format!("image[\"{reference}\"]"));
    }
    assert!(images.len() > 30, "{images:?}");
    args
}

/// Layer and config bytes the registry stores: its blob files, less the manifests (which
/// distribution keeps as blobs too, and which are not counted as transfer bytes).
fn layer_bytes(scratch: &ScratchRegistry) -> u64 {
    fn walk(p: &Path, out: &mut u64) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.file_name().is_some_and(|n| n == "data") {
                let len = e.metadata().unwrap().len();
                let manifest = len < 1 << 20
                    && serde_json::from_slice::<Value>(&std::fs::read(&path).unwrap())
                        .is_ok_and(|v| v.get("schemaVersion").is_some());
                if !manifest {
                    *out += len;
                }
            }
        }
    }
    let mut total = 0;
    walk(
        &scratch.storage.join("docker/registry/v2/blobs"),
        &mut total,
    );
    total
}

fn schema() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("schemas/events.schema.json")).unwrap(),
    )
    .unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// Every line of `stdout` as a JSON event valid against the schema.
fn events(stdout: &str) -> Vec<Value> {
    let schema = schema();
    stdout
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not one JSON object: {e}: {line}"));
            let errors: Vec<String> = schema.iter_errors(&event).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{line}\n{errors:#?}");
            event
        })
        .collect()
}

#[test]
fn a_non_tty_apply_prints_byte_lines_and_the_json_stream_counts_what_the_registry_received() {
    let env = wallaroo_testenv::shared();
    let scratch = env
        .scratch_registry_of(Implementation::Distribution2, "progress")
        .unwrap();

    // Text, no TTY: step lines, plain progress lines with figures, and the summary.
    let dir = tempfile::tempdir().unwrap();
    let args = setup(env, &scratch, dir.path(), "text");
    let out = run(env, dir.path(), &args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("Progress: "))
        .collect();
    assert!(lines.len() >= 2, "periodic byte lines:\n{stderr}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" of ") && l.contains("B/s")),
        "bytes of a total and a rate:\n{stderr}"
    );
    assert!(!stderr.contains('\r'), "no carriage-return animation");
    assert!(
        stderr.contains("Creation complete after") && stderr.contains(" sent, "),
        "{stderr}"
    );
    assert!(stdout.contains("Apply complete!"), "{stdout}");
    assert!(
        stdout.contains("Steps: 41 done, 0 failed, 0 not run"),
        "{stdout}"
    );
    assert!(stdout.contains("Mirrored 41 images: "), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "Lockfile: {}",
            dir.path().join("wallaroo.lock").display()
        )),
        "{stdout}"
    );

    // JSON, into a second repository namespace of a second empty registry.
    let scratch2 = env
        .scratch_registry_of(Implementation::Distribution2, "progress-json")
        .unwrap();
    scratch.stop();
    let dir = tempfile::tempdir().unwrap();
    let mut args = setup(env, &scratch2, dir.path(), "json");
    args.push("--json".into());
    let out = run(env, dir.path(), &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = events(&stdout);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"version"));
    assert_eq!(kinds.get(1), Some(&"plan"));
    assert_eq!(kinds.last(), Some(&"summary"));
    assert_eq!(kinds.iter().filter(|k| **k == "step_started").count(), 41);
    assert_eq!(kinds.iter().filter(|k| **k == "step_finished").count(), 41);
    assert!(
        kinds.iter().filter(|k| **k == "step_progress").count() >= 41,
        "a progress event per image at least"
    );
    let summary = events.last().unwrap();
    assert_eq!(summary["outcome"], "complete");
    assert_eq!(summary["steps"]["applied"], 41);
    assert_eq!(summary["mirror"]["images"], 41);
    let received = layer_bytes(&scratch2);
    assert_eq!(
        summary["bytes"]["moved"].as_u64().unwrap(),
        received,
        "the bytes the stream says moved are the bytes the registry stored"
    );
    assert!(received > 1 << 30, "{received}");
    // Each image's final figures add up to the summary; every image's total is accounted for.
    let finished: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "step_finished")
        .collect();
    let sum = |k: &str| -> u64 {
        finished
            .iter()
            .map(|e| e["bytes"][k].as_u64().unwrap())
            .sum()
    };
    assert_eq!(sum("moved"), received);
    assert_eq!(sum("moved") + sum("present"), sum("total"));
    assert!(
        sum("present") > 0,
        "blobs shared between images are mounted, counted as present"
    );
    // Progress only grows for one step.
    let mut last = std::collections::BTreeMap::new();
    for e in events.iter().filter(|e| e["type"] == "step_progress") {
        let done = e["bytes"]["moved"].as_u64().unwrap() + e["bytes"]["present"].as_u64().unwrap();
        let before = last.insert(e["address"].as_str().unwrap().to_string(), done);
        assert!(before.is_none_or(|b| b <= done), "{e}");
    }

    // destroy --json: the same stream, the images' tags deleted, the lockfile emptied.
    let mut destroy: Vec<String> = args
        .iter()
        .map(|a| {
            if a == "apply" {
                "destroy".into()
            } else {
                a.clone()
            }
        })
        .collect();
    destroy.push("--include-images".into());
    let out = run(env, dir.path(), &destroy);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let destroyed = self::events(&stdout);
    assert_eq!(destroyed[0]["command"], "destroy");
    assert_eq!(destroyed[1]["mode"], "destroy");
    let summary = destroyed.last().unwrap();
    assert_eq!(summary["command"], "destroy");
    assert_eq!(summary["outcome"], "complete", "{summary}");
    assert_eq!(summary["resources"]["destroyed"], 41, "{summary}");
    let lockfile: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("wallaroo.lock")).unwrap())
            .unwrap();
    assert_eq!(lockfile["resources"].as_object().map(|r| r.len()), Some(0));
    scratch2.stop();
}

#[test]
fn a_ctrl_c_in_the_middle_ends_the_stream_with_an_interrupted_summary() {
    let env = wallaroo_testenv::shared();
    let scratch = env
        .scratch_registry_of(Implementation::Distribution2, "interrupt")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut args = setup(env, &scratch, dir.path(), "interrupted");
    args.extend(["--json", "--parallelism", "2"].map(String::from));
    let run = interrupt_once_bytes_move(env, dir.path(), &args, || {});
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("Interrupt received"), "{}", run.stderr);
    let events = events(&run.stdout);
    let summary = events.last().unwrap();
    assert_eq!(summary["type"], "summary", "{}", run.stdout);
    assert_eq!(summary["outcome"], "interrupted");
    let skipped = summary["steps"]["skipped"].as_u64().unwrap();
    assert!(skipped > 0, "{summary}");
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "step_skipped" && e["reason"] == "the apply was interrupted")
            .count() as u64,
        skipped
    );
    // The steps that ran finished whole and are in the lockfile; the rest are not.
    let lockfile: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("wallaroo.lock")).unwrap())
            .unwrap();
    let recorded = lockfile["resources"].as_object().unwrap().len() as u64;
    assert_eq!(recorded, summary["steps"]["applied"].as_u64().unwrap());
    assert_eq!(
        summary["bytes"]["moved"].as_u64().unwrap(),
        layer_bytes(&scratch)
    );
    scratch.stop();
}

#[test]
fn a_ctrl_c_during_bundle_create_leaves_no_file_and_says_interrupted() {
    let env = wallaroo_testenv::shared();
    let scratch = env
        .scratch_registry_of(Implementation::Distribution2, "bundlestop")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    setup(env, &scratch, dir.path(), "bundlestop");
    let args = ["bundle", "create", "--out", "release.tar", "--json"].map(String::from);
    let run = interrupt_once_bytes_move(env, dir.path(), &args, || {
        // The archive is being written: its place on the disk is claimed whole.
        assert!(dir.path().join("release.tar.partial").exists());
    });
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("Interrupt received"), "{}", run.stderr);
    let events = events(&run.stdout);
    let summary = events.last().unwrap();
    assert_eq!(summary["type"], "summary", "{}", run.stdout);
    assert_eq!(summary["outcome"], "interrupted");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("release.tar"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    scratch.stop();
}

#[test]
fn a_blob_an_earlier_run_mirrored_is_mounted_not_sent_again() {
    let env = wallaroo_testenv::shared();
    let scratch = env
        .scratch_registry_of(Implementation::Distribution2, "earlier")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    setup(env, &scratch, dir.path(), "early");
    // conductor-wallsvc and standalone-mini share their two base layers (112 MiB) and
    // nothing else.
    let apply = |image: &str| -> Value {
        let args: Vec<String> = [
            "apply".to_string(),
            "--auto-approve".into(),
            "--json".into(),
            "--target".into(),
            format!("image[\"early/{image}:2025.1.0-6290\"]"),
        ]
        .to_vec();
        let out = run(env, dir.path(), &args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        events(&stdout).pop().unwrap()
    };
    let first = apply("conductor-wallsvc");
    assert_eq!(first["outcome"], "complete", "{first}");

    let blobs = wallaroo_testenv::seed::image_blobs(
        env,
        &env.vendor,
        "release/standalone-mini",
        "2025.1.0-6290",
    )
    .unwrap();
    let new: u64 = blobs
        .iter()
        .filter(|(d, _)| !scratch.stores(d))
        .map(|(_, size)| size)
        .sum();
    let shared: u64 = blobs
        .iter()
        .filter(|(d, _)| scratch.stores(d))
        .map(|(_, size)| size)
        .sum();
    assert!(shared > 100 << 20, "the base layers are there: {shared}");

    // A second run, with only the lockfile to say where the base layers are.
    let second = apply("standalone-mini");
    assert_eq!(second["outcome"], "complete", "{second}");
    assert_eq!(
        second["bytes"]["moved"].as_u64().unwrap(),
        new,
        "only the blobs the registry did not hold are sent: {second}"
    );
    assert_eq!(second["bytes"]["present"].as_u64().unwrap(), shared);
    assert_eq!(second["mirror"]["blobs_mounted"], 2, "{second}");
    scratch.stop();
}
