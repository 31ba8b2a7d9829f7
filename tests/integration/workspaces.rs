//! Two workspaces on one server: each sees only its own flows, runs, logs, blocks,
//! variables and the rest, through the API (plain `/api` for the default workspace,
//! `/api/accounts/{a}/workspaces/{w}` for another) and the web UI; names are unique per
//! workspace; the scheduler and `admin/database/clear` work workspace by workspace.

use http::Method;
use serde_json::{json, Value};
use stratus_domain::access::Role;
use stratus_store::config::AuthMode;
use stratus_store::db::access::{self, DEFAULT_ACCOUNT_ID, DEFAULT_WORKSPACE_ID};

use crate::access::sign_in;
use crate::common::{Response, TestApp};

/// A second account with one workspace (and Prefect's block types); its API's base path.
async fn second_workspace(app: &TestApp) -> access::Workspace {
    let client = app.system_client().await;
    let account = access::create_account(&client, "acme").await.unwrap().unwrap();
    let workspace = access::create_workspace(&client, account, "data")
        .await
        .unwrap()
        .unwrap();
    stratus_store::tenancy::within(
        workspace.id,
        stratus_store::system_blocks::install_in_scope(&app.state.db),
    )
    .await
    .unwrap();
    workspace
}

async fn admin_key(app: &TestApp, account: uuid::Uuid, workspace: Option<uuid::Uuid>) -> String {
    let client = app.system_client().await;
    let (_, secret) = access::create_key(&client, "admin", account, workspace, Role::Admin, None)
        .await
        .unwrap();
    format!("Bearer {secret}")
}

async fn call(app: &TestApp, auth: &str, method: Method, path: &str, body: Option<Value>) -> Response {
    let mut headers = vec![];
    if !auth.is_empty() {
        headers.push(("authorization", auth));
    }
    app.raw(method, path, body.map(|b| b.to_string()), &headers).await
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

/// What workspace A (the default one) holds, for B to look for.
struct Theirs {
    flow: String,
    run: String,
    task: String,
    deployment: String,
    queue: String,
    variable: String,
    limit: String,
    block_type: String,
    schema: String,
    schema_checksum: String,
    document: String,
    artifact: String,
}

/// A route's path with A's values for its parameters; None for routes this test does not
/// fill (their parameters name nothing A made).
fn with_theirs(template: &str, a: &Theirs) -> Option<String> {
    if !template.contains('{') {
        return None;
    }
    let segments: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    let family = segments[0];
    let mut out = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        if !seg.starts_with('{') {
            out.push(seg.to_string());
            continue;
        }
        let before = if i > 0 { segments[i - 1] } else { "" };
        let value = match (family, before, *seg) {
            ("flows", "name", _) => "a-only",
            ("flows", "flows", "{id}") => &a.flow,
            ("flow_runs", "flow_runs", "{id}") => &a.run,
            ("task_runs", "task_runs", "{id}") => &a.task,
            ("deployments", "name", "{flow}") => "a-only",
            ("deployments", _, "{name}") => "dep-a",
            ("deployments", "deployments", "{id}") => &a.deployment,
            ("work_pools", "work_pools", "{name}") => "pool-a",
            ("work_pools", "queues", "{queue}") => "default",
            ("work_queues", "work_queues", "{id}") => &a.queue,
            ("variables", "name", _) => "only-a",
            ("variables", "variables", "{id}") => &a.variable,
            ("concurrency_limits", "tag", _) => "tag-a",
            ("concurrency_limits", "concurrency_limits", "{id}") => &a.limit,
            ("block_documents", "block_documents", "{id}") => &a.document,
            ("block_types", "slug", _) => "creds-a",
            ("block_types", "name", "{name}") => "token",
            ("block_types", "block_types", "{id}") => &a.block_type,
            ("block_schemas", "checksum", _) => &a.schema_checksum,
            ("block_schemas", "block_schemas", "{id}") => &a.schema,
            ("artifacts", "artifacts", "{id}") => &a.artifact,
            _ => return None,
        };
        out.push(value.to_string());
    }
    Some(format!("/{}", out.join("/")))
}

