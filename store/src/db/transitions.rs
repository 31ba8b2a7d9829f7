//! Applying a state transition: one short transaction that locks the run row, loads what
//! the policy needs, asks the pure policy (`orchestration::orchestrate`) for a decision,
//! and writes it: the state row, the run's mirror and bookkeeping columns, tag slots, the
//! cache row, and for subflows the mirrored state of the parent task run.

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::db::flow_runs::{FlowRun, NewFlowRun};
use crate::db::runs::{self, micros_sql, state_from_row, RunRow, RunTable, STATE_COLUMNS};
use crate::db::task_runs::{NewTaskRun, TaskRun};
use crate::error::StoreResult;
use stratus_domain::api_version::ApiVersion;
use stratus_domain::orchestration::{
    orchestrate, Decision, Details, FlowRunPolicy, ParentFlowRun, RunBook, RunFacts, RunKind, Status,
    TagLimit, TaskRunPolicy, TransitionContext,
};
use stratus_domain::states::{State, StateType};

/// The body of a `set_state` answer.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct OrchestrationResult {
    pub state: Option<State>,
    pub status: Status,
    pub details: Details,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub result: OrchestrationResult,
    /// A new state row was written (HTTP 201 rather than 200).
    pub written: bool,
    /// The run became due on its work pool's queue: an outbox message awaits publishing.
    pub enqueued: bool,
    /// Notification policies matched the new state: notifications await publishing.
    pub notified: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub force: bool,
    pub api_version: ApiVersion,
    pub tag_slot_wait_seconds: i64,
}

/// Creates a flow run (idempotent on its flow and key) in its initial state, forced, as
/// Prefect does on create. Returns the run and, when it is new, the outcome of its first
/// state (what to publish after commit).
pub async fn create_flow_run(
    c: &impl GenericClient,
    new: &NewFlowRun,
    initial: State,
    opts: Options,
) -> StoreResult<Option<(FlowRun, Option<Outcome>)>> {
    let ctx = new_run_context(
        RunKind::Flow,
        initial,
        RunFacts {
            id: Uuid::now_v7(),
            deployment_id: new.deployment_id,
            parent_task_run_id: new.parent_task_run_id,
            infrastructure_pid: None,
            flow_run_id: None,
            tags: tags_of(new.tags.clone()),
        },
        RunBook::before_first_state(new.empirical_policy.clone(), TaskRunPolicy::default()),
        opts,
    );
    let decision = decide_flow_run(&ctx);
    let insert = NewRun {
        id: ctx.run.id,
        columns: NewFlowRun::COLUMNS,
        values: new.values(),
        conflict: NewFlowRun::CONFLICT,
    };
    if let Some(first) = first_state(&decision) {
        let policy = serde_json::to_value(&decision.book.flow_policy)?;
        let Some(run) = insert_run::<FlowRun>(c, insert, &policy, Some((first, &decision.book))).await?
        else {
            return Ok(existing::<FlowRun>(c, new.existing(c).await?)
                .await?
                .map(|run| (run, None)));
        };
        let written = decision.state.clone();
        let age = match new.work_queue_id {
            Some(_) => RunAge::NewWithQueue,
            None => RunAge::NewWithoutQueue,
        };
        let outcome = after_flow_run_write(c, ctx, decision, written, age, opts).await?;
        return Ok(Some((run, Some(outcome))));
    }
    // The first state needs its run's row first (a result artifact points at the run).
    let policy = serde_json::to_value(&new.empirical_policy)?;
    if insert_run::<FlowRun>(c, insert, &policy, None).await?.is_none() {
        return Ok(existing::<FlowRun>(c, new.existing(c).await?)
            .await?
            .map(|run| (run, None)));
    }
    let outcome = set_flow_run_state(c, ctx.run.id, ctx.proposed, Options { force: true, ..opts }).await?;
    Ok(runs::read::<FlowRun>(c, ctx.run.id)
        .await?
        .map(|run| (run, outcome)))
}

