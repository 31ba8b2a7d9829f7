//! SQL for block types, block schemas and block documents (with their references).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::filters::{BoolFilter, IdFilter, Query, TextFilter};
use crate::json::ts;

/// What a secret looks like when it is not asked for.
pub const OBFUSCATED_SECRET: &str = "**********";

#[derive(Debug, Clone, Serialize)]
pub struct BlockType {
    pub id: Uuid,
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub name: String,
    pub slug: String,
    pub logo_url: Option<String>,
    pub documentation_url: Option<String>,
    pub description: Option<String>,
    pub code_example: Option<String>,
    pub is_protected: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BlockSchema {
    pub id: Uuid,
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub checksum: String,
    pub fields: Value,
    pub block_type_id: Uuid,
    pub block_type: Option<BlockType>,
    pub capabilities: Value,
    pub version: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BlockDocument {
    pub id: Uuid,
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub name: String,
    pub data: Value,
    pub block_schema_id: Uuid,
    pub block_schema: Option<BlockSchema>,
    pub block_type_id: Uuid,
    pub block_type_name: Option<String>,
    pub block_type: Option<BlockType>,
    pub block_document_references: Map<String, Value>,
    pub is_anonymous: bool,
}

const TYPE_COLUMNS: &str =
    "bt.id, bt.created, bt.updated, bt.name, bt.slug, bt.logo_url, bt.documentation_url, \
                            bt.description, bt.code_example, bt.is_protected";
const SCHEMA_COLUMNS: &str =
    "bs.id, bs.created, bs.updated, bs.checksum, bs.fields, bs.block_type_id, bs.capabilities, bs.version";

fn type_from_row(r: &Row, at: usize) -> BlockType {
    BlockType {
        id: r.get(at),
        created: r.get(at + 1),
        updated: r.get(at + 2),
        name: r.get(at + 3),
        slug: r.get(at + 4),
        logo_url: r.get(at + 5),
        documentation_url: r.get(at + 6),
        description: r.get(at + 7),
        code_example: r.get(at + 8),
        is_protected: r.get(at + 9),
    }
}

/// A schema row followed by its type's columns.
fn schema_from_row(r: &Row, at: usize) -> BlockSchema {
    BlockSchema {
        id: r.get(at),
        created: r.get(at + 1),
        updated: r.get(at + 2),
        checksum: r.get(at + 3),
        fields: r.get(at + 4),
        block_type_id: r.get(at + 5),
        capabilities: r.get(at + 6),
        version: r.get(at + 7),
        block_type: Some(type_from_row(r, at + 8)),
    }
}

// ---- block types --------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Deserialize)]
pub struct BlockTypeFields {
    #[serde(default)]
    pub logo_url: Option<String>,
    #[serde(default)]
    pub documentation_url: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub code_example: Option<String>,
}

/// Inserts a block type; None when its name or slug is taken.
pub async fn create_type(
    c: &impl GenericClient,
    name: &str,
    slug: &str,
    f: &BlockTypeFields,
    is_protected: bool,
) -> Result<Option<BlockType>, tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO block_type AS bt (name, slug, logo_url, documentation_url, description, code_example, is_protected) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING {TYPE_COLUMNS}"
    );
    let row = c
        .query_opt(
            sql.as_str(),
            &[
                &name,
                &slug,
                &f.logo_url,
                &f.documentation_url,
                &f.description,
                &f.code_example,
                &is_protected,
            ],
        )
        .await?;
    Ok(row.map(|r| type_from_row(&r, 0)))
}

/// Registers a system block type, updating its descriptive fields if it exists.
pub async fn upsert_system_type(
    c: &impl GenericClient,
    name: &str,
    slug: &str,
    f: &BlockTypeFields,
) -> Result<BlockType, tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO block_type AS bt (name, slug, logo_url, documentation_url, description, code_example, is_protected) \
         VALUES ($1, $2, $3, $4, $5, $6, true) \
         ON CONFLICT (slug) DO UPDATE SET name = EXCLUDED.name, logo_url = EXCLUDED.logo_url, \
           documentation_url = EXCLUDED.documentation_url, description = EXCLUDED.description, \
           code_example = EXCLUDED.code_example, is_protected = true, updated = now() \
         RETURNING {TYPE_COLUMNS}"
    );
    let row = c
        .query_one(
            sql.as_str(),
            &[
                &name,
                &slug,
                &f.logo_url,
                &f.documentation_url,
                &f.description,
                &f.code_example,
            ],
        )
        .await?;
    Ok(type_from_row(&row, 0))
}

