//! The API keys page (admins only): list keys, make one (its value shown once), revoke
//! one. Plain forms, each carrying the session's CSRF token.

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::Deserialize;
use stratus_domain::access::{self as access_rules, Need, Role};
use stratus_http::auth::Caller;
use stratus_http::AppState;
use stratus_store::db::access;

use super::{render, view, PageError};

struct KeyRow {
    id: String,
    name: String,
    role: String,
    prefix: String,
    created: String,
    expires: String,
    status: &'static str,
}

#[derive(Template)]
#[template(path = "api_keys.html")]
struct KeysPage {
    nav: &'static str,
    keys: Vec<KeyRow>,
    roles: Vec<(&'static str, &'static str)>,
    csrf_token: String,
    created: String,
    created_name: String,
}

const ROLES: [(&str, &str); 4] = [
    ("viewer", "viewer: reads, never secrets"),
    ("runner", "runner: agents, workers and their flows"),
    ("developer", "developer: all work, no admin routes"),
    ("admin", "admin: everything"),
];

fn admin_only(caller: &Caller) -> Result<(), PageError> {
    caller.require(Need::Admin, "manage API keys").map_err(|_| {
        PageError::Forbidden(format!(
            "Only admin keys manage API keys; this session's role is {}.",
            caller.role
        ))
    })
}

/// An admin, and a form carrying the session's token (an API key or an open server has
/// none: a browser cannot forge those, and the Origin check refuses other sites' forms).
fn may_change_keys(caller: &Caller, sent: &str) -> Result<(), PageError> {
    admin_only(caller)?;
    match &caller.csrf_token {
        Some(expected) => super::session::form_token(expected, sent),
        None => Ok(()),
    }
}

async fn page(
    app: &AppState,
    caller: &Caller,
    created: Option<(String, String)>,
) -> Result<Response, PageError> {
    admin_only(caller)?;
    let client = app.system_client().await?;
    let now = Utc::now();
    let keys = access::list_keys(&client, caller.account_id, caller.workspace_id)
        .await?
        .into_iter()
        .map(|k| KeyRow {
            id: k.id.to_string(),
            status: k.status(now),
            name: k.name,
            role: k.role.to_string(),
            prefix: k.prefix,
            created: view::when(Some(k.created)),
            expires: k
                .expires
                .map(|e| e.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_else(|| "never".into()),
        })
        .collect();
    let (created_name, created) = created.unwrap_or_default();
    Ok(render(&KeysPage {
        nav: "keys",
        keys,
        roles: ROLES.to_vec(),
        csrf_token: caller.csrf_token.clone().unwrap_or_default(),
        created,
        created_name,
    }))
}

pub async fn list(State(app): State<AppState>, caller: Caller) -> Response {
    page(&app, &caller, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    expires_in_days: String,
    #[serde(default)]
    csrf_token: String,
}

pub async fn create(State(app): State<AppState>, caller: Caller, Form(form): Form<CreateForm>) -> Response {
    async {
        may_change_keys(&caller, &form.csrf_token)?;
        let name = access_rules::key_name(&form.name).map_err(PageError::BadRequest)?;
        let role = Role::parse(&form.role)
            .ok_or_else(|| PageError::BadRequest(format!("{:?} is not a role.", form.role)))?;
        let expires = match form.expires_in_days.trim() {
            "" => None,
            days => {
                // Not a number (or past i64) is as out of range as 0.
                let lifetime =
                    access_rules::key_lifetime(days.parse().unwrap_or(0)).map_err(PageError::BadRequest)?;
                Some(Utc::now() + lifetime)
            }
        };
        let client = app.system_client().await?;
        // A key for the workspace the page shows.
        let (key, secret) = access::create_key(
            &client,
            name,
            caller.account_id,
            Some(caller.workspace),
            role,
            expires,
        )
        .await?;
        drop(client);
        page(&app, &caller, Some((key.name, secret))).await
    }
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf_token: String,
}

pub async fn revoke(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<RevokeForm>,
) -> Response {
    async {
        may_change_keys(&caller, &form.csrf_token)?;
        let id = id
            .parse()
            .map_err(|_| PageError::NotFound("There is no such key.".into()))?;
        let client = app.system_client().await?;
        if !access::revoke_key(&client, caller.account_id, caller.workspace_id, id).await? {
            return Err(PageError::NotFound("There is no such key.".into()));
        }
        app.credentials.forget_key(id);
        Ok(Redirect::to("/api-keys").into_response())
    }
    .await
    .unwrap_or_else(IntoResponse::into_response)
}
