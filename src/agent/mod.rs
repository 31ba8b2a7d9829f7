//! The Stratus agent: long-polls its work pool's queue (SQS, or the Postgres-backed queue
//! through the API), claims each due run through the API (Scheduled -> Pending, which only
//! one claimer can win), fetches the flow code, and runs the flow as Prefect's process
//! infrastructure does (`python -m prefect.engine` with the run id in the environment).
//! It reports crashes, honours cancellation, heartbeats as a worker of its pool, and falls
//! back to the HTTP poll while the queue is unreachable.

pub mod api;
pub mod code;
mod http_queue;
mod process;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use stratus_store::queue::{MessageQueue, QueueInfo, Received, RunDue};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::cli::signals::Shutdown;
use api::{segment, Api};

/// How long a received message stays hidden while the agent decides about it.
const VISIBILITY_SECONDS: u32 = 30;
/// How long one receive waits for messages (SQS's longest long poll).
const WAIT_SECONDS: u32 = 20;
/// How often the agent looks for cancellations of the runs it executes.
const CANCEL_CHECK: Duration = Duration::from_secs(2);
/// A run due within this much is claimed now (the engine waits for the exact time).
const EARLY_TOLERANCE_MS: i64 = 1000;

#[derive(Debug, Clone)]
pub struct Config {
    /// The API root, e.g. `http://127.0.0.1:4200/api`.
    pub api_url: String,
    pub pool: String,
    /// Only runs of these queues of the pool (all when empty).
    pub queues: Vec<String>,
    pub name: String,
    /// The Python that has `prefect` installed.
    pub python: String,
    pub work_dir: PathBuf,
    /// At most this many flow runs at once.
    pub limit: Option<usize>,
    /// How long running flows get to finish after SIGINT/SIGTERM before they are killed.
    pub shutdown_grace: Duration,
    /// How often the HTTP poll runs while the queue is unreachable.
    pub poll_interval: Duration,
    /// How often the agent heartbeats, naming the runs it executes (Prefect's workers
    /// heartbeat every 30 s).
    pub heartbeat_interval: Duration,
}

struct Running {
    cancel: Arc<Notify>,
}

struct Agent {
    api: Api,
    cfg: Config,
    pool_id: Uuid,
    pool_path: String,
    hostname: String,
    running: Mutex<HashMap<Uuid, Running>>,
    /// Set when running flows must be killed (shutdown grace over, or a second signal).
    kill_all: watch::Sender<bool>,
}

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(cfg: Config, shutdown: Shutdown) -> Result<(), String> {
    let api = Api::new(&cfg.api_url)?;
    let pool_path = segment(&cfg.pool);
    // An agent may start before the server, or while it restarts: it waits for it.
    let mut wait = Duration::from_secs(1);
    let pool_id = loop {
        match prepare_pool(&api, &cfg).await {
            Ok(id) => break id,
            Err(e) if e.status.is_none_or(|s| s >= 500) => {
                eprintln!(
                    "The Stratus API at {} is not answering ({e}); trying again in {wait:?}.",
                    api.base
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.signalled(1) => return Ok(()),
                }
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e.message),
        }
    };
    std::fs::create_dir_all(cfg.work_dir.join("runs"))
        .map_err(|e| format!("could not create {}: {e}", cfg.work_dir.display()))?;
    let queue = connect_queue(&api, &cfg.pool, pool_id).await;
    let agent = Arc::new(Agent {
        hostname: process::hostname(),
        api,
        pool_id,
        pool_path,
        running: Mutex::new(HashMap::new()),
        kill_all: watch::channel(false).0,
        cfg,
    });
    println!(
        "Stratus agent {:?} started on work pool {:?}{}; queue: {}.",
        agent.cfg.name,
        agent.cfg.pool,
        if agent.cfg.queues.is_empty() {
            String::new()
        } else {
            format!(" (queues {})", agent.cfg.queues.join(", "))
        },
        match &queue {
            Some((_, info)) => describe(info),
            None => "unreachable, polling the API".into(),
        }
    );
    let heartbeat = tokio::spawn(agent.clone().heartbeats());
    let canceller = tokio::spawn(agent.clone().watch_cancellations());
    let mut tasks = tokio::task::JoinSet::new();
    tokio::select! {
        _ = agent.clone().receive_loop(queue.map(|(q, _)| q), &mut tasks) => {}
        _ = shutdown.signalled(1) => {}
    }
    let active = agent.running_ids().len();
    if active > 0 {
        println!(
            "Stopping: waiting up to {:?} for {active} running flow run(s) (signal again to stop now).",
            agent.cfg.shutdown_grace
        );
    } else {
        println!("Stopping.");
    }
    let drained = async { while tasks.join_next().await.is_some() {} };
    tokio::pin!(drained);
    tokio::select! {
        _ = &mut drained => {}
        _ = tokio::time::sleep(agent.cfg.shutdown_grace) => {}
        _ = shutdown.signalled(2) => {}
    }
    if !agent.running_ids().is_empty() {
        let _ = agent.kill_all.send(true);
        drained.await;
    }
    heartbeat.abort();
    canceller.abort();
    Ok(())
}