pub async fn read_type(c: &impl GenericClient, id: Uuid) -> Result<Option<BlockType>, tokio_postgres::Error> {
    let sql = format!("SELECT {TYPE_COLUMNS} FROM block_type bt WHERE bt.id = $1");
    Ok(c.query_opt(sql.as_str(), &[&id])
        .await?
        .map(|r| type_from_row(&r, 0)))
}

pub async fn read_type_by_slug(
    c: &impl GenericClient,
    slug: &str,
) -> Result<Option<BlockType>, tokio_postgres::Error> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {TYPE_COLUMNS} FROM block_type bt WHERE bt.slug = $1"
        ))
        .await?;
    Ok(c.query_opt(&stmt, &[&slug]).await?.map(|r| type_from_row(&r, 0)))
}

/// Updates the given descriptive fields; returns false when the type does not exist.
pub async fn update_type(
    c: &impl GenericClient,
    id: Uuid,
    f: &BlockTypeFields,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "UPDATE block_type SET logo_url = coalesce($2, logo_url), documentation_url = coalesce($3, documentation_url), \
             description = coalesce($4, description), code_example = coalesce($5, code_example), updated = now() \
             WHERE id = $1",
            &[&id, &f.logo_url, &f.documentation_url, &f.description, &f.code_example],
        )
        .await?;
    Ok(n > 0)
}

