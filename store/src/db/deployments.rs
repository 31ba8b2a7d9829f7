//! SQL for deployments and their schedules.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::rows::{self, FromRow};
use crate::filters::{Query, RunFilters};
use stratus_domain::time::{ts, ts_opt};

#[derive(Debug, Clone, Serialize, FromRow, schemars::JsonSchema)]
pub struct Schedule {
    pub id: Uuid,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub deployment_id: Uuid,
    pub schedule: Value,
    pub active: bool,
    pub max_active_runs: Option<i32>,
    pub max_scheduled_runs: Option<i32>,
    pub catchup: bool,
}

/// `DeploymentResponse`. The job variables are `infra_overrides` here (trap 1).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Deployment {
    pub id: Uuid,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    pub flow_id: Uuid,
    pub schedule: Option<Value>,
    pub is_schedule_active: bool,
    pub paused: bool,
    pub schedules: Vec<Schedule>,
    pub infra_overrides: Value,
    pub parameters: Value,
    pub tags: Value,
    pub work_queue_name: Option<String>,
    pub work_pool_name: Option<String>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(with = "ts_opt")]
    pub last_polled: Option<DateTime<Utc>>,
    pub parameter_openapi_schema: Option<Value>,
    pub path: Option<String>,
    pub entrypoint: Option<String>,
    pub manifest_path: Option<String>,
    pub storage_document_id: Option<Uuid>,
    pub infrastructure_document_id: Option<Uuid>,
    pub created_by: Option<Value>,
    pub updated_by: Option<Value>,
    pub pull_steps: Option<Value>,
    pub enforce_parameter_schema: bool,
    pub status: String,
    #[serde(skip)]
    pub work_queue_id: Option<Uuid>,
    #[serde(skip)]
    pub work_pool_id: Option<Uuid>,
}

const COLUMNS: &str = "d.id, d.created, d.updated, d.name, d.version, d.description, d.flow_id, d.paused, \
    d.infra_overrides, d.parameters, d.tags, coalesce(wq.name, d.work_queue_name) AS work_queue_name, \
    wp.name AS work_pool_name, d.last_polled, \
    d.parameter_openapi_schema, d.path, d.entrypoint, d.manifest_path, d.storage_document_id, \
    d.infrastructure_document_id, d.created_by, d.updated_by, d.pull_steps, d.enforce_parameter_schema, d.status, \
    d.work_queue_id, wp.id AS work_pool_id";

const FROM: &str = "deployment d LEFT JOIN work_queue wq ON wq.id = d.work_queue_id \
    LEFT JOIN work_pool wp ON wp.id = wq.work_pool_id";

fn from_row(r: &Row) -> Result<Deployment, tokio_postgres::Error> {
    let paused: bool = r.try_get("paused")?;
    Ok(Deployment {
        id: r.try_get("id")?,
        created: r.try_get("created")?,
        updated: r.try_get("updated")?,
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        description: r.try_get("description")?,
        flow_id: r.try_get("flow_id")?,
        schedule: None,
        is_schedule_active: !paused,
        paused,
        schedules: Vec::new(),
        infra_overrides: r.try_get("infra_overrides")?,
        parameters: r.try_get("parameters")?,
        tags: r.try_get("tags")?,
        work_queue_name: r.try_get("work_queue_name")?,
        work_pool_name: r.try_get("work_pool_name")?,
        last_polled: r.try_get("last_polled")?,
        parameter_openapi_schema: r.try_get("parameter_openapi_schema")?,
        path: r.try_get("path")?,
        entrypoint: r.try_get("entrypoint")?,
        manifest_path: r.try_get("manifest_path")?,
        storage_document_id: r.try_get("storage_document_id")?,
        infrastructure_document_id: r.try_get("infrastructure_document_id")?,
        created_by: r.try_get("created_by")?,
        updated_by: r.try_get("updated_by")?,
        pull_steps: r.try_get("pull_steps")?,
        enforce_parameter_schema: r.try_get("enforce_parameter_schema")?,
        status: r.try_get("status")?,
        work_queue_id: r.try_get("work_queue_id")?,
        work_pool_id: r.try_get("work_pool_id")?,
    })
}

