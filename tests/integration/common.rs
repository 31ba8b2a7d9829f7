//! Integration-test harness: the real app over a fresh Postgres database cloned from a
//! migrated template (one template per migration set, one database per test).

#![allow(dead_code)]

use axum::body::Body;
use axum::Router;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use stratus_http::AppState;
use stratus_store::config::Settings;
use tower::ServiceExt;
use tower_http::normalize_path::NormalizePath;

/// The server Postgres the tests create databases on.
pub fn admin_url() -> String {
    std::env::var("STRATUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

use stratus_store::url::with_database;

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to test Postgres at {url}: {e}"));
    tokio::spawn(conn);
    client
}

fn migrations_digest() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let mut hash = Sha256::new();
    for path in names {
        hash.update(path.file_name().unwrap().to_string_lossy().as_bytes());
        hash.update(std::fs::read(&path).unwrap());
    }
    hex::encode(&hash.finalize()[..6])
}

/// Creates (once per migration set, across processes) the migrated template database.
async fn template() -> String {
    let name = format!("stratus_template_{}", migrations_digest());
    let admin = connect(&admin_url()).await;
    admin
        .execute("SELECT pg_advisory_lock(74807233)", &[])
        .await
        .unwrap();
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .is_some();
    if !exists {
        let building = format!("{name}_building");
        admin
            .execute(&format!("DROP DATABASE IF EXISTS {building}"), &[])
            .await
            .unwrap();
        admin
            .execute(&format!("CREATE DATABASE {building}"), &[])
            .await
            .unwrap();
        {
            let pool = stratus_store::db::pool(&with_database(&admin_url(), &building), 1).unwrap();
            stratus_store::db::migrate(&pool).await.unwrap();
            pool.close();
        }
        admin
            .execute(&format!("ALTER DATABASE {building} RENAME TO {name}"), &[])
            .await
            .unwrap();
    }
    admin
        .execute("SELECT pg_advisory_unlock(74807233)", &[])
        .await
        .unwrap();
    name
}

pub struct TestApp {
    pub service: NormalizePath<Router>,
    pub state: AppState,
    pub database_url: String,
    /// Drops the database when the last app over it goes (None: someone else cleans up).
    _database: Option<std::sync::Arc<DroppedDatabase>>,
}

/// A database this test made, dropped when this is: the tests leave a user's Postgres as
/// they found it.
pub struct DroppedDatabase {
    pub name: String,
    pool: Option<deadpool_postgres::Pool>,
}

impl DroppedDatabase {
    pub fn new(name: &str, pool: Option<deadpool_postgres::Pool>) -> Self {
        DroppedDatabase {
            name: name.to_string(),
            pool,
        }
    }
}

impl Drop for DroppedDatabase {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.close();
        }
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // A thread of its own: this may run inside the test's runtime, which cannot block.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                let Ok((client, conn)) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await
                else {
                    return;
                };
                tokio::spawn(conn);
                // DROP DATABASE waits for a checkpoint (seconds on a busy server). The server
                // carries it out even when the client has hung up (it only notices when it
                // answers), so the test waits only long enough for the statement to be sent
                // over loopback, not for the drop; a database a slow machine leaves behind is
                // dropped by scripts/test's sweep.
                let _ = tokio::time::timeout(std::time::Duration::from_millis(30), client.simple_query(&sql))
                    .await;
            });
        })
        .join();
    }
}

pub struct Response {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
    pub bytes: Vec<u8>,
    pub headers: http::HeaderMap,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    /// A fresh app whose settings `configure` changes first (hosted mode, say).
    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
        stratus_http::serve::init_tracing();
        let template = template().await;
        let db = format!("stratus_test_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&admin_url()).await;
        admin
            .execute(&format!("CREATE DATABASE {db} TEMPLATE {template}"), &[])
            .await
            .unwrap();
        let database_url = with_database(&admin_url(), &db);
        let pool = stratus_store::db::pool(&database_url, 8).unwrap();
        let database = std::sync::Arc::new(DroppedDatabase::new(&db, Some(pool.clone())));
        TestApp::over_with(database_url, pool, Some(database), configure).await
    }

