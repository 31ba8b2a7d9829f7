//! SQL for artifacts and their per-key collection (the latest version of each key).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::db::given;
use crate::db::rows::{self, FromRow};
use crate::filters::{combine, id_sql, text_sql, IdFilter, Query, RunFilters, TextFilter};
use stratus_domain::time::ts;

#[derive(Debug, Clone, Serialize, FromRow, schemars::JsonSchema)]
pub struct Artifact {
    pub id: Uuid,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub key: Option<String>,
    #[serde(rename = "type")]
    #[from_row(rename = "type")]
    pub kind: Option<String>,
    pub description: Option<String>,
    pub data: Option<Value>,
    pub metadata_: Option<Value>,
    pub flow_run_id: Option<Uuid>,
    pub task_run_id: Option<Uuid>,
    /// Collections only: the artifact this key's latest version is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_id: Option<Uuid>,
}

/// An artifact's columns; a version has no `latest_id`.
const COLUMNS: &str = "a.id, a.created, a.updated, a.key, a.type, a.description, a.data, a.metadata_, a.flow_run_id, a.task_run_id, NULL::uuid AS latest_id";
/// A key's latest version, from its collection row.
const COLLECTION_COLUMNS: &str = "a.id, a.created, a.updated, a.key, a.type, a.description, a.data, a.metadata_, a.flow_run_id, a.task_run_id, a.latest_id";

pub struct NewArtifact {
    pub key: Option<String>,
    pub kind: Option<String>,
    pub description: Option<String>,
    pub data: Option<Value>,
    pub metadata: Option<Value>,
    pub flow_run_id: Option<Uuid>,
    pub task_run_id: Option<Uuid>,
}

/// Inserts the artifact; a keyed one also becomes its key's latest version.
pub async fn create(c: &impl GenericClient, a: &NewArtifact) -> Result<Artifact, tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO artifact AS a (key, type, description, data, metadata_, flow_run_id, task_run_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    );
    let row = c
        .query_one(
            sql.as_str(),
            &[
                &a.key,
                &a.kind,
                &a.description,
                &a.data,
                &a.metadata,
                &a.flow_run_id,
                &a.task_run_id,
            ],
        )
        .await?;
    let artifact: Artifact = rows::one(&row)?;
    if artifact.key.is_some() {
        point_collection_at(c, &artifact).await?;
    }
    Ok(artifact)
}

async fn point_collection_at(c: &impl GenericClient, a: &Artifact) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "INSERT INTO artifact_collection (key, latest_id, type, description, data, metadata_, flow_run_id, task_run_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (workspace_id, key) DO UPDATE SET latest_id = EXCLUDED.latest_id, \
         type = EXCLUDED.type, description = EXCLUDED.description, data = EXCLUDED.data, metadata_ = EXCLUDED.metadata_, \
         flow_run_id = EXCLUDED.flow_run_id, task_run_id = EXCLUDED.task_run_id, updated = now()",
        &[&a.key, &a.id, &a.kind, &a.description, &a.data, &a.metadata_, &a.flow_run_id, &a.task_run_id],
    )
    .await?;
    Ok(())
}

pub async fn read(c: &impl GenericClient, id: Uuid) -> Result<Option<Artifact>, tokio_postgres::Error> {
    let sql = format!("SELECT {COLUMNS} FROM artifact a WHERE a.id = $1");
    rows::maybe(c.query_opt(sql.as_str(), &[&id]).await?)
}

/// The latest version of a key, as its collection row (whose id is the collection's).
pub async fn read_latest(
    c: &impl GenericClient,
    key: &str,
) -> Result<Option<Artifact>, tokio_postgres::Error> {
    let sql = format!("SELECT {COLLECTION_COLUMNS} FROM artifact_collection a WHERE a.key = $1");
    rows::maybe(c.query_opt(sql.as_str(), &[&key]).await?)
}

/// A PATCH of an artifact: `Some(None)` sets the field to NULL, `None` leaves it as it is.
#[derive(Debug, Default)]
pub struct ArtifactChanges {
    pub data: Option<Option<Value>>,
    pub description: Option<Option<String>>,
    pub metadata: Option<Option<Value>>,
}

/// Applies the changes to the artifact and, when it is its key's latest, to the collection
/// row (Prefect 2.20 `models/artifacts.py` `update_artifact`).
pub async fn update(
    c: &impl GenericClient,
    id: Uuid,
    ch: &ArtifactChanges,
) -> Result<bool, tokio_postgres::Error> {
    let (set_data, data) = given(&ch.data);
    let (set_description, description) = given(&ch.description);
    let (set_metadata, metadata) = given(&ch.metadata);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
        &id,
        &data,
        &description,
        &metadata,
        &set_data,
        &set_description,
        &set_metadata,
    ];
    const SET: &str = "data = CASE WHEN $5 THEN $2 ELSE data END, \
         description = CASE WHEN $6 THEN $3 ELSE description END, \
         metadata_ = CASE WHEN $7 THEN $4 ELSE metadata_ END, updated = now()";
    let n = c
        .execute(
            format!("UPDATE artifact SET {SET} WHERE id = $1").as_str(),
            &params,
        )
        .await?;
    c.execute(
        format!("UPDATE artifact_collection SET {SET} WHERE latest_id = $1").as_str(),
        &params,
    )
    .await?;
    Ok(n > 0)
}