/// Creates a task run (idempotent on its flow run and keys) in its initial state, forced.
/// Returns the run and whether it is new.
pub async fn create_task_run(
    c: &impl GenericClient,
    new: &NewTaskRun,
    initial: State,
    opts: Options,
) -> StoreResult<Option<(TaskRun, bool)>> {
    // The unique key does not see an autonomous task's repeat (its NULL flow run).
    if new.flow_run_id.is_none() {
        if let Some(id) = new.existing(c).await? {
            return Ok(runs::read::<TaskRun>(c, id).await?.map(|run| (run, false)));
        }
    }
    let ctx = new_run_context(
        RunKind::Task,
        initial,
        RunFacts {
            id: new.id.unwrap_or_else(Uuid::now_v7),
            deployment_id: None,
            parent_task_run_id: None,
            infrastructure_pid: None,
            flow_run_id: new.flow_run_id,
            tags: tags_of(new.tags.clone()),
        },
        RunBook::before_first_state(FlowRunPolicy::default(), new.empirical_policy.clone()),
        opts,
    );
    let insert = NewRun {
        id: ctx.run.id,
        columns: NewTaskRun::COLUMNS,
        values: new.values(),
        conflict: NewTaskRun::CONFLICT,
    };
    // A run that starts Running needs what the policy reads under its lock (its flow run,
    // the cache, its tags' slots): its first state goes the general way, as does one
    // with a result artifact (which points at the run).
    let decision = (initial_needs_no_reads(&ctx)).then(|| orchestrate(&ctx));
    if let Some(decision) = decision.filter(|d| first_state(d).is_some()) {
        let policy = serde_json::to_value(&decision.book.task_policy)?;
        let first = decision.state.as_ref().map(|state| (state, &decision.book));
        let Some(run) = insert_run::<TaskRun>(c, insert, &policy, first).await? else {
            return Ok(existing::<TaskRun>(c, new.existing(c).await?)
                .await?
                .map(|run| (run, false)));
        };
        after_task_run_write(c, &decision, decision.state.as_ref()).await?;
        return Ok(Some((run, true)));
    }
    let policy = serde_json::to_value(&new.empirical_policy)?;
    if insert_run::<TaskRun>(c, insert, &policy, None).await?.is_none() {
        return Ok(existing::<TaskRun>(c, new.existing(c).await?)
            .await?
            .map(|run| (run, false)));
    }
    set_task_run_state(c, ctx.run.id, ctx.proposed, Options { force: true, ..opts }).await?;
    Ok(runs::read::<TaskRun>(c, ctx.run.id).await?.map(|run| (run, true)))
}

/// A new run's first transition: forced, as Prefect's create is, from no state, with
/// nothing loaded beside the run (the general path loads what a task starting Running needs).
fn new_run_context(
    kind: RunKind,
    initial: State,
    run: RunFacts,
    book: RunBook,
    opts: Options,
) -> TransitionContext {
    TransitionContext {
        kind,
        force: true,
        api_version: opts.api_version,
        now: Utc::now(),
        proposed: initial,
        initial: None,
        run,
        book,
        parent_flow_run: None,
        cached_state: None,
        tag_limits: Vec::new(),
        tag_slot_wait_seconds: opts.tag_slot_wait_seconds,
    }
}

/// Whether a new task run's first state is decided by what the create carries alone: not
/// Running, so the policy reads neither its flow run nor the cache, and a new run holds no
/// tag slot to free.
fn initial_needs_no_reads(ctx: &TransitionContext) -> bool {
    ctx.proposed.kind != StateType::Running
}

/// The state a decision writes, when it can be written with its new run in one statement:
/// one whose result needs no artifact row.
fn first_state(decision: &Decision) -> Option<&State> {
    decision
        .state
        .as_ref()
        .filter(|state| stored_data(&state.data).is_none())
}

/// The run a repeated create names, read whole.
async fn existing<R: RunRow>(c: &impl GenericClient, id: Option<Uuid>) -> StoreResult<Option<R>> {
    Ok(match id {
        Some(id) => runs::read::<R>(c, id).await?,
        None => None,
    })
}

/// A run to insert: its id, its own columns (beside its policy and state bookkeeping) with
/// their values, and the unique key a repeated create meets.
struct NewRun<'a> {
    id: Uuid,
    columns: &'static str,
    values: Vec<&'a (dyn ToSql + Sync)>,
    conflict: &'static str,
}

