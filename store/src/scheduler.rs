//! The scheduler tick (Prefect 2.20's `src/prefect/server/services/scheduler.py` and `late_runs.py`): create the upcoming runs of active deployment
//! schedules, idempotently, and mark runs Late. Work is bounded: deployments are taken in
//! batches and the tick stops at its deadline, resuming from the start next time (the
//! selection only returns deployments that still need runs).

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::db::deployments::{self, Deployment};
use crate::error::{StoreError, StoreResult};
use crate::outbox;
use crate::runs_service::{Change, Runs};
use stratus_domain::api_version::SERVER_API_VERSION;
use stratus_domain::orchestration::RunKind;
use stratus_domain::states::{State, StateType};

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
        let until = now
            .checked_add_signed(limits.max_time)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let dates = match stratus_domain::scheduling::dates(&s.schedule, now, until, limits.max_runs) {
            Ok(dates) => dates,
            Err(e) => {
                tracing::warn!(deployment_id = %d.id, schedule_id = %s.id, "unusable schedule: {e}");
                continue;
            }
        };
        let mut taken = Vec::new();
        for date in dates {
            taken.push(date);
            let far_enough = now.checked_add_signed(limits.min_time).is_some_and(|t| date >= t);
            if taken.len() >= limits.min_runs && far_enough {
                break;
            }
        }
        all.extend(taken);
    }
    all.sort();
    all.dedup();
    all
}

/// Backfill (`POST /deployments/{id}/schedule`): the runs of the deployment's active
/// schedules from `start` up to `end`, with the tick's rules for how many. Returns the new
/// runs (already-existing ones are kept, by their idempotency keys).
pub async fn schedule_between(
    change: &mut Change<'_>,
    d: &Deployment,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    limits: &Limits,
) -> StoreResult<Vec<Uuid>> {
    let limits = Limits {
        max_time: (end - start).max(Duration::zero()),
        ..*limits
    };
    let dates = upcoming_dates(d, start, &limits);
    change.schedule_runs(d, &dates).await
}

/// Deployments that need runs: unpaused, with an active schedule, and fewer than
/// `min_runs` future auto-scheduled runs or none reaching `min_time` ahead.
async fn deployments_needing_runs(
    c: &impl GenericClient,
    limits: &Limits,
    after: Uuid,
) -> StoreResult<Vec<Uuid>> {
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
    runs: &Runs,
    limits: &Limits,
    deadline: Instant,
) -> StoreResult<(usize, usize)> {
    let (mut deployments_seen, mut created) = (0, 0);
    let mut after = Uuid::nil();
    while Instant::now() < deadline {
        let ids = {
            let client = runs.db().get().await?;
            deployments_needing_runs(&client, limits, after).await?
        };
        let Some(last) = ids.last().copied() else { break };
        after = last;
        for id in ids {
            if Instant::now() >= deadline {
                break;
            }
            let limits = *limits;
            let new = runs
                .change(SERVER_API_VERSION, async move |change| {
                    let Some(d) = deployments::read(change.tx(), id).await? else {
                        return Ok::<_, StoreError>(None);
                    };
                    let dates = upcoming_dates(&d, Utc::now(), &limits);
                    Ok(Some(change.schedule_runs(&d, &dates).await?.len()))
                })
                .await?;
            if let Some(n) = new {
                deployments_seen += 1;
                created += n;
            }
        }
    }
    Ok((deployments_seen, created))
}

/// MarkLateRuns: SCHEDULED runs named "Scheduled" whose time passed `late_after` ago become
/// Late, through the policy (only a Scheduled run can be marked Late).
pub async fn mark_late_runs(runs: &Runs, limits: &Limits) -> StoreResult<usize> {
    let rows = {
        let client = runs.db().get().await?;
        client
            .query(
                // A run a poll just handed out is left to its worker while the offer lasts
                // (a Late mark would keep the offer, but the worker is about to move it): it
                // is marked at a later tick if it stays Scheduled.
                "SELECT id, next_scheduled_start_time FROM flow_run WHERE state_type = 'SCHEDULED' \
                 AND state_name = 'Scheduled' AND next_scheduled_start_time <= now() - $1 * interval '1 second' \
                 AND (offered_until IS NULL OR offered_until < now()) \
                 ORDER BY next_scheduled_start_time LIMIT $2",
                &[&(limits.late_after.num_seconds() as f64), &limits.late_batch],
            )
            .await?
    };
    let mut marked = 0;
    for row in rows {
        let (id, scheduled): (Uuid, Option<DateTime<Utc>>) =
            (row.try_get("id")?, row.try_get("next_scheduled_start_time")?);
        let mut late = State::new(StateType::Scheduled, Utc::now()).named("Late");
        late.state_details.scheduled_time = scheduled;
        if let Some(outcome) = runs
            .set_state(RunKind::Flow, id, late, SERVER_API_VERSION, false)
            .await?
        {
            marked += usize::from(outcome.written);
        }
    }
    Ok(marked)
}

/// The least of a tick's budget a workspace gets, however late the tick runs.
const MIN_WORKSPACE_SHARE: std::time::Duration = std::time::Duration::from_millis(200);

/// One scheduler tick in every workspace, bounded by `budget`: new scheduled runs, Late marks, then the
/// outbox sweeps (runs, then notifications), which get a share of the budget of their own
/// so that a long scheduling pass cannot starve them.
pub async fn tick(runs: &Runs, limits: &Limits, budget: std::time::Duration) -> StoreResult<TickReport> {
    let start = Instant::now();
    let reports = crate::tenancy::in_each_workspace(runs.db(), |_, left_to_do| {
        // An equal share of what is left of the budget: a workspace with much to
        // schedule cannot starve the others.
        let share = budget.saturating_sub(start.elapsed()) / left_to_do.max(1) as u32;
        tick_workspace(runs, limits, share.max(MIN_WORKSPACE_SHARE))
    })
    .await?;
    Ok(reports
        .into_iter()
        .fold(TickReport::default(), |a, b| TickReport {
            deployments: a.deployments + b.deployments,
            runs_created: a.runs_created + b.runs_created,
            late_marked: a.late_marked + b.late_marked,
            published: a.published + b.published,
            publish_failed: a.publish_failed + b.publish_failed,
            notifications_published: a.notifications_published + b.notifications_published,
        }))
}

/// One workspace's tick: see `tick`.
async fn tick_workspace(
    runs: &Runs,
    limits: &Limits,
    budget: std::time::Duration,
) -> StoreResult<TickReport> {
    let start = Instant::now();
    let (deployments, runs_created) = schedule_deployments(runs, limits, start + budget * 2 / 3).await?;
    let late_marked = mark_late_runs(runs, limits).await?;
    let sweep_deadline = (start + budget).max(Instant::now() + budget / 4);
    let swept = outbox::sweep(runs.db(), runs.queue(), sweep_deadline).await?;
    // Late marks publish their notifications themselves; this sends what they could not.
    let notified = crate::notifications::publish(runs.db(), runs.queue(), None).await?;
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
        let date = stratus_domain::time::parse_ts("2026-11-23T19:20:00Z").unwrap();
        assert_eq!(
            idempotency_key(id, date),
            format!("scheduled {id} 2026-11-23T19:20:00+00:00")
        );
        let date = stratus_domain::time::parse_ts("2026-11-23T19:20:00.5Z").unwrap();
        assert_eq!(
            idempotency_key(id, date),
            format!("scheduled {id} 2026-11-23T19:20:00.500000+00:00")
        );
    }
}