pub async fn delete_type(c: &impl GenericClient, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    Ok(c.execute("DELETE FROM block_type WHERE id = $1", &[&id]).await? > 0)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockTypeFilter {
    #[serde(default)]
    pub name: Option<TextFilter>,
    #[serde(default)]
    pub slug: Option<TextFilter>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockSchemaFilter {
    #[serde(default)]
    pub operator: Option<crate::filters::Operator>,
    #[serde(default)]
    pub block_type_id: Option<IdFilter>,
    #[serde(default)]
    pub block_capabilities: Option<CapabilitiesFilter>,
    #[serde(default)]
    pub id: Option<IdFilter>,
    #[serde(default)]
    pub version: Option<TextFilter>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilitiesFilter {
    #[serde(default)]
    pub all_: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockDocumentFilter {
    #[serde(default)]
    pub operator: Option<crate::filters::Operator>,
    #[serde(default)]
    pub id: Option<IdFilter>,
    #[serde(default)]
    pub is_anonymous: Option<BoolFilter>,
    #[serde(default)]
    pub block_type_id: Option<IdFilter>,
    #[serde(default)]
    pub name: Option<TextFilter>,
}

fn push_text(parts: &mut Vec<String>, q: &mut Query, col: &str, f: &Option<TextFilter>) {
    let Some(f) = f else { return };
    if let Some(any) = &f.any_ {
        parts.push(format!("{col} = ANY({}::text[])", q.bind(any.clone())));
    }
    if let Some(like) = &f.like_ {
        parts.push(format!(
            "{col} ILIKE {}",
            q.bind(format!("%{}%", like.replace('%', "\\%").replace('_', "\\_")))
        ));
    }
}

fn push_ids(parts: &mut Vec<String>, q: &mut Query, col: &str, f: &Option<IdFilter>) {
    if let Some(any) = f.as_ref().and_then(|f| f.any_.clone()) {
        parts.push(format!("{col} = ANY({}::uuid[])", q.bind(any)));
    }
}

fn join(parts: Vec<String>, or: bool) -> String {
    if parts.is_empty() {
        "TRUE".into()
    } else {
        format!("({})", parts.join(if or { " OR " } else { " AND " }))
    }
}

impl BlockTypeFilter {
    fn sql(&self, q: &mut Query) -> String {
        let mut parts = Vec::new();
        push_text(&mut parts, q, "bt.name", &self.name);
        push_text(&mut parts, q, "bt.slug", &self.slug);
        join(parts, false)
    }
}

impl BlockSchemaFilter {
    fn sql(&self, q: &mut Query, a: &str) -> String {
        let mut parts = Vec::new();
        push_ids(&mut parts, q, &format!("{a}.block_type_id"), &self.block_type_id);
        push_ids(&mut parts, q, &format!("{a}.id"), &self.id);
        push_text(&mut parts, q, &format!("{a}.version"), &self.version);
        if let Some(all) = self.block_capabilities.as_ref().and_then(|f| f.all_.clone()) {
            parts.push(format!("{a}.capabilities @> {}::jsonb", q.bind(Value::from(all))));
        }
        join(parts, self.operator == Some(crate::filters::Operator::Or))
    }
}

impl BlockDocumentFilter {
    fn sql(&self, q: &mut Query) -> String {
        let mut parts = Vec::new();
        push_ids(&mut parts, q, "bd.id", &self.id);
        push_ids(&mut parts, q, "bd.block_type_id", &self.block_type_id);
        push_text(&mut parts, q, "bd.name", &self.name);
        if let Some(eq) = self.is_anonymous.as_ref().and_then(|f| f.eq_) {
            parts.push(format!("bd.is_anonymous = {}", q.bind(eq)));
        }
        join(parts, self.operator == Some(crate::filters::Operator::Or))
    }
}

pub async fn filter_types(
    c: &impl GenericClient,
    types: &BlockTypeFilter,
    schemas: Option<&BlockSchemaFilter>,
    limit: i64,
    offset: i64,
) -> Result<Vec<BlockType>, tokio_postgres::Error> {
    let mut q = Query::default();
    let mut cond = types.sql(&mut q);
    if let Some(s) = schemas {
        cond = format!(
            "{cond} AND EXISTS (SELECT 1 FROM block_schema bs WHERE bs.block_type_id = bt.id AND {})",
            s.sql(&mut q, "bs")
        );
    }
    let sql = format!(
        "SELECT {TYPE_COLUMNS} FROM block_type bt WHERE {cond} ORDER BY bt.name LIMIT {} OFFSET {}",
        q.bind(limit),
        q.bind(offset)
    );
    Ok(c.query(sql.as_str(), &q.params())
        .await?
        .iter()
        .map(|r| type_from_row(r, 0))
        .collect())
}

// ---- block schemas ------------------------------------------------------------------------

/// Inserts the schema unless `(checksum, version)` exists; returns it and whether it is
/// new. None only if it was deleted between the insert and the read.
pub async fn create_schema(
    c: &impl GenericClient,
    fields: &Value,
    block_type_id: Uuid,
    capabilities: &[String],
    version: &str,
) -> Result<Option<(BlockSchema, bool)>, tokio_postgres::Error> {
    let checksum = crate::block_checksum::schema_checksum(fields);
    let inserted = c
        .query_opt(
            "INSERT INTO block_schema (checksum, fields, capabilities, version, block_type_id) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (checksum, version) DO NOTHING RETURNING id",
            &[&checksum, fields, &Value::from(capabilities.to_vec()), &version, &block_type_id],
        )
        .await?;
    let schema = read_schema_by_checksum(c, &checksum, Some(version)).await?;
    Ok(schema.map(|s| (s, inserted.is_some())))
}

pub async fn read_schema(
    c: &impl GenericClient,
    id: Uuid,
) -> Result<Option<BlockSchema>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {SCHEMA_COLUMNS}, {TYPE_COLUMNS} FROM block_schema bs JOIN block_type bt ON bt.id = bs.block_type_id WHERE bs.id = $1"
    );
    Ok(c.query_opt(sql.as_str(), &[&id])
        .await?
        .map(|r| schema_from_row(&r, 0)))
}

/// The schema with that checksum and version, or the newest with that checksum.
pub async fn read_schema_by_checksum(
    c: &impl GenericClient,
    checksum: &str,
    version: Option<&str>,
) -> Result<Option<BlockSchema>, tokio_postgres::Error> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {SCHEMA_COLUMNS}, {TYPE_COLUMNS} FROM block_schema bs JOIN block_type bt ON bt.id = bs.block_type_id \
             WHERE bs.checksum = $1 AND ($2::text IS NULL OR bs.version = $2) ORDER BY bs.created DESC LIMIT 1"
        ))
        .await?;
    Ok(c.query_opt(&stmt, &[&checksum, &version])
        .await?
        .map(|r| schema_from_row(&r, 0)))
}

pub async fn delete_schema(c: &impl GenericClient, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    Ok(c.execute("DELETE FROM block_schema WHERE id = $1", &[&id])
        .await?
        > 0)
}