/// Deletes the artifact; if it was its key's latest, the previous version becomes latest.
pub async fn delete(c: &impl GenericClient, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    let Some(artifact) = read(c, id).await? else {
        return Ok(false);
    };
    c.execute("DELETE FROM artifact WHERE id = $1", &[&id]).await?;
    if let Some(key) = &artifact.key {
        let latest: Option<Uuid> = c
            .query_opt("SELECT latest_id FROM artifact_collection WHERE key = $1", &[key])
            .await?
            .map(|r| r.get(0));
        if latest == Some(id) {
            let sql =
                format!("SELECT {COLUMNS} FROM artifact a WHERE a.key = $1 ORDER BY a.created DESC LIMIT 1");
            match rows::maybe::<Artifact>(c.query_opt(sql.as_str(), &[key]).await?)? {
                Some(previous) => point_collection_at(c, &previous).await?,
                None => {
                    c.execute("DELETE FROM artifact_collection WHERE key = $1", &[key])
                        .await?;
                }
            }
        }
    }
    Ok(true)
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyFilter {
    #[serde(default, deserialize_with = "crate::filters::bounded_list")]
    pub any_: Option<Vec<String>>,
    #[serde(default)]
    pub like_: Option<String>,
    #[serde(default)]
    pub exists_: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactFilter {
    #[serde(default)]
    pub operator: Option<crate::filters::Operator>,
    #[serde(default)]
    pub id: Option<IdFilter>,
    #[serde(default)]
    pub latest_id: Option<IdFilter>,
    #[serde(default)]
    pub key: Option<KeyFilter>,
    #[serde(default)]
    pub flow_run_id: Option<IdFilter>,
    #[serde(default)]
    pub task_run_id: Option<IdFilter>,
    #[serde(default, rename = "type")]
    pub kind: Option<TextFilter>,
}

impl ArtifactFilter {
    fn sql(&self, q: &mut Query, a: &str) -> String {
        let key = self.key.as_ref().map(|k| TextFilter {
            any_: k.any_.clone(),
            like_: k.like_.clone(),
            is_null_: k.exists_.map(|e| !e),
            ..Default::default()
        });
        combine(
            self.operator,
            vec![
                id_sql(q, &format!("{a}.id"), &self.id),
                id_sql(q, &format!("{a}.latest_id"), &self.latest_id),
                text_sql(q, &format!("{a}.key"), &key),
                id_sql(q, &format!("{a}.flow_run_id"), &self.flow_run_id),
                id_sql(q, &format!("{a}.task_run_id"), &self.task_run_id),
                text_sql(q, &format!("{a}.type"), &self.kind),
            ],
        )
    }
}

#[derive(Debug, Clone, Copy)]
pub enum ArtifactSort {
    CreatedDesc,
    UpdatedDesc,
    IdDesc,
    KeyDesc,
    KeyAsc,
}

impl ArtifactSort {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "CREATED_DESC" => ArtifactSort::CreatedDesc,
            "UPDATED_DESC" => ArtifactSort::UpdatedDesc,
            "ID_DESC" => ArtifactSort::IdDesc,
            "KEY_DESC" => ArtifactSort::KeyDesc,
            "KEY_ASC" => ArtifactSort::KeyAsc,
            _ => return None,
        })
    }
    fn sql(self) -> &'static str {
        match self {
            ArtifactSort::CreatedDesc => "a.created DESC, a.id",
            ArtifactSort::UpdatedDesc => "a.updated DESC, a.id",
            ArtifactSort::IdDesc => "a.id DESC",
            ArtifactSort::KeyDesc => "a.key DESC, a.id",
            ArtifactSort::KeyAsc => "a.key ASC, a.id",
        }
    }
}

/// Conditions on artifacts (or collections) aliased `a`, with the run filter objects
/// applied to their flow run.
fn conditions(f: &ArtifactFilter, runs: &RunFilters, q: &mut Query) -> String {
    let mut cond = f.sql(q, "a");
    let run_filters = RunFilters {
        task_runs: None,
        ..runs.clone()
    };
    if run_filters.flows.is_some() || run_filters.flow_runs.is_some() || run_filters.deployments.is_some() {
        cond = format!(
            "{cond} AND EXISTS (SELECT 1 FROM flow_run fr WHERE fr.id = a.flow_run_id AND {})",
            run_filters.flow_run_sql(q)
        );
    }
    if let Some(t) = &runs.task_runs {
        cond = format!(
            "{cond} AND EXISTS (SELECT 1 FROM task_run tr WHERE tr.id = a.task_run_id AND {})",
            t.sql(q, "tr")
        );
    }
    cond
}

pub async fn filter(
    c: &impl GenericClient,
    latest: bool,
    f: &ArtifactFilter,
    runs: &RunFilters,
    sort: ArtifactSort,
    limit: i64,
    offset: i64,
) -> Result<Vec<Artifact>, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = conditions(f, runs, &mut q);
    let (table, columns) = if latest {
        ("artifact_collection", COLLECTION_COLUMNS)
    } else {
        ("artifact", COLUMNS)
    };
    let sql = format!(
        "SELECT {columns} FROM {table} a WHERE {cond} ORDER BY {} LIMIT {} OFFSET {}",
        sort.sql(),
        q.bind(limit),
        q.bind(offset)
    );
    rows::all(c.query(sql.as_str(), &q.params()).await?)
}

pub async fn count(
    c: &impl GenericClient,
    latest: bool,
    f: &ArtifactFilter,
    runs: &RunFilters,
) -> Result<i64, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = conditions(f, runs, &mut q);
    let table = if latest { "artifact_collection" } else { "artifact" };
    Ok(c.query_one(
        format!("SELECT count(*) FROM {table} a WHERE {cond}").as_str(),
        &q.params(),
    )
    .await?
    .get(0))
}