/// Inserts a new run unless its unique key names one already there (None then), and
/// returns it as read. With `first`, the run is inserted in that state, with the
/// bookkeeping the state gives it, and the state's row is written by the same statement:
/// one write where a transition would insert, lock, read and update the run.
async fn insert_run<R: RunRow>(
    c: &impl GenericClient,
    new: NewRun<'_>,
    policy: &Value,
    first: Option<(&State, &RunBook)>,
) -> StoreResult<Option<R>> {
    let table = R::TABLE;
    let (run, states) = (table.run_table(), table.state_table());
    let mut columns = format!("id, empirical_policy, {}", new.columns);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&new.id, policy];
    params.extend(new.values);
    let (details, kind_name);
    let mut state_cte = String::new();
    if let Some((state, book)) = first {
        kind_name = state.kind.as_str();
        details = serde_json::to_value(&state.state_details)?;
        let at = params.len() + 1;
        columns.push_str(
            ", state_id, state_type, state_name, state_timestamp, run_count, start_time, end_time, \
             total_run_time, expected_start_time, next_scheduled_start_time",
        );
        params.extend::<[&(dyn ToSql + Sync); 10]>([
            &state.id,
            &kind_name,
            &state.name,
            &state.timestamp,
            &book.run_count,
            &book.start_time,
            &book.end_time,
            &book.total_run_time_micros,
            &book.expected_start_time,
            &book.next_scheduled_start_time,
        ]);
        if table == RunTable::Task {
            columns.push_str(", flow_run_run_count");
            params.push(&book.flow_run_run_count);
        }
        params.extend::<[&(dyn ToSql + Sync); 2]>([&state.message, &details]);
        state_cte = format!(
            ", {states} AS (INSERT INTO {states} (id, {fk}, type, timestamp, name, message, state_details) \
             SELECT ${id}::uuid, id, ${kind}::text, ${ts}::timestamptz, ${name}::text, ${message}::text, ${details}::jsonb \
             FROM {run} RETURNING *)",
            fk = table.fk(),
            id = at,
            kind = at + 1,
            name = at + 2,
            ts = at + 3,
            message = params.len() - 1,
            details = params.len(),
        );
    }
    let values: Vec<String> = columns
        .split(',')
        .map(str::trim)
        .enumerate()
        .map(|(i, column)| match column {
            "total_run_time" => format!("${}::bigint * interval '1 microsecond'", i + 1),
            _ => format!("${}", i + 1),
        })
        .collect();
    // The CTEs are named after the tables they insert into, so the run's usual SELECT
    // (`RunRow::select`) reads the rows just written: it is the same answer as a read.
    let sql = format!(
        "WITH {run} AS (INSERT INTO {run} ({columns}) VALUES ({values}) ON CONFLICT {conflict} DO NOTHING \
         RETURNING *){state_cte} {select}",
        values = values.join(", "),
        conflict = new.conflict,
        select = R::select(),
    );
    let stmt = c.prepare_cached(&sql).await?;
    let now = Utc::now();
    Ok(c.query_opt(&stmt, &params)
        .await?
        .map(|row| R::from_row(&row, now))
        .transpose()?)
}

