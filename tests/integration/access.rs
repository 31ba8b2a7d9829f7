//! A server that requires keys (`STRATUS_AUTH=required`): every route of every family,
//! taken from the routers, refuses callers without a key, roles that may not, and keys of
//! another workspace; keys expire and are revoked; the web UI signs in with a key and
//! checks CSRF tokens; browsers on other sites are refused.

use std::time::Duration;

use http::Method;
use serde_json::json;
use stratus_domain::access::{need_for, Need, Role};
use stratus_store::config::AuthMode;
use stratus_store::db::access::{self, DEFAULT_ACCOUNT_ID, DEFAULT_WORKSPACE_ID};
use uuid::Uuid;

use crate::common::{Response, TestApp};

async fn hosted() -> TestApp {
    TestApp::spawn_with(|s| {
        s.auth = AuthMode::Required;
        s.auth_cache_seconds = 1;
    })
    .await
}

async fn key(app: &TestApp, role: Role) -> String {
    let client = app.system_client().await;
    let (_, secret) = access::create_key(
        &client,
        "test",
        DEFAULT_ACCOUNT_ID,
        Some(DEFAULT_WORKSPACE_ID),
        role,
        None,
    )
    .await
    .unwrap();
    secret
}

/// An admin key of a workspace in another account.
async fn foreign_key(app: &TestApp) -> String {
    let db = app.db().await;
    let account = Uuid::new_v4();
    let workspace = Uuid::new_v4();
    db.execute("INSERT INTO account (id, name) VALUES ($1, 'other')", &[&account])
        .await
        .unwrap();
    db.execute(
        "INSERT INTO workspace (id, account_id, name) VALUES ($1, $2, 'theirs')",
        &[&workspace, &account],
    )
    .await
    .unwrap();
    let client = app.system_client().await;
    access::create_key(&client, "theirs", account, Some(workspace), Role::Admin, None)
        .await
        .unwrap()
        .1
}

/// `method path` with `body`, sent with `auth` (`Bearer <key>`).
async fn with_key(app: &TestApp, auth: &str, method: Method, path: &str, body: Option<&str>) -> Response {
    app.raw(method, path, body.map(str::to_string), &[("authorization", auth)])
        .await
}

