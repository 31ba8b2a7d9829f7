//! Each function of the template as Lambda runs it: its own process, started from the
//! real function binary, pulling its invocations from a Lambda Runtime API. The Runtime
//! API (and the Invoke API the gateway and the event sources call) is `cargo lambda
//! watch --only-lambda-apis`, one emulator per function, so a function's instance takes
//! one invocation at a time, as on Lambda.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use super::template::Function;

/// Lambda's invocation payload limit (synchronous invocations, request and response).
pub const PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

/// A function's name on the emulator's Invoke API (its default function).
const NAME: &str = "_";

pub struct Instance {
    pub id: String,
    pub timeout: Duration,
    invoke_url: String,
    http: reqwest::Client,
    // Killed on drop; the function's process with its supervisor.
    _emulator: Child,
    supervisor: tokio::task::JoinHandle<()>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

#[derive(Debug)]
pub enum InvokeError {
    /// The function raised an error or exited (Lambda's `X-Amz-Function-Error`).
    Function(String),
    /// No answer within the function's timeout.
    Timeout,
    /// The answer is larger than Lambda returns.
    TooLarge,
    /// The emulator itself did not answer.
    Unreachable(String),
}

pub struct Launch<'a> {
    pub cargo_lambda: &'a Path,
    pub binaries: &'a Path,
    pub template_dir: &'a Path,
    /// A folder with a one-line Cargo package: cargo-lambda reads a manifest where it runs,
    /// even when it only serves the APIs.
    pub manifest_dir: &'a Path,
    /// The environment every function gets over the template's (database, endpoints...).
    pub env: &'a BTreeMap<String, String>,
}

impl Launch<'_> {
    /// The binary a function runs: its member's package name, or the one its build
    /// properties name.
    pub fn binary(&self, f: &Function) -> Result<PathBuf, String> {
        let name = match &f.binary {
            Some(b) => b.clone(),
            None => package_name(&self.template_dir.join(&f.code_uri).join("Cargo.toml"))?,
        };
        let path = self.binaries.join(&name);
        if !path.is_file() {
            return Err(format!(
                "{}: {} is not built (run `cargo build --workspace --bins`, or pass --functions-dir)",
                f.id,
                path.display()
            ));
        }
        Ok(path)
    }

    pub async fn start(&self, f: &Function) -> Result<Instance, String> {
        let binary = self.binary(f)?;
        let port = free_port()?;
        let mut emulator = Command::new(self.cargo_lambda);
        emulator
            .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P"])
            .arg(port.to_string());
        // No --timeout: cargo-lambda applies it to an idle instance's wait for its next
        // invocation too, which then fails and ends the instance. The gateway and the
        // event sources bound each invocation by the function's timeout themselves.
        let mut emulator = emulator
            .current_dir(self.manifest_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                format!(
                    "could not start {} ({e}); install it with `pip install cargo-lambda`",
                    self.cargo_lambda.display()
                )
            })?;
        prefix_output(&format!("{} emulator", f.id), &mut emulator);
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        wait_until_listening(port, &f.id).await?;
        let mut command = Command::new(&binary);
        command
            .env_clear()
            .envs(&f.env)
            // A developer's STRATUS_* settings win over the template's, as a deploy's
            // parameters would.
            .envs(std::env::vars().filter(|(k, _)| keep_from_host(k)))
            .envs(self.env)
            .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt"))
            .env("AWS_LAMBDA_FUNCTION_NAME", &f.id)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", f.memory_mb.to_string())
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", f.id))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut function = command
            .spawn()
            .map_err(|e| format!("could not start {} ({}): {e}", f.id, binary.display()))?;
        prefix_output(&f.id, &mut function);
        let id = f.id.clone();
        // Lambda replaces an instance that dies (a crash, an out-of-memory kill) with a
        // fresh one, a cold start, on the next invocation.
        let supervisor = tokio::spawn(async move {
            loop {
                let status = function.wait().await;
                tracing::warn!(function = %id, ?status, "the function's process ended; starting a new instance");
                tokio::time::sleep(Duration::from_millis(200)).await;
                match command.spawn() {
                    Ok(mut next) => {
                        prefix_output(&id, &mut next);
                        function = next;
                    }
                    Err(e) => {
                        tracing::error!(function = %id, "could not start a new instance: {e}");
                        return;
                    }
                }
            }
        });
        Ok(Instance {
            id: f.id.clone(),
            timeout: Duration::from_secs(f.timeout_seconds),
            invoke_url: format!("{base}/2015-03-31/functions/{NAME}/invocations"),
            http,
            _emulator: emulator,
            supervisor,
        })
    }
}

