//! `wallaroo validate` and `wallaroo fmt` through the real binary: the examples, the corpus
//! of bad specs, and secret redaction.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn wallaroo(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wallaroo"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("WALLAROO_CONFIG")
        .output()
        .expect("the wallaroo binary runs")
}

fn hcl_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "hcl"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_validates() {
    let examples = hcl_files(&repo().join("examples"));
    assert!(
        examples.len() >= 3,
        "examples/ holds quickstart, full and kots"
    );
    for file in examples {
        let out = wallaroo(&["validate", "-c", file.to_str().unwrap()], &repo());
        assert!(
            out.status.success(),
            "{} does not validate:\n{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn examples_are_formatted() {
    let out = wallaroo(&["fmt", "--check", "examples"], &repo());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Each file in tests/fixtures/bad starts with `# expect: LINE:COL message`; validating it
/// must exit 1 with a diagnostic at that place saying that, and never panic.
#[test]
fn every_bad_spec_gets_a_located_diagnostic() {
    let dir = repo().join("tests/fixtures/bad");
    let files = hcl_files(&dir);
    assert!(
        files.len() >= 64,
        "the corpus holds at least 64 bad specs, found {}",
        files.len()
    );
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect = text
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# expect: ")
            .expect("an expect line");
        let (loc, message) = expect.split_once(' ').unwrap();
        let name = file.file_name().unwrap().to_str().unwrap();
        let out = wallaroo(&["validate", "-c", name], &dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name} exits 1:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{name} panicked:\n{stderr}");
        let headline = format!("{name}:{loc}: ");
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&headline) && l.contains(message)),
            "{name}: no diagnostic `{headline}...{message}` in:\n{stderr}"
        );
        assert!(
            stderr.contains("help:"),
            "{name}: every diagnostic carries a help line:\n{stderr}"
        );
    }
}

#[test]
fn sensitive_values_never_show() {
    let dir = tempfile::tempdir().unwrap();
    let spec =
        std::fs::read_to_string(repo().join("tests/fixtures/bad/sensitive_value_in_enum.hcl"))
            .unwrap()
            .replace("= var.mode", "= \"none\"")
            .replace("\"wallaroo.example.com\"", "var.mode");
    std::fs::write(dir.path().join("wallaroo.hcl"), spec).unwrap();
    let out = wallaroo(&["validate", "--json"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["wallaroo"]["domain"], "(sensitive)");
    assert!(!stdout.contains("s3cret"), "the value leaked:\n{stdout}");

    let bad = repo().join("tests/fixtures/bad");
    let out = wallaroo(&["validate", "-c", "sensitive_value_in_enum.hcl"], &bad);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("s3cret-mode"));
}

#[test]
fn variables_come_from_var_flags_files_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let spec =
        std::fs::read_to_string(repo().join("tests/fixtures/bad/variable_without_value.hcl"))
            .unwrap();
    std::fs::write(dir.path().join("wallaroo.hcl"), spec).unwrap();
    std::fs::write(
        dir.path().join("prod.hcl"),
        "domain = \"from-file.example.com\"\n",
    )
    .unwrap();

    let out = wallaroo(
        &[
            "validate",
            "--json",
            "-var",
            "domain=from-flag.example.com",
            "--var-file",
            "prod.hcl",
        ],
        dir.path(),
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["wallaroo"]["domain"], "from-flag.example.com",
        "-var wins over a var file"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_wallaroo"))
        .args(["validate", "--json"])
        .current_dir(dir.path())
        .env("WALLAROO_VAR_domain", "from-env.example.com")
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["wallaroo"]["domain"], "from-env.example.com");

    std::fs::write(dir.path().join("bad.hcl"), "# vars\ndomian = \"x\"\n").unwrap();
    let out = wallaroo(&["validate", "--var-file", "bad.hcl"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("bad.hcl:2:1: variable `domian` is not declared"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `domain`?"), "{stderr}");
}

#[test]
fn a_missing_spec_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let out = wallaroo(&["validate"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("cannot read spec `wallaroo.hcl`"),
        "{stderr}"
    );
}

#[test]
fn help_lists_every_command() {
    let out = wallaroo(&["--help"], &repo());
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "plan",
        "apply",
        "destroy",
        "validate",
        "output",
        "state",
        "graph",
        "bundle",
        "fmt",
        "completions",
    ] {
        assert!(
            help.contains(&format!("  {cmd} ")),
            "--help lacks {cmd}:\n{help}"
        );
    }
    let out = wallaroo(&["completions", "bash"], &repo());
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("_wallaroo"));
}

