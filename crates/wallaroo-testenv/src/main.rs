//! `wallaroo-testenv`: up | down | status | nodes | lb-double. `up` prints only
//! `export NAME=value` lines on stdout, so `eval "$(wallaroo-testenv up)"` works.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wallaroo_testenv::{Env, lbdouble, up};

#[derive(Parser)]
#[command(
    name = "wallaroo-testenv",
    about = "The real components wallaroo is tested against, on 127.0.0.1"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Provision what is missing, start everything, print `export` lines.
    Up,
    /// Stop everything that `up` started, by PID.
    Down,
    /// Say what runs where.
    Status,
    /// Add N kwok nodes named PREFIX-1..N.
    Nodes {
        #[arg(long, default_value = "node")]
        prefix: String,
        #[arg(long, default_value_t = 4)]
        count: usize,
        /// Extra capacity, e.g. nvidia.com/gpu=1 (repeatable).
        #[arg(long)]
        capacity: Vec<String>,
        /// Labels, e.g. wallaroo.ai/node-purpose=general (repeatable).
        #[arg(long)]
        label: Vec<String>,
        /// Taints as key=value:Effect (repeatable).
        #[arg(long)]
        taint: Vec<String>,
    },
    /// Start a real node (kubelet, containerd, runc, CNI) named NAME, joined to the control
    /// plane and tainted `wallaroo-testenv/real-node=true:NoSchedule`; prints its name.
    RealNode {
        name: String,
        /// Leave the private registry's CA out of containerd's certs.d.
        #[arg(long)]
        untrusted: bool,
        /// The sandbox image, instead of the private registry's (e.g. registry.k8s.io/pause:3.10).
        #[arg(long)]
        sandbox_image: Option<String>,
        /// Labels, e.g. wallaroo.ai/node-purpose=general (repeatable).
        #[arg(long)]
        label: Vec<String>,
    },
    /// Stop the real node NAME (its pods, kubelet, containerd, mounts) and delete its Node.
    StopNode { name: String },
    /// The main job on a fresh machine: bring the environment up, seed the vendor registry,
    /// add the quickstart's nodes, then run `wallaroo plan` and `wallaroo apply` of
    /// examples/quickstart.hcl against it.
    Sandbox,
    /// Push an image set to the vendor registry: tiny, release (about 40 images, 1.5 GB)
    /// or release-next (the next version, most layers shared), or large (about 11 GB: layers
    /// of 1-4 GiB, generated as a stream; for the benchmark, never for `cargo test`).
    Seed {
        preset: String,
        /// Push to the private registry instead.
        #[arg(long)]
        private: bool,
    },
    /// The Bearer token issuer of the token registry (started by `up`).
    #[command(hide = true)]
    TokenIssuer {
        #[arg(long)]
        port: u16,
    },
    /// The LoadBalancer test double (started by `up`).
    #[command(hide = true)]
    LbDouble,
}