/// What a function inherits from the emulator's own environment: the system's basics and
/// the AWS SDK's settings, not the developer's whole shell. The database URL is not among
/// them: functions read it from the stack's secret.
fn keep_from_host(key: &str) -> bool {
    if matches!(key, "STRATUS_DATABASE_URL" | "DATABASE_URL") {
        return false;
    }
    matches!(
        key,
        "PATH" | "HOME" | "TZ" | "LANG" | "TMPDIR" | "SSL_CERT_FILE" | "SSL_CERT_DIR"
    ) || key.starts_with("AWS_")
        || key.starts_with("STRATUS_")
}

impl Instance {
    /// A synchronous invocation (`RequestResponse`), as API Gateway and the event source
    /// mappings make them.
    pub async fn invoke(&self, event: &Value) -> Result<Value, InvokeError> {
        let body = serde_json::to_vec(event).map_err(|e| InvokeError::Unreachable(e.to_string()))?;
        let res = self
            .http
            .post(&self.invoke_url)
            .header("content-type", "application/json")
            .timeout(self.timeout + Duration::from_secs(2))
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    InvokeError::Timeout
                } else {
                    InvokeError::Unreachable(e.to_string())
                }
            })?;
        let failed = res.headers().get("x-amz-function-error").is_some() || !res.status().is_success();
        let status = res.status();
        let bytes = res
            .bytes()
            .await
            .map_err(|e| InvokeError::Unreachable(e.to_string()))?;
        if failed {
            let text = String::from_utf8_lossy(&bytes);
            return Err(if status.as_u16() == 504 || text.contains("timed out") {
                InvokeError::Timeout
            } else {
                InvokeError::Function(format!("{status}: {text}"))
            });
        }
        if bytes.len() > PAYLOAD_LIMIT {
            return Err(InvokeError::TooLarge);
        }
        serde_json::from_slice(&bytes).map_err(|e| InvokeError::Function(format!("not JSON ({e})")))
    }
}

/// Writes the package cargo-lambda wants to find where it runs.
pub fn manifest_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("stratus-emulate-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("src"))
        .and_then(|_| {
            std::fs::write(
                dir.join("Cargo.toml"),
                "[package]\nname = \"emulated\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n[workspace]\n",
            )
        })
        .and_then(|_| std::fs::write(dir.join("src/main.rs"), "fn main() {}\n"))
        .map_err(|e| format!("could not write {}: {e}", dir.display()))?;
    Ok(dir)
}

fn package_name(manifest: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| format!("could not read {}: {e}", manifest.display()))?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package {
            if let Some(value) = line
                .strip_prefix("name")
                .map(str::trim)
                .and_then(|l| l.strip_prefix('='))
            {
                return Ok(value.trim().trim_matches('"').to_string());
            }
        }
    }
    Err(format!("{} names no package", manifest.display()))
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

async fn wait_until_listening(port: u16, id: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    // A connection is enough: any HTTP path of the emulator may wait for the function.
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if Instant::now() > deadline {
            return Err(format!(
                "{id}: the Lambda emulator did not listen on port {port} within 30 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Copies a child's output to ours, each line prefixed with its name.
/// cargo-lambda's own INFO lines (the variables it expects, which the emulator sets) are
/// left out.
fn prefix_output(name: &str, child: &mut Child) {
    fn copy(name: String, from: impl AsyncRead + Unpin + Send + 'static) {
        tokio::spawn(async move {
            let mut lines = BufReader::new(from).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if !line.starts_with(" INFO") {
                    println!("[{name}] {line}");
                }
            }
        });
    }
    if let Some(out) = child.stdout.take() {
        copy(name.to_string(), out);
    }
    if let Some(err) = child.stderr.take() {
        copy(name.to_string(), err);
    }
}
