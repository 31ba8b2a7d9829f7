//! The API under load, at two sizes: the hot routes the stock client, workers and the UI
//! send, each driven over HTTP with N requests in flight, first on an empty database, then
//! on one holding a long history (1,000,000 flow runs, 10,000,000 task runs, 20,000,000 logs
//! over 1,000 flows and 100 deployments at `--scale 1`). Prints one table per size
//! (requests/s, p50/p99/max, server CPU, Postgres CPU, server RSS) and the ratio of each
//! figure at size to the empty one.
//!
//! ```text
//! cargo bench --bench api -- [--scale 1] [--in-flight 16] [--database URL] [--keep] [--no-client] [--seed-only] [--skip-empty]
//! cargo bench --bench api -- --base http://127.0.0.1:4200/api [--server-pid PID] [--requests 0.25]
//! ```
//!
//! By default it makes a database (`stratus_bench_api_<hex>` on the server of
//! STRATUS_TEST_DATABASE_URL, else 127.0.0.1:5432), starts the `stratus` binary of this
//! build on it (timing `server start` to healthy, fresh and migrated), runs the routes and
//! drops it; then does the same on a second database it seeds with the history in SQL
//! (`generate_series`, set-based, in batches, secondary indexes built after), dropped
//! unless `--keep`. `--database URL` names the history's database instead: seeded if it
//! is not yet, and kept (`--seed-only` only seeds it, to measure later). With `--base`, it drives any server that
//! speaks Prefect 2's API, at its current size only: the same numbers for a Prefect 2.20
//! server, side by side (`--server-pid` names the process whose CPU and RSS to report).
//! Postgres CPU is that of every local `postgres` process.
//!
//! The runs list is read while a writer adds runs to the same flow, right after a burst
//! of them, with no `ANALYZE` in between: a plan that needs fresh statistics shows here.
//! Each poll is followed by what a worker does (Pending proposed for every run handed out,
//! not timed); a run handed out again while the first offer lasts is counted. With the prefect venv present (`STRATUS_BENCH_PYTHON`,
//! else ~/.cache/stratus/prefect-venv), the stock client's flows of 100 sequential and
//! 200 submitted tasks are timed too (`benches/client_flows.py`).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

// ---- HTTP/1.1 over one kept-alive connection ----------------------------------------------

#[derive(Clone)]
struct Target {
    addr: String,
    prefix: String,
    auth: String,
}

impl Target {
    fn parse(base: &str) -> Target {
        let rest = base.trim_start_matches("http://").trim_end_matches('/');
        let (addr, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let auth = std::env::var("PREFECT_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .map(|k| format!("Authorization: Bearer {k}\r\n"))
            .unwrap_or_default();
        Target {
            addr: addr.to_string(),
            prefix: prefix.to_string(),
            auth,
        }
    }
}

struct Conn {
    reader: BufReader<TcpStream>,
    target: Target,
}

impl Conn {
    async fn open(target: &Target) -> Conn {
        let stream = TcpStream::connect(&target.addr).await.expect("connect");
        stream.set_nodelay(true).ok();
        Conn {
            reader: BufReader::new(stream),
            target: target.clone(),
        }
    }

    async fn send(&mut self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        match self.try_send(method, path, body).await {
            Some(answer) => answer,
            // The server closed the kept-alive connection while it was idle (uvicorn does
            // after 5 s): once more on a new one.
            None => {
                *self = Conn::open(&self.target).await;
                self.try_send(method, path, body)
                    .await
                    .expect("the server closed a new connection")
            }
        }
    }

    /// A GET of a path of the server's own, outside the API's prefix (a UI page).
    async fn page(&mut self, path: &str) -> (u16, Value) {
        let prefix = std::mem::take(&mut self.target.prefix);
        let answer = self.send("GET", path, None).await;
        self.target.prefix = prefix;
        answer
    }

    async fn try_send(&mut self, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, Value)> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let req = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.target.prefix,
            self.target.addr,
            self.target.auth,
            body.len()
        );
        let stream = self.reader.get_mut();
        stream.write_all(req.as_bytes()).await.ok()?;
        let mut line = String::new();
        if self.reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let (mut length, mut chunked) = (0usize, false);
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).await.expect("header");
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if line.starts_with("transfer-encoding:") && line.contains("chunked") {
                chunked = true;
            }
        }
        let mut buf = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                self.reader.read_line(&mut size).await.expect("chunk size");
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                self.reader.read_exact(&mut chunk).await.expect("chunk");
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        } else {
            buf.resize(length, 0);
            self.reader.read_exact(&mut buf).await.expect("body");
        }
        Some((status, serde_json::from_slice(&buf).unwrap_or(Value::Null)))
    }

    async fn post(&mut self, path: &str, body: &Value) -> (u16, Value) {
        self.send("POST", path, Some(body)).await
    }

    /// A request that must succeed (setup).
    async fn must(&mut self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, value) = self.send(method, path, body).await;
        assert!(status < 300, "{method} {path}: {status} {value}");
        value
    }
}