const SCHEDULE_COLUMNS: &str =
    "id, created, updated, deployment_id, schedule, active, max_active_runs, max_scheduled_runs, catchup";

/// Fills `schedules` (newest `updated` first) and the legacy `schedule` (the first one).
async fn with_schedules(
    c: &impl GenericClient,
    mut deployments: Vec<Deployment>,
) -> Result<Vec<Deployment>, tokio_postgres::Error> {
    if deployments.is_empty() {
        return Ok(deployments);
    }
    let ids: Vec<Uuid> = deployments.iter().map(|d| d.id).collect();
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM deployment_schedule WHERE deployment_id = ANY($1) ORDER BY updated DESC, id"
        ))
        .await?;
    for row in &c.query(&stmt, &[&ids]).await? {
        let s: Schedule = rows::one(row)?;
        if let Some(d) = deployments.iter_mut().find(|d| d.id == s.deployment_id) {
            d.schedules.push(s);
        }
    }
    for d in &mut deployments {
        d.schedule = d.schedules.first().map(|s| s.schedule.clone());
    }
    Ok(deployments)
}

pub async fn read(c: &impl GenericClient, id: Uuid) -> Result<Option<Deployment>, tokio_postgres::Error> {
    let stmt = c
        .prepare_cached(&format!("SELECT {COLUMNS} FROM {FROM} WHERE d.id = $1"))
        .await?;
    let found: Vec<Deployment> = c
        .query(&stmt, &[&id])
        .await?
        .iter()
        .map(from_row)
        .collect::<Result<_, _>>()?;
    Ok(with_schedules(c, found).await?.into_iter().next())
}

pub async fn read_by_name(
    c: &impl GenericClient,
    flow_name: &str,
    name: &str,
) -> Result<Option<Deployment>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM {FROM} JOIN flow f ON f.id = d.flow_id WHERE f.name = $1 AND d.name = $2"
    );
    let found: Vec<Deployment> = c
        .query(sql.as_str(), &[&flow_name, &name])
        .await?
        .iter()
        .map(from_row)
        .collect::<Result<_, _>>()?;
    Ok(with_schedules(c, found).await?.into_iter().next())
}

/// The keys of a deployment create or update that were given; None leaves a column as it is.
#[derive(Debug, Clone, Default)]
pub struct DeploymentFields {
    pub version: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub work_queue_id: Option<Option<Uuid>>,
    pub work_queue_name: Option<Option<String>>,
    pub infra_overrides: Option<Value>,
    pub path: Option<Option<String>>,
    pub entrypoint: Option<Option<String>>,
    pub manifest_path: Option<Option<String>>,
    pub parameter_openapi_schema: Option<Option<Value>>,
    pub parameters: Option<Value>,
    pub pull_steps: Option<Option<Value>>,
    pub tags: Option<Value>,
    pub paused: Option<bool>,
    pub enforce_parameter_schema: Option<bool>,
    pub storage_document_id: Option<Option<Uuid>>,
    pub infrastructure_document_id: Option<Option<Uuid>>,
}

fn assignments(f: &DeploymentFields, q: &mut Query) -> Vec<(&'static str, String)> {
    let mut sets = Vec::new();
    macro_rules! set {
        ($col:literal, $v:expr) => {
            if let Some(v) = $v {
                sets.push(($col, q.bind(v.clone())));
            }
        };
    }
    set!("version", &f.version);
    set!("description", &f.description);
    set!("work_queue_id", &f.work_queue_id);
    set!("work_queue_name", &f.work_queue_name);
    set!("infra_overrides", &f.infra_overrides);
    set!("path", &f.path);
    set!("entrypoint", &f.entrypoint);
    set!("manifest_path", &f.manifest_path);
    set!("parameter_openapi_schema", &f.parameter_openapi_schema);
    set!("parameters", &f.parameters);
    set!("pull_steps", &f.pull_steps);
    set!("tags", &f.tags);
    if let Some(paused) = f.paused {
        sets.push(("paused", q.bind(paused)));
        sets.push(("is_schedule_active", q.bind(!paused)));
    }
    set!("enforce_parameter_schema", &f.enforce_parameter_schema);
    set!("storage_document_id", &f.storage_document_id);
    set!("infrastructure_document_id", &f.infrastructure_document_id);
    sets
}