/// Reads (or creates) the agent's pool and queues; the pool's id.
async fn prepare_pool(api: &Api, cfg: &Config) -> Result<Uuid, api::CallError> {
    let pool_path = segment(&cfg.pool);
    let failed = |what: String| {
        move |e: api::CallError| api::CallError {
            message: format!("{what}: {e}"),
            status: e.status,
        }
    };
    let pool = match api.get(&format!("/work_pools/{pool_path}")).await {
        Ok(pool) => pool,
        Err(e) if e.is_not_found() => {
            println!(
                "Work pool {:?} does not exist: creating it (type \"process\").",
                cfg.pool
            );
            api.post("/work_pools/", &json!({"name": cfg.pool, "type": "process"}))
                .await
                .map_err(failed(format!("could not create work pool {:?}", cfg.pool)))?
        }
        Err(e) => {
            return Err(failed(format!(
                "could not read work pool {:?} from {}",
                cfg.pool, api.base
            ))(e))
        }
    };
    let pool_id: Uuid = pool
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| api::CallError {
            status: Some(200),
            message: "the API returned a work pool without an id".into(),
        })?;
    for q in &cfg.queues {
        let path = format!("/work_pools/{pool_path}/queues/{}", segment(q));
        if let Err(e) = api.get(&path).await {
            if !e.is_not_found() {
                return Err(failed(format!("could not read work queue {q:?}"))(e));
            }
            api.post(&format!("/work_pools/{pool_path}/queues"), &json!({"name": q}))
                .await
                .map_err(failed(format!("could not create work queue {q:?}")))?;
        }
    }
    Ok(pool_id)
}

fn describe(info: &QueueInfo) -> String {
    match &info.queue_url {
        Some(url) => format!("SQS {url}"),
        None => format!("{} (through the API)", info.backend),
    }
}

/// The pool's queue as the API describes it: SQS directly, or the API's Postgres queue.
async fn connect_queue(api: &Api, pool: &str, pool_id: Uuid) -> Option<(Arc<dyn MessageQueue>, QueueInfo)> {
    let info: QueueInfo = match api
        .get(&format!("/work_pools/{}/message_queue", segment(pool)))
        .await
    {
        Ok(v) => serde_json::from_value(v).ok()?,
        Err(e) => {
            tracing::warn!("the pool's queue is unavailable: {e}");
            return None;
        }
    };
    let queue: Arc<dyn MessageQueue> = match (&info.backend[..], &info.queue_url) {
        ("sqs", Some(url)) => {
            let endpoint = sqs_endpoint_for(url);
            let config = stratus_aws::sdk_config_in(&endpoint, info.region.as_deref()).await;
            Arc::new(stratus_aws::sqs::SqsQueue::with_url(&config, pool_id, url))
        }
        _ => Arc::new(http_queue::HttpQueue::new(api.clone(), pool)),
    };
    Some((queue, info))
}

