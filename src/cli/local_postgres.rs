//! The Postgres Stratus manages itself when no database URL is configured: a cluster made
//! with the machine's `initdb` under the data directory, started with `pg_ctl` on a unix
//! socket in that directory and a free local TCP port, and stopped when the last Stratus
//! process using it exits.
//!
//! Two lock files beside the cluster coordinate several Stratus processes (a server and a
//! `stratus database upgrade`, say): `postgres.start.lock` is held exclusively while a
//! process initialises, starts or stops the cluster, and every process using the cluster
//! holds `postgres.users.lock` shared. On exit a process stops the cluster only if it can
//! then lock `users` exclusively, that is, if it was the last user. The kernel releases
//! the locks of a process that dies, so a cluster left running by a killed server is
//! adopted by the next Stratus process and stopped when that one exits.

use std::fs::{File, OpenOptions, TryLockError};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::system::{self, RunAs};

/// What to tell a user who has neither a database URL nor Postgres installed.
pub const INSTALL_HINT: &str = "Stratus needs PostgreSQL. Either set STRATUS_DATABASE_URL (or DATABASE_URL) \
to an existing database, e.g. postgres://user@localhost:5432/stratus, or install the PostgreSQL server \
so that `initdb` and `pg_ctl` are available and Stratus runs its own \
(Debian/Ubuntu: `apt-get install postgresql`; Fedora: `dnf install postgresql-server`; \
macOS: `brew install postgresql`), or point STRATUS_POSTGRES_BIN at the directory holding them.";

/// Where the cluster goes when Stratus runs as root and the `postgres` user cannot reach
/// the data directory (root's home is usually closed to other users).
const ROOT_FALLBACK_DIR: &str = "/var/lib/stratus/postgres";

/// A unix socket path (`<dir>/.s.PGSQL.<port>`) must fit in 107 bytes.
const MAX_SOCKET_DIR_LEN: usize = 90;

/// Attempts at starting on a free port (another program may take it in between).
const START_ATTEMPTS: u32 = 3;

/// A managed cluster this process uses; `stop` it when done.
pub struct LocalPostgres {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    run_as: Option<RunAs>,
    users: File,
    /// Whether this process started the cluster (rather than found it running).
    pub started: bool,
    pub port: u16,
    /// The `stratus` database on it.
    pub url: String,
}

/// The directory holding `initdb` and `pg_ctl`: `STRATUS_POSTGRES_BIN` if set, else the
/// first on `PATH`, else the newest of the usual install locations.
pub fn find_bin_dir() -> Result<PathBuf, String> {
    let has_both =
        |d: &Path| system::is_executable(&d.join("initdb")) && system::is_executable(&d.join("pg_ctl"));
    if let Some(dir) = std::env::var_os("STRATUS_POSTGRES_BIN").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if has_both(&dir) {
            return Ok(dir);
        }
        return Err(format!(
            "STRATUS_POSTGRES_BIN={} does not contain `initdb` and `pg_ctl`. {INSTALL_HINT}",
            dir.display()
        ));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(dir) = std::env::split_paths(&path).find(|d| has_both(d)) {
        return Ok(dir);
    }
    // (parent, prefix of the versioned entries, path of bin inside an entry)
    let versioned: &[(&str, &str, &str)] = &[
        ("/usr/lib/postgresql", "", "bin"),
        ("/usr", "pgsql-", "bin"),
        ("/opt/homebrew/opt", "postgresql@", "bin"),
        ("/usr/local/opt", "postgresql@", "bin"),
        ("/Applications/Postgres.app/Contents/Versions", "", "bin"),
    ];
    let mut found: Vec<((u32, u32), PathBuf)> = Vec::new();
    for (parent, prefix, bin) in versioned {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(version) = name.strip_prefix(prefix).and_then(parse_version) else {
                continue;
            };
            let dir = entry.path().join(bin);
            if has_both(&dir) {
                found.push((version, dir));
            }
        }
    }
    found.sort();
    if let Some((_, dir)) = found.pop() {
        return Ok(dir);
    }
    [
        "/opt/homebrew/opt/postgresql/bin",
        "/usr/local/opt/postgresql/bin",
        "/usr/local/pgsql/bin",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|d| has_both(d))
    .ok_or_else(|| INSTALL_HINT.to_string())
}