fn main() -> ExitCode {
    wallaroo_testenv::install_crypto_provider();
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Up => up(&mut |m| eprintln!("wallaroo-testenv: {m}")).map(|env| {
            for (k, v) in env.exports() {
                println!("export {k}={}", shell_quote(&v));
            }
        }),
        Cmd::Down => {
            match read_state() {
                Some(env) => {
                    env.down();
                    eprintln!("wallaroo-testenv: stopped");
                }
                None => eprintln!("wallaroo-testenv: nothing is running"),
            }
            Ok(())
        }
        Cmd::Status => {
            match Env::find() {
                Some(env) => {
                    for (name, p) in &env.procs {
                        println!("{name:<24} pid {:<8} port {}", p.pid, p.port);
                    }
                    for r in [&env.vendor, &env.private, &env.token] {
                        println!(
                            "{:<24} pid {:<8} https://{}",
                            r.username.replace("-user", "-registry"),
                            r.proc.pid,
                            r.address()
                        );
                    }
                    println!("kubeconfig               {}", env.kubeconfig.display());
                    println!("keycloak                 {}", env.keycloak_url);
                }
                None => println!("not running"),
            }
            Ok(())
        }
        Cmd::Sandbox => sandbox(),
        Cmd::Nodes {
            prefix,
            count,
            capacity,
            label,
            taint,
        } => match Env::find() {
            Some(env) => {
                let pairs = |items: &[String]| {
                    serde_json::Value::Object(
                        items
                            .iter()
                            .filter_map(|c| c.split_once('='))
                            .map(|(k, v)| (k.to_string(), v.into()))
                            .collect(),
                    )
                };
                let taints: Vec<serde_json::Value> = taint
                    .iter()
                    .filter_map(|t| {
                        let (kv, effect) = t.rsplit_once(':')?;
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        Some(serde_json::json!({"key": k, "value": v, "effect": effect}))
                    })
                    .collect();
                let started = std::time::Instant::now();
                env.add_nodes(
                    &prefix,
                    count,
                    &pairs(&label),
                    &serde_json::Value::Array(taints),
                    &pairs(&capacity),
                )
                .map(|names| {
                    eprintln!(
                        "wallaroo-testenv: {} nodes in {:.1}s",
                        names.len(),
                        started.elapsed().as_secs_f64()
                    );
                    for n in names {
                        println!("{n}");
                    }
                })
            }
            None => Err(wallaroo_testenv::Error::Missing {
                what: "a running environment".into(),
                fix: "run `wallaroo-testenv up`".into(),
            }),
        },
        Cmd::RealNode {
            name,
            untrusted,
            sandbox_image,
            label,
        } => up(&mut |m| eprintln!("wallaroo-testenv: {m}")).and_then(|env| {
            let opts = wallaroo_testenv::node::NodeOptions {
                trust_ca: !untrusted,
                sandbox_image,
                labels: label
                    .iter()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            };
            let started = std::time::Instant::now();
            let node = env.start_real_node(&name, &opts)?;
            eprintln!(
                "wallaroo-testenv: real node {} Ready in {:.1}s (containerd socket {})",
                node.name,
                started.elapsed().as_secs_f64(),
                node.socket.display()
            );
            println!("{}", node.name);
            Ok(())
        }),
        Cmd::StopNode { name } => match Env::find() {
            Some(env) => env.stop_real_node(&name),
            None => Ok(()),
        },
        Cmd::Seed { preset, private } => seed(&preset, private),
        Cmd::TokenIssuer { port } => token_issuer(port),
        Cmd::LbDouble => {
            // `up` writes the state file once everything, this included, has started.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
            loop {
                if let Some(env) = read_state() {
                    break lbdouble::run(&env);
                }
                if std::time::Instant::now() > deadline {
                    break Err(wallaroo_testenv::Error::Missing {
                        what: "the environment's state".into(),
                        fix: "started by `up`".into(),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wallaroo-testenv: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The state file as written by `up`, even while some process is down.
fn read_state() -> Option<Env> {
    let text =
        std::fs::read_to_string(wallaroo_testenv::paths::run_dir().join("state.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-:=@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn seed(name: &str, private: bool) -> Result<(), wallaroo_testenv::Error> {
    let preset =
        wallaroo_testenv::seed::preset(name).ok_or_else(|| wallaroo_testenv::Error::Missing {
            what: format!("a preset named `{name}`"),
            fix: "use tiny, release, release-next or large".into(),
        })?;
    let env = up(&mut |m| eprintln!("wallaroo-testenv: {m}"))?;
    let registry = if private { &env.private } else { &env.vendor };
    let chart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/charts/wallaroo-sample");
    let started = std::time::Instant::now();
    let path = wallaroo_testenv::seed::default_path(&preset);
    let bytes = wallaroo_testenv::seed::seed(&env, &preset, registry, path, &chart)?;
    eprintln!(
        "wallaroo-testenv: pushed {} images of {} ({} MB of new blobs) to {}/{path} in {:.1}s",
        preset.images.len(),
        preset.name,
        bytes >> 20,
        registry.address(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn token_issuer(port: u16) -> Result<(), wallaroo_testenv::Error> {
    let pki = wallaroo_testenv::paths::run_dir().join("pki");
    let issuer = wallaroo_testenv::tokenauth::Issuer {
        serving_cert: pki.join("registry.crt"),
        serving_key: pki.join("registry.key"),
        signer_cert: pki.join("token-signer.crt"),
        signer_key: pki.join("token-signer.key"),
        service: wallaroo_testenv::env::TOKEN_SERVICE.into(),
        username: wallaroo_testenv::env::TOKEN_USER.into(),
        password: std::env::var("WALLAROO_TESTENV_TOKEN_PASSWORD").unwrap_or_default(),
    };
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| wallaroo_testenv::Error::io(std::path::Path::new("token issuer port"), e))?;
    wallaroo_testenv::tokenauth::serve(listener, issuer)
}

/// What the sandbox adds to its copy of the quickstart: the release's pods tolerate the
/// test kit's real node.
const SANDBOX_TOLERATION: &str = r#"
# Added by the sandbox: the general services run on the test kit's real node (node-1),
# which they tolerate; the engine stays on its kwok pipelines node.
scheduling {
  tolerations = [
    { key = "wallaroo-testenv/real-node", operator = "Equal", value = "true", effect = "NoSchedule" },
  ]
  node_selectors = {
    conductor-wallsvc = { "kubernetes.io/hostname" = "node-1" }
    keycloak          = { "kubernetes.io/hostname" = "node-1" }
  }
}
"#;

fn sandbox() -> Result<(), wallaroo_testenv::Error> {
    use std::process::Command;
    use wallaroo_testenv::Error;
    let env = up(&mut |m| eprintln!("wallaroo-testenv: {m}"))?;
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let preset = wallaroo_testenv::seed::preset("tiny").expect("the tiny preset exists");
    eprintln!(
        "wallaroo-testenv: seeding the vendor registry ({})",
        preset.name
    );
    wallaroo_testenv::seed::seed(
        &env,
        &preset,
        &env.vendor,
        "wallaroo",
        &repo.join("tests/charts/wallaroo-sample"),
    )?;
    // node-1 is a real node (kubelet, containerd, runc): the quickstart's general services
    // pull from the private registry and run there. node-2 to node-4 are kwok nodes.
    if !env.real_nodes().contains_key("node-1") {
        eprintln!("wallaroo-testenv: starting the real node node-1");
        env.start_real_node("node-1", &wallaroo_testenv::node::NodeOptions::default())?;
    }
    let api = env.api()?;
    let missing: Vec<String> = ["node-2", "node-3", "node-4"]
        .iter()
        .filter(|n| api.get(&format!("/api/v1/nodes/{n}")).is_err())
        .map(|n| n.to_string())
        .collect();
    env.add_named_nodes(
        &missing,
        &serde_json::json!({}),
        &serde_json::json!([]),
        &serde_json::json!({}),
    )?;

    // The quickstart and its TLS files, copied so the lockfile lands in the sandbox. The
    // copy gains a toleration of the real node's taint (a mark of the test kit's node, not
    // of Wallaroo's pools).
    let dir = env.run_dir.join("sandbox");
    std::fs::create_dir_all(dir.join("tls")).map_err(|e| Error::io(&dir, e))?;
    for f in ["quickstart.hcl", "tls/wallaroo.crt", "tls/wallaroo.key"] {
        std::fs::copy(repo.join("examples").join(f), dir.join(f))
            .map_err(|e| Error::io(&dir, e))?;
    }
    let spec_path = dir.join("quickstart.hcl");
    let mut spec = std::fs::read_to_string(&spec_path).map_err(|e| Error::io(&spec_path, e))?;
    spec.push_str(SANDBOX_TOLERATION);
    std::fs::write(&spec_path, spec).map_err(|e| Error::io(&spec_path, e))?;
    let exe =
        std::env::current_exe().map_err(|e| Error::io(std::path::Path::new("current_exe"), e))?;
    let wallaroo = exe.with_file_name("wallaroo");
    if !wallaroo.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        wallaroo_testenv::process::run(
            "cargo build -p wallaroo-cli",
            Command::new(cargo)
                .args(["build", "-p", "wallaroo-cli"])
                .current_dir(&repo),
        )?;
    }
    for args in [
        &["plan"][..],
        &["apply", "--auto-approve"][..],
        &["output"][..],
    ] {
        eprintln!(
            "\n$ wallaroo {} -c {}",
            args.join(" "),
            dir.join("quickstart.hcl").display()
        );
        let status = Command::new(&wallaroo)
            .args(args)
            .args(["-c", "quickstart.hcl"])
            .current_dir(&dir)
            .envs(env.exports())
            .status()
            .map_err(|e| Error::Start {
                name: "wallaroo".into(),
                message: e.to_string(),
            })?;
        if !status.success() {
            return Err(Error::Command {
                what: format!("wallaroo {}", args.join(" ")),
                output: format!("exited with {status}"),
            });
        }
    }
    eprintln!(
        "\nThe sandbox is up. To go on by hand:\n  eval \"$(cargo run -q -p wallaroo-testenv -- up)\"\n  cd {}\n  {} plan -c quickstart.hcl\nand `cargo run -q -p wallaroo-testenv -- down` stops it.",
        dir.display(),
        wallaroo.display()
    );
    Ok(())
}
