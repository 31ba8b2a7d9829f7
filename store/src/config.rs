//! Configuration, read once from environment variables at start.

use std::env;
use std::path::PathBuf;

/// Why the configuration could not be read; names the variable.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone)]
pub struct Settings {
    /// `STRATUS_DATABASE_URL`, falling back to `DATABASE_URL`.
    pub database_url: Option<String>,
    /// `STRATUS_DATABASE_POOL_SIZE`, default 16.
    pub pool_size: usize,
    /// `STRATUS_HOST`, default 127.0.0.1.
    pub host: String,
    /// `STRATUS_PORT`, default 4200.
    pub port: u16,
    /// `STRATUS_DATA_DIR`, default `$XDG_DATA_HOME/stratus` or `~/.local/share/stratus`.
    pub data_dir: PathBuf,
    /// `STRATUS_TASK_RUN_TAG_CONCURRENCY_SLOT_WAIT_SECONDS`, default 30 (Prefect's default).
    pub tag_concurrency_slot_wait_seconds: i64,
    /// `STRATUS_LOG_RETENTION_DAYS`, default 30; 0 keeps logs forever.
    pub log_retention_days: i64,
    /// `STRATUS_STATE_RETENTION_DAYS`, default 90: older state rows of finished runs are
    /// pruned (a run's current state is always kept); 0 keeps them forever.
    pub state_retention_days: i64,
    /// `STRATUS_SCHEDULER_INTERVAL_SECONDS`, default 5: how often the local server's
    /// scheduler ticks (creating scheduled runs, marking late ones).
    pub scheduler_interval_seconds: u64,
    /// `STRATUS_SQS_ENDPOINT`: a URL (LocalStack) or `aws` (the SDK's own endpoint). Unset:
    /// the work pools' queues are served from Postgres.
    pub sqs_endpoint: Option<AwsEndpoint>,
    /// `STRATUS_QUEUE_PREFIX`, default `stratus-pool-`: SQS queues are `<prefix><pool id>`.
    pub queue_prefix: String,
    /// `STRATUS_S3_ENDPOINT`: a URL or `aws`. Unset: flow code goes to `storage_dir`.
    pub s3_endpoint: Option<AwsEndpoint>,
    /// `STRATUS_S3_BUCKET`, default `stratus-flow-code`.
    pub s3_bucket: String,
    /// `STRATUS_STORAGE_DIR`, default `<data dir>/storage`: flow code without S3.
    pub storage_dir: PathBuf,
    /// `STRATUS_UI_URL`: where people open the web UI, for the links in notifications.
    /// Unset: this server's own address ([`Settings::ui_url`]).
    pub ui_url: Option<String>,
    /// `STRATUS_AUTH`: `required` (every route but health and version needs an API key or a
    /// UI session) or `open`. Default: open only for a server listening on a loopback
    /// address outside Lambda, as `prefect server start` is; required everywhere else.
    pub auth: AuthMode,
    /// `STRATUS_AUTH_CACHE_SECONDS`, default 5: how long a verified key or session is
    /// trusted without asking Postgres again, so the longest a revoked key keeps working.
    pub auth_cache_seconds: u64,
    /// `STRATUS_UI_SESSION_HOURS`, default 12: how long a web UI sign-in lasts.
    pub ui_session_hours: i64,
    /// `STRATUS_CORS_ORIGINS`: comma-separated origins (`https://app.example.com`) whose
    /// pages may call the API from a browser. Default: none.
    pub cors_origins: Vec<String>,
    /// `STRATUS_ALLOWED_HOSTS`: comma-separated host names the server answers to besides
    /// its own (`localhost`, loopback addresses, `STRATUS_HOST`). An open server checks
    /// the Host header against them, so that a DNS-rebound name cannot reach it.
    pub allowed_hosts: Vec<String>,
    /// `STRATUS_ENCRYPTION_KEYS` (`id:secret,...`, the first seals; `crate::keyring`). Unset:
    /// on AWS the secret `STRATUS_ENCRYPTION_KEYS_SECRET_ARN` names, locally the key file
    /// in the data folder ([`Settings::keyring`]).
    pub encryption_keys: Option<std::sync::Arc<crate::keyring::Keyring>>,
    /// `STRATUS_NOTIFICATIONS_PRIVATE_URLS`: `allow` (each block's `allow_private_urls`
    /// decides, as in Prefect) or `deny` (no notification reaches a private address,
    /// whatever the block says). Default: deny when keys are required, so that a
    /// developer key cannot aim webhooks at the network the server runs in.
    pub notifications_private_urls: bool,
}

