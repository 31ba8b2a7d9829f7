//! Postgres restarting under load: clients running flow-run lifecycles get a 503 with
//! `Retry-After` (never a 500, never a wait past the pool's bounds), Stratus reconnects on
//! its own once Postgres is back, and every transition it answered ACCEPT is in the
//! database afterwards. Against a throwaway cluster of its own (`pg_ctl restart`), made
//! with the machine's `initdb` as `stratus server start` makes one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::TestApp;
use serde_json::{json, Value};
use stratus::cli::local_postgres::LocalPostgres;

const CLIENTS: usize = 8;
/// The longest any answer may take: the pool's wait or a connect timeout (5 s) and margin.
const SLOWEST_ANSWER: Duration = Duration::from_secs(12);
/// How soon after Postgres accepts connections again Stratus must answer normally.
const RECOVERY: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Tally {
    requests: usize,
    unavailable: usize,
    /// (run, state id) of every transition answered ACCEPT.
    accepted: Vec<(String, String)>,
    /// Answers that are neither a success nor a 503 with Retry-After.
    wrong: Vec<String>,
    slowest: Duration,
    /// When each successful answer came.
    successes: Vec<Instant>,
}

struct Client {
    app: Arc<TestApp>,
    tally: Arc<Mutex<Tally>>,
}

impl Client {
    /// One request, retried while the answer is a 503; None once the test stops or on an
    /// answer that must not happen (recorded).
    async fn call(
        &self,
        path: &str,
        body: Option<Value>,
        stop: &AtomicBool,
    ) -> Option<crate::common::Response> {
        loop {
            let started = Instant::now();
            let res = match &body {
                Some(b) => self.app.post(path, b.clone()).await,
                None => self.app.get(path).await,
            };
            let took = started.elapsed();
            let retry = {
                let mut t = self.tally.lock().unwrap();
                t.requests += 1;
                t.slowest = t.slowest.max(took);
                match res.status.as_u16() {
                    200 | 201 => {
                        t.successes.push(Instant::now());
                        false
                    }
                    503 if res.headers.get("retry-after").is_some() => {
                        t.unavailable += 1;
                        true
                    }
                    _ => {
                        t.wrong.push(format!("{path}: {} {}", res.status, res.text));
                        return None;
                    }
                }
            };
            if !retry {
                return Some(res);
            }
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Flow runs through Pending, Running and Completed until told to stop.
    async fn lifecycles(self, flow_id: Value, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Relaxed) {
            let Some(run) = self
                .call("/api/flow_runs/", Some(json!({"flow_id": flow_id})), &stop)
                .await
            else {
                return;
            };
            let id = run.body["id"].as_str().unwrap_or_default().to_string();
            for target in ["PENDING", "RUNNING", "COMPLETED"] {
                let body = json!({"state": {"type": target}});
                loop {
                    let path = format!("/api/flow_runs/{id}/set_state");
                    let Some(res) = self.call(&path, Some(body.clone()), &stop).await else {
                        return;
                    };
                    if res.body["status"] == "ACCEPT" {
                        let state = res.body["state"]["id"].as_str().unwrap_or_default().to_string();
                        self.tally.lock().unwrap().accepted.push((id.clone(), state));
                        break;
                    }
                    // An answer lost to the restart may have been written: the run says.
                    let Some(read) = self.call(&format!("/api/flow_runs/{id}"), None, &stop).await else {
                        return;
                    };
                    if read.body["state_type"] == target {
                        break;
                    }
                }
            }
        }
    }
}

async fn restart_under_load(app: &Arc<TestApp>, pg: &Arc<LocalPostgres>, mode: &'static str) {
    let flow = app
        .post("/api/flows/", json!({"name": format!("load-{mode}")}))
        .await;
    assert_eq!(flow.status, 201, "{}", flow.text);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let client = Client {
                app: app.clone(),
                tally: tally.clone(),
            };
            tokio::spawn(client.lifecycles(flow.body["id"].clone(), stop.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = tally.lock().unwrap().accepted.len();
    let restarting = Instant::now();
    let pg2 = pg.clone();
    tokio::task::spawn_blocking(move || pg2.restart(mode))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let back = Instant::now();
    tokio::time::sleep(RECOVERY + Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        tokio::time::timeout(SLOWEST_ANSWER * 2, c)
            .await
            .expect("a client hung")
            .unwrap();
    }

    let t = std::mem::take(&mut *tally.lock().unwrap());
    let recovered = t
        .successes
        .iter()
        .filter(|at| **at > back)
        .map(|at| at.duration_since(back))
        .min();
    println!(
        "Postgres restart ({mode}) under {CLIENTS} clients: {} requests, {} answered 503, {} transitions \
         answered ACCEPT ({before} before the restart), slowest answer {:?}, Postgres down {:?}, \
         Stratus answering again {:?} after Postgres was back",
        t.requests,
        t.unavailable,
        t.accepted.len(),
        t.slowest,
        back.duration_since(restarting),
        recovered
    );
    assert!(
        t.wrong.is_empty(),
        "answers other than success or 503: {:?}",
        t.wrong
    );
    assert!(
        t.unavailable > 0,
        "the restart went unnoticed: the test proves nothing"
    );
    assert!(t.slowest < SLOWEST_ANSWER, "an answer took {:?}", t.slowest);
    let recovered = recovered.expect("Stratus never answered again after the restart");
    assert!(recovered < RECOVERY, "Stratus took {recovered:?} to recover");
    assert!(
        t.accepted.len() > before,
        "no transition was accepted after the restart"
    );

    // Every accepted transition is there.
    let db = app.db().await;
    let ids: Vec<uuid::Uuid> = t.accepted.iter().map(|(_, s)| s.parse().unwrap()).collect();
    let found: i64 = db
        .query_one("SELECT count(*) FROM flow_run_state WHERE id = ANY($1)", &[&ids])
        .await
        .unwrap()
        .get(0);
    println!(
        "  {} transitions answered ACCEPT, {found} found in the database afterwards",
        ids.len()
    );
    assert_eq!(found as usize, ids.len(), "accepted transitions were lost");
    // And each run's last accepted state is its current one.
    let last: std::collections::HashMap<&str, &str> =
        t.accepted.iter().map(|(r, s)| (r.as_str(), s.as_str())).collect();
    for (run, state) in last {
        let run_id: uuid::Uuid = run.parse().unwrap();
        let current: uuid::Uuid = db
            .query_one("SELECT state_id FROM flow_run WHERE id = $1", &[&run_id])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            current.to_string(),
            state,
            "run {run} lost its last accepted state"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_load_answers_503_then_recovers_and_loses_no_accepted_transition() {
    let dir = std::env::temp_dir().join(format!("stratus-pg-faults-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let pg = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || LocalPostgres::start(&dir)
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{e}"));
    let pg = Arc::new(pg);
    let (admin, conn) = tokio_postgres::connect(&pg.admin_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    admin.batch_execute("CREATE DATABASE stratus").await.unwrap();
    drop(admin);
    let _ = conn.await;
    let pool = stratus_store::db::pool(&pg.url, CLIENTS).unwrap();
    stratus_store::db::migrate(&pool).await.unwrap();
    let app = Arc::new(TestApp::over(pg.url.clone(), pool.clone(), None).await);

    restart_under_load(&app, &pg, "fast").await;
    restart_under_load(&app, &pg, "immediate").await;

    drop(app);
    pool.close();
    if let Ok(pg) = Arc::try_unwrap(pg) {
        tokio::task::spawn_blocking(move || pg.stop()).await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
