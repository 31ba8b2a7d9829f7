//! `/block_documents`, and documents read through their type's slug.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{Map, Value};
use stratus_http::json::{from_value, null_default, page, path_id};
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::blocks::{
    self, split_references, BlockDocumentFilter, BlockSchemaFilter, BlockTypeFilter, CreatedDocument,
    DocumentQuery, DocumentSort, DocumentUpdate, NewBlockDocument, SplitData, UpdatedDocument,
};
use uuid::Uuid;

use crate::{include_secrets, invalid_field, lowercase_dashes};
use stratus_http::auth::Caller;

#[derive(Deserialize, schemars::JsonSchema)]
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

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockDocumentUpdate {
    #[serde(default)]
    block_schema_id: Option<Uuid>,
    #[serde(default)]
    data: Option<Map<String, Value>>,
    #[serde(default)]
    merge_existing_data: Option<bool>,
}

#[derive(Deserialize, schemars::JsonSchema)]
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

#[derive(Deserialize, schemars::JsonSchema)]
pub struct CountBody {
    #[serde(default)]
    block_documents: Option<BlockDocumentFilter>,
    #[serde(default)]
    block_types: Option<BlockTypeFilter>,
    #[serde(default)]
    block_schemas: Option<BlockSchemaFilter>,
}

fn not_found() -> ApiError {
    ApiError::not_found("Block document not found")
}

/// The data split from its `$ref` references; a malformed reference is a 422.
fn references_of(data: &Map<String, Value>, raw: &Value) -> ApiResult<SplitData> {
    split_references(data).map_err(|e| invalid_field("data", e.to_string(), "value_error", raw))
}

/// Named documents need a name of lowercase letters, digits and dashes; anonymous ones
/// without a name get `anonymous-<uuid4>`. A document of the same type and name is a 409.
pub async fn create(State(app): State<AppState>, Body(raw): Body<Value>) -> ApiResult<Response> {
    let body: BlockDocumentCreate = from_value(raw.clone())?;
    if let Some(name) = &body.name {
        if !lowercase_dashes(name) {
            return Err(invalid_field(
                "name",
                "Block document name must only contain lowercase letters, numbers, and dashes.",
                "value_error",
                &raw,
            ));
        }
    }
    let named = body.name.as_deref().is_some_and(|n| !n.is_empty());
    if !body.is_anonymous && !named {
        return Err(invalid_field(
            "__root__",
            "Names must be provided for block documents.",
            "value_error",
            &raw,
        ));
    }
    let SplitData { data, references } = references_of(&body.data, &raw)?;
    let name = match body.name.clone() {
        Some(name) if named => name,
        _ => format!("anonymous-{}", Uuid::new_v4()),
    };
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    if let Some(given) = &body.name {
        if blocks::document_name_taken(&tx, body.block_type_id, given).await? {
            return Err(ApiError::conflict("Block already exists"));
        }
    }
    let new = NewBlockDocument {
        name,
        data,
        references,
        block_schema_id: body.block_schema_id,
        block_type_id: body.block_type_id,
        is_anonymous: body.is_anonymous,
    };
    let id = match blocks::create_document(&tx, &app.keyring, &new).await? {
        CreatedDocument::Created(id) => id,
        CreatedDocument::NameTaken => return Err(ApiError::conflict("Block already exists")),
        // As Prefect answers a missing schema: a foreign-key conflict.
        CreatedDocument::NoBlockType => return Err(ApiError::Integrity),
    };
    let created = blocks::read_document(&tx, &app.keyring, id, false)
        .await?
        .ok_or_else(not_found)?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub async fn read(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    caller: Caller,
) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let include = include_secrets(&params, &caller)?;
    let client = app.client().await?;
    let found = blocks::read_document(&client, &app.keyring, id, include)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(found).into_response())
}

/// The named documents of a block type.
pub async fn list_by_type_slug(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    caller: Caller,
) -> ApiResult<Response> {
    let include = include_secrets(&params, &caller)?;
    let client = app.client().await?;
    if blocks::read_type_by_slug(&client, &slug).await?.is_none() {
        return Err(ApiError::not_found("Block type not found"));
    }
    let found = blocks::read_documents_by_type_slug(&client, &app.keyring, &slug, include).await?;
    Ok(Json(found).into_response())
}

pub async fn read_by_type_slug_and_name(
    State(app): State<AppState>,
    Path((slug, name)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
    caller: Caller,
) -> ApiResult<Response> {
    let include = include_secrets(&params, &caller)?;
    let client = app.client().await?;
    let found = blocks::read_document_by_type_slug_and_name(&client, &app.keyring, &slug, &name, include)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(found).into_response())
}

/// Merges into (by default) or replaces a document's data; may move it to another schema
/// of its block type.
pub async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(raw): Body<Value>,
) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let body: BlockDocumentUpdate = from_value(raw.clone())?;
    let data = match &body.data {
        Some(data) => Some(references_of(data, &raw)?),
        None => None,
    };
    let update = DocumentUpdate {
        data,
        merge_existing_data: body.merge_existing_data.unwrap_or(true),
        block_schema_id: body.block_schema_id,
    };
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    match blocks::update_document(&tx, &app.keyring, id, update).await? {
        UpdatedDocument::Updated => {}
        UpdatedDocument::NotFound => return Err(not_found()),
        UpdatedDocument::SchemaNotFound => return Err(ApiError::not_found("Block schema not found")),
        UpdatedDocument::OtherBlockType => {
            return Err(ApiError::bad_request(
                "Must migrate block document to a block schema of the same block type.",
            ))
        }
        UpdatedDocument::SelfReference => {
            return Err(ApiError::bad_request(
                "`parent_block_document_id` and `reference_block_document_id` cannot be the same",
            ))
        }
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

/// Documents matching the filters (anonymous ones left out unless the `block_documents`
/// filter says otherwise), sorted by name by default.
pub async fn filter(
    State(app): State<AppState>,
    caller: Caller,
    Body(raw): Body<Value>,
) -> ApiResult<Response> {
    let body: FilterBody = from_value(raw)?;
    if body.include_secrets {
        crate::secrets_allowed(&caller)?;
    }
    let (limit, offset) = page(body.limit, body.offset)?;
    let sort = stratus_http::json::sort(body.sort.as_deref(), DocumentSort::NameAsc, DocumentSort::parse)?;
    let query = DocumentQuery {
        documents: body.block_documents.as_ref(),
        types: body.block_types.as_ref(),
        schemas: body.block_schemas.as_ref(),
    };
    let client = app.client().await?;
    let found = blocks::filter_documents(
        &client,
        &app.keyring,
        &query,
        sort,
        body.include_secrets,
        limit,
        offset,
    )
    .await?;
    Ok(Json(found).into_response())
}

pub async fn count(State(app): State<AppState>, Body(raw): Body<Value>) -> ApiResult<Response> {
    let body: CountBody = from_value(raw)?;
    let query = DocumentQuery {
        documents: body.block_documents.as_ref(),
        types: body.block_types.as_ref(),
        schemas: body.block_schemas.as_ref(),
    };
    let client = app.client().await?;
    Ok(Json(blocks::count_documents(&client, &query).await?).into_response())
}