/// `method path` with `auth` as the Authorization header and `body` as JSON.
async fn as_key(
    app: &TestApp,
    auth: &str,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Response {
    with_key(app, auth, method, path, body.map(|b| b.to_string()).as_deref()).await
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// Each `{param}` becomes an id no row has: the answers are then the route's own 404s and
/// 422s, never its work.
fn concrete(path: &str) -> String {
    let id = Uuid::new_v4().to_string();
    path.split('/')
        .map(|seg| if seg.starts_with('{') { id.as_str() } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// The POST routes a viewer may call: they only read. Spelled out here so that a write
/// route cannot pass for a query by its name alone.
const READ_ONLY_POSTS: &[&str] = &[
    "/artifacts/count",
    "/artifacts/filter",
    "/artifacts/latest/count",
    "/artifacts/latest/filter",
    "/automations/count",
    "/automations/filter",
    "/block_documents/count",
    "/block_documents/filter",
    "/block_schemas/filter",
    "/block_types/filter",
    "/concurrency_limits/filter",
    "/deployments/count",
    "/deployments/filter",
    "/events/count-by/{countable}",
    "/events/filter",
    "/flow_run_notification_policies/filter",
    "/flow_runs/count",
    "/flow_runs/filter",
    "/flow_runs/history",
    "/flow_runs/lateness",
    "/flow_runs/{id}/input/filter",
    "/flows/count",
    "/flows/filter",
    "/logs/filter",
    "/saved_searches/filter",
    "/task_runs/count",
    "/task_runs/filter",
    "/task_runs/history",
    "/templates/validate",
    "/ui/flow_runs/history",
    "/ui/schemas/validate",
    "/ui/task_runs/count",
    "/ui/task_runs/dashboard/counts",
    "/v2/concurrency_limits/filter",
    "/variables/count",
    "/variables/filter",
    "/work_pools/count",
    "/work_pools/filter",
    "/work_pools/{name}/queues/filter",
    "/work_pools/{name}/workers/filter",
    "/work_queues/filter",
];

/// The writes a runner key (an agent, a worker, and the flows they start) may make.
const RUNNER_WRITES: &[&str] = &[
    "POST /flows",
    "POST /flow_runs",
    "PATCH /flow_runs/{id}",
    "POST /flow_runs/{id}/set_state",
    "POST /flow_runs/{id}/resume",
    "POST /flow_runs/{id}/input",
    "DELETE /flow_runs/{id}/input/{key}",
    "POST /task_runs",
    "PATCH /task_runs/{id}",
    "POST /task_runs/{id}/set_state",
    "POST /logs",
    "POST /artifacts",
    "PATCH /artifacts/{id}",
    "POST /events",
    "POST /v2/concurrency_limits/increment",
    "POST /v2/concurrency_limits/decrement",
    "POST /deployments/get_scheduled_flow_runs",
    "POST /deployments/{id}/create_flow_run",
    "POST /work_queues/{id}/get_runs",
    "POST /work_pools/{name}/get_scheduled_flow_runs",
    "POST /work_pools/{name}/workers/heartbeat",
    "POST /work_pools/{name}/message_queue/claim",
    "POST /work_pools/{name}/message_queue/delete",
    "POST /work_pools/{name}/message_queue/receive",
    "POST /work_pools/{name}/message_queue/release",
];

/// What a route needs, written out independently of `need_for`, so that a change of what
/// a role may do shows here.
fn expected_need(method: &str, path: &str) -> Need {
    let op = format!("{method} {path}");
    match () {
        _ if method == "GET" && (path == "/health" || path == "/version") => Need::Public,
        _ if method == "GET" && path == "/admin/version" => Need::Read,
        _ if path.starts_with("/admin/") => Need::Admin,
        _ if method == "GET" || (method == "POST" && READ_ONLY_POSTS.contains(&path)) => Need::Read,
        _ if RUNNER_WRITES.contains(&op.as_str()) => Need::Run,
        _ => Need::Write,
    }
}

/// Roles from the least to the most trusted, and what each may do at most.
fn most(role: Role) -> Need {
    match role {
        Role::Viewer => Need::Read,
        Role::Runner => Need::Run,
        Role::Developer => Need::Write,
        Role::Admin => Need::Admin,
    }
}

#[tokio::test]
async fn every_route_refuses_missing_keys_lesser_roles_and_other_workspaces() {
    let app = hosted().await;
    let viewer = bearer(&key(&app, Role::Viewer).await);
    let runner = bearer(&key(&app, Role::Runner).await);
    let developer = bearer(&key(&app, Role::Developer).await);
    let admin = bearer(&key(&app, Role::Admin).await);
    let foreign = bearer(&foreign_key(&app).await);
    let operations = stratus::api().operations().to_vec();
    assert!(operations.len() > 100, "the routers list every route");
    let mut failures = Vec::new();
    for op in &operations {
        let method = Method::from_bytes(op.method.as_bytes()).unwrap();
        let path = concrete(&op.path);
        let url = format!("/api{path}");
        let body = (method != Method::GET && method != Method::DELETE).then(|| "{}".to_string());
        let need = expected_need(op.method, &op.path);
        if need_for(op.method, &op.path) != need {
            failures.push(format!(
                "{} {}: the server says it needs {:?}, this test {need:?}",
                op.method,
                op.path,
                need_for(op.method, &op.path)
            ));
        }
        let call = |auth: Option<String>| {
            let (method, url, body) = (method.clone(), url.clone(), body.clone());
            let app = &app;
            async move {
                let headers: Vec<(&str, String)> = auth.into_iter().map(|a| ("authorization", a)).collect();
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                app.raw(method, &url, body, &headers).await
            }
        };
        let expect = |failures: &mut Vec<String>, who: &str, status: http::StatusCode, ok: bool| {
            if !ok {
                failures.push(format!("{} {} as {who}: {status}", op.method, op.path));
            }
        };
        let none = call(None).await.status;
        if need == Need::Public {
            expect(&mut failures, "nobody (public)", none, none.is_success());
            continue;
        }
        expect(&mut failures, "nobody", none, none == 401);
        let theirs = call(Some(foreign.clone())).await.status;
        expect(&mut failures, "another workspace's admin", theirs, theirs == 404);
        for (role, key) in [
            (Role::Viewer, &viewer),
            (Role::Runner, &runner),
            (Role::Developer, &developer),
            (Role::Admin, &admin),
        ] {
            let status = call(Some(key.clone())).await.status;
            let allowed = need <= most(role);
            let ok = if allowed {
                status != 401 && status != 403 && !status.is_server_error()
            } else {
                status == 403
            };
            expect(&mut failures, role.as_str(), status, ok);
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn revoked_and_expired_keys_stop_working() {
    let app = hosted().await;
    let client = app.system_client().await;
    let (listed, secret) = access::create_key(&client, "ci", DEFAULT_ACCOUNT_ID, None, Role::Runner, None)
        .await
        .unwrap();
    let auth = bearer(&secret);
    let flows = with_key(&app, &auth, Method::POST, "/api/flows/filter", Some("{}")).await;
    assert_eq!(flows.status, 200, "{}", flows.text);
    assert!(access::revoke_key(&client, DEFAULT_ACCOUNT_ID, None, listed.id)
        .await
        .unwrap());
    // Within the cache's time (1 s here, STRATUS_AUTH_CACHE_SECONDS) it stops.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = with_key(&app, &auth, Method::POST, "/api/flows/filter", Some("{}")).await;
    assert_eq!(after.status, 401, "{}", after.text);
    assert_eq!(after.headers["www-authenticate"], "Bearer");

    let (_, expired) = access::create_key(
        &client,
        "old",
        DEFAULT_ACCOUNT_ID,
        None,
        Role::Admin,
        Some(chrono::Utc::now() - chrono::Duration::seconds(1)),
    )
    .await
    .unwrap();
    let res = with_key(&app, &bearer(&expired), Method::GET, "/api/flows/filter", None).await;
    assert_eq!(res.status, 401, "{}", res.text);
    assert!(
        res.body["detail"].as_str().unwrap().contains("expired"),
        "{}",
        res.text
    );
    let bogus = with_key(&app, "Bearer nonsense", Method::GET, "/api/health", None).await;
    assert_eq!(
        bogus.status, 200,
        "health needs no key, and a bad one does not matter there"
    );
}

#[tokio::test]
async fn viewers_never_see_secrets_and_runners_cannot_change_what_agents_run() {
    let app = hosted().await;
    let admin = bearer(&key(&app, Role::Admin).await);
    let viewer = bearer(&key(&app, Role::Viewer).await);
    let runner = bearer(&key(&app, Role::Runner).await);
    let block_type = as_key(
        &app,
        &admin,
        Method::POST,
        "/api/block_types/",
        Some(json!({"name": "Creds", "slug": "creds"})),
    )
    .await;
    assert_eq!(block_type.status, 201, "{}", block_type.text);
    let fields = json!({"title": "Creds", "type": "object",
        "properties": {"password": {"type": "string", "format": "password", "writeOnly": true}},
        "block_type_slug": "creds", "secret_fields": ["password"], "block_schema_references": {}});
    let schema = as_key(
        &app,
        &admin,
        Method::POST,
        "/api/block_schemas/",
        Some(json!({"fields": fields, "block_type_id": block_type.body["id"], "capabilities": []})),
    )
    .await;
    assert_eq!(schema.status, 201, "{}", schema.text);
    let doc = as_key(
        &app,
        &admin,
        Method::POST,
        "/api/block_documents/",
        Some(json!({
            "name": "token",
            "block_type_id": block_type.body["id"],
            "block_schema_id": schema.body["id"],
            "data": {"password": "hunter2-very-secret"},
        })),
    )
    .await;
    assert_eq!(doc.status, 201, "{}", doc.text);
    let id = doc.body["id"].as_str().unwrap();
    let path = format!("/api/block_documents/{id}?include_secrets=true");
    let by_viewer = as_key(&app, &viewer, Method::GET, &path, None).await;
    assert_eq!(by_viewer.status, 403, "{}", by_viewer.text);
    assert!(!by_viewer.text.contains("hunter2"));
    let hidden = as_key(
        &app,
        &viewer,
        Method::GET,
        &format!("/api/block_documents/{id}"),
        None,
    )
    .await;
    assert_eq!(hidden.status, 200);
    assert!(!hidden.text.contains("hunter2"), "{}", hidden.text);
    let filtered = as_key(
        &app,
        &viewer,
        Method::POST,
        "/api/block_documents/filter",
        Some(json!({"include_secrets": true})),
    )
    .await;
    assert_eq!(filtered.status, 403, "{}", filtered.text);
    let by_runner = as_key(&app, &runner, Method::GET, &path, None).await;
    assert_eq!(by_runner.status, 200);
    assert!(
        by_runner.text.contains("hunter2"),
        "flows run by agents read their credentials"
    );

    let flow = as_key(
        &app,
        &runner,
        Method::POST,
        "/api/flows/",
        Some(json!({"name": "f"})),
    )
    .await;
    assert_eq!(flow.status, 201, "{}", flow.text);
    let run = as_key(
        &app,
        &runner,
        Method::POST,
        "/api/flow_runs/",
        Some(json!({"flow_id": flow.body["id"]})),
    )
    .await;
    assert_eq!(run.status, 201, "{}", run.text);
    let with_env = as_key(
        &app,
        &runner,
        Method::POST,
        "/api/flow_runs/",
        Some(json!({"flow_id": flow.body["id"], "job_variables": {"env": {"LD_PRELOAD": "/tmp/x.so"}}})),
    )
    .await;
    assert_eq!(with_env.status, 403, "{}", with_env.text);
    let patch = as_key(
        &app,
        &runner,
        Method::PATCH,
        &format!("/api/flow_runs/{}", run.body["id"].as_str().unwrap()),
        Some(json!({"job_variables": {"env": {"A": "1"}}})),
    )
    .await;
    assert_eq!(patch.status, 403, "{}", patch.text);
}

#[tokio::test]
async fn the_web_ui_signs_in_with_a_key_and_checks_csrf_tokens() {
    let app = hosted().await;
    let admin = key(&app, Role::Developer).await;
    // Pages redirect to the login page until signed in.
    let page = app.get("/flow-runs?state=x").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.headers["location"], "/login?next=/flow-runs%3Fstate%3Dx");
    let login = app.get("/login").await;
    assert_eq!(login.status, 200);
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(login.headers["x-content-type-options"], "nosniff");
    let set_cookie = login.headers["set-cookie"].to_str().unwrap().to_string();
    let login_csrf = set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    assert!(login.text.contains(&login_csrf));

    let form = |key: &str, csrf: &str| format!("key={key}&csrf_token={csrf}&next=%2Fflow-runs");
    let cookie = format!("stratus_login_csrf={login_csrf}");
    let form_headers = |cookie: &str| -> Vec<(&'static str, String)> {
        vec![
            ("content-type", "application/x-www-form-urlencoded".to_string()),
            ("cookie", cookie.to_string()),
        ]
    };
    let post = |path: &'static str, body: String, headers: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            app.raw(Method::POST, path, Some(body), &headers).await
        }
    };
    let forged = post("/login", form(&admin, "wrong"), form_headers(&cookie)).await;
    assert_eq!(
        forged.status, 403,
        "a login form not sent from the page is refused"
    );
    let wrong_key = post("/login", form("stratus_nope", &login_csrf), form_headers(&cookie)).await;
    assert_eq!(wrong_key.status, 401);
    let signed_in = post("/login", form(&admin, &login_csrf), form_headers(&cookie)).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.text);
    assert_eq!(signed_in.headers["location"], "/flow-runs");
    let session_cookie = signed_in
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("stratus_session="))
        .unwrap();
    assert!(
        session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Lax"),
        "{session_cookie}"
    );
    let session = session_cookie.split(';').next().unwrap().to_string();

    let runs = app
        .raw(Method::GET, "/flow-runs", None, &[("cookie", &session)])
        .await;
    assert_eq!(runs.status, 200, "{}", runs.text);
    let csrf = runs
        .text
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    assert!(runs.text.contains("Sign out"));

    // The API with the session cookie: reads as is, changes only with the CSRF token.
    let list = app
        .raw(
            Method::POST,
            "/api/flows/filter",
            Some("{}".into()),
            &[("cookie", &session), ("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(list.status, 200);
    let no_token = app
        .raw(
            Method::POST,
            "/api/flows/",
            Some(r#"{"name": "f"}"#.into()),
            &[("cookie", &session)],
        )
        .await;
    assert_eq!(no_token.status, 403, "{}", no_token.text);
    assert_eq!(no_token.body["detail"], "Missing or invalid CSRF token.");
    let with_token = app
        .raw(
            Method::POST,
            "/api/flows/",
            Some(r#"{"name": "f"}"#.into()),
            &[("cookie", &session), ("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(with_token.status, 201, "{}", with_token.text);

    // Signing out needs the token too, and then the cookie is worth nothing.
    let logout_headers = |body_cookie: &str| form_headers(body_cookie);
    let refused = post("/logout", "csrf_token=".to_string(), logout_headers(&session)).await;
    assert_eq!(refused.status, 403);
    let out = post("/logout", format!("csrf_token={csrf}"), logout_headers(&session)).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.headers["location"], "/login");
    let after = app
        .raw(Method::GET, "/flow-runs", None, &[("cookie", &session)])
        .await;
    assert_eq!(after.status, 303);
}

#[tokio::test]
async fn other_sites_cannot_use_a_browser_against_an_open_server() {
    let app = TestApp::spawn().await;
    assert_eq!(app.state.settings.auth, AuthMode::Open);
    let clear = app
        .raw(
            Method::POST,
            "/api/admin/database/clear",
            Some(r#"{"confirm": true}"#.into()),
            &[("origin", "https://evil.example"), ("host", "127.0.0.1:4200")],
        )
        .await;
    assert_eq!(clear.status, 403, "{}", clear.text);
    let same_site = app
        .raw(
            Method::POST,
            "/api/flows/",
            Some(r#"{"name": "f"}"#.into()),
            &[("origin", "http://127.0.0.1:4200"), ("host", "127.0.0.1:4200")],
        )
        .await;
    assert_eq!(same_site.status, 201, "{}", same_site.text);
    let rebound = app
        .raw(
            Method::GET,
            "/api/flows/filter",
            None,
            &[("host", "attacker.example:4200")],
        )
        .await;
    assert_eq!(rebound.status, 400, "{}", rebound.text);
    let page = app
        .raw(Method::GET, "/", None, &[("host", "attacker.example")])
        .await;
    assert_eq!(page.status, 400);
    let preflight = app
        .raw(
            Method::OPTIONS,
            "/api/admin/database/clear",
            None,
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "POST"),
            ],
        )
        .await;
    assert!(preflight.headers.get("access-control-allow-origin").is_none());
}

/// Signs in to the web UI with `key`; returns the session cookie and its CSRF token.
pub(crate) async fn sign_in(app: &TestApp, key: &str) -> (String, String) {
    let login = app.get("/login").await;
    let set_cookie = login.headers["set-cookie"].to_str().unwrap().to_string();
    let login_csrf = set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    let body = format!("key={key}&csrf_token={login_csrf}&next=%2F");
    let cookie = format!("stratus_login_csrf={login_csrf}");
    let res = app
        .raw(
            Method::POST,
            "/login",
            Some(body),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", &cookie),
            ],
        )
        .await;
    assert_eq!(res.status, 303, "{}", res.text);
    let session = res
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("stratus_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = app.raw(Method::GET, "/", None, &[("cookie", &session)]).await;
    let csrf = page
        .text
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    (session, csrf)
}

#[tokio::test]
async fn admins_make_and_revoke_keys_from_the_web_ui() {
    let app = hosted().await;
    let (admin, csrf) = sign_in(&app, &key(&app, Role::Admin).await).await;
    let (developer, _) = sign_in(&app, &key(&app, Role::Developer).await).await;
    let form = |session: &str, path: &str, body: String| {
        let (session, path) = (session.to_string(), path.to_string());
        let app = &app;
        async move {
            app.raw(
                Method::POST,
                &path,
                Some(body),
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("cookie", &session),
                ],
            )
            .await
        }
    };

    let listed = app
        .raw(Method::GET, "/api-keys", None, &[("cookie", &admin)])
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let by_developer = app
        .raw(Method::GET, "/api-keys", None, &[("cookie", &developer)])
        .await;
    assert_eq!(by_developer.status, 403);

    for bad in [
        "name=a%00b",
        "name=%20",
        "name=x&expires_in_days=99999999999999999999",
    ] {
        let res = form(
            &admin,
            "/api-keys",
            format!("{bad}&role=runner&csrf_token={csrf}"),
        )
        .await;
        assert_eq!(res.status, 400, "{bad}: {}", res.text);
    }
    let forged = form(&admin, "/api-keys", "name=ci&role=runner&csrf_token=nope".into()).await;
    assert_eq!(
        forged.status, 403,
        "a form without the session's token is refused"
    );
    let made = form(
        &admin,
        "/api-keys",
        format!("name=ci-agent&role=runner&expires_in_days=30&csrf_token={csrf}"),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.text);
    let secret = made
        .text
        .split("id=\"new-key-value\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap()
        .to_string();
    assert!(secret.starts_with("stratus_"), "{secret}");
    let auth = bearer(&secret);
    let works = with_key(&app, &auth, Method::POST, "/api/logs/", Some("[]")).await;
    assert_eq!(works.status, 201, "the new key is a runner: {}", works.text);
    let relisted = app
        .raw(Method::GET, "/api-keys", None, &[("cookie", &admin)])
        .await;
    assert!(
        relisted.text.contains("ci-agent") && !relisted.text.contains(&secret),
        "shown once only"
    );

    let client = app.system_client().await;
    let id = access::list_keys(&client, DEFAULT_ACCOUNT_ID, None)
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name == "ci-agent")
        .unwrap()
        .id;
    let path = format!("/api-keys/{id}/revoke");
    let refused = form(&developer, &path, "csrf_token=x".into()).await;
    assert_eq!(refused.status, 403);
    let revoked = form(&admin, &path, format!("csrf_token={csrf}")).await;
    assert_eq!(revoked.status, 303, "{}", revoked.text);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stopped = with_key(&app, &auth, Method::POST, "/api/logs/", Some("[]")).await;
    assert_eq!(stopped.status, 401);
}

#[tokio::test]
async fn pages_offer_only_the_changes_the_role_may_make() {
    let app = hosted().await;
    let developer = bearer(&key(&app, Role::Developer).await);
    let runner = bearer(&key(&app, Role::Runner).await);
    let viewer = bearer(&key(&app, Role::Viewer).await);
    let pool = as_key(
        &app,
        &developer,
        Method::POST,
        "/api/work_pools/",
        Some(json!({"name": "p", "type": "process"})),
    )
    .await;
    assert_eq!(pool.status, 201, "{}", pool.text);
    let flow = as_key(
        &app,
        &developer,
        Method::POST,
        "/api/flows/",
        Some(json!({"name": "f"})),
    )
    .await;
    let deployment = as_key(
        &app,
        &developer,
        Method::POST,
        "/api/deployments/",
        Some(json!({"name": "d", "flow_id": flow.body["id"], "work_pool_name": "p"})),
    )
    .await;
    assert_eq!(deployment.status, 201, "{}", deployment.text);
    let run = as_key(
        &app,
        &developer,
        Method::POST,
        &format!(
            "/api/deployments/{}/create_flow_run",
            deployment.body["id"].as_str().unwrap()
        ),
        Some(json!({})),
    )
    .await;
    assert_eq!(run.status, 201, "{}", run.text);
    let kind = as_key(
        &app,
        &developer,
        Method::POST,
        "/api/block_types/",
        Some(json!({"name": "Hook", "slug": "slack-webhook"})),
    )
    .await;
    let schema = as_key(
        &app,
        &developer,
        Method::POST,
        "/api/block_schemas/",
        Some(
            json!({"block_type_id": kind.body["id"], "fields": {"properties": {"url": {"type": "string"}}}}),
        ),
    )
    .await;
    let hook = as_key(
        &app,
        &developer,
        Method::POST,
        "/api/block_documents/",
        Some(
            json!({"name": "hook", "block_type_id": kind.body["id"], "block_schema_id": schema.body["id"],
                    "data": {"url": "https://example.com"}}),
        ),
    )
    .await;
    assert_eq!(hook.status, 201, "{}", hook.text);
    let policy = as_key(
        &app,
        &developer,
        Method::POST,
        "/api/flow_run_notification_policies/",
        Some(json!({"block_document_id": hook.body["id"], "state_names": [], "tags": []})),
    )
    .await;
    assert_eq!(policy.status, 201, "{}", policy.text);

    let deployment_page = format!("/deployments/{}", deployment.body["id"].as_str().unwrap());
    let run_page = format!("/flow-runs/{}", run.body["id"].as_str().unwrap());
    // (page, what a writer gets, what a runner gets too)
    let cases = [
        ("/variables", "id=\"create-variable\"", false),
        ("/concurrency-limits", "id=\"create-tag-limit\"", false),
        ("/work-pools", "id=\"create-pool\"", false),
        ("/work-pools/p", "id=\"edit-pool\"", false),
        ("/blocks", "href=\"/blocks/catalog\"", false),
        ("/notifications", "Create a notification", false),
        ("/notifications", ">Pause</button>", false),
        (deployment_page.as_str(), "id=\"edit-deployment\"", false),
        (deployment_page.as_str(), "id=\"run-form\"", true),
        (run_page.as_str(), ">Cancel</button>", true),
        (run_page.as_str(), "id=\"change-state\"", true),
        (run_page.as_str(), "data-api=\"DELETE /api/flow_runs/", false),
    ];
    for (page, control, runners_too) in cases {
        for (who, auth, offered) in [
            ("developer", &developer, true),
            ("runner", &runner, runners_too),
            ("viewer", &viewer, false),
        ] {
            let res = as_key(&app, auth, Method::GET, page, None).await;
            assert_eq!(res.status, 200, "{who} {page}: {}", res.text);
            assert_eq!(res.text.contains(control), offered, "{who} on {page}: {control}");
        }
    }
}
