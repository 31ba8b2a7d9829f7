//! SQL for the `log` table.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::rows::{self, FromRow};
use crate::filters::{combine, id_sql, IdFilter, Operator, Query, TimeFilter};
use stratus_domain::time::ts;

#[derive(Debug, Clone, Serialize, FromRow, schemars::JsonSchema)]
pub struct Log {
    pub id: Uuid,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub name: String,
    pub level: i16,
    pub message: String,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub timestamp: DateTime<Utc>,
    pub flow_run_id: Option<Uuid>,
    pub task_run_id: Option<Uuid>,
}

const COLUMNS: &str = "id, created, updated, name, level, message, timestamp, flow_run_id, task_run_id";

/// One log line as the client sends it (`LogCreate`).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogCreate {
    pub name: String,
    pub level: i16,
    pub message: String,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub timestamp: DateTime<Utc>,
    #[serde(default)]
    pub flow_run_id: Option<Uuid>,
    #[serde(default)]
    pub task_run_id: Option<Uuid>,
}

/// Rows per INSERT statement; Prefect inserts in chunks of about this size too.
pub const INSERT_CHUNK: usize = 4_600;

/// Postgres `text` cannot hold NUL characters, which subprocess output sometimes
/// carries; they are stored as U+FFFD rather than failing the whole batch.
fn storable(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Inserts logs with one multi-row statement (`unnest` over column arrays) per chunk of
/// [`INSERT_CHUNK`] rows. Run it in a transaction to make a multi-chunk batch atomic.
pub async fn insert(c: &impl GenericClient, logs: &[LogCreate]) -> Result<(), tokio_postgres::Error> {
    if logs.is_empty() {
        return Ok(());
    }
    let stmt = c
        .prepare_cached(
            "INSERT INTO log (name, level, message, timestamp, flow_run_id, task_run_id, id) \
             SELECT * FROM unnest($1::text[], $2::int2[], $3::text[], $4::timestamptz[], $5::uuid[], $6::uuid[], $7::uuid[])",
        )
        .await?;
    for chunk in logs.chunks(INSERT_CHUNK) {
        let names: Vec<Cow<'_, str>> = chunk.iter().map(|l| storable(&l.name)).collect();
        let names: Vec<&str> = names.iter().map(|n| n.as_ref()).collect();
        let levels: Vec<i16> = chunk.iter().map(|l| l.level).collect();
        let messages: Vec<Cow<'_, str>> = chunk.iter().map(|l| storable(&l.message)).collect();
        let messages: Vec<&str> = messages.iter().map(|m| m.as_ref()).collect();
        let timestamps: Vec<DateTime<Utc>> = chunk.iter().map(|l| l.timestamp).collect();
        let flow_runs: Vec<Option<Uuid>> = chunk.iter().map(|l| l.flow_run_id).collect();
        let task_runs: Vec<Option<Uuid>> = chunk.iter().map(|l| l.task_run_id).collect();
        // Made here rather than by the column's default: a SQL function call per row.
        let ids: Vec<Uuid> = chunk.iter().map(|_| Uuid::now_v7()).collect();
        c.execute(
            &stmt,
            &[
                &names,
                &levels,
                &messages,
                &timestamps,
                &flow_runs,
                &task_runs,
                &ids,
            ],
        )
        .await?;
    }
    Ok(())
}

/// `level{ge_, le_}`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LevelFilter {
    #[serde(default)]
    pub ge_: Option<i16>,
    #[serde(default)]
    pub le_: Option<i16>,
}

/// The `logs` filter object: `level{ge_, le_}`, `timestamp{before_, after_}`,
/// `flow_run_id{any_}`, `task_run_id{any_}` (plus `is_null_`/`not_any_` on the ids).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogFilter {
    #[serde(default)]
    pub operator: Option<Operator>,
    #[serde(default)]
    pub level: Option<LevelFilter>,
    #[serde(default)]
    pub timestamp: Option<TimeFilter>,
    #[serde(default)]
    pub flow_run_id: Option<IdFilter>,
    #[serde(default)]
    pub task_run_id: Option<IdFilter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSort {
    TimestampAsc,
    TimestampDesc,
}

impl LogSort {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "TIMESTAMP_ASC" => Some(LogSort::TimestampAsc),
            "TIMESTAMP_DESC" => Some(LogSort::TimestampDesc),
            _ => None,
        }
    }

    fn order_by(self) -> &'static str {
        match self {
            LogSort::TimestampAsc => "timestamp ASC, id",
            LogSort::TimestampDesc => "timestamp DESC, id",
        }
    }
}

