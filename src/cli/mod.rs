//! The `stratus` command line.

pub mod database;
pub mod local_postgres;
pub mod server;
pub mod signals;
pub mod system;

use clap::{Parser, Subcommand};
use stratus_shared::config::Settings;

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
    if let Err(e) = local_postgres::ensure_database(&pg.admin_url(), "stratus").await {
        leave(Some(pg)).await;
        return Err(e);
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
                settings.host = host;
            }
            if let Some(port) = port {
                settings.port = port;
            }
            server::start(settings).await
        }
        Command::Database { command } => database::run(command, &settings).await,
    }
}
