//! SQL for flow run notifications: the policies (`flow_run_notification_policy`) and the
//! notifications waiting to be sent (`flow_run_notification_queue`, the outbox of the
//! notifications queue).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::db::given;
use crate::db::rows::{self, FromRow};
use crate::error::StoreResult;
use stratus_domain::states::State;
use stratus_domain::time::ts;

#[derive(Debug, Clone, Serialize, FromRow, schemars::JsonSchema)]
pub struct Policy {
    pub id: Uuid,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub is_active: bool,
    pub state_names: Value,
    pub tags: Value,
    pub block_document_id: Uuid,
    pub message_template: Option<String>,
}

const COLUMNS: &str =
    "id, created, updated, is_active, state_names, tags, block_document_id, message_template";

/// The fields of a policy; on update, `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct PolicyFields {
    pub is_active: Option<bool>,
    pub state_names: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub block_document_id: Option<Uuid>,
    /// `Some(None)` clears the template.
    pub message_template: Option<Option<String>>,
}

pub async fn create(c: &impl GenericClient, f: &PolicyFields) -> StoreResult<Policy> {
    let sql = format!(
        "INSERT INTO flow_run_notification_policy \
         (is_active, state_names, tags, block_document_id, message_template) \
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    );
    let row = c
        .query_one(
            sql.as_str(),
            &[
                &f.is_active.unwrap_or(true),
                &Value::from(f.state_names.clone().unwrap_or_default()),
                &Value::from(f.tags.clone().unwrap_or_default()),
                &f.block_document_id,
                &f.message_template.clone().flatten(),
            ],
        )
        .await?;
    Ok(rows::one(&row)?)
}

pub async fn read(c: &impl GenericClient, id: Uuid) -> StoreResult<Option<Policy>> {
    let sql = format!("SELECT {COLUMNS} FROM flow_run_notification_policy WHERE id = $1");
    Ok(rows::maybe(c.query_opt(sql.as_str(), &[&id]).await?)?)
}

/// Applies the fields given; false when there is no such policy.
pub async fn update(c: &impl GenericClient, id: Uuid, f: &PolicyFields) -> StoreResult<bool> {
    let sql = "UPDATE flow_run_notification_policy SET \
               is_active = coalesce($2, is_active), \
               state_names = coalesce($3, state_names), \
               tags = coalesce($4, tags), \
               block_document_id = coalesce($5, block_document_id), \
               message_template = CASE WHEN $6 THEN $7 ELSE message_template END, \
               updated = now() \
               WHERE id = $1";
    let (set_template, template) = given(&f.message_template);
    let n = c
        .execute(
            sql,
            &[
                &id,
                &f.is_active,
                &f.state_names.clone().map(Value::from),
                &f.tags.clone().map(Value::from),
                &f.block_document_id,
                &set_template,
                &template,
            ],
        )
        .await?;
    Ok(n > 0)
}

pub async fn delete(c: &impl GenericClient, id: Uuid) -> StoreResult<bool> {
    Ok(
        c.execute("DELETE FROM flow_run_notification_policy WHERE id = $1", &[&id])
            .await?
            > 0,
    )
}

/// `flow_run_notification_policy_filter`: `is_active{eq_}`. As in Prefect, a filter
/// object without `is_active` means `{"eq_": false}`; an explicit null, any.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyFilter {
    #[serde(default = "inactive_only")]
    pub is_active: Option<crate::db::blocks::EqBool>,
}

fn inactive_only() -> Option<crate::db::blocks::EqBool> {
    Some(crate::db::blocks::EqBool { eq_: Some(false) })
}

pub async fn filter(
    c: &impl GenericClient,
    f: &PolicyFilter,
    limit: i64,
    offset: i64,
) -> StoreResult<Vec<Policy>> {
    let active = f.is_active.as_ref().and_then(|a| a.eq_);
    let sql = format!(
        "SELECT {COLUMNS} FROM flow_run_notification_policy \
         WHERE ($1::boolean IS NULL OR is_active = $1) ORDER BY id LIMIT $2 OFFSET $3"
    );
    Ok(rows::all(
        c.query(sql.as_str(), &[&active, &limit, &offset]).await?,
    )?)
}

/// Queues a notification of `state` for every active policy that matches it: by state
/// name (or no names) and by a shared tag (or no tags). Returns how many were queued.
pub async fn queue_for_state(
    c: &impl GenericClient,
    run_id: Uuid,
    state: &State,
    tags: &[String],
) -> StoreResult<u64> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO flow_run_notification_queue \
             (flow_run_notification_policy_id, flow_run_state_id, flow_run_id) \
             SELECT p.id, $1, $2 FROM flow_run_notification_policy p \
             WHERE p.is_active \
               AND (p.state_names = '[]'::jsonb OR p.state_names ? $3) \
               AND (p.tags = '[]'::jsonb OR p.tags ?| $4::text[])",
        )
        .await?;
    Ok(c.execute(&stmt, &[&state.id, &run_id, &state.name, &tags])
        .await?)
}

/// How long a published notification may stay before the sweep publishes it again: its
/// message was lost, or never sent by a publisher that died.
pub const REPUBLISH_AFTER_MINUTES: f64 = 10.0;

