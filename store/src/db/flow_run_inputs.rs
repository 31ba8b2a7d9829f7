//! SQL for the `flow_run_input` table.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use uuid::Uuid;

use crate::db::rows::{self, FromRow};
use stratus_domain::time::ts;

#[derive(Debug, Clone, Serialize, FromRow, schemars::JsonSchema)]
pub struct FlowRunInput {
    pub id: Uuid,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub flow_run_id: Uuid,
    pub key: String,
    pub value: String,
    pub sender: Option<String>,
}

const COLUMNS: &str = "id, created, updated, flow_run_id, key, value, sender";

/// Inserts the input; returns false when the key already exists for this run.
pub async fn insert(
    c: &impl GenericClient,
    flow_run_id: Uuid,
    key: &str,
    value: &str,
    sender: Option<&str>,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "INSERT INTO flow_run_input (flow_run_id, key, value, sender) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (flow_run_id, key) DO NOTHING",
            &[&flow_run_id, &key, &value, &sender],
        )
        .await?;
    Ok(n > 0)
}

pub async fn read(
    c: &impl GenericClient,
    flow_run_id: Uuid,
    key: &str,
) -> Result<Option<FlowRunInput>, tokio_postgres::Error> {
    let sql = format!("SELECT {COLUMNS} FROM flow_run_input WHERE flow_run_id = $1 AND key = $2");
    rows::maybe(c.query_opt(sql.as_str(), &[&flow_run_id, &key]).await?)
}

/// Inputs whose key starts with `prefix`, oldest first, skipping `exclude_keys`.
pub async fn filter(
    c: &impl GenericClient,
    flow_run_id: Uuid,
    prefix: &str,
    limit: i64,
    exclude_keys: &[String],
) -> Result<Vec<FlowRunInput>, tokio_postgres::Error> {
    let pattern = format!(
        "{}%",
        prefix
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let sql = format!(
        "SELECT {COLUMNS} FROM flow_run_input WHERE flow_run_id = $1 AND key LIKE $2 \
         AND NOT (key = ANY($3)) ORDER BY created, key LIMIT $4"
    );
    rows::all(
        c.query(sql.as_str(), &[&flow_run_id, &pattern, &exclude_keys, &limit])
            .await?,
    )
}

pub async fn delete(
    c: &impl GenericClient,
    flow_run_id: Uuid,
    key: &str,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "DELETE FROM flow_run_input WHERE flow_run_id = $1 AND key = $2",
            &[&flow_run_id, &key],
        )
        .await?;
    Ok(n > 0)
}