/// "15" → (15, 0), "9.6" → (9, 6); anything else is not a version directory.
fn parse_version(s: &str) -> Option<(u32, u32)> {
    let (major, minor) = s.split_once('.').unwrap_or((s, "0"));
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("could not find a free local port: {e}"))
}

/// `<parent>/<name><suffix>` for the cluster directory `<parent>/<name>`.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.with_file_name(format!("{name}{suffix}"))
}

fn open_lock(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("could not open the lock file {}: {e}", path.display()))
}

/// The cluster directory, created and usable by whoever runs Postgres.
fn cluster_dir(stratus_data_dir: &Path, run_as: Option<&RunAs>) -> Result<PathBuf, String> {
    let preferred = stratus_data_dir.join("postgres");
    let create = |dir: &Path| {
        std::fs::create_dir_all(dir).map_err(|e| format!("could not create {}: {e}", dir.display()))
    };
    let Some(user) = run_as else {
        create(&preferred)?;
        return Ok(preferred);
    };
    if preferred.join("PG_VERSION").is_file() {
        return Ok(preferred);
    }
    let fallback = PathBuf::from(ROOT_FALLBACK_DIR);
    for dir in [&preferred, &fallback] {
        let existed = dir.exists();
        if create(dir).is_ok() && user.give(dir).is_ok() && user.can_use(dir) {
            return Ok(dir.clone());
        }
        if !existed {
            let _ = std::fs::remove_dir(dir);
        }
    }
    Err(format!(
        "Stratus runs as root, so it runs Postgres as the `{}` user (Postgres refuses to run as root), \
         but that user cannot use {} nor {}. Set STRATUS_DATA_DIR to a directory it can reach, \
         run Stratus as a normal user, or set STRATUS_DATABASE_URL.",
        user.user,
        preferred.display(),
        fallback.display()
    ))
}