impl LogFilter {
    fn sql(&self, q: &mut Query) -> String {
        let mut level = Vec::new();
        if let Some(l) = &self.level {
            if let Some(ge) = l.ge_ {
                level.push(format!("level >= {}", q.bind(ge)));
            }
            if let Some(le) = l.le_ {
                level.push(format!("level <= {}", q.bind(le)));
            }
        }
        let mut timestamp = Vec::new();
        if let Some(t) = &self.timestamp {
            if let Some(before) = t.before_ {
                timestamp.push(format!("timestamp <= {}", q.bind(before)));
            }
            if let Some(after) = t.after_ {
                timestamp.push(format!("timestamp >= {}", q.bind(after)));
            }
            // The column is NOT NULL: `is_null_: true` matches nothing.
            if t.is_null_ == Some(true) {
                timestamp.push("FALSE".to_string());
            }
        }
        let group = |parts: Vec<String>| (!parts.is_empty()).then(|| format!("({})", parts.join(" AND ")));
        combine(
            self.operator,
            vec![
                group(level),
                group(timestamp),
                id_sql(q, "flow_run_id", &self.flow_run_id),
                id_sql(q, "task_run_id", &self.task_run_id),
            ],
        )
    }
}

/// A page of logs matching `filter`, in `sort` order.
pub async fn filter(
    c: &impl GenericClient,
    filter: &LogFilter,
    sort: LogSort,
    limit: i64,
    offset: i64,
) -> Result<Vec<Log>, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = filter.sql(&mut q);
    let sql = format!(
        "SELECT {COLUMNS} FROM log WHERE {cond} ORDER BY {} LIMIT {} OFFSET {}",
        sort.order_by(),
        q.bind(limit),
        q.bind(offset)
    );
    rows::all(c.query(sql.as_str(), &q.params()).await?)
}

/// Where a page of one run's logs starts: at either end, or just past a line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LogCursor {
    First,
    Last,
    After(DateTime<Utc>, Uuid),
    Before(DateTime<Utc>, Uuid),
}

/// Which of one flow run's lines a log page shows.
#[derive(Debug, Clone, Default)]
pub struct RunLogQuery {
    pub flow_run_id: Uuid,
    pub min_level: i16,
    pub task_run_id: Option<Uuid>,
    /// Lines whose message contains this, ignoring case.
    pub text: Option<String>,
}

/// Up to `limit` of a run's lines from `cursor`, oldest first, and whether more lie beyond
/// the page in the direction read. Pages by keyset on `(timestamp, id)` along the run's
/// `(flow_run_id, timestamp)` index, so a page deep in a long run costs what the first does.
pub async fn run_page(
    c: &impl GenericClient,
    query: &RunLogQuery,
    cursor: LogCursor,
    limit: i64,
) -> Result<(Vec<Log>, bool), tokio_postgres::Error> {
    let mut q = Query::default();
    let mut cond = vec![
        format!("flow_run_id = {}", q.bind(query.flow_run_id)),
        format!("level >= {}", q.bind(query.min_level)),
    ];
    if let Some(task) = query.task_run_id {
        cond.push(format!("task_run_id = {}", q.bind(task)));
    }
    if let Some(text) = query.text.as_ref().filter(|t| !t.is_empty()) {
        cond.push(format!(
            "strpos(lower(message), lower({})) > 0",
            q.bind(text.clone())
        ));
    }
    let backwards = matches!(cursor, LogCursor::Last | LogCursor::Before(..));
    match cursor {
        LogCursor::After(ts, id) => cond.push(format!("(timestamp, id) > ({}, {})", q.bind(ts), q.bind(id))),
        LogCursor::Before(ts, id) => cond.push(format!("(timestamp, id) < ({}, {})", q.bind(ts), q.bind(id))),
        LogCursor::First | LogCursor::Last => {}
    }
    let order = if backwards {
        "timestamp DESC, id DESC"
    } else {
        "timestamp ASC, id ASC"
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM log WHERE {} ORDER BY {order} LIMIT {}",
        cond.join(" AND "),
        q.bind(limit + 1)
    );
    let mut rows: Vec<Log> = rows::all(c.query(sql.as_str(), &q.params()).await?)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    if backwards {
        rows.reverse();
    }
    Ok((rows, more))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_replaced_only_when_present() {
        assert!(matches!(storable("plain"), Cow::Borrowed("plain")));
        assert_eq!(storable("a\0b"), "a\u{FFFD}b");
    }

    #[test]
    fn an_empty_filter_matches_everything() {
        let mut q = Query::default();
        assert_eq!(LogFilter::default().sql(&mut q), "TRUE");
    }

    #[test]
    fn criteria_combine_with_the_operator() {
        let f: LogFilter = serde_json::from_value(serde_json::json!({
            "operator": "or_",
            "level": {"ge_": 30, "le_": 40},
            "flow_run_id": {"any_": [Uuid::nil()]},
        }))
        .unwrap();
        let mut q = Query::default();
        assert_eq!(
            f.sql(&mut q),
            "((level >= $1 AND level <= $2) OR (flow_run_id = $3::uuid))"
        );
        let two: LogFilter = serde_json::from_value(serde_json::json!({
            "flow_run_id": {"any_": [Uuid::nil(), Uuid::max()]},
        }))
        .unwrap();
        assert_eq!(
            two.sql(&mut Query::default()),
            "((flow_run_id = ANY($1::uuid[])))"
        );
        assert!(serde_json::from_value::<LogFilter>(serde_json::json!({"levels": {}})).is_err());
    }
}
