//! An operator's day with inputs this project did not shape: the vendor's chart refuses to
//! render without the install's values (its templates `fail` on a missing distribution and
//! domain, as production charts do) and runs one image only when private PyPI is on; the
//! private registry is distribution v3, not the Debian registry the other tests use. Through
//! the binary: plan, apply, an empty second plan, two kinds of drift made by hand (an image
//! deleted from the registry, a node label edited), apply putting both back, and destroy.

use std::process::{Command, Output};

use serde_json::{Value, json};
use wallaroo_testenv::env::Implementation;
use wallaroo_testenv::{shared, unique};

mod common;

struct Case {
    env: &'static wallaroo_testenv::Env,
    dir: tempfile::TempDir,
    private: wallaroo_testenv::env::Registry,
}

impl Case {
    /// The digest of `repo:tag` in the private registry, if it is there.
    fn manifest_digest(&self, repo: &str, tag: &str) -> Option<String> {
        let resp = wallaroo_testenv::https_client(&self.env.ca_file)
            .unwrap()
            .head(format!(
                "https://{}/v2/{repo}/manifests/{tag}",
                self.private.address()
            ))
            .header(
                "Accept",
                "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
            )
            .basic_auth(&self.private.username, Some(&self.private.password))
            .send()
            .unwrap();
        resp.status().is_success().then(|| {
            resp.headers()["docker-content-digest"]
                .to_str()
                .unwrap()
                .to_string()
        })
    }

    /// Deletes a manifest from the private registry, as a registry clean-up would.
    fn delete_manifest(&self, repo: &str, digest: &str) {
        let resp = wallaroo_testenv::https_client(&self.env.ca_file)
            .unwrap()
            .delete(format!(
                "https://{}/v2/{repo}/manifests/{digest}",
                self.private.address()
            ))
            .basic_auth(&self.private.username, Some(&self.private.password))
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_wallaroo"))
            .args(args)
            .current_dir(self.dir.path())
            .envs(self.env.exports())
            .env("WALLAROO_VAR_private_registry", self.private.address())
            .env("WALLAROO_VAR_registry_username", &self.private.username)
            .env("WALLAROO_VAR_registry_password", &self.private.password)
            .env("WALLAROO_VAR_admin_password", "Adm1n-foreign-pass")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "wallaroo {args:?}:\n{text}");
        text
    }

    fn exit(&self, args: &[&str]) -> (i32, String) {
        let out = self.run(args);
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

#[test]
fn a_strict_chart_into_distribution_v3_plans_applies_drifts_and_destroys() {
    let env = shared();
    let path = unique("foreign");
    let charts = tempfile::tempdir().unwrap();
    let chart = wallaroo_testenv::seed::strict_chart(
        &common::repo().join("tests/charts/wallaroo-sample"),
        charts.path(),
    )
    .unwrap();
    let preset = wallaroo_testenv::seed::preset("tiny").unwrap();
    wallaroo_testenv::seed::seed(env, &preset, &env.vendor, &path, &chart).unwrap();
    // The image only private PyPI runs: in the vendor registry, in no list of the chart, and
    // kept with docker v2 media types as `docker push` leaves it.
    wallaroo_testenv::seed::docker_image(
        env,
        &env.vendor,
        &format!("{path}/pypi-proxy"),
        preset.version,
        4711,
        &["amd64"],
    )
    .unwrap();

    let scratch = env
        .scratch_registry_of(Implementation::Distribution3, "foreign-registry")
        .unwrap();
    let id = unique("foreign");
    // The quickstart as an operator adapts it, with private PyPI on.
    let common::OperatorSpec {
        dir,
        nodes,
        mut spec,
    } = common::operator_spec(env, &id, Some(&path));
    spec.push_str(
        "private_pypi {\n  url      = \"https://pypi.internal.example.com/simple\"\n  username = \"wallaroo\"\n  password = var.admin_password\n}\n",
    );
    std::fs::write(dir.path().join("wallaroo.hcl"), &spec).unwrap();
    let case = Case {
        env,
        dir,
        private: scratch.registry.clone(),
    };

    // Plan: the chart renders with the install's values, and the setting's image is listed.
    let (code, plan) = case.exit(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{plan}");
    assert!(plan.contains(&format!("{id}/pypi-proxy")), "{plan}");
    assert!(!plan.contains("Adm1n-foreign-pass"), "{plan}");

    let applied = case.ok(&["apply", "--auto-approve"]);
    assert!(applied.contains("Apply complete!"), "{applied}");
    let proxy_repo = format!("{id}/pypi-proxy");
    let digest = case
        .manifest_digest(&proxy_repo, preset.version)
        .expect("the setting's image is in distribution v3");
    // The release runs it from the private registry.
    let api = env.api().unwrap();
    let deployment = api
        .get(&format!(
            "/apis/apps/v1/namespaces/{id}/deployments/pypi-proxy"
        ))
        .unwrap();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        json!(format!(
            "{}/{id}/pypi-proxy:{}",
            case.private.address(),
            preset.version
        ))
    );
    let (code, plan) = case.exit(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, 0, "a second plan is empty:\n{plan}");

    // Drift made by hand: someone cleans the registry, someone relabels a node.
    case.delete_manifest(&proxy_repo, &digest);
    api.merge_patch(
        &format!("/api/v1/nodes/{}", nodes[0]),
        &json!({"metadata": {"labels": {"wallaroo.ai/node-purpose": "edited"}}}),
    )
    .unwrap();
    let out = case.run(&["plan", "--json"]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let drifted: Vec<String> = plan["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["address"].as_str().unwrap().to_string())
        .collect();
    assert!(
        drifted.iter().any(|a| a.contains("pypi-proxy")),
        "the deleted image is drift: {drifted:?}"
    );
    assert!(
        drifted.iter().any(|a| a.contains(&nodes[0])),
        "the edited node is drift: {drifted:?}"
    );
    case.ok(&["apply", "--auto-approve"]);
    assert_eq!(
        case.manifest_digest(&proxy_repo, preset.version),
        Some(digest),
        "mirrored again, byte for byte"
    );
    let (code, plan) = case.exit(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, 0, "converged again:\n{plan}");

    let destroyed = case.ok(&["destroy", "--auto-approve"]);
    assert!(destroyed.contains("Destroy complete!"), "{destroyed}");
    let ns = api.get(&format!("/api/v1/namespaces/{id}"));
    assert!(
        ns.is_err() || ns.unwrap()["status"]["phase"] == "Terminating",
        "the namespace goes"
    );
    scratch.stop();
}
