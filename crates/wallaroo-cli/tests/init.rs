//! `wallaroo init` with no cluster: a starting spec from flags that `wallaroo validate` and
//! `wallaroo fmt --check` accept once its secret variables are set, and that is never
//! overwritten by accident.

use std::process::Command;

fn wallaroo(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wallaroo"))
        .args(args)
        .current_dir(dir)
        .env("WALLAROO_VAR_vendor_password", "v-secret")
        .env("WALLAROO_VAR_registry_password", "r-secret")
        .env("WALLAROO_VAR_admin_password", "a-secret")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn init_writes_a_valid_commented_spec_and_keeps_an_existing_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = wallaroo(
        dir.path(),
        &[
            "init",
            "--wallaroo-version",
            "2025.1.0-6290",
            "--domain",
            "ml.corp.example",
            "--registry",
            "harbor.corp.example:8443",
            "--kubernetes-distribution",
            "eks",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("wallaroo.hcl")).unwrap();
    assert!(
        text.contains("host      = \"harbor.corp.example:8443\""),
        "{text}"
    );
    assert!(text.contains("kubernetes_distribution = \"eks\""), "{text}");
    assert!(text.contains("# CHANGE ME"), "commented: {text}");
    let validate = wallaroo(dir.path(), &["validate"]);
    assert!(
        validate.status.success(),
        "{}{}",
        String::from_utf8_lossy(&validate.stdout),
        String::from_utf8_lossy(&validate.stderr)
    );
    let fmt = wallaroo(dir.path(), &["fmt", "--check"]);
    assert!(fmt.status.success(), "laid out as fmt lays it out");
    let again = wallaroo(dir.path(), &["init"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("wallaroo.hcl")).unwrap(),
        text,
        "kept"
    );
}
