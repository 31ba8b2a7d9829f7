//! Block documents, with their references to other documents.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::GenericClient;
use serde_json::{json, Map, Value};
use tokio_postgres::Row;
use uuid::Uuid;

use super::secrets::{obfuscate, restore, secret_fields};
use super::{
    read_schemas_by_id, BlockDocument, BlockDocumentFilter, BlockSchemaFilter, BlockType, BlockTypeFilter,
    TYPE_COLUMNS,
};
use crate::db::rows::FromRow;
use crate::filters::Query;
use crate::keyring::{Keyring, SEALED};
use crate::StoreResult;

/// How deep references are followed when a document is read.
const MAX_DEPTH: usize = 16;

/// A document's columns from `bd`, each named `bd_<column>`; read with `bs.fields` (for its
/// secret fields) and [`TYPE_COLUMNS`].
const DOC_COLUMNS: &str = "bd.id AS bd_id, bd.created AS bd_created, bd.updated AS bd_updated, \
     bd.name AS bd_name, bd.data AS bd_data, bd.block_schema_id AS bd_block_schema_id, \
     bd.block_type_id AS bd_block_type_id, bd.block_type_name AS bd_block_type_name, \
     bd.is_anonymous AS bd_is_anonymous, bs.fields AS bs_fields";

/// Document data split from its references to other documents.
#[derive(Debug, Default, PartialEq)]
pub struct SplitData {
    /// The data without references.
    pub data: Map<String, Value>,
    /// `(key, referenced document id)`.
    pub references: Vec<(String, Uuid)>,
}

/// A malformed block reference in a document's data, by its key (Prefect's wording).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidReference {
    #[error("Received block reference without a block_document_id in key {0}")]
    MissingId(String),
    #[error("Invalid block_document_id in the block reference in key {0}")]
    BadId(String),
}

/// Prefect's `_separate_block_references_from_data`: top-level values of the form
/// `{"$ref": {"block_document_id": ...}}` become `(key, id)` references; the rest is data.
/// A malformed reference is an error naming its key.
pub fn split_references(data: &Map<String, Value>) -> Result<SplitData, InvalidReference> {
    let mut plain = Map::new();
    let mut references = Vec::new();
    for (key, value) in data {
        match value.as_object().and_then(|v| v.get("$ref")) {
            Some(reference) => {
                let Some(id) = reference.get("block_document_id").filter(|v| !v.is_null()) else {
                    return Err(InvalidReference::MissingId(key.clone()));
                };
                let id = id
                    .as_str()
                    .and_then(|s| s.parse::<Uuid>().ok())
                    .ok_or_else(|| InvalidReference::BadId(key.clone()))?;
                references.push((key.clone(), id));
            }
            None => {
                plain.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(SplitData {
        data: plain,
        references,
    })
}

pub struct NewBlockDocument {
    pub name: String,
    /// The data without references.
    pub data: Map<String, Value>,
    pub references: Vec<(String, Uuid)>,
    pub block_schema_id: Uuid,
    pub block_type_id: Uuid,
    pub is_anonymous: bool,
}

pub enum CreatedDocument {
    Created(Uuid),
    /// A document of that type already has that name.
    NameTaken,
    /// The block type does not exist.
    NoBlockType,
}

/// Whether a document of that block type has that name.
pub async fn document_name_taken(
    c: &impl GenericClient,
    block_type_id: Uuid,
    name: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(c.query_one(
        "SELECT EXISTS (SELECT 1 FROM block_document WHERE block_type_id = $1 AND name = $2)",
        &[&block_type_id, &name],
    )
    .await?
    .get(0))
}

/// Inserts a document (recording its type's name) and its reference rows. A missing
/// schema or referenced document is a foreign-key violation.
pub async fn create_document(
    c: &impl GenericClient,
    keyring: &Keyring,
    doc: &NewBlockDocument,
) -> StoreResult<CreatedDocument> {
    let id = Uuid::new_v4();
    let sealed = keyring.seal(&Value::Object(doc.data.clone()), id)?;
    let row = c
        .query_opt(
            "INSERT INTO block_document (id, name, data, is_anonymous, block_type_name, block_type_id, block_schema_id, created, updated) \
             SELECT $6, $1, $2, $3, bt.name, bt.id, $5, clock_timestamp(), clock_timestamp() FROM block_type bt WHERE bt.id = $4 \
             ON CONFLICT (block_type_id, name) DO NOTHING RETURNING id",
            &[
                &doc.name,
                &sealed,
                &doc.is_anonymous,
                &doc.block_type_id,
                &doc.block_schema_id,
                &id,
            ],
        )
        .await?;
    let Some(row) = row else {
        let type_exists: bool = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM block_type WHERE id = $1)",
                &[&doc.block_type_id],
            )
            .await?
            .get(0);
        return Ok(if type_exists {
            CreatedDocument::NameTaken
        } else {
            CreatedDocument::NoBlockType
        });
    };
    let id: Uuid = row.get(0);
    for (name, target) in &doc.references {
        insert_reference(c, id, name, *target).await?;
    }
    Ok(CreatedDocument::Created(id))
}

async fn insert_reference(
    c: &impl GenericClient,
    parent: Uuid,
    name: &str,
    target: Uuid,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "INSERT INTO block_document_reference (name, parent_block_document_id, reference_block_document_id, created, updated) \
         VALUES ($1, $2, $3, clock_timestamp(), clock_timestamp())",
        &[&name, &parent, &target],
    )
    .await?;
    Ok(())
}

