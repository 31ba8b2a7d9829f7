//! SQL for block types, block schemas and block documents, stored the way Prefect 2.20
//! stores them and rebuilt the way it rebuilds them:
//!
//! - a schema's nested block schemas live in `block_schema_reference` rows; its stored
//!   `fields` keep only the non-block `definitions`, and reads reconstruct
//!   `block_schema_references` and the nested definitions from the referenced schemas;
//! - a document's `{"$ref": {"block_document_id": ...}}` values live in
//!   `block_document_reference` rows; reads hydrate the referenced documents' data into the
//!   parent and describe them under `block_document_references`;
//! - secret fields are obfuscated on every read that does not ask for secrets.
//!
//! Document data is stored as plain JSONB (Prefect encrypts it with Fernet).

mod documents;
mod schemas;
pub mod secrets;
mod types;

pub use documents::*;
pub use schemas::*;
pub use secrets::OBFUSCATED_SECRET;
pub use types::*;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::rows::FromRow;
use crate::filters::{Operator, Query};
use stratus_domain::time::ts;

/// Read from [`TYPE_COLUMNS`].
#[derive(Debug, Clone, PartialEq, Serialize, FromRow, schemars::JsonSchema)]
pub struct BlockType {
    #[from_row(rename = "bt_id")]
    pub id: Uuid,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    #[from_row(rename = "bt_created")]
    pub created: DateTime<Utc>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    #[from_row(rename = "bt_updated")]
    pub updated: DateTime<Utc>,
    #[from_row(rename = "bt_name")]
    pub name: String,
    #[from_row(rename = "bt_slug")]
    pub slug: String,
    #[from_row(rename = "bt_logo_url")]
    pub logo_url: Option<String>,
    #[from_row(rename = "bt_documentation_url")]
    pub documentation_url: Option<String>,
    #[from_row(rename = "bt_description")]
    pub description: Option<String>,
    #[from_row(rename = "bt_code_example")]
    pub code_example: Option<String>,
    #[from_row(rename = "bt_is_protected")]
    pub is_protected: bool,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BlockSchema {
    pub id: Uuid,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub checksum: String,
    pub fields: Value,
    pub block_type_id: Uuid,
    pub block_type: Option<BlockType>,
    pub capabilities: Value,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BlockDocument {
    pub id: Uuid,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
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

/// A block type's columns from `bt`, each named `bt_<column>`: they are read beside a
/// schema's or a document's own.
pub(crate) const TYPE_COLUMNS: &str = "bt.id AS bt_id, bt.created AS bt_created, bt.updated AS bt_updated, \
     bt.name AS bt_name, bt.slug AS bt_slug, bt.logo_url AS bt_logo_url, \
     bt.documentation_url AS bt_documentation_url, bt.description AS bt_description, \
     bt.code_example AS bt_code_example, bt.is_protected AS bt_is_protected";
/// A schema's columns from `bs`, each named `bs_<column>`.
pub(crate) const SCHEMA_COLUMNS: &str =
    "bs.id AS bs_id, bs.created AS bs_created, bs.updated AS bs_updated, \
     bs.checksum AS bs_checksum, bs.fields AS bs_fields, bs.block_type_id AS bs_block_type_id, \
     bs.capabilities AS bs_capabilities, bs.version AS bs_version";

/// A schema row (as stored, not yet reconstructed) with its type's columns.
pub(crate) fn schema_from_row(r: &Row) -> Result<BlockSchema, tokio_postgres::Error> {
    Ok(BlockSchema {
        id: r.try_get("bs_id")?,
        created: r.try_get("bs_created")?,
        updated: r.try_get("bs_updated")?,
        checksum: r.try_get("bs_checksum")?,
        fields: r.try_get("bs_fields")?,
        block_type_id: r.try_get("bs_block_type_id")?,
        capabilities: r.try_get("bs_capabilities")?,
        version: r.try_get("bs_version")?,
        block_type: Some(BlockType::try_from_row(r)?),
    })
}

// ---- filters ------------------------------------------------------------------------------

/// `{"any_": [...]}` over ids.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnyIds {
    #[serde(default, deserialize_with = "crate::filters::bounded_list")]
    pub any_: Option<Vec<Uuid>>,
}

/// `{"any_": [...]}` over strings.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnyStrings {
    #[serde(default, deserialize_with = "crate::filters::bounded_list")]
    pub any_: Option<Vec<String>>,
}

/// `{"like_": "..."}`: a case-insensitive substring; `%` and `_` act as SQL wildcards, as in
/// Prefect.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Like {
    #[serde(default)]
    pub like_: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllStrings {
    #[serde(default, deserialize_with = "crate::filters::bounded_list")]
    pub all_: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EqBool {
    #[serde(default)]
    pub eq_: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NameFilter {
    #[serde(default, deserialize_with = "crate::filters::bounded_list")]
    pub any_: Option<Vec<String>>,
    #[serde(default)]
    pub like_: Option<String>,
}

/// `block_types`: `name{like_}`, `slug{any_}`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockTypeFilter {
    #[serde(default)]
    pub name: Option<Like>,
    #[serde(default)]
    pub slug: Option<AnyStrings>,
}

/// `block_schemas`: `block_type_id{any_}`, `block_capabilities{all_}`, `id{any_}`,
/// `version{any_}`, joined by `operator`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockSchemaFilter {
    #[serde(default)]
    pub operator: Option<Operator>,
    #[serde(default)]
    pub block_type_id: Option<AnyIds>,
    #[serde(default)]
    pub block_capabilities: Option<AllStrings>,
    #[serde(default)]
    pub id: Option<AnyIds>,
    #[serde(default)]
    pub version: Option<AnyStrings>,
}

/// `block_documents`: `id{any_}`, `is_anonymous{eq_}`, `block_type_id{any_}`,
/// `name{any_, like_}`, joined by `operator`. A missing `is_anonymous` means
/// `{"eq_": false}` (anonymous documents are left out); an explicit null means no
/// criterion, as in Prefect.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockDocumentFilter {
    #[serde(default)]
    pub operator: Option<Operator>,
    #[serde(default)]
    pub id: Option<AnyIds>,
    #[serde(default, deserialize_with = "stratus_domain::time::present")]
    pub is_anonymous: Option<Option<EqBool>>,
    #[serde(default)]
    pub block_type_id: Option<AnyIds>,
    #[serde(default)]
    pub name: Option<NameFilter>,
}