/// Inserts the deployment, or updates the given keys of the one with that flow and name.
/// Returns its id and whether it is new.
pub async fn upsert(
    c: &impl GenericClient,
    flow_id: Uuid,
    name: &str,
    f: &DeploymentFields,
) -> Result<(Uuid, bool), tokio_postgres::Error> {
    let existing = c
        .query_opt(
            "SELECT id FROM deployment WHERE flow_id = $1 AND name = $2 FOR UPDATE",
            &[&flow_id, &name],
        )
        .await?;
    let mut q = Query::default();
    let sets = assignments(f, &mut q);
    if let Some(row) = existing {
        let id: Uuid = row.get(0);
        update_columns(c, id, &sets, q).await?;
        return Ok((id, false));
    }
    let mut cols = vec!["flow_id", "name"];
    let mut vals = vec![q.bind(flow_id), q.bind(name.to_string())];
    for (col, placeholder) in sets {
        cols.push(col);
        vals.push(placeholder);
    }
    let sql = format!(
        "INSERT INTO deployment ({}) VALUES ({}) ON CONFLICT (flow_id, name) DO NOTHING RETURNING id",
        cols.join(", "),
        vals.join(", ")
    );
    match c.query_opt(sql.as_str(), &q.params()).await? {
        Some(row) => Ok((row.get(0), true)),
        // Created concurrently: apply the given keys to it instead.
        None => Box::pin(upsert(c, flow_id, name, f)).await,
    }
}

async fn update_columns(
    c: &impl GenericClient,
    id: Uuid,
    sets: &[(&'static str, String)],
    mut q: Query,
) -> Result<bool, tokio_postgres::Error> {
    let mut parts: Vec<String> = sets.iter().map(|(col, p)| format!("{col} = {p}")).collect();
    parts.push("updated = now()".into());
    let sql = format!(
        "UPDATE deployment SET {} WHERE id = {}",
        parts.join(", "),
        q.bind(id)
    );
    Ok(c.execute(sql.as_str(), &q.params()).await? > 0)
}

pub async fn update(
    c: &impl GenericClient,
    id: Uuid,
    f: &DeploymentFields,
) -> Result<bool, tokio_postgres::Error> {
    let mut q = Query::default();
    let sets = assignments(f, &mut q);
    update_columns(c, id, &sets, q).await
}

pub async fn delete(c: &impl GenericClient, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    c.execute(
        "DELETE FROM flow_run WHERE deployment_id = $1 AND state_type = 'SCHEDULED'",
        &[&id],
    )
    .await?;
    Ok(c.execute("DELETE FROM deployment WHERE id = $1", &[&id]).await? > 0)
}

/// Deletes the deployment's future runs the scheduler made, so new schedules start clean.
pub async fn delete_auto_scheduled_runs(
    c: &impl GenericClient,
    id: Uuid,
) -> Result<u64, tokio_postgres::Error> {
    c.execute(
        "DELETE FROM flow_run WHERE deployment_id = $1 AND auto_scheduled AND state_type = 'SCHEDULED'",
        &[&id],
    )
    .await
}

pub struct NewSchedule {
    pub schedule: Value,
    pub active: bool,
    pub max_active_runs: Option<i32>,
    pub max_scheduled_runs: Option<i32>,
    pub catchup: bool,
}

pub async fn add_schedules(
    c: &impl GenericClient,
    deployment_id: Uuid,
    schedules: &[NewSchedule],
) -> Result<Vec<Schedule>, tokio_postgres::Error> {
    let mut out = Vec::new();
    for s in schedules {
        let sql = format!(
            "INSERT INTO deployment_schedule (deployment_id, schedule, active, max_active_runs, max_scheduled_runs, catchup) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {SCHEDULE_COLUMNS}"
        );
        let row = c
            .query_one(
                sql.as_str(),
                &[
                    &deployment_id,
                    &s.schedule,
                    &s.active,
                    &s.max_active_runs,
                    &s.max_scheduled_runs,
                    &s.catchup,
                ],
            )
            .await?;
        out.push(rows::one(&row)?);
    }
    Ok(out)
}

pub async fn replace_schedules(
    c: &impl GenericClient,
    deployment_id: Uuid,
    schedules: &[NewSchedule],
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "DELETE FROM deployment_schedule WHERE deployment_id = $1",
        &[&deployment_id],
    )
    .await?;
    add_schedules(c, deployment_id, schedules).await?;
    Ok(())
}

pub async fn schedules(
    c: &impl GenericClient,
    deployment_id: Uuid,
) -> Result<Vec<Schedule>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {SCHEDULE_COLUMNS} FROM deployment_schedule WHERE deployment_id = $1 ORDER BY updated DESC, id"
    );
    rows::all(c.query(sql.as_str(), &[&deployment_id]).await?)
}