/// Inserts a deployment's runs for `dates`, Scheduled, each with its outbox message; returns
/// the new ones. The unique `(flow_id, idempotency_key)` makes repeated and overlapping
/// ticks harmless. Like Prefect 2.20's `_insert_scheduled_flow_runs`
/// (`src/prefect/server/models/deployments.py`), the first state is written without
/// orchestration: no rule applies to a new run's Scheduled state.
pub async fn insert_scheduled_runs(
    c: &impl GenericClient,
    d: &crate::db::deployments::Deployment,
    dates: &[DateTime<Utc>],
) -> StoreResult<Vec<Uuid>> {
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
    let policy = serde_json::to_value(FlowRunPolicy::default())?;
    let no_job_variables = Value::Object(Default::default());
    let mut created = Vec::new();
    for date in dates {
        let id = Uuid::now_v7();
        let key = crate::scheduler::idempotency_key(d.id, *date);
        let name = stratus_domain::names::run_name();
        let mut state = State::new(StateType::Scheduled, Utc::now());
        state.message = Some("Flow run scheduled".to_string());
        state.state_details.flow_run_id = Some(id);
        state.state_details.scheduled_time = Some(*date);
        let book = RunBook {
            expected_start_time: Some(*date),
            next_scheduled_start_time: Some(*date),
            ..RunBook::before_first_state(FlowRunPolicy::default(), TaskRunPolicy::default())
        };
        let insert = NewRun {
            id,
            columns: "name, flow_id, deployment_id, deployment_version, work_queue_name, work_queue_id, \
                      parameters, infrastructure_document_id, tags, auto_scheduled, idempotency_key, job_variables",
            values: vec![
                &name,
                &d.flow_id,
                &d.id,
                &d.version,
                &d.work_queue_name,
                &d.work_queue_id,
                &d.parameters,
                &d.infrastructure_document_id,
                &tags,
                &true,
                &key,
                &no_job_variables,
            ],
            conflict: NewFlowRun::CONFLICT,
        };
        if insert_run::<FlowRun>(c, insert, &policy, Some((&state, &book)))
            .await?
            .is_none()
        {
            continue;
        }
        crate::db::outbox::enqueue_new_run(c, id).await?;
        created.push(id);
    }
    Ok(created)
}

/// Keeps `(run_id, timestamp)` unique and states ordered: a proposal is never stamped at
/// or before the current state.
fn after_current(mut proposed: State, initial: Option<&State>) -> State {
    if let Some(initial) = initial {
        if proposed.timestamp <= initial.timestamp {
            proposed.timestamp = initial.timestamp + Duration::microseconds(1);
        }
    }
    proposed
}

/// Sets a flow run's state. Returns None when the run does not exist.
pub async fn set_flow_run_state(
    c: &impl GenericClient,
    run_id: Uuid,
    proposed: State,
    opts: Options,
) -> StoreResult<Option<Outcome>> {
    let Some((row, book, initial)) = lock_and_load(
        c,
        RunTable::Flow,
        run_id,
        &[
            "deployment_id",
            "parent_task_run_id",
            "infrastructure_pid",
            "tags",
        ],
    )
    .await?
    else {
        return Ok(None);
    };
    let ctx = TransitionContext {
        kind: RunKind::Flow,
        force: opts.force,
        api_version: opts.api_version,
        now: Utc::now(),
        proposed: after_current(proposed, initial.as_ref()),
        initial,
        run: RunFacts {
            id: run_id,
            deployment_id: row.try_get("deployment_id")?,
            parent_task_run_id: row.try_get("parent_task_run_id")?,
            infrastructure_pid: row.try_get("infrastructure_pid")?,
            flow_run_id: None,
            tags: tags_of(row.try_get("tags")?),
        },
        book,
        parent_flow_run: None,
        cached_state: None,
        tag_limits: Vec::new(),
        tag_slot_wait_seconds: opts.tag_slot_wait_seconds,
    };
    let decision = decide_flow_run(&ctx);
    let written = apply(c, RunKind::Flow, run_id, &ctx, &decision).await?;
    Ok(Some(
        after_flow_run_write(c, ctx, decision, written, RunAge::Existing, opts).await?,
    ))
}

/// The policy's decision for a flow run's transition.
fn decide_flow_run(ctx: &TransitionContext) -> Decision {
    let mut decision = orchestrate(ctx);
    // A forced reschedule (the UI's Retry) hands the run to the workers again: it is no
    // longer retrying in the process that ran it, which the workers' poll and the queue
    // would otherwise leave it to forever.
    if ctx.force && ctx.proposed.kind == StateType::Scheduled {
        let policy = &mut decision.book.flow_policy;
        if policy.retry_type.as_deref() == Some("in_process") {
            policy.retry_type = None;
        }
    }
    decision
}

/// Which run a written state is of, for its message to its pool's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunAge {
    /// A run that was there: a message it has not sent yet gives way to the new one.
    Existing,
    /// A run created in this transaction, with a queue: it has no message yet.
    NewWithQueue,
    /// A run created in this transaction without a queue: no pool hears of it.
    NewWithoutQueue,
}

