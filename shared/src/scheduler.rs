//! The scheduler tick (reference §5): create the upcoming runs of active deployment
//! schedules, idempotently, and mark runs Late. Work is bounded: deployments are taken in
//! batches and the tick stops at its deadline, resuming from the start next time (the
//! selection only returns deployments that still need runs).

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::{GenericClient, Pool};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::SERVER_API_VERSION;
use crate::db::deployments::{self, Deployment};
use crate::db::transitions::{self, Options};
use crate::error::ApiResult;
use crate::outbox;
use crate::queue::MessageQueue;
use crate::states::{State, StateType};

/// Prefect's scheduler settings (`PREFECT_API_SERVICES_SCHEDULER_*`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub min_runs: usize,
    pub min_time: Duration,
    pub max_time: Duration,
    pub max_runs: usize,
    pub batch: i64,
    pub late_after: Duration,
    pub late_batch: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            min_runs: 3,
            min_time: Duration::hours(1),
            max_time: Duration::days(100),
            max_runs: 100,
            batch: 100,
            late_after: Duration::seconds(15),
            late_batch: 400,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    pub deployments: usize,
    pub runs_created: usize,
    pub late_marked: usize,
    /// Outbox messages the sweep published (and failed to).
    pub published: usize,
    pub publish_failed: usize,
    /// Queued notifications the sweep handed to the notifier's queue.
    pub notifications_published: usize,
}

/// The idempotency key of a scheduled run: `scheduled {deployment_id} {ISO datetime}`.
pub fn idempotency_key(deployment_id: Uuid, date: DateTime<Utc>) -> String {
    let iso = if date.timestamp_subsec_micros() == 0 {
        date.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        date.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    };
    format!("scheduled {deployment_id} {iso}")
}

/// The dates a deployment's active schedules need now: from `now`, up to `max_time` ahead
/// and `max_runs` per schedule, stopping once there are `min_runs` reaching `min_time`.
pub fn upcoming_dates(d: &Deployment, now: DateTime<Utc>, limits: &Limits) -> Vec<DateTime<Utc>> {
    let mut all = Vec::new();
    for s in d.schedules.iter().filter(|s| s.active) {
        let dates = match crate::scheduling::dates(&s.schedule, now, now + limits.max_time, limits.max_runs) {
            Ok(dates) => dates,
            Err(e) => {
                tracing::warn!(deployment_id = %d.id, schedule_id = %s.id, "unusable schedule: {e}");
                continue;
            }
        };
        let mut taken = Vec::new();
        for date in dates {
            taken.push(date);
            if taken.len() >= limits.min_runs && date >= now + limits.min_time {
                break;
            }
        }
        all.extend(taken);
    }
    all.sort();
    all.dedup();
    all
}

/// Inserts the runs for `dates`, each with its outbox message; returns the new ones. The unique
/// `(flow_id, idempotency_key)` makes repeated and overlapping ticks harmless.
pub async fn insert_runs(
    c: &impl GenericClient,
    d: &Deployment,
    dates: &[DateTime<Utc>],
) -> ApiResult<Vec<Uuid>> {
    let mut tags = vec![Value::from("auto-scheduled")];
    tags.extend(
        d.tags
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t != "auto-scheduled"),
    );
    let tags = Value::from(tags);
    let insert = c
        .prepare_cached(
            "INSERT INTO flow_run (name, flow_id, deployment_id, deployment_version, work_queue_name, work_queue_id, \
             parameters, infrastructure_document_id, tags, auto_scheduled, idempotency_key, empirical_policy, \
             job_variables, expected_start_time, next_scheduled_start_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, true, $10, $11, '{}', $12, $12) \
             ON CONFLICT (flow_id, idempotency_key) DO NOTHING RETURNING id",
        )
        .await?;
    let policy = serde_json::to_value(crate::orchestration::FlowRunPolicy::default())?;
    let mut created = Vec::new();
    for date in dates {
        let key = idempotency_key(d.id, *date);
        let row = c
            .query_opt(
                &insert,
                &[
                    &crate::names::run_name(),
                    &d.flow_id,
                    &d.id,
                    &d.version,
                    &d.work_queue_name,
                    &d.work_queue_id,
                    &d.parameters,
                    &d.infrastructure_document_id,
                    &tags,
                    &key,
                    &policy,
                    date,
                ],
            )
            .await?;
        let Some(row) = row else { continue };
        let run_id: Uuid = row.get(0);
        // No orchestration for scheduled runs: the state is written directly.
        let state_id = Uuid::new_v4();
        let details = json!({"flow_run_id": run_id, "scheduled_time": crate::json::format_ts(date)});
        let now = Utc::now();
        c.execute(
            "INSERT INTO flow_run_state (id, flow_run_id, type, timestamp, name, message, state_details) \
             VALUES ($1, $2, 'SCHEDULED', $3, 'Scheduled', 'Flow run scheduled', $4)",
            &[&state_id, &run_id, &now, &details],
        )
        .await?;
        c.execute(
            "UPDATE flow_run SET state_id = $2, state_type = 'SCHEDULED', state_name = 'Scheduled', state_timestamp = $3 \
             WHERE id = $1",
            &[&run_id, &state_id, &now],
        )
        .await?;
        crate::db::outbox::enqueue_run(c, run_id).await?;
        created.push(run_id);
    }
    Ok(created)
}

