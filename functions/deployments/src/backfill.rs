//! `POST /deployments/{id}/schedule` (backfill: create the runs of a time window now) and
//! the deprecated `GET /deployments/{id}/work_queue_check`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::Value;
use stratus_domain::api_version::SERVER_API_VERSION;
use stratus_http::json::{path_id, ts_opt};
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::deployments;
use stratus_store::db::work_pools as pools;
use stratus_store::scheduler::{self, Limits};

use crate::not_found;

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(default, with = "ts_opt")]
    start_time: Option<DateTime<Utc>>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(default, with = "ts_opt")]
    end_time: Option<DateTime<Utc>>,
    /// Seconds.
    #[serde(default)]
    min_time: Option<f64>,
    #[serde(default)]
    min_runs: Option<i64>,
    #[serde(default)]
    max_runs: Option<i64>,
}

const MAX_TIMEDELTA_SECONDS: f64 = 999_999_999.0 * 86_400.0;

fn invalid(field: &str, msg: &str, value: Value) -> ApiError {
    ApiError::invalid(&["body", field], msg, "value_error", value)
}

pub async fn schedule(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<ScheduleBody>,
) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let defaults = Limits::default();
    let start = body.start_time.unwrap_or_else(Utc::now);
    let end = body.end_time.unwrap_or_else(|| {
        start
            .checked_add_signed(defaults.max_time)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    });
    if end < start {
        return Err(invalid(
            "end_time",
            "end_time must not be before start_time",
            Value::Null,
        ));
    }
    // Python's timedelta ends at 999,999,999 days, so Prefect refuses more (1e308 once
    // panicked here).
    let min_time = match body.min_time {
        Some(s) if !(s.is_finite() && (0.0..=MAX_TIMEDELTA_SECONDS).contains(&s)) => {
            return Err(invalid(
                "min_time",
                "ensure this value is a non-negative number of seconds, at most 999999999 days",
                Value::from(s),
            ))
        }
        Some(s) => Duration::try_milliseconds((s * 1000.0) as i64).unwrap_or(Duration::MAX),
        None => defaults.min_time,
    };
    let count = |field: &str, v: Option<i64>, default: usize| -> ApiResult<usize> {
        match v {
            Some(n) if !(0..=10_000).contains(&n) => Err(invalid(
                field,
                "ensure this value is between 0 and 10000",
                Value::from(n),
            )),
            Some(n) => Ok(n as usize),
            None => Ok(default),
        }
    };
    let limits = Limits {
        min_time,
        min_runs: count("min_runs", body.min_runs, defaults.min_runs)?,
        max_runs: count("max_runs", body.max_runs, defaults.max_runs)?,
        ..defaults
    };
    app.runs()
        .change::<_, ApiError>(SERVER_API_VERSION, async |change| {
            let deployment = deployments::read(change.tx(), id).await?.ok_or_else(not_found)?;
            Ok(scheduler::schedule_between(change, &deployment, start, end, &limits).await?)
        })
        .await?;
    Ok(Json(Value::Null).into_response())
}

pub async fn work_queue_check(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    let deployment = deployments::read(&client, id).await?.ok_or_else(not_found)?;
    let queues = pools::queues_matching_deployment(&client, id, &deployment.tags).await?;
    Ok(Json(queues).into_response())
}
