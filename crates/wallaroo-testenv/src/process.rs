//! Background processes: started in their own process group with logs in the run
//! directory, recorded by PID, stopped by PID (never by name).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

/// Starts `cmd` detached (own process group), logging to `logs/<name>.log`; returns the PID.
pub fn spawn(name: &str, mut cmd: Command, run_dir: &Path) -> Result<u32, Error> {
    use std::os::unix::process::CommandExt;
    let logs = run_dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| Error::io(&logs, e))?;
    let log_path = logs.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).map_err(|e| Error::io(&log_path, e))?;
    let err = log.try_clone().map_err(|e| Error::io(&log_path, e))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Start {
            name: name.into(),
            message: format!("{:?}: {e}", cmd.get_program()),
        })?;
    Ok(child.id())
}

/// Whether a PID is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// SIGTERM to the process group, then SIGKILL after `grace`.
pub fn stop(pid: u32, grace: Duration) {
    let group = format!("-{pid}");
    let _ = Command::new("kill")
        .args(["-TERM", "--", &group])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + grace;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
    }
}

/// Polls `ready` until it is true, or fails naming the component and its log.
pub fn wait_until(
    name: &str,
    pid: u32,
    timeout: Duration,
    run_dir: &Path,
    mut ready: impl FnMut() -> bool,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        if !alive(pid) {
            return Err(Error::NotReady {
                name: name.into(),
                why: "it exited".into(),
                log: tail(run_dir, name),
            });
        }
        if Instant::now() > deadline {
            return Err(Error::NotReady {
                name: name.into(),
                why: format!("not ready after {timeout:?}"),
                log: tail(run_dir, name),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last lines of a component's log.
pub fn tail(run_dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(run_dir.join("logs").join(format!("{name}.log")))
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Runs a command to completion, failing with its output.
pub fn run(what: &str, cmd: &mut Command) -> Result<String, Error> {
    let out = cmd.output().map_err(|e| Error::Start {
        name: what.into(),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(Error::Command {
            what: what.into(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
