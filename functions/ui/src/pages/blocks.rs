//! Blocks: the saved documents, the catalog of block types, and the forms that create,
//! edit and delete documents. The forms are built in the browser from the block type's
//! schema (`static/schema-form.js`); secrets are sent to the page obfuscated only, and an
//! obfuscated secret sent back keeps its stored value.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use serde_json::{json, Map, Value};
use stratus_http::AppState;
use stratus_store::db::blocks::{self as docs, BlockDocumentFilter, BlockSchema, BlockType, DocumentQuery};
use stratus_store::db::blocks::{BlockSchemaFilter, BlockTypeFilter, DocumentSort};
use stratus_store::db::Client;

use super::resources::{link, text, Table};
use super::{id_param, render, view, PageError, PagePath, PageResult};

fn filter<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, PageError> {
    serde_json::from_value(v).map_err(|e| PageError::Internal(e.to_string()))
}

#[derive(Template)]
#[template(path = "blocks.html")]
struct BlocksPage {
    nav: &'static str,
    t: Table,
}

pub async fn list(State(app): State<AppState>) -> PageResult {
    let c = app.client().await?;
    let named: BlockDocumentFilter = filter(json!({"is_anonymous": {"eq_": false}}))?;
    let query = DocumentQuery {
        documents: Some(&named),
        types: None,
        schemas: None,
    };
    let rows = docs::filter_documents(
        &c,
        &app.keyring,
        &query,
        DocumentSort::BlockTypeAndNameAsc,
        false,
        500,
        0,
    )
    .await?;
    let t = Table {
        head: vec!["Block", "Type", "Updated"],
        rows: rows
            .iter()
            .map(|d| {
                vec![
                    link(d.name.clone(), format!("/blocks/{}", d.id)),
                    text(d.block_type_name.clone().unwrap_or_default()),
                    text(view::when(Some(d.updated))),
                ]
            })
            .collect(),
        empty: "No blocks yet.",
    };
    Ok(render(&BlocksPage { nav: "blocks", t }))
}

struct TypeCard {
    slug: String,
    name: String,
    summary: String,
    logo: String,
}

#[derive(Template)]
#[template(path = "block_catalog.html")]
struct CatalogPage {
    nav: &'static str,
    types: Vec<TypeCard>,
}

/// The first paragraph of a block type's description, which Prefect writes as markdown,
/// as plain text: a link keeps its words and loses its address.
fn summary(description: Option<&str>) -> String {
    let text = description.unwrap_or_default().trim();
    let first = text.split("\n\n").next().unwrap_or_default();
    let mut plain = String::with_capacity(first.len());
    let mut rest = first;
    while let Some(open) = rest.find('[') {
        let Some((words, after)) = rest[open + 1..].split_once("](") else {
            break;
        };
        let Some(close) = after.find(')') else {
            break;
        };
        plain.push_str(&rest[..open]);
        plain.push_str(words);
        rest = &after[close + 1..];
    }
    plain.push_str(rest);
    plain.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A logo the page may show: only an https address (the page's policy allows those).
fn logo(url: Option<&str>) -> String {
    url.filter(|u| u.starts_with("https://"))
        .unwrap_or_default()
        .to_string()
}

pub async fn catalog(State(app): State<AppState>) -> PageResult {
    let c = app.client().await?;
    let types = docs::filter_types(&c, &BlockTypeFilter::default(), None, 500, 0).await?;
    Ok(render(&CatalogPage {
        nav: "blocks",
        types: types
            .iter()
            .map(|t| TypeCard {
                slug: stratus_store::url::percent_encode(&t.slug),
                name: t.name.clone(),
                summary: summary(t.description.as_deref()),
                logo: logo(t.logo_url.as_deref()),
            })
            .collect(),
    }))
}

/// What a block form needs: the type, its newest schema, and the saved documents of
/// every block type the schema nests (by slug), to choose from.
struct FormParts {
    kind: BlockType,
    schema: BlockSchema,
    nested: String,
    secrets: String,
}

async fn form_parts(
    app: &AppState,
    c: &Client,
    kind: BlockType,
    schema: Option<BlockSchema>,
) -> Result<FormParts, PageError> {
    let schema = match schema {
        Some(s) => s,
        None => {
            let newest: BlockSchemaFilter = filter(json!({"block_type_id": {"any_": [kind.id]}}))?;
            docs::filter_schemas(c, &newest, 1, 0)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    PageError::NotFound(format!("The block type {} has no schema yet.", kind.name))
                })?
        }
    };
    let mut slugs = Vec::new();
    nested_slugs(&schema.fields, &mut slugs);
    let mut nested = BTreeMap::new();
    for slug in slugs {
        let saved = docs::read_documents_by_type_slug(c, &app.keyring, &slug, false).await?;
        let choices: Vec<(String, String)> = saved.into_iter().map(|d| (d.id.to_string(), d.name)).collect();
        nested.insert(slug, choices);
    }
    let secrets = schema
        .fields
        .get("secret_fields")
        .cloned()
        .unwrap_or_else(|| json!([]));
    Ok(FormParts {
        kind,
        nested: serde_json::to_string(&nested).unwrap_or_default(),
        secrets: secrets.to_string(),
        schema,
    })
}