/// Takes the notifications of `runs` not yet published, oldest first, and marks them
/// published; rows another publisher holds are skipped. The caller sends them after its
/// commit, and gives back with [`unpublish`] what it could not send.
pub async fn take_unpublished_of(c: &impl GenericClient, runs: &[Uuid], limit: i64) -> StoreResult<Vec<i64>> {
    let stmt = c
        .prepare_cached(
            "UPDATE flow_run_notification_queue SET published = now() WHERE id IN ( \
               SELECT id FROM flow_run_notification_queue WHERE published IS NULL AND flow_run_id = ANY($1) \
               ORDER BY created, id LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id",
        )
        .await?;
    Ok(c.query(&stmt, &[&runs, &limit])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Failed sends after which a notification is given up (the local notifier drops it) or
/// parked (the notifier Lambda keeps it, and SQS moves its message to the dead-letter
/// queue). A parked notification is not published again by the sweep: redriving its
/// dead-letter message delivers it.
pub const MAX_SEND_ATTEMPTS: i32 = 3;

/// The sweep's share: every notification not yet published, or published so long ago
/// that its message must have been lost (unless it is parked), marked published (again).
pub async fn take_unpublished(c: &impl GenericClient, limit: i64) -> StoreResult<Vec<i64>> {
    let stmt = c
        .prepare_cached(
            "UPDATE flow_run_notification_queue SET published = now() WHERE id IN ( \
               SELECT id FROM flow_run_notification_queue \
               WHERE published IS NULL OR (published < now() - $1 * interval '1 minute' AND attempts < $3) \
               ORDER BY created, id LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id",
        )
        .await?;
    Ok(
        c.query(&stmt, &[&REPUBLISH_AFTER_MINUTES, &limit, &MAX_SEND_ATTEMPTS])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect(),
    )
}

/// Gives back notifications whose message could not be sent, for the next sweep.
pub async fn unpublish(c: &impl GenericClient, ids: &[i64], error: &str) -> StoreResult<()> {
    if !ids.is_empty() {
        c.execute(
            "UPDATE flow_run_notification_queue SET published = NULL, last_error = $2 WHERE id = ANY($1)",
            &[&ids, &error],
        )
        .await?;
    }
    Ok(())
}

/// Records a failed send.
pub async fn mark_failed(c: &impl GenericClient, id: i64, error: &str) -> StoreResult<()> {
    c.execute(
        "UPDATE flow_run_notification_queue SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
        &[&id, &error],
    )
    .await?;
    Ok(())
}

/// Everything a notification's message is made of.
#[derive(Debug, Clone, FromRow)]
pub struct Notification {
    pub id: i64,
    /// Sends tried so far.
    pub attempts: i32,
    pub policy_id: Uuid,
    pub block_document_id: Uuid,
    pub message_template: Option<String>,
    pub flow_id: Uuid,
    pub flow_name: String,
    pub flow_run_id: Uuid,
    pub flow_run_name: String,
    pub flow_run_parameters: Value,
    pub state_type: String,
    pub state_name: String,
    pub state_timestamp: DateTime<Utc>,
    pub state_message: Option<String>,
}

/// What taking a notification found.
#[derive(Debug)]
pub enum Taken {
    /// Locked for this transaction: send it, then delete it.
    Ready(Box<Notification>),
    /// Another notifier holds it right now.
    Busy,
    /// Already sent (or its policy, run or state is gone).
    Gone,
}

/// The workspace of a queued notification (None: it is gone). The notifier reads its
/// queue across workspaces, then sends each notification within its own.
pub async fn workspace_of(c: &impl GenericClient, id: i64) -> StoreResult<Option<Uuid>> {
    Ok(c.query_opt(
        "SELECT workspace_id FROM flow_run_notification_queue WHERE id = $1",
        &[&id],
    )
    .await?
    .map(|r| r.get(0)))
}

/// Locks one queued notification for sending, with what its message needs. Busy when
/// another notifier is sending it (publishers hold rows only while marking them).
pub async fn take(c: &impl GenericClient, id: i64) -> StoreResult<Taken> {
    let stmt = c
        .prepare_cached(
            "SELECT q.id, p.id AS policy_id, p.block_document_id, p.message_template, f.id AS flow_id, \
                    f.name AS flow_name, fr.id AS flow_run_id, fr.name AS flow_run_name, \
                    fr.parameters AS flow_run_parameters, s.type AS state_type, s.name AS state_name, \
                    s.timestamp AS state_timestamp, s.message AS state_message, q.attempts \
             FROM flow_run_notification_queue q \
             JOIN flow_run_notification_policy p ON p.id = q.flow_run_notification_policy_id \
             JOIN flow_run_state s ON s.id = q.flow_run_state_id \
             JOIN flow_run fr ON fr.id = s.flow_run_id \
             JOIN flow f ON f.id = fr.flow_id \
             WHERE q.id = $1 FOR UPDATE OF q SKIP LOCKED",
        )
        .await?;
    if let Some(r) = c.query_opt(&stmt, &[&id]).await? {
        return Ok(Taken::Ready(Box::new(rows::one(&r)?)));
    }
    let exists = c
        .query_opt("SELECT 1 FROM flow_run_notification_queue WHERE id = $1", &[&id])
        .await?
        .is_some();
    Ok(if exists { Taken::Busy } else { Taken::Gone })
}

/// Removes a notification that was sent (or that will never be).
pub async fn remove(c: &impl GenericClient, id: i64) -> StoreResult<()> {
    c.execute("DELETE FROM flow_run_notification_queue WHERE id = $1", &[&id])
        .await?;
    Ok(())
}
