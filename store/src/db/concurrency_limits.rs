//! SQL for tag concurrency limits (v1, `concurrency_limit`) and global limits (v2,
//! `concurrency_limit_v2`). The task policy reads and writes v1 `active_slots` directly
//! during transitions (`db::transitions`); the format is a JSON array of task-run ids.

use crate::db::rows::{self, FromRow};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use std::sync::LazyLock;
use uuid::Uuid;

use stratus_domain::time::ts;

#[derive(Debug, Clone, Serialize, FromRow, schemars::JsonSchema)]
pub struct ConcurrencyLimit {
    pub id: Uuid,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub tag: String,
    pub concurrency_limit: i32,
    pub active_slots: Value,
}

const V1_COLUMNS: &str = "id, created, updated, tag, concurrency_limit, active_slots";

/// Creates the limit for a tag, or changes the existing limit's number only.
pub async fn upsert_v1(
    c: &impl GenericClient,
    tag: &str,
    limit: i32,
) -> Result<ConcurrencyLimit, tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO concurrency_limit (tag, concurrency_limit) VALUES ($1, $2) \
         ON CONFLICT (workspace_id, tag) DO UPDATE SET concurrency_limit = EXCLUDED.concurrency_limit, updated = now() \
         RETURNING {V1_COLUMNS}"
    );
    rows::one(&c.query_one(sql.as_str(), &[&tag, &limit]).await?)
}

pub async fn read_v1(
    c: &impl GenericClient,
    id: Uuid,
) -> Result<Option<ConcurrencyLimit>, tokio_postgres::Error> {
    let sql = format!("SELECT {V1_COLUMNS} FROM concurrency_limit WHERE id = $1");
    rows::maybe(c.query_opt(sql.as_str(), &[&id]).await?)
}

pub async fn read_v1_by_tag(
    c: &impl GenericClient,
    tag: &str,
) -> Result<Option<ConcurrencyLimit>, tokio_postgres::Error> {
    let sql = format!("SELECT {V1_COLUMNS} FROM concurrency_limit WHERE tag = $1");
    rows::maybe(c.query_opt(sql.as_str(), &[&tag]).await?)
}

pub async fn filter_v1(
    c: &impl GenericClient,
    limit: i64,
    offset: i64,
) -> Result<Vec<ConcurrencyLimit>, tokio_postgres::Error> {
    let sql = format!("SELECT {V1_COLUMNS} FROM concurrency_limit ORDER BY tag LIMIT $1 OFFSET $2");
    rows::all(c.query(sql.as_str(), &[&limit, &offset]).await?)
}

/// Replaces a tag's active slots; false when no limit has that tag.
pub async fn reset_v1(
    c: &impl GenericClient,
    tag: &str,
    slots: &[Uuid],
) -> Result<bool, tokio_postgres::Error> {
    let slots: Vec<String> = slots.iter().map(Uuid::to_string).collect();
    let n = c
        .execute(
            "UPDATE concurrency_limit SET active_slots = $2, updated = now() WHERE tag = $1",
            &[&tag, &Value::from(slots)],
        )
        .await?;
    Ok(n > 0)
}

pub async fn delete_v1(c: &impl GenericClient, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    Ok(c.execute("DELETE FROM concurrency_limit WHERE id = $1", &[&id])
        .await?
        > 0)
}

pub async fn delete_v1_by_tag(c: &impl GenericClient, tag: &str) -> Result<bool, tokio_postgres::Error> {
    Ok(c.execute("DELETE FROM concurrency_limit WHERE tag = $1", &[&tag])
        .await?
        > 0)
}

// ---- v2 -----------------------------------------------------------------------------------
//
// Slots decay as Prefect's do: a rate limit (`slot_decay_per_second > 0`) frees active and
// denied slots at that rate; a plain concurrency limit frees only denied slots, at one per
// average occupancy. The decay is `floor(rate * seconds since updated)` whole slots, read
// with every row. Writes store the decayed counts and move `updated` forward by the time
// those whole slots took (not to now), so frequent writes never swallow the fraction of a
// slot that has decayed since the last one.

/// Slots per second freed from the counters.
const RATE: &str = "(CASE WHEN slot_decay_per_second > 0 THEN slot_decay_per_second \
    ELSE 1.0 / greatest(avg_slot_occupancy_seconds, 0.1) END)";

/// Whole slots decayed since `updated`.
static DECAYED: LazyLock<String> = LazyLock::new(|| {
    format!("floor({RATE} * greatest(0.0, extract(epoch FROM clock_timestamp() - updated)::float8))")
});

