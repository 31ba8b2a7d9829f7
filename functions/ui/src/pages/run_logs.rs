//! Every log line of a flow run: pages read by keyset (never an offset), filtered by level,
//! by task run and by text, and the same lines as a text file to download.

use askama::Template;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use stratus_http::AppState;
use stratus_store::db::flow_runs::FlowRun;
use stratus_store::db::logs::{self, LogCursor, RunLogQuery};
use stratus_store::db::runs;
use stratus_store::db::task_runs;
use uuid::Uuid;

use super::flow_run::{level_name, log_rows, LogRow};
use super::{id_param, int_param, param, render, PageError, PagePath, PageResult, Params};

/// Lines on one page.
const PAGE: i64 = 200;
/// Lines read per query while a download streams.
const DOWNLOAD_BATCH: i64 = 5_000;
/// Task runs offered in the task filter.
const TASK_CHOICES: i64 = 500;

/// `2026-12-05T10:00:00.123456Z_<uuid>`: a line's place in the keyset.
fn cursor_text(l: &logs::Log) -> String {
    format!(
        "{}_{}",
        l.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        l.id
    )
}

fn parse_cursor(raw: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (ts, id) = raw.rsplit_once('_')?;
    Some((
        DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc),
        Uuid::parse_str(id).ok()?,
    ))
}

fn cursor(params: &Params) -> Result<LogCursor, PageError> {
    let bad =
        |key: &str, raw: &str| PageError::BadRequest(format!("“{key}” is not a place in the logs: “{raw}”."));
    if let Some(raw) = param(params, "after") {
        let (ts, id) = parse_cursor(raw).ok_or_else(|| bad("after", raw))?;
        return Ok(LogCursor::After(ts, id));
    }
    match param(params, "before") {
        Some("end") => Ok(LogCursor::Last),
        Some(raw) => {
            let (ts, id) = parse_cursor(raw).ok_or_else(|| bad("before", raw))?;
            Ok(LogCursor::Before(ts, id))
        }
        None => Ok(LogCursor::First),
    }
}

fn query(run: Uuid, params: &Params) -> Result<RunLogQuery, PageError> {
    let level = int_param(params, "level", 0, 0, 50)?;
    let task_run_id =
        match param(params, "task") {
            Some(raw) => Some(Uuid::parse_str(raw).map_err(|_| {
                PageError::BadRequest(format!("“task” must be a task run's id, not “{raw}”."))
            })?),
            None => None,
        };
    let text = param(params, "q").map(str::to_string);
    if text
        .as_ref()
        .is_some_and(|t| t.chars().count() > 500 || t.contains('\0'))
    {
        return Err(PageError::BadRequest(
            "The search text is too long or holds a NUL.".into(),
        ));
    }
    Ok(RunLogQuery {
        flow_run_id: run,
        min_level: level as i16,
        task_run_id,
        text,
    })
}

/// The page's query string for `q`, with `extra` (a cursor) after it.
fn link(run: Uuid, q: &RunLogQuery, extra: &str) -> String {
    let mut parts = Vec::new();
    if q.min_level > 0 {
        parts.push(format!("level={}", q.min_level));
    }
    if let Some(t) = q.task_run_id {
        parts.push(format!("task={t}"));
    }
    if let Some(text) = &q.text {
        parts.push(format!("q={}", stratus_store::url::percent_encode(text)));
    }
    if !extra.is_empty() {
        parts.push(extra.to_string());
    }
    if parts.is_empty() {
        format!("/flow-runs/{run}/logs")
    } else {
        format!("/flow-runs/{run}/logs?{}", parts.join("&"))
    }
}

