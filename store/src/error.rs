//! What can go wrong in the store: Postgres, its pool, the message queue, JSON that does
//! not fit, or a value the rules refuse. The HTTP layer (`stratus_http::error`) maps each
//! to Prefect's error body; nothing here knows about status codes.

use crate::queue::QueueError;
use stratus_domain::invalid::Invalid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("database pool error: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("json error: {0}")]
    Json(#[from] serde_json::Error),
    #[error("message queue error: {0}")]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("block data: {0}")]
    Sealed(#[from] crate::keyring::SealError),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What can go wrong setting up the database: building the pool, migrating, creating the
/// managed server's database, registering the bundled block types. Each names the step.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("invalid database URL: {0}")]
    InvalidUrl(#[source] tokio_postgres::Error),
    #[error("could not build the database pool: {0}")]
    Pool(#[from] deadpool_postgres::BuildError),
    #[error("could not connect to Postgres: {0}")]
    Connect(#[from] deadpool_postgres::PoolError),
    #[error("could not {doing}: {source}")]
    Database {
        doing: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    #[error("bundled block data is invalid: {0}")]
    Bundle(#[from] serde_json::Error),
    #[error("could not register {what}: {message}")]
    Register { what: String, message: String },
}

impl SetupError {
    pub(crate) fn database(doing: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> SetupError {
        let doing = doing.into();
        move |source| SetupError::Database { doing, source }
    }
}

impl From<SetupError> for String {
    fn from(e: SetupError) -> String {
        e.to_string()
    }
}