/// Fills workspace A (plain `/api`) with one of everything.
async fn fill_default_workspace(app: &TestApp, a: &str) -> Theirs {
    let post = |path: &str, body: Value| {
        let path = path.to_string();
        async move {
            let res = call(app, a, Method::POST, &path, Some(body)).await;
            assert!(res.status.is_success(), "{path}: {} {}", res.status, res.text);
            res.body
        }
    };
    let flow = post("/api/flows/", json!({"name": "a-only"})).await;
    post("/api/flows/", json!({"name": "etl"})).await;
    let run = post("/api/flow_runs/", json!({"flow_id": flow["id"], "name": "a-run"})).await;
    let task = post(
        "/api/task_runs/",
        json!({"flow_run_id": run["id"], "task_key": "t", "dynamic_key": "0", "name": "a-task"}),
    )
    .await;
    post(
        "/api/logs/",
        json!([{"name": "a", "level": 20, "message": "a secret log line", "timestamp": "2026-12-05T00:00:00Z", "flow_run_id": run["id"]}]),
    )
    .await;
    let pool = post("/api/work_pools/", json!({"name": "pool-a", "type": "process"})).await;
    let deployment = post(
        "/api/deployments/",
        json!({"name": "dep-a", "flow_id": flow["id"], "work_pool_name": "pool-a"}),
    )
    .await;
    let variable = post("/api/variables/", json!({"name": "only-a", "value": "a"})).await;
    post("/api/variables/", json!({"name": "shared", "value": "a"})).await;
    let limit = post(
        "/api/concurrency_limits/",
        json!({"tag": "tag-a", "concurrency_limit": 1}),
    )
    .await;
    let block_type = post("/api/block_types/", json!({"name": "Creds A", "slug": "creds-a"})).await;
    let fields = json!({"title": "Creds A", "type": "object",
        "properties": {"password": {"type": "string", "format": "password", "writeOnly": true}},
        "block_type_slug": "creds-a", "secret_fields": ["password"], "block_schema_references": {}});
    let schema = post(
        "/api/block_schemas/",
        json!({"fields": fields, "block_type_id": block_type["id"], "capabilities": []}),
    )
    .await;
    let document = post(
        "/api/block_documents/",
        json!({"name": "token", "data": {"password": "hunter2"}, "block_schema_id": schema["id"], "block_type_id": block_type["id"]}),
    )
    .await;
    let artifact = post(
        "/api/artifacts/",
        json!({"key": "a-key", "type": "markdown", "data": "# a", "flow_run_id": run["id"]}),
    )
    .await;
    let id = |v: &Value| v["id"].as_str().unwrap().to_string();
    Theirs {
        flow: id(&flow),
        run: id(&run),
        task: id(&task),
        deployment: id(&deployment),
        queue: pool["default_queue_id"].as_str().unwrap().to_string(),
        variable: id(&variable),
        limit: id(&limit),
        block_type: id(&block_type),
        schema: id(&schema),
        schema_checksum: schema["checksum"].as_str().unwrap().to_string(),
        document: id(&document),
        artifact: id(&artifact),
    }
}

