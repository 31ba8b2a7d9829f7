//! Launching and stopping a flow run's process: `python -m prefect.engine`, in its own
//! process group so that stopping it also stops what the flow started.

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
