//! `stratus server start`: every route family in one process, plus the scheduler
//! function on a timer and the notifier reading its queue.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use stratus_http::{serve, AppState};
use stratus_store::config::{AuthMode, Settings};
use tower::make::Shared;

use super::signals::Shutdown;

/// How long open connections get to finish after SIGINT/SIGTERM.
const GRACE: Duration = Duration::from_secs(10);

const BANNER: &str = r"
 ___   _____   ___     _     _____   _   _   ___
/ __| |_   _| | _ \   /_\   |_   _| | | | | / __|
\__ \   | |   |   /  / _ \    | |   | |_| | \__ \
|___/   |_|   |_|_\ /_/ \_\   |_|    \___/  |___/
";

/// Logs go to stdout, filtered by `STRATUS_LOG` (default: info, without the migration
/// runner's and the driver's chatter).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATUS_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,refinery_core=warn,tokio_postgres=warn")
    });
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

pub async fn start(settings: Settings) -> Result<(), String> {
    init_tracing();
    let shutdown = Shutdown::listen()?;
    // Before Postgres: a taken port fails at once.
    let listener = tokio::net::TcpListener::bind((settings.host.as_str(), settings.port))
        .await
        .map_err(|e| {
            format!(
                "could not listen on {}:{}: {e} (is another server running there? choose another with --port or STRATUS_PORT)",
                settings.host, settings.port
            )
        })?;
    let (url, local) = tokio::select! {
        db = super::database(&settings) => db?,
        _ = shutdown.signalled(2) => return Err("interrupted while starting Postgres".into()),
    };
    let result = if shutdown.requested() {
        Ok(())
    } else {
        serve_until_stopped(settings, &url, listener, &shutdown).await
    };
    super::leave(local).await;
    result
}

async fn serve_until_stopped(
    mut settings: Settings,
    url: &str,
    listener: tokio::net::TcpListener,
    shutdown: &Shutdown,
) -> Result<(), String> {
    settings.database_url = Some(url.to_string());
    let pool = stratus_store::db::pool(url, settings.pool_size)?;
    let applied = stratus_store::db::migrate(&pool).await?;
    if applied > 0 {
        tracing::info!(applied, "database migrated");
    }
    register_system_blocks(&pool).await?;
    stratus_aws::check(&settings).await?;
    // Documents written before sealing began (or under an older key) are sealed now. The
    // keyring is kept in the settings, so the app state does not read the key file again.
    let keyring = settings.keyring().map_err(|e| e.to_string())?;
    settings.encryption_keys = Some(keyring.clone());
    let sealed = stratus_store::db::blocks::reseal_all(&pool, &keyring)
        .await
        .map_err(|e| format!("could not seal block documents: {e}"))?;
    if sealed > 0 {
        tracing::info!(sealed, key = keyring.current(), "block documents sealed");
    }
    if shutdown.requested() {
        pool.close();
        return Ok(());
    }
    let addr = listener
        .local_addr()
        .map_err(|e| format!("could not read the listening address: {e}"))?;
    print_banner(&addr, settings.auth);
    // Port 0 asks for any free port: links in notifications need the one given.
    settings.port = addr.port();

    let state = stratus_aws::state(settings.clone(), pool.clone()).await?;
    match &settings.sqs_endpoint {
        Some(endpoint) => println!(
            "Work pool queues: SQS at {endpoint} ({}<pool id>).",
            settings.queue_prefix
        ),
        None => println!("Work pool queues: served from Postgres (set STRATUS_SQS_ENDPOINT to use SQS)."),
    }
    match &settings.s3_endpoint {
        Some(endpoint) => println!(
            "Flow code storage: S3 bucket {} at {endpoint}.",
            settings.s3_bucket
        ),
        None => println!(
            "Flow code storage: {} (set STRATUS_S3_ENDPOINT to use S3).",
            settings.storage_dir.display()
        ),
    }
    let scheduler = tokio::spawn(scheduler(state.clone()));
    let notifier = tokio::spawn(stratus_notifier::deliver::run(state.clone()));

    let app = serve::normalize(crate::app(state));
    let graceful = shutdown.clone();
    let server = axum::serve(listener, Shared::new(app))
        .with_graceful_shutdown(async move {
            graceful.signalled(1).await;
            tracing::info!("shutting down");
        })
        .into_future();
    tokio::pin!(server);
    let served = tokio::select! {
        r = &mut server => r.map_err(|e| format!("server error: {e}")),
        _ = shutdown.signalled(2) => {
            tracing::warn!("second signal: stopping without waiting for open connections");
            Ok(())
        }
        _ = async { shutdown.signalled(1).await; tokio::time::sleep(GRACE).await } => {
            tracing::warn!("open connections did not finish within {GRACE:?}; stopping anyway");
            Ok(())
        }
    };
    scheduler.abort();
    notifier.abort();
    pool.close();
    served
}

fn print_banner(addr: &SocketAddr, auth: AuthMode) {
    let ip = addr.ip();
    let host = if ip.is_unspecified() {
        // Listening everywhere; the client still reaches it on loopback.
        if ip.is_ipv4() {
            "127.0.0.1".to_string()
        } else {
            "[::1]".to_string()
        }
    } else if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    let base = format!("http://{host}:{}", addr.port());
    println!("{BANNER}");
    println!("Stratus is listening on {addr}.\n");
    println!("Configure Prefect to communicate with the server with:\n");
    println!("    prefect config set PREFECT_API_URL={base}/api\n");
    println!("Check that it answers with: curl {base}/api/health\n");
    match auth {
        AuthMode::Open => println!(
            "Open: no API key is asked for (STRATUS_AUTH=open), as `prefect server start` is. \
             Anyone who can reach {addr} can use it.\n"
        ),
        AuthMode::Required => println!(
            "Every route but /api/health and /api/version needs an API key (STRATUS_AUTH=required). \
             Make one with `stratus api-key create --name me --role admin` and set PREFECT_API_KEY to it.\n"
        ),
    }
}

/// Prefect registers its core block types on start; so does Stratus, in every workspace.
pub async fn register_system_blocks(pool: &deadpool_postgres::Pool) -> Result<(), String> {
    stratus_store::system_blocks::install_everywhere(pool)
        .await
        .map(|_| ())
        .map_err(|e| format!("could not register the core block types: {e}"))
}

/// The scheduler function on a timer: each invocation (tick, outbox sweep, run upkeep) is
/// bounded by the interval, so invocations never pile up.
async fn scheduler(state: AppState) {
    let every = Duration::from_secs(state.settings.scheduler_interval_seconds.max(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = stratus_scheduler::invoke(&state, every).await {
            tracing::warn!("{e}; retrying next tick");
        }
    }
}