pub async fn filter_schemas(
    c: &impl GenericClient,
    f: &BlockSchemaFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<BlockSchema>, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = f.sql(&mut q, "bs");
    let sql = format!(
        "SELECT {SCHEMA_COLUMNS}, {TYPE_COLUMNS} FROM block_schema bs JOIN block_type bt ON bt.id = bs.block_type_id \
         WHERE {cond} ORDER BY bs.created DESC LIMIT {} OFFSET {}",
        q.bind(limit),
        q.bind(offset)
    );
    Ok(c.query(sql.as_str(), &q.params())
        .await?
        .iter()
        .map(|r| schema_from_row(r, 0))
        .collect())
}

pub async fn capabilities(c: &impl GenericClient) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT DISTINCT cap FROM block_schema, jsonb_array_elements_text(capabilities) AS cap ORDER BY cap",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

// ---- block documents ----------------------------------------------------------------------

/// Splits `{"$ref": {"block_document_id": ...}}` values out of document data.
pub fn split_references(data: &Map<String, Value>) -> (Map<String, Value>, Vec<(String, Uuid)>) {
    let mut plain = Map::new();
    let mut refs = Vec::new();
    for (key, value) in data {
        let reference = value
            .get("$ref")
            .and_then(|r| r.get("block_document_id").or(Some(r)))
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Uuid>().ok());
        match reference {
            Some(id) => refs.push((key.clone(), id)),
            None => {
                plain.insert(key.clone(), value.clone());
            }
        }
    }
    (plain, refs)
}

/// Replaces the values at `secret_fields` paths (dotted, `*` matching any key) with the
/// obfuscated marker.
pub fn obfuscate(data: &mut Value, secret_fields: &[String]) {
    for path in secret_fields {
        let parts: Vec<&str> = path.split('.').collect();
        obfuscate_path(data, &parts);
    }
}

fn obfuscate_path(value: &mut Value, path: &[&str]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Some(map) = value.as_object_mut() else { return };
    let keys: Vec<String> = if *first == "*" {
        map.keys().cloned().collect()
    } else {
        vec![first.to_string()]
    };
    for key in keys {
        if let Some(v) = map.get_mut(&key) {
            if rest.is_empty() {
                *v = Value::String(OBFUSCATED_SECRET.to_string());
            } else {
                obfuscate_path(v, rest);
            }
        }
    }
}

pub struct NewBlockDocument {
    pub name: String,
    pub data: Map<String, Value>,
    pub block_schema_id: Uuid,
    pub block_type_id: Uuid,
    pub is_anonymous: bool,
}

