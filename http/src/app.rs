//! What every handler receives, and the request checks that run before any route.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use deadpool_postgres::Pool;

use crate::error::ApiError;
use stratus_store::config::Settings;
use stratus_store::db::Client;
use stratus_store::queue::MessageQueue;

#[derive(Clone)]
pub struct AppState {
    pub db: Pool,
    pub settings: Arc<Settings>,
    /// The work pools' message queues: Postgres-backed unless SQS is configured.
    pub queue: Arc<dyn MessageQueue>,
    /// The keys block documents' data is sealed with.
    pub keyring: Arc<stratus_store::keyring::Keyring>,
    /// Keys and sessions verified lately (`crate::auth`).
    pub credentials: Arc<crate::auth::CredentialCache>,
}

impl AppState {
    /// State over `db` publishing to `queue`. Entry points do not call this themselves:
    /// the composition root (`stratus_aws::state`) picks the queue the settings ask for.
    pub fn new(
        db: Pool,
        settings: Settings,
        queue: Arc<dyn MessageQueue>,
        keyring: Arc<stratus_store::keyring::Keyring>,
    ) -> Self {
        AppState {
            queue,
            db,
            keyring,
            credentials: Arc::new(crate::auth::CredentialCache::new(std::time::Duration::from_secs(
                settings.auth_cache_seconds,
            ))),
            settings: Arc::new(settings),
        }
    }

    pub fn with_queue(self, queue: Arc<dyn MessageQueue>) -> Self {
        AppState { queue, ..self }
    }

    /// The runs service over this state's database and queue: the one way to change a
    /// run's state.
    pub fn runs(&self) -> stratus_store::runs_service::Runs {
        stratus_store::runs_service::Runs::new(
            self.db.clone(),
            self.queue.clone(),
            self.settings.tag_concurrency_slot_wait_seconds,
        )
    }

    /// A connection for the work in progress: it sees the request's workspace only
    /// (`stratus_store::tenancy`).
    pub async fn client(&self) -> Result<Client, ApiError> {
        Ok(self.db.get().await?)
    }

    /// A connection that sees every workspace, and who may sign in: for checking keys and
    /// sessions, and managing keys and workspaces.
    pub async fn system_client(&self) -> Result<Client, ApiError> {
        Ok(stratus_store::tenancy::system(self.db.get()).await?)
    }
}

pub use stratus_domain::api_version::{
    ApiVersion, PREFECT_VERSION, SERVER_API_VERSION, SERVER_API_VERSION_STR,
};

/// The extractor of the version a request asked for (`X-PREFECT-API-VERSION`, checked by
/// `check_api_version`); the server's own when absent.
#[derive(Debug, Clone, Copy)]
pub struct ClientVersion(pub ApiVersion);

impl<S: Send + Sync> FromRequestParts<S> for ClientVersion {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientVersion(
            parts
                .extensions
                .get::<ApiVersion>()
                .copied()
                .unwrap_or(SERVER_API_VERSION),
        ))
    }
}

/// Rejects malformed or too-old `X-PREFECT-API-VERSION` headers, and records the version.
pub async fn check_api_version(mut req: Request, next: Next) -> Response {
    if let Some(raw) = req.headers().get("x-prefect-api-version") {
        let raw = String::from_utf8_lossy(raw.as_bytes()).into_owned();
        let Some(version) = ApiVersion::parse(&raw) else {
            return ApiError::bad_request(format!(
                "Invalid X-PREFECT-API-VERSION header format.Expected header in format 'x.y.z' but received {raw}"
            ))
            .into_response();
        };
        if version < ApiVersion(0, 8, 0) {
            return ApiError::bad_request(format!(
                "The request specified API version {raw} but this server requires version 0.8.0 or higher."
            ))
            .into_response();
        }
        req.extensions_mut().insert(version);
    }
    next.run(req).await
}

/// Answers 404 JSON for unknown routes, as FastAPI does.
pub async fn not_found(State(_): State<AppState>) -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"detail": "Not Found"})),
    )
}
