//! Functions do not migrate the database: the deploy does, once (`infra/deploy` through its
//! migration step, `stratus database upgrade`, or the emulator's deploy step). A function
//! checks, on its first request, that the schema is at least the version it was built
//! for. An older schema gets 503 with a detail that says what to run; a newer one is
//! served, since migrations only add to the schema a running build reads.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use deadpool_postgres::Pool;
use stratus_http::ApiError;
use stratus_store::db::{required_schema_version, schema_version};
use tokio::sync::OnceCell;

/// Set once the schema was found recent enough; until then every request checks again.
static READY: OnceCell<()> = OnceCell::const_new();

pub async fn check(db: &Pool) -> Result<(), ApiError> {
    if READY.initialized() {
        return Ok(());
    }
    let client = db.get().await?;
    let have = schema_version(&**client).await?;
    let need = required_schema_version();
    if have < need {
        return Err(ApiError::Detail(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "The database schema is at version {have}, older than version {need}, which this function needs. \
                 Run the deploy's migrations (infra/deploy, or `stratus database upgrade`)."
            ),
        ));
    }
    let _ = READY.set(());
    Ok(())
}

/// The check as a middleware of a function's router.
pub async fn gate(State(db): State<Pool>, request: Request, next: Next) -> Response {
    match check(&db).await {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}