#[test]
fn a_tls_key_of_another_certificate_is_refused_before_anything_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(repo().join("tests/fixtures/bad/tls_missing_file.hcl"))
        .unwrap()
        .replace("missing.crt", "wallaroo.crt")
        .replace("missing.key", "other.key");
    std::fs::write(dir.path().join("wallaroo.hcl"), spec).unwrap();
    std::fs::copy(
        repo().join("examples/tls/wallaroo.crt"),
        dir.path().join("wallaroo.crt"),
    )
    .unwrap();
    let made = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(dir.path().join("other.key"))
        .output()
        .unwrap();
    assert!(made.status.success());
    let out = wallaroo(&["validate"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("other.key")
            && stderr.contains("the key does not belong to the certificate"),
        "{stderr}"
    );
    assert!(!stderr.contains("PRIVATE KEY"), "no key material in errors");
}

/// `validate --json` on a spec with several problems: every one, with its place, as JSON on
/// stdout for an editor or CI, exit 1; the same problems `validate` prints for people.
#[test]
fn validate_json_lists_every_problem_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let spec =
        std::fs::read_to_string(repo().join("tests/fixtures/bad/registry_host_with_scheme.hcl"))
            .unwrap()
            .replace(
                "\"wallaroo.example.com\"",
                "\"https://wallaroo.example.com\"",
            )
            .replace("namespace = \"wallaroo\"", "namespace = \"Wallaroo Team\"");
    std::fs::write(dir.path().join("wallaroo.hcl"), &spec).unwrap();
    let out = wallaroo(&["validate", "--json"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], false);
    let problems = json["problems"].as_array().unwrap();
    let places: Vec<(u64, String)> = problems
        .iter()
        .map(|p| {
            assert_eq!(p["file"], "wallaroo.hcl");
            assert!(p["column"].as_u64().unwrap() > 0);
            assert!(p["help"].is_string(), "{p}");
            (
                p["line"].as_u64().unwrap(),
                p["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(places.len(), 3, "{places:?}");
    assert!(places[0].1.contains("`domain`"), "{places:?}");
    assert!(places[1].1.contains("`host`"), "{places:?}");
    assert!(places[2].1.contains("`namespace`"), "{places:?}");
    assert!(places.windows(2).all(|w| w[0].0 <= w[1].0), "in file order");
}

/// plan, apply, a saved plan's apply and destroy refuse an invalid spec with the same
/// located diagnostic, before reaching for any cluster or registry (none is configured here).
#[test]
fn every_entry_point_refuses_an_invalid_spec_first() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("tests/fixtures/bad/helm_timeout_words.hcl"),
        dir.path().join("wallaroo.hcl"),
    )
    .unwrap();
    std::fs::write(dir.path().join("saved.json"), "{}").unwrap();
    for args in [
        &["validate"][..],
        &["plan"],
        &["apply", "--auto-approve"],
        &["apply", "saved.json"],
        &["destroy", "--auto-approve"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_wallaroo"))
            .args(args)
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env_remove("WALLAROO_CONFIG")
            .env("KUBECONFIG", "/nonexistent")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("wallaroo.hcl:16:13: `timeout`: `20 minutes` is not a duration"),
            "{args:?}: {stderr}"
        );
    }
}
