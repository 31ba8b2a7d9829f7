//! The `stratus` command line.

pub mod local_postgres;
pub mod server;

use clap::{Parser, Subcommand};
use stratus_shared::config::Settings;

use local_postgres::LocalPostgres;

#[derive(Parser)]
#[command(
    name = "stratus",
    version,
    about = "A Prefect 2 compatible orchestration server"
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
        #[arg(long)]
        host: Option<String>,
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

/// The database to use: the configured one, or the managed local cluster (started here,
/// returned so the caller stops it on exit).
pub async fn database(settings: &Settings) -> Result<(String, Option<LocalPostgres>), String> {
    if let Some(url) = &settings.database_url {
        return Ok((url.clone(), None));
    }
    let data_dir = settings.data_dir.clone();
    let pg = tokio::task::spawn_blocking(move || LocalPostgres::start(&data_dir))
        .await
        .map_err(|e| e.to_string())??;
    if let Err(e) = local_postgres::ensure_database(&pg.admin_url(), "stratus").await {
        pg.stop();
        return Err(e);
    }
    Ok((pg.url.clone(), Some(pg)))
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
        Command::Database { command } => {
            let (url, local) = database(&settings).await?;
            let result = database_command(command, &url).await;
            if let Some(pg) = local {
                pg.stop();
            }
            result
        }
    }
}

async fn database_command(command: DatabaseCommand, url: &str) -> Result<(), String> {
    let pool = stratus_shared::db::pool(url, 1)?;
    match command {
        DatabaseCommand::Upgrade => {
            let applied = stratus_shared::db::migrate(&pool).await?;
            server::register_system_blocks(&pool).await?;
            println!("Database upgraded: {applied} migration(s) applied.");
        }
        DatabaseCommand::Reset { yes } => {
            if !yes
                && !confirm(
                    "Are you sure you want to reset the Stratus database? All data will be lost. [y/N] ",
                )
            {
                println!("Reset aborted.");
                return Ok(());
            }
            let applied = stratus_shared::db::reset(&pool).await?;
            server::register_system_blocks(&pool).await?;
            println!("Database reset: {applied} migration(s) applied.");
        }
    }
    Ok(())
}

fn confirm(prompt: &str) -> bool {
    use std::io::Write;
    print!("{prompt}");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_lowercase().as_str(), "y" | "yes")
}