/// Inserts a document and its references; None when `(block_type_id, name)` is taken.
pub async fn create_document(
    c: &impl GenericClient,
    doc: &NewBlockDocument,
) -> Result<Option<Uuid>, tokio_postgres::Error> {
    let (plain, refs) = split_references(&doc.data);
    let row = c
        .query_opt(
            "INSERT INTO block_document (name, data, is_anonymous, block_type_name, block_type_id, block_schema_id) \
             SELECT $1, $2, $3, bt.name, $4, $5 FROM block_type bt WHERE bt.id = $4 \
             ON CONFLICT (block_type_id, name) DO NOTHING RETURNING id",
            &[&doc.name, &Value::Object(plain), &doc.is_anonymous, &doc.block_type_id, &doc.block_schema_id],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let id: Uuid = row.get(0);
    insert_references(c, id, &refs).await?;
    Ok(Some(id))
}

async fn insert_references(
    c: &impl GenericClient,
    id: Uuid,
    refs: &[(String, Uuid)],
) -> Result<(), tokio_postgres::Error> {
    for (name, target) in refs {
        c.execute(
            "INSERT INTO block_document_reference (name, parent_block_document_id, reference_block_document_id) VALUES ($1, $2, $3)",
            &[name, &id, target],
        )
        .await?;
    }
    Ok(())
}

/// Replaces or merges a document's data (and its schema); false when it does not exist.
pub async fn update_document(
    c: &impl GenericClient,
    id: Uuid,
    data: &Map<String, Value>,
    merge: bool,
    block_schema_id: Option<Uuid>,
) -> Result<bool, tokio_postgres::Error> {
    let (plain, refs) = split_references(data);
    let n = c
        .execute(
            "UPDATE block_document SET data = CASE WHEN $3 THEN data || $2 ELSE $2 END, \
             block_schema_id = coalesce($4, block_schema_id), updated = now() WHERE id = $1",
            &[&id, &Value::Object(plain), &merge, &block_schema_id],
        )
        .await?;
    if n == 0 {
        return Ok(false);
    }
    if !merge {
        c.execute(
            "DELETE FROM block_document_reference WHERE parent_block_document_id = $1",
            &[&id],
        )
        .await?;
    } else if !refs.is_empty() {
        let names: Vec<&str> = refs.iter().map(|(n, _)| n.as_str()).collect();
        c.execute(
            "DELETE FROM block_document_reference WHERE parent_block_document_id = $1 AND name = ANY($2)",
            &[&id, &names],
        )
        .await?;
    }
    insert_references(c, id, &refs).await?;
    Ok(true)
}

pub async fn delete_document(c: &impl GenericClient, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    Ok(c.execute("DELETE FROM block_document WHERE id = $1", &[&id])
        .await?
        > 0)
}

const DOC_COLUMNS: &str =
    "bd.id, bd.created, bd.updated, bd.name, bd.data, bd.block_schema_id, bd.block_type_id, \
                           bd.block_type_name, bd.is_anonymous";

/// Reads documents matching `cond` with schema and type, references hydrated (nested
/// documents' data included), secrets obfuscated unless asked for.
async fn read_documents(
    c: &impl GenericClient,
    cond: &str,
    q: &Query,
    order_limit: &str,
    include_secrets: bool,
    depth: usize,
) -> Result<Vec<BlockDocument>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {DOC_COLUMNS}, {SCHEMA_COLUMNS}, {TYPE_COLUMNS} FROM block_document bd \
         JOIN block_schema bs ON bs.id = bd.block_schema_id JOIN block_type bt ON bt.id = bd.block_type_id \
         WHERE {cond} {order_limit}"
    );
    let rows = c.query(sql.as_str(), &q.params()).await?;
    let mut docs = Vec::with_capacity(rows.len());
    for r in rows {
        let schema = schema_from_row(&r, 9);
        let mut data: Value = r.get(4);
        let id: Uuid = r.get(0);
        let mut references = Map::new();
        if depth < 8 {
            let refs = c
                .query(
                    "SELECT name, reference_block_document_id FROM block_document_reference WHERE parent_block_document_id = $1",
                    &[&id],
                )
                .await?;
            for rr in refs {
                let name: String = rr.get(0);
                let target: Uuid = rr.get(1);
                let mut inner = Query::default();
                let inner_cond = format!("bd.id = {}", inner.bind(target));
                let nested = Box::pin(read_documents(
                    c,
                    &inner_cond,
                    &inner,
                    "",
                    include_secrets,
                    depth + 1,
                ))
                .await?;
                if let Some(nested) = nested.into_iter().next() {
                    if let Some(map) = data.as_object_mut() {
                        map.insert(name.clone(), nested.data.clone());
                    }
                    references.insert(
                        name,
                        json!({"block_document": {
                            "id": nested.id, "name": nested.name, "block_type": nested.block_type,
                            "is_anonymous": nested.is_anonymous,
                            "block_document_references": nested.block_document_references,
                        }}),
                    );
                }
            }
        }
        if !include_secrets {
            let secret_fields: Vec<String> = schema
                .fields
                .get("secret_fields")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            obfuscate(&mut data, &secret_fields);
        }
        docs.push(BlockDocument {
            id,
            created: r.get(1),
            updated: r.get(2),
            name: r.get(3),
            data,
            block_schema_id: r.get(5),
            block_type_id: r.get(6),
            block_type_name: r.get(7),
            is_anonymous: r.get(8),
            block_type: schema.block_type.clone(),
            block_schema: Some(schema),
            block_document_references: references,
        });
    }
    Ok(docs)
}

pub async fn read_document(
    c: &impl GenericClient,
    id: Uuid,
    include_secrets: bool,
) -> Result<Option<BlockDocument>, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = format!("bd.id = {}", q.bind(id));
    Ok(read_documents(c, &cond, &q, "", include_secrets, 0)
        .await?
        .into_iter()
        .next())
}

