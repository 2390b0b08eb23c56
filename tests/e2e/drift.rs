//! The drift cron job of `examples/drift-cronjob.yaml`, as written: its ServiceAccount and
//! roles, read from the file and applied unchanged, plan a real install whose state is in the
//! cluster. Exit 0 with no drift, 2 naming a Deployment scaled by hand, 1 with a clear message
//! when the state Secret cannot be read; the API server's audit log shows it wrote nothing.
//! A pull request's CI identity (the same reads, plus SubjectAccessReview) learns whether the
//! identity that applies may apply the change.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use wallaroo_testenv::{Env, shared, unique};

mod common;
use common::{operator_spec, repo, seed_tiny, wallaroo_in};

const DRIFT_SA: &str = "system:serviceaccount:wallaroo:wallaroo-drift";

fn run(env: &Env, dir: &Path, kubeconfig: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = wallaroo_in(env, dir)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The API path of an object of the kinds the example and `wallaroo rbac` hold.
fn path_of(doc: &Value) -> String {
    let kind = doc["kind"].as_str().unwrap();
    let base = match kind {
        "ServiceAccount" => "/api/v1".to_string(),
        _ => "/apis/rbac.authorization.k8s.io/v1".to_string(),
    };
    let plural = format!("{}s", kind.to_lowercase());
    match doc["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{base}/namespaces/{ns}/{plural}"),
        None => format!("{base}/{plural}"),
    }
}

/// The example's documents other than the CronJob (which runs the image; the test runs the
/// same command itself): the ServiceAccount and its roles and bindings.
fn example_identity() -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("examples/drift-cronjob.yaml")).unwrap();
    let docs: Vec<Option<Value>> = serde_saphyr::from_multiple(&text).unwrap();
    docs.into_iter()
        .flatten()
        .filter(|d| d["kind"] != "CronJob")
        .collect()
}

/// The roles and bindings of an RBAC YAML stream, by kind and name (comments and order aside).
fn rbac_of(docs: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = docs
        .iter()
        .filter(|d| {
            !matches!(
                d["kind"].as_str(),
                Some("ServiceAccount" | "CronJob" | "Namespace")
            )
        })
        .cloned()
        .collect();
    out.sort_by_key(|d| format!("{}/{}", d["kind"], d["metadata"]["name"]));
    out
}

/// Writes from `user` that the audit log recorded, other than reviews (which change nothing).
fn writes_by(env: &Env, user: &str) -> Vec<String> {
    env.audited_writes_by(user)
        .into_iter()
        .filter(|e| {
            !e["objectRef"]["resource"]
                .as_str()
                .unwrap_or("")
                .ends_with("reviews")
        })
        .map(|e| {
            format!(
                "{} {} {}/{}",
                e["verb"],
                e["objectRef"]["resource"],
                e["objectRef"]["namespace"],
                e["objectRef"]["name"]
            )
        })
        .collect()
}

