//! SQL for the `flow` table.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;

use uuid::Uuid;

use crate::db::rows::{self, FromRow};
use crate::filters::{Query, RunFilters};
use stratus_domain::time::ts;

#[derive(Debug, Clone, Serialize, FromRow, schemars::JsonSchema)]
pub struct Flow {
    pub id: Uuid,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub name: String,
    pub tags: Value,
}

const COLUMNS: &str = "f.id, f.created, f.updated, f.name, f.tags";

#[derive(Debug, Clone, Copy)]
pub enum FlowSort {
    CreatedDesc,
    UpdatedDesc,
    NameAsc,
    NameDesc,
}

impl FlowSort {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "CREATED_DESC" => FlowSort::CreatedDesc,
            "UPDATED_DESC" => FlowSort::UpdatedDesc,
            "NAME_ASC" => FlowSort::NameAsc,
            "NAME_DESC" => FlowSort::NameDesc,
            _ => return None,
        })
    }

    fn sql(self) -> &'static str {
        match self {
            FlowSort::CreatedDesc => "f.created DESC, f.id",
            FlowSort::UpdatedDesc => "f.updated DESC, f.id",
            FlowSort::NameAsc => "f.name ASC",
            FlowSort::NameDesc => "f.name DESC",
        }
    }
}

/// Inserts the flow unless one with that name exists; returns it and whether it is new.
pub async fn upsert(
    c: &impl GenericClient,
    name: &str,
    tags: &Value,
) -> Result<(Flow, bool), tokio_postgres::Error> {
    let stmt = c
        .prepare_cached(&format!(
            "INSERT INTO flow AS f (name, tags) VALUES ($1, $2) ON CONFLICT (workspace_id, name) DO NOTHING RETURNING {COLUMNS}"
        ))
        .await?;
    if let Some(row) = c.query_opt(&stmt, &[&name, tags]).await? {
        return Ok((rows::one(&row)?, true));
    }
    let existing = read_by_name(c, name).await?;
    match existing {
        Some(flow) => Ok((flow, false)),
        // Deleted between the two statements: try once more as a plain insert.
        None => {
            let row = c.query_one(&stmt, &[&name, tags]).await?;
            Ok((rows::one(&row)?, true))
        }
    }
}

pub async fn read(c: &impl GenericClient, id: Uuid) -> Result<Option<Flow>, tokio_postgres::Error> {
    let stmt = c
        .prepare_cached(&format!("SELECT {COLUMNS} FROM flow f WHERE f.id = $1"))
        .await?;
    rows::maybe(c.query_opt(&stmt, &[&id]).await?)
}

pub async fn read_by_name(c: &impl GenericClient, name: &str) -> Result<Option<Flow>, tokio_postgres::Error> {
    let stmt = c
        .prepare_cached(&format!("SELECT {COLUMNS} FROM flow f WHERE f.name = $1"))
        .await?;
    rows::maybe(c.query_opt(&stmt, &[&name]).await?)
}

/// Sets the tags; returns false when no such flow exists.
pub async fn update_tags(
    c: &impl GenericClient,
    id: Uuid,
    tags: &Value,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "UPDATE flow SET tags = $2, updated = now() WHERE id = $1",
            &[&id, tags],
        )
        .await?;
    Ok(n > 0)
}

pub async fn delete(c: &impl GenericClient, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    Ok(c.execute("DELETE FROM flow WHERE id = $1", &[&id]).await? > 0)
}

pub async fn filter(
    c: &impl GenericClient,
    filters: &RunFilters,
    sort: FlowSort,
    limit: i64,
    offset: i64,
) -> Result<Vec<Flow>, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = filters.flow_sql(&mut q);
    let sql = format!(
        "SELECT {COLUMNS} FROM flow f WHERE {cond} ORDER BY {} LIMIT {} OFFSET {}",
        sort.sql(),
        q.bind(limit),
        q.bind(offset)
    );
    rows::all(c.query(sql.as_str(), &q.params()).await?)
}

pub async fn count(c: &impl GenericClient, filters: &RunFilters) -> Result<i64, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = filters.flow_sql(&mut q);
    let row = c
        .query_one(
            format!("SELECT count(*) FROM flow f WHERE {cond}").as_str(),
            &q.params(),
        )
        .await?;
    Ok(row.get(0))
}
