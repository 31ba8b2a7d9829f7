//! Launching and stopping a flow run's process: `python -m prefect.engine`, in its own
//! process group so that stopping it also stops what the flow started. The process dies
//! with the agent: a run whose agent is gone is marked Crashed by the server once the
//! agent's heartbeats stop, so it must not go on running (and reporting) unsupervised, nor
//! run beside a second attempt.

use std::path::Path;
use std::time::Duration;

use tokio::process::{Child, Command};

/// How long a cancelled flow gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(10);

pub enum Ended {
    Exited(i32),
    Cancelled,
    Killed,
}

pub fn spawn(python: &str, dir: &Path, env: &[(String, String)]) -> Result<Child, String> {
    let mut cmd = Command::new(python);
    cmd.args(["-m", "prefect.engine"])
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: getpid is async-signal-safe and called before the fork.
    let agent = unsafe { libc::getpid() };
    // SAFETY: between fork and exec the closure only calls async-signal-safe functions
    // (prctl, getppid, _exit) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The agent may have died before the signal was asked for.
            if libc::getppid() != agent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| format!("could not start {python} -m prefect.engine: {e}"))
}

pub fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(_) => -1,
    }
}

/// SIGTERM to the process group, then SIGKILL if it is still there after the grace.
pub async fn terminate(child: &mut Child) {
    let Some(pid) = child.id() else { return };
    let group = -(pid as i32);
    // SAFETY: kill(2) with a negative pid signals that process group; no memory is shared.
    unsafe {
        libc::kill(group, libc::SIGTERM);
    }
    if tokio::time::timeout(TERM_GRACE, child.wait()).await.is_err() {
        // SAFETY: as above.
        unsafe {
            libc::kill(group, libc::SIGKILL);
        }
        let _ = child.wait().await;
    }
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if ok && !name.is_empty() => name.to_string(),
        _ => "localhost".to_string(),
    }
}
