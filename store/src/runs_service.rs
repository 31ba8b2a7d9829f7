//! The runs service: the one owner of every change to a flow or task run's state.
//!
//! A change is one unit of work: open a transaction, let the caller read what it needs and
//! propose states (each one locked, decided by the pure policy in `orchestration` and
//! applied by `db::transitions`), commit, then publish what the commit left in the outbox
//! (the run's message to its pool's queue, its notifications). Handlers, the agent's claim,
//! the scheduler's tick and the upkeep passes all change states through here; the SQL that
//! writes a run's state is private to this crate (`db::transitions`), so nothing else can.

use std::sync::Arc;

use deadpool_postgres::{Pool, Transaction};
use uuid::Uuid;

use crate::db::deployments::Deployment;
use crate::db::flow_runs::{FlowRun, NewFlowRun};
use crate::db::task_runs::{NewTaskRun, TaskRun};
use crate::db::transitions::{self, Options};
use crate::error::{StoreError, StoreResult};
use crate::queue::MessageQueue;
use stratus_domain::api_version::ApiVersion;
use stratus_domain::orchestration::RunKind;
use stratus_domain::states::State;

pub use crate::db::transitions::{OrchestrationResult, Outcome};

/// Where run changes are written and published: the database, the queue the outbox
/// publishes to, and the tag concurrency slot wait the policy tells clients.
#[derive(Clone)]
pub struct Runs {
    db: Pool,
    queue: Arc<dyn MessageQueue>,
    tag_slot_wait_seconds: i64,
}

impl Runs {
    pub fn new(db: Pool, queue: Arc<dyn MessageQueue>, tag_slot_wait_seconds: i64) -> Self {
        Runs {
            db,
            queue,
            tag_slot_wait_seconds,
        }
    }

    pub fn db(&self) -> &Pool {
        &self.db
    }

    pub fn queue(&self) -> &dyn MessageQueue {
        self.queue.as_ref()
    }

    /// Runs `work` in one transaction, commits it, then publishes what its state changes
    /// left behind. When `work` fails nothing is written and nothing published. `work`
    /// may fail with the caller's own error type (a handler's 404, say).
    pub async fn change<T, E: From<StoreError>>(
        &self,
        api_version: ApiVersion,
        work: impl AsyncFnOnce(&mut Change<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut client = self.db.get().await.map_err(StoreError::from)?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let mut change = Change {
            tx: &tx,
            opts: Options {
                force: false,
                api_version,
                tag_slot_wait_seconds: self.tag_slot_wait_seconds,
            },
            enqueued: Vec::new(),
            notified: Vec::new(),
        };
        let value = work(&mut change).await?;
        let Change {
            enqueued, notified, ..
        } = change;
        tx.commit().await.map_err(StoreError::from)?;
        // The connection goes back to the pool before talking to the queue.
        drop(client);
        self.publish(&enqueued, &notified).await;
        Ok(value)
    }

    /// Proposes one state in a change of its own. None when the run does not exist.
    pub async fn set_state(
        &self,
        kind: RunKind,
        run_id: Uuid,
        proposed: State,
        api_version: ApiVersion,
        force: bool,
    ) -> StoreResult<Option<Outcome>> {
        self.change(api_version, async |c| {
            c.set_state(kind, run_id, proposed, force).await
        })
        .await
    }

    /// Publishing never fails the caller: what cannot be sent now stays in the outbox for
    /// the scheduler's sweep.
    async fn publish(&self, enqueued: &[Uuid], notified: &[Uuid]) {
        crate::outbox::publish_runs(&self.db, self.queue.as_ref(), enqueued).await;
        for run in notified {
            crate::notifications::publish_run(&self.db, self.queue.as_ref(), *run).await;
        }
    }
}

/// A unit of work in progress: its transaction, and the runs whose messages and
/// notifications wait for its commit.
pub struct Change<'a> {
    tx: &'a Transaction<'a>,
    opts: Options,
    enqueued: Vec<Uuid>,
    notified: Vec<Uuid>,
}

impl<'a> Change<'a> {
    /// The transaction, for what the caller reads and writes beside the state changes.
    pub fn tx(&self) -> &'a Transaction<'a> {
        self.tx
    }

    fn record(&mut self, run_id: Uuid, outcome: &Outcome) {
        if outcome.enqueued {
            self.enqueued.push(run_id);
        }
        if outcome.notified {
            self.notified.push(run_id);
        }
    }

    /// Proposes a state (with `force`, the policy's rules that may be forced are skipped,
    /// as Prefect's `force=True`). None when the run does not exist.
    pub async fn set_state(
        &mut self,
        kind: RunKind,
        run_id: Uuid,
        proposed: State,
        force: bool,
    ) -> StoreResult<Option<Outcome>> {
        let opts = Options { force, ..self.opts };
        let outcome = match kind {
            RunKind::Flow => transitions::set_flow_run_state(self.tx, run_id, proposed, opts).await?,
            RunKind::Task => transitions::set_task_run_state(self.tx, run_id, proposed, opts).await?,
        };
        if let Some(outcome) = &outcome {
            self.record(run_id, outcome);
        }
        Ok(outcome)
    }

    /// Creates a flow run (idempotent on its flow and idempotency key) with its first state
    /// forced, as Prefect does. Returns the run and whether it is new.
    pub async fn create_flow_run(
        &mut self,
        new: &NewFlowRun,
        initial: State,
    ) -> StoreResult<Option<(FlowRun, bool)>> {
        let created = transitions::create_flow_run(self.tx, new, initial, self.opts).await?;
        Ok(match created {
            Some((run, Some(outcome))) => {
                self.record(run.id, &outcome);
                Some((run, true))
            }
            Some((run, None)) => Some((run, false)),
            None => None,
        })
    }

    /// Creates a task run (idempotent on its flow run, task key and dynamic key) with its
    /// first state forced. Returns the run and whether it is new.
    pub async fn create_task_run(
        &mut self,
        new: &NewTaskRun,
        initial: State,
    ) -> StoreResult<Option<(TaskRun, bool)>> {
        transitions::create_task_run(self.tx, new, initial, self.opts).await
    }

    /// The bulk path of the scheduler and backfills: a deployment's runs for `dates`, each
    /// created Scheduled with its outbox message, skipping dates that already have their
    /// run (by idempotency key). No policy decides a new run's first Scheduled state, so
    /// this writes it directly, as Prefect's scheduler service inserts its runs. Returns the
    /// new runs.
    pub async fn schedule_runs(
        &mut self,
        deployment: &Deployment,
        dates: &[chrono::DateTime<chrono::Utc>],
    ) -> StoreResult<Vec<Uuid>> {
        let created = transitions::insert_scheduled_runs(self.tx, deployment, dates).await?;
        self.enqueued.extend(&created);
        Ok(created)
    }
}
