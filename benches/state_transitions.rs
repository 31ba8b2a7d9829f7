//! Measures the state-transition hot path as the stock client drives it: for each task run,
//! `POST /task_runs/` then `set_state` RUNNING then COMPLETED, with N requests in flight.
//!
//! `cargo bench --bench state_transitions -- http://127.0.0.1:4200 [in_flight] [tasks]`
//! against a running `stratus server start` (loopback only). Prints transitions per second
//! and latency percentiles of the set_state calls. With `PREFECT_API_KEY` set, every
//! request carries it (`Authorization: Bearer`), to measure a server that requires keys.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Conn {
    reader: BufReader<TcpStream>,
    host: String,
    auth: String,
}

impl Conn {
    async fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).ok();
        let auth = std::env::var("PREFECT_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .map(|k| format!("Authorization: Bearer {k}\r\n"))
            .unwrap_or_default();
        Conn {
            reader: BufReader::new(stream),
            host: addr.to_string(),
            auth,
        }
    }

    async fn post(&mut self, path: &str, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            self.auth,
            body.len()
        );
        self.reader
            .get_mut()
            .write_all(req.as_bytes())
            .await
            .expect("write");
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).await.expect("status");
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).await.expect("header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut buf = vec![0; length];
        self.reader.read_exact(&mut buf).await.expect("body");
        (status, serde_json::from_slice(&buf).unwrap_or(Value::Null))
    }
}

fn state(kind: &str) -> Value {
    json!({"state": {"type": kind, "name": null, "message": null, "data": null, "state_details": {}}, "force": false})
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:4200".into());
    let in_flight: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
    let tasks: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(4000);
    let addr = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    assert!(
        addr.starts_with("127.") || addr.starts_with("localhost"),
        "loopback only"
    );

    let mut setup = Conn::open(&addr).await;
    let (_, flow) = setup.post("/api/flows/", &json!({"name": "bench"})).await;
    let (_, run) = setup
        .post("/api/flow_runs/", &json!({"flow_id": flow["id"]}))
        .await;
    let run_id = run["id"].clone();
    setup
        .post(
            &format!("/api/flow_runs/{}/set_state", run_id.as_str().unwrap()),
            &state("RUNNING"),
        )
        .await;

    let started = Instant::now();
    let per_worker = tasks / in_flight;
    let mut workers = Vec::new();
    for w in 0..in_flight {
        let addr = addr.clone();
        let run_id = run_id.clone();
        workers.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await;
            let mut latencies = Vec::with_capacity(per_worker * 3);
            for i in 0..per_worker {
                let t = Instant::now();
                let (_, task) = conn
                    .post(
                        "/api/task_runs/",
                        &json!({"flow_run_id": run_id, "task_key": format!("bench-{w}"), "dynamic_key": i.to_string(), "name": format!("bench-{w}-{i}")}),
                    )
                    .await;
                latencies.push(t.elapsed());
                let path = format!("/api/task_runs/{}/set_state", task["id"].as_str().unwrap_or_default());
                for kind in ["RUNNING", "COMPLETED"] {
                    let t = Instant::now();
                    let (status, _) = conn.post(&path, &state(kind)).await;
                    assert_eq!(status, 201, "transition refused");
                    latencies.push(t.elapsed());
                }
            }
            latencies
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for w in workers {
        latencies.extend(w.await.expect("worker"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    let transitions = latencies.len();
    println!(
        "{transitions} transitions (task create + RUNNING + COMPLETED) with {in_flight} in flight in {:.2?}: {:.0}/s; p50 {:.2?} p99 {:.2?} max {:.2?}",
        elapsed,
        transitions as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        latencies[latencies.len() - 1]
    );
}
