//! SQL for tag concurrency limits (v1, `concurrency_limit`) and global limits (v2,
//! `concurrency_limit_v2`). The task policy reads and writes v1 `active_slots` directly
//! during transitions (`db::transitions`); the format is a JSON array of task-run ids.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::json::ts;

#[derive(Debug, Clone, Serialize)]
pub struct ConcurrencyLimit {
    pub id: Uuid,
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub tag: String,
    pub concurrency_limit: i32,
    pub active_slots: Value,
}

const V1_COLUMNS: &str = "id, created, updated, tag, concurrency_limit, active_slots";

fn v1_from_row(r: &Row) -> ConcurrencyLimit {
    ConcurrencyLimit {
        id: r.get(0),
        created: r.get(1),
        updated: r.get(2),
        tag: r.get(3),
        concurrency_limit: r.get(4),
        active_slots: r.get(5),
    }
}

/// Creates the limit for a tag, or changes the existing limit's number only.
pub async fn upsert_v1(
    c: &impl GenericClient,
    tag: &str,
    limit: i32,
) -> Result<ConcurrencyLimit, tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO concurrency_limit (tag, concurrency_limit) VALUES ($1, $2) \
         ON CONFLICT (tag) DO UPDATE SET concurrency_limit = EXCLUDED.concurrency_limit, updated = now() \
         RETURNING {V1_COLUMNS}"
    );
    Ok(v1_from_row(&c.query_one(sql.as_str(), &[&tag, &limit]).await?))
}

pub async fn read_v1(
    c: &impl GenericClient,
    id: Uuid,
) -> Result<Option<ConcurrencyLimit>, tokio_postgres::Error> {
    let sql = format!("SELECT {V1_COLUMNS} FROM concurrency_limit WHERE id = $1");
    Ok(c.query_opt(sql.as_str(), &[&id]).await?.as_ref().map(v1_from_row))
}

pub async fn read_v1_by_tag(
    c: &impl GenericClient,
    tag: &str,
) -> Result<Option<ConcurrencyLimit>, tokio_postgres::Error> {
    let sql = format!("SELECT {V1_COLUMNS} FROM concurrency_limit WHERE tag = $1");
    Ok(c.query_opt(sql.as_str(), &[&tag])
        .await?
        .as_ref()
        .map(v1_from_row))
}