/// A PATCH of a document's data (already split from its references) and schema.
pub struct DocumentUpdate {
    /// None when the body gave no data.
    pub data: Option<SplitData>,
    pub merge_existing_data: bool,
    pub block_schema_id: Option<Uuid>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum UpdatedDocument {
    Updated,
    NotFound,
    SchemaNotFound,
    /// The proposed schema belongs to another block type.
    OtherBlockType,
    /// The document would reference itself.
    SelfReference,
}

/// Prefect's `update_block_document`. With `merge_existing_data` and no data nothing is
/// written. Otherwise secrets given back obfuscated keep their stored values, the data is
/// merged into (or replaces) the stored data, the schema may move to another schema of the
/// same block type, and the reference rows become exactly those of the given data.
pub async fn update_document(
    c: &impl GenericClient,
    keyring: &Keyring,
    id: Uuid,
    update: DocumentUpdate,
) -> StoreResult<UpdatedDocument> {
    let Some(current) = c
        .query_opt(
            "SELECT bd.data, bd.block_schema_id, bd.block_type_id, bs.fields FROM block_document bd \
             JOIN block_schema bs ON bs.id = bd.block_schema_id WHERE bd.id = $1 FOR UPDATE OF bd",
            &[&id],
        )
        .await?
    else {
        return Ok(UpdatedDocument::NotFound);
    };
    let data = match update.data {
        Some(data) => data,
        None if update.merge_existing_data => return Ok(UpdatedDocument::Updated),
        None => SplitData::default(),
    };
    let SplitData {
        data: mut plain,
        references,
    } = data;
    if references.iter().any(|(_, target)| *target == id) {
        return Ok(UpdatedDocument::SelfReference);
    }
    let current_data: Map<String, Value> = match keyring.open(current.try_get::<_, Value>("data")?, id)? {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let current_schema: Uuid = current.try_get("block_schema_id")?;
    let block_type_id: Uuid = current.try_get("block_type_id")?;
    restore(
        &mut plain,
        &current_data,
        &secret_fields(&current.try_get::<_, Value>("fields")?),
    );

    let new_data = if update.merge_existing_data {
        let mut merged = current_data;
        merged.extend(plain);
        for (name, _) in &references {
            merged.remove(name);
        }
        merged
    } else {
        plain
    };

    let mut schema_id = current_schema;
    if let Some(proposed) = update.block_schema_id.filter(|p| *p != current_schema) {
        let row = c
            .query_opt(
                "SELECT block_type_id FROM block_schema WHERE id = $1",
                &[&proposed],
            )
            .await?;
        match row {
            None => return Ok(UpdatedDocument::SchemaNotFound),
            Some(r) if r.get::<_, Uuid>(0) != block_type_id => return Ok(UpdatedDocument::OtherBlockType),
            Some(_) => schema_id = proposed,
        }
    }
    c.execute(
        "UPDATE block_document SET data = $2, block_schema_id = $3, updated = clock_timestamp() WHERE id = $1",
        &[&id, &keyring.seal(&Value::Object(new_data), id)?, &schema_id],
    )
    .await?;

    let existing: Vec<(Uuid, String, Uuid)> = c
        .query(
            "SELECT id, name, reference_block_document_id FROM block_document_reference \
             WHERE parent_block_document_id = $1",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("id")?,
                r.try_get("name")?,
                r.try_get("reference_block_document_id")?,
            ))
        })
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let mut kept = HashSet::new();
    for (name, target) in &references {
        let matching = existing
            .iter()
            .find(|(rid, rname, rtarget)| rname == name && rtarget == target && !kept.contains(rid));
        match matching {
            Some((rid, _, _)) => {
                kept.insert(*rid);
            }
            None => insert_reference(c, id, name, *target).await?,
        }
    }
    let stale: Vec<Uuid> = existing
        .iter()
        .map(|(rid, _, _)| *rid)
        .filter(|rid| !kept.contains(rid))
        .collect();
    if !stale.is_empty() {
        c.execute(
            "DELETE FROM block_document_reference WHERE id = ANY($1)",
            &[&stale],
        )
        .await?;
    }
    Ok(UpdatedDocument::Updated)
}