/// `STRATUS_SQS_ENDPOINT` when the agent has it; else the queue URL's own origin, which
/// is the endpoint both on AWS and on LocalStack.
fn sqs_endpoint_for(queue_url: &str) -> stratus_store::config::AwsEndpoint {
    use stratus_store::config::AwsEndpoint;
    if let Ok(Some(e)) = stratus_store::config::Settings::from_env().map(|s| s.sqs_endpoint) {
        return e;
    }
    let origin = queue_url
        .split_once("://")
        .map(|(scheme, rest)| format!("{scheme}://{}", rest.split('/').next().unwrap_or_default()));
    match origin {
        Some(o) if !o.ends_with(".amazonaws.com") => AwsEndpoint::Url(o),
        _ => AwsEndpoint::Aws,
    }
}

/// The longest a message held back by a paused or full pool waits before it is looked at
/// again.
const HELD_MAX_SECONDS: u32 = 300;

/// What claiming a run came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// This agent runs it.
    Won,
    /// Someone else claimed it, or it is no longer this pool's to run.
    Lost,
    /// Its pool or queue is paused or full: ask again after these seconds.
    Held(u32),
}

impl Agent {
    fn running_ids(&self) -> Vec<Uuid> {
        self.running
            .lock()
            .map(|r| r.keys().copied().collect())
            .unwrap_or_default()
    }

    /// How many more runs this agent may take now.
    fn capacity(&self) -> usize {
        let busy = self.running.lock().map(|r| r.len()).unwrap_or(0);
        match self.cfg.limit {
            Some(limit) => limit.saturating_sub(busy),
            None => usize::MAX,
        }
    }

    fn serves(&self, queue_name: Option<&str>) -> bool {
        self.cfg.queues.is_empty() || queue_name.is_some_and(|q| self.cfg.queues.iter().any(|s| s == q))
    }