/// Active slots after decay.
static ACTIVE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "(CASE WHEN slot_decay_per_second > 0 THEN greatest(0, active_slots - {})::int ELSE active_slots END)",
        *DECAYED
    )
});

/// Denied slots after decay.
static DENIED: LazyLock<String> = LazyLock::new(|| format!("greatest(0, denied_slots - {})::int", *DECAYED));

/// When the last decayed whole slot was freed: the new `updated` of a write.
static ANCHOR: LazyLock<String> =
    LazyLock::new(|| format!("updated + make_interval(secs => {} / {RATE})", *DECAYED));

static V2_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "id, created, updated, active, name, \"limit\", {} AS active_slots, {} AS denied_slots, \
         slot_decay_per_second, avg_slot_occupancy_seconds",
        *ACTIVE, *DENIED
    )
});

/// A global limit (`ConcurrencyLimitV2`), counters read with their decay applied.
#[derive(Debug, Clone, Serialize, FromRow, schemars::JsonSchema)]
pub struct GlobalLimit {
    pub id: Uuid,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub active: bool,
    pub name: String,
    pub limit: i32,
    pub active_slots: i32,
    pub denied_slots: i32,
    pub slot_decay_per_second: f64,
    pub avg_slot_occupancy_seconds: f64,
}

/// How a route names a limit: a UUID-looking value is an id, anything else a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKey<'a> {
    Id(Uuid),
    Name(&'a str),
}

impl<'a> LimitKey<'a> {
    pub fn parse(raw: &'a str) -> Self {
        match Uuid::parse_str(raw) {
            Ok(id) => LimitKey::Id(id),
            Err(_) => LimitKey::Name(raw),
        }
    }

    /// The condition and its single parameter (`$n`).
    fn condition(&self, n: usize) -> String {
        match self {
            LimitKey::Id(_) => format!("id = ${n}"),
            LimitKey::Name(_) => format!("name = ${n}"),
        }
    }

    fn param(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            LimitKey::Id(id) => id,
            LimitKey::Name(name) => name,
        }
    }
}

pub struct NewGlobalLimit {
    pub active: bool,
    pub name: String,
    pub limit: i32,
    pub active_slots: i32,
    pub denied_slots: i32,
    pub slot_decay_per_second: f64,
}

/// Inserts a limit; None when the name is taken.
pub async fn create_v2(
    c: &impl GenericClient,
    l: &NewGlobalLimit,
) -> Result<Option<GlobalLimit>, tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO concurrency_limit_v2 (active, name, \"limit\", active_slots, denied_slots, slot_decay_per_second) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (workspace_id, name) DO NOTHING RETURNING {}",
        *V2_COLUMNS
    );
    let row = c
        .query_opt(
            sql.as_str(),
            &[
                &l.active,
                &l.name,
                &l.limit,
                &l.active_slots,
                &l.denied_slots,
                &l.slot_decay_per_second,
            ],
        )
        .await?;
    rows::maybe(row)
}

pub async fn read_v2(
    c: &impl GenericClient,
    key: LimitKey<'_>,
) -> Result<Option<GlobalLimit>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {} FROM concurrency_limit_v2 WHERE {}",
        *V2_COLUMNS,
        key.condition(1)
    );
    rows::maybe(c.query_opt(sql.as_str(), &[key.param()]).await?)
}

#[derive(Debug, Clone, Default)]
pub struct GlobalLimitChanges {
    pub active: Option<bool>,
    pub name: Option<String>,
    pub limit: Option<i32>,
    pub active_slots: Option<i32>,
    pub denied_slots: Option<i32>,
    pub slot_decay_per_second: Option<f64>,
}

/// Applies the given changes; false when no limit has that key. The counters not being
/// set keep their decayed values. A taken name is a unique violation.
pub async fn update_v2(
    c: &impl GenericClient,
    key: LimitKey<'_>,
    ch: &GlobalLimitChanges,
) -> Result<bool, tokio_postgres::Error> {
    let sql = format!(
        "UPDATE concurrency_limit_v2 SET active = coalesce($2, active), name = coalesce($3, name), \
         \"limit\" = coalesce($4, \"limit\"), active_slots = coalesce($5, {}), \
         denied_slots = coalesce($6, {}), slot_decay_per_second = coalesce($7, slot_decay_per_second), \
         updated = clock_timestamp() WHERE {}",
        *ACTIVE,
        *DENIED,
        key.condition(1)
    );
    let n = c
        .execute(
            sql.as_str(),
            &[
                key.param(),
                &ch.active,
                &ch.name,
                &ch.limit,
                &ch.active_slots,
                &ch.denied_slots,
                &ch.slot_decay_per_second,
            ],
        )
        .await?;
    Ok(n > 0)
}