pub async fn read_documents_by_type_slug(
    c: &impl GenericClient,
    slug: &str,
    name: Option<&str>,
    include_secrets: bool,
) -> Result<Vec<BlockDocument>, tokio_postgres::Error> {
    let mut q = Query::default();
    let mut cond = format!("bt.slug = {}", q.bind(slug.to_string()));
    if let Some(name) = name {
        cond = format!("{cond} AND bd.name = {}", q.bind(name.to_string()));
    } else {
        cond.push_str(" AND NOT bd.is_anonymous");
    }
    read_documents(c, &cond, &q, "ORDER BY bd.name LIMIT 200", include_secrets, 0).await
}

#[derive(Debug, Clone, Copy)]
pub enum DocumentSort {
    NameAsc,
    NameDesc,
    BlockTypeAndNameAsc,
}

impl DocumentSort {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "NAME_ASC" => Some(DocumentSort::NameAsc),
            "NAME_DESC" => Some(DocumentSort::NameDesc),
            "BLOCK_TYPE_AND_NAME_ASC" => Some(DocumentSort::BlockTypeAndNameAsc),
            _ => None,
        }
    }
    fn sql(self) -> &'static str {
        match self {
            DocumentSort::NameAsc => "bd.name ASC",
            DocumentSort::NameDesc => "bd.name DESC",
            DocumentSort::BlockTypeAndNameAsc => "bd.block_type_name ASC, bd.name ASC",
        }
    }
}

pub struct DocumentQuery<'a> {
    pub documents: Option<&'a BlockDocumentFilter>,
    pub types: Option<&'a BlockTypeFilter>,
    pub schemas: Option<&'a BlockSchemaFilter>,
}

impl DocumentQuery<'_> {
    fn cond(&self, q: &mut Query) -> String {
        let mut parts = Vec::new();
        match self.documents {
            Some(f) => parts.push(f.sql(q)),
            // Without a document filter, anonymous documents are left out.
            None => parts.push("NOT bd.is_anonymous".to_string()),
        }
        if let Some(f) = self.types {
            parts.push(f.sql(q));
        }
        if let Some(f) = self.schemas {
            parts.push(f.sql(q, "bs"));
        }
        parts.join(" AND ")
    }
}

pub async fn filter_documents(
    c: &impl GenericClient,
    query: &DocumentQuery<'_>,
    sort: DocumentSort,
    include_secrets: bool,
    limit: i64,
    offset: i64,
) -> Result<Vec<BlockDocument>, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = query.cond(&mut q);
    let order = format!(
        "ORDER BY {} LIMIT {} OFFSET {}",
        sort.sql(),
        q.bind(limit),
        q.bind(offset)
    );
    read_documents(c, &cond, &q, &order, include_secrets, 0).await
}

pub async fn count_documents(
    c: &impl GenericClient,
    query: &DocumentQuery<'_>,
) -> Result<i64, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = query.cond(&mut q);
    let sql = format!(
        "SELECT count(*) FROM block_document bd JOIN block_schema bs ON bs.id = bd.block_schema_id \
         JOIN block_type bt ON bt.id = bd.block_type_id WHERE {cond}"
    );
    Ok(c.query_one(sql.as_str(), &q.params()).await?.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_obfuscated_by_path_and_wildcard() {
        let mut data = json!({"value": "s3cret", "creds": {"token": "t", "user": "u"}, "many": {"a": {"key": "1"}, "b": {"key": "2"}}});
        obfuscate(
            &mut data,
            &[
                "value".into(),
                "creds.token".into(),
                "many.*.key".into(),
                "absent".into(),
            ],
        );
        assert_eq!(data["value"], OBFUSCATED_SECRET);
        assert_eq!(data["creds"]["token"], OBFUSCATED_SECRET);
        assert_eq!(data["creds"]["user"], "u");
        assert_eq!(data["many"]["b"]["key"], OBFUSCATED_SECRET);
        assert!(data.get("absent").is_none());
    }

    #[test]
    fn references_are_split_from_data() {
        let id = Uuid::new_v4();
        let data = json!({"a": 1, "nested": {"$ref": {"block_document_id": id.to_string()}}});
        let (plain, refs) = split_references(data.as_object().unwrap());
        assert_eq!(Value::Object(plain), json!({"a": 1}));
        assert_eq!(refs, vec![("nested".to_string(), id)]);
    }
}
