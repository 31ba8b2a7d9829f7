//! The web UI: pages rendered on the server from templates compiled into the binary,
//! with a little hand-written JavaScript (`static/app.js`) for live refresh and for the
//! buttons, which call the same JSON API the Prefect client uses.

mod api_keys;
mod artifacts;
mod blocks;
mod dashboard;
mod deployments;
mod flow_run;
mod flow_runs;
mod markdown;
mod resources;
mod run_logs;
mod scatter;
pub mod session;
mod task_run;
pub mod view;
mod work_pools;

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use stratus_http::{ApiError, AppState};
use stratus_store::db::flows::{self, FlowSort};
use stratus_store::filters::{RunFilterBody, RunFilters};
use uuid::Uuid;

/// Every page at the site root, behind the sign-in guard and the browser checks, as the
/// server and the UI function serve them.
pub fn app(state: AppState) -> Router {
    router()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            session::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            stratus_http::auth::check_browser_origin,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            stratus_http::serve::panic_response,
        ))
        .with_state(state)
}

/// Every page, at the site root (the API lives under `/api`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", axum::routing::post(session::logout))
        .route("/workspace", axum::routing::post(session::switch_workspace))
        .route("/api-keys", get(api_keys::list).post(api_keys::create))
        .route("/api-keys/{id}/revoke", axum::routing::post(api_keys::revoke))
        .route("/", get(dashboard::page))
        .route("/flow-runs", get(flow_runs::page))
        .route("/flow-runs/{id}", get(flow_run::page))
        .route("/flow-runs/{id}/logs", get(run_logs::page))
        .route("/flow-runs/{id}/logs.txt", get(run_logs::download))
        .route("/task-runs/{id}", get(task_run::page))
        .route("/flow-runs/flow-run/{id}", get(prefect_run_link))
        .route("/flows", get(deployments::flows))
        .route("/flows/{id}", get(deployments::flow))
        .route("/deployments", get(deployments::list))
        .route("/deployments/{id}", get(deployments::page))
        .route("/schedule-preview", get(deployments::schedule_preview))
        .route("/work-pools", get(work_pools::list))
        .route("/work-pools/{name}", get(work_pools::page))
        .route("/blocks", get(blocks::list))
        .route("/blocks/catalog", get(blocks::catalog))
        .route("/blocks/catalog/{slug}", get(blocks::create_form))
        .route("/blocks/{id}", get(blocks::page))
        .route("/concurrency-limits", get(resources::concurrency))
        .route("/variables", get(resources::variables))
        .route("/artifacts", get(artifacts::list))
        .route("/artifacts/key/{key}", get(artifacts::by_key))
        .route("/artifacts/{id}", get(artifacts::page))
        .route("/notifications", get(resources::notifications))
        .route("/ui-settings", get(ui_settings))
        .route("/ui-static/app.css", get(css))
        .route("/ui-static/app.js", get(js))
        .route("/ui-static/schema-form.js", get(schema_form_js))
        .fallback(missing)
}

const CSS: &str = include_str!("../../static/app.css");
const JS: &str = include_str!("../../static/app.js");
const SCHEMA_FORM_JS: &str = include_str!("../../static/schema-form.js");

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        CSS,
    )
        .into_response()
}

async fn js() -> Response {
    script(JS)
}

async fn schema_form_js() -> Response {
    script(SCHEMA_FORM_JS)
}

fn script(text: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        text,
    )
        .into_response()
}

/// What Prefect's UI reads first (Prefect 2.20's `src/prefect/server/api/server.py`, `ui_settings`).
async fn ui_settings() -> Response {
    axum::Json(json!({"api_url": "/api", "csrf_enabled": false, "flags": []})).into_response()
}

async fn missing(State(_): State<AppState>) -> Response {
    PageError::NotFound("There is no page here.".into()).into_response()
}

/// Why a page could not be shown; always a friendly page, never a bare 500.
#[derive(Debug)]
pub enum PageError {
    BadRequest(String),
    Forbidden(String),
    NotFound(String),
    Internal(String),
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError::Internal(format!("{e:?}"))
    }
}

impl From<stratus_store::StoreError> for PageError {
    fn from(e: stratus_store::StoreError) -> Self {
        PageError::Internal(e.to_string())
    }
}

impl From<tokio_postgres::Error> for PageError {
    fn from(e: tokio_postgres::Error) -> Self {
        PageError::Internal(e.to_string())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    nav: &'static str,
    title: String,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            PageError::BadRequest(m) => (StatusCode::BAD_REQUEST, "That request did not make sense", m),
            PageError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            PageError::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m),
            PageError::Internal(m) => {
                tracing::error!(error = %m, "page failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Something went wrong",
                    "Stratus could not load this page. Try again in a moment.".to_string(),
                )
            }
        };
        let page = ErrorPage {
            nav: "",
            title: title.to_string(),
            message,
        };
        (status, render(&page)).into_response()
    }
}

pub type PageResult = Result<Response, PageError>;

pub fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<h1>Something went wrong</h1>".to_string()),
            )
                .into_response()
        }
    }
}

/// A page's path parameter. One that is not valid UTF-8 once decoded gets the friendly
/// 400 page rather than axum's plain-text rejection.
pub struct PagePath(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PagePath {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            // Postgres text cannot hold a NUL, so no name with one is stored: asking the
            // database would only fail.
            Ok(axum::extract::Path(raw)) if raw.contains('\0') => {
                Err(PageError::NotFound("There is nothing here by that name.".into()))
            }
            Ok(axum::extract::Path(raw)) => Ok(PagePath(raw)),
            Err(e) => Err(PageError::BadRequest(format!(
                "That address is not valid: {}.",
                e.body_text()
            ))),
        }
    }
}

/// Query parameters, read leniently and checked by the page.
pub type Params = Query<HashMap<String, String>>;

pub fn param<'a>(p: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    p.get(key).map(|s| s.trim()).filter(|s| !s.is_empty())
}

pub fn int_param(
    p: &HashMap<String, String>,
    key: &str,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, PageError> {
    match param(p, key) {
        None => Ok(default),
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(PageError::BadRequest(format!(
                "“{key}” must be a whole number from {min} to {max}, not “{raw}”."
            ))),
        },
    }
}

pub fn id_param(raw: &str, what: &str) -> Result<Uuid, PageError> {
    raw.parse()
        .map_err(|_| PageError::NotFound(format!("“{raw}” is not the id of any {what}.")))
}

/// Prefect's UI path of a flow run (notifications link there), sent to the run's page.
async fn prefect_run_link(PagePath(raw): PagePath) -> Result<Response, PageError> {
    let id = id_param(&raw, "flow run")?;
    Ok(axum::response::Redirect::permanent(&format!("/flow-runs/{id}")).into_response())
}

/// Run filters written as Prefect's filter JSON (the shape the API takes).
pub fn filters(v: Value) -> Result<RunFilters, PageError> {
    serde_json::from_value::<RunFilterBody>(v)
        .map(|b| b.filters())
        .map_err(|e| PageError::Internal(format!("filter: {e}")))
}

/// Flow names by id, for tables of runs.
pub async fn flow_names(
    c: &impl deadpool_postgres::GenericClient,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<HashMap<Uuid, String>, PageError> {
    let mut ids: Vec<Uuid> = ids.into_iter().collect();
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let f = filters(json!({"flows": {"id": {"any_": ids}}}))?;
    let limit = ids.len() as i64;
    Ok(flows::filter(c, &f, FlowSort::NameAsc, limit, 0)
        .await?
        .into_iter()
        .map(|f| (f.id, f.name))
        .collect())
}