pub async fn filter_v1(
    c: &impl GenericClient,
    limit: i64,
    offset: i64,
) -> Result<Vec<ConcurrencyLimit>, tokio_postgres::Error> {
    let sql = format!("SELECT {V1_COLUMNS} FROM concurrency_limit ORDER BY tag LIMIT $1 OFFSET $2");
    Ok(c.query(sql.as_str(), &[&limit, &offset])
        .await?
        .iter()
        .map(v1_from_row)
        .collect())
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

#[derive(Debug, Clone, Serialize)]
pub struct GlobalLimit {
    pub id: Uuid,
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub active: bool,
    pub name: String,
    pub limit: i32,
    pub active_slots: i32,
    #[serde(skip)]
    pub denied_slots: i32,
    pub slot_decay_per_second: f64,
    #[serde(skip)]
    pub avg_slot_occupancy_seconds: f64,
}

/// Active and denied slots are read with their decay applied: a rate limit's slots free
/// themselves at `slot_decay_per_second`.
const V2_COLUMNS: &str = "id, created, updated, active, name, \"limit\", \
    greatest(0, active_slots - floor(slot_decay_per_second * extract(epoch from now() - updated)))::int, \
    greatest(0, denied_slots - floor(slot_decay_per_second * extract(epoch from now() - updated)))::int, \
    slot_decay_per_second, avg_slot_occupancy_seconds";

fn v2_from_row(r: &Row) -> GlobalLimit {
    GlobalLimit {
        id: r.get(0),
        created: r.get(1),
        updated: r.get(2),
        active: r.get(3),
        name: r.get(4),
        limit: r.get(5),
        active_slots: r.get(6),
        denied_slots: r.get(7),
        slot_decay_per_second: r.get(8),
        avg_slot_occupancy_seconds: r.get(9),
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
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING RETURNING {V2_COLUMNS}"
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
    Ok(row.as_ref().map(v2_from_row))
}

/// Reads by id when `key` is a UUID, else by name.
pub async fn read_v2(
    c: &impl GenericClient,
    key: &str,
) -> Result<Option<GlobalLimit>, tokio_postgres::Error> {
    let row = match Uuid::parse_str(key) {
        Ok(id) => {
            let sql = format!("SELECT {V2_COLUMNS} FROM concurrency_limit_v2 WHERE id = $1");
            c.query_opt(sql.as_str(), &[&id]).await?
        }
        Err(_) => {
            let sql = format!("SELECT {V2_COLUMNS} FROM concurrency_limit_v2 WHERE name = $1");
            c.query_opt(sql.as_str(), &[&key]).await?
        }
    };
    Ok(row.as_ref().map(v2_from_row))
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

pub async fn update_v2(
    c: &impl GenericClient,
    id: Uuid,
    ch: &GlobalLimitChanges,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "UPDATE concurrency_limit_v2 SET active = coalesce($2, active), name = coalesce($3, name), \
             \"limit\" = coalesce($4, \"limit\"), active_slots = coalesce($5, active_slots), \
             denied_slots = coalesce($6, denied_slots), slot_decay_per_second = coalesce($7, slot_decay_per_second), \
             updated = now() WHERE id = $1",
            &[&id, &ch.active, &ch.name, &ch.limit, &ch.active_slots, &ch.denied_slots, &ch.slot_decay_per_second],
        )
        .await?;
    Ok(n > 0)
}

pub async fn delete_v2(c: &impl GenericClient, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    Ok(
        c.execute("DELETE FROM concurrency_limit_v2 WHERE id = $1", &[&id])
            .await?
            > 0,
    )
}

pub async fn filter_v2(
    c: &impl GenericClient,
    limit: i64,
    offset: i64,
) -> Result<Vec<GlobalLimit>, tokio_postgres::Error> {
    let sql = format!("SELECT {V2_COLUMNS} FROM concurrency_limit_v2 ORDER BY name LIMIT $1 OFFSET $2");
    Ok(c.query(sql.as_str(), &[&limit, &offset])
        .await?
        .iter()
        .map(v2_from_row)
        .collect())
}

/// Reads the named limits, creating the missing ones as inactive, locked for update and
/// in name order so concurrent callers cannot deadlock.
pub async fn read_or_create_v2(
    c: &impl GenericClient,
    names: &[String],
) -> Result<Vec<GlobalLimit>, tokio_postgres::Error> {
    c.execute(
        "INSERT INTO concurrency_limit_v2 (name, \"limit\", active) SELECT n, 1, false FROM unnest($1::text[]) n \
         ON CONFLICT (name) DO NOTHING",
        &[&names],
    )
    .await?;
    lock_v2(c, names).await
}

/// The named limits that exist, locked for update in name order.
pub async fn lock_v2(
    c: &impl GenericClient,
    names: &[String],
) -> Result<Vec<GlobalLimit>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {V2_COLUMNS} FROM concurrency_limit_v2 WHERE name = ANY($1) ORDER BY name FOR UPDATE"
    );
    Ok(c.query(sql.as_str(), &[&names])
        .await?
        .iter()
        .map(v2_from_row)
        .collect())
}

/// Takes `slots` on every limit if all have room (decay applied); false otherwise, and
/// nothing changes.
pub async fn try_increment_v2(
    c: &impl GenericClient,
    limits: &[GlobalLimit],
    slots: i32,
) -> Result<bool, tokio_postgres::Error> {
    if limits.iter().any(|l| l.active_slots + slots > l.limit) {
        return Ok(false);
    }
    for l in limits {
        c.execute(
            "UPDATE concurrency_limit_v2 SET active_slots = $2, denied_slots = $3, updated = now() WHERE id = $1",
            &[&l.id, &(l.active_slots + slots), &l.denied_slots],
        )
        .await?;
    }
    Ok(true)
}

pub async fn add_denied_v2(
    c: &impl GenericClient,
    limits: &[GlobalLimit],
    slots: i32,
) -> Result<(), tokio_postgres::Error> {
    for l in limits {
        c.execute(
            "UPDATE concurrency_limit_v2 SET denied_slots = denied_slots + $2 WHERE id = $1",
            &[&l.id, &slots],
        )
        .await?;
    }
    Ok(())
}

/// Frees slots and folds the per-slot occupancy into the running average.
pub async fn decrement_v2(
    c: &impl GenericClient,
    limits: &[GlobalLimit],
    slots: i32,
    occupancy_per_slot: Option<f64>,
) -> Result<(), tokio_postgres::Error> {
    for l in limits {
        let avg = match occupancy_per_slot {
            Some(o) => {
                l.avg_slot_occupancy_seconds
                    + (o - l.avg_slot_occupancy_seconds) / (f64::from(l.limit.max(1)) * 2.0)
            }
            None => l.avg_slot_occupancy_seconds,
        };
        c.execute(
            "UPDATE concurrency_limit_v2 SET active_slots = greatest(0, $2), avg_slot_occupancy_seconds = $3, updated = now() WHERE id = $1",
            &[&l.id, &(l.active_slots - slots), &avg],
        )
        .await?;
    }
    Ok(())
}