fn state(kind: &str) -> Value {
    json!({"state": {"type": kind, "name": null, "message": null, "data": null, "state_details": {}}, "force": false})
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_string()
}

/// A run handed out by a poll must not be handed out again for this long (unless its
/// state changes): Stratus's offer (`OFFER_SECONDS`); Prefect makes no such promise.
const OFFER: Duration = Duration::from_secs(3);

// ---- what a phase measures ----------------------------------------------------------------

/// One unit of work: a request, or the few a unit stands for (a task run's three).
#[derive(Clone)]
enum Unit {
    Post(String, Value),
    /// A page of the web UI: a GET of a path of the server's own (not under the API).
    Page(String),
    TaskRun {
        flow_run: String,
        n: usize,
    },
    Poll(String, Value),
}

struct Phase {
    name: String,
    unit: &'static str,
    units: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    server_cpu: Option<f64>,
    pg_cpu: f64,
    rss_mib: Option<f64>,
    extra: String,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.units as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        self.latencies[((self.latencies.len() as f64 - 1.0) * p).round() as usize]
    }
}

/// CPU seconds used so far by a process (utime + stime), from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// CPU seconds of every local Postgres process, and of those that exited (a server that
/// opens and closes connections leaves their time with the postmaster, which reaped them).
fn postgres_cpu() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| comm(*pid) == "postgres")
        .filter_map(|pid| Some(cpu_seconds(pid)? + reaped_cpu_seconds(pid)?))
        .sum()
}

