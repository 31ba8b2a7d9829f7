//! Block schemas, with their nested block schemas in `block_schema_reference` rows.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::GenericClient;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{
    read_type_by_slug, schema_from_row, BlockSchema, BlockSchemaFilter, SCHEMA_COLUMNS, TYPE_COLUMNS,
};
use crate::filters::Query;
use stratus_domain::block_checksum::{non_block_reference_definitions, reference_strings, schema_checksum};

/// The version of schemas created without one (and of nested schemas).
pub const DEFAULT_SCHEMA_VERSION: &str = "non-versioned";

/// How deep nested schemas are registered and rebuilt; real blocks nest two or three deep.
const MAX_DEPTH: usize = 16;

/// Why a schema could not be created.
#[derive(Debug)]
pub enum SchemaError {
    Db(tokio_postgres::Error),
    /// A `block_schema_references` entry names a block type that does not exist.
    MissingBlockType(String),
    /// The fields cannot describe a nested schema (no definition for it, bad entries).
    Invalid(String),
}

impl From<tokio_postgres::Error> for SchemaError {
    fn from(e: tokio_postgres::Error) -> Self {
        SchemaError::Db(e)
    }
}

/// Creates the schema unless one with its checksum and version exists; returns it
/// (reconstructed) and whether it is new. Nested block schemas named in
/// `block_schema_references` are registered from the fields' `definitions` when missing.
pub async fn create_schema(
    c: &impl GenericClient,
    fields: &Map<String, Value>,
    block_type_id: Uuid,
    capabilities: &[String],
    version: &str,
) -> Result<(BlockSchema, bool), SchemaError> {
    let (id, created) =
        insert_schema(c, fields.clone(), block_type_id, capabilities, version, None, 0).await?;
    let schema = read_schema(c, id)
        .await?
        .ok_or_else(|| SchemaError::Invalid("the block schema vanished while it was created".into()))?;
    Ok((schema, created))
}

/// Prefect's `create_block_schema`: the checksum covers the fields with `definitions`
/// (those of the root schema when nested); the stored fields keep only the non-block
/// definitions and lose `block_schema_references`, which become reference rows.
async fn insert_schema(
    c: &impl GenericClient,
    mut fields: Map<String, Value>,
    block_type_id: Uuid,
    capabilities: &[String],
    version: &str,
    definitions: Option<&Map<String, Value>>,
    depth: usize,
) -> Result<(Uuid, bool), SchemaError> {
    if depth > MAX_DEPTH {
        return Err(SchemaError::Invalid("block schemas are nested too deeply".into()));
    }
    let definitions: Option<Map<String, Value>> =
        definitions.filter(|d| !d.is_empty()).cloned().or_else(|| {
            fields
                .get("definitions")
                .and_then(Value::as_object)
                .filter(|d| !d.is_empty())
                .cloned()
        });
    if let Some(defs) = &definitions {
        fields.insert("definitions".into(), Value::Object(defs.clone()));
    }
    let checksum = schema_checksum(&Value::Object(fields.clone()));
    if let Some(id) = schema_id_by_checksum(c, &checksum, Some(version)).await? {
        return Ok((id, false));
    }
    if let Some(defs) = &definitions {
        let kept = non_block_reference_definitions(&Value::Object(fields.clone()), defs);
        if kept.is_empty() {
            fields.remove("definitions");
        } else {
            fields.insert("definitions".into(), Value::Object(kept));
        }
    }
    let references = fields.remove("block_schema_references");
    let inserted = c
        .query_opt(
            "INSERT INTO block_schema (checksum, fields, capabilities, version, block_type_id, created, updated) \
             VALUES ($1, $2, $3, $4, $5, clock_timestamp(), clock_timestamp()) ON CONFLICT (workspace_id, checksum, version) DO NOTHING RETURNING id",
            &[
                &checksum,
                &Value::Object(fields.clone()),
                &Value::from(capabilities.to_vec()),
                &version,
                &block_type_id,
            ],
        )
        .await?;
    let (id, created) = match inserted {
        Some(row) => (row.get(0), true),
        // Another request created it in the meantime.
        None => match schema_id_by_checksum(c, &checksum, Some(version)).await? {
            Some(id) => (id, false),
            None => {
                return Err(SchemaError::Invalid(
                    "the block schema vanished while it was created".into(),
                ))
            }
        },
    };
    if let Some(Value::Object(references)) = references {
        for (name, entries) in &references {
            let entries = match entries {
                Value::Array(items) => items.clone(),
                other => vec![other.clone()],
            };
            for entry in entries {
                let child = nested_schema(c, &fields, definitions.as_ref(), name, &entry, depth).await?;
                c.execute(
                    "INSERT INTO block_schema_reference (name, parent_block_schema_id, reference_block_schema_id, created, updated) \
                     SELECT $1, $2, $3, clock_timestamp(), clock_timestamp() WHERE NOT EXISTS (SELECT 1 FROM block_schema_reference \
                       WHERE name = $1 AND parent_block_schema_id = $2 AND reference_block_schema_id = $3)",
                    &[name, &id, &child],
                )
                .await?;
            }
        }
    }
    Ok((id, created))
}

