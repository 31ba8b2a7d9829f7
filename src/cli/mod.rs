//! The `stratus` command line.

pub mod api_keys;
pub mod database;
pub mod deploy;
pub mod emulate;
pub mod encryption;
pub mod local_postgres;
pub mod server;
pub mod signals;
pub mod system;
pub mod workspaces;

use clap::{Parser, Subcommand};
use stratus_store::config::Settings;

use local_postgres::LocalPostgres;

#[derive(Parser)]
#[command(
    name = "stratus",
    version,
    about = "A Prefect 2 compatible orchestration server",
    after_help = "Configuration comes from environment variables: STRATUS_DATABASE_URL (or DATABASE_URL; \
                  unset, Stratus runs its own Postgres under STRATUS_DATA_DIR), STRATUS_HOST, STRATUS_PORT, \
                  STRATUS_LOG. See the README for the full list."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the API server.
    Server {
        #[command(subcommand)]
        command: ServerCommand,
    },
    /// Manage the database schema.
    Database {
        #[command(subcommand)]
        command: DatabaseCommand,
    },
    /// Run flow runs of a work pool: long-polls the pool's queue and claims runs at once.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Package a flow's directory, store it (S3 or the local storage folder) and register
    /// a deployment that the Stratus agent runs from it.
    Deploy(deploy::DeployArgs),
    /// Manage the API keys a server that requires them accepts (STRATUS_AUTH=required,
    /// the default away from loopback and on AWS). The stock client sends one as
    /// PREFECT_API_KEY.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Manage accounts: each holds workspaces, and keys that reach one or all of them.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Manage workspaces: each sees only its own flows, runs, blocks and the rest, at
    /// /api/accounts/{account}/workspaces/{workspace} (plain /api is the default one).
    Workspace {
        #[command(subcommand)]
        command: WorkspaceCommand,
    },
    /// Block documents' data is sealed at rest (AES-256-GCM).
    Encryption {
        #[command(subcommand)]
        command: EncryptionCommand,
    },
    /// Run the AWS deployment of infra/template.yaml on this machine: every function as a
    /// Lambda under cargo-lambda's emulator, behind the template's HTTP API routes, with its
    /// EventBridge schedule and SQS event sources on LocalStack.
    Emulate(emulate::EmulateArgs),
}

#[derive(Subcommand)]
pub enum EncryptionCommand {
    /// Seal every block document under the first key of STRATUS_ENCRYPTION_KEYS (put the
    /// new key first and keep the old ones after it; drop them once this has run).
    Rotate,
}

