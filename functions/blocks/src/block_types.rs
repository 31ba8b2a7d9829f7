//! `/block_types`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use stratus_http::json::{from_value, page, path_id};
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::blocks::{self, BlockSchemaFilter, BlockTypeFields, BlockTypeFilter, BlockTypePatch};

use crate::{check_http_url, invalid_field, lowercase_dashes};

/// Characters Prefect bans from names.
const BANNED_CHARACTERS: [char; 5] = ['/', '%', '&', '>', '<'];

#[derive(Deserialize, schemars::JsonSchema)]
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

/// Every key is optional; an explicit null clears the field, as in Prefect.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockTypeUpdate {
    #[serde(default, deserialize_with = "stratus_http::json::present")]
    logo_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "stratus_http::json::present")]
    documentation_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "stratus_http::json::present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "stratus_http::json::present")]
    code_example: Option<Option<String>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
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

pub async fn create(State(app): State<AppState>, Body(raw): Body<Value>) -> ApiResult<Response> {
    let body: BlockTypeCreate = from_value(raw.clone())?;
    if body.name.contains(BANNED_CHARACTERS) {
        return Err(invalid_field(
            "name",
            format!(
                "Name '{}' contains an invalid character. Must not contain any of: ['/', '%', '&', '>', '<'].",
                body.name
            ),
            "value_error.invalidname",
            &raw,
        ));
    }
    if !lowercase_dashes(&body.slug) {
        return Err(invalid_field(
            "slug",
            "Block type slug must only contain lowercase letters, numbers, and dashes.",
            "value_error",
            &raw,
        ));
    }
    check_http_url("logo_url", &body.logo_url, &raw)?;
    check_http_url("documentation_url", &body.documentation_url, &raw)?;
    // API-created block types cannot start with "Prefect": it is reserved for the system.
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
            ApiError::conflict(format!("Block type with name \"{}\" already exists", body.name))
        })?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub async fn read(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    let found = blocks::read_type(&client, id).await?.ok_or_else(not_found)?;
    Ok(Json(found).into_response())
}

pub async fn read_by_slug(State(app): State<AppState>, Path(slug): Path<String>) -> ApiResult<Response> {
    let client = app.client().await?;
    let found = blocks::read_type_by_slug(&client, &slug)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(found).into_response())
}

/// Writes only when the patch changes something, as Prefect does (this avoids lock
/// contention when many clients register the same block type).
pub async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(raw): Body<Value>,
) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let body: BlockTypeUpdate = from_value(raw.clone())?;
    check_http_url("logo_url", &body.logo_url.clone().flatten(), &raw)?;
    check_http_url(
        "documentation_url",
        &body.documentation_url.clone().flatten(),
        &raw,
    )?;
    let patch = BlockTypePatch {
        logo_url: body.logo_url,
        documentation_url: body.documentation_url,
        description: body.description,
        code_example: body.code_example,
    };
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    let current = blocks::read_type(&tx, id).await?.ok_or_else(not_found)?;
    if patch.changes(&current) && !blocks::update_type(&tx, id, &patch).await? {
        return Err(not_found());
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    let block_type = blocks::read_type(&tx, id).await?.ok_or_else(not_found)?;
    if block_type.is_protected {
        return Err(ApiError::forbidden("protected block types cannot be deleted."));
    }
    blocks::delete_type(&tx, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn filter(State(app): State<AppState>, Body(raw): Body<Value>) -> ApiResult<Response> {
    let body: FilterBody = from_value(raw)?;
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

/// Registers the built-in block types and schemas (the protected core ones and the rest
/// Prefect registers on start).
pub async fn install_system(State(app): State<AppState>) -> ApiResult<Response> {
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    stratus_store::system_blocks::install(&tx).await?;
    tx.commit().await?;
    Ok(Json(Value::Null).into_response())
}
