//! Signing in to the web UI of a server that requires keys: the login page takes an API
//! key and starts a session (an HttpOnly cookie); every page is behind [`guard`], which
//! also sends the pages' security headers; signing out ends the session. The session's
//! CSRF token is in each page (a form field, and a meta tag `app.js` sends as a header).

use askama::Template;
use axum::extract::{Form, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use stratus_http::auth::{self, Caller, SESSION_COOKIE};
use stratus_http::AppState;
use stratus_store::config::AuthMode;
use stratus_store::db::access;
use stratus_store::tenancy;
use stratus_store::url::percent_encode_path;

use super::{render, PageError};

/// What the page layout shows of the session.
#[derive(Debug, Clone, Default)]
pub struct PageSession {
    pub signed_in: bool,
    pub role: String,
    /// The workspace the pages show.
    pub workspace: String,
    /// Its API (`/api/accounts/{a}/workspaces/{w}`), which the pages' script calls.
    pub api_base: String,
    /// Those the session may switch to: id, label, whether it is the current one.
    pub workspaces: Vec<(String, String, bool)>,
    pub csrf_token: String,
    /// Whether the session's role may change what it sees (create, edit, delete), and start,
    /// cancel or resume runs: the pages offer only what the API would allow.
    pub may_write: bool,
    pub may_run: bool,
}

/// The workspace an account-wide session (or an open server's visitor) chose last.
pub const WORKSPACE_COOKIE: &str = "stratus_workspace";

tokio::task_local! {
    static SESSION: PageSession;
}

/// The session of the page being rendered (the layout reads it).
pub fn current() -> PageSession {
    SESSION.try_with(|s| s.clone()).unwrap_or_default()
}

const LOGIN_CSRF_COOKIE: &str = "stratus_login_csrf";

/// Pages a visitor reaches before signing in.
fn public(path: &str) -> bool {
    path == "/login" || path.starts_with("/ui-static/")
}

/// Every page: signed in (or an open server), in the session's workspace, with the pages'
/// security headers.
pub async fn guard(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let caller = if app.settings.auth == AuthMode::Open {
        Caller::open()
    } else if public(&path) {
        return with_security_headers(next.run(req).await);
    } else {
        match auth::caller_of(&app, req.headers()).await {
            Ok(Some(caller)) => caller,
            Err(res) if res.status().is_server_error() => return res,
            Ok(None) | Err(_) => {
                let next = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let to = format!("/login?next={}", percent_encode_path(next));
                return with_security_headers(Redirect::to(&to).into_response());
            }
        }
    };
    let chosen = auth::cookie(req.headers(), WORKSPACE_COOKIE).and_then(|c| uuid::Uuid::parse_str(&c).ok());
    let (caller, session) = match in_workspace(&app, caller, chosen).await {
        Ok(found) => found,
        Err(e) => return with_security_headers(e.into_response()),
    };
    let workspace = caller.workspace;
    req.extensions_mut().insert(caller);
    let res = tenancy::within(workspace, SESSION.scope(session, next.run(req))).await;
    with_security_headers(res)
}

/// The workspaces `caller` may see: its key's, or every one of its account (of every
/// account, on an open server).
pub async fn visible_workspaces(
    app: &AppState,
    caller: &Caller,
) -> Result<Vec<access::Workspace>, PageError> {
    let client = app.system_client().await?;
    Ok(match (caller.key_id, caller.workspace_id) {
        (None, _) => access::list_workspaces(&client, None).await?,
        (Some(_), Some(w)) => access::find_workspace(&client, w).await?.into_iter().collect(),
        (Some(_), None) => access::list_workspaces(&client, Some(caller.account_id)).await?,
    })
}

/// Puts `caller` in the workspace it chose (if it may see it), else its own, else the
/// first it may see; and what the layout shows of that.
async fn in_workspace(
    app: &AppState,
    mut caller: Caller,
    chosen: Option<uuid::Uuid>,
) -> Result<(Caller, PageSession), PageError> {
    let workspaces = visible_workspaces(app, &caller).await?;
    let current = chosen
        .and_then(|c| workspaces.iter().find(|w| w.id == c))
        .or_else(|| workspaces.iter().find(|w| w.id == caller.workspace))
        .or(workspaces.first())
        .cloned()
        .ok_or_else(|| PageError::Forbidden("This key's workspace no longer exists.".into()))?;
    caller.workspace = current.id;
    if caller.key_id.is_none() {
        // An open server's visitor acts for the account of the workspace shown.
        caller.account_id = current.account_id;
    }
    let label = |w: &access::Workspace| {
        if w.account_id == access::DEFAULT_ACCOUNT_ID {
            w.name.clone()
        } else {
            format!("{} / {}", w.account_name, w.name)
        }
    };
    let session = PageSession {
        signed_in: caller.key_id.is_some(),
        role: caller.role.to_string(),
        workspace: format!("{} workspace", label(&current)),
        api_base: current.api_path(),
        workspaces: workspaces
            .iter()
            .map(|w| (w.id.to_string(), label(w), w.id == current.id))
            .collect(),
        csrf_token: caller.csrf_token.clone().unwrap_or_default(),
        may_write: caller.role.may(stratus_domain::access::Need::Write),
        may_run: caller.role.may(stratus_domain::access::Need::Run),
    };
    Ok((caller, session))
}

#[derive(Deserialize)]
pub struct SwitchForm {
    #[serde(default)]
    workspace: String,
    #[serde(default)]
    csrf_token: String,
}

/// Switches the session to another workspace it may see (a cookie), and shows its
/// dashboard: the page it was on belongs to the other workspace.
pub async fn switch_workspace(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Form(form): Form<SwitchForm>,
) -> Response {
    async {
        if let Some(expected) = &caller.csrf_token {
            form_token(expected, &form.csrf_token)?;
        }
        let wanted = uuid::Uuid::parse_str(form.workspace.trim())
            .map_err(|_| PageError::BadRequest("Choose a workspace from the list.".into()))?;
        let workspaces = visible_workspaces(&app, &caller).await?;
        if !workspaces.iter().any(|w| w.id == wanted) {
            return Err(PageError::NotFound("No such workspace.".into()));
        }
        let mut res = Redirect::to("/").into_response();
        let cookie = format!(
            "{WORKSPACE_COOKIE}={wanted}; Path=/; HttpOnly; SameSite=Lax{}",
            secure_attribute(&app, Some(&headers))
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
        Ok::<_, PageError>(res)
    }
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// No inline script, no framing, no sniffing: what a page could be made to do is bounded
/// even if a value escaped its template. Images may come from https addresses: block
/// types' logos and pictures in markdown artifacts live there.
fn with_security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    res
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: &'static str,
    csrf_token: String,
    next: String,
    error: String,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
}

/// Only paths of this site: never an absolute URL an attacker chose.
fn safe_next(next: &str) -> String {
    let odd = |c: char| c == '\\' || c.is_control() || c.is_whitespace();
    if next.starts_with('/') && !next.starts_with("//") && !next.chars().any(odd) {
        next.to_string()
    } else {
        "/".to_string()
    }
}

pub async fn login_page(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    if app.settings.auth == AuthMode::Open {
        return Redirect::to("/").into_response();
    }
    login_form(&app, &headers, StatusCode::OK, safe_next(&q.next), String::new())
}

/// The form, with a fresh token that must come back both in the form and in a cookie.
fn login_form(
    app: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    next: String,
    error: String,
) -> Response {
    let csrf_token = access::new_secret("");
    let page = LoginPage {
        nav: "",
        csrf_token: csrf_token.clone(),
        next,
        error,
    };
    let mut res = (status, render(&page)).into_response();
    let cookie = format!(
        "{LOGIN_CSRF_COOKIE}={csrf_token}; Path=/login; HttpOnly; SameSite=Strict{}",
        secure_attribute(app, Some(headers))
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// `; Secure` when the site is served over HTTPS.
fn secure_attribute(app: &AppState, headers: Option<&HeaderMap>) -> &'static str {
    let forwarded_https = headers
        .and_then(|h| h.get("x-forwarded-proto"))
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    let https = forwarded_https
        || app
            .settings
            .ui_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
    if https {
        "; Secure"
    } else {
        ""
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    next: String,
}

pub async fn login(State(app): State<AppState>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let next = safe_next(&form.next);
    if app.settings.auth == AuthMode::Open {
        return Redirect::to(&next).into_response();
    }
    let expected = auth::cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !auth::constant_time_eq(form.csrf_token.as_bytes(), expected.as_bytes()) {
        return login_form(
            &app,
            &headers,
            StatusCode::FORBIDDEN,
            next,
            "The sign-in form expired or was not sent from this site. Try again.".into(),
        );
    }
    let key_id = match auth::caller_for(&app, false, form.key.trim()).await {
        Ok(Caller { key_id: Some(id), .. }) => id,
        Err(res) if res.status().is_server_error() => return res,
        _ => {
            return login_form(
                &app,
                &headers,
                StatusCode::UNAUTHORIZED,
                next,
                "That key is not valid here: it may be mistyped, revoked or expired.".into(),
            )
        }
    };
    let session = match start_session(&app, key_id).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let max_age = (session.expires - chrono::Utc::now()).num_seconds().max(0);
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
        session.token,
        secure_attribute(&app, Some(&headers))
    );
    let mut res = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{LOGIN_CSRF_COOKIE}=; Path=/login; Max-Age=0")) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

async fn start_session(app: &AppState, key_id: uuid::Uuid) -> Result<access::NewSession, PageError> {
    let client = app.system_client().await?;
    Ok(access::create_session(&client, key_id, app.settings.ui_session_hours).await?)
}

#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf_token: String,
}

/// Ends the session; refused (403) without the session's CSRF token.
pub async fn logout(
    State(app): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    let Some(token) = auth::cookie(&headers, SESSION_COOKIE) else {
        return Redirect::to("/login").into_response();
    };
    if let Err(e) = form_token(&current().csrf_token, &form.csrf_token) {
        return e.into_response();
    }
    let ended = async {
        let client = app.system_client().await?;
        access::end_session(&client, &access::sha256(&token)).await?;
        Ok::<_, PageError>(())
    }
    .await;
    if let Err(e) = ended {
        return e.into_response();
    }
    app.credentials.forget_session(&token);
    let mut res = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
    )) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// A form that changes something must carry the session's CSRF token (`expected`; empty:
/// no session, refused).
pub fn form_token(expected: &str, sent: &str) -> Result<(), PageError> {
    if !expected.is_empty() && auth::constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(PageError::Forbidden(
            "The form was not sent from a page of this session (its CSRF token is missing or wrong).".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_sites_paths_are_followed_after_signing_in() {
        assert_eq!(safe_next("/flow-runs?state=x"), "/flow-runs?state=x");
        assert_eq!(safe_next("//evil.example"), "/");
        assert_eq!(safe_next("https://evil.example"), "/");
        assert_eq!(safe_next("/\\evil.example"), "/");
        assert_eq!(safe_next("/\t/evil.example"), "/");
        assert_eq!(safe_next("/ /evil.example"), "/");
    }
}
