//! The `/admin` route family: settings, version, and database maintenance.
//!
//! The database routes need `{"confirm": true}` (else 400) and answer 204:
//! * `clear` deletes every row of the workspace (and keeps the schema, and who may sign in);
//! * `drop` drops every Stratus table *and re-creates the empty schema* at once. Prefect
//!   leaves the server without tables until `create`; a serverless function cannot be
//!   restarted to repair that, so Stratus never leaves the schema missing;
//! * `create` applies any pending migrations (a no-op on an up-to-date schema), which is
//!   what Prefect's `create_all` amounts to.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use stratus_http::api_routes::{get, post, ApiRoutes};
use stratus_http::app::PREFECT_VERSION;
use stratus_http::auth::Caller;
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::access::DEFAULT_ACCOUNT_ID;

pub fn router() -> Router<AppState> {
    api().into_router()
}

/// The family's routes, as served and documented.
pub fn api() -> ApiRoutes {
    ApiRoutes::new("Admin")
        .route("/admin/settings", get(settings))
        .route(
            "/admin/version",
            get(|| async { Json(PREFECT_VERSION) }).returns::<String>(),
        )
        .route("/admin/database/clear", post(clear))
        .route("/admin/database/drop", post(drop_all))
        .route("/admin/database/create", post(create))
}

/// What Prefect shows for a secret setting that is set.
const OBFUSCATED: &str = "********";

/// The effective settings, under Prefect's names where Prefect has the setting and under
/// `STRATUS_*` for Stratus' own. Secrets are obfuscated as Prefect does: the database
/// URL (which may carry a password) is `********` when set, null when not.
async fn settings(State(app): State<AppState>) -> Response {
    let s = &app.settings;
    let database_url = match s.database_url {
        Some(_) => Value::from(OBFUSCATED),
        None => Value::Null,
    };
    Json(json!({
        "PREFECT_API_URL": format!("http://{}:{}/api", s.host, s.port),
        "PREFECT_SERVER_API_HOST": s.host,
        "PREFECT_SERVER_API_PORT": s.port,
        "PREFECT_API_DEFAULT_LIMIT": stratus_http::json::DEFAULT_LIMIT,
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
        "PREFECT_SERVER_CSRF_PROTECTION_ENABLED": false,
        "PREFECT_EXPERIMENTAL_EVENTS": false,
        "PREFECT_TASK_RUN_TAG_CONCURRENCY_SLOT_WAIT_SECONDS": s.tag_concurrency_slot_wait_seconds,
        "PREFECT_API_SERVICES_SCHEDULER_LOOP_SECONDS": s.scheduler_interval_seconds as f64,
        "STRATUS_DATABASE_POOL_SIZE": s.pool_size,
        "STRATUS_DATA_DIR": s.data_dir.display().to_string(),
        "STRATUS_LOG_RETENTION_DAYS": s.log_retention_days,
        "STRATUS_STATE_RETENTION_DAYS": s.state_retention_days,
    }))
    .into_response()
}

/// `{confirm: bool = false}`; other keys are ignored, as FastAPI ignores them.
#[derive(Deserialize, Default, schemars::JsonSchema)]
struct Confirm {
    #[serde(default)]
    confirm: bool,
}

fn require_confirm(body: &Confirm) -> ApiResult<()> {
    if !body.confirm {
        return Err(ApiError::bad_request("Pass confirm=True to confirm."));
    }
    Ok(())
}

/// Deletes every row of the request's workspace, keeping the schema.
async fn clear(State(app): State<AppState>, Body(body): Body<Confirm>) -> ApiResult<StatusCode> {
    require_confirm(&body)?;
    let client = app.client().await?;
    stratus_store::db::clear(&client).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Drops every Stratus table and re-creates the empty schema.
async fn drop_all(
    State(app): State<AppState>,
    caller: Caller,
    Body(body): Body<Confirm>,
) -> ApiResult<StatusCode> {
    require_confirm(&body)?;
    whole_server(&caller)?;
    let result = stratus_store::db::reset(&app.db).await;
    // Statements cached on pooled connections may name types and tables that were
    // dropped and re-created.
    app.db.manager().statement_caches.clear();
    result?;
    Ok(StatusCode::NO_CONTENT)
}

/// The schema is every workspace's: only an open server's caller, or an account-wide
/// admin key of the default account (the operator's), may drop or migrate it.
fn whole_server(caller: &Caller) -> ApiResult<()> {
    let operator =
        caller.key_id.is_none() || (caller.workspace_id.is_none() && caller.account_id == DEFAULT_ACCOUNT_ID);
    if operator {
        Ok(())
    } else {
        Err(ApiError::Detail(
            StatusCode::FORBIDDEN,
            "The schema holds every workspace: only an account-wide admin key of the default account may drop or create it.".into(),
        ))
    }
}

/// Applies any pending migrations.
async fn create(
    State(app): State<AppState>,
    caller: Caller,
    Body(body): Body<Confirm>,
) -> ApiResult<StatusCode> {
    require_confirm(&body)?;
    whole_server(&caller)?;
    stratus_store::db::migrate(&app.db).await?;
    Ok(StatusCode::NO_CONTENT)
}
