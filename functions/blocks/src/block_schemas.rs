//! `/block_schemas` and `/block_capabilities`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{Map, Value};
use stratus_http::json::{from_value, null_default, page, path_id};
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::blocks::{self, BlockSchemaFilter, SchemaError, DEFAULT_SCHEMA_VERSION};
use uuid::Uuid;

use crate::query_param;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockSchemaCreate {
    #[serde(default, deserialize_with = "null_default")]
    fields: Map<String, Value>,
    block_type_id: Uuid,
    #[serde(default, deserialize_with = "null_default")]
    capabilities: Vec<String>,
    #[serde(default)]
    version: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct FilterBody {
    #[serde(default)]
    block_schemas: Option<BlockSchemaFilter>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

fn not_found() -> ApiError {
    ApiError::not_found("Block schema not found")
}

/// 201 with a new schema, 200 with the existing one of the same checksum and version.
pub async fn create(State(app): State<AppState>, Body(raw): Body<Value>) -> ApiResult<Response> {
    let body: BlockSchemaCreate = from_value(raw)?;
    let version = body.version.unwrap_or_else(|| DEFAULT_SCHEMA_VERSION.to_string());
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    if blocks::read_type(&tx, body.block_type_id).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "Block type {} not found.",
            body.block_type_id
        )));
    }
    let (schema, created) = blocks::create_schema(
        &tx,
        &body.fields,
        body.block_type_id,
        &body.capabilities,
        &version,
    )
    .await
    .map_err(|e| match e {
        SchemaError::Db(e) => e.into(),
        SchemaError::MissingBlockType(message) => ApiError::conflict(message),
        SchemaError::Invalid(message) => ApiError::unprocessable(message),
    })?;
    tx.commit().await?;
    Ok(stratus_http::json::upserted(schema, created))
}

pub async fn read(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    let found = blocks::read_schema(&client, id).await?.ok_or_else(not_found)?;
    Ok(Json(found).into_response())
}

/// The schema with that checksum and `?version=`, or without one the newest.
pub async fn read_by_checksum(
    State(app): State<AppState>,
    Path(checksum): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let client = app.client().await?;
    let found = blocks::read_schema_by_checksum(&client, &checksum, query_param(&params, "version"))
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(found).into_response())
}

pub async fn delete(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    let schema = blocks::read_schema(&tx, id).await?.ok_or_else(not_found)?;
    if schema.block_type.as_ref().is_some_and(|t| t.is_protected) {
        return Err(ApiError::forbidden(
            "Block schemas for protected block types cannot be deleted.",
        ));
    }
    blocks::delete_schema(&tx, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Schemas matching the filter, newest first.
pub async fn filter(State(app): State<AppState>, Body(raw): Body<Value>) -> ApiResult<Response> {
    let body: FilterBody = from_value(raw)?;
    let (limit, offset) = page(body.limit, body.offset)?;
    let client = app.client().await?;
    let found =
        blocks::filter_schemas(&client, &body.block_schemas.unwrap_or_default(), limit, offset).await?;
    Ok(Json(found).into_response())
}

pub async fn capabilities(State(app): State<AppState>) -> ApiResult<Response> {
    let client = app.client().await?;
    Ok(Json(blocks::capabilities(&client).await?).into_response())
}
