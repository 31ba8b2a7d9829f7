//! The `stratus` binary as a user runs it.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_stratus");

fn admin_url() -> String {
    std::env::var("STRATUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh, empty database on the test server; returns its URL.
async fn fresh_database() -> String {
    let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let name = format!("stratus_test_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let base = admin_url();
    let (base, query) = base
        .split_once('?')
        .map(|(b, q)| (b.to_string(), format!("?{q}")))
        .unwrap_or((base, String::new()));
    let cut = base.rfind('/').unwrap();
    format!("{}/{name}{query}", &base[..cut])
}

fn command() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("STRATUS_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env("STRATUS_LOG", "warn");
    cmd
}

async fn wait_healthy(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Read;
            let _ = stream.write_all(b"GET /api/health HTTP/1.0\r\nHost: x\r\n\r\n");
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response);
            if response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200") {
                assert!(response.ends_with("true"), "{response}");
                return;
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "the server exited early");
        assert!(Instant::now() < deadline, "the server did not become healthy");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn server_start_serves_a_configured_database_and_stops_on_sigterm() {
    let url = fresh_database().await;
    let port = free_port();
    let mut child = command()
        .args(["server", "start", "--port", &port.to_string()])
        .env("STRATUS_DATABASE_URL", &url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_healthy(port, &mut child).await;
    let status = terminate(&mut child);
    assert!(status.success(), "{status:?}");
    let mut out = String::new();
    use std::io::Read;
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(
        out.contains(&format!(
            "prefect config set PREFECT_API_URL=http://127.0.0.1:{port}/api"
        )),
        "{out}"
    );
}

#[tokio::test]
async fn zero_configuration_start_runs_and_stops_its_own_postgres() {
    let data = tempfile_dir();
    let port = free_port();
    let mut child = command()
        .args(["server", "start", "--port", &port.to_string()])
        .env("STRATUS_DATA_DIR", &data)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_healthy(port, &mut child).await;
    let pid_file = data.join("postgres/postmaster.pid");
    assert!(
        pid_file.exists(),
        "the managed Postgres runs under the data directory"
    );
    assert!(terminate(&mut child).success());
    assert!(!pid_file.exists(), "the managed Postgres stopped with the server");
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn without_a_database_or_postgres_it_says_what_to_install() {
    let empty = tempfile_dir();
    let out = command()
        .args(["server", "start"])
        .env("STRATUS_DATA_DIR", empty.join("data"))
        .env("STRATUS_POSTGRES_BIN", &empty)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("STRATUS_DATABASE_URL"), "{err}");
    assert!(err.contains("apt-get install postgresql"), "{err}");
}

#[test]
fn malformed_configuration_names_the_variable() {
    let out = command()
        .args(["server", "start"])
        .env("STRATUS_PORT", "forty-two")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("STRATUS_PORT"));
}

#[tokio::test]
async fn database_reset_asks_first() {
    let url = fresh_database().await;
    let upgrade = command()
        .args(["database", "upgrade"])
        .env("STRATUS_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        upgrade.status.success(),
        "{}",
        String::from_utf8_lossy(&upgrade.stderr)
    );
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute("INSERT INTO flow (name) VALUES ('keep-me')")
        .await
        .unwrap();
    let mut declined = command()
        .args(["database", "reset"])
        .env("STRATUS_DATABASE_URL", &url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    declined.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let out = declined.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Reset aborted"));
    let flows: i64 = client
        .query_one("SELECT count(*) FROM flow", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(flows, 1);

    let confirmed = command()
        .args(["database", "reset", "--yes"])
        .env("STRATUS_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        confirmed.status.success(),
        "{}",
        String::from_utf8_lossy(&confirmed.stderr)
    );
    let flows: i64 = client
        .query_one("SELECT count(*) FROM flow", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(flows, 0);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("stratus-cli-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