/// A PATCH of one schedule. `None` leaves a field as it is: Prefect applies these with
/// `exclude_none` (2.20 `models/deployments.py` `update_deployment_schedule`), so a null
/// cannot clear one.
#[derive(Debug, Clone, Default)]
pub struct ScheduleChanges {
    pub schedule: Option<Value>,
    pub active: Option<bool>,
    pub max_active_runs: Option<i32>,
    pub max_scheduled_runs: Option<i32>,
    pub catchup: Option<bool>,
}

pub async fn update_schedule(
    c: &impl GenericClient,
    deployment_id: Uuid,
    schedule_id: Uuid,
    ch: &ScheduleChanges,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "UPDATE deployment_schedule SET schedule = coalesce($3, schedule), active = coalesce($4, active), \
             max_active_runs = coalesce($5, max_active_runs), \
             max_scheduled_runs = coalesce($6, max_scheduled_runs), \
             catchup = coalesce($7, catchup), updated = now() WHERE id = $2 AND deployment_id = $1",
            &[
                &deployment_id,
                &schedule_id,
                &ch.schedule,
                &ch.active,
                &ch.max_active_runs,
                &ch.max_scheduled_runs,
                &ch.catchup,
            ],
        )
        .await?;
    Ok(n > 0)
}

pub async fn delete_schedule(
    c: &impl GenericClient,
    deployment_id: Uuid,
    schedule_id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "DELETE FROM deployment_schedule WHERE id = $2 AND deployment_id = $1",
            &[&deployment_id, &schedule_id],
        )
        .await?;
    Ok(n > 0)
}

/// Sets `paused` (and `is_schedule_active`), and the single schedule's `active` flag.
pub async fn set_paused(c: &impl GenericClient, id: Uuid, paused: bool) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "UPDATE deployment SET paused = $2, is_schedule_active = NOT $2, updated = now() WHERE id = $1",
        &[&id, &paused],
    )
    .await?;
    c.execute(
        "UPDATE deployment_schedule SET active = NOT $2, updated = now() WHERE deployment_id = $1",
        &[&id, &paused],
    )
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub enum DeploymentSort {
    CreatedDesc,
    UpdatedDesc,
    NameAsc,
    NameDesc,
}

