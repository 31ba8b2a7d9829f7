//! Prefect's JSON conventions: the body extractor that answers 422 the way FastAPI does,
//! datetimes with microseconds and `+00:00`, explicit nulls meaning "default", and limits.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::error::ApiError;

/// Default and maximum page size (`PREFECT_API_DEFAULT_LIMIT`).
pub const DEFAULT_LIMIT: i64 = 200;

/// A JSON request body. An empty body counts as `{}`, because every Prefect list route
/// takes only optional keys. Any failure becomes Prefect's 422 with the body echoed.
///
/// Strictness follows FastAPI: action schemas (`*Create`, `*Update`) and filter objects
/// deny unknown keys; bodies made of several top-level keys ignore unknown ones.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let message = format!("Could not read the request body: {e}");
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::Detail(axum::http::StatusCode::PAYLOAD_TOO_LARGE, message)
            } else {
                ApiError::bad_request(message)
            }
        })?;
        parse_body(&bytes).map(Body)
    }
}

/// Parses a request body into `T`, mapping every failure to a Prefect 422.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(bytes).map_err(|e| ApiError::Validation {
            detail: vec![json!({
                "loc": ["body", e.column()],
                "msg": "JSON decode error",
                "type": "value_error.jsondecode",
                "ctx": {"msg": e.to_string()},
            })],
            body: Value::String(String::from_utf8_lossy(bytes).into_owned()),
        })?
    };
    from_value(value)
}

/// Deserialises an already-parsed JSON value with Prefect's 422 on failure. A body that
/// must be an object and is not (serde would fill a struct from an array, by position)
/// gets pydantic's "value is not a valid dict".
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    if !value.is_object() && crate::shape::reads_an_object::<T>() {
        return Err(ApiError::Validation {
            detail: vec![
                json!({"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}),
            ],
            body: value,
        });
    }
    T::deserialize(&value).map_err(|e| {
        let msg = e.to_string();
        let kind = if msg.starts_with("unknown field") {
            "value_error.extra"
        } else if msg.starts_with("missing field") {
            "value_error.missing"
        } else {
            "type_error"
        };
        ApiError::Validation {
            detail: vec![json!({"loc": ["body"], "msg": msg, "type": kind})],
            body: value.clone(),
        }
    })
}

pub use stratus_domain::time::{format_ts, null_default, parse_ts, present, present_ts, seconds, ts, ts_opt};

/// Validates `limit` and `offset` the way Prefect does and returns them with defaults.
pub fn page(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    page_with_max(limit, offset, DEFAULT_LIMIT)
}

/// Like [`page`] with another maximum (the UI history route allows 1000).
pub fn page_with_max(limit: Option<i64>, offset: Option<i64>, max: i64) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT.min(max));
    if limit < 0 {
        return Err(ApiError::unprocessable(
            "Invalid limit: must be greater than or equal to 0.",
        ));
    }
    if limit > max {
        return Err(ApiError::unprocessable(format!(
            "Invalid limit: must be less than or equal to {max}."
        )));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid(
            &["body", "offset"],
            "ensure this value is greater than or equal to 0",
            "value_error.number.not_ge",
            Value::Null,
        ));
    }
    Ok((limit, offset))
}

/// The `sort` key of a list body: the default when absent, else a known member, else
/// Prefect's 422.
pub fn sort<T>(raw: Option<&str>, default: T, parse: impl Fn(&str) -> Option<T>) -> Result<T, ApiError> {
    match raw {
        None => Ok(default),
        Some(text) => parse(text).ok_or_else(|| {
            ApiError::invalid(
                &["body", "sort"],
                format!("value is not a valid enumeration member; got {text:?}"),
                "type_error.enum",
                Value::Null,
            )
        }),
    }
}

/// Parses an id from a URL path segment; a malformed one is Prefect's 422.
pub fn path_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| ApiError::Validation {
        detail: vec![
            json!({"loc": ["path", "id"], "msg": "value is not a valid uuid", "type": "type_error.uuid"}),
        ],
        body: Value::Null,
    })
}

/// An upsert's answer: 201 when the call created the row, 200 when it was there already.
pub fn upserted<T: serde::Serialize>(value: T, created: bool) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status = if created {
        axum::http::StatusCode::CREATED
    } else {
        axum::http::StatusCode::OK
    };
    (status, axum::Json(value)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_prefect() {
        assert_eq!(page(None, None).unwrap(), (200, 0));
        assert_eq!(page(Some(5), Some(10)).unwrap(), (5, 10));
        assert!(page(Some(201), None).is_err());
        assert!(page(Some(-1), None).is_err());
        assert!(page(Some(1), Some(-1)).is_err());
    }

    #[test]
    fn empty_body_is_an_empty_object() {
        #[derive(serde::Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        struct F {
            limit: Option<i64>,
        }
        let f: F = parse_body(b"").unwrap();
        assert!(f.limit.is_none());
        assert!(parse_body::<F>(b"{\"nope\": 1}").is_err());
        assert!(parse_body::<F>(b"{oops").is_err());
    }
}