pub async fn delete_document(c: &impl GenericClient, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    Ok(c.execute("DELETE FROM block_document WHERE id = $1", &[&id])
        .await?
        > 0)
}

/// A document as stored, its own secrets already hidden when asked, before its references
/// are hydrated.
struct Stored {
    id: Uuid,
    created: chrono::DateTime<chrono::Utc>,
    updated: chrono::DateTime<chrono::Utc>,
    name: String,
    data: Value,
    block_schema_id: Uuid,
    block_type_id: Uuid,
    block_type_name: Option<String>,
    is_anonymous: bool,
    block_type: BlockType,
}

/// Reads [`DOC_COLUMNS`] and [`TYPE_COLUMNS`].
fn stored_from_row(r: &Row, keyring: &Keyring, include_secrets: bool) -> StoreResult<Stored> {
    let mut data: Value = keyring.open(r.try_get("bd_data")?, r.try_get("bd_id")?)?;
    if !include_secrets {
        obfuscate(&mut data, &secret_fields(&r.try_get::<_, Value>("bs_fields")?));
    }
    Ok(Stored {
        id: r.try_get("bd_id")?,
        created: r.try_get("bd_created")?,
        updated: r.try_get("bd_updated")?,
        name: r.try_get("bd_name")?,
        data,
        block_schema_id: r.try_get("bd_block_schema_id")?,
        block_type_id: r.try_get("bd_block_type_id")?,
        block_type_name: r.try_get("bd_block_type_name")?,
        is_anonymous: r.try_get("bd_is_anonymous")?,
        block_type: BlockType::try_from_row(r)?,
    })
}

type Edges = HashMap<Uuid, Vec<(String, Stored)>>;

/// Prefect's `_construct_full_block_document`: each referenced document's (hydrated) data
/// goes under its reference name, and is described in `block_document_references`.
fn hydrate(doc: &Stored, edges: &Edges, path: &mut Vec<Uuid>) -> (Value, Map<String, Value>) {
    let mut data = doc.data.clone();
    let mut references = Map::new();
    if path.len() >= MAX_DEPTH {
        return (data, references);
    }
    path.push(doc.id);
    for (name, child) in edges.get(&doc.id).map(Vec::as_slice).unwrap_or_default() {
        if path.contains(&child.id) {
            continue;
        }
        let (child_data, child_references) = hydrate(child, edges, path);
        if let Value::Object(map) = &mut data {
            map.insert(name.clone(), child_data);
        }
        references.insert(
            name.clone(),
            json!({"block_document": {
                "id": child.id,
                "name": child.name,
                "block_type": child.block_type,
                "is_anonymous": child.is_anonymous,
                "block_document_references": child_references,
            }}),
        );
    }
    path.pop();
    (data, references)
}

