//! The Postgres pool, the embedded migrations, and one SQL module per table family.

pub mod access;
pub mod artifacts;
pub mod blocks;
pub mod concurrency_limits;
pub mod deployments;
pub mod flow_run_inputs;
pub mod flow_runs;
pub mod flows;
pub mod logs;
pub mod notifications;
pub mod outbox;
pub mod rows;
pub mod runs;
pub mod saved_searches;
pub mod task_runs;
pub(crate) mod transitions;
pub mod variables;
pub mod work_pools;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use crate::error::SetupError;
use tokio_postgres::NoTls;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

pub type Client = deadpool_postgres::Object;

/// Whether the database answers a trivial query on this connection.
pub async fn answers(c: &Client) -> bool {
    c.simple_query("SELECT 1").await.is_ok()
}

/// Creates database `name` on the server at `admin_url` if it is missing (the managed
/// local Postgres's database, on first start).
pub async fn ensure_database(admin_url: &str, name: &str) -> Result<(), SetupError> {
    let (client, conn) = tokio_postgres::connect(admin_url, NoTls)
        .await
        .map_err(SetupError::database("connect to the managed Postgres"))?;
    tokio::spawn(conn);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(SetupError::database("list databases"))?
        .is_some();
    if !exists {
        let quoted = name.replace('"', "\"\"");
        if let Err(e) = client
            .batch_execute(&format!("CREATE DATABASE \"{quoted}\""))
            .await
        {
            // Another Stratus process may have created it in the meantime.
            let now_exists = client
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .await
                .map(|r| r.is_some())
                .unwrap_or(false);
            if !now_exists {
                return Err(SetupError::database(format!("create database {name}"))(e));
            }
        }
    }
    Ok(())
}

/// How long a request waits for a free connection, or for a new one to open, before it is
/// answered 503 (which the client retries) rather than hanging with a frozen database.
pub const POOL_WAIT: Duration = Duration::from_secs(5);
/// The longest any statement may run (migrations excepted), and the longest one may wait
/// for a row lock: a stuck statement gives a clear, retryable error instead of a hang.
pub const STATEMENT_TIMEOUT: &str = "30s";
pub const LOCK_TIMEOUT: &str = "5s";

/// Splits a PATCH field (`None` absent, `Some(None)` an explicit null) into whether it was
/// given and its value, for `SET col = CASE WHEN $given THEN $value ELSE col END`.
pub(crate) fn given<T: Clone>(field: &Option<Option<T>>) -> (bool, Option<T>) {
    match field {
        Some(v) => (true, v.clone()),
        None => (false, None),
    }
}

/// Builds a pool; connections are opened lazily.
pub fn pool(url: &str, size: usize) -> Result<Pool, SetupError> {
    let mut config: tokio_postgres::Config = url.parse().map_err(SetupError::InvalidUrl)?;
    config.connect_timeout(POOL_WAIT);
    // Every query here is short: JIT compilation only adds latency (over 10 ms on a wide
    // run's page), so it is off, and statements and lock waits are bounded, unless the URL
    // sets `options` itself (an empty `?options=` sends none, for poolers that refuse
    // startup options).
    if config.get_options().is_none() {
        config.options(format!(
            "-c jit=off -c statement_timeout={STATEMENT_TIMEOUT} -c lock_timeout={LOCK_TIMEOUT}"
        ));
    }
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    // Every connection leaving the pool speaks for the scope of the work taking it
    // (`crate::tenancy`); a connection that cannot is not handed out.
    let speak_for_scope = || {
        deadpool_postgres::Hook::async_fn(|client, metrics| {
            Box::pin(async move {
                crate::tenancy::apply(client, metrics)
                    .await
                    .map_err(deadpool_postgres::HookError::Backend)
            })
        })
    };
    Ok(Pool::builder(manager)
        .post_create(speak_for_scope())
        .post_recycle(speak_for_scope())
        .max_size(size.max(1))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(POOL_WAIT))
        .recycle_timeout(Some(POOL_WAIT))
        .build()?)
}

/// The schema version this build needs: its newest migration.
pub fn required_schema_version() -> i32 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// The version the database's schema is at (0 before any migration).
pub async fn schema_version(
    client: &impl tokio_postgres::GenericClient,
) -> Result<i32, tokio_postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('refinery_schema_history') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM refinery_schema_history",
            &[],
        )
        .await?
        .try_get(0)
}

/// Applies pending migrations. An advisory lock keeps concurrent deploys from racing.
pub async fn migrate(pool: &Pool) -> Result<usize, SetupError> {
    crate::tenancy::system(migrate_as_owner(pool)).await
}

async fn migrate_as_owner(pool: &Pool) -> Result<usize, SetupError> {
    let mut client = pool.get().await?;
    let client: &mut tokio_postgres::Client = &mut client;
    // A migration may build an index over a large table, and a second cold start waits
    // for the first's migration: neither is bounded like a request's statements.
    client
        .batch_execute("SET statement_timeout = 0; SET lock_timeout = 0")
        .await
        .map_err(SetupError::database("lift the statement timeouts"))?;
    client
        .execute("SELECT pg_advisory_lock(74807232)", &[])
        .await
        .map_err(SetupError::database("take the migration lock"))?;
    let report = embedded::migrations::runner().run_async(client).await;
    // A copy of the database (restored elsewhere, cloned for another user) gets its
    // tenant role back.
    let ensured = if report.is_ok() {
        client
            .batch_execute(
                "DO $$ BEGIN IF to_regproc('stratus_ensure_tenant_role') IS NOT NULL THEN \
                 PERFORM stratus_ensure_tenant_role(); END IF; END $$",
            )
            .await
    } else {
        Ok(())
    };
    let _ = client.execute("SELECT pg_advisory_unlock(74807232)", &[]).await;
    let _ = client
        .batch_execute("RESET statement_timeout; RESET lock_timeout")
        .await;
    let applied = report?.applied_migrations().len();
    ensured.map_err(SetupError::database("make the tenant role"))?;
    Ok(applied)
}

/// Drops every Stratus object and migrates from scratch.
pub async fn reset(pool: &Pool) -> Result<usize, SetupError> {
    crate::tenancy::system(async {
        {
            let client = pool.get().await?;
            client
                .batch_execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
                .await
                .map_err(SetupError::database("drop the schema"))?;
        }
        // The schema's tenant role may have another name now (a renamed database).
        crate::tenancy::forget_connections();
        migrate_as_owner(pool).await
    })
    .await
}

/// Deletes the work the connection sees: a request's, its workspace's
/// (`/admin/database/clear`). Who may sign in stays: clearing the work must not lock its
/// admin out.
pub async fn clear(client: &Client) -> Result<(), tokio_postgres::Error> {
    // The tables row security scopes are the work's.
    let rows = client
        .query(
            "SELECT tablename FROM pg_policies WHERE schemaname = 'public' \
             AND policyname = 'workspace_isolation' \
             ORDER BY tablename <> 'work_pool', tablename",
            &[],
        )
        .await?;
    // Row security limits each DELETE to the workspace (TRUNCATE would pass it by). Pools
    // go first: a pool's default queue may not be deleted from under it. One simple query
    // is one implicit transaction: all of it or nothing.
    let statements: Vec<String> = rows
        .iter()
        .map(|r| format!("DELETE FROM \"{}\";", r.get::<_, String>(0)))
        .collect();
    if statements.is_empty() {
        return Ok(());
    }
    client.batch_execute(&statements.join(" ")).await
}