#[derive(Subcommand)]
pub enum ApiKeyCommand {
    /// Make a key; its value is printed once and only its hash is kept.
    Create {
        /// What the key is for, to tell keys apart.
        #[arg(long)]
        name: String,
        /// admin (everything), developer (all work, no admin routes), runner (what agents,
        /// workers and their flows need), or viewer (read only, no secret values).
        #[arg(long, default_value = "developer")]
        role: String,
        /// The key stops working after this many days [default: never].
        #[arg(long)]
        expires_in_days: Option<i64>,
        /// The account (name or id).
        #[arg(long, default_value = "default")]
        account: String,
        /// The workspace of the account the key works in (name or id).
        #[arg(long, default_value = "default")]
        workspace: String,
        /// Valid in every workspace of the account, not only --workspace.
        #[arg(long)]
        account_wide: bool,
    },
    /// List an account's keys (never their values).
    List {
        /// The account (name or id).
        #[arg(long, default_value = "default")]
        account: String,
    },
    /// Revoke a key, and the web UI sessions signed in with it.
    Revoke {
        /// The key's id, as `list` shows it.
        id: uuid::Uuid,
        /// The key's account (name or id).
        #[arg(long, default_value = "default")]
        account: String,
    },
}

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Make an account (with no workspace yet).
    Create {
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
pub enum WorkspaceCommand {
    /// Make a workspace in an account, with Prefect's core block types.
    Create {
        #[arg(long)]
        name: String,
        /// The account (name or id).
        #[arg(long, default_value = "default")]
        account: String,
    },
    /// List workspaces, with their API paths.
    List {
        /// Only this account's (name or id).
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Start an agent for a work pool.
    Start {
        /// The work pool (created, of type "process", if it does not exist).
        #[arg(long, short = 'p')]
        pool: String,
        /// Only runs of these queues of the pool (default: all).
        #[arg(long = "queue", short = 'q')]
        queues: Vec<String>,
        /// The agent's name in the pool's worker list [default: StratusAgent <random>].
        #[arg(long, short = 'n')]
        name: Option<String>,
        /// Run at most this many flow runs at once.
        #[arg(long)]
        limit: Option<usize>,
        /// The Python that runs flows (needs prefect 2) [env: STRATUS_PYTHON, default python3].
        #[arg(long)]
        python: Option<String>,
        /// Where flow code is unpacked [default: <STRATUS_DATA_DIR>/agent].
        #[arg(long)]
        work_dir: Option<std::path::PathBuf>,
        /// Seconds running flows get to finish after SIGINT/SIGTERM before they are killed.
        #[arg(long, default_value_t = 30)]
        shutdown_grace: u64,
        /// Seconds between HTTP polls while the queue is unreachable.
        #[arg(long, default_value_t = 5)]
        poll_interval: u64,
        /// Seconds between heartbeats. A run this agent claimed is marked Crashed once it
        /// has not heartbeated for three intervals (its process is taken to be gone).
        #[arg(long, default_value_t = 30)]
        heartbeat_interval: u64,
        /// The Stratus API [env: PREFECT_API_URL, default http://127.0.0.1:4200/api].
        #[arg(long)]
        api_url: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ServerCommand {
    /// Serve every route family under /api (default 127.0.0.1:4200).
    Start {
        /// Address to listen on [env: STRATUS_HOST, default 127.0.0.1].
        #[arg(long)]
        host: Option<String>,
        /// Port to listen on [env: STRATUS_PORT, default 4200].
        #[arg(long)]
        port: Option<u16>,
    },
}

#[derive(Subcommand)]
pub enum DatabaseCommand {
    /// Apply pending migrations.
    Upgrade,
    /// Drop everything and re-apply all migrations.
    Reset {
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
}

fn init_agent_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The database to use: the configured one, or the managed local cluster (started or
/// joined here, and returned so the caller leaves it on exit).
pub async fn database(settings: &Settings) -> Result<(String, Option<LocalPostgres>), String> {
    if let Some(url) = &settings.database_url {
        return Ok((url.clone(), None));
    }
    let data_dir = settings.data_dir.clone();
    let pg = tokio::task::spawn_blocking(move || LocalPostgres::start(&data_dir))
        .await
        .map_err(|e| format!("could not start the managed Postgres: {e}"))??;
    println!(
        "Using the managed Postgres in {} on 127.0.0.1:{}{}.",
        pg.data_dir().display(),
        pg.port,
        if pg.started { "" } else { " (already running)" }
    );
    if let Err(e) = stratus_store::db::ensure_database(&pg.admin_url(), "stratus").await {
        leave(Some(pg)).await;
        return Err(e.to_string());
    }
    Ok((pg.url.clone(), Some(pg)))
}

/// Leaves the managed cluster (stopping it if no other Stratus process uses it).
pub async fn leave(local: Option<LocalPostgres>) {
    if let Some(pg) = local {
        if let Err(e) = tokio::task::spawn_blocking(move || pg.stop()).await {
            eprintln!("warning: could not stop the managed Postgres: {e}");
        }
    }
}

pub async fn run(cli: Cli) -> Result<(), String> {
    let mut settings = Settings::from_env().map_err(|e| e.to_string())?;
    match cli.command {
        Command::Server {
            command: ServerCommand::Start { host, port },
        } => {
            if let Some(host) = host {
                settings.set_host(host).map_err(|e| e.to_string())?;
            }
            if let Some(port) = port {
                settings.port = port;
            }
            server::start(settings).await
        }
        Command::Database { command } => database::run(command, &settings).await,
        Command::ApiKey { command } => api_keys::run(command, &settings).await,
        Command::Account { command } => workspaces::run_account(command, &settings).await,
        Command::Workspace { command } => workspaces::run_workspace(command, &settings).await,
        Command::Encryption {
            command: EncryptionCommand::Rotate,
        } => encryption::rotate(&settings).await,
        Command::Deploy(args) => deploy::run(args, &settings).await,
        Command::Emulate(args) => emulate::start(settings, args).await,
        Command::Agent {
            command:
                AgentCommand::Start {
                    pool,
                    queues,
                    name,
                    limit,
                    python,
                    work_dir,
                    shutdown_grace,
                    poll_interval,
                    heartbeat_interval,
                    api_url,
                },
        } => {
            init_agent_tracing();
            let shutdown = signals::Shutdown::listen()?;
            let config = crate::agent::Config {
                api_url: deploy::api_url(api_url),
                pool,
                queues,
                name: name.unwrap_or_else(|| format!("StratusAgent {}", uuid::Uuid::new_v4())),
                python: deploy::python(python),
                work_dir: work_dir.unwrap_or_else(|| settings.data_dir.join("agent")),
                limit: limit.filter(|l| *l > 0),
                shutdown_grace: std::time::Duration::from_secs(shutdown_grace),
                poll_interval: std::time::Duration::from_secs(poll_interval.max(1)),
                heartbeat_interval: std::time::Duration::from_secs(heartbeat_interval.clamp(1, 3600)),
            };
            crate::agent::run(config, shutdown).await
        }
    }
}
