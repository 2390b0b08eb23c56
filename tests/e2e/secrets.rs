//! Secrets never shown: a marker secret, new each run, written into every place the spec
//! language lets a secret go (sensitive variables in `helm { values }` maps, nested lists and
//! string templates, in nodepool labels and private PyPI's password; `sensitive(env(...))` and
//! `sensitive(file(...))`), then a whole cycle through the binary: validate, plan in text,
//! JSON and Markdown, a saved plan applied, outputs, drift, destroy, with the lockfile kept in
//! the cluster (`state { backend = "kubernetes" }`). Every byte any command printed, the saved
//! plan, the state Secret, every file of a support bundle and the command line of every
//! process seen during the apply are searched: zero hits. helm still gets the real values (the release's values hold them).

use std::process::{Command, Output};

use serde_json::json;
use wallaroo_testenv::{shared, unique};

mod common;

struct Case {
    env: &'static wallaroo_testenv::Env,
    dir: tempfile::TempDir,
    markers: Vec<String>,
    /// Everything printed so far, every file read back: searched at the end.
    seen: std::cell::RefCell<Vec<(String, String)>>,
}

impl Case {
    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_wallaroo"))
            .args(args)
            .current_dir(self.dir.path())
            .envs(self.env.exports())
            .env("WALLAROO_VAR_admin_password", &self.markers[0])
            .env("WALLAROO_VAR_marker", &self.markers[1])
            .env("WALLAROO_E2E_FROM_ENV", &self.markers[2])
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let what = format!("wallaroo {}", args.join(" "));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.seen.borrow_mut().push((what, text));
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = self.seen.borrow().last().unwrap().1.clone();
        assert!(out.status.success(), "wallaroo {args:?}:\n{text}");
        text
    }

    /// Runs wallaroo and reads `/proc/*/cmdline` of every process until it ends: each
    /// command line seen (arguments joined by spaces).
    fn watching_cmdlines(&self, args: &[&str]) -> (Output, std::collections::BTreeSet<String>) {
        let child = Command::new(env!("CARGO_BIN_EXE_wallaroo"))
            .args(args)
            .current_dir(self.dir.path())
            .envs(self.env.exports())
            .env("WALLAROO_VAR_admin_password", &self.markers[0])
            .env("WALLAROO_VAR_marker", &self.markers[1])
            .env("WALLAROO_E2E_FROM_ENV", &self.markers[2])
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut seen = std::collections::BTreeSet::new();
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                        if let Ok(raw) = std::fs::read(entry.path().join("cmdline"))
                            && !raw.is_empty()
                        {
                            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
                            seen.insert(line.trim().to_string());
                        }
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                seen
            })
        };
        let out = child.wait_with_output().unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let seen = watcher.join().unwrap();
        self.keep(
            &format!("wallaroo {}", args.join(" ")),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        );
        (out, seen)
    }

    fn keep(&self, what: &str, text: String) {
        self.seen.borrow_mut().push((what.into(), text));
    }
}

