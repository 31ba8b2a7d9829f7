//! The Postgres Stratus manages itself when no database URL is configured: a cluster made
//! with the machine's `initdb` under the data directory, started with `pg_ctl` on a free
//! local port, and stopped when Stratus exits.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What to tell a user who has neither a database URL nor Postgres installed.
pub const INSTALL_HINT: &str = "Stratus needs PostgreSQL. Either set STRATUS_DATABASE_URL (or DATABASE_URL) \
to an existing database, e.g. postgres://user@localhost:5432/stratus, or install PostgreSQL so that \
`initdb` and `pg_ctl` are available and Stratus will run its own \
(Debian/Ubuntu: `apt-get install postgresql`; Fedora: `dnf install postgresql-server`; macOS: `brew install postgresql`).";

/// A cluster this process started (and will stop) or found running.
pub struct LocalPostgres {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    run_as: Option<String>,
    started_here: bool,
    pub url: String,
}

/// Finds the directory holding `initdb` and `pg_ctl`: `STRATUS_POSTGRES_BIN` if set, else
/// on PATH, else the newest `/usr/lib/postgresql/<version>/bin`.
pub fn find_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("STRATUS_POSTGRES_BIN").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return (dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()).then_some(dir);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    // `id -u` spares a libc dependency for one number.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("could not find a free local port: {e}"))
}

impl LocalPostgres {
    /// Initialises the cluster if needed and starts it (or attaches to it if running).
    pub fn start(stratus_data_dir: &Path) -> Result<LocalPostgres, String> {
        let bin_dir = find_bin_dir().ok_or_else(|| INSTALL_HINT.to_string())?;
        // Postgres refuses to run as root: run it as the `postgres` system user, in a
        // directory that user can reach.
        let run_as = if is_root() {
            let exists = Command::new("id")
                .arg("postgres")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if !exists {
                return Err(format!(
                    "Stratus is running as root and PostgreSQL refuses to run as root, but there is no `postgres` user to run it as. \
                     Create one (useradd --system postgres), run Stratus as a normal user, or set STRATUS_DATABASE_URL. {INSTALL_HINT}"
                ));
            }
            Some("postgres".to_string())
        } else {
            None
        };
        let data_dir = match &run_as {
            Some(_) if stratus_data_dir.starts_with("/root") => PathBuf::from("/var/lib/stratus/postgres"),
            _ => stratus_data_dir.join("postgres"),
        };
        let mut pg = LocalPostgres {
            bin_dir,
            data_dir,
            run_as,
            started_here: false,
            url: String::new(),
        };
        pg.init()?;
        pg.ensure_running()?;
        Ok(pg)
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin_dir.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn run(&self, mut cmd: Command, what: &str) -> Result<String, String> {
        let out = cmd.output().map_err(|e| format!("could not run {what}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{what} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn init(&self) -> Result<(), String> {
        if self.data_dir.join("PG_VERSION").is_file() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.data_dir)
            .map_err(|e| format!("could not create {}: {e}", self.data_dir.display()))?;
        if let Some(user) = &self.run_as {
            self.run(
                {
                    let mut c = Command::new("chown");
                    c.arg("-R").arg(format!("{user}:")).arg(&self.data_dir);
                    c
                },
                "chown of the Postgres data directory",
            )?;
        }
        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(&self.data_dir).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-instructions",
        ]);
        self.run(cmd, "initdb")?;
        Ok(())
    }

    fn port_file(&self) -> PathBuf {
        self.data_dir.join("stratus.port")
    }

    fn is_running(&self) -> bool {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("status").arg("-D").arg(&self.data_dir);
        cmd.output().map(|o| o.status.success()).unwrap_or(false)
    }

    fn ensure_running(&mut self) -> Result<(), String> {
        let port = match std::fs::read_to_string(self.port_file())
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            Some(port) if self.is_running() => port,
            _ => {
                let port = free_port()?;
                let log = self.data_dir.join("postgres.log");
                let mut cmd = self.command("pg_ctl");
                cmd.arg("start")
                    .arg("-w")
                    .arg("-D")
                    .arg(&self.data_dir)
                    .arg("-l")
                    .arg(&log)
                    .arg("-o")
                    .arg(format!(
                        "-p {port} -c listen_addresses=127.0.0.1 -k {}",
                        self.data_dir.display()
                    ));
                self.run(cmd, "pg_ctl start")?;
                std::fs::write(self.port_file(), port.to_string())
                    .map_err(|e| format!("could not record the Postgres port: {e}"))?;
                self.started_here = true;
                port
            }
        };
        self.url = format!("postgres://postgres@127.0.0.1:{port}/stratus");
        Ok(())
    }

    /// The server-level URL used to create the `stratus` database.
    pub fn admin_url(&self) -> String {
        self.url.trim_end_matches("/stratus").to_string() + "/postgres"
    }

    /// Stops the cluster if this process started it.
    pub fn stop(&self) {
        if !self.started_here {
            return;
        }
        let mut cmd = self.command("pg_ctl");
        cmd.arg("stop")
            .arg("-m")
            .arg("fast")
            .arg("-D")
            .arg(&self.data_dir);
        if let Err(e) = self.run(cmd, "pg_ctl stop") {
            eprintln!("warning: {e}");
        }
    }
}

/// Creates the database named in `url` on the server at `admin_url` if it is missing.
pub async fn ensure_database(admin_url: &str, name: &str) -> Result<(), String> {
    let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("could not connect to the local Postgres: {e}"))?;
    tokio::spawn(conn);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(|e| e.to_string())?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .map_err(|e| format!("could not create database {name}: {e}"))?;
    }
    Ok(())
}