pub async fn delete_v2(c: &impl GenericClient, key: LimitKey<'_>) -> Result<bool, tokio_postgres::Error> {
    let sql = format!("DELETE FROM concurrency_limit_v2 WHERE {}", key.condition(1));
    Ok(c.execute(sql.as_str(), &[key.param()]).await? > 0)
}

/// A page of limits in name order.
pub async fn filter_v2(
    c: &impl GenericClient,
    limit: i64,
    offset: i64,
) -> Result<Vec<GlobalLimit>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {} FROM concurrency_limit_v2 ORDER BY name LIMIT $1 OFFSET $2",
        *V2_COLUMNS
    );
    rows::all(c.query(sql.as_str(), &[&limit, &offset]).await?)
}

fn sorted_unique(names: &[String]) -> Vec<&str> {
    let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The named limits, locked for update in name order (so concurrent callers cannot
/// deadlock). With `create_missing`, unknown names are first created as inactive limits
/// of 1, as Prefect does.
pub async fn lock_v2(
    c: &impl GenericClient,
    names: &[String],
    create_missing: bool,
) -> Result<Vec<GlobalLimit>, tokio_postgres::Error> {
    let names = sorted_unique(names);
    if create_missing {
        c.execute(
            "INSERT INTO concurrency_limit_v2 (name, \"limit\", active) \
             SELECT n, 1, false FROM unnest($1::text[]) AS n ORDER BY n ON CONFLICT (workspace_id, name) DO NOTHING",
            &[&names],
        )
        .await?;
    }
    let sql = format!(
        "SELECT {} FROM concurrency_limit_v2 WHERE name = ANY($1) ORDER BY name FOR UPDATE",
        *V2_COLUMNS
    );
    rows::all(c.query(sql.as_str(), &[&names]).await?)
}

fn ids(limits: &[&GlobalLimit]) -> Vec<Uuid> {
    limits.iter().map(|l| l.id).collect()
}

/// Takes `slots` on each of the (locked, active) limits.
pub async fn take_slots_v2(
    c: &impl GenericClient,
    limits: &[&GlobalLimit],
    slots: i32,
) -> Result<(), tokio_postgres::Error> {
    let sql = format!(
        "UPDATE concurrency_limit_v2 SET active_slots = {} + $2, denied_slots = {}, updated = {} \
         WHERE id = ANY($1)",
        *ACTIVE, *DENIED, *ANCHOR
    );
    c.execute(sql.as_str(), &[&ids(limits), &slots]).await?;
    Ok(())
}

/// Records `slots` denied on each of the (locked, active) limits.
pub async fn deny_slots_v2(
    c: &impl GenericClient,
    limits: &[&GlobalLimit],
    slots: i32,
) -> Result<(), tokio_postgres::Error> {
    let sql = format!(
        "UPDATE concurrency_limit_v2 SET active_slots = {}, denied_slots = {} + $2, updated = {} \
         WHERE id = ANY($1)",
        *ACTIVE, *DENIED, *ANCHOR
    );
    c.execute(sql.as_str(), &[&ids(limits), &slots]).await?;
    Ok(())
}

/// Frees `slots` on each of the (locked, active) limits, and folds the occupancy per slot,
/// when given, into the running average over the last `2 * limit` samples.
pub async fn release_slots_v2(
    c: &impl GenericClient,
    limits: &[&GlobalLimit],
    slots: i32,
    occupancy_per_slot: Option<f64>,
) -> Result<(), tokio_postgres::Error> {
    let sql = format!(
        "UPDATE concurrency_limit_v2 SET active_slots = greatest(0, {} - $2), denied_slots = {}, \
         avg_slot_occupancy_seconds = CASE WHEN $3::float8 IS NULL THEN avg_slot_occupancy_seconds \
             ELSE avg_slot_occupancy_seconds + ($3::float8 - avg_slot_occupancy_seconds) / (greatest(\"limit\", 1) * 2) END, \
         updated = {} WHERE id = ANY($1)",
        *ACTIVE, *DENIED, *ANCHOR
    );
    c.execute(sql.as_str(), &[&ids(limits), &slots, &occupancy_per_slot])
        .await?;
    Ok(())
}
