//! SQL for the `saved_search` table (the UI's saved run filters).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use stratus_domain::time::ts;

#[derive(Debug, Clone, Serialize)]
pub struct SavedSearch {
    pub id: Uuid,
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub name: String,
    pub filters: Value,
}

const COLUMNS: &str = "id, created, updated, name, filters";

fn from_row(r: &Row) -> SavedSearch {
    SavedSearch {
        id: r.get(0),
        created: r.get(1),
        updated: r.get(2),
        name: r.get(3),
        filters: r.get(4),
    }
}

/// Creates or replaces the search with that name; returns it and whether it is new.
pub async fn upsert(
    c: &impl GenericClient,
    name: &str,
    filters: &Value,
) -> Result<(SavedSearch, bool), tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO saved_search (name, filters) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE \
         SET filters = EXCLUDED.filters, updated = now() RETURNING {COLUMNS}, (xmax = 0)"
    );
    let row = c.query_one(sql.as_str(), &[&name, filters]).await?;
    Ok((from_row(&row), row.get(5)))
}

pub async fn read(c: &impl GenericClient, id: Uuid) -> Result<Option<SavedSearch>, tokio_postgres::Error> {
    let sql = format!("SELECT {COLUMNS} FROM saved_search WHERE id = $1");
    Ok(c.query_opt(sql.as_str(), &[&id]).await?.as_ref().map(from_row))
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
    Ok(c.query(sql.as_str(), &[&limit, &offset])
        .await?
        .iter()
        .map(from_row)
        .collect())
}