    async fn receive_loop(
        self: Arc<Self>,
        mut queue: Option<Arc<dyn MessageQueue>>,
        tasks: &mut tokio::task::JoinSet<()>,
    ) {
        loop {
            let capacity = self.capacity();
            if capacity == 0 {
                // Reap finished runs while full.
                tokio::select! {
                    _ = tasks.join_next() => {}
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
                continue;
            }
            while tasks.try_join_next().is_some() {}
            if queue.is_none() {
                queue = connect_queue(&self.api, &self.cfg.pool, self.pool_id)
                    .await
                    .map(|(q, info)| {
                        println!("Queue reachable again: {}.", describe(&info));
                        q
                    });
            }
            let Some(q) = queue.clone() else {
                self.poll_once(capacity, tasks).await;
                tokio::time::sleep(self.cfg.poll_interval).await;
                continue;
            };
            let max = capacity.min(10) as u32;
            match q
                .receive(self.pool_id, max, WAIT_SECONDS, VISIBILITY_SECONDS)
                .await
            {
                Ok(messages) => {
                    for m in messages {
                        self.clone().handle(q.as_ref(), m, tasks).await;
                    }
                }
                Err(e) => {
                    tracing::warn!("the queue is unreachable, falling back to the HTTP poll: {e}");
                    queue = None;
                    self.poll_once(capacity, tasks).await;
                    tokio::time::sleep(self.cfg.poll_interval).await;
                }
            }
        }
    }

    /// Decides about one message: claim and run its flow run, put it back for later, or
    /// drop it. A message is only deleted once its run is claimed (by anyone) or gone.
    async fn handle(
        self: Arc<Self>,
        q: &dyn MessageQueue,
        m: Received,
        tasks: &mut tokio::task::JoinSet<()>,
    ) {
        let due: RunDue = match serde_json::from_value(m.body.clone()) {
            Ok(d) => d,
            Err(e) => return self.drop_message(q, &m, &format!("not a run message: {e}")).await,
        };
        if !self.serves(due.work_queue_name.as_deref()) {
            // Another agent of the pool serves that queue.
            let _ = q.release(self.pool_id, &m.receipt, 5).await;
            return;
        }
        let run = match self.api.get(&format!("/flow_runs/{}", due.flow_run_id)).await {
            Ok(run) => run,
            Err(e) if e.is_not_found() => return self.drop_message(q, &m, "the run was deleted").await,
            Err(e) => {
                // The message comes back after its visibility timeout.
                tracing::warn!(flow_run_id = %due.flow_run_id, "could not read the run: {e}");
                return;
            }
        };
        // A Pending run this agent does not run may be one whose claim answer was lost:
        // the claim says whether it is this agent's.
        let pending_elsewhere =
            state_type(&run) == Some("PENDING") && !self.running_ids().contains(&due.flow_run_id);
        if state_type(&run) != Some("SCHEDULED") && !pending_elsewhere {
            return self.drop_message(q, &m, "the run is no longer scheduled").await;
        }
        if let Some(at) = run
            .get("next_scheduled_start_time")
            .and_then(Value::as_str)
            .and_then(parse_ts)
        {
            let early_ms = (at - Utc::now()).num_milliseconds();
            if early_ms > EARLY_TOLERANCE_MS {
                let seconds = ((early_ms + 999) / 1000).min(900) as u32;
                let _ = q.release(self.pool_id, &m.receipt, seconds).await;
                return;
            }
        }
        match self.claim(due.flow_run_id).await {
            Ok(Claim::Held(seconds)) => {
                // The pool or queue is paused or full: the run stays Scheduled and its
                // message comes back, later each time it is held, so that a long pause
                // costs little.
                let later = seconds
                    .saturating_mul(m.receive_count.max(1))
                    .min(HELD_MAX_SECONDS);
                let _ = q.release(self.pool_id, &m.receipt, later).await;
            }
            Ok(claim) => {
                if let Err(e) = q.delete(self.pool_id, &m.receipt).await {
                    tracing::warn!("could not delete message {}: {e}", m.message_id);
                }
                if claim == Claim::Won {
                    self.launch(run, tasks);
                }
            }
            Err(e) => tracing::warn!(flow_run_id = %due.flow_run_id, "claim failed, will retry: {e}"),
        }
    }

    async fn drop_message(&self, q: &dyn MessageQueue, m: &Received, why: &str) {
        tracing::debug!("dropping message {}: {why}", m.message_id);
        if let Err(e) = q.delete(self.pool_id, &m.receipt).await {
            tracing::warn!("could not delete message {}: {e}", m.message_id);
        }
    }

    /// The HTTP poll the stock workers use, for when the queue is unreachable.
    async fn poll_once(self: &Arc<Self>, capacity: usize, tasks: &mut tokio::task::JoinSet<()>) {
        let due = stratus_domain::time::format_ts(&(Utc::now() + chrono::Duration::seconds(1)));
        let items = match self.poll(&due, capacity.min(100)).await {
            Ok(Value::Array(items)) => items,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!("polling the API failed: {e}");
                return;
            }
        };
        for item in items {
            let Some(run) = item.get("flow_run").cloned() else {
                continue;
            };
            let Some(id) = run
                .get("id")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Uuid>().ok())
            else {
                continue;
            };
            match self.claim(id).await {
                Ok(Claim::Won) => {
                    self.launch(run, tasks);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(flow_run_id = %id, "claim failed: {e}"),
            }
        }
    }

