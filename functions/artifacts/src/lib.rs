//! The `/artifacts` route family: artifacts, and the latest version of each key.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use stratus_http::api_routes::{get, post, ApiRoutes};
use stratus_http::json::{page, path_id, present};
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::artifacts::{
    self, Artifact, ArtifactChanges, ArtifactFilter, ArtifactSort, NewArtifact,
};
use stratus_store::filters::{DeploymentFilter, FlowFilter, FlowRunFilter, RunFilters, TaskRunFilter};
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    api().into_router()
}

/// The family's routes, as served and documented.
pub fn api() -> ApiRoutes {
    ApiRoutes::new("Artifacts")
        .route("/artifacts", post(create).returns::<Artifact>())
        .route("/artifacts/filter", post(filter).returns::<Vec<Artifact>>())
        .route("/artifacts/count", post(count).returns::<i64>())
        .route(
            "/artifacts/latest/filter",
            post(filter_latest).returns::<Vec<Artifact>>(),
        )
        .route("/artifacts/latest/count", post(count_latest).returns::<i64>())
        .route("/artifacts/{id}/latest", get(read_latest).returns::<Artifact>())
        .route(
            "/artifacts/{id}",
            get(read).returns::<Artifact>().patch(update).delete(remove),
        )
}

/// Prefect cuts metadata values to this many characters.
const MAX_METADATA_VALUE: usize = 500;

fn not_found() -> ApiError {
    ApiError::not_found("Artifact not found.")
}

fn metadata(raw: Option<Map<String, Value>>) -> ApiResult<Option<Value>> {
    let Some(raw) = raw else { return Ok(None) };
    let mut out = Map::new();
    for (k, v) in raw {
        let text = match v {
            Value::String(s) => s,
            Value::Null => continue,
            other => other.to_string(),
        };
        out.insert(k, Value::String(text.chars().take(MAX_METADATA_VALUE).collect()));
    }
    Ok(Some(Value::Object(out)))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ArtifactCreate {
    #[serde(default)]
    key: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    metadata_: Option<Map<String, Value>>,
    #[serde(default)]
    flow_run_id: Option<Uuid>,
    #[serde(default)]
    task_run_id: Option<Uuid>,
}

async fn create(State(app): State<AppState>, Body(body): Body<ArtifactCreate>) -> ApiResult<Response> {
    if let Some(key) = &body.key {
        let ok = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(ApiError::invalid(
                &["body", "key"],
                "Artifact key must only contain lowercase letters, numbers, and dashes.",
                "value_error",
                json!({"key": key}),
            ));
        }
    }
    let new = NewArtifact {
        key: body.key,
        kind: body.kind,
        description: body.description,
        data: body.data,
        metadata: metadata(body.metadata_)?,
        flow_run_id: body.flow_run_id,
        task_run_id: body.task_run_id,
    };
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    let created = artifacts::create(&tx, &new).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn read(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    Ok(Json(artifacts::read(&client, id).await?.ok_or_else(not_found)?).into_response())
}

async fn read_latest(State(app): State<AppState>, Path(key): Path<String>) -> ApiResult<Response> {
    let client = app.client().await?;
    Ok(Json(
        artifacts::read_latest(&client, &key)
            .await?
            .ok_or_else(not_found)?,
    )
    .into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
// As Prefect's `ArtifactUpdate` (`exclude_unset`): an explicit null clears the field.
struct ArtifactUpdate {
    #[serde(default, deserialize_with = "present")]
    data: Option<Option<Value>>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    metadata_: Option<Option<Map<String, Value>>>,
}

async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<ArtifactUpdate>,
) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let changes = ArtifactChanges {
        data: body.data,
        description: body.description,
        metadata: match body.metadata_ {
            Some(given) => Some(metadata(given)?),
            None => None,
        },
    };
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    if !artifacts::update(&tx, id, &changes).await? {
        return Err(not_found());
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    if !artifacts::delete(&tx, id).await? {
        return Err(not_found());
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
struct FilterBody {
    #[serde(default)]
    artifacts: Option<ArtifactFilter>,
    #[serde(default)]
    flow_runs: Option<FlowRunFilter>,
    #[serde(default)]
    task_runs: Option<TaskRunFilter>,
    #[serde(default)]
    flows: Option<FlowFilter>,
    #[serde(default)]
    deployments: Option<DeploymentFilter>,
    #[serde(default)]
    sort: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

impl FilterBody {
    fn runs(&self) -> RunFilters {
        RunFilters {
            flows: self.flows.clone(),
            flow_runs: self.flow_runs.clone(),
            task_runs: self.task_runs.clone(),
            deployments: self.deployments.clone(),
            ..Default::default()
        }
    }

    fn sort(&self) -> ApiResult<ArtifactSort> {
        stratus_http::json::sort(self.sort.as_deref(), ArtifactSort::IdDesc, ArtifactSort::parse)
    }
}

async fn list(app: &AppState, body: FilterBody, latest: bool) -> ApiResult<Response> {
    let (limit, offset) = page(body.limit, body.offset)?;
    let sort = body.sort()?;
    let client = app.client().await?;
    let found = artifacts::filter(
        &client,
        latest,
        &body.artifacts.clone().unwrap_or_default(),
        &body.runs(),
        sort,
        limit,
        offset,
    )
    .await?;
    Ok(Json(found).into_response())
}

/// Prefect's artifact filter has no `latest_id` (only its collection filter does): as
/// there, the field is refused on the artifact routes.
fn no_latest_id(body: &FilterBody) -> ApiResult<()> {
    match body.artifacts.as_ref().and_then(|a| a.latest_id.as_ref()) {
        Some(_) => Err(ApiError::invalid(
            &["body", "artifacts", "latest_id"],
            "extra fields not permitted",
            "value_error.extra",
            serde_json::Value::Null,
        )),
        None => Ok(()),
    }
}

async fn filter(State(app): State<AppState>, Body(body): Body<FilterBody>) -> ApiResult<Response> {
    no_latest_id(&body)?;
    list(&app, body, false).await
}

async fn filter_latest(State(app): State<AppState>, Body(body): Body<FilterBody>) -> ApiResult<Response> {
    list(&app, body, true).await
}

async fn count(State(app): State<AppState>, Body(body): Body<FilterBody>) -> ApiResult<Response> {
    no_latest_id(&body)?;
    let client = app.client().await?;
    Ok(Json(
        artifacts::count(
            &client,
            false,
            &body.artifacts.clone().unwrap_or_default(),
            &body.runs(),
        )
        .await?,
    )
    .into_response())
}

async fn count_latest(State(app): State<AppState>, Body(body): Body<FilterBody>) -> ApiResult<Response> {
    let client = app.client().await?;
    Ok(Json(
        artifacts::count(
            &client,
            true,
            &body.artifacts.clone().unwrap_or_default(),
            &body.runs(),
        )
        .await?,
    )
    .into_response())
}
