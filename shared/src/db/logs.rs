//! SQL for the `log` table.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::filters::{IdFilter, Query, TimeFilter};
use crate::json::ts;

#[derive(Debug, Clone, Serialize)]
pub struct Log {
    pub id: Uuid,
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub name: String,
    pub level: i16,
    pub message: String,
    #[serde(with = "ts")]
    pub timestamp: DateTime<Utc>,
    pub flow_run_id: Option<Uuid>,
    pub task_run_id: Option<Uuid>,
}

fn from_row(r: &Row) -> Log {
    Log {
        id: r.get(0),
        created: r.get(1),
        updated: r.get(2),
        name: r.get(3),
        level: r.get(4),
        message: r.get(5),
        timestamp: r.get(6),
        flow_run_id: r.get(7),
        task_run_id: r.get(8),
    }
}

/// One log line as the client sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogCreate {
    pub name: String,
    pub level: i16,
    pub message: String,
    #[serde(with = "ts")]
    pub timestamp: DateTime<Utc>,
    #[serde(default)]
    pub flow_run_id: Option<Uuid>,
    #[serde(default)]
    pub task_run_id: Option<Uuid>,
}

/// Rows per INSERT statement; Prefect inserts in chunks of about this size too.
pub const INSERT_CHUNK: usize = 4_600;

/// Inserts logs with one multi-row statement per chunk.
pub async fn insert(c: &impl GenericClient, logs: &[LogCreate]) -> Result<(), tokio_postgres::Error> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO log (name, level, message, timestamp, flow_run_id, task_run_id) \
             SELECT * FROM unnest($1::text[], $2::int2[], $3::text[], $4::timestamptz[], $5::uuid[], $6::uuid[])",
        )
        .await?;
    for chunk in logs.chunks(INSERT_CHUNK) {
        let names: Vec<&str> = chunk.iter().map(|l| l.name.as_str()).collect();
        let levels: Vec<i16> = chunk.iter().map(|l| l.level).collect();
        let messages: Vec<&str> = chunk.iter().map(|l| l.message.as_str()).collect();
        let timestamps: Vec<DateTime<Utc>> = chunk.iter().map(|l| l.timestamp).collect();
        let flow_runs: Vec<Option<Uuid>> = chunk.iter().map(|l| l.flow_run_id).collect();
        let task_runs: Vec<Option<Uuid>> = chunk.iter().map(|l| l.task_run_id).collect();
        c.execute(
            &stmt,
            &[&names, &levels, &messages, &timestamps, &flow_runs, &task_runs],
        )
        .await?;
    }
    Ok(())
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelFilter {
    #[serde(default)]
    pub ge_: Option<i16>,
    #[serde(default)]
    pub le_: Option<i16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFilter {
    #[serde(default)]
    pub operator: Option<crate::filters::Operator>,
    #[serde(default)]
    pub level: Option<LevelFilter>,
    #[serde(default)]
    pub timestamp: Option<TimeFilter>,
    #[serde(default)]
    pub flow_run_id: Option<IdFilter>,
    #[serde(default)]
    pub task_run_id: Option<IdFilter>,
}

#[derive(Debug, Clone, Copy)]
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
}

impl LogFilter {
    fn sql(&self, q: &mut Query) -> String {
        let mut parts = Vec::new();
        if let Some(level) = &self.level {
            if let Some(ge) = level.ge_ {
                parts.push(format!("level >= {}", q.bind(ge)));
            }
            if let Some(le) = level.le_ {
                parts.push(format!("level <= {}", q.bind(le)));
            }
        }
        if let Some(t) = &self.timestamp {
            if let Some(before) = t.before_ {
                parts.push(format!("timestamp <= {}", q.bind(before)));
            }
            if let Some(after) = t.after_ {
                parts.push(format!("timestamp >= {}", q.bind(after)));
            }
        }
        for (col, f) in [
            ("flow_run_id", &self.flow_run_id),
            ("task_run_id", &self.task_run_id),
        ] {
            if let Some(f) = f {
                if let Some(any) = &f.any_ {
                    parts.push(format!("{col} = ANY({}::uuid[])", q.bind(any.clone())));
                }
                match f.is_null_ {
                    Some(true) => parts.push(format!("{col} IS NULL")),
                    Some(false) => parts.push(format!("{col} IS NOT NULL")),
                    None => {}
                }
            }
        }
        if parts.is_empty() {
            return "TRUE".into();
        }
        let sep = if self.operator == Some(crate::filters::Operator::Or) {
            " OR "
        } else {
            " AND "
        };
        format!("({})", parts.join(sep))
    }
}

pub async fn filter(
    c: &impl GenericClient,
    filter: &LogFilter,
    sort: LogSort,
    limit: i64,
    offset: i64,
) -> Result<Vec<Log>, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = filter.sql(&mut q);
    let order = match sort {
        LogSort::TimestampAsc => "timestamp ASC, id",
        LogSort::TimestampDesc => "timestamp DESC, id",
    };
    let sql = format!(
        "SELECT id, created, updated, name, level, message, timestamp, flow_run_id, task_run_id \
         FROM log WHERE {cond} ORDER BY {order} LIMIT {} OFFSET {}",
        q.bind(limit),
        q.bind(offset)
    );
    Ok(c.query(sql.as_str(), &q.params())
        .await?
        .iter()
        .map(from_row)
        .collect())
}