/// A copy of the spec's working directory without its lockfile (the state is in the cluster),
/// as the cron job's pod sees it, readable by the Job's user: the spec and its TLS pair, the
/// registries' CA and helm (the image carries it).
fn cron_dir(env: &Env, from: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::copy(from.join("wallaroo.hcl"), dir.path().join("wallaroo.hcl")).unwrap();
    std::fs::create_dir_all(dir.path().join("tls")).unwrap();
    for f in ["tls/wallaroo.crt", "tls/wallaroo.key"] {
        std::fs::copy(from.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::copy(&env.ca_file, dir.path().join("ca.crt")).unwrap();
    std::fs::copy(&env.helm, dir.path().join("helm")).unwrap();
    let status = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

/// `wallaroo ARGS` as the example's CronJob runs it: UID 65532 (`runAsUser`), a read-only root
/// filesystem (`readOnlyRootFilesystem`) with only an empty `/tmp` writable, `HOME=/tmp` (the
/// image's), the spec in a directory it cannot write. A mount namespace of its own, as root
/// can make one, with the whole filesystem bound read-only and chrooted into.
fn run_as_job(
    env: &Env,
    job: &Path,
    kubeconfig: &Path,
    args: &[&str],
) -> (Option<i32>, String, String) {
    let config = job.join("kubeconfig");
    std::fs::copy(kubeconfig, &config).unwrap();
    let status = Command::new("chmod")
        .arg("a+r")
        .arg(&config)
        .status()
        .unwrap();
    assert!(status.success());
    let root = tempfile::tempdir().unwrap();
    let r = root.path().display();
    let script = format!(
        "mount --rbind / {r} && mount -o remount,bind,ro {r} && mount -t tmpfs -o mode=1777 tmpfs {r}/tmp && \
         cd {r} && exec chroot {r} setpriv --reuid=65532 --regid=65532 --clear-groups sh -c 'cd \"$0\" && exec \"$@\"' {} {} {}",
        job.display(),
        env!("CARGO_BIN_EXE_wallaroo"),
        args.join(" ")
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .envs(env.exports())
        .env("KUBECONFIG", &config)
        .env("HELM", job.join("helm"))
        .env("WALLAROO_VAR_vendor_ca_file", job.join("ca.crt"))
        .env("WALLAROO_VAR_private_ca_file", job.join("ca.crt"))
        .env("HOME", "/tmp")
        .env("NO_COLOR", "1")
        // The image is built `FROM scratch`: no system CA certificates (every CA the spec
        // needs is named in it; a plan once panicked making Keycloak's client without them).
        .env("SSL_CERT_FILE", "/nonexistent/ca-certificates.crt")
        .env("SSL_CERT_DIR", "/nonexistent")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_drift_cron_jobs_identity_plans_with_read_rights_only() {
    let env = shared();
    seed_tiny(env);
    let api = env.api().unwrap();
    let id = unique("drift");
    // The quickstart as the example expects it: the release in `wallaroo`, the state there.
    let op = operator_spec(env, &id, None);
    let spec = op.spec.replace(
        &format!("namespace               = \"{id}\""),
        "namespace               = \"wallaroo\"",
    ) + "state {\n  backend   = \"kubernetes\"\n  namespace = \"wallaroo\"\n}\n";
    let dir = op.dir.path();
    std::fs::write(dir.join("wallaroo.hcl"), &spec).unwrap();
    let kit = env.kubeconfig.clone();
    api.create(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "wallaroo"}}),
    )
    .unwrap();
    let (code, out, err) = run(env, dir, &kit, &["apply", "--auto-approve"]);
    assert_eq!(code, Some(0), "{out}{err}");

    // The example's roles are what `wallaroo rbac --read-only` prints for this spec.
    let (code, printed, err) = run(
        env,
        dir,
        &kit,
        &[
            "rbac",
            "--read-only",
            "--name",
            "wallaroo-drift",
            "--service-account",
            "wallaroo/wallaroo-drift",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let printed: Vec<Option<Value>> = serde_saphyr::from_multiple(&printed).unwrap();
    let printed: Vec<Value> = printed.into_iter().flatten().collect();
    let example = example_identity();
    assert_eq!(
        rbac_of(&example),
        rbac_of(&printed),
        "examples/drift-cronjob.yaml's roles differ from `wallaroo rbac --read-only`"
    );

    // The example's identity, applied as it is, and a token for it.
    for doc in &example {
        api.create(&path_of(doc), doc).unwrap();
    }
    let keep = tempfile::tempdir().unwrap();
    let drift: PathBuf = keep.path().join("drift.kubeconfig");
    env.service_account_kubeconfig("wallaroo", "wallaroo-drift", &drift)
        .unwrap();
    let before = writes_by(env, DRIFT_SA);

    // No drift: exit 0, and the pull check is skipped, saying why.
    let cron = cron_dir(env, dir);
    let args = [
        "plan",
        "--detailed-exitcode",
        "--json",
        "--lock-timeout",
        "1m",
    ];
    let (code, out, err) = run_as_job(env, cron.path(), &drift, &args);
    assert_eq!(code, Some(0), "{out}{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert!(
        err.contains("pull from the private registry: not run")
            && err.contains("create namespaces"),
        "{err}"
    );
    // Nothing to apply, so nothing to ask about the rights to apply it.
    assert!(plan.get("permissions").is_none(), "{out}");

    // A Deployment scaled by hand: exit 2, naming it.
    api.merge_patch(
        "/apis/apps/v1/namespaces/wallaroo/deployments/engine",
        &json!({"spec": {"replicas": 3}}),
    )
    .unwrap();
    let (code, out, err) = run_as_job(env, cron.path(), &drift, &args);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(out.contains("Deployment/engine"), "{out}");
    // The repair is apply's, and this identity only reads: said, not a failure.
    let plan: Value = serde_json::from_str(&out).unwrap();
    let warned = plan["warnings"].to_string();
    assert!(warned.contains("may only read"), "{warned}");
    assert!(warned.contains(DRIFT_SA), "{warned}");
    assert_eq!(
        plan["permissions"]["identity"],
        format!("this identity ({DRIFT_SA})")
    );

    // The state Secret unreadable (the admin took `secrets` out of the Role): exit 1, saying so.
    let role_path = "/apis/rbac.authorization.k8s.io/v1/namespaces/wallaroo/roles/wallaroo-drift";
    let role = api.get(role_path).unwrap();
    let mut cut = role.clone();
    for rule in cut["rules"].as_array_mut().unwrap() {
        if let Some(r) = rule["resources"].as_array_mut() {
            r.retain(|x| x != "secrets");
        }
    }
    cut["rules"]
        .as_array_mut()
        .unwrap()
        .retain(|r| !r["resources"].as_array().unwrap().is_empty());
    api.merge_patch(role_path, &json!({"rules": cut["rules"]}))
        .unwrap();
    let (code, out, err) = run_as_job(env, cron.path(), &drift, &args);
    api.merge_patch(role_path, &json!({"rules": role["rules"]}))
        .unwrap();
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("wallaroo-state-wallaroo") && err.contains("forbidden"),
        "{err}"
    );

    // A pull request's CI: the same reads and the right to ask about another identity, with
    // the identity that applies named in the spec.
    let ci = format!("{id}-ci");
    let review_spec =
        format!("{spec}apply_identity {{\n  service_account = \"wallaroo-system/wallaroo\"\n}}\n");
    std::fs::write(cron.path().join("wallaroo.hcl"), &review_spec).unwrap();
    let (code, yaml, err) = run(
        env,
        cron.path(),
        &kit,
        &[
            "rbac",
            "--read-only",
            "--name",
            &ci,
            "--service-account",
            &format!("wallaroo/{ci}"),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(yaml.contains("subjectaccessreviews"), "{yaml}");
    api.create(
        "/api/v1/namespaces/wallaroo/serviceaccounts",
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ci}}),
    )
    .unwrap();
    let docs: Vec<Option<Value>> = serde_saphyr::from_multiple(&yaml).unwrap();
    let ci_docs: Vec<Value> = docs.into_iter().flatten().collect();
    // The namespace `wallaroo` (first in the stream) is there already.
    for doc in ci_docs.iter().filter(|d| d["kind"] != "Namespace") {
        api.create(&path_of(doc), doc).unwrap();
    }
    let ci_config = keep.path().join("ci.kubeconfig");
    env.service_account_kubeconfig("wallaroo", &ci, &ci_config)
        .unwrap();
    let ci_user = format!("system:serviceaccount:wallaroo:{ci}");
    // The kit's identity may apply the change (the Deployment back to one replica).
    let (code, out, err) = run(env, cron.path(), &ci_config, &args);
    assert_eq!(code, Some(2), "{out}{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        plan["permissions"]["identity"], "ServiceAccount wallaroo-system/wallaroo",
        "{out}"
    );
    assert_eq!(plan["permissions"]["checked"], true, "{out}");
    assert_eq!(plan["permissions"]["lacking"], json!([]), "{out}");
    // The drift cron's identity may not: the plan stops, naming what it lacks.
    let denied = review_spec.replace("wallaroo-system/wallaroo", "wallaroo/wallaroo-drift");
    std::fs::write(cron.path().join("wallaroo.hcl"), &denied).unwrap();
    let (code, out, err) = run(env, cron.path(), &ci_config, &args);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("ServiceAccount wallaroo/wallaroo-drift, which the spec names to apply")
            && err.contains("patch deployments.apps in namespace wallaroo"),
        "{err}"
    );

    // Neither identity wrote anything (the Lease of the run lock aside, which the audit
    // policy leaves out with every Lease).
    if env.audits() {
        let after = writes_by(env, DRIFT_SA);
        assert_eq!(before, after, "the drift identity wrote");
        assert_eq!(writes_by(env, &ci_user), Vec::<String>::new());
        assert!(
            !env.audited_writes_by("system:serviceaccount:wallaroo-system:wallaroo")
                .is_empty(),
            "the audit log records the applying identity's writes"
        );
    }

    // The change applied by the identity that applies; the next cron plan is clean.
    let (code, out, err) = run(env, dir, &kit, &["apply", "--auto-approve"]);
    assert_eq!(code, Some(0), "{out}{err}");
    std::fs::write(cron.path().join("wallaroo.hcl"), &spec).unwrap();
    let (code, out, err) = run_as_job(env, cron.path(), &drift, &args);
    assert_eq!(code, Some(0), "{out}{err}");

    let (code, out, err) = run(env, dir, &kit, &["destroy", "--auto-approve"]);
    assert_eq!(code, Some(0), "{out}{err}");
    for doc in example.iter().chain(&ci_docs) {
        if doc["metadata"]["namespace"].is_null() {
            let _ = api.delete(&format!(
                "{}/{}",
                path_of(doc),
                doc["metadata"]["name"].as_str().unwrap()
            ));
        }
    }
}

/// The pull check's cost in a cron: a plan runs it when something a pull depends on changed
/// since it last passed, or when that pass is older than `pull_check_max_age`, and otherwise
/// says when it passed; `wallaroo preflight` always runs it.
#[test]
fn the_pull_check_runs_again_only_when_a_pull_would_differ_or_its_pass_is_old() {
    let env = shared();
    seed_tiny(env);
    let id = unique("pullonce");
    let op = operator_spec(env, &id, None);
    let dir = op.dir.path();
    std::fs::write(dir.join("wallaroo.hcl"), &op.spec).unwrap();
    let kit = env.kubeconfig.clone();
    let ran = "are simulated (kwok) and pull nothing";
    let kept = "pull from the private registry: passed ";

    let (code, out, err) = run(env, dir, &kit, &["plan"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(err.contains(ran) && !err.contains(kept), "{err}");
    let (_, _, err) = run(env, dir, &kit, &["plan"]);
    assert!(
        err.contains(kept)
            && err.contains("nothing a pull depends on changed")
            && !err.contains(ran),
        "{err}"
    );
    let (code, out, err) = run(env, dir, &kit, &["preflight"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(ran) && !out.contains(kept),
        "preflight always runs it:\n{out}"
    );
    // And says what the release's images weigh: the room a first mirror needs.
    assert!(
        out.contains("mirror size: the release's 4 image(s) weigh "),
        "{out}"
    );

    // Another node in a pool: a pull may differ.
    let extra = env
        .add_nodes(&format!("{id}-more"), 1, &json!({}), &json!([]), &json!({}))
        .unwrap();
    let moved = op.spec.replace(
        &format!("\"{}\"", op.nodes[0]),
        &format!("\"{}\"", extra[0]),
    );
    std::fs::write(dir.join("wallaroo.hcl"), &moved).unwrap();
    let (_, _, err) = run(env, dir, &kit, &["plan"]);
    assert!(err.contains(ran) && !err.contains(kept), "{err}");

    // A pass older than the bound.
    let bounded = moved.replace(
        "  ca_file   = var.private_ca_file\n",
        "  ca_file   = var.private_ca_file\n  pull_check_max_age = \"1s\"\n",
    );
    assert_ne!(bounded, moved);
    std::fs::write(dir.join("wallaroo.hcl"), &bounded).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (_, _, err) = run(env, dir, &kit, &["plan"]);
    assert!(err.contains(ran) && !err.contains(kept), "{err}");
}