/// The schema a `block_schema_references` entry names, registered from the root's
/// definitions when no schema has its checksum yet.
async fn nested_schema(
    c: &impl GenericClient,
    base_fields: &Map<String, Value>,
    definitions: Option<&Map<String, Value>>,
    name: &str,
    entry: &Value,
    depth: usize,
) -> Result<Uuid, SchemaError> {
    let (Some(slug), Some(checksum)) = (
        entry.get("block_type_slug").and_then(Value::as_str),
        entry.get("block_schema_checksum").and_then(Value::as_str),
    ) else {
        return Err(SchemaError::Invalid(format!(
            "The block schema reference '{name}' needs a block_type_slug and a block_schema_checksum."
        )));
    };
    let Some(block_type) = read_type_by_slug(c, slug).await? else {
        return Err(SchemaError::MissingBlockType(format!(
            "Cannot create block schema because block type '{slug}' was not found.Did you forget to register the block type?"
        )));
    };
    if let Some(id) = schema_id_by_checksum(c, checksum, None).await? {
        return Ok(id);
    }
    let Some(definitions) = definitions else {
        return Err(SchemaError::Invalid(
            "Unable to create nested block schema due to missing definitions in root block schema fields"
                .into(),
        ));
    };
    let Some(child_fields) = child_schema_fields(definitions, base_fields, name, &block_type.slug) else {
        return Err(SchemaError::Invalid(format!(
            "Unable to create nested block schema for block type '{}' due to missing definition.",
            block_type.name
        )));
    };
    let (id, _) = Box::pin(insert_schema(
        c,
        child_fields,
        block_type.id,
        &[],
        DEFAULT_SCHEMA_VERSION,
        Some(definitions),
        depth + 1,
    ))
    .await?;
    Ok(id)
}

/// Prefect's `_get_fields_for_child_schema`: the definition the property `name` refers
/// to; with several (a union), the one of the block type `slug`.
fn child_schema_fields(
    definitions: &Map<String, Value>,
    base_fields: &Map<String, Value>,
    name: &str,
    slug: &str,
) -> Option<Map<String, Value>> {
    let property = base_fields.get("properties")?.get(name)?;
    let references = reference_strings(property);
    let key = |r: &String| r.replace("#/definitions/", "");
    if references.len() == 1 {
        return definitions.get(&key(&references[0]))?.as_object().cloned();
    }
    references.iter().find_map(|r| {
        let definition = definitions.get(&key(r))?;
        (definition.get("block_type_slug").and_then(Value::as_str) == Some(slug))
            .then(|| definition.as_object().cloned())
            .flatten()
    })
}

async fn schema_id_by_checksum(
    c: &impl GenericClient,
    checksum: &str,
    version: Option<&str>,
) -> Result<Option<Uuid>, tokio_postgres::Error> {
    let stmt = c
        .prepare_cached(
            "SELECT id FROM block_schema WHERE checksum = $1 AND ($2::text IS NULL OR version = $2) \
             ORDER BY created DESC LIMIT 1",
        )
        .await?;
    Ok(c.query_opt(&stmt, &[&checksum, &version])
        .await?
        .map(|r| r.get(0)))
}

/// Schemas matching `cond` (on `bs`), in `order`, rebuilt with their nested schemas.
async fn select_schemas(
    c: &impl GenericClient,
    cond: &str,
    q: &Query,
    order_limit: &str,
) -> Result<Vec<BlockSchema>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {SCHEMA_COLUMNS}, {TYPE_COLUMNS} FROM block_schema bs JOIN block_type bt ON bt.id = bs.block_type_id \
         WHERE {cond} {order_limit}"
    );
    let roots: Vec<BlockSchema> = c
        .query(sql.as_str(), &q.params())
        .await?
        .iter()
        .map(schema_from_row)
        .collect::<Result<_, _>>()?;
    reconstruct(c, roots).await
}

/// Prefect's `_construct_full_block_schema`: each schema's fields get
/// `block_schema_references` from its reference rows, and `definitions` with every nested
/// schema (rebuilt the same way) under its title.
pub(crate) async fn reconstruct(
    c: &impl GenericClient,
    mut roots: Vec<BlockSchema>,
) -> Result<Vec<BlockSchema>, tokio_postgres::Error> {
    if roots.is_empty() {
        return Ok(roots);
    }
    let ids: Vec<Uuid> = roots.iter().map(|s| s.id).collect();
    let sql = format!(
        "WITH RECURSIVE refs(parent, child, name) AS ( \
           SELECT parent_block_schema_id, reference_block_schema_id, name FROM block_schema_reference \
             WHERE parent_block_schema_id = ANY($1) \
           UNION \
           SELECT r.parent_block_schema_id, r.reference_block_schema_id, r.name FROM block_schema_reference r \
             JOIN refs ON r.parent_block_schema_id = refs.child) \
         SELECT refs.parent, refs.name AS reference_name, {SCHEMA_COLUMNS}, {TYPE_COLUMNS} FROM refs \
           JOIN block_schema bs ON bs.id = refs.child JOIN block_type bt ON bt.id = bs.block_type_id \
         ORDER BY bs.created, refs.name"
    );
    let rows = c.query(sql.as_str(), &[&ids]).await?;
    let mut edges: HashMap<Uuid, Vec<(String, BlockSchema)>> = HashMap::new();
    for r in &rows {
        edges
            .entry(r.try_get("parent")?)
            .or_default()
            .push((r.try_get("reference_name")?, schema_from_row(r)?));
    }
    for root in &mut roots {
        root.fields = full_fields(root, &edges, 0);
    }
    Ok(roots)
}