/// Documents matching `cond` (on `bd`, `bs`, `bt`), in `order_limit`, fully built.
async fn select_documents(
    c: &impl GenericClient,
    keyring: &Keyring,
    cond: &str,
    q: &Query,
    order_limit: &str,
    include_secrets: bool,
) -> StoreResult<Vec<BlockDocument>> {
    let sql = format!(
        "SELECT {DOC_COLUMNS}, {TYPE_COLUMNS} FROM block_document bd \
         JOIN block_schema bs ON bs.id = bd.block_schema_id JOIN block_type bt ON bt.id = bd.block_type_id \
         WHERE {cond} {order_limit}"
    );
    let roots: Vec<Stored> = c
        .query(sql.as_str(), &q.params())
        .await?
        .iter()
        .map(|r| stored_from_row(r, keyring, include_secrets))
        .collect::<Result<_, _>>()?;
    if roots.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = roots.iter().map(|d| d.id).collect();
    let sql = format!(
        "WITH RECURSIVE refs(parent, child, name) AS ( \
           SELECT parent_block_document_id, reference_block_document_id, name FROM block_document_reference \
             WHERE parent_block_document_id = ANY($1) \
           UNION \
           SELECT r.parent_block_document_id, r.reference_block_document_id, r.name FROM block_document_reference r \
             JOIN refs ON r.parent_block_document_id = refs.child) \
         SELECT refs.parent, refs.name AS reference_name, {DOC_COLUMNS}, {TYPE_COLUMNS} FROM refs \
           JOIN block_document bd ON bd.id = refs.child JOIN block_schema bs ON bs.id = bd.block_schema_id \
           JOIN block_type bt ON bt.id = bd.block_type_id \
         ORDER BY refs.name"
    );
    let mut edges: Edges = HashMap::new();
    for r in c.query(sql.as_str(), &[&ids]).await? {
        edges.entry(r.try_get("parent")?).or_default().push((
            r.try_get("reference_name")?,
            stored_from_row(&r, keyring, include_secrets)?,
        ));
    }
    let mut schema_ids: Vec<Uuid> = roots.iter().map(|d| d.block_schema_id).collect();
    schema_ids.sort();
    schema_ids.dedup();
    let schemas = read_schemas_by_id(c, schema_ids).await?;
    Ok(roots
        .iter()
        .map(|doc| {
            let (data, references) = hydrate(doc, &edges, &mut Vec::new());
            BlockDocument {
                id: doc.id,
                created: doc.created,
                updated: doc.updated,
                name: doc.name.clone(),
                data,
                block_schema_id: doc.block_schema_id,
                block_schema: schemas.get(&doc.block_schema_id).cloned(),
                block_type_id: doc.block_type_id,
                block_type_name: doc.block_type_name.clone(),
                block_type: Some(doc.block_type.clone()),
                block_document_references: references,
                is_anonymous: doc.is_anonymous,
            }
        })
        .collect())
}

/// Seals again, under the keyring's current key, up to `batch` documents that are plain
/// (written before sealing began) or sealed under an older key; returns how many. Rows
/// another rotation holds are skipped, so rotations may run side by side. Call it in a
/// transaction, until it returns 0.
pub async fn reseal_documents(c: &impl GenericClient, keyring: &Keyring, batch: i64) -> StoreResult<u64> {
    let rows = c
        .query(
            &format!(
                "SELECT id, data FROM block_document \
                 WHERE data -> '{SEALED}' ->> 'key' IS DISTINCT FROM $1 \
                 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"
            ),
            &[&keyring.current(), &batch],
        )
        .await?;
    for r in &rows {
        let id: Uuid = r.try_get("id")?;
        let data = keyring.open(r.try_get("data")?, id)?;
        c.execute(
            "UPDATE block_document SET data = $2 WHERE id = $1",
            &[&id, &keyring.seal(&data, id)?],
        )
        .await?;
    }
    Ok(rows.len() as u64)
}

/// Seals, in batches of 200 (short row locks whatever the table's size), every document
/// the keyring's current key has not sealed; returns how many. Run by the deploy's schema
/// step, `stratus server start` and `stratus encryption rotate`.
pub async fn reseal_all(pool: &deadpool_postgres::Pool, keyring: &Keyring) -> StoreResult<u64> {
    // Every workspace's documents, as the owner.
    crate::tenancy::system(reseal_every_workspace(pool, keyring)).await
}

async fn reseal_every_workspace(pool: &deadpool_postgres::Pool, keyring: &Keyring) -> StoreResult<u64> {
    let mut total = 0;
    loop {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let n = reseal_documents(&tx, keyring, 200).await?;
        tx.commit().await?;
        total += n;
        if n == 0 {
            return Ok(total);
        }
    }
}