/// CPU seconds of a process's children that exited and were waited for (cutime + cstime).
fn reaped_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some((fields.get(13)?.parse::<f64>().ok()? + fields.get(14)?.parse::<f64>().ok()?) / 100.0)
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs the units with `in_flight` connections, each taking the next unit until none are
/// left; returns the phase's figures. Poll answers are tallied by run id.
async fn drive(
    target: &Target,
    server: Option<u32>,
    name: &str,
    unit: &'static str,
    in_flight: usize,
    units: Vec<Unit>,
    handed_out: Option<Arc<Mutex<HashMap<String, Instant>>>>,
) -> Phase {
    let units = Arc::new(units);
    let next = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let twice = Arc::new(AtomicUsize::new(0));
    let (cpu0, pg0) = (server.and_then(cpu_seconds), postgres_cpu());
    let started = Instant::now();
    // The poll's runs are proposed Pending by submitters of their own, as the stock
    // worker does in a task group: its poll loop does not wait for them.
    let (submit, submitted) = tokio::sync::mpsc::unbounded_channel::<String>();
    let submitted = Arc::new(tokio::sync::Mutex::new(submitted));
    let pending = Arc::new(AtomicUsize::new(0));
    // One submitting connection beside each polling one: a worker and its task group.
    let submitters: Vec<_> = (0..if handed_out.is_some() { in_flight } else { 0 })
        .map(|_| {
            let (target, submitted, pending) = (target.clone(), submitted.clone(), pending.clone());
            tokio::spawn(async move {
                let mut conn = Conn::open(&target).await;
                loop {
                    let Some(id) = submitted.lock().await.recv().await else {
                        break;
                    };
                    let (status, _) = conn
                        .post(&format!("/flow_runs/{id}/set_state"), &state("PENDING"))
                        .await;
                    if status == 201 {
                        pending.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let submit = handed_out.is_some().then_some(submit);
    let mut workers = Vec::new();
    for _ in 0..in_flight {
        let (target, units, next, refused, handed_out, twice, submit) = (
            target.clone(),
            units.clone(),
            next.clone(),
            refused.clone(),
            handed_out.clone(),
            twice.clone(),
            submit.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut conn = Conn::open(&target).await;
            let mut latencies = Vec::new();
            let mut timed = |conn_result: (u16, Value), t: Instant, ok: &[u16]| {
                latencies.push(t.elapsed());
                if !ok.contains(&conn_result.0) {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                conn_result.1
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(unit) = units.get(i) else { break };
                match unit {
                    Unit::Post(path, body) => {
                        let t = Instant::now();
                        let r = conn.post(path, body).await;
                        timed(r, t, &[200, 201]);
                    }
                    Unit::Page(path) => {
                        let t = Instant::now();
                        let r = conn.page(path).await;
                        timed(r, t, &[200]);
                    }
                    Unit::Poll(path, body) => {
                        let t = Instant::now();
                        let r = conn.post(path, body).await;
                        let answer = timed(r, t, &[200]);
                        // As the stock worker: each run handed out is proposed Pending
                        // by a task of its own while the poll loop goes on.
                        for run in answer.as_array().into_iter().flatten() {
                            if let Some(submit) = &submit {
                                submit.send(id_of(&run["flow_run"])).ok();
                            }
                        }
                        if let Some(tally) = &handed_out {
                            let mut tally = tally.lock().expect("tally");
                            for run in answer.as_array().into_iter().flatten() {
                                // Handed out again while the first offer lasts: twice.
                                match tally.entry(id_of(&run["flow_run"])) {
                                    Entry::Occupied(mut first) => {
                                        if first.get().elapsed() + Duration::from_secs(1) < OFFER {
                                            twice.fetch_add(1, Ordering::Relaxed);
                                        }
                                        first.insert(Instant::now());
                                    }
                                    Entry::Vacant(v) => {
                                        v.insert(Instant::now());
                                    }
                                }
                            }
                        }
                    }
                    Unit::TaskRun { flow_run, n } => {
                        let body = json!({"flow_run_id": flow_run, "task_key": "bench-task",
                            "dynamic_key": n.to_string(), "name": format!("bench-task-{n}"),
                            "state": {"type": "PENDING"}});
                        let t = Instant::now();
                        let r = conn.post("/task_runs/", &body).await;
                        let task = id_of(&timed(r, t, &[200, 201]));
                        let path = format!("/task_runs/{task}/set_state");
                        for kind in ["RUNNING", "COMPLETED"] {
                            let t = Instant::now();
                            let r = conn.post(&path, &state(kind)).await;
                            timed(r, t, &[201]);
                        }
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.expect("worker"));
    }
    let elapsed = started.elapsed();
    drop(submit);
    for s in submitters {
        s.await.expect("submitter");
    }
    let drained = started.elapsed();
    latencies.sort();
    // CPU over the phase and the Pendings still queued after it, which are its work.
    let secs = drained.as_secs_f64();
    let (server_cpu, pg_cpu) = (server.and_then(cpu_seconds), postgres_cpu());
    let refused = refused.load(Ordering::Relaxed);
    let twice = twice.load(Ordering::Relaxed);
    let mut extra: Vec<String> = Vec::new();
    if refused > 0 {
        extra.push(format!("{refused} refused"));
    }
    if let Some(tally) = &handed_out {
        let runs = tally.lock().expect("tally").len();
        extra.push(format!(
            "{runs} runs handed out, {twice} of them again within {}s; {} made Pending by {in_flight} \
             submitters, the last {:.1}s after the last poll",
            OFFER.as_secs(),
            pending.load(Ordering::Relaxed),
            (drained - elapsed).as_secs_f64()
        ));
    }
    Phase {
        name: name.to_string(),
        unit,
        units: units.len(),
        elapsed,
        latencies,
        server_cpu: server_cpu
            .zip(cpu0)
            .map(|(now, then)| (now - then) / secs * 100.0),
        pg_cpu: (pg_cpu - pg0) / secs * 100.0,
        rss_mib: server.and_then(rss_mib),
        extra: extra.join(", "),
    }
}

// ---- the suite ----------------------------------------------------------------------------

struct Sizes {
    create: usize,
    task_runs: usize,
    log_requests: usize,
    logs_per_request: usize,
    filters: usize,
    polls: usize,
    poll_supply: usize,
    pages: usize,
}

/// Every route of the goals, in the order a busy server sees them built up.
async fn suite(
    target: &Target,
    server: Option<u32>,
    in_flight: usize,
    sizes: &Sizes,
    tag: &str,
    ui: bool,
) -> Vec<Phase> {
    let mut setup = Conn::open(target).await;
    let flow = setup
        .must(
            "POST",
            "/flows/",
            Some(&json!({"name": format!("bench-api-{tag}")})),
        )
        .await;
    let flow_id = id_of(&flow);
    let pool = format!("bench-api-pool-{tag}");
    setup
        .must(
            "POST",
            "/work_pools/",
            Some(&json!({"name": pool, "type": "process"})),
        )
        .await;
    let deployment = setup
        .must(
            "POST",
            "/deployments/",
            Some(
                &json!({"name": format!("bench-api-{tag}"), "flow_id": flow_id, "work_pool_name": pool,
                         "entrypoint": "flow.py:f", "path": "/tmp"}),
            ),
        )
        .await;
    let deployment_id = id_of(&deployment);
    let mut phases = Vec::new();

    // 1. Create: a burst of Scheduled runs of one flow (the runs list below reads them).
    let units = (0..sizes.create)
        .map(|i| {
            Unit::Post(
                "/flow_runs/".into(),
                json!({"flow_id": flow_id, "name": format!("bench-{tag}-{i}"), "tags": ["bench"],
                       "state": {"type": "SCHEDULED", "state_details": {}}}),
            )
        })
        .collect();
    phases.push(
        drive(
            target,
            server,
            "POST /flow_runs/ (Scheduled)",
            "runs",
            in_flight,
            units,
            None,
        )
        .await,
    );

    // 2. set_state: each run Pending, Running, Completed, in that order per run.
    let mut run_ids = Vec::new();
    let mut offset = 0;
    while run_ids.len() < sizes.create {
        let page = setup
            .must(
                "POST",
                "/flow_runs/filter",
                Some(&json!({"flows": {"id": {"any_": [flow_id]}}, "sort": "ID_DESC", "limit": 200, "offset": offset})),
            )
            .await;
        let page = page.as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            break;
        }
        offset += page.len();
        run_ids.extend(page.iter().map(id_of));
    }
    let transitions = run_ids.len().min(sizes.create / 2);
    // Runs go through their states in step: each worker takes a run's next state in turn
    // (in flight at once are different runs).
    let units: Vec<Unit> = ["PENDING", "RUNNING", "COMPLETED"]
        .iter()
        .flat_map(|kind| {
            run_ids[..transitions]
                .iter()
                .map(move |id| Unit::Post(format!("/flow_runs/{id}/set_state"), state(kind)))
        })
        .collect();
    phases.push(
        drive(
            target,
            server,
            "flow run set_state",
            "states",
            in_flight,
            units,
            None,
        )
        .await,
    );

    // 3. Task runs: create (Pending), Running, Completed, under one running flow run.
    let parent = setup
        .must(
            "POST",
            "/flow_runs/",
            Some(&json!({"flow_id": flow_id, "name": format!("bench-{tag}-parent"), "state": {"type": "RUNNING"}})),
        )
        .await;
    let parent = id_of(&parent);
    let units = (0..sizes.task_runs)
        .map(|n| Unit::TaskRun {
            flow_run: parent.clone(),
            n,
        })
        .collect();
    phases.push(
        drive(
            target,
            server,
            "task run create + Running + Completed",
            "task runs",
            in_flight,
            units,
            None,
        )
        .await,
    );

    // 4. Logs, in the batches the client's log worker sends.
    let units: Vec<Unit> = (0..sizes.log_requests)
        .map(|r| {
            let batch: Vec<Value> = (0..sizes.logs_per_request)
                .map(|i| {
                    json!({"name": "prefect.flow_runs", "level": 20, "flow_run_id": parent,
                    "task_run_id": null, "message": format!("bench line {r}-{i}: the step did its work"),
                    "timestamp": chrono::Utc::now().to_rfc3339()})
                })
                .collect();
            Unit::Post("/logs/".into(), Value::Array(batch))
        })
        .collect();
    let mut logs = drive(target, server, "POST /logs/", "logs", in_flight, units, None).await;
    logs.extra = format!(
        "{} per request{}",
        sizes.logs_per_request,
        if logs.extra.is_empty() {
            String::new()
        } else {
            format!(", {}", logs.extra)
        }
    );
    logs.units *= sizes.logs_per_request;
    phases.push(logs);

    // 5. The runs list of the flow, while a writer keeps adding runs to it.
    let writing = Arc::new(AtomicBool::new(true));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (target, writing, written, flow_id, tag) = (
            target.clone(),
            writing.clone(),
            written.clone(),
            flow_id.clone(),
            tag.to_string(),
        );
        tokio::spawn(async move {
            let mut conn = Conn::open(&target).await;
            while writing.load(Ordering::Relaxed) {
                let n = written.fetch_add(1, Ordering::Relaxed);
                conn.post(
                    "/flow_runs/",
                    &json!({"flow_id": flow_id, "name": format!("bench-{tag}-more-{n}"), "state": {"type": "SCHEDULED"}}),
                )
                .await;
            }
        })
    };
    let body = json!({"flows": {"id": {"any_": [flow_id]}}, "sort": "EXPECTED_START_TIME_DESC", "limit": 50});
    let units = (0..sizes.filters)
        .map(|_| Unit::Post("/flow_runs/filter".into(), body.clone()))
        .collect();
    let mut filter = drive(
        target,
        server,
        "POST /flow_runs/filter (one flow, sorted, 50)",
        "requests",
        in_flight.saturating_sub(1).max(1),
        units,
        None,
    )
    .await;
    writing.store(false, Ordering::Relaxed);
    writer.await.ok();
    filter.extra = format!("{} runs written meanwhile", written.load(Ordering::Relaxed));
    phases.push(filter);

    // 6. The work-pool poll, over a queue of due runs made from the deployment.
    let units = (0..sizes.poll_supply)
        .map(|_| Unit::Post(format!("/deployments/{deployment_id}/create_flow_run"), json!({})))
        .collect();
    phases.push(
        drive(
            target,
            server,
            "POST /deployments/{id}/create_flow_run",
            "runs",
            in_flight,
            units,
            None,
        )
        .await,
    );
    let tally = Arc::new(Mutex::new(HashMap::new()));
    let before = (chrono::Utc::now() + chrono::Duration::seconds(10)).to_rfc3339();
    let units = (0..sizes.polls)
        .map(|_| {
            Unit::Poll(
                format!("/work_pools/{pool}/get_scheduled_flow_runs"),
                json!({"work_queue_names": [], "scheduled_before": before, "limit": 10}),
            )
        })
        .collect();
    let poll = drive(
        target,
        server,
        "work pool get_scheduled_flow_runs (10)",
        "requests",
        in_flight,
        units,
        Some(tally.clone()),
    )
    .await;
    phases.push(poll);

    // 7. The web UI's pages and its `/ui` routes, four at a time, when the server has them.
    if !ui {
        return phases;
    }
    let (_, page) = setup
        .post(
            "/flow_runs/filter",
            &json!({"flows": {"id": {"any_": [flow_id]}}, "limit": 1}),
        )
        .await;
    let run_id = id_of(&page[0]);
    let week_ago = (chrono::Utc::now() - chrono::Duration::days(7)).to_rfc3339();
    let pages: Vec<(String, Unit)> = vec![
        ("/".into(), Unit::Page("/".into())),
        ("/?hours=168".into(), Unit::Page("/?hours=168".into())),
        ("/flow-runs".into(), Unit::Page("/flow-runs".into())),
        (
            "/flow-runs?state=FAILED".into(),
            Unit::Page("/flow-runs?state=FAILED".into()),
        ),
        (
            "/flow-runs/{id}".into(),
            Unit::Page(format!("/flow-runs/{run_id}")),
        ),
        ("/flows".into(), Unit::Page("/flows".into())),
        ("/flows/{id}".into(), Unit::Page(format!("/flows/{flow_id}"))),
        ("/deployments".into(), Unit::Page("/deployments".into())),
        (
            "/deployments/{id}".into(),
            Unit::Page(format!("/deployments/{deployment_id}")),
        ),
        ("/work-pools".into(), Unit::Page("/work-pools".into())),
        (
            "/work-pools/{name}".into(),
            Unit::Page(format!("/work-pools/{pool}")),
        ),
        (
            "POST /ui/flow_runs/history".into(),
            Unit::Post("/ui/flow_runs/history".into(), json!({})),
        ),
        (
            "POST /ui/task_runs/count (a week)".into(),
            Unit::Post(
                "/ui/task_runs/count".into(),
                json!({"task_runs": {"start_time": {"after_": week_ago}}}),
            ),
        ),
        (
            "POST /ui/task_runs/dashboard/counts (a week)".into(),
            Unit::Post(
                "/ui/task_runs/dashboard/counts".into(),
                json!({"task_runs": {"start_time": {"after_": week_ago}}}),
            ),
        ),
    ];
    for (name, unit) in pages {
        let units = (0..sizes.pages).map(|_| unit.clone()).collect();
        phases.push(drive(target, server, &format!("UI {name}"), "pages", 4, units, None).await);
    }
    phases
}

fn print_table(title: &str, phases: &[Phase], extra_rows: &[(String, String)]) {
    println!("\n{title}");
    println!(
        "{:<46} {:>10} {:>12} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7}  notes",
        "route", "count", "per second", "p50 ms", "p99 ms", "max ms", "srv %", "pg %", "RSS MiB"
    );
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
    for p in phases {
        println!(
            "{:<46} {:>10} {:>12} {:>8} {:>8} {:>8} {:>7} {:>7.0} {:>7}  {}",
            p.name,
            format!("{} {}", p.units, p.unit.split(' ').next().unwrap_or_default()),
            format!(
                "{:.0} {}/s",
                p.rate(),
                p.unit.split(' ').next_back().unwrap_or_default()
            ),
            ms(p.pct(0.5)),
            ms(p.pct(0.99)),
            ms(p.pct(1.0)),
            opt(p.server_cpu),
            p.pg_cpu,
            opt(p.rss_mib),
            p.extra
        );
    }
    for (name, value) in extra_rows {
        println!("{name:<46} {value}");
    }
}

fn print_ratios(empty: &[Phase], full: &[Phase]) {
    println!("\nat size / empty (throughput; p99 the other way round: empty / at size)");
    for (e, f) in empty.iter().zip(full) {
        let p99 = |p: &Phase| p.pct(0.99).as_secs_f64().max(1e-6);
        let ratio = f.rate() / e.rate();
        let flag = if ratio < 0.8 { "  BELOW 80%" } else { "" };
        println!(
            "{:<46} {:>6.0}%   p99 {:>6.0}%{flag}",
            e.name,
            ratio * 100.0,
            p99(e) / p99(f) * 100.0
        );
    }
}

// ---- the stock client ---------------------------------------------------------------------

fn client_timings(base: &str, server_pid: Option<u32>, wanted: bool) -> Vec<(String, String)> {
    if !wanted {
        return Vec::new();
    }
    let python = std::env::var("STRATUS_BENCH_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/stratus/prefect-venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    if !std::path::Path::new(&python).exists() {
        return vec![("stock client flows".into(), format!("skipped: no {python}"))];
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/client_flows.py");
    let home = std::env::temp_dir().join(format!("stratus-bench-prefect-{}", std::process::id()));
    let mut command = std::process::Command::new(&python);
    command
        .arg(script)
        .env("PREFECT_API_URL", base)
        .env("PREFECT_HOME", &home);
    if let Some(pid) = server_pid {
        command.env("STRATUS_BENCH_SERVER_PID", pid.to_string());
    }
    let out = command.output();
    let _ = std::fs::remove_dir_all(&home);
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(a, b)| (format!("stock client: {a}"), b.to_string()))
            .collect(),
        Ok(out) => vec![(
            "stock client flows".into(),
            format!(
                "failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or_default()
            ),
        )],
        Err(e) => vec![("stock client flows".into(), format!("failed: {e}"))],
    }
}

// ---- our own server and database -----------------------------------------------------------

struct Server {
    child: std::process::Child,
    port: u16,
}

impl Server {
    /// Starts `stratus server start` and waits for `/api/health`; returns it and the time.
    async fn start(url: &str) -> (Server, Duration) {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("address").port()
        };
        let started = Instant::now();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_stratus"))
            .args([
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .env("STRATUS_DATABASE_URL", url)
            .env("STRATUS_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start stratus");
        let target = Target::parse(&format!("http://127.0.0.1:{port}/api"));
        // The port is bound before Postgres is reached: a request waits in the backlog
        // until the server answers it.
        loop {
            if let Ok(stream) = TcpStream::connect(&target.addr).await {
                let mut conn = Conn {
                    reader: BufReader::new(stream),
                    target: target.clone(),
                };
                if conn.send("GET", "/health", None).await.0 == 200 {
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "stratus did not become healthy"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        (Server { child, port }, started.elapsed())
    }

    /// SIGTERM, so it closes its pool and Postgres sees no broken connections.
    fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to Postgres at {url}: {e}"));
    tokio::spawn(conn);
    client
}

/// The history, in batches of 10,000 flow runs so no statement runs for long: each flow
/// run has three states, ten task runs (their final state each) and twenty logs; 2% are
/// Scheduled in the future in their deployment's queue, 8% Failed, the rest Completed.
async fn seed(db: &tokio_postgres::Client, target: &Target, flow_runs: i64) {
    db.execute(
        "SELECT set_config('stratus.workspace', $1, false)",
        &[&stratus_store::db::access::DEFAULT_WORKSPACE_ID.to_string()],
    )
    .await
    .expect("the default workspace");
    let have: i64 = db
        .query_one("SELECT count(*) FROM flow_run WHERE name LIKE 'seed-%'", &[])
        .await
        .expect("count")
        .get(0);
    if have >= flow_runs {
        println!("\nthe history is already there ({have} seeded flow runs)");
        return;
    }
    let started = Instant::now();
    db.batch_execute(
        "INSERT INTO flow (name) SELECT 'seed-flow-' || g FROM generate_series(1, 1000) g ON CONFLICT DO NOTHING",
    )
    .await
    .expect("flows");
    // The pool, its queues and the deployments as the client makes them.
    let mut api = Conn::open(target).await;
    if api.send("GET", "/work_pools/seed-pool", None).await.0 == 404 {
        api.must(
            "POST",
            "/work_pools/",
            Some(&json!({"name": "seed-pool", "type": "process"})),
        )
        .await;
        for q in 1..5 {
            api.must(
                "POST",
                "/work_pools/seed-pool/queues",
                Some(&json!({"name": format!("q{q}")})),
            )
            .await;
        }
        for g in 0..100 {
            let flow: uuid::Uuid = db
                .query_one(
                    "SELECT id FROM flow WHERE name = $1",
                    &[&format!("seed-flow-{}", g + 1)],
                )
                .await
                .expect("a flow")
                .get(0);
            let queue = match g % 5 {
                0 => "default".to_string(),
                q => format!("q{q}"),
            };
            api.must(
                "POST",
                "/deployments/",
                Some(
                    &json!({"name": format!("seed-deployment-{}", g + 1), "flow_id": flow,
                             "work_pool_name": "seed-pool", "work_queue_name": queue}),
                ),
            )
            .await;
        }
    }
    // Bulk loading into tables without their secondary indexes, then building those once,
    // takes minutes instead of most of an hour; the keys stay (the ids are time-ordered).
    let tables = ["flow_run", "flow_run_state", "task_run", "task_run_state", "log"];
    let indexes: Vec<(String, String)> = db
        .query(
            "SELECT i.indexname::text, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public' \
             AND i.tablename = ANY($1) AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
            &[&tables.to_vec()],
        )
        .await
        .expect("indexes")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (name, _) in &indexes {
        db.batch_execute(&format!("DROP INDEX {name}"))
            .await
            .expect("drop index");
    }
    let batch = 50_000i64;
    let mut from = have;
    while from < flow_runs {
        let to = (from + batch).min(flow_runs);
        db.batch_execute(&format!(
            "BEGIN; \
             CREATE TEMP TABLE seed_run ON COMMIT DROP AS \
               SELECT stratus_uuid7() AS id, stratus_uuid7() AS state_id, g, \
                 (SELECT id FROM flow WHERE name = 'seed-flow-' || (1 + g % 1000)) AS flow_id, \
                 CASE WHEN g % 1000 < 100 THEN (SELECT id FROM deployment WHERE name = 'seed-deployment-' || (1 + g % 1000)) END AS deployment_id, \
                 CASE WHEN g % 50 = 7 THEN 'SCHEDULED' WHEN g % 100 < 8 THEN 'FAILED' ELSE 'COMPLETED' END AS kind, \
                 now() - ({flow_runs} - g) * interval '30 seconds' AS at \
               FROM generate_series({from}, {last}) g; \
             INSERT INTO flow_run (id, name, flow_id, deployment_id, work_queue_id, work_queue_name, tags, parameters, \
                 state_id, state_type, state_name, state_timestamp, run_count, expected_start_time, next_scheduled_start_time, \
                 start_time, end_time, total_run_time) \
               SELECT r.id, 'seed-' || r.g, r.flow_id, r.deployment_id, d.work_queue_id, d.work_queue_name, \
                 CASE WHEN r.g % 2 = 0 THEN '[\"nightly\"]'::jsonb ELSE '[]'::jsonb END, jsonb_build_object('n', r.g), \
                 r.state_id, r.kind, initcap(r.kind), r.at, CASE WHEN r.kind = 'SCHEDULED' THEN 0 ELSE 1 END, \
                 CASE WHEN r.kind = 'SCHEDULED' THEN now() + interval '1 day' + r.g * interval '1 second' ELSE r.at END, \
                 CASE WHEN r.kind = 'SCHEDULED' THEN now() + interval '1 day' + r.g * interval '1 second' END, \
                 CASE WHEN r.kind <> 'SCHEDULED' THEN r.at END, CASE WHEN r.kind <> 'SCHEDULED' THEN r.at + interval '20 seconds' END, \
                 CASE WHEN r.kind <> 'SCHEDULED' THEN interval '20 seconds' ELSE interval '0' END \
               FROM seed_run r LEFT JOIN deployment d ON d.id = r.deployment_id; \
             INSERT INTO flow_run_state (id, flow_run_id, type, name, timestamp) \
               SELECT CASE WHEN s.n = 2 OR r.kind = 'SCHEDULED' THEN r.state_id ELSE stratus_uuid7() END, \
                 r.id, s.type, initcap(s.type), r.at + s.n * interval '10 seconds' \
               FROM seed_run r, LATERAL (VALUES (0, 'SCHEDULED'), (1, 'RUNNING'), (2, r.kind)) s(n, type) \
               WHERE r.kind <> 'SCHEDULED' OR s.n = 0; \
             CREATE TEMP TABLE seed_task ON COMMIT DROP AS \
               SELECT stratus_uuid7() AS id, r.id AS flow_run_id, t, \
                 CASE WHEN r.kind = 'FAILED' AND t = 9 THEN 'FAILED' ELSE 'COMPLETED' END AS kind, \
                 r.at + t * interval '2 seconds' AS at \
               FROM seed_run r, generate_series(0, 9) t WHERE r.kind <> 'SCHEDULED'; \
             INSERT INTO task_run (id, flow_run_id, name, task_key, dynamic_key, tags, state_id, state_type, state_name, \
                 state_timestamp, run_count, expected_start_time, start_time, end_time, total_run_time) \
               SELECT id, flow_run_id, 'step-' || t || '-0', 'step-' || t, '0', '[]', id, kind, initcap(kind), \
                 at + interval '2 seconds', 1, at, at, at + interval '2 seconds', interval '2 seconds' FROM seed_task; \
             INSERT INTO task_run_state (id, task_run_id, type, name, timestamp) \
               SELECT id, id, kind, initcap(kind), at + interval '2 seconds' FROM seed_task; \
             INSERT INTO log (name, level, flow_run_id, task_run_id, message, timestamp) \
               SELECT 'prefect.task_runs', CASE WHEN s.kind = 'FAILED' THEN 40 ELSE 20 END, s.flow_run_id, s.id, \
                 'step ' || s.t || ' line ' || i || ' did its work', s.at + i * interval '1 second' \
               FROM seed_task s, generate_series(0, 1) i; \
             COMMIT;",
            last = to - 1
        ))
        .await
        .expect("a batch of the history");
        from = to;
        if from % 100_000 == 0 || from == flow_runs {
            println!(
                "  seeded {from} of {flow_runs} flow runs ({:.0}s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    db.batch_execute("SET maintenance_work_mem = '512MB'")
        .await
        .expect("memory");
    for (_, def) in &indexes {
        db.batch_execute(def).await.expect("rebuild an index");
    }
    println!("  indexes rebuilt ({:.0}s)", started.elapsed().as_secs_f64());
    // Autovacuum would have analyzed and frozen tables this old; the bench's own bursts
    // come after, with no ANALYZE.
    db.batch_execute("VACUUM (ANALYZE) flow_run, flow_run_state, task_run, task_run_state, log")
        .await
        .expect("vacuum");
    println!("seeded in {:.0}s", started.elapsed().as_secs_f64());
}

struct Args {
    base: Option<String>,
    database: Option<String>,
    scale: f64,
    requests: f64,
    in_flight: usize,
    keep: bool,
    seed_only: bool,
    skip_empty: bool,
    client: bool,
    server_pid: Option<u32>,
}

fn args() -> Args {
    let mut args = Args {
        base: None,
        database: None,
        scale: 1.0,
        requests: 1.0,
        in_flight: 16,
        keep: false,
        seed_only: false,
        skip_empty: false,
        client: true,
        server_pid: None,
    };
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(a) = it.next() {
        match a.as_str() {
            "--base" => args.base = it.next(),
            "--database" => args.database = it.next(),
            "--scale" => args.scale = it.next().and_then(|s| s.parse().ok()).unwrap_or(1.0),
            "--requests" => args.requests = it.next().and_then(|s| s.parse().ok()).unwrap_or(1.0),
            "--in-flight" => args.in_flight = it.next().and_then(|s| s.parse().ok()).unwrap_or(16),
            "--server-pid" => args.server_pid = it.next().and_then(|s| s.parse().ok()),
            "--keep" => args.keep = true,
            "--no-client" => args.client = false,
            "--seed-only" => args.seed_only = true,
            "--skip-empty" => args.skip_empty = true,
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    // How many of each unit a suite sends (`--requests 0.25`: a quarter, for a slower server).
    let n = |count: f64| ((count * args.requests) as usize).max(args.in_flight);
    let sizes = Sizes {
        create: n(8_000.0),
        task_runs: n(4_000.0),
        log_requests: n(1_000.0),
        logs_per_request: 200,
        filters: n(4_000.0),
        polls: n(3_000.0),
        poll_supply: n(10_000.0),
        pages: n(200.0),
    };
    if let Some(base) = &args.base {
        let target = Target::parse(base);
        let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        // Another server's web UI is not Stratus's: its routes only.
        let phases = suite(&target, args.server_pid, args.in_flight, &sizes, &tag, false).await;
        let client = client_timings(base, args.server_pid, args.client);
        print_table(&format!("{base}, {} in flight", args.in_flight), &phases, &client);
        return;
    }

    let admin_url = std::env::var("STRATUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());

    // The empty size: a database of its own, made for this run and dropped after it.
    let mut empty = None;
    if !args.seed_only && !args.skip_empty {
        let (url, name) = new_database(&admin_url).await;
        // Start to healthy: the first start migrates the database; then it is migrated.
        let (server, first) = Server::start(&url).await;
        server.stop();
        let mut restarts = Vec::new();
        for _ in 0..5 {
            let (server, took) = Server::start(&url).await;
            restarts.push(took);
            server.stop();
        }
        restarts.sort();
        let mut rows = vec![(
            "stratus server start to healthy".to_string(),
            format!(
                "{:.0} ms on a migrated database (median of 5; {:.0}-{:.0}), {:.0} ms migrating a new one",
                restarts[2].as_secs_f64() * 1000.0,
                restarts[0].as_secs_f64() * 1000.0,
                restarts[4].as_secs_f64() * 1000.0,
                first.as_secs_f64() * 1000.0
            ),
        )];
        let (server, _) = Server::start(&url).await;
        let base = format!("http://127.0.0.1:{}/api", server.port);
        let phases = suite(
            &Target::parse(&base),
            Some(server.child.id()),
            args.in_flight,
            &sizes,
            "empty",
            true,
        )
        .await;
        rows.extend(client_timings(&base, Some(server.child.id()), args.client));
        server.stop();
        drop_database(&admin_url, &name).await;
        print_table(
            &format!("empty database, {} in flight", args.in_flight),
            &phases,
            &rows,
        );
        empty = Some(phases);
    }

    // The history: the database given (seeded unless it already is, and kept), or one made
    // and seeded for this run (dropped after it unless --keep).
    let runs = (1_000_000.0 * args.scale) as i64;
    if runs == 0 {
        return;
    }
    let (url, made) = match &args.database {
        Some(url) => (url.clone(), None),
        None => {
            let (url, name) = new_database(&admin_url).await;
            (url, Some(name))
        }
    };
    let db = connect(&url).await;
    let (server, _) = Server::start(&url).await;
    let base = format!("http://127.0.0.1:{}/api", server.port);
    let target = Target::parse(&base);
    seed(&db, &target, runs).await;
    if !args.seed_only {
        let counts = db
            .query_one(
                "SELECT (SELECT count(*) FROM flow_run), (SELECT count(*) FROM task_run), (SELECT count(*) FROM log)",
                &[],
            )
            .await
            .expect("counts");
        let (r, t, l): (i64, i64, i64) = (counts.get(0), counts.get(1), counts.get(2));
        let tag = format!("at-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let phases = suite(
            &target,
            Some(server.child.id()),
            args.in_flight,
            &sizes,
            &tag,
            true,
        )
        .await;
        let rows = client_timings(&base, Some(server.child.id()), args.client);
        print_table(
            &format!(
                "{r} flow runs, {t} task runs, {l} logs; {} in flight",
                args.in_flight
            ),
            &phases,
            &rows,
        );
        if let Some(empty) = &empty {
            print_ratios(empty, &phases);
        }
    }
    server.stop();
    drop(db);
    match made {
        Some(name) if args.keep => println!("\nkept the database {name}"),
        Some(name) => drop_database(&admin_url, &name).await,
        None => {}
    }
}

async fn new_database(admin_url: &str) -> (String, String) {
    let name = format!(
        "stratus_bench_api_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    connect(admin_url)
        .await
        .execute(&format!("CREATE DATABASE {name}"), &[])
        .await
        .expect("create database");
    (stratus_store::url::with_database(admin_url, &name), name)
}

async fn drop_database(admin_url: &str, name: &str) {
    let _ = connect(admin_url)
        .await
        .execute(&format!("DROP DATABASE {name} WITH (FORCE)"), &[])
        .await;
}
