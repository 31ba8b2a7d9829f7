//! The built-in block types and schemas Stratus registers, as a Prefect 2.20 server does on
//! start (`run_block_auto_registration`): the client's core blocks (Webhook, JSON,
//! DateTime, Secret, LocalFileSystem and Process protected), then the integration blocks
//! of Prefect's bundled collection data, whose schemas reference each other's.
//! The data is generated from the stock client by `scripts/gen_system_blocks.py`.

use deadpool_postgres::GenericClient;

use crate::error::SetupError;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::db::blocks::{self, BlockTypeFields, SchemaError};

const BUNDLED: &str = include_str!("../data/system_blocks.json");

#[derive(Deserialize, schemars::JsonSchema)]
struct Bundle {
    blocks: Vec<SystemBlock>,
    #[serde(default)]
    collections: Vec<SystemBlock>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct SystemBlock {
    block_type: SystemType,
    schema: SystemSchema,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct SystemType {
    name: String,
    slug: String,
    #[serde(default)]
    is_protected: bool,
    #[serde(flatten)]
    fields: BlockTypeFields,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct SystemSchema {
    fields: Map<String, Value>,
    capabilities: Vec<String>,
    version: String,
}

fn describe(e: SchemaError) -> String {
    match e {
        SchemaError::Db(e) => e.to_string(),
        SchemaError::MissingBlockType(m) | SchemaError::Invalid(m) => m,
    }
}

/// Registers the bundled block types in every workspace that does not have this bundle
/// yet (or lost one of its types), each in a transaction of its own; returns how many
/// workspaces were brought up to date. A start with nothing to register reads one row per workspace: registering the
/// whole bundle took most of `stratus server start`'s time.
pub async fn install_everywhere(pool: &deadpool_postgres::Pool) -> Result<usize, SetupError> {
    let failed = |e: crate::error::StoreError| SetupError::Register {
        what: "the core block types".into(),
        message: e.to_string(),
    };
    let workspaces = crate::tenancy::workspaces(pool).await.map_err(failed)?;
    let current: std::collections::HashSet<uuid::Uuid> = crate::tenancy::system(async {
        let client = pool.get().await?;
        let rows = client
            // This bundle, registered by this code, and none of its types deleted since.
            .query(
                "SELECT c.workspace_id FROM configuration c WHERE c.key = $1 AND c.value->>'checksum' = $2 \
                 AND (SELECT count(DISTINCT bt.slug) FROM block_type bt WHERE bt.workspace_id = c.workspace_id \
                      AND bt.slug IN (SELECT jsonb_array_elements_text(c.value->'slugs'))) \
                   = jsonb_array_length(c.value->'slugs')",
                &[&MARKER, &checksum()],
            )
            .await?;
        Ok::<_, crate::error::StoreError>(rows.iter().map(|r| r.get(0)).collect())
    })
    .await
    .map_err(failed)?;
    let mut installed = 0;
    for workspace in workspaces.into_iter().filter(|w| !current.contains(w)) {
        crate::tenancy::within(workspace, install_in_scope(pool)).await?;
        installed += 1;
    }
    Ok(installed)
}

/// The configuration key under which a workspace records the bundle it has.
const MARKER: &str = "stratus.system_blocks";

/// Raised when registering changes (how types and schemas are written), so that every
/// workspace registers the bundle again on the next start.
const REGISTRATION: &str = "1";

fn checksum() -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(REGISTRATION.as_bytes());
    hash.update(BUNDLED.as_bytes());
    hex::encode(hash.finalize())
}

/// Registers the bundled block types in the workspace in scope, in one transaction, and
/// records that it has this bundle.
pub async fn install_in_scope(pool: &deadpool_postgres::Pool) -> Result<usize, SetupError> {
    let mut client = pool.get().await?;
    let tx = client
        .transaction()
        .await
        .map_err(SetupError::database("begin registering the core block types"))?;
    let types = install(&tx).await?;
    let bundle: Bundle = serde_json::from_str(BUNDLED)?;
    let slugs: Vec<&str> = bundle
        .blocks
        .iter()
        .chain(&bundle.collections)
        .map(|b| b.block_type.slug.as_str())
        .collect();
    tx.execute(
        "INSERT INTO configuration (key, value) \
         VALUES ($1, jsonb_build_object('checksum', $2::text, 'slugs', to_jsonb($3::text[]))) \
         ON CONFLICT (workspace_id, key) DO UPDATE SET value = EXCLUDED.value, updated = now()",
        &[&MARKER, &checksum(), &slugs],
    )
    .await
    .map_err(SetupError::database("record the core block types"))?;
    tx.commit()
        .await
        .map_err(SetupError::database("register the core block types"))?;
    Ok(types)
}

/// Registers (or refreshes) every bundled block type and schema; returns how many types.
/// Types are matched by slug; schemas already registered (same checksum and version) are
/// left as they are.
pub async fn install(c: &impl GenericClient) -> Result<usize, SetupError> {
    let bundle: Bundle = serde_json::from_str(BUNDLED)?;
    // Schemas reference other types (Docker containers name Docker registries): register
    // every type of a group before its schemas.
    for group in [&bundle.blocks, &bundle.collections] {
        let mut ids = Vec::with_capacity(group.len());
        for block in group {
            let t = &block.block_type;
            let block_type = blocks::register_type(c, &t.name, &t.slug, &t.fields, t.is_protected)
                .await
                .map_err(|e| SetupError::Register {
                    what: format!("block type {}", t.slug),
                    message: e.to_string(),
                })?;
            ids.push(block_type.id);
        }
        for (block, id) in group.iter().zip(ids) {
            register_schema(c, block, id).await?;
        }
    }
    Ok(bundle.blocks.len() + bundle.collections.len())
}

async fn register_schema(
    c: &impl GenericClient,
    block: &SystemBlock,
    block_type_id: uuid::Uuid,
) -> Result<(), SetupError> {
    blocks::create_schema(
        c,
        &block.schema.fields,
        block_type_id,
        &block.schema.capabilities,
        &block.schema.version,
    )
    .await
    .map_err(|e| SetupError::Register {
        what: format!("the schema of {}", block.block_type.slug),
        message: describe(e),
    })?;
    Ok(())
}