/// Every `block_type_slug` a schema names (its own excepted: the top level has one too).
fn nested_slugs(fields: &Value, out: &mut Vec<String>) {
    for key in ["definitions", "$defs"] {
        if let Some(Value::Object(defs)) = fields.get(key) {
            for def in defs.values() {
                if let Some(slug) = def.get("block_type_slug").and_then(Value::as_str) {
                    if !out.iter().any(|s| s == slug) {
                        out.push(slug.to_string());
                    }
                }
            }
        }
    }
}

#[derive(Template)]
#[template(path = "block_form.html")]
struct BlockFormPage {
    nav: &'static str,
    title: String,
    kind_name: String,
    kind_slug: String,
    description: String,
    docs_url: String,
    /// `POST ...` to create, `PATCH ...` to edit.
    api: String,
    extra: String,
    then: String,
    name: String,
    editing: bool,
    id: String,
    schema: String,
    value: String,
    nested: String,
    secrets: String,
    detail: String,
}

pub async fn create_form(State(app): State<AppState>, PagePath(slug): PagePath) -> PageResult {
    let c = app.client().await?;
    let kind = docs::read_type_by_slug(&c, &slug)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("There is no block type “{slug}”.")))?;
    let parts = form_parts(&app, &c, kind, None).await?;
    Ok(render(&BlockFormPage {
        nav: "blocks",
        title: format!("New {}", parts.kind.name),
        kind_name: parts.kind.name.clone(),
        kind_slug: stratus_store::url::percent_encode(&parts.kind.slug),
        description: parts
            .kind
            .description
            .as_deref()
            .map(super::markdown::to_safe_html)
            .unwrap_or_default(),
        docs_url: parts
            .kind
            .documentation_url
            .clone()
            .filter(|u| u.starts_with("https://"))
            .unwrap_or_default(),
        api: "POST /api/block_documents/".into(),
        extra: json!({"block_type_id": parts.kind.id, "block_schema_id": parts.schema.id}).to_string(),
        then: "go:/blocks/{id}".into(),
        name: String::new(),
        editing: false,
        id: String::new(),
        schema: parts.schema.fields.to_string(),
        value: "{}".into(),
        nested: parts.nested,
        secrets: parts.secrets,
        detail: String::new(),
    }))
}

/// A document's data as the form edits it: each nested block as a reference to it.
fn form_value(data: &Value, references: &Map<String, Value>) -> Value {
    let mut value = data.clone();
    if let Value::Object(map) = &mut value {
        for (name, reference) in references {
            if let Some(id) = reference.pointer("/block_document/id") {
                map.insert(name.clone(), json!({"$ref": {"block_document_id": id}}));
            }
        }
    }
    value
}

pub async fn page(State(app): State<AppState>, PagePath(raw): PagePath) -> PageResult {
    let id = id_param(&raw, "block")?;
    let c = app.client().await?;
    // Never with secrets: the page shows them obfuscated.
    let d = docs::read_document(&c, &app.keyring, id, false)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("There is no block {id}.")))?;
    let kind = match d.block_type.clone() {
        Some(k) => k,
        None => docs::read_type(&c, d.block_type_id)
            .await?
            .ok_or_else(|| PageError::NotFound(format!("There is no block {id}.")))?,
    };
    let parts = form_parts(&app, &c, kind, d.block_schema.clone()).await?;
    Ok(render(&BlockFormPage {
        nav: "blocks",
        title: d.name.clone(),
        kind_name: parts.kind.name.clone(),
        kind_slug: stratus_store::url::percent_encode(&parts.kind.slug),
        description: String::new(),
        docs_url: String::new(),
        api: format!("PATCH /api/block_documents/{id}"),
        extra: json!({"merge_existing_data": false}).to_string(),
        then: String::new(),
        name: d.name.clone(),
        editing: true,
        id: id.to_string(),
        schema: parts.schema.fields.to_string(),
        value: form_value(&d.data, &d.block_document_references).to_string(),
        nested: parts.nested,
        secrets: parts.secrets,
        detail: view::pretty(&d.data),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_block_types_are_found_in_the_definitions() {
        let fields = json!({"block_type_slug": "s3-bucket", "definitions": {
            "AwsCredentials": {"block_type_slug": "aws-credentials"},
            "Other": {"type": "object"},
            "Again": {"block_type_slug": "aws-credentials"}}});
        let mut out = Vec::new();
        nested_slugs(&fields, &mut out);
        assert_eq!(out, vec!["aws-credentials"]);
    }

    #[test]
    fn references_become_refs_for_the_form() {
        let data = json!({"bucket": "b", "credentials": {"key": "**********"}});
        let refs = json!({"credentials": {"block_document": {"id": "4a1c", "name": "c"}}});
        let Value::Object(refs) = refs else { unreachable!() };
        assert_eq!(
            form_value(&data, &refs),
            json!({"bucket": "b", "credentials": {"$ref": {"block_document_id": "4a1c"}}})
        );
    }

    #[test]
    fn only_https_logos_and_the_first_paragraph() {
        assert_eq!(logo(Some("http://x/y.png")), "");
        assert_eq!(logo(Some("javascript:alert(1)")), "");
        assert_eq!(logo(Some("https://x/y.png")), "https://x/y.png");
        assert_eq!(summary(Some("Stores a\nsecret.\n\nMore.")), "Stores a secret.");
        assert_eq!(
            summary(Some(
                "Refer to the [boto3 docs](https://boto3.amazonaws.com/v1/x) for more."
            )),
            "Refer to the boto3 docs for more."
        );
        assert_eq!(summary(Some("a [b] c (d) [e](f")), "a [b] c (d) [e](f");
    }
}
