//! The few operating-system facts the managed Postgres needs: where programs are, whether
//! we are root, and how to run a program as an unprivileged user.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Searched after `PATH`, which can be minimal under service managers and in tests.
const SYSTEM_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A system program, on `PATH` or in the usual system directories.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SYSTEM_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions, touches no memory and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Quotes one word for a POSIX shell.
pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Runs programs as another (unprivileged) user, from a root process.
#[derive(Debug, Clone)]
pub struct RunAs {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    how: Switch,
}

#[derive(Debug, Clone)]
enum Switch {
    Runuser(PathBuf),
    Setpriv(PathBuf),
    Su(PathBuf),
}

impl RunAs {
    /// The account `user`, if it exists, and a way to switch to it (runuser, setpriv or su).
    pub fn user(user: &str) -> Result<RunAs, String> {
        let id = |flag: &str| -> Option<u32> {
            let out = Command::new(find_program("id")?)
                .arg(flag)
                .arg(user)
                .output()
                .ok()?;
            if !out.status.success() {
                return None;
            }
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        let (Some(uid), Some(gid)) = (id("-u"), id("-g")) else {
            return Err(format!("there is no `{user}` user"));
        };
        let how = if let Some(p) = find_program("runuser") {
            Switch::Runuser(p)
        } else if let Some(p) = find_program("setpriv") {
            Switch::Setpriv(p)
        } else if let Some(p) = find_program("su") {
            Switch::Su(p)
        } else {
            return Err(format!(
                "none of runuser, setpriv or su is available to run Postgres as `{user}`"
            ));
        };
        Ok(RunAs {
            user: user.to_string(),
            uid,
            gid,
            how,
        })
    }

    /// `program args...` run as this user, from `/` (the caller's directory may be closed
    /// to it).
    pub fn command<S: AsRef<OsStr>>(&self, program: &Path, args: &[S]) -> Command {
        let mut cmd = match &self.how {
            Switch::Runuser(runuser) => {
                let mut c = Command::new(runuser);
                c.arg("-u").arg(&self.user).arg("--").arg(program).args(args);
                c
            }
            Switch::Setpriv(setpriv) => {
                let mut c = Command::new(setpriv);
                c.arg(format!("--reuid={}", self.uid))
                    .arg(format!("--regid={}", self.gid))
                    .arg("--init-groups")
                    .arg("--")
                    .arg(program)
                    .args(args);
                c
            }
            Switch::Su(su) => {
                let line: Vec<String> = std::iter::once(program.as_os_str())
                    .chain(args.iter().map(|a| a.as_ref()))
                    .map(|w| shell_quote(&w.to_string_lossy()))
                    .collect();
                let mut c = Command::new(su);
                c.arg("-s")
                    .arg("/bin/sh")
                    .arg(&self.user)
                    .arg("-c")
                    .arg(line.join(" "));
                c
            }
        };
        cmd.current_dir("/");
        cmd
    }

    /// Makes `dir` (just created by root) belong to this user.
    pub fn give(&self, dir: &Path) -> Result<(), String> {
        std::os::unix::fs::chown(dir, Some(self.uid), Some(self.gid))
            .map_err(|e| format!("could not hand {} to `{}`: {e}", dir.display(), self.user))
    }

    /// Whether this user can create files in `dir` (every parent must let it through).
    pub fn can_use(&self, dir: &Path) -> bool {
        let Some(test) = find_program("test") else {
            return false;
        };
        let d = dir.as_os_str();
        self.command(
            &test,
            &[OsStr::new("-w"), d, OsStr::new("-a"), OsStr::new("-x"), d],
        )
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
    }
}

/// Runs `cmd` to completion; on failure the error carries its output.
pub fn run(mut cmd: Command, what: &str) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("could not run {what}: {e}"))?;
    if !out.status.success() {
        let mut detail = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !stderr.trim().is_empty() {
            if !detail.is_empty() {
                detail.push('\n');
            }
            detail.push_str(stderr.trim());
        }
        return Err(format!("{what} failed ({}): {detail}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn finds_system_programs() {
        assert!(find_program("sh").is_some());
        assert!(find_program("no-such-program-stratus").is_none());
    }
}