impl LocalPostgres {
    /// Initialises the cluster under `<stratus_data_dir>/postgres` if needed and starts
    /// it, or joins it if it is already running.
    pub fn start(stratus_data_dir: &Path) -> Result<LocalPostgres, String> {
        let bin_dir = find_bin_dir()?;
        let run_as = if system::is_root() {
            Some(RunAs::user("postgres").map_err(|e| {
                format!(
                    "Stratus runs as root and Postgres refuses to run as root, so Stratus runs it as the \
                     `postgres` user, but {e}. Create that user (useradd --system --user-group postgres), \
                     run Stratus as a normal user, or set STRATUS_DATABASE_URL."
                )
            })?)
        } else {
            None
        };
        let stratus_data_dir = std::path::absolute(stratus_data_dir)
            .map_err(|e| format!("invalid data directory {}: {e}", stratus_data_dir.display()))?;
        let data_dir = cluster_dir(&stratus_data_dir, run_as.as_ref())?;

        let start_lock = open_lock(&sibling(&data_dir, ".start.lock"))?;
        start_lock
            .lock()
            .map_err(|e| format!("could not lock {}: {e}", data_dir.display()))?;
        let users = open_lock(&sibling(&data_dir, ".users.lock"))?;
        users
            .lock_shared()
            .map_err(|e| format!("could not lock {}: {e}", data_dir.display()))?;
        let mut pg = LocalPostgres {
            bin_dir,
            data_dir,
            run_as,
            users,
            started: false,
            port: 0,
            url: String::new(),
        };
        pg.init()?;
        pg.ensure_running()?;
        drop(start_lock);
        Ok(pg)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server-level database, to create `stratus` from.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn command(&self, program: &str, args: &[&std::ffi::OsStr]) -> Command {
        let exe = self.bin_dir.join(program);
        match &self.run_as {
            Some(user) => user.command(&exe, args),
            None => {
                let mut c = Command::new(exe);
                c.args(args);
                c
            }
        }
    }

    /// Runs `initdb` into a scratch directory beside the cluster and moves it into place,
    /// so an interrupted initialisation never leaves a half-made cluster behind.
    fn init(&self) -> Result<(), String> {
        if self.data_dir.join("PG_VERSION").is_file() {
            return Ok(());
        }
        println!("Initialising a Postgres cluster in {}", self.data_dir.display());
        let scratch = sibling(&self.data_dir, ".initdb");
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch)
                .map_err(|e| format!("could not remove {}: {e}", scratch.display()))?;
        }
        std::fs::create_dir_all(&scratch)
            .map_err(|e| format!("could not create {}: {e}", scratch.display()))?;
        if let Some(user) = &self.run_as {
            user.give(&scratch)?;
        }
        let initdb = |locale: &str| {
            let cmd = self.command(
                "initdb",
                &[
                    "-D".as_ref(),
                    scratch.as_os_str(),
                    "-U".as_ref(),
                    "postgres".as_ref(),
                    "--auth=trust".as_ref(),
                    "-E".as_ref(),
                    "UTF8".as_ref(),
                    locale.as_ref(),
                ],
            );
            system::run(cmd, "initdb")
        };
        // C.UTF-8 sorts by code point whatever the machine's language; where it does
        // not exist (older macOS) fall back to plain C.
        if let Err(first) = initdb("--locale=C.UTF-8") {
            if !first.contains("locale") {
                return Err(format!("{first}\n{INSTALL_HINT}"));
            }
            initdb("--no-locale").map_err(|e| format!("{e}\n{INSTALL_HINT}"))?;
        }
        std::fs::rename(&scratch, &self.data_dir).map_err(|e| {
            format!(
                "could not move the new cluster to {} (it must be empty or missing): {e}",
                self.data_dir.display()
            )
        })
    }

    fn is_running(&self) -> bool {
        self.command(
            "pg_ctl",
            &["status".as_ref(), "-D".as_ref(), self.data_dir.as_os_str()],
        )
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
    }

    /// The port of the running postmaster (line 4 of `postmaster.pid`).
    fn running_port(&self) -> Result<u16, String> {
        let pid_file = self.data_dir.join("postmaster.pid");
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.lines().nth(3).and_then(|l| l.trim().parse().ok()))
            .ok_or_else(|| {
                format!(
                    "could not read the port of the running Postgres from {}",
                    pid_file.display()
                )
            })
    }

    fn ensure_running(&mut self) -> Result<(), String> {
        if self.is_running() {
            self.port = self.running_port()?;
        } else {
            self.port = self.start_server()?;
            self.started = true;
        }
        let record = sibling(&self.data_dir, ".port");
        if let Err(e) = std::fs::write(&record, format!("{}\n", self.port)) {
            eprintln!(
                "warning: could not record the Postgres port in {}: {e}",
                record.display()
            );
        }
        self.url = format!("postgres://postgres@127.0.0.1:{}/stratus", self.port);
        Ok(())
    }

    fn start_server(&self) -> Result<u16, String> {
        let log = self.data_dir.join("postgres.log");
        let dir = self.data_dir.to_string_lossy();
        // Too long a path for a unix socket: TCP only.
        let socket_dir = if dir.len() <= MAX_SOCKET_DIR_LEN {
            dir.as_ref()
        } else {
            ""
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
            // pg_ctl hands -o to a shell.
            let options = format!(
                "-p {port} -c listen_addresses=127.0.0.1 -k {}",
                system::shell_quote(socket_dir)
            );
            let cmd = self.command(
                "pg_ctl",
                &[
                    "start".as_ref(),
                    "-w".as_ref(),
                    "-t".as_ref(),
                    "120".as_ref(),
                    "-D".as_ref(),
                    self.data_dir.as_os_str(),
                    "-l".as_ref(),
                    log.as_os_str(),
                    "-o".as_ref(),
                    options.as_ref(),
                ],
            );
            match system::run(cmd, "pg_ctl start") {
                Ok(_) => return Ok(port),
                Err(e) => {
                    let tail = read_from(&log, log_start);
                    let port_taken = tail.contains("could not bind") || tail.contains("already in use");
                    if port_taken && attempt < START_ATTEMPTS {
                        continue;
                    }
                    return Err(format!(
                        "could not start the managed Postgres in {}: {e}\n{}\n(its log is {})",
                        self.data_dir.display(),
                        tail.trim(),
                        log.display()
                    ));
                }
            }
        }
    }

    /// Restarts the cluster on its port with `pg_ctl restart -m <mode>` (`smart`, `fast`
    /// or `immediate`), waiting until it accepts connections again. The fault tests use it.
    pub fn restart(&self, mode: &str) -> Result<(), String> {
        let cmd = self.command(
            "pg_ctl",
            &[
                "restart".as_ref(),
                "-m".as_ref(),
                mode.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-D".as_ref(),
                self.data_dir.as_os_str(),
                "-l".as_ref(),
                self.data_dir.join("postgres.log").as_os_str(),
            ],
        );
        system::run(cmd, "pg_ctl restart").map(|_| ())
    }

    /// Leaves the cluster; stops it (fast shutdown) if no other Stratus process uses it.
    pub fn stop(self) {
        let start_lock = match open_lock(&sibling(&self.data_dir, ".start.lock")) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("warning: {e}; the managed Postgres keeps running");
                return;
            }
        };
        if let Err(e) = start_lock.lock() {
            eprintln!("warning: could not lock the managed Postgres ({e}); it keeps running");
            return;
        }
        let _ = self.users.unlock();
        match self.users.try_lock() {
            Ok(()) => {
                let cmd = self.command(
                    "pg_ctl",
                    &[
                        "stop".as_ref(),
                        "-m".as_ref(),
                        "fast".as_ref(),
                        "-w".as_ref(),
                        "-D".as_ref(),
                        self.data_dir.as_os_str(),
                    ],
                );
                match system::run(cmd, "pg_ctl stop") {
                    Ok(_) => println!("Stopped the managed Postgres."),
                    Err(e) if !self.is_running() => tracing::debug!("{e}"),
                    Err(e) => eprintln!("warning: {e}"),
                }
            }
            Err(TryLockError::WouldBlock) => {
                println!("The managed Postgres keeps running: another Stratus process uses it.")
            }
            Err(TryLockError::Error(e)) => {
                eprintln!("warning: could not lock the managed Postgres ({e}); it keeps running")
            }
        }
    }
}

/// The text of `path` from byte `offset` on (what a failed start appended to the log).
fn read_from(path: &Path, offset: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        if f.seek(SeekFrom::Start(offset)).is_ok() {
            let mut bytes = Vec::new();
            let _ = f.take(64 * 1024).read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_install_directories() {
        assert_eq!(parse_version("15"), Some((15, 0)));
        assert_eq!(parse_version("9.6"), Some((9, 6)));
        assert_eq!(parse_version("main"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn files_beside_the_cluster() {
        let dir = Path::new("/var/lib/stratus/postgres");
        assert_eq!(
            sibling(dir, ".start.lock"),
            PathBuf::from("/var/lib/stratus/postgres.start.lock")
        );
        assert_eq!(
            sibling(dir, ".port"),
            PathBuf::from("/var/lib/stratus/postgres.port")
        );
    }

    #[test]
    fn read_from_an_offset() {
        let path = std::env::temp_dir().join(format!("stratus-read-from-{}", std::process::id()));
        std::fs::write(&path, "old line\nnew line\n").unwrap();
        assert_eq!(read_from(&path, 9), "new line\n");
        assert_eq!(read_from(&path.with_extension("missing"), 0), "");
        let _ = std::fs::remove_file(&path);
    }
}
