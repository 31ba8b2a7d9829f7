//! The `stratus` binary as a user runs it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_stratus");

fn admin_url() -> String {
    std::env::var("STRATUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

use stratus_store::url::with_database;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn admin() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// A fresh, empty database on the test server, dropped with this.
struct FreshDatabase {
    url: String,
    _dropped: crate::common::DroppedDatabase,
}

impl FreshDatabase {
    async fn create() -> FreshDatabase {
        let name = format!("stratus_test_{}", uuid::Uuid::new_v4().simple());
        admin()
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        FreshDatabase {
            url: with_database(&admin_url(), &name),
            _dropped: crate::common::DroppedDatabase::new(&name, None),
        }
    }
}

/// The binary with no database configured and quiet logs.
fn stratus() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("STRATUS_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env_remove("STRATUS_POSTGRES_BIN")
        .env("STRATUS_LOG", "warn");
    cmd
}

/// A running `stratus` process, stopped (SIGTERM) if a failing test leaves it running.
struct Server(Child);

impl std::ops::Deref for Server {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.0.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
        }
    }
}

/// GET /api/health over plain HTTP/1.0: (status line, body).
fn health(port: u16) -> Option<(String, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    stream
        .write_all(b"GET /api/health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

fn wait_healthy(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some((status, body)) = health(port) {
            assert!(status.contains(" 200 "), "{status}");
            assert_eq!(body.trim(), "true");
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            panic!("the server exited early ({status}): {err}");
        }
        assert!(Instant::now() < deadline, "the server did not become healthy");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the server did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn terminate(child: &mut Child) -> ExitStatus {
    signal(child, "TERM");
    wait_exit(child, Duration::from_secs(30))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A directory under the system temp dir that the `postgres` user can enter too (the
/// managed Postgres runs as that user when the tests run as root).
fn temp_dir() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("stratus-cli-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Whether a managed Postgres can run here (tests of the zero-configuration mode need
/// the server binaries, and a `postgres` user when run as root).
fn managed_postgres_possible() -> bool {
    let has_bins = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain(
            std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join("bin")),
        )
        .any(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file());
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let postgres_user = Command::new("id")
        .arg("postgres")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has_bins || (root && !postgres_user) {
        eprintln!("skipped: no initdb/pg_ctl here (or root without a postgres user)");
        return false;
    }
    true
}

fn cluster_running(data: &Path) -> bool {
    data.join("postgres/postmaster.pid").exists()
}

#[tokio::test]
async fn server_start_serves_a_configured_database_and_stops_on_sigterm() {
    let db = FreshDatabase::create().await;
    let port = free_port();
    let mut child = Server(
        stratus()
            .args(["server", "start", "--port", &port.to_string()])
            .env("STRATUS_DATABASE_URL", &db.url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_healthy(port, &mut child);
    let status = terminate(&mut child);
    assert!(status.success(), "{status:?}");
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(
        out.contains(&format!(
            "prefect config set PREFECT_API_URL=http://127.0.0.1:{port}/api"
        )),
        "{out}"
    );
}

#[tokio::test]
async fn host_and_port_come_from_the_environment_too() {
    let db = FreshDatabase::create().await;
    let port = free_port();
    let mut child = Server(
        stratus()
            .args(["server", "start"])
            .env("STRATUS_DATABASE_URL", &db.url)
            .env("STRATUS_HOST", "127.0.0.1")
            .env("STRATUS_PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_healthy(port, &mut child);
    // SIGINT (Ctrl-C) stops it as cleanly as SIGTERM.
    signal(&child, "INT");
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
}

#[test]
fn a_taken_port_is_reported_before_anything_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = stratus()
        .args(["server", "start", "--port", &port.to_string()])
        // Nothing listens there: the port is checked before the database.
        .env("STRATUS_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!("could not listen on 127.0.0.1:{port}")),
        "{}",
        text(&out)
    );
    drop(taken);
}

#[test]
fn zero_configuration_start_runs_and_stops_its_own_postgres() {
    if !managed_postgres_possible() {
        return;
    }
    let data = temp_dir();
    let port = free_port();
    let mut server = Server(
        stratus()
            .args(["server", "start", "--port", &port.to_string()])
            .env("STRATUS_DATA_DIR", &data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_healthy(port, &mut server);
    assert!(
        cluster_running(&data),
        "the managed Postgres runs under the data directory"
    );
    let recorded: u16 = std::fs::read_to_string(data.join("postgres.port"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(recorded, 0);

    // A second Stratus process joins the running cluster and leaves it running.
    let upgrade = stratus()
        .args(["database", "upgrade"])
        .env("STRATUS_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(upgrade.status.success(), "{}", text(&upgrade));
    assert!(text(&upgrade).contains(&format!("127.0.0.1:{recorded} (already running)")));
    assert!(cluster_running(&data), "the server still uses it");
    assert!(health(port).is_some());

    assert!(terminate(&mut server).success());
    assert!(
        !cluster_running(&data),
        "the managed Postgres stopped with the server"
    );

    // The next start reuses the cluster (no second initdb).
    let mut again = Server(
        stratus()
            .args(["server", "start", "--port", &port.to_string()])
            .env("STRATUS_DATA_DIR", &data)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_healthy(port, &mut again);
    assert!(terminate(&mut again).success());
    let mut out = String::new();
    again.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(!out.contains("Initialising"), "{out}");
    assert!(!cluster_running(&data));
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_cluster_left_by_a_killed_server_is_adopted_and_stopped() {
    if !managed_postgres_possible() {
        return;
    }
    let data = temp_dir();
    let port = free_port();
    let mut server = Server(
        stratus()
            .args(["server", "start", "--port", &port.to_string()])
            .env("STRATUS_DATA_DIR", &data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_healthy(port, &mut server);
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(cluster_running(&data), "SIGKILL gives no chance to stop Postgres");

    let upgrade = stratus()
        .args(["database", "upgrade"])
        .env("STRATUS_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(upgrade.status.success(), "{}", text(&upgrade));
    assert!(text(&upgrade).contains("(already running)"), "{}", text(&upgrade));
    assert!(
        !cluster_running(&data),
        "the last user stops the orphaned cluster"
    );
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn without_a_database_or_postgres_it_says_what_to_install() {
    let empty = temp_dir();
    let out = stratus()
        .args(["server", "start", "--port", &free_port().to_string()])
        .env("STRATUS_DATA_DIR", empty.join("data"))
        .env("PATH", &empty)
        .env("STRATUS_POSTGRES_BIN", &empty)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("STRATUS_DATABASE_URL"), "{err}");
    assert!(err.contains("apt-get install postgresql"), "{err}");
    assert!(err.contains("brew install postgresql"), "{err}");
    let _ = std::fs::remove_dir_all(&empty);
}

#[test]
fn malformed_configuration_names_the_variable() {
    let out = stratus()
        .args(["server", "start"])
        .env("STRATUS_PORT", "forty-two")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("STRATUS_PORT"));
}

#[tokio::test]
async fn database_reset_asks_first() {
    let db = FreshDatabase::create().await;
    let upgrade = stratus()
        .args(["database", "upgrade"])
        .env("STRATUS_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(upgrade.status.success(), "{}", text(&upgrade));
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "INSERT INTO flow (name, workspace_id) VALUES ('keep-me', '00000000-0000-4000-8000-000000000002')",
        )
        .await
        .unwrap();
    let client = &client;
    let count = move || async move {
        client
            .query_one("SELECT count(*) FROM flow", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };

    // "n" on stdin: nothing happens.
    let mut declined = stratus()
        .args(["database", "reset"])
        .env("STRATUS_DATABASE_URL", &db.url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    declined.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let out = declined.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("Are you sure"), "{}", text(&out));
    assert!(text(&out).contains("Reset aborted"), "{}", text(&out));
    assert_eq!(count().await, 1);

    // No stdin at all (as in CI): no.
    let closed = stratus()
        .args(["database", "reset"])
        .env("STRATUS_DATABASE_URL", &db.url)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!closed.status.success());
    assert_eq!(count().await, 1);

    let confirmed = stratus()
        .args(["database", "reset", "--yes"])
        .env("STRATUS_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(confirmed.status.success(), "{}", text(&confirmed));
    assert_eq!(count().await, 0);
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'flow_run'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 1, "the schema is re-applied");
}

#[tokio::test]
async fn an_unreachable_sqs_endpoint_is_reported_clearly() {
    let db = FreshDatabase::create().await;
    let out = stratus()
        .args(["server", "start", "--port", &free_port().to_string()])
        .env("STRATUS_DATABASE_URL", &db.url)
        // Nothing listens on the discard port.
        .env("STRATUS_SQS_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("STRATUS_SQS_ENDPOINT=http://127.0.0.1:9 is configured but SQS does not answer there"),
        "{stderr}"
    );
    let bad = stratus()
        .args(["server", "start"])
        .env("STRATUS_S3_ENDPOINT", "localhost:4566")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("STRATUS_S3_ENDPOINT"));
}