#[tokio::test]
async fn each_workspace_sees_only_its_own_work() {
    let app = TestApp::spawn_with(|s| s.auth = AuthMode::Required).await;
    let b = second_workspace(&app).await;
    let a_key = admin_key(&app, DEFAULT_ACCOUNT_ID, Some(DEFAULT_WORKSPACE_ID)).await;
    let b_key = admin_key(&app, b.account_id, Some(b.id)).await;
    let base = b.api_path();
    let a = fill_default_workspace(&app, &a_key).await;

    // Names are the workspace's own: B makes an `etl` flow and a `shared` variable too.
    let b_flow = call(
        &app,
        &b_key,
        Method::POST,
        &format!("{base}/flows/"),
        Some(json!({"name": "etl"})),
    )
    .await;
    assert!(b_flow.status.is_success(), "{}", b_flow.text);
    let b_flows = call(
        &app,
        &b_key,
        Method::POST,
        &format!("{base}/flows/filter"),
        Some(json!({})),
    )
    .await;
    assert_eq!(names(&b_flows.body), ["etl"]);
    assert_eq!(b_flows.body[0]["id"], b_flow.body["id"]);
    let var = call(
        &app,
        &b_key,
        Method::POST,
        &format!("{base}/variables/"),
        Some(json!({"name": "shared", "value": "b"})),
    )
    .await;
    assert_eq!(var.status, 201, "{}", var.text);
    let vars = call(
        &app,
        &b_key,
        Method::POST,
        &format!("{base}/variables/filter"),
        Some(json!({})),
    )
    .await;
    assert_eq!(vars.body.as_array().unwrap().len(), 1);
    assert_eq!(vars.body[0]["value"], "b");

    // B's lists hold nothing of A's.
    for (path, what) in [
        ("flow_runs/filter", "runs"),
        ("task_runs/filter", "task runs"),
        ("logs/filter", "logs"),
        ("deployments/filter", "deployments"),
        ("work_pools/filter", "work pools"),
        ("concurrency_limits/filter", "tag limits"),
        ("artifacts/filter", "artifacts"),
    ] {
        let res = call(
            &app,
            &b_key,
            Method::POST,
            &format!("{base}/{path}"),
            Some(json!({})),
        )
        .await;
        assert_eq!(res.status, 200, "{path}: {}", res.text);
        assert_eq!(res.body, json!([]), "B sees A's {what}");
    }
    let docs = call(
        &app,
        &b_key,
        Method::POST,
        &format!("{base}/block_documents/filter"),
        Some(json!({})),
    )
    .await;
    assert!(
        !docs.text.contains("token") && !docs.text.contains("hunter2"),
        "{}",
        docs.text
    );
    let types = call(
        &app,
        &b_key,
        Method::POST,
        &format!("{base}/block_types/filter"),
        Some(json!({})),
    )
    .await;
    assert!(!types.text.contains("creds-a"), "B sees A's block type");
    assert!(
        types.text.contains("\"slug\":\"secret\""),
        "B has Prefect's own block types"
    );

    // Every route that names one of A's objects answers B 404, and changes nothing.
    let mut checked = 0;
    let mut failures = Vec::new();
    for op in stratus::api().operations() {
        let Some(path) = with_theirs(&op.path, &a) else {
            continue;
        };
        let method = Method::from_bytes(op.method.as_bytes()).unwrap();
        let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
        let res = call(&app, &b_key, method.clone(), &format!("{base}{path}"), body).await;
        let ok = if method == Method::GET || method == Method::DELETE {
            res.status == 404
        } else {
            res.status == 404 || res.status == 422
        };
        if !ok {
            failures.push(format!("{} {path}: {} {}", op.method, res.status, res.text));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 40, "only {checked} routes named A's objects");
    for path in [
        format!("/api/flow_runs/{}", a.run),
        format!("/api/deployments/{}", a.deployment),
        format!("/api/block_documents/{}", a.document),
        format!("/api/variables/{}", a.variable),
        "/api/work_pools/pool-a".to_string(),
    ] {
        let res = call(&app, &a_key, Method::GET, &path, None).await;
        assert_eq!(res.status, 200, "A lost {path}: {}", res.text);
    }

    // A key works in its own workspace's URL only: never reveal the other's.
    let wrong = call(
        &app,
        &a_key,
        Method::POST,
        &format!("{base}/flows/filter"),
        Some(json!({})),
    )
    .await;
    assert_eq!(wrong.status, 404, "{}", wrong.text);
    let wrong = call(&app, &b_key, Method::POST, "/api/flows/filter", Some(json!({}))).await;
    assert_eq!(wrong.status, 404, "{}", wrong.text);
    let made_up = format!(
        "/api/accounts/{}/workspaces/{}/flows/filter",
        b.account_id,
        uuid::Uuid::new_v4()
    );
    assert_eq!(
        call(&app, &b_key, Method::POST, &made_up, Some(json!({})))
            .await
            .status,
        404
    );
    let malformed = format!("/api/accounts/{}/workspaces/nope/flows/filter", b.account_id);
    assert_eq!(
        call(&app, &b_key, Method::POST, &malformed, Some(json!({})))
            .await
            .status,
        404
    );
    let public = call(&app, "", Method::GET, &format!("{base}/health"), None).await;
    assert_eq!(public.status, 200, "{}", public.text);

    // An account-wide key reaches every workspace of its account, and no other.
    let acme = admin_key(&app, b.account_id, None).await;
    let res = call(
        &app,
        &acme,
        Method::POST,
        &format!("{base}/flows/filter"),
        Some(json!({})),
    )
    .await;
    assert_eq!(names(&res.body), ["etl"]);
    assert_eq!(
        call(&app, &acme, Method::POST, "/api/flows/filter", Some(json!({})))
            .await
            .status,
        404
    );

    // The web UI shows a B session B's work only, and calls B's API.
    let (session, _) = sign_in(&app, b_key.trim_start_matches("Bearer ")).await;
    let page = app
        .raw(Method::GET, "/flows", None, &[("cookie", &session)])
        .await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        page.text.contains("etl") && !page.text.contains("a-only"),
        "{}",
        page.text
    );
    assert!(
        page.text.contains(&format!("content=\"{base}\"")),
        "the page's script calls B's API"
    );
    let runs = app
        .raw(
            Method::GET,
            &format!("/flow-runs/{}", a.run),
            None,
            &[("cookie", &session)],
        )
        .await;
    assert_eq!(runs.status, 404, "B's session opened A's run page");
}

