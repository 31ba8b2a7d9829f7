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
}

pub type StoreResult<T> = Result<T, StoreError>;
