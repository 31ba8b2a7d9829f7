//! Handler pieces the flow-run and task-run families share.

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{ApiResult, AppState};
use stratus_domain::states::State;
use stratus_store::db::flow_runs;
use stratus_store::db::runs::RunTable;
use stratus_store::filters::RunFilterBody;

/// Runs the history query for either run table.
pub async fn history(app: &AppState, body: &RunFilterBody, table: RunTable) -> ApiResult<Response> {
    let (start, end, step) = body.history_window()?;
    let client = app.client().await?;
    let intervals = flow_runs::history(&client, table, &body.filters(), start, end, step).await?;
    Ok(Json(intervals).into_response())
}

/// A `set_state` answer: 201 when a new state row was written, else 200.
pub fn respond(outcome: stratus_store::runs_service::Outcome) -> Response {
    let status = if outcome.written {
        axum::http::StatusCode::CREATED
    } else {
        axum::http::StatusCode::OK
    };
    (status, Json(outcome.result)).into_response()
}

/// A state as `/flow_run_states` and `/task_run_states` return it: with its run's id.
pub fn state_json(run_id: Uuid, fk: &str, state: State) -> Value {
    let mut value = serde_json::to_value(&state).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.insert(fk.to_string(), json!(run_id));
    }
    value
}

/// The 422 for a required query parameter that is missing.
pub fn missing_query(name: &str) -> crate::ApiError {
    crate::ApiError::Validation {
        detail: vec![json!({"loc": ["query", name], "msg": "field required", "type": "value_error.missing"})],
        body: Value::Null,
    }
}