/// Backfill (`POST /deployments/{id}/schedule`): the runs of the deployment's active
/// schedules from `start` up to `end`, with the tick's rules for how many. Returns the new
/// runs (already-existing ones are kept, by their idempotency keys).
pub async fn schedule_between(
    c: &impl GenericClient,
    d: &Deployment,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    limits: &Limits,
) -> ApiResult<Vec<Uuid>> {
    let limits = Limits {
        max_time: (end - start).max(Duration::zero()),
        ..*limits
    };
    let dates = upcoming_dates(d, start, &limits);
    insert_runs(c, d, &dates).await
}

/// Deployments that need runs: unpaused, with an active schedule, and fewer than
/// `min_runs` future auto-scheduled runs or none reaching `min_time` ahead.
async fn deployments_needing_runs(
    c: &impl GenericClient,
    limits: &Limits,
    after: Uuid,
) -> ApiResult<Vec<Uuid>> {
    let rows = c
        .query(
            "SELECT d.id FROM deployment d \
             WHERE NOT d.paused AND d.id > $1 \
               AND EXISTS (SELECT 1 FROM deployment_schedule s WHERE s.deployment_id = d.id AND s.active) \
               AND (SELECT count(*) < $2 OR coalesce(max(fr.next_scheduled_start_time) < now() + $3 * interval '1 second', true) \
                    FROM flow_run fr WHERE fr.deployment_id = d.id AND fr.auto_scheduled \
                      AND fr.state_type = 'SCHEDULED' AND fr.next_scheduled_start_time >= now()) \
             ORDER BY d.id LIMIT $4",
            &[&after, &(limits.min_runs as i64), &(limits.min_time.num_seconds() as f64), &limits.batch],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Schedules runs for deployments in batches until none need more or `deadline` passes.
pub async fn schedule_deployments(
    pool: &Pool,
    queue: &dyn MessageQueue,
    limits: &Limits,
    deadline: Instant,
) -> ApiResult<(usize, usize)> {
    let (mut deployments_seen, mut runs) = (0, 0);
    let mut after = Uuid::nil();
    while Instant::now() < deadline {
        let ids = {
            let client = pool.get().await?;
            deployments_needing_runs(&client, limits, after).await?
        };
        let Some(last) = ids.last().copied() else { break };
        after = last;
        for id in ids {
            if Instant::now() >= deadline {
                break;
            }
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            let mut created = Vec::new();
            if let Some(d) = deployments::read(&tx, id).await? {
                let dates = upcoming_dates(&d, Utc::now(), limits);
                created = insert_runs(&tx, &d, &dates).await?;
                deployments_seen += 1;
            }
            tx.commit().await?;
            drop(client);
            runs += created.len();
            outbox::publish_runs(pool, queue, &created).await;
        }
    }
    Ok((deployments_seen, runs))
}

/// MarkLateRuns: SCHEDULED runs named "Scheduled" whose time passed `late_after` ago become
/// Late, through the policy (only a Scheduled run can be marked Late).
pub async fn mark_late_runs(pool: &Pool, limits: &Limits, tag_slot_wait_seconds: i64) -> ApiResult<usize> {
    let rows = {
        let client = pool.get().await?;
        client
            .query(
                "SELECT id, next_scheduled_start_time FROM flow_run WHERE state_type = 'SCHEDULED' \
                 AND state_name = 'Scheduled' AND next_scheduled_start_time <= now() - $1 * interval '1 second' \
                 ORDER BY next_scheduled_start_time LIMIT $2",
                &[&(limits.late_after.num_seconds() as f64), &limits.late_batch],
            )
            .await?
    };
    let opts = Options {
        force: false,
        api_version: SERVER_API_VERSION,
        tag_slot_wait_seconds,
    };
    let mut marked = 0;
    for row in rows {
        let (id, scheduled): (Uuid, Option<DateTime<Utc>>) = (row.get(0), row.get(1));
        let mut late = State::new(StateType::Scheduled, Utc::now()).named("Late");
        late.state_details.scheduled_time = scheduled;
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        if let Some(outcome) = transitions::set_flow_run_state(&tx, id, late, opts).await? {
            marked += usize::from(outcome.written);
        }
        tx.commit().await?;
    }
    Ok(marked)
}

/// One scheduler tick, bounded by `budget`: new scheduled runs, Late marks, then the
/// outbox sweeps (runs, then notifications) (which gets a share of the budget of its own, so a long scheduling pass
/// cannot starve it).
pub async fn tick(
    pool: &Pool,
    queue: &dyn MessageQueue,
    limits: &Limits,
    budget: std::time::Duration,
    tag_slot_wait_seconds: i64,
) -> ApiResult<TickReport> {
    let start = Instant::now();
    let (deployments, runs_created) =
        schedule_deployments(pool, queue, limits, start + budget * 2 / 3).await?;
    let late_marked = mark_late_runs(pool, limits, tag_slot_wait_seconds).await?;
    let sweep_deadline = (start + budget).max(Instant::now() + budget / 4);
    let swept = outbox::sweep(pool, queue, sweep_deadline).await?;
    // Late marks queue notifications too, so this comes last.
    let notified = crate::notifications::publish(pool, queue, None).await?;
    Ok(TickReport {
        deployments,
        runs_created,
        late_marked,
        published: swept.sent,
        publish_failed: swept.failed + notified.failed,
        notifications_published: notified.sent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_prefects_format() {
        let id = Uuid::nil();
        let date = crate::json::parse_ts("2026-11-23T19:20:00Z").unwrap();
        assert_eq!(
            idempotency_key(id, date),
            format!("scheduled {id} 2026-11-23T19:20:00+00:00")
        );
        let date = crate::json::parse_ts("2026-11-23T19:20:00.5Z").unwrap();
        assert_eq!(
            idempotency_key(id, date),
            format!("scheduled {id} 2026-11-23T19:20:00.500000+00:00")
        );
    }
}