    /// The app over a migrated database that `database` drops when the app goes.
    pub async fn over(
        database_url: String,
        pool: deadpool_postgres::Pool,
        database: Option<std::sync::Arc<DroppedDatabase>>,
    ) -> TestApp {
        TestApp::over_with(database_url, pool, database, |_| {}).await
    }

    async fn over_with(
        database_url: String,
        pool: deadpool_postgres::Pool,
        database: Option<std::sync::Arc<DroppedDatabase>>,
        configure: impl FnOnce(&mut Settings),
    ) -> TestApp {
        stratus_http::serve::init_tracing();
        let mut settings = Settings::from_env().unwrap();
        settings.database_url = Some(database_url.clone());
        settings.tag_concurrency_slot_wait_seconds = 1;
        configure(&mut settings);
        let state = stratus_aws::state(settings, pool).await.unwrap();
        let service = stratus_http::serve::normalize(stratus::app(state.clone()));
        TestApp {
            service,
            state,
            database_url,
            _database: database,
        }
    }

    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        self.raw(method, path, body.map(|b| b.to_string()), &[]).await
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Body::from(body.unwrap_or_default())).unwrap();
        let res = self.service.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Response {
            status,
            body,
            text,
            bytes: bytes.to_vec(),
            headers,
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.request(Method::POST, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Response {
        self.request(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path, None).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Response {
        self.request(Method::PUT, path, Some(body)).await
    }

    /// The same app and database, publishing to `queue` instead.
    pub fn with_queue(&self, queue: std::sync::Arc<dyn stratus_store::queue::MessageQueue>) -> TestApp {
        let state = self.state.clone().with_queue(queue);
        TestApp {
            service: stratus_http::serve::normalize(stratus::app(state.clone())),
            state,
            database_url: self.database_url.clone(),
            _database: self._database.clone(),
        }
    }

    /// A pooled connection in the default workspace, as a request there gets.
    pub async fn default_workspace_client(&self) -> deadpool_postgres::Object {
        stratus_store::tenancy::within(
            stratus_store::db::access::DEFAULT_WORKSPACE_ID,
            self.state.db.get(),
        )
        .await
        .unwrap()
    }

    /// A pooled connection that sees every workspace and who may sign in.
    pub async fn system_client(&self) -> deadpool_postgres::Object {
        stratus_store::tenancy::system(self.state.db.get()).await.unwrap()
    }

    /// A direct connection to this test's database, for assertions on rows: as the owner
    /// (it sees every workspace), writing rows into the default workspace.
    pub async fn db(&self) -> tokio_postgres::Client {
        let client = connect(&self.database_url).await;
        client
            .execute(
                "SELECT set_config('stratus.workspace', $1, false)",
                &[&stratus_store::db::access::DEFAULT_WORKSPACE_ID.to_string()],
            )
            .await
            .unwrap();
        client
    }
}

/// LocalStack's endpoint when the test command started it (`STRATUS_TEST_AWS_ENDPOINT`).
/// Under the test command (`STRATUS_TEST_REQUIRE_LOCALSTACK=1`) its absence is a failure,
/// not a skip.
pub fn localstack() -> Option<String> {
    let endpoint = std::env::var("STRATUS_TEST_AWS_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty());
    if endpoint.is_none() && std::env::var_os("STRATUS_TEST_REQUIRE_LOCALSTACK").is_some() {
        panic!("STRATUS_TEST_REQUIRE_LOCALSTACK is set but STRATUS_TEST_AWS_ENDPOINT is not");
    }
    if endpoint.is_none() {
        eprintln!("LocalStack is not running (scripts/test starts it): the SQS part of this test is skipped");
    }
    endpoint
}