/// Whether callers must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Required,
    Open,
}

impl AuthMode {
    /// Required unless said otherwise, except for a loopback server outside Lambda.
    pub fn from_env(host: &str) -> Result<Self, ConfigError> {
        match non_empty("STRATUS_AUTH").map(|v| v.trim().to_ascii_lowercase()) {
            Some(v) if v == "required" => Ok(AuthMode::Required),
            Some(v) if v == "open" => Ok(AuthMode::Open),
            Some(v) => Err(ConfigError(format!(
                "STRATUS_AUTH={v:?} is not valid: expected `required` or `open`"
            ))),
            None if non_empty("AWS_LAMBDA_FUNCTION_NAME").is_some() || !is_loopback(host) => {
                Ok(AuthMode::Required)
            }
            None => Ok(AuthMode::Open),
        }
    }
}

/// Whether `host` (a listen address or a Host header's name) can only be reached from
/// this machine.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// `STRATUS_NOTIFICATIONS_PRIVATE_URLS`, allowed by default only on an open server.
fn notifications_private_urls(auth: AuthMode) -> Result<bool, ConfigError> {
    match non_empty("STRATUS_NOTIFICATIONS_PRIVATE_URLS").map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(auth == AuthMode::Open),
        Some(v) if v == "allow" => Ok(true),
        Some(v) if v == "deny" => Ok(false),
        Some(v) => Err(ConfigError(format!(
            "STRATUS_NOTIFICATIONS_PRIVATE_URLS={v:?} is not valid: expected `allow` or `deny`"
        ))),
    }
}

fn list_var(name: &str) -> Vec<String> {
    non_empty(name)
        .map(|raw| {
            raw.split(',')
                .map(|s| s.trim().trim_end_matches('/').to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Where an AWS service is: the SDK's default endpoint, or an override such as LocalStack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsEndpoint {
    Aws,
    Url(String),
}

impl AwsEndpoint {
    fn parse(name: &str, raw: &str) -> Result<Self, ConfigError> {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("aws") {
            return Ok(AwsEndpoint::Aws);
        }
        if (raw.starts_with("http://") || raw.starts_with("https://")) && raw.len() > "https://".len() {
            return Ok(AwsEndpoint::Url(raw.trim_end_matches('/').to_string()));
        }
        Err(ConfigError(format!(
            "{name}={raw:?} is not valid: expected an http(s) URL such as http://127.0.0.1:4566, or `aws`"
        )))
    }

    /// The override URL, if any.
    pub fn url(&self) -> Option<&str> {
        match self {
            AwsEndpoint::Aws => None,
            AwsEndpoint::Url(u) => Some(u),
        }
    }
}

impl std::fmt::Display for AwsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AwsEndpoint::Aws => f.write_str("aws"),
            AwsEndpoint::Url(u) => f.write_str(u),
        }
    }
}