    /// Claims the run through the pool (Scheduled → Pending), which holds it back while the
    /// pool or its queue is paused or at its concurrency limit.
    async fn claim(&self, id: Uuid) -> Result<Claim, api::CallError> {
        let path = format!("/work_pools/{}/message_queue/claim", segment(&self.cfg.pool));
        let body = json!({ "flow_run_id": id, "worker": self.cfg.name });
        let result = self.api.post(&path, &body).await?;
        if result.get("claimed").and_then(Value::as_bool) == Some(true) {
            println!("Claimed flow run {id}.");
            return Ok(Claim::Won);
        }
        if let Some(seconds) = result.get("retry_after").and_then(Value::as_u64) {
            let why = result
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("held back");
            tracing::info!(flow_run_id = %id, "not claimed yet: {why}");
            return Ok(Claim::Held(seconds.min(900) as u32));
        }
        Ok(Claim::Lost)
    }

    async fn set_state(&self, id: Uuid, kind: &str, name: &str, message: &str, force: bool) {
        let body = json!({"state": {"type": kind, "name": name, "message": message}, "force": force});
        if let Err(e) = self.api.post(&format!("/flow_runs/{id}/set_state"), &body).await {
            tracing::warn!(flow_run_id = %id, "could not set the run {name}: {e}");
        }
    }

