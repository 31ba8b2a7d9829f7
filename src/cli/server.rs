//! `stratus server start`: every route family in one process, plus the upkeep timer.

use std::time::Duration;

use stratus_shared::config::Settings;
use stratus_shared::{serve, AppState};
use tower::make::Shared;

/// How often the local server runs run upkeep (expired pauses, cancellation cleanup,
/// retention), as Prefect's services do every few seconds.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

pub async fn start(settings: Settings) -> Result<(), String> {
    serve::init_tracing();
    let (url, local) = super::database(&settings).await?;
    let result = serve_until_stopped(settings, &url).await;
    if let Some(pg) = local {
        pg.stop();
    }
    result
}

async fn serve_until_stopped(mut settings: Settings, url: &str) -> Result<(), String> {
    settings.database_url = Some(url.to_string());
    let pool = stratus_shared::db::pool(url, settings.pool_size)?;
    stratus_shared::db::migrate(&pool).await?;
    register_system_blocks(&pool).await?;
    let addr = format!("{}:{}", settings.host, settings.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("could not listen on {addr}: {e}"))?;
    let state = AppState::new(pool.clone(), settings.clone());
    let upkeep = tokio::spawn(upkeep(state.clone()));
    let scheduler = tokio::spawn(scheduler(state.clone()));

    let base = format!("http://{addr}");
    println!("\n Stratus is running.\n");
    println!("Configure Prefect to communicate with the server with:\n");
    println!("    prefect config set PREFECT_API_URL={base}/api\n");
    println!("Check out the dashboard at {base}\n");

    let app = serve::normalize(crate::app(state));
    let served = axum::serve(listener, Shared::new(app))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"));
    upkeep.abort();
    scheduler.abort();
    pool.close();
    served
}

/// Prefect registers its core block types on start; so does Stratus.
pub async fn register_system_blocks(pool: &deadpool_postgres::Pool) -> Result<(), String> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| format!("could not connect to Postgres: {e}"))?;
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    stratus_shared::system_blocks::install(&tx).await?;
    tx.commit().await.map_err(|e| e.to_string())
}

async fn upkeep(state: AppState) {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        tick.tick().await;
        if let Err(e) = stratus_shared::maintenance::run_once(&state.db, &state.settings).await {
            tracing::warn!(error = ?e, "run upkeep failed; retrying next tick");
        }
    }
}

/// The scheduler function's timer: each tick is bounded by its interval, so ticks never
/// pile up.
async fn scheduler(state: AppState) {
    let every = Duration::from_secs(state.settings.scheduler_interval_seconds.max(1));
    let limits = stratus_shared::scheduler::Limits::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let wait = state.settings.tag_concurrency_slot_wait_seconds;
        match stratus_shared::scheduler::tick(&state.db, &limits, every, wait).await {
            Ok(report) if report.runs_created > 0 || report.late_marked > 0 => {
                tracing::info!(
                    runs = report.runs_created,
                    late = report.late_marked,
                    "scheduler tick"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = ?e, "scheduler tick failed; retrying next tick"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
