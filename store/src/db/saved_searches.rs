//! SQL for the `saved_search` table (the UI's saved run filters).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::db::rows::{self, FromRow};
use stratus_domain::time::ts;

#[derive(Debug, Clone, Serialize, FromRow, schemars::JsonSchema)]
pub struct SavedSearch {
    pub id: Uuid,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub name: String,
    pub filters: Value,
}

const COLUMNS: &str = "id, created, updated, name, filters";

/// Creates or replaces the search with that name; returns it and whether it is new.
pub async fn upsert(
    c: &impl GenericClient,
    name: &str,
    filters: &Value,
) -> Result<(SavedSearch, bool), tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO saved_search (name, filters) VALUES ($1, $2) ON CONFLICT (workspace_id, name) DO UPDATE \
         SET filters = EXCLUDED.filters, updated = now() RETURNING {COLUMNS}, (xmax = 0) AS inserted"
    );
    let row = c.query_one(sql.as_str(), &[&name, filters]).await?;
    Ok((rows::one(&row)?, row.try_get("inserted")?))
}

pub async fn read(c: &impl GenericClient, id: Uuid) -> Result<Option<SavedSearch>, tokio_postgres::Error> {
    let sql = format!("SELECT {COLUMNS} FROM saved_search WHERE id = $1");
    rows::maybe(c.query_opt(sql.as_str(), &[&id]).await?)
}

pub async fn delete(c: &impl GenericClient, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    Ok(c.execute("DELETE FROM saved_search WHERE id = $1", &[&id])
        .await?
        > 0)
}

pub async fn filter(
    c: &impl GenericClient,
    limit: i64,
    offset: i64,
) -> Result<Vec<SavedSearch>, tokio_postgres::Error> {
    let sql = format!("SELECT {COLUMNS} FROM saved_search ORDER BY name LIMIT $1 OFFSET $2");
    rows::all(c.query(sql.as_str(), &[&limit, &offset]).await?)
}