    /// Starts executing a claimed run. It counts as running (and is named in heartbeats)
    /// from now on, before its task first runs, so a second message for it is not claimed
    /// again by this agent.
    fn launch(self: &Arc<Self>, run: Value, tasks: &mut tokio::task::JoinSet<()>) {
        let Some(id) = run
            .get("id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Uuid>().ok())
        else {
            return;
        };
        let cancel = Arc::new(Notify::new());
        if let Ok(mut r) = self.running.lock() {
            r.insert(
                id,
                Running {
                    cancel: cancel.clone(),
                },
            );
        }
        tasks.spawn(self.clone().execute(id, run, cancel));
    }

    /// Runs a claimed flow run to its end, and reports how the process ended.
    async fn execute(self: Arc<Self>, id: Uuid, run: Value, cancel: Arc<Notify>) {
        // A retried run can be claimed again while its last execution is still cleaning
        // up: each execution has a folder (and a cancel handle) of its own.
        let execution = Uuid::new_v4().simple().to_string();
        let dir = self
            .cfg
            .work_dir
            .join("runs")
            .join(format!("{id}-{}", &execution[..8]));
        let outcome = self.clone().supervise(id, &run, &dir, cancel.clone()).await;
        match outcome {
            Ok(process::Ended::Exited(0)) => println!("Flow run {id} finished."),
            Ok(process::Ended::Exited(code)) => {
                println!("Flow run {id} exited with status {code}.");
                let message = format!("Flow run infrastructure exited with non-zero status code {code}.");
                self.set_state(id, "CRASHED", "Crashed", &message, false).await;
            }
            Ok(process::Ended::Cancelled) => {
                println!("Flow run {id} cancelled: its process is gone.");
                self.set_state(id, "CANCELLED", "Cancelled", "Flow run was cancelled.", true)
                    .await;
            }
            Ok(process::Ended::Killed) => {
                let message = "The Stratus agent stopped while the flow run was running.";
                self.set_state(id, "CRASHED", "Crashed", message, false).await;
            }
            Err(e) => {
                println!("Flow run {id} could not start: {e}");
                let message = format!("Flow run could not be submitted to infrastructure: {e}");
                self.set_state(id, "CRASHED", "Crashed", &message, false).await;
            }
        }
        let _ = tokio::fs::remove_dir_all(&dir).await;
        if let Ok(mut r) = self.running.lock() {
            if r.get(&id).is_some_and(|e| Arc::ptr_eq(&e.cancel, &cancel)) {
                r.remove(&id);
            }
        }
    }

    async fn supervise(
        self: Arc<Self>,
        id: Uuid,
        run: &Value,
        dir: &std::path::Path,
        cancel: Arc<Notify>,
    ) -> Result<process::Ended, String> {
        let deployment = match run.get("deployment_id").and_then(Value::as_str) {
            Some(d) => Some(
                self.api
                    .get(&format!("/deployments/{d}"))
                    .await
                    .map_err(|e| format!("could not read the deployment: {e}"))?,
            ),
            None => None,
        };
        let code_url = deployment
            .as_ref()
            .and_then(|d| d.get("path"))
            .and_then(Value::as_str)
            .filter(|p| p.starts_with("s3://") || p.starts_with("file://"));
        match code_url {
            Some(url) => {
                let bytes = fetch_code_patiently(id, url).await?;
                code::verify(url, &bytes)?;
                let target = dir.to_path_buf();
                tokio::task::spawn_blocking(move || code::unpack(&bytes, &target))
                    .await
                    .map_err(|e| e.to_string())??;
            }
            None => tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?,
        }
        let mut env = job_env(deployment.as_ref(), run);
        env.push(("PREFECT_API_URL".into(), self.api.base.clone()));
        env.push(("PREFECT__FLOW_RUN_ID".into(), id.to_string()));
        let mut child = process::spawn(&self.cfg.python, dir, &env)?;
        let pid = child.id().unwrap_or_default();
        let infra_pid = format!("{}:{pid}", self.hostname);
        if let Err(e) = self
            .api
            .patch(
                &format!("/flow_runs/{id}"),
                &json!({"infrastructure_pid": infra_pid}),
            )
            .await
        {
            tracing::warn!(flow_run_id = %id, "could not record the process id: {e}");
        }
        let mut kill_all = self.kill_all.subscribe();
        tokio::select! {
            status = child.wait() => Ok(process::Ended::Exited(process::exit_code(status))),
            _ = cancel.notified() => {
                process::terminate(&mut child).await;
                Ok(process::Ended::Cancelled)
            }
            _ = async move { kill_all.wait_for(|k| *k).await.is_ok() } => {
                process::terminate(&mut child).await;
                Ok(process::Ended::Killed)
            }
        }
    }

    async fn heartbeats(self: Arc<Self>) {
        let path = format!("/work_pools/{}/workers/heartbeat", self.pool_path);
        let every = self.cfg.heartbeat_interval;
        loop {
            let body = json!({
                "name": self.cfg.name,
                "heartbeat_interval_seconds": every.as_secs(),
                "flow_run_ids": self.running_ids(),
            });
            if let Err(e) = self.api.post(&path, &body).await {
                tracing::warn!("heartbeat failed: {e}");
            }
            self.mark_queues_polled().await;
            tokio::time::sleep(every).await;
        }
    }

    /// Runs reach this agent from the pool's message queue, not from polls of its work
    /// queues, so it also sends the workers' poll asking for nothing (runs due before
    /// 2000): the queues it serves are marked polled and READY, as a polling worker's are.
    async fn mark_queues_polled(&self) {
        if let Err(e) = self.poll("2000-01-01T00:00:00Z", 1).await {
            tracing::warn!("could not mark the pool's queues polled: {e}");
        }
    }

    /// The workers' poll of this agent's queues for runs due before `scheduled_before`.
    async fn poll(&self, scheduled_before: &str, limit: usize) -> Result<Value, api::CallError> {
        let body = json!({
            "work_queue_names": self.cfg.queues,
            "scheduled_before": scheduled_before,
            "limit": limit,
        });
        let path = format!("/work_pools/{}/get_scheduled_flow_runs", self.pool_path);
        self.api.post(&path, &body).await
    }

    /// Kills the process of any run of ours that is being cancelled.
    async fn watch_cancellations(self: Arc<Self>) {
        loop {
            tokio::time::sleep(CANCEL_CHECK).await;
            let ids = self.running_ids();
            if ids.is_empty() {
                continue;
            }
            let body = json!({
                "flow_runs": {"id": {"any_": ids}, "state": {"type": {"any_": ["CANCELLING", "CANCELLED"]}}},
            });
            let hits = match self.api.post("/flow_runs/filter", &body).await {
                Ok(Value::Array(hits)) => hits,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!("cancellation check failed: {e}");
                    continue;
                }
            };
            for hit in hits {
                let Some(id) = hit
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<Uuid>().ok())
                else {
                    continue;
                };
                if let Ok(r) = self.running.lock() {
                    if let Some(running) = r.get(&id) {
                        println!("Cancelling flow run {id}: stopping its process.");
                        running.cancel.notify_one();
                    }
                }
            }
        }
    }
}