fn full_fields(
    schema: &BlockSchema,
    edges: &HashMap<Uuid, Vec<(String, BlockSchema)>>,
    depth: usize,
) -> Value {
    let Value::Object(mut fields) = schema.fields.clone() else {
        return schema.fields.clone();
    };
    let children: &[(String, BlockSchema)] = edges.get(&schema.id).map(Vec::as_slice).unwrap_or_default();
    let mut references = fields
        .get("block_schema_references")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (name, child) in children {
        let reference = json!({
            "block_schema_checksum": child.checksum,
            "block_type_slug": child.block_type.as_ref().map(|t| t.slug.clone()),
        });
        match references.get_mut(name) {
            None => {
                references.insert(name.clone(), reference);
            }
            Some(Value::Array(list)) => {
                if !list.contains(&reference) {
                    list.push(reference);
                }
            }
            Some(existing) => {
                if *existing != reference {
                    *existing = Value::Array(vec![existing.clone(), reference]);
                }
            }
        }
    }
    fields.insert("block_schema_references".into(), Value::Object(references));

    let mut definitions = Map::new();
    if depth < MAX_DEPTH {
        let mut seen = HashSet::new();
        for (_, child) in children {
            if !seen.insert(child.id) {
                continue;
            }
            let Value::Object(mut child_fields) = full_fields(child, edges, depth + 1) else {
                continue;
            };
            let Some(title) = child_fields
                .get("title")
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                continue;
            };
            let child_definitions = child_fields.remove("definitions");
            definitions.insert(title, Value::Object(child_fields));
            if let Some(Value::Object(child_definitions)) = child_definitions {
                definitions.extend(child_definitions);
            }
        }
    }
    let stored = fields.get("definitions").and_then(Value::as_object).cloned();
    if !definitions.is_empty() || stored.as_ref().is_some_and(|d| !d.is_empty()) {
        let mut merged = stored.unwrap_or_default();
        merged.extend(definitions);
        fields.insert("definitions".into(), Value::Object(merged));
    }
    Value::Object(fields)
}

pub async fn read_schema(
    c: &impl GenericClient,
    id: Uuid,
) -> Result<Option<BlockSchema>, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = format!("bs.id = {}", q.bind(id));
    Ok(select_schemas(c, &cond, &q, "").await?.into_iter().next())
}

/// Schemas by id, rebuilt, keyed by id.
pub async fn read_schemas_by_id(
    c: &impl GenericClient,
    ids: Vec<Uuid>,
) -> Result<HashMap<Uuid, BlockSchema>, tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut q = Query::default();
    let cond = format!("bs.id = ANY({}::uuid[])", q.bind(ids));
    Ok(select_schemas(c, &cond, &q, "")
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect())
}

/// The schema with that checksum and version, or without a version the newest with that
/// checksum.
pub async fn read_schema_by_checksum(
    c: &impl GenericClient,
    checksum: &str,
    version: Option<&str>,
) -> Result<Option<BlockSchema>, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = format!(
        "bs.checksum = {} AND ({v}::text IS NULL OR bs.version = {v})",
        q.bind(checksum.to_string()),
        v = q.bind(version.map(str::to_string)),
    );
    Ok(select_schemas(c, &cond, &q, "ORDER BY bs.created DESC LIMIT 1")
        .await?
        .into_iter()
        .next())
}

pub async fn delete_schema(c: &impl GenericClient, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    Ok(c.execute("DELETE FROM block_schema WHERE id = $1", &[&id])
        .await?
        > 0)
}

/// Schemas matching the filter, newest first.
pub async fn filter_schemas(
    c: &impl GenericClient,
    f: &BlockSchemaFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<BlockSchema>, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = f.sql(&mut q, "bs");
    let order = format!(
        "ORDER BY bs.created DESC, bs.id LIMIT {} OFFSET {}",
        q.bind(limit),
        q.bind(offset)
    );
    select_schemas(c, &cond, &q, &order).await
}

/// Every capability some schema has, sorted.
pub async fn capabilities(c: &impl GenericClient) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT DISTINCT cap FROM block_schema, jsonb_array_elements_text(capabilities) AS cap ORDER BY cap",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