impl DeploymentSort {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "CREATED_DESC" => DeploymentSort::CreatedDesc,
            "UPDATED_DESC" => DeploymentSort::UpdatedDesc,
            "NAME_ASC" => DeploymentSort::NameAsc,
            "NAME_DESC" => DeploymentSort::NameDesc,
            _ => return None,
        })
    }
    fn sql(self) -> &'static str {
        match self {
            DeploymentSort::CreatedDesc => "d.created DESC, d.id",
            DeploymentSort::UpdatedDesc => "d.updated DESC, d.id",
            DeploymentSort::NameAsc => "d.name ASC, d.id",
            DeploymentSort::NameDesc => "d.name DESC, d.id",
        }
    }
}

/// Conditions on deployments aliased `d`, from the run-list filter objects.
fn conditions(filters: &RunFilters, q: &mut Query) -> String {
    let mut parts = Vec::new();
    if let Some(f) = &filters.deployments {
        parts.push(f.sql(q, "d"));
    }
    if let Some(f) = &filters.flows {
        parts.push(format!(
            "EXISTS (SELECT 1 FROM flow f WHERE f.id = d.flow_id AND {})",
            f.sql(q, "f")
        ));
    }
    if let Some(f) = &filters.flow_runs {
        parts.push(format!(
            "EXISTS (SELECT 1 FROM flow_run fr WHERE fr.deployment_id = d.id AND {})",
            f.sql(q, "fr")
        ));
    }
    if let Some(f) = &filters.work_pools {
        parts.push(format!(
            "EXISTS (SELECT 1 FROM work_queue dwq JOIN work_pool dwp ON dwp.id = dwq.work_pool_id \
             WHERE dwq.id = d.work_queue_id AND {})",
            f.sql(q, "dwp")
        ));
    }
    if let Some(f) = &filters.work_pool_queues {
        parts.push(format!(
            "EXISTS (SELECT 1 FROM work_queue dq WHERE dq.id = d.work_queue_id AND {})",
            f.sql(q, "dq")
        ));
    }
    if parts.is_empty() {
        "TRUE".into()
    } else {
        parts.join(" AND ")
    }
}

pub async fn filter(
    c: &impl GenericClient,
    filters: &RunFilters,
    sort: DeploymentSort,
    limit: i64,
    offset: i64,
) -> Result<Vec<Deployment>, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = conditions(filters, &mut q);
    let sql = format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE {cond} ORDER BY {} LIMIT {} OFFSET {}",
        sort.sql(),
        q.bind(limit),
        q.bind(offset)
    );
    let found = c
        .query(sql.as_str(), &q.params())
        .await?
        .iter()
        .map(from_row)
        .collect::<Result<_, _>>()?;
    with_schedules(c, found).await
}

pub async fn count(c: &impl GenericClient, filters: &RunFilters) -> Result<i64, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = conditions(filters, &mut q);
    let sql = format!("SELECT count(*) FROM deployment d WHERE {cond}");
    Ok(c.query_one(sql.as_str(), &q.params()).await?.get(0))
}

/// How many deployments each of `flows` has (those with none are left out).
pub async fn count_by_flow(
    c: &impl GenericClient,
    flows: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, i64>, tokio_postgres::Error> {
    let stmt = c
        .prepare_cached("SELECT flow_id, count(*) FROM deployment WHERE flow_id = ANY($1) GROUP BY flow_id")
        .await?;
    c.query(&stmt, &[&flows])
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// SCHEDULED runs of the deployments due by `before`, soonest first (for `flow.serve()`
/// runners); marks the deployments polled and ready.
pub async fn scheduled_runs(
    c: &impl GenericClient,
    ids: &[Uuid],
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT id FROM flow_run WHERE deployment_id = ANY($1) AND state_type = 'SCHEDULED' \
             AND next_scheduled_start_time <= $2 ORDER BY next_scheduled_start_time, id LIMIT $3",
            &[&ids, &before, &limit],
        )
        .await?;
    c.execute(
        "UPDATE deployment SET last_polled = now(), status = 'READY' WHERE id = ANY($1)",
        &[&ids],
    )
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