fn state_type(run: &Value) -> Option<&str> {
    run.pointer("/state/type").and_then(Value::as_str)
}

fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// `env` from the deployment's job variables (infra overrides), then the run's.
fn job_env(deployment: Option<&Value>, run: &Value) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let sources = [
        deployment.and_then(|d| d.get("job_variables").or_else(|| d.get("infra_overrides"))),
        run.get("job_variables"),
    ];
    for vars in sources.into_iter().flatten() {
        if let Some(map) = vars.get("env").and_then(Value::as_object) {
            for (k, v) in map {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => continue,
                    other => other.to_string(),
                };
                env.push((k.clone(), v));
            }
        }
    }
    env
}

/// How long the agent keeps trying to fetch a run's code while storage is unreachable
/// (the run stays Pending, and named in the agent's heartbeats, meanwhile).
const CODE_FETCH_PATIENCE: Duration = Duration::from_secs(600);

/// Fetches the run's code, trying again while the store is unreachable.
async fn fetch_code_patiently(id: Uuid, url: &str) -> Result<Vec<u8>, String> {
    let waiting = |e: &stratus_store::storage::StorageError, wait: Duration| {
        println!("Flow run {id}: its code cannot be fetched yet ({e}); trying again in {wait:?}.");
    };
    stratus_store::storage::retry_transient(
        CODE_FETCH_PATIENCE,
        Duration::from_secs(15),
        || fetch_code(url),
        waiting,
    )
    .await
    .map_err(|e| e.to_string())
}

/// Downloads a flow code package from the store its URL names.
async fn fetch_code(url: &str) -> Result<Vec<u8>, stratus_store::storage::StorageError> {
    use stratus_store::storage::{Storage, StorageError};
    if url.starts_with("s3://") {
        let endpoint = stratus_store::config::Settings::from_env()
            .map_err(|e| StorageError::new(e.to_string()))?
            .s3_endpoint
            .unwrap_or(stratus_store::config::AwsEndpoint::Aws);
        let config = stratus_aws::sdk_config(&endpoint).await;
        let bucket = stratus_aws::s3::parse_url(url)
            .map(|(b, _)| b)
            .unwrap_or_default();
        stratus_aws::s3::S3Storage::new(&config, bucket).get(url).await
    } else {
        stratus_store::storage::LocalStorage::new("/").get(url).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_env_merges_deployment_then_run() {
        let d = json!({"job_variables": {"env": {"A": "1", "B": 2}}});
        let r = json!({"job_variables": {"env": {"A": "3", "C": null}}});
        let env = job_env(Some(&d), &r);
        assert_eq!(
            env,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "2".into()),
                ("A".into(), "3".into())
            ]
        );
    }

    #[test]
    fn sqs_endpoints_come_from_queue_urls() {
        use stratus_store::config::AwsEndpoint;
        if std::env::var_os("STRATUS_SQS_ENDPOINT").is_some() {
            return;
        }
        assert_eq!(
            sqs_endpoint_for("http://127.0.0.1:4566/queue/us-east-1/000000000000/q"),
            AwsEndpoint::Url("http://127.0.0.1:4566".into())
        );
        assert_eq!(
            sqs_endpoint_for("https://sqs.eu-west-1.amazonaws.com/123/q"),
            AwsEndpoint::Aws
        );
    }
}