fn join(parts: Vec<String>, operator: Option<Operator>) -> String {
    if parts.is_empty() {
        return "TRUE".into();
    }
    let sep = if operator == Some(Operator::Or) {
        " OR "
    } else {
        " AND "
    };
    format!("({})", parts.join(sep))
}

fn any_ids(parts: &mut Vec<String>, q: &mut Query, col: &str, f: &Option<AnyIds>) {
    if let Some(any) = f.as_ref().and_then(|f| f.any_.clone()) {
        parts.push(format!("{col} = ANY({}::uuid[])", q.bind(any)));
    }
}

fn any_strings(parts: &mut Vec<String>, q: &mut Query, col: &str, any: &Option<Vec<String>>) {
    if let Some(any) = any {
        parts.push(format!("{col} = ANY({}::text[])", q.bind(any.clone())));
    }
}

fn like(parts: &mut Vec<String>, q: &mut Query, col: &str, like: &Option<String>) {
    if let Some(like) = like {
        parts.push(format!("{col} ILIKE '%' || {} || '%'", q.bind(like.clone())));
    }
}

impl BlockTypeFilter {
    /// Conditions on `bt`.
    pub(crate) fn sql(&self, q: &mut Query) -> String {
        let mut parts = Vec::new();
        like(
            &mut parts,
            q,
            "bt.name",
            &self.name.as_ref().and_then(|n| n.like_.clone()),
        );
        any_strings(
            &mut parts,
            q,
            "bt.slug",
            &self.slug.as_ref().and_then(|s| s.any_.clone()),
        );
        join(parts, None)
    }
}

impl BlockSchemaFilter {
    /// Conditions on the schema table aliased `a`.
    pub(crate) fn sql(&self, q: &mut Query, a: &str) -> String {
        let mut parts = Vec::new();
        any_ids(&mut parts, q, &format!("{a}.block_type_id"), &self.block_type_id);
        if let Some(all) = self.block_capabilities.as_ref().and_then(|f| f.all_.clone()) {
            parts.push(format!("{a}.capabilities @> {}::jsonb", q.bind(Value::from(all))));
        }
        any_ids(&mut parts, q, &format!("{a}.id"), &self.id);
        any_strings(
            &mut parts,
            q,
            &format!("{a}.version"),
            &self.version.as_ref().and_then(|v| v.any_.clone()),
        );
        join(parts, self.operator)
    }
}

impl BlockDocumentFilter {
    /// A filter that only names documents, anonymous or not.
    pub fn ids(ids: Vec<Uuid>) -> Self {
        BlockDocumentFilter {
            id: Some(AnyIds { any_: Some(ids) }),
            is_anonymous: Some(None),
            ..Default::default()
        }
    }

    /// Conditions on `bd`.
    pub(crate) fn sql(&self, q: &mut Query) -> String {
        let mut parts = Vec::new();
        any_ids(&mut parts, q, "bd.id", &self.id);
        let anonymous = match &self.is_anonymous {
            None => Some(false),
            Some(f) => f.as_ref().and_then(|f| f.eq_),
        };
        if let Some(eq) = anonymous {
            parts.push(format!("bd.is_anonymous = {}", q.bind(eq)));
        }
        any_ids(&mut parts, q, "bd.block_type_id", &self.block_type_id);
        if let Some(name) = &self.name {
            any_strings(&mut parts, q, "bd.name", &name.any_);
            like(&mut parts, q, "bd.name", &name.like_);
        }
        join(parts, self.operator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_filters_leave_out_anonymous_documents_unless_told() {
        let missing: BlockDocumentFilter = serde_json::from_str(r#"{"name": {"any_": ["a"]}}"#).unwrap();
        let mut q = Query::default();
        assert!(missing.sql(&mut q).contains("bd.is_anonymous"));
        let null: BlockDocumentFilter = serde_json::from_str(r#"{"is_anonymous": null}"#).unwrap();
        let mut q = Query::default();
        assert_eq!(null.sql(&mut q), "TRUE");
        let given: BlockDocumentFilter = serde_json::from_str(r#"{"is_anonymous": {"eq_": true}}"#).unwrap();
        let mut q = Query::default();
        assert_eq!(given.sql(&mut q), "(bd.is_anonymous = $1)");
        assert!(serde_json::from_str::<BlockDocumentFilter>(r#"{"id": {"not_any_": []}}"#).is_err());
        assert!(serde_json::from_str::<BlockTypeFilter>(r#"{"operator": "or_"}"#).is_err());
    }
}