#[derive(Template)]
#[template(path = "run_logs.html")]
struct LogsPage {
    nav: &'static str,
    id: String,
    name: String,
    levels: Vec<(i64, &'static str)>,
    level: i64,
    tasks: Vec<(String, String)>,
    task: String,
    text: String,
    logs: Vec<LogRow>,
    first: String,
    older: Option<String>,
    newer: Option<String>,
    last: String,
    download: String,
}

pub async fn page(State(app): State<AppState>, PagePath(raw): PagePath, params: Params) -> PageResult {
    let id = id_param(&raw, "flow run")?;
    let q = query(id, &params)?;
    let at = cursor(&params)?;
    let c = app.client().await?;
    let run = runs::read::<FlowRun>(&c, id)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("There is no flow run {id}.")))?;
    let (rows, more) = logs::run_page(&c, &q, at, PAGE).await?;
    let mut tasks = task_runs::names_in_flow_run(&c, id, TASK_CHOICES).await?;
    // The task filtered by is offered even when it is not among the first ones listed.
    if let Some(t) = q.task_run_id.filter(|t| !tasks.iter().any(|(id, _)| id == t)) {
        tasks.push((t, t.to_string()));
    }
    // Whether lines lie beyond each end of the page: the way read says so for one side;
    // the cursor that was followed says so for the other.
    let (older_exist, newer_exist) = match at {
        LogCursor::First => (false, more),
        LogCursor::Last => (more, false),
        LogCursor::After(..) => (true, more),
        LogCursor::Before(..) => (more, true),
    };
    let older = match rows.first() {
        Some(l) if older_exist => Some(link(id, &q, &format!("before={}", cursor_text(l)))),
        _ => None,
    };
    let newer = match rows.last() {
        Some(l) if newer_exist => Some(link(id, &q, &format!("after={}", cursor_text(l)))),
        _ => None,
    };
    Ok(render(&LogsPage {
        nav: "runs",
        id: id.to_string(),
        name: run.name,
        levels: super::flow_run::LEVELS.to_vec(),
        level: q.min_level.into(),
        tasks: tasks.into_iter().map(|(t, name)| (t.to_string(), name)).collect(),
        task: q.task_run_id.map(|t| t.to_string()).unwrap_or_default(),
        text: q.text.clone().unwrap_or_default(),
        logs: log_rows(&rows),
        first: link(id, &q, ""),
        older,
        newer,
        last: link(id, &q, "before=end"),
        download: link(id, &q, "").replacen("/logs", "/logs.txt", 1),
    }))
}

/// One line of the download: `2026-12-05 10:00:00.123 INFO    prefect.flow_runs | message`.
fn text_line(l: &logs::Log) -> String {
    format!(
        "{} {:<8} {} | {}\n",
        l.timestamp.format("%Y-%m-%d %H:%M:%S%.3f"),
        level_name(l.level),
        l.name,
        l.message
    )
}

/// `GET /flow-runs/{id}/logs.txt`: every line the filters match, oldest first, streamed in
/// keyset batches so a run of millions of lines neither waits nor fills memory.
pub async fn download(State(app): State<AppState>, PagePath(raw): PagePath, params: Params) -> PageResult {
    let id = id_param(&raw, "flow run")?;
    let q = query(id, &params)?;
    let c = app.client().await?;
    runs::read::<FlowRun>(&c, id)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("There is no flow run {id}.")))?;
    drop(c);
    let scope = stratus_store::tenancy::current();
    let stream = futures_util::stream::unfold(Some(LogCursor::First), move |state| {
        let (app, q) = (app.clone(), q.clone());
        async move {
            let at = state?;
            let batch = stratus_store::tenancy::enter(scope, async {
                let c = app
                    .client()
                    .await
                    .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
                logs::run_page(&c, &q, at, DOWNLOAD_BATCH)
                    .await
                    .map_err(std::io::Error::other)
            })
            .await;
            match batch {
                Ok((rows, more)) => {
                    let next = match rows.last() {
                        Some(l) if more => Some(LogCursor::After(l.timestamp, l.id)),
                        _ => None,
                    };
                    let text: String = rows.iter().map(text_line).collect();
                    Some((Ok::<_, std::io::Error>(text), next))
                }
                // The response has begun: ending it early is all that is left to do.
                Err(e) => Some((Err(e), None)),
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"flow-run-{id}.log\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_what_it_wrote() {
        let ts = DateTime::parse_from_rfc3339("2026-12-05T10:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = Uuid::new_v4();
        let (t, i) = parse_cursor(&format!(
            "{}_{id}",
            ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ))
        .unwrap();
        assert_eq!((t, i), (ts, id));
        assert!(parse_cursor("yesterday_nope").is_none());
        assert!(parse_cursor("").is_none());
    }
}