/// What follows a flow run's written state: its message to its pool's queue, the mirrored
/// state of a subflow's parent task run, and the notifications the state matches.
async fn after_flow_run_write(
    c: &impl GenericClient,
    ctx: TransitionContext,
    decision: Decision,
    written: Option<State>,
    age: RunAge,
    opts: Options,
) -> StoreResult<Outcome> {
    let run_id = ctx.run.id;
    // Marking a run Late changes nothing for the agents that already have its message.
    let enqueued = match &written {
        Some(s) if s.kind == StateType::Scheduled && s.name != "Late" => match age {
            RunAge::Existing => crate::db::outbox::enqueue_run(c, run_id).await?,
            RunAge::NewWithQueue => crate::db::outbox::enqueue_new_run(c, run_id).await?,
            RunAge::NewWithoutQueue => false,
        },
        _ => false,
    };

    if let (Some(state), Some(parent_task)) = (&written, ctx.run.parent_task_run_id) {
        // The client never sets states on a subflow's parent task run: the server mirrors.
        let mut mirrored = state.clone();
        mirrored.id = Uuid::now_v7();
        mirrored.state_details.child_flow_run_id = Some(run_id);
        mirrored.state_details.task_run_id = Some(parent_task);
        let mirror_opts = Options { force: true, ..opts };
        Box::pin(set_task_run_state(c, parent_task, mirrored, mirror_opts)).await?;
    }
    let mut outcome = outcome(ctx.initial, decision, written);
    outcome.enqueued = enqueued;
    // As Prefect: accepted and rejected proposals notify, the latter of the state kept.
    if let (Status::Accept | Status::Reject, Some(state)) = (&outcome.result.status, &outcome.result.state) {
        outcome.notified =
            crate::db::notifications::queue_for_state(c, run_id, state, &ctx.run.tags).await? > 0;
    }
    Ok(outcome)
}

/// Sets a task run's state. Returns None when the run does not exist.
pub async fn set_task_run_state(
    c: &impl GenericClient,
    run_id: Uuid,
    proposed: State,
    opts: Options,
) -> StoreResult<Option<Outcome>> {
    let Some((row, book, initial)) = lock_and_load(
        c,
        RunTable::Task,
        run_id,
        &["flow_run_id", "tags", "flow_run_run_count"],
    )
    .await?
    else {
        return Ok(None);
    };
    let flow_run_id: Option<Uuid> = row.try_get("flow_run_id")?;
    let tags = tags_of(row.try_get("tags")?);
    let proposed = after_current(proposed, initial.as_ref());
    let to_running = proposed.kind == StateType::Running;

    let parent_flow_run = match (flow_run_id, to_running) {
        (Some(fr), true) => load_parent_flow_run(c, fr).await?,
        _ => None,
    };
    let cached_state = match &proposed.state_details.cache_key {
        Some(key) if to_running && proposed.state_details.refresh_cache != Some(true) => {
            load_cached_state(c, key).await?
        }
        _ => None,
    };
    let tag_limits = if tags.is_empty() {
        Vec::new()
    } else {
        load_tag_limits(c, &tags, run_id, to_running).await?
    };

    let ctx = TransitionContext {
        kind: RunKind::Task,
        force: opts.force,
        api_version: opts.api_version,
        now: Utc::now(),
        proposed,
        initial,
        run: RunFacts {
            id: run_id,
            deployment_id: None,
            parent_task_run_id: None,
            infrastructure_pid: None,
            flow_run_id,
            tags,
        },
        book,
        parent_flow_run,
        cached_state,
        tag_limits,
        tag_slot_wait_seconds: opts.tag_slot_wait_seconds,
    };
    let decision = orchestrate(&ctx);
    let written = apply(c, RunKind::Task, run_id, &ctx, &decision).await?;
    after_task_run_write(c, &decision, written.as_ref()).await?;
    Ok(Some(outcome(ctx.initial, decision, written)))
}

