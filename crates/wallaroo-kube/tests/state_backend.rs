//! The kubernetes state backend against the real API server, as the least-privilege user:
//! the lockfile round-trips through a Secret; a second process is refused (or waits) while
//! the first holds the Lease; a holder killed with SIGKILL stops renewing, the Lease lapses,
//! and the next run takes over with nothing lost.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wallaroo_kube::state_backend::{KubernetesBackend, KubernetesBackendConfig};
use wallaroo_state::{Lockfile, StateError, StateStore};

const CHILD: &str = "WALLAROO_STATE_TEST_CHILD";

fn store(suffix: &str, lease: Duration) -> StateStore {
    let backend = KubernetesBackend::connect(KubernetesBackendConfig {
        namespace: "default".into(),
        secret_suffix: suffix.into(),
        lease_duration: lease,
    })
    .unwrap();
    StateStore::remote(std::sync::Arc::new(backend))
}

/// In the child process: take the lock, record a lockfile, say so, and hold on until killed.
#[test]
fn child_holds_the_lock_until_killed() {
    let Ok(suffix) = std::env::var(CHILD) else {
        return;
    };
    let store = store(&suffix, Duration::from_secs(3));
    let _lock = store.lock("wallaroo apply", Duration::ZERO).unwrap();
    let mut lf = store.load().unwrap().unwrap_or_default();
    lf.serial = 41;
    store.save(&lf).unwrap();
    println!("LOCKED");
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_killed_holder_blocks_until_its_lease_lapses_and_nothing_is_lost() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let env = wallaroo_testenv::shared();
    // SAFETY: the only test of this binary that reads the environment runs in a child.
    unsafe { std::env::set_var("KUBECONFIG", &env.kubeconfig) };
    let suffix = wallaroo_testenv::unique("st");

    // The lockfile round-trips.
    let first = store(&suffix, Duration::from_secs(3));
    assert!(first.load().unwrap().is_none());
    let mut lf = Lockfile::new();
    lf.serial = 7;
    first.save(&lf).unwrap();
    assert_eq!(first.load().unwrap().unwrap(), lf);

    // Another process takes the lock and keeps it.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_holds_the_lock_until_killed",
            "--nocapture",
        ])
        .env(CHILD, &suffix)
        .env("KUBECONFIG", &env.kubeconfig)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        use std::io::BufRead;
        assert!(out.read_line(&mut line).unwrap() > 0, "the child ended");
        if line.contains("LOCKED") {
            break;
        }
    }

    // A second run fails at once, naming the holder...
    match first.lock("wallaroo plan", Duration::ZERO) {
        Err(StateError::Locked { holder, .. }) => {
            assert_eq!(holder.pid, child.id());
            assert_eq!(holder.command, "wallaroo apply");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("the lock was taken twice"),
    }
    // ...and while the holder lives and renews, waiting longer than the lease does not help.
    let held = first.lock("wallaroo plan", Duration::from_secs(5));
    assert!(matches!(held, Err(StateError::Locked { .. })), "renewed");

    // Killed: no renewal; the Lease lapses and the next run proceeds.
    child.kill().unwrap();
    child.wait().unwrap();
    let started = Instant::now();
    let lock = first
        .lock("wallaroo apply", Duration::from_secs(20))
        .unwrap();
    assert!(
        started.elapsed() <= Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        first.load().unwrap().unwrap().serial,
        41,
        "the killed run's last write is there"
    );
    drop(lock);
    // Released: taken again at once.
    let again = first.lock("wallaroo plan", Duration::ZERO);
    assert!(again.is_ok());
}