fn endpoint_var(name: &str) -> Result<Option<AwsEndpoint>, ConfigError> {
    non_empty(name)
        .map(|raw| AwsEndpoint::parse(name, &raw))
        .transpose()
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let database_url = non_empty("STRATUS_DATABASE_URL").or_else(|| non_empty("DATABASE_URL"));
        let data_dir = non_empty("STRATUS_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(default_data_dir);
        let queue_prefix = non_empty("STRATUS_QUEUE_PREFIX").unwrap_or_else(|| "stratus-pool-".into());
        // SQS names: up to 80 of [A-Za-z0-9_-], and the pool id takes 36.
        if queue_prefix.len() > 44
            || !queue_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError(format!(
                "STRATUS_QUEUE_PREFIX={queue_prefix:?} is not valid: at most 44 letters, digits, '-' or '_'"
            )));
        }
        let ui_url = match non_empty("STRATUS_UI_URL") {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                Some(url.trim_end_matches('/').to_string())
            }
            Some(url) => {
                return Err(ConfigError(format!(
                    "STRATUS_UI_URL={url:?} is not valid: expected an http(s) URL such as https://stratus.example.com"
                )))
            }
            None => None,
        };
        let host = non_empty("STRATUS_HOST").unwrap_or_else(|| "127.0.0.1".to_string());
        let auth = AuthMode::from_env(&host)?;
        let notifications_private_urls = notifications_private_urls(auth)?;
        Ok(Settings {
            notifications_private_urls,
            database_url,
            pool_size: parse_var("STRATUS_DATABASE_POOL_SIZE", 16)?,
            auth,
            auth_cache_seconds: parse_var("STRATUS_AUTH_CACHE_SECONDS", 5)?,
            ui_session_hours: parse_var("STRATUS_UI_SESSION_HOURS", 12)?,
            cors_origins: list_var("STRATUS_CORS_ORIGINS"),
            allowed_hosts: list_var("STRATUS_ALLOWED_HOSTS"),
            encryption_keys: non_empty("STRATUS_ENCRYPTION_KEYS")
                .map(|raw| crate::keyring::Keyring::parse(&raw).map(std::sync::Arc::new))
                .transpose()
                .map_err(|e| ConfigError(format!("STRATUS_ENCRYPTION_KEYS is not valid: {e}")))?,
            host,
            port: parse_var("STRATUS_PORT", 4200)?,
            ui_url,
            storage_dir: non_empty("STRATUS_STORAGE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| data_dir.join("storage")),
            data_dir,
            tag_concurrency_slot_wait_seconds: parse_var(
                "STRATUS_TASK_RUN_TAG_CONCURRENCY_SLOT_WAIT_SECONDS",
                30,
            )?,
            log_retention_days: parse_var("STRATUS_LOG_RETENTION_DAYS", 30)?,
            state_retention_days: parse_var("STRATUS_STATE_RETENTION_DAYS", 90)?,
            scheduler_interval_seconds: parse_var("STRATUS_SCHEDULER_INTERVAL_SECONDS", 5)?,
            sqs_endpoint: endpoint_var("STRATUS_SQS_ENDPOINT")?,
            queue_prefix,
            s3_endpoint: endpoint_var("STRATUS_S3_ENDPOINT")?,
            s3_bucket: non_empty("STRATUS_S3_BUCKET").unwrap_or_else(|| "stratus-flow-code".into()),
        })
    }

    /// Where people open the web UI: `STRATUS_UI_URL`, else the address a browser on this
    /// machine reaches the server at.
    pub fn ui_url(&self) -> String {
        if let Some(url) = &self.ui_url {
            return url.clone();
        }
        let host = match self.host.as_str() {
            "0.0.0.0" | "" => "127.0.0.1",
            "::" => "::1",
            h => h,
        };
        if host.contains(':') && !host.starts_with('[') {
            format!("http://[{host}]:{}", self.port)
        } else {
            format!("http://{host}:{}", self.port)
        }
    }

    /// The listen address given on the command line (`--host`): the defaults that follow
    /// the address (auth, private notification URLs) follow it.
    pub fn set_host(&mut self, host: String) -> Result<(), ConfigError> {
        self.host = host;
        self.auth = AuthMode::from_env(&self.host)?;
        self.notifications_private_urls = notifications_private_urls(self.auth)?;
        Ok(())
    }

    /// Where the local server keeps its encryption key when none is configured.
    pub fn key_file(&self) -> PathBuf {
        self.data_dir.join("encryption-keys")
    }

    /// The keys block data is sealed with: the configured ones, else (outside Lambda) the
    /// key file in the data folder, made on first use.
    pub fn keyring(&self) -> Result<std::sync::Arc<crate::keyring::Keyring>, ConfigError> {
        if let Some(k) = &self.encryption_keys {
            return Ok(k.clone());
        }
        if non_empty("AWS_LAMBDA_FUNCTION_NAME").is_some() {
            return Err(ConfigError(
                "no encryption key: set STRATUS_ENCRYPTION_KEYS_SECRET_ARN (the template does) or STRATUS_ENCRYPTION_KEYS".into(),
            ));
        }
        crate::keyring::Keyring::from_file(&self.key_file())
            .map(std::sync::Arc::new)
            .map_err(|e| ConfigError(format!("the encryption key file: {e}")))
    }

    /// The database URL, or an error that says which variable to set.
    pub fn require_database_url(&self) -> Result<&str, ConfigError> {
        self.database_url.as_deref().ok_or_else(|| {
            ConfigError(
                "STRATUS_DATABASE_URL is not set (nor DATABASE_URL): set it to a Postgres URL such as postgres://user@host:5432/stratus".into(),
            )
        })
    }
}

fn non_empty(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse_var<T: std::str::FromStr>(name: &str, default: T) -> Result<T, ConfigError> {
    match non_empty(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|_| ConfigError(format!("{name} is malformed: {raw:?} is not a valid value"))),
    }
}

fn default_data_dir() -> PathBuf {
    if let Some(xdg) = non_empty("XDG_DATA_HOME") {
        return PathBuf::from(xdg).join("stratus");
    }
    match non_empty("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/stratus"),
        None => PathBuf::from(".stratus"),
    }
}
