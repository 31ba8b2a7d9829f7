//! The one error type of the API, rendered as the Prefect server renders its errors.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

#[derive(Debug)]
pub enum ApiError {
    /// An explicit HTTP error: `{"detail": "..."}` with that status.
    Detail(StatusCode, String),
    /// An explicit HTTP error whose detail is not a string (Prefect raises some with a
    /// tuple, rendered as a list).
    DetailJson(StatusCode, Value),
    /// The server's internal "object not found": 404 `{"exception_message": "..."}`.
    ObjectNotFound(String),
    /// Request validation failure: 422 with the echoed body.
    Validation { detail: Vec<Value>, body: Value },
    /// A unique or foreign-key violation nobody handled more precisely.
    Integrity,
    /// The database is unreachable or overloaded; the client retries 503.
    Unavailable,
    /// Anything else; the message is logged, never sent.
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn not_found(detail: impl Into<String>) -> Self {
        ApiError::Detail(StatusCode::NOT_FOUND, detail.into())
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::Detail(StatusCode::BAD_REQUEST, detail.into())
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        ApiError::Detail(StatusCode::CONFLICT, detail.into())
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        ApiError::Detail(StatusCode::FORBIDDEN, detail.into())
    }
    /// 422 with a plain `detail` string, as FastAPI handlers raise for bad limits.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        ApiError::Detail(StatusCode::UNPROCESSABLE_ENTITY, detail.into())
    }
    /// A 422 validation error for one location in the request.
    pub fn invalid(loc: &[&str], msg: impl Into<String>, kind: &str, body: Value) -> Self {
        ApiError::Validation {
            detail: vec![json!({"loc": loc, "msg": msg.into(), "type": kind})],
            body,
        }
    }
}

impl From<stratus_store::queue::QueueError> for ApiError {
    fn from(e: stratus_store::queue::QueueError) -> Self {
        tracing::warn!(error = %e, "message queue unavailable");
        ApiError::Detail(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("The work pool's message queue is unavailable: {e}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::Detail(status, detail) => (status, json!({ "detail": detail })),
            ApiError::DetailJson(status, detail) => (status, json!({ "detail": detail })),
            ApiError::ObjectNotFound(message) => {
                (StatusCode::NOT_FOUND, json!({ "exception_message": message }))
            }
            ApiError::Validation { detail, body } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({
                    "exception_message": "Invalid request received.",
                    "exception_detail": detail,
                    "request_body": body,
                }),
            ),
            ApiError::Integrity => (
                StatusCode::CONFLICT,
                json!({ "detail": "Data integrity conflict. This usually means a unique or foreign key constraint was violated. See server logs for details." }),
            ),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "exception_message": "Service Unavailable" }),
            ),
            ApiError::Internal(message) => {
                tracing::error!(error = %message, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "exception_message": "Internal Server Error" }),
                )
            }
        };
        // The stock client waits as long as Retry-After says before retrying a 503.
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return (status, [(axum::http::header::RETRY_AFTER, "1")], Json(body)).into_response();
        }
        (status, Json(body)).into_response()
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(err: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        if let Some(db) = err.as_db_error() {
            let code = db.code();
            if *code == SqlState::UNIQUE_VIOLATION || *code == SqlState::FOREIGN_KEY_VIOLATION {
                tracing::warn!(constraint = ?db.constraint(), "integrity conflict: {}", db.message());
                return ApiError::Integrity;
            }
            // Postgres restarting ("the database system is starting up", 57P03) is as
            // transient as one shutting down: the client retries a 503.
            if *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::TOO_MANY_CONNECTIONS
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                // A statement past the statement or lock timeout (`store::db::pool`).
                || *code == SqlState::QUERY_CANCELED
                || *code == SqlState::LOCK_NOT_AVAILABLE
            {
                tracing::warn!("retryable database error: {}", db.message());
                return ApiError::Unavailable;
            }
            if let Some(detail) = refused_value(code) {
                tracing::info!("value refused by the database: {}", db.message());
                return ApiError::unprocessable(detail);
            }
            return ApiError::Internal(format!("database error {}: {}", code.code(), db.message()));
        }
        if err.is_closed() {
            tracing::warn!("database connection closed: {err}");
            return ApiError::Unavailable;
        }
        ApiError::Internal(format!("database error: {err}"))
    }
}

/// Values a client sent that Postgres cannot store: the client's fault, so a 422 rather
/// than a 500.
fn refused_value(code: &tokio_postgres::error::SqlState) -> Option<&'static str> {
    use tokio_postgres::error::SqlState;
    if *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE || *code == SqlState::UNTRANSLATABLE_CHARACTER {
        Some("Invalid request: text cannot contain NUL (\\u0000) characters.")
    } else if *code == SqlState::PROGRAM_LIMIT_EXCEEDED {
        Some("Invalid request: a value is too long.")
    } else if *code == SqlState::DATETIME_FIELD_OVERFLOW
        || *code == SqlState::INTERVAL_FIELD_OVERFLOW
        || *code == SqlState::NUMERIC_VALUE_OUT_OF_RANGE
    {
        Some("Invalid request: a number or date is out of range.")
    } else {
        None
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            // The pool could not open a connection: the database is unreachable (503),
            // unless Postgres itself refused with a reason worth logging.
            deadpool_postgres::PoolError::Backend(e) if e.as_db_error().is_some() => e.into(),
            other => {
                tracing::warn!("database pool error: {other}");
                ApiError::Unavailable
            }
        }
    }
}

impl From<stratus_store::StoreError> for ApiError {
    fn from(err: stratus_store::StoreError) -> Self {
        use stratus_store::StoreError;
        match err {
            StoreError::Database(e) => e.into(),
            StoreError::Pool(e) => e.into(),
            StoreError::Json(e) => e.into(),
            StoreError::Queue(e) => e.into(),
            StoreError::Invalid(e) => e.into(),
            // A key missing from the ring: the operator's to fix, logged as a 500.
            StoreError::Sealed(e) => ApiError::Internal(format!("block data: {e}")),
        }
    }
}

impl From<stratus_store::SetupError> for ApiError {
    fn from(err: stratus_store::SetupError) -> Self {
        ApiError::Internal(err.to_string())
    }
}

impl From<stratus_domain::invalid::Invalid> for ApiError {
    fn from(e: stratus_domain::invalid::Invalid) -> Self {
        ApiError::Validation {
            detail: vec![json!({"loc": e.loc, "msg": e.msg, "type": e.kind})],
            body: e.body,
        }
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(err: serde_json::Error) -> Self {
        ApiError::Internal(format!("json error: {err}"))
    }
}
