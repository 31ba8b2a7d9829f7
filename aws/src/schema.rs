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
use std::sync::Arc;
use stratus_http::ApiError;
use stratus_store::db::{required_schema_version, schema_version};

use tokio::sync::OnceCell;

/// One function instance's check: once the schema was found recent enough it is not
/// checked again; until then every request checks.
#[derive(Clone, Default)]
pub struct SchemaCheck {
    ready: Arc<OnceCell<()>>,
}

impl SchemaCheck {
    pub async fn check(&self, db: &Pool) -> Result<(), ApiError> {
        if self.ready.initialized() {
            return Ok(());
        }
        // As the owner: a schema older than the tenant role has no such role yet.
        let client = stratus_store::tenancy::system(db.get()).await?;
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
        let _ = self.ready.set(());
        Ok(())
    }
}

/// The check as a middleware of a function's router.
pub async fn gate(State((check, db)): State<(SchemaCheck, Pool)>, request: Request, next: Next) -> Response {
    match check.check(&db).await {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}
