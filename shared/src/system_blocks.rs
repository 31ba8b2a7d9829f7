//! The core block types and schemas Stratus registers, as a Prefect server does on start.
//! The data is generated from the stock client by `scripts/gen_system_blocks.py`.

use deadpool_postgres::GenericClient;
use serde::Deserialize;
use serde_json::Value;

use crate::db::blocks::{self, BlockTypeFields};

const BUNDLED: &str = include_str!("../data/system_blocks.json");

#[derive(Deserialize)]
struct Bundle {
    blocks: Vec<SystemBlock>,
}

#[derive(Deserialize)]
struct SystemBlock {
    block_type: SystemType,
    schema: SystemSchema,
}

#[derive(Deserialize)]
struct SystemType {
    name: String,
    slug: String,
    #[serde(flatten)]
    fields: BlockTypeFields,
}

#[derive(Deserialize)]
struct SystemSchema {
    fields: Value,
    capabilities: Vec<String>,
    version: String,
}

/// Registers (or refreshes) every bundled block type and schema; returns how many types.
pub async fn install(c: &impl GenericClient) -> Result<usize, String> {
    let bundle: Bundle =
        serde_json::from_str(BUNDLED).map_err(|e| format!("bundled block data is invalid: {e}"))?;
    for block in &bundle.blocks {
        let t = &block.block_type;
        let block_type = blocks::upsert_system_type(c, &t.name, &t.slug, &t.fields)
            .await
            .map_err(|e| format!("could not register block type {}: {e}", t.slug))?;
        blocks::create_schema(
            c,
            &block.schema.fields,
            block_type.id,
            &block.schema.capabilities,
            &block.schema.version,
        )
        .await
        .map_err(|e| format!("could not register the schema of {}: {e}", t.slug))?;
    }
    Ok(bundle.blocks.len())
}
