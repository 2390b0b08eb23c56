//! `wallaroo lsp` with a real editor's LSP client: Debian's Neovim, headless, opens an example
//! spec with a mistake, gets the diagnostic `wallaroo validate` gives at its line and column,
//! completes an attribute, hovers, and formats the buffer through the server.

use std::process::Command;

use serde_json::Value;

#[test]
fn neovim_gets_diagnostics_completion_hover_and_formatting() {
    let nvim = wallaroo_testenv::program("nvim").expect("Debian's neovim");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tls")).unwrap();
    for f in ["tls/wallaroo.crt", "tls/wallaroo.key"] {
        std::fs::copy(repo.join("examples").join(f), dir.path().join(f)).unwrap();
    }
    // The quickstart with a misspelt attribute and a line left unformatted.
    let quickstart = std::fs::read_to_string(repo.join("examples/quickstart.hcl")).unwrap();
    let spec = quickstart
        .replace(
            "  ingress_mode = \"internal\"",
            "  ingress_mod = \"internal\"",
        )
        .replace("  role      = \"admin\"", "  role=\"admin\"");
    let file = dir.path().join("wallaroo.hcl");
    std::fs::write(&file, &spec).unwrap();
    let lines: Vec<&str> = spec.lines().collect();
    let mistake = lines
        .iter()
        .position(|l| l.contains("ingress_mod ="))
        .unwrap();
    // Completion and hover where `host` is typed in `registry "private"`.
    let typing = lines
        .iter()
        .position(|l| l.starts_with("  host      = var.private_registry"))
        .unwrap();

    let out = dir.path().join("seen.json");
    let status = Command::new(nvim)
        .args(["--headless", "-u", "NONE", "-i", "NONE", "-c"])
        .arg(format!(
            "luafile {}",
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/lsp/nvim.lua")
                .display()
        ))
        .env("WALLAROO_BIN", env!("CARGO_BIN_EXE_wallaroo"))
        .env("SPEC_FILE", &file)
        .env("LSP_OUT", &out)
        .env("COMPLETE_LINE", typing.to_string())
        .env("COMPLETE_CHAR", "4")
        .status()
        .unwrap();
    assert!(status.success());
    let seen: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();

    let diagnostics = seen["diagnostics"].as_array().unwrap();
    let d = diagnostics
        .iter()
        .find(|d| d["message"].as_str().unwrap().contains("ingress_mod"))
        .unwrap_or_else(|| panic!("{seen}"));
    assert_eq!(d["line"], mistake as u64, "{d}");
    assert_eq!(d["col"], 2, "{d}");
    assert!(d["message"].as_str().unwrap().contains("help:"), "{d}");
    // The same problem, at the same place, as `wallaroo validate` says it.
    let validate = Command::new(env!("CARGO_BIN_EXE_wallaroo"))
        .args(["validate", "--json", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    let problems: Value = serde_json::from_slice(&validate.stdout).unwrap();
    assert!(
        problems["problems"].as_array().unwrap().iter().any(|p| {
            p["line"] == (mistake + 1) as u64
                && p["column"] == 3
                && p["message"].as_str().unwrap().contains("ingress_mod")
        }),
        "{problems}"
    );

    assert_eq!(seen["completion"], serde_json::json!(["host"]), "{seen}");
    assert!(
        seen["hover"].as_str().unwrap().contains("REGISTRY_HOST"),
        "{seen}"
    );
    let formatted = seen["formatted"].as_str().unwrap();
    assert!(formatted.contains("  role      = \"admin\""), "{formatted}");
}
