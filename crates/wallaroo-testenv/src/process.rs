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

/// The end of a component's log, for an error message: the lines that name an error first
/// (a Go program's fatal line is often followed by pages of shutdown chatter), then the last
/// lines, each cut to a readable length.
pub fn tail(run_dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(run_dir.join("logs").join(format!("{name}.log")))
        .unwrap_or_default();
    let cut = |l: &str| -> String {
        if l.len() > 500 {
            let mut end = 500;
            while !l.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}...", &l[..end])
        } else {
            l.to_string()
        }
    };
    let lines: Vec<&str> = text.lines().collect();
    let errors: Vec<String> = lines
        .iter()
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            [
                "fatal",
                "panic",
                "\"level\":\"error\"",
                "no space left",
                "address already in use",
            ]
            .iter()
            .any(|k| lower.contains(k))
        })
        .take(5)
        .map(|l| cut(l))
        .collect();
    let last: Vec<String> = lines[lines.len().saturating_sub(8)..]
        .iter()
        .map(|l| cut(l))
        .collect();
    if errors.is_empty() {
        last.join("\n")
    } else {
        format!(
            "{}\n(the last lines:)\n{}",
            errors.join("\n"),
            last.join("\n")
        )
    }
}

/// Bytes free on the filesystem that holds `dir` (as `df` reports them for an unprivileged
/// user), or `None` when `df` cannot tell.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)?
        .trim()
        .parse()
        .ok()
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