#[tokio::test]
async fn an_account_wide_session_switches_workspaces_in_the_ui() {
    let app = TestApp::spawn_with(|s| s.auth = AuthMode::Required).await;
    let b = second_workspace(&app).await;
    let client = app.system_client().await;
    let other = access::create_workspace(&client, b.account_id, "ml")
        .await
        .unwrap()
        .unwrap();
    drop(client);
    let acme = admin_key(&app, b.account_id, None).await;
    let created = call(
        &app,
        &acme,
        Method::POST,
        &format!("{}/flows/", other.api_path()),
        Some(json!({"name": "in-ml"})),
    )
    .await;
    assert!(created.status.is_success(), "{}", created.text);

    let (session, csrf) = sign_in(&app, acme.trim_start_matches("Bearer ")).await;
    let page = app
        .raw(Method::GET, "/flows", None, &[("cookie", &session)])
        .await;
    assert!(page.text.contains("workspace-switcher"), "{}", page.text);
    assert!(page.text.contains("acme / data") && page.text.contains("acme / ml"));
    assert!(!page.text.contains("in-ml"), "the first workspace is shown first");
    let form = |token: &str, workspace: uuid::Uuid| format!("workspace={workspace}&csrf_token={token}");
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("cookie", session.as_str()),
    ];
    let forged = app
        .raw(
            Method::POST,
            "/workspace",
            Some(form("wrong", other.id)),
            &headers,
        )
        .await;
    assert_eq!(forged.status, 403, "a switch without the CSRF token is refused");
    let foreign = app
        .raw(
            Method::POST,
            "/workspace",
            Some(form(&csrf, DEFAULT_WORKSPACE_ID)),
            &headers,
        )
        .await;
    assert_eq!(foreign.status, 404, "another account's workspace is not offered");
    let switched = app
        .raw(Method::POST, "/workspace", Some(form(&csrf, other.id)), &headers)
        .await;
    assert_eq!(switched.status, 303, "{}", switched.text);
    let chosen = switched.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let cookies = format!("{session}; {chosen}");
    let page = app
        .raw(Method::GET, "/flows", None, &[("cookie", &cookies)])
        .await;
    assert!(page.text.contains("in-ml"), "{}", page.text);
}

#[tokio::test]
async fn the_scheduler_and_clear_work_workspace_by_workspace() {
    let app = TestApp::spawn().await;
    let b = second_workspace(&app).await;
    let base = b.api_path();
    let open = "";
    let flow = call(
        &app,
        open,
        Method::POST,
        &format!("{base}/flows/"),
        Some(json!({"name": "nightly"})),
    )
    .await;
    let deployment = call(
        &app,
        open,
        Method::POST,
        &format!("{base}/deployments/"),
        Some(json!({"name": "every-hour", "flow_id": flow.body["id"],
            "schedules": [{"schedule": {"interval": 3600}, "active": true}]})),
    )
    .await;
    assert!(deployment.status.is_success(), "{}", deployment.text);
    let kept = call(
        &app,
        open,
        Method::POST,
        "/api/flows/",
        Some(json!({"name": "kept"})),
    )
    .await;
    assert!(kept.status.is_success());

    stratus_store::scheduler::tick(
        &app.state.runs(),
        &stratus_store::scheduler::Limits::default(),
        std::time::Duration::from_secs(10),
    )
    .await
    .unwrap();
    let theirs = call(
        &app,
        open,
        Method::POST,
        &format!("{base}/flow_runs/count"),
        Some(json!({})),
    )
    .await;
    assert!(
        theirs.body.as_i64().unwrap() > 0,
        "the scheduler made B's runs in B"
    );
    let ours = call(&app, open, Method::POST, "/api/flow_runs/count", Some(json!({}))).await;
    assert_eq!(ours.body, 0, "and none in the default workspace");

    let cleared = call(
        &app,
        open,
        Method::POST,
        &format!("{base}/admin/database/clear"),
        Some(json!({"confirm": true})),
    )
    .await;
    assert_eq!(cleared.status, 204, "{}", cleared.text);
    let theirs = call(
        &app,
        open,
        Method::POST,
        &format!("{base}/flows/filter"),
        Some(json!({})),
    )
    .await;
    assert_eq!(theirs.body, json!([]));
    let ours = call(&app, open, Method::POST, "/api/flows/filter", Some(json!({}))).await;
    assert_eq!(
        names(&ours.body),
        ["kept"],
        "clearing B left the default workspace alone"
    );
}

