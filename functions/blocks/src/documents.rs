//! `/block_documents`, and documents read through their type's slug.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use stratus_shared::db::blocks::{
    self, BlockDocumentFilter, BlockSchemaFilter, BlockTypeFilter, DocumentQuery, DocumentSort,
    NewBlockDocument,
};
use stratus_shared::json::{null_default, page, path_id};
use stratus_shared::{ApiError, ApiResult, AppState, Body};
use uuid::Uuid;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockDocumentCreate {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    data: Map<String, Value>,
    block_schema_id: Uuid,
    block_type_id: Uuid,
    #[serde(default, deserialize_with = "null_default")]
    is_anonymous: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockDocumentUpdate {
    #[serde(default)]
    block_schema_id: Option<Uuid>,
    #[serde(default, deserialize_with = "null_default")]
    data: Map<String, Value>,
    #[serde(default)]
    merge_existing_data: Option<bool>,
}

#[derive(Deserialize)]
pub struct FilterBody {
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default)]
    block_documents: Option<BlockDocumentFilter>,
    #[serde(default)]
    block_types: Option<BlockTypeFilter>,
    #[serde(default)]
    block_schemas: Option<BlockSchemaFilter>,
    #[serde(default, deserialize_with = "null_default")]
    include_secrets: bool,
    #[serde(default)]
    sort: Option<String>,
}

#[derive(Deserialize)]
pub struct SecretsQuery {
    #[serde(default)]
    include_secrets: Option<String>,
}

impl SecretsQuery {
    fn include(&self) -> ApiResult<bool> {
        match self.include_secrets.as_deref().map(str::to_lowercase).as_deref() {
            None | Some("false") | Some("0") | Some("no") | Some("off") => Ok(false),
            Some("true") | Some("1") | Some("yes") | Some("on") => Ok(true),
            Some(other) => Err(ApiError::invalid(
                &["query", "include_secrets"],
                format!("value could not be parsed to a boolean: {other:?}"),
                "type_error.bool",
                Value::Null,
            )),
        }
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("Block document not found")
}

pub async fn create(
    State(app): State<AppState>,
    Body(body): Body<BlockDocumentCreate>,
) -> ApiResult<Response> {
    let name = match (body.name, body.is_anonymous) {
        (Some(name), _) if !name.is_empty() => {
            if !body.is_anonymous && !crate::is_slug(&name) {
                return Err(ApiError::invalid(
                    &["body", "name"],
                    "name must only contain lowercase letters, numbers, and dashes",
                    "value_error",
                    json!({"name": name}),
                ));
            }
            name
        }
        (_, true) => format!("anonymous-{}", Uuid::new_v4()),
        (_, false) => {
            return Err(ApiError::invalid(
                &["body", "name"],
                "Names must be provided for block documents.",
                "value_error",
                Value::Null,
            ))
        }
    };
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    let schema = blocks::read_schema(&tx, body.block_schema_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Block schema not found"))?;
    if schema.block_type_id != body.block_type_id {
        return Err(ApiError::conflict(
            "The block schema does not belong to the given block type.",
        ));
    }
    let doc = NewBlockDocument {
        name,
        data: body.data,
        block_schema_id: body.block_schema_id,
        block_type_id: body.block_type_id,
        is_anonymous: body.is_anonymous,
    };
    let id = blocks::create_document(&tx, &doc)
        .await?
        .ok_or_else(|| ApiError::conflict("Block already exists"))?;
    let created = blocks::read_document(&tx, id, false)
        .await?
        .ok_or_else(not_found)?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub async fn read(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<SecretsQuery>,
) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let include = q.include()?;
    let client = app.client().await?;
    Ok(Json(
        blocks::read_document(&client, id, include)
            .await?
            .ok_or_else(not_found)?,
    )
    .into_response())
}

pub async fn list_by_type_slug(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    Query(q): Query<SecretsQuery>,
) -> ApiResult<Response> {
    let include = q.include()?;
    let client = app.client().await?;
    if blocks::read_type_by_slug(&client, &slug).await?.is_none() {
        return Err(ApiError::not_found("Block type not found"));
    }
    Ok(Json(blocks::read_documents_by_type_slug(&client, &slug, None, include).await?).into_response())
}

pub async fn read_by_type_slug_and_name(
    State(app): State<AppState>,
    Path((slug, name)): Path<(String, String)>,
    Query(q): Query<SecretsQuery>,
) -> ApiResult<Response> {
    let include = q.include()?;
    let client = app.client().await?;
    let doc = blocks::read_documents_by_type_slug(&client, &slug, Some(&name), include)
        .await?
        .into_iter()
        .next()
        .ok_or_else(not_found)?;
    Ok(Json(doc).into_response())
}

pub async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<BlockDocumentUpdate>,
) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    if let Some(schema_id) = body.block_schema_id {
        let existing = blocks::read_document(&tx, id, false)
            .await?
            .ok_or_else(not_found)?;
        let schema = blocks::read_schema(&tx, schema_id)
            .await?
            .ok_or_else(|| ApiError::not_found("Block schema not found"))?;
        if schema.block_type_id != existing.block_type_id {
            return Err(ApiError::bad_request(
                "Must migrate block document to a block schema of the same block type.",
            ));
        }
    }
    let merge = body.merge_existing_data.unwrap_or(true);
    if !blocks::update_document(&tx, id, &body.data, merge, body.block_schema_id).await? {
        return Err(not_found());
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    if !blocks::delete_document(&client, id).await? {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

fn sort_of(sort: Option<&str>) -> ApiResult<DocumentSort> {
    stratus_shared::json::sort(sort, DocumentSort::NameAsc, DocumentSort::parse)
}

pub async fn filter(State(app): State<AppState>, Body(body): Body<FilterBody>) -> ApiResult<Response> {
    let (limit, offset) = page(body.limit, body.offset)?;
    let sort = sort_of(body.sort.as_deref())?;
    let query = DocumentQuery {
        documents: body.block_documents.as_ref(),
        types: body.block_types.as_ref(),
        schemas: body.block_schemas.as_ref(),
    };
    let client = app.client().await?;
    let docs = blocks::filter_documents(&client, &query, sort, body.include_secrets, limit, offset).await?;
    Ok(Json(docs).into_response())
}

pub async fn count(State(app): State<AppState>, Body(body): Body<FilterBody>) -> ApiResult<Response> {
    let query = DocumentQuery {
        documents: body.block_documents.as_ref(),
        types: body.block_types.as_ref(),
        schemas: body.block_schemas.as_ref(),
    };
    let client = app.client().await?;
    Ok(Json(blocks::count_documents(&client, &query).await?).into_response())
}
