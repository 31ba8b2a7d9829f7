//! `/block_types`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use stratus_shared::db::blocks::{self, BlockSchemaFilter, BlockTypeFields, BlockTypeFilter};
use stratus_shared::json::{page, path_id};
use stratus_shared::{ApiError, ApiResult, AppState, Body};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockTypeCreate {
    name: String,
    slug: String,
    #[serde(default)]
    logo_url: Option<String>,
    #[serde(default)]
    documentation_url: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    code_example: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockTypeUpdate {
    #[serde(default)]
    logo_url: Option<String>,
    #[serde(default)]
    documentation_url: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    code_example: Option<String>,
}

#[derive(Deserialize)]
pub struct FilterBody {
    #[serde(default)]
    block_types: Option<BlockTypeFilter>,
    #[serde(default)]
    block_schemas: Option<BlockSchemaFilter>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

fn not_found() -> ApiError {
    ApiError::not_found("Block type not found")
}

pub async fn create(State(app): State<AppState>, Body(body): Body<BlockTypeCreate>) -> ApiResult<Response> {
    if !crate::is_slug(&body.slug) {
        return Err(ApiError::invalid(
            &["body", "slug"],
            "slug must only contain lowercase letters, numbers, and dashes",
            "value_error",
            json!({"slug": body.slug}),
        ));
    }
    if body.name.to_lowercase().starts_with("prefect") {
        return Err(ApiError::forbidden(
            "Block type names beginning with 'Prefect' are reserved.",
        ));
    }
    let fields = BlockTypeFields {
        logo_url: body.logo_url,
        documentation_url: body.documentation_url,
        description: body.description,
        code_example: body.code_example,
    };
    let client = app.client().await?;
    let created = blocks::create_type(&client, &body.name, &body.slug, &fields, false)
        .await?
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "Block type with name {:?} or slug {:?} already exists",
                body.name, body.slug
            ))
        })?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub async fn read(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    Ok(Json(blocks::read_type(&client, id).await?.ok_or_else(not_found)?).into_response())
}

pub async fn read_by_slug(State(app): State<AppState>, Path(slug): Path<String>) -> ApiResult<Response> {
    let client = app.client().await?;
    Ok(Json(
        blocks::read_type_by_slug(&client, &slug)
            .await?
            .ok_or_else(not_found)?,
    )
    .into_response())
}

pub async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<BlockTypeUpdate>,
) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let fields = BlockTypeFields {
        logo_url: body.logo_url,
        documentation_url: body.documentation_url,
        description: body.description,
        code_example: body.code_example,
    };
    let client = app.client().await?;
    if !blocks::update_type(&client, id, &fields).await? {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    let block_type = blocks::read_type(&client, id).await?.ok_or_else(not_found)?;
    if block_type.is_protected {
        return Err(ApiError::forbidden("protected block types cannot be deleted."));
    }
    blocks::delete_type(&client, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn filter(State(app): State<AppState>, Body(body): Body<FilterBody>) -> ApiResult<Response> {
    let (limit, offset) = page(body.limit, body.offset)?;
    let client = app.client().await?;
    let found = blocks::filter_types(
        &client,
        &body.block_types.unwrap_or_default(),
        body.block_schemas.as_ref(),
        limit,
        offset,
    )
    .await?;
    Ok(Json(found).into_response())
}

pub async fn install_system(State(app): State<AppState>) -> ApiResult<Response> {
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    stratus_shared::system_blocks::install(&tx)
        .await
        .map_err(ApiError::Internal)?;
    tx.commit().await?;
    Ok(Json(Value::Null).into_response())
}