/// What follows a task run's transition: the tag limits whose slots it changed, and the
/// cache entry of its written state.
async fn after_task_run_write(
    c: &impl GenericClient,
    decision: &Decision,
    written: Option<&State>,
) -> StoreResult<()> {
    for limit in &decision.tag_limits {
        let slots: Vec<String> = limit.active_slots.iter().map(Uuid::to_string).collect();
        c.execute(
            "UPDATE concurrency_limit SET active_slots = $2, updated = now() WHERE tag = $1",
            &[&limit.tag, &Value::from(slots)],
        )
        .await?;
    }
    if let (Some(state), Some((key, expiration))) = (written, &decision.cache_insert) {
        let stmt = c
            .prepare_cached(
                "INSERT INTO task_run_state_cache (cache_key, cache_expiration, task_run_state_id) VALUES ($1, $2, $3)",
            )
            .await?;
        c.execute(&stmt, &[key, expiration, &state.id]).await?;
    }
    Ok(())
}

/// Locks a run and reads what every transition needs: its bookkeeping (columns 0 to 6),
/// then `extra` columns of the run (from 7), then its current state. None when the run
/// does not exist.
async fn lock_and_load(
    c: &impl GenericClient,
    table: RunTable,
    run_id: Uuid,
    extra: &[&str],
) -> StoreResult<Option<(tokio_postgres::Row, RunBook, Option<State>)>> {
    let (run, a) = (table.run_table(), table.alias());
    let extra: String = extra.iter().map(|column| format!(", {a}.{column}")).collect();
    let read = format!(
        "SELECT {a}.run_count, {a}.start_time, {a}.end_time, {total} AS total_run_micros, \
         {a}.expected_start_time, {a}.next_scheduled_start_time, {a}.empirical_policy{extra}, {STATE_COLUMNS} \
         FROM {run} {a} LEFT JOIN {states} s ON s.id = {a}.state_id WHERE {a}.id = $1",
        total = micros_sql(&format!("{a}.total_run_time")),
        states = table.state_table(),
    );
    let lock = format!("SELECT 1 FROM {run} WHERE id = $1 FOR UPDATE");
    let Some(row) = lock_then_read(c, &lock, &read, run_id).await? else {
        return Ok(None);
    };
    let initial = state_from_row(&row)?;
    let policy: Value = row.try_get("empirical_policy")?;
    let (flow_policy, task_policy, flow_run_run_count) = match table {
        RunTable::Flow => (
            serde_json::from_value(policy).unwrap_or_default(),
            TaskRunPolicy::default(),
            0,
        ),
        RunTable::Task => (
            FlowRunPolicy::default(),
            serde_json::from_value(policy).unwrap_or_default(),
            row.try_get("flow_run_run_count")?,
        ),
    };
    let book = RunBook {
        run_count: row.try_get("run_count")?,
        start_time: row.try_get("start_time")?,
        end_time: row.try_get("end_time")?,
        total_run_time_micros: row.try_get("total_run_micros")?,
        expected_start_time: row.try_get("expected_start_time")?,
        next_scheduled_start_time: row.try_get("next_scheduled_start_time")?,
        flow_policy,
        task_policy,
        flow_run_run_count,
    };
    Ok(Some((row, book, initial)))
}

/// Locks the run row, then reads it with its current state in a fresh snapshot.
///
/// Reading and locking in one `SELECT ... JOIN ... FOR UPDATE` is wrong here: after waiting
/// for a concurrent transition, Postgres re-checks the locked run row but keeps the joined
/// state row it saw before, so a second claimer would see the old SCHEDULED state and
/// claim again. Under READ COMMITTED the second statement gets a new snapshot; both are
/// pipelined on the connection, so this costs one round trip.
async fn lock_then_read(
    c: &impl GenericClient,
    lock_sql: &str,
    read_sql: &str,
    run_id: Uuid,
) -> StoreResult<Option<tokio_postgres::Row>> {
    let lock = c.prepare_cached(lock_sql).await?;
    let read = c.prepare_cached(read_sql).await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&run_id];
    let (locked, row) = tokio::join!(c.query_opt(&lock, &params), c.query_opt(&read, &params));
    // The lock's error is the cause (a lock timeout, say); the read then only fails because
    // the transaction was aborted.
    let locked = locked?;
    Ok(locked.and(row?))
}