#[tokio::test]
async fn the_tenant_role_may_touch_only_tables_row_security_scopes() {
    let app = TestApp::spawn().await;
    let db = app.db().await;
    let open: Vec<String> = db
        .query(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind = 'r' AND NOT c.relrowsecurity \
             AND (has_table_privilege(stratus_tenant_role(), c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE') \
                  OR (has_table_privilege(stratus_tenant_role(), c.oid, 'SELECT') AND c.relname <> 'refinery_schema_history')) \
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        open.is_empty(),
        "the tenant role reaches tables without row security: {open:?}"
    );
    let truncatable: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind = 'r' \
             AND has_table_privilege(stratus_tenant_role(), c.oid, 'TRUNCATE')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(truncatable, 0, "TRUNCATE passes row security by");
    let creates: bool = db
        .query_one(
            "SELECT has_schema_privilege(stratus_tenant_role(), 'public', 'CREATE')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        !creates,
        "the tenant role may not create objects the owner could call"
    );
    let scoped: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_policies WHERE policyname = 'workspace_isolation'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(scoped, 31);
}

#[tokio::test]
async fn a_row_cannot_point_at_another_workspaces_row() {
    let app = TestApp::spawn().await;
    let b = second_workspace(&app).await;
    let base = b.api_path();
    let theirs = app.post("/api/flows/", json!({"name": "theirs"})).await.body;
    // A run and a deployment of the other workspace's flow: refused as if it did not exist.
    let run = app
        .post(&format!("{base}/flow_runs/"), json!({"flow_id": theirs["id"]}))
        .await;
    let missing = app
        .post(
            &format!("{base}/flow_runs/"),
            json!({"flow_id": uuid::Uuid::new_v4()}),
        )
        .await;
    assert!(!run.status.is_success(), "{}", run.text);
    assert_eq!(run.status, missing.status, "{} / {}", run.text, missing.text);
    let deployment = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        app.post(
            &format!("{base}/deployments/"),
            json!({"name": "prod", "flow_id": theirs["id"]}),
        ),
    )
    .await
    .expect("a deployment of another workspace's flow answers at once");
    assert!(!deployment.status.is_success(), "{}", deployment.text);
    let ours = app.post("/api/flow_runs/filter", json!({})).await.body;
    assert_eq!(ours, json!([]));
}

#[tokio::test]
async fn a_pooled_connection_always_speaks_for_the_scope_that_took_it() {
    use stratus_store::tenancy::{system, within};
    let app = TestApp::spawn().await;
    // One connection, taken again and again for different scopes.
    let pool = stratus_store::db::pool(&app.database_url, 1).unwrap();
    let ask = || async {
        let c = pool.get().await.unwrap();
        let row = c
            .query_one(
                "SELECT current_setting('stratus.workspace', true), current_user::text = stratus_tenant_role()",
                &[],
            )
            .await
            .unwrap();
        (
            row.get::<_, Option<String>>(0).unwrap_or_default(),
            row.get::<_, bool>(1),
        )
    };
    let other = uuid::Uuid::new_v4();
    for _ in 0..3 {
        let default = DEFAULT_WORKSPACE_ID.to_string();
        assert_eq!(within(DEFAULT_WORKSPACE_ID, ask()).await, (default, true));
        assert_eq!(within(other, ask()).await, (other.to_string(), true));
        assert_eq!(within(other, ask()).await, (other.to_string(), true));
        assert_eq!(system(ask()).await, (String::new(), false));
        assert_eq!(
            ask().await,
            (String::new(), true),
            "no scope: the tenant role, no workspace"
        );
    }
    pool.close();
}