#[test]
fn a_marker_secret_in_every_place_appears_in_no_view_file_or_state() {
    let env = shared();
    common::seed_tiny(env);
    let id = unique("secrets");
    let common::OperatorSpec { dir, nodes, spec } = common::operator_spec(env, &id, None);
    let nonce = unique("m").replace('-', "");
    let markers: Vec<String> = (0..4).map(|i| format!("MARKER{i}x{nonce}Q")).collect();
    std::fs::write(dir.path().join("from-file.txt"), &markers[3]).unwrap();

    // Its own `helm` block below, with values.
    let mut spec = spec.replace("helm {\n  timeout = \"2m\"\n}\n", "");
    spec = spec.replace(
        "nodepool \"persistent\" {\n",
        "nodepool \"persistent\" {\n  labels = { \"example.com/owner\" = var.marker }\n",
    );
    spec.push_str(&format!(
        r#"variable "marker" {{
  type      = string
  sensitive = true
}}

private_pypi {{
  url      = "https://pypi.internal.example.com/simple"
  username = "wallaroo"
  password = var.marker
}}

helm {{
  timeout = "2m"
  values = {{
    extra = {{
      token    = var.admin_password
      plain    = "visible"
      url      = "https://user:${{var.marker}}@pypi.internal.example.com"
      list     = ["first", var.marker]
      from_env = sensitive(env("WALLAROO_E2E_FROM_ENV"))
      fromfile = sensitive(file("from-file.txt"))
    }}
  }}
}}

state {{
  backend   = "kubernetes"
  namespace = "{id}-state"
}}

user "{id}@example.com" {{
  role     = "admin"
  password = var.admin_password
}}
"#
    ));
    std::fs::write(dir.path().join("wallaroo.hcl"), &spec).unwrap();
    let api = env.api().unwrap();
    api.create(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("{id}-state")}}),
    )
    .unwrap();
    let case = Case {
        env,
        dir,
        markers,
        seen: Default::default(),
    };

    case.ok(&["validate"]);
    case.ok(&["validate", "--json"]);
    let text = case.ok(&["plan"]);
    assert!(text.contains("(sensitive)"), "{text}");
    assert!(
        text.contains("visible"),
        "the plain part stays readable:\n{text}"
    );
    case.ok(&["plan", "--json"]);
    case.ok(&["plan", "--format", "markdown"]);
    case.ok(&["images"]);
    case.ok(&["plan", "--out", "saved.json"]);
    // The apply, with every process's command line read while it runs.
    let (out, cmdlines) = case.watching_cmdlines(&["apply", "saved.json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        cmdlines
            .iter()
            .any(|c| c.contains("helm") && c.contains("install")),
        "the scan saw helm run: {cmdlines:?}"
    );
    for c in &cmdlines {
        for m in &case.markers {
            assert!(!c.contains(m.as_str()), "a secret on a command line: {c}");
        }
    }
    case.ok(&["output"]);
    case.ok(&["output", "--json"]);

    // helm got the real values: the release's user-supplied values hold every marker.
    let values = Command::new(&env.helm)
        .args([
            "get",
            "values",
            "wallaroo",
            "--namespace",
            &id,
            "-o",
            "json",
        ])
        .env("KUBECONFIG", &env.admin_kubeconfig)
        .output()
        .unwrap();
    let values = String::from_utf8_lossy(&values.stdout).to_string();
    for m in &case.markers {
        assert!(values.contains(m.as_str()), "helm has {m}: {values}");
    }

    // Drift: the node labelled with the secret relabelled by hand.
    api.merge_patch(
        &format!("/api/v1/nodes/{}", nodes[2]),
        &json!({"metadata": {"labels": {"example.com/owner": "someone-else"}}}),
    )
    .unwrap();
    let out = case.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "the relabelled node is drift");
    case.run(&["plan", "--json"]);
    case.ok(&["apply", "--auto-approve"]);

    // The state Secret, decoded.
    let secret = api
        .get(&format!(
            "/api/v1/namespaces/{id}-state/secrets/wallaroo-state-wallaroo"
        ))
        .unwrap();
    for (k, v) in secret["data"].as_object().unwrap() {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        case.keep(
            &format!("state Secret key {k}"),
            String::from_utf8_lossy(&bytes).into_owned(),
        );
    }
    case.keep(
        "saved.json",
        std::fs::read_to_string(case.dir.path().join("saved.json")).unwrap(),
    );
    // A support bundle: what support asks for, and no secret.
    let said = case.ok(&["support-bundle", "--out", "support.tar.gz"]);
    assert!(said.contains("support.tar.gz"), "{said}");
    let file = std::fs::File::open(case.dir.path().join("support.tar.gz")).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
        case.keep(&format!("support bundle {name}"), text);
        names.push(name);
    }
    for want in [
        "support/versions.json",
        "support/preflight.json",
        "support/wallaroo.lock.json",
        "support/plan.json",
        "support/cluster/version.json",
        "support/cluster/nodes.json",
        &format!("support/namespace/{id}/pods.json"),
        &format!("support/namespace/{id}/events.json"),
        "support/helm/history.json",
        "support/helm/values.json",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    // Each container's log was asked for (kwok's fake kubelets serve none: the API server's
    // answer is kept instead, as it would be for a node that is down).
    assert!(
        names
            .iter()
            .any(|n| n.contains("/logs/") && (n.ends_with(".log") || n.ends_with(".log.error.txt"))),
        "{names:?}"
    );
    let values = case
        .seen
        .borrow()
        .iter()
        .find(|(w, _)| w == "support bundle support/helm/values.json")
        .map(|(_, t)| t.clone())
        .unwrap();
    assert!(
        values.contains("visible"),
        "the release's plain values are there: {values}"
    );
    // In troubleshoot's layout, made by the real `support-bundle` (with the vendor's specs
    // from the cluster and ours): every file read back for the marker search below, and the
    // real `support-bundle analyze` reads it with a vendor's analyzers.
    let program = wallaroo_testenv::provision::go_program("support-bundle").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wallaroo"))
        .args(["support-bundle", "--out", "troubleshoot.tar.gz"])
        .current_dir(case.dir.path())
        .envs(env.exports())
        .env("WALLAROO_VAR_admin_password", &case.markers[0])
        .env("WALLAROO_VAR_marker", &case.markers[1])
        .env("WALLAROO_E2E_FROM_ENV", &case.markers[2])
        .env("WALLAROO_SUPPORT_BUNDLE", &program)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    case.keep("support-bundle (troubleshoot)", said.clone());
    assert!(out.status.success(), "{said}");
    assert!(said.contains("a troubleshoot support bundle"), "{said}");
    let bundle = case.dir.path().join("troubleshoot.tar.gz");
    let file = std::fs::File::open(&bundle).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        case.keep(
            &format!("troubleshoot bundle {name}"),
            String::from_utf8_lossy(&data).into_owned(),
        );
        names.push(name);
    }
    for want in [
        "/wallaroo/versions.json",
        "/wallaroo/wallaroo.lock.json",
        "/wallaroo/plan.json",
        "/cluster-info/cluster_version.json",
        "/version.yaml",
    ] {
        assert!(
            names.iter().any(|n| n.ends_with(want)),
            "{want} in {names:?}"
        );
    }
    // The node label that holds a marker is in troubleshoot's own collection of nodes, which
    // its redactors do not know to hide: wallaroo's scrub did.
    let nodes = case
        .seen
        .borrow()
        .iter()
        .find(|(w, _)| {
            w.starts_with("troubleshoot bundle") && w.ends_with("cluster-resources/nodes.json")
        })
        .map(|(_, t)| t.clone())
        .expect("troubleshoot collected the nodes");
    assert!(
        nodes.contains("\"example.com/owner\": \"(sensitive)\""),
        "{nodes}"
    );
    let analyzers = case.dir.path().join("vendor-analyzers.yaml");
    std::fs::write(
        &analyzers,
        r#"apiVersion: troubleshoot.sh/v1beta2
kind: Analyzer
metadata:
  name: vendor
spec:
  analyzers:
    - clusterVersion:
        checkName: Kubernetes version
        outcomes:
          - fail:
              when: "< 1.29.0"
              message: too old
          - pass:
              message: supported
    - textAnalyze:
        checkName: Wallaroo release
        fileName: wallaroo/versions.json
        regex: '"release": "2025\.1\.0-6290"'
        outcomes:
          - pass:
              message: the release wallaroo installs
          - fail:
              message: another release
"#,
    )
    .unwrap();
    let analyzed = Command::new(&program)
        .arg("analyze")
        .arg(&analyzers)
        .arg("--bundle")
        .arg(&bundle)
        .args(["--output", "json"])
        .env("TROUBLESHOOT_AUTO_UPDATE", "false")
        .output()
        .unwrap();
    let results: serde_json::Value = serde_json::from_slice(&analyzed.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&analyzed.stdout),
            String::from_utf8_lossy(&analyzed.stderr)
        )
    });
    let passed: Vec<&str> = results
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["IsPass"] == true)
        .filter_map(|r| r["Title"].as_str())
        .collect();
    assert_eq!(
        passed,
        ["Kubernetes version", "Wallaroo release"],
        "{results}"
    );

    let registry_password = env.private.password.clone();
    case.ok(&["destroy", "--auto-approve"]);

    let mut hits = Vec::new();
    for (what, text) in case.seen.borrow().iter() {
        for m in case.markers.iter().chain([&registry_password]) {
            if text.contains(m.as_str()) {
                hits.push(format!("{m} in {what}"));
            }
        }
    }
    assert!(hits.is_empty(), "secrets shown:\n{}", hits.join("\n"));
}