fn outcome(initial: Option<State>, decision: Decision, written: Option<State>) -> Outcome {
    let is_written = written.is_some();
    Outcome {
        result: OrchestrationResult {
            state: written.or(initial),
            status: decision.status,
            details: decision.details,
        },
        written: is_written,
        enqueued: false,
        notified: false,
    }
}

fn tags_of(value: Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

async fn load_parent_flow_run(c: &impl GenericClient, id: Uuid) -> StoreResult<Option<ParentFlowRun>> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT fr.run_count, {STATE_COLUMNS} FROM flow_run fr \
             LEFT JOIN flow_run_state s ON s.id = fr.state_id WHERE fr.id = $1"
        ))
        .await?;
    let Some(row) = c.query_opt(&stmt, &[&id]).await? else {
        return Ok(None);
    };
    Ok(Some(ParentFlowRun {
        id,
        run_count: row.try_get("run_count")?,
        state: state_from_row(&row)?,
    }))
}

/// The state of the newest unexpired cache entry for the key. When that state is gone (its
/// run was deleted) there is no hit, even if an older entry's state remains, as in Prefect
/// 2.20 (`orchestration/core_policy.py` `CacheRetrieval`).
async fn load_cached_state(c: &impl GenericClient, key: &str) -> StoreResult<Option<State>> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {STATE_COLUMNS} FROM task_run_state s WHERE s.id = ( \
                 SELECT cache.task_run_state_id FROM task_run_state_cache cache \
                 WHERE cache.cache_key = $1 AND (cache.cache_expiration IS NULL OR cache.cache_expiration > now()) \
                 ORDER BY cache.created DESC LIMIT 1)"
        ))
        .await?;
    match c.query_opt(&stmt, &[&key]).await? {
        Some(row) => Ok(state_from_row(&row)?),
        None => Ok(None),
    }
}

/// Locks the limits on the run's tags, in tag order so concurrent tasks cannot deadlock.
/// Only limits the transition can change are loaded: all of them when the run is about to
/// run, else only those holding a slot of this run.
async fn load_tag_limits(
    c: &impl GenericClient,
    tags: &[String],
    run_id: Uuid,
    to_running: bool,
) -> StoreResult<Vec<TagLimit>> {
    let stmt = c
        .prepare_cached(
            "SELECT tag, concurrency_limit, active_slots FROM concurrency_limit \
             WHERE tag = ANY($1) AND ($2 OR active_slots ? $3) ORDER BY tag FOR UPDATE",
        )
        .await?;
    let rows = c.query(&stmt, &[&tags, &to_running, &run_id.to_string()]).await?;
    let mut limits = Vec::with_capacity(rows.len());
    for r in rows {
        let slots: Value = r.try_get("active_slots")?;
        limits.push(TagLimit {
            tag: r.try_get("tag")?,
            limit: r.try_get("concurrency_limit")?,
            active_slots: slots
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()?.parse().ok()).collect())
                .unwrap_or_default(),
        });
    }
    Ok(limits)
}

/// The `artifact_*` fields a persisted result carries: key, type, description.
struct ResultArtifact {
    key: Option<String>,
    kind: Option<String>,
    description: Option<String>,
}

/// Splits result data into what the state keeps and the result artifact's fields.
/// Unpersisted results are not stored at all.
fn stored_data(data: &Option<Value>) -> Option<(Value, ResultArtifact)> {
    let data = data.as_ref().filter(|d| !d.is_null())?;
    if data.get("type").and_then(Value::as_str) == Some("unpersisted") {
        return None;
    }
    let mut stored = data.clone();
    let mut take = |key: &str| -> Option<String> {
        stored
            .as_object_mut()
            .and_then(|m| m.remove(key))
            .and_then(|v| v.as_str().map(str::to_string))
    };
    let artifact = ResultArtifact {
        key: take("artifact_key"),
        kind: take("artifact_type"),
        description: take("artifact_description"),
    };
    Some((stored, artifact))
}