/// Whether a document with this id exists (its data is not read).
pub async fn document_exists(c: &impl GenericClient, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    c.query_one(
        "SELECT EXISTS (SELECT 1 FROM block_document WHERE id = $1) AS found",
        &[&id],
    )
    .await?
    .try_get("found")
}

/// A document by id, anonymous or not.
pub async fn read_document(
    c: &impl GenericClient,
    keyring: &Keyring,
    id: Uuid,
    include_secrets: bool,
) -> StoreResult<Option<BlockDocument>> {
    let mut q = Query::default();
    let cond = format!("bd.id = {}", q.bind(id));
    Ok(select_documents(c, keyring, &cond, &q, "", include_secrets)
        .await?
        .into_iter()
        .next())
}

/// The named (not anonymous) documents of a block type, by name.
pub async fn read_documents_by_type_slug(
    c: &impl GenericClient,
    keyring: &Keyring,
    slug: &str,
    include_secrets: bool,
) -> StoreResult<Vec<BlockDocument>> {
    let mut q = Query::default();
    let cond = format!("bt.slug = {} AND NOT bd.is_anonymous", q.bind(slug.to_string()));
    select_documents(c, keyring, &cond, &q, "ORDER BY bd.name, bd.id", include_secrets).await
}

/// The document of a block type with that name, anonymous or not.
pub async fn read_document_by_type_slug_and_name(
    c: &impl GenericClient,
    keyring: &Keyring,
    slug: &str,
    name: &str,
    include_secrets: bool,
) -> StoreResult<Option<BlockDocument>> {
    let mut q = Query::default();
    let cond = format!(
        "bt.slug = {} AND bd.name = {}",
        q.bind(slug.to_string()),
        q.bind(name.to_string())
    );
    Ok(
        select_documents(c, keyring, &cond, &q, "LIMIT 1", include_secrets)
            .await?
            .into_iter()
            .next(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
            DocumentSort::NameAsc => "bd.name ASC, bd.id",
            DocumentSort::NameDesc => "bd.name DESC, bd.id",
            DocumentSort::BlockTypeAndNameAsc => "bd.block_type_name ASC, bd.name ASC, bd.id",
        }
    }
}

/// The filters of `/block_documents/filter` and `/count`. Without a `block_documents`
/// filter, anonymous documents are left out.
#[derive(Default)]
pub struct DocumentQuery<'a> {
    pub documents: Option<&'a BlockDocumentFilter>,
    pub types: Option<&'a BlockTypeFilter>,
    pub schemas: Option<&'a BlockSchemaFilter>,
}

impl DocumentQuery<'_> {
    fn cond(&self, q: &mut Query) -> String {
        let default = BlockDocumentFilter::default();
        let mut parts = vec![self.documents.unwrap_or(&default).sql(q)];
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
    keyring: &Keyring,
    query: &DocumentQuery<'_>,
    sort: DocumentSort,
    include_secrets: bool,
    limit: i64,
    offset: i64,
) -> StoreResult<Vec<BlockDocument>> {
    let mut q = Query::default();
    let cond = query.cond(&mut q);
    let order = format!(
        "ORDER BY {} LIMIT {} OFFSET {}",
        sort.sql(),
        q.bind(limit),
        q.bind(offset)
    );
    select_documents(c, keyring, &cond, &q, &order, include_secrets).await
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
    fn references_are_split_from_data() {
        let id = Uuid::new_v4();
        let data =
            json!({"a": 1, "nested": {"$ref": {"block_document_id": id.to_string()}}, "plain": {"x": 1}});
        let split = split_references(data.as_object().unwrap()).unwrap();
        assert_eq!(Value::Object(split.data), json!({"a": 1, "plain": {"x": 1}}));
        assert_eq!(split.references, vec![("nested".to_string(), id)]);
        assert!(split_references(json!({"k": {"$ref": {}}}).as_object().unwrap()).is_err());
        assert!(split_references(json!({"k": {"$ref": "#/definitions/X"}}).as_object().unwrap()).is_err());
        assert!(split_references(
            json!({"k": {"$ref": {"block_document_id": "nope"}}})
                .as_object()
                .unwrap()
        )
        .is_err());
    }
}
