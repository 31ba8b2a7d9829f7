//! Work pools: the list with the create form, and one pool with its queues, workers and
//! the runs waiting in it.

use askama::Template;
use axum::extract::State;
use stratus_http::AppState;
use stratus_store::db::work_pools::{self as pools, WorkPool, WorkerFilter};
use stratus_store::filters::{WorkPoolFilter, WorkQueueFilter};

use super::view::{self, RunRow};
use super::{flow_names, render, PageError, PagePath, PageResult};

/// A pool name as a URL path segment.
pub fn path_segment(name: &str) -> String {
    stratus_store::url::percent_encode(name)
}

pub struct PoolRow {
    pub(super) name: String,
    pub(super) path: String,
    pub(super) kind: String,
    pub(super) status: String,
    pub(super) status_class: String,
    pub(super) limit: String,
    pub(super) online: usize,
    pub(super) last_heartbeat: String,
}

pub async fn pool_row(
    c: &impl deadpool_postgres::GenericClient,
    p: &WorkPool,
) -> Result<(PoolRow, Vec<pools::Worker>), PageError> {
    let workers = pools::filter_workers(c, p.id, &WorkerFilter::default(), 200, 0).await?;
    let status = if p.is_paused {
        "PAUSED".to_string()
    } else {
        p.status.clone().unwrap_or_else(|| "NOT_READY".into())
    };
    let row = PoolRow {
        name: p.name.clone(),
        path: path_segment(&p.name),
        kind: p.kind.clone(),
        status_class: status.to_ascii_lowercase(),
        status: status.replace('_', " "),
        limit: p
            .concurrency_limit
            .map(|l| l.to_string())
            .unwrap_or_else(|| "none".into()),
        online: workers.iter().filter(|w| w.status == "ONLINE").count(),
        last_heartbeat: view::when(workers.iter().map(|w| w.last_heartbeat_time).max()),
    };
    Ok((row, workers))
}

#[derive(Template)]
#[template(path = "work_pools.html")]
struct PoolsPage {
    nav: &'static str,
    pools: Vec<PoolRow>,
}

pub async fn list(State(app): State<AppState>) -> PageResult {
    let c = app.client().await?;
    let mut rows = Vec::new();
    for p in pools::filter_pools(&c, &WorkPoolFilter::default(), 500, 0).await? {
        rows.push(pool_row(&c, &p).await?.0);
    }
    Ok(render(&PoolsPage {
        nav: "pools",
        pools: rows,
    }))
}

struct QueueRow {
    id: String,
    name: String,
    description: String,
    priority: i32,
    limit: String,
    limit_value: String,
    status: String,
    paused: bool,
    is_default: bool,
    last_polled: String,
}

#[derive(Template)]
#[template(path = "work_pool.html")]
struct PoolPage {
    nav: &'static str,
    p: PoolRow,
    paused: bool,
    backend: String,
    description: String,
    limit_value: String,
    base_job_template: String,
    queues: Vec<QueueRow>,
    workers: Vec<(String, String, String)>,
    runs: Vec<RunRow>,
}

pub async fn page(State(app): State<AppState>, PagePath(name): PagePath) -> PageResult {
    let c = app.client().await?;
    let pool = pools::read_pool_by_name(&c, &name)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("There is no work pool named “{name}”.")))?;
    let (row, workers) = pool_row(&c, &pool).await?;
    let queues = pools::filter_queues(&c, Some(pool.id), &WorkQueueFilter::default(), 200, 0).await?;
    let runs = pools::waiting_runs(&c, pool.id, 50).await?;
    let names = flow_names(&c, runs.iter().map(|r| r.flow_id)).await?;
    let backend = match &app.settings.sqs_endpoint {
        Some(_) => format!("SQS ({}{})", app.settings.queue_prefix, pool.id),
        None => "Postgres".to_string(),
    };
    Ok(render(&PoolPage {
        nav: "pools",
        paused: pool.is_paused,
        backend,
        description: pool.description.clone().unwrap_or_default(),
        limit_value: pool.concurrency_limit.map(|l| l.to_string()).unwrap_or_default(),
        base_job_template: view::pretty(&pool.base_job_template),
        queues: queues
            .iter()
            .map(|q| QueueRow {
                // By id: a queue named ".." would otherwise address its pool.
                id: q.id.to_string(),
                name: q.name.clone(),
                description: q.description.clone(),
                priority: q.priority,
                limit: q
                    .concurrency_limit
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "none".into()),
                limit_value: q.concurrency_limit.map(|l| l.to_string()).unwrap_or_default(),
                status: if q.is_paused {
                    "PAUSED".into()
                } else {
                    q.status.replace('_', " ")
                },
                paused: q.is_paused,
                is_default: pool.default_queue_id == Some(q.id),
                last_polled: view::when(q.last_polled),
            })
            .collect(),
        workers: workers
            .iter()
            .map(|w| {
                (
                    w.name.clone(),
                    w.status.clone(),
                    view::when(Some(w.last_heartbeat_time)),
                )
            })
            .collect(),
        runs: runs.iter().map(|r| RunRow::named(r, &names)).collect(),
        p: row,
    }))
}