/// Writes the decided state and bookkeeping. Returns the state as written (None when the
/// decision writes nothing).
async fn apply(
    c: &impl GenericClient,
    kind: RunKind,
    run_id: Uuid,
    ctx: &TransitionContext,
    decision: &Decision,
) -> StoreResult<Option<State>> {
    let Some(state) = &decision.state else {
        return Ok(None);
    };
    let mut state = state.clone();
    let stored = stored_data(&state.data);
    let (flow_run_id, task_run_id) = match kind {
        RunKind::Flow => (Some(run_id), None),
        RunKind::Task => (ctx.run.flow_run_id, Some(run_id)),
    };
    let mut artifact_id: Option<Uuid> = None;
    if let Some((stored, artifact)) = &stored {
        let stmt = c
            .prepare_cached(
                "INSERT INTO artifact (key, type, description, data, flow_run_id, task_run_id) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .await?;
        let row = c
            .query_one(
                &stmt,
                &[
                    &artifact.key,
                    &artifact.kind,
                    &artifact.description,
                    stored,
                    &flow_run_id,
                    &task_run_id,
                ],
            )
            .await?;
        artifact_id = Some(row.get(0));
        state.data = Some(stored.clone());
    }
    let data = stored.map(|(d, _)| d);
    let details = serde_json::to_value(&state.state_details)?;
    // One statement: the state row (a CTE) and the run's update. Its parameters are the
    // update's, then the state row's own: message, details, data, artifact. A flow run's
    // new state ends a poll's offer of it, unless it is a Late mark (`work_pools::busy_run!`).
    let sql = match kind {
        RunKind::Flow => {
            "WITH s AS (INSERT INTO flow_run_state (id, flow_run_id, type, timestamp, name, message, state_details, \
               data, result_artifact_id) VALUES ($2, $1, $3, $5, $4, $13, $14, $15, $16)) \
             UPDATE flow_run SET state_id = $2, state_type = $3, state_name = $4, state_timestamp = $5, \
             run_count = $6, start_time = $7, end_time = $8, total_run_time = $9::bigint * interval '1 microsecond', \
             expected_start_time = $10, next_scheduled_start_time = $11, empirical_policy = $12, updated = now(), \
             offered_state_id = CASE WHEN $4 = 'Late' THEN offered_state_id END, \
             offered_until = CASE WHEN $4 = 'Late' THEN offered_until END \
             WHERE id = $1"
        }
        RunKind::Task => {
            "WITH s AS (INSERT INTO task_run_state (id, task_run_id, type, timestamp, name, message, state_details, \
               data, result_artifact_id) VALUES ($2, $1, $3, $5, $4, $14, $15, $16, $17)) \
             UPDATE task_run SET state_id = $2, state_type = $3, state_name = $4, state_timestamp = $5, \
             run_count = $6, start_time = $7, end_time = $8, total_run_time = $9::bigint * interval '1 microsecond', \
             expected_start_time = $10, next_scheduled_start_time = $11, empirical_policy = $12, \
             flow_run_run_count = $13, updated = now() WHERE id = $1"
        }
    };
    let book = &decision.book;
    let policy = match kind {
        RunKind::Flow => serde_json::to_value(&book.flow_policy)?,
        RunKind::Task => serde_json::to_value(&book.task_policy)?,
    };
    let stmt = c.prepare_cached(sql).await?;
    let timestamp: DateTime<Utc> = state.timestamp;
    let kind_name = state.kind.as_str();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
        &run_id,
        &state.id,
        &kind_name,
        &state.name,
        &timestamp,
        &book.run_count,
        &book.start_time,
        &book.end_time,
        &book.total_run_time_micros,
        &book.expected_start_time,
        &book.next_scheduled_start_time,
        &policy,
    ];
    if kind == RunKind::Task {
        params.push(&book.flow_run_run_count);
    }
    params.extend::<[&(dyn ToSql + Sync); 4]>([&state.message, &details, &data, &artifact_id]);
    c.execute(&stmt, &params).await?;
    // The response echoes the proposal's data, unpersisted results included.
    Ok(Some(State {
        data: decision.state.as_ref().and_then(|s| s.data.clone()),
        ..state
    }))
}
