//! Who is calling, and may they: API keys (`Authorization: Bearer <key>`, as the stock
//! client sends `PREFECT_API_KEY`) and web UI sessions (a cookie, with a CSRF token on
//! every change), checked against the route's need (`stratus_domain::access`). Also the
//! checks that keep browsers from being used against the server: the Origin of changes
//! and, on an open server, the Host header (DNS rebinding).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use crate::app::AppState;
use crate::error::ApiError;
use crate::workspace_url::WorkspaceRef;
use stratus_domain::access::{need_for, Need, Role};
use stratus_store::config::{is_loopback, AuthMode, Settings};
use stratus_store::db::access::{self, Credential, DEFAULT_ACCOUNT_ID, DEFAULT_WORKSPACE_ID};
use stratus_store::tenancy;

/// The web UI's session cookie (HttpOnly).
pub const SESSION_COOKIE: &str = "stratus_session";
/// The header a signed-in page's script sends its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Who a request speaks for, as the auth middleware found it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub role: Role,
    /// None on an open server.
    pub key_id: Option<Uuid>,
    pub account_id: Uuid,
    /// The key's workspace (None: every workspace of its account).
    pub workspace_id: Option<Uuid>,
    /// The workspace this request works in.
    pub workspace: Uuid,
    /// A signed-in UI session's CSRF token (None for API keys and open servers).
    pub csrf_token: Option<String>,
}

impl Caller {
    /// Anyone, on a server that asks for no key.
    pub fn open() -> Caller {
        Caller {
            role: Role::Admin,
            key_id: None,
            account_id: DEFAULT_ACCOUNT_ID,
            workspace_id: None,
            workspace: DEFAULT_WORKSPACE_ID,
            csrf_token: None,
        }
    }

    fn from_credential(c: Credential) -> Caller {
        Caller {
            role: c.role,
            key_id: Some(c.key_id),
            account_id: c.account_id,
            workspace_id: c.workspace_id,
            workspace: c.workspace_id.unwrap_or(DEFAULT_WORKSPACE_ID),
            csrf_token: c.csrf_token,
        }
    }

    /// Whether this caller's key reaches `workspace`.
    pub fn reaches(&self, workspace: WorkspaceRef) -> bool {
        self.key_id.is_none()
            || (self.account_id == workspace.account_id
                && self.workspace_id.is_none_or(|w| w == workspace.workspace_id))
    }

    /// Whether this caller may do what `need` names; the error to answer if not.
    pub fn require(&self, need: Need, what: &str) -> Result<(), ApiError> {
        if self.role.may(need) {
            Ok(())
        } else {
            Err(forbidden(self.role, what))
        }
    }
}

fn forbidden(role: Role, what: &str) -> ApiError {
    ApiError::Detail(
        StatusCode::FORBIDDEN,
        format!("This API key's role ({role}) may not {what}."),
    )
}

/// A handler's caller. Routes served without the middleware get the least trusted role.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Caller>().cloned().unwrap_or(Caller {
            role: Role::Viewer,
            ..Caller::open()
        }))
    }
}

/// Verified keys and sessions, trusted for `ttl` without asking Postgres again. A revoked
/// key therefore works for at most `ttl` more (`STRATUS_AUTH_CACHE_SECONDS`).
pub struct CredentialCache {
    ttl: Duration,
    entries: Mutex<HashMap<CacheKey, (Instant, Option<Credential>)>>,
    /// Workspaces seen lately, and their accounts (None: no such workspace).
    workspaces: Mutex<HashMap<Uuid, (Instant, Option<Uuid>)>>,
}

/// Whether it is a session token (else a key), and its SHA-256.
type CacheKey = (bool, [u8; 32]);

/// Enough for every live key and session of a large install; past it the cache starts over.
const CACHE_CAPACITY: usize = 50_000;

impl CredentialCache {
    pub fn new(ttl: Duration) -> Self {
        CredentialCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
            workspaces: Mutex::new(HashMap::new()),
        }
    }

    fn workspace_account(&self, workspace: Uuid) -> Option<Option<Uuid>> {
        let entries = self.workspaces.lock().ok()?;
        let (at, account) = entries.get(&workspace)?;
        (at.elapsed() < self.ttl).then_some(*account)
    }

    fn put_workspace(&self, workspace: Uuid, account: Option<Uuid>) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.workspaces.lock() {
            if entries.len() >= CACHE_CAPACITY {
                entries.clear();
            }
            entries.insert(workspace, (Instant::now(), account));
        }
    }

    fn get(&self, key: &CacheKey) -> Option<Option<Credential>> {
        let entries = self.entries.lock().ok()?;
        let (at, credential) = entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| credential.clone())
    }

    fn put(&self, key: CacheKey, credential: Option<Credential>) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CACHE_CAPACITY {
                entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
                if entries.len() >= CACHE_CAPACITY {
                    entries.clear();
                }
            }
            entries.insert(key, (Instant::now(), credential));
        }
    }

    /// Forgets a key, and the sessions made with it, at once (revoked here; other
    /// processes stop trusting it within the cache's time).
    pub fn forget_key(&self, key_id: Uuid) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (_, c)| c.as_ref().is_none_or(|c| c.key_id != key_id));
        }
    }

    /// Forgets a session at once (signing out).
    pub fn forget_session(&self, token: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&(true, access::sha256(token)));
        }
    }
}

/// What a request presents: its bearer key (false), else its session cookie (true).
fn presented(headers: &HeaderMap) -> Option<(bool, String)> {
    match bearer(headers) {
        Some(key) => Some((false, key)),
        None => cookie(headers, SESSION_COOKIE).map(|token| (true, token)),
    }
}

/// The live credential of a key or session token, from the cache or Postgres.
async fn credential_for(app: &AppState, session: bool, secret: &str) -> Result<Option<Credential>, ApiError> {
    // Only what could be a key or a token costs a lookup.
    if !access::well_formed(secret, session) {
        return Ok(None);
    }
    let key = (session, access::sha256(secret));
    if let Some(hit) = app.credentials.get(&key) {
        return Ok(hit);
    }
    let client = app.system_client().await?;
    let found = if session {
        access::verify_session(&client, &key.1).await?
    } else {
        access::verify_key(&client, &key.1).await?
    };
    app.credentials.put(key, found.clone());
    Ok(found)
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, key) = value.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then(|| key.to_string())
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// The caller a request's key or session speaks for. Ok(None): it presents neither.
pub async fn caller_of(app: &AppState, headers: &HeaderMap) -> Result<Option<Caller>, Response> {
    match presented(headers) {
        Some((session, secret)) => caller_for(app, session, &secret).await.map(Some),
        None => Ok(None),
    }
}

/// The caller a key (or, `session`, a session token) speaks for, checked for expiry: 401
/// otherwise. It works in its key's workspace (the default one for account-wide keys)
/// until [`enter`] says otherwise.
pub async fn caller_for(app: &AppState, session: bool, secret: &str) -> Result<Caller, Response> {
    let credential = match credential_for(app, session, secret).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(unauthorized("Invalid API key or session.")),
        Err(e) => return Err(e.into_response()),
    };
    if credential.expired(chrono::Utc::now()) {
        return Err(unauthorized("This API key or session has expired."));
    }
    Ok(Caller::from_credential(credential))
}

/// Whether `workspace` exists in the account its URL names (cached like keys).
pub async fn workspace_exists(app: &AppState, workspace: WorkspaceRef) -> Result<bool, ApiError> {
    if workspace == WorkspaceRef::DEFAULT {
        return Ok(true);
    }
    let account = match app.credentials.workspace_account(workspace.workspace_id) {
        Some(account) => account,
        None => {
            let client = app.system_client().await?;
            let account = access::find_workspace(&client, workspace.workspace_id)
                .await?
                .map(|w| w.account_id);
            app.credentials.put_workspace(workspace.workspace_id, account);
            account
        }
    };
    Ok(account == Some(workspace.account_id))
}

/// Makes `caller` work in `workspace`: 404 if its key does not reach it or it does not
/// exist. Another workspace's key learns nothing of this one, not even that it exists.
pub async fn enter(app: &AppState, caller: &mut Caller, workspace: WorkspaceRef) -> Result<(), Response> {
    if !caller.reaches(workspace) {
        return Err(ApiError::not_found("Not Found").into_response());
    }
    match workspace_exists(app, workspace).await {
        Ok(true) => {
            caller.workspace = workspace.workspace_id;
            Ok(())
        }
        Ok(false) => Err(ApiError::not_found("Not Found").into_response()),
        Err(e) => Err(e.into_response()),
    }
}

fn unauthorized(detail: &str) -> Response {
    let mut res = ApiError::Detail(StatusCode::UNAUTHORIZED, detail.to_string()).into_response();
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

/// Methods that change nothing, and need no CSRF token.
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The API's gate, run once the router has matched a route: the caller's key or session
/// must reach the workspace the URL names and allow what the route (its template, not the
/// path it was called with) needs. The route then runs in that workspace alone.
pub async fn authenticate(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let workspace = WorkspaceRef::of(&req);
    if app.settings.auth == AuthMode::Open {
        let mut caller = Caller::open();
        if let Err(res) = enter(&app, &mut caller, workspace).await {
            return res;
        }
        req.extensions_mut().insert(caller);
        return tenancy::within(workspace.workspace_id, next.run(req)).await;
    }
    let path = req.uri().path().to_string();
    let need = match req.extensions().get::<MatchedPath>() {
        Some(route) => {
            let template = route.as_str();
            need_for(
                req.method().as_str(),
                template.strip_prefix("/api").unwrap_or(template),
            )
        }
        // Unreachable as a route layer; if it ever is, ask the most.
        None => Need::Admin,
    };
    if need == Need::Public {
        return tenancy::within(workspace.workspace_id, next.run(req)).await;
    }
    let mut caller = match caller_of(&app, req.headers()).await {
        Ok(Some(caller)) => caller,
        Ok(None) => {
            return unauthorized(
                "Not authenticated: send an API key as `Authorization: Bearer <key>` (PREFECT_API_KEY), or sign in.",
            )
        }
        Err(res) => return res,
    };
    if let Err(res) = enter(&app, &mut caller, workspace).await {
        return res;
    }
    if !caller.role.may(need) {
        let what = format!("{} {}", req.method(), path);
        return forbidden(caller.role, &what).into_response();
    }
    if let Some(expected) = &caller.csrf_token {
        if !is_safe(req.method()) && !csrf_matches(req.headers().get(CSRF_HEADER), expected) {
            return ApiError::Detail(StatusCode::FORBIDDEN, "Missing or invalid CSRF token.".into())
                .into_response();
        }
    }
    req.extensions_mut().insert(caller);
    tenancy::within(workspace.workspace_id, next.run(req)).await
}

/// Compares in time independent of where the values differ.
pub fn csrf_matches(sent: Option<&HeaderValue>, expected: &str) -> bool {
    let Some(sent) = sent.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    constant_time_eq(sent.as_bytes(), expected.as_bytes())
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses what a browser sends on another site's behalf: a change whose `Origin` is
/// neither this server nor an allowed one, and, on an open server, a Host header that is
/// not one of its names (a DNS-rebound name resolving to it).
pub async fn check_browser_origin(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    if app.settings.auth == AuthMode::Open {
        if let Some(host) = &host {
            if !host_allowed(&app.settings, host) {
                return ApiError::bad_request(format!(
                    "Host {host:?} is not one of this server's names; add it to STRATUS_ALLOWED_HOSTS to allow it."
                ))
                .into_response();
            }
        }
    }
    if !is_safe(req.method()) {
        if let Some(origin) = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
            if !origin_allowed(&app.settings, origin, host.as_deref()) {
                return ApiError::Detail(
                    StatusCode::FORBIDDEN,
                    format!("Cross-origin request from {origin} refused; add it to STRATUS_CORS_ORIGINS to allow it."),
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

/// The host name of a Host header or an origin's authority, without its port.
fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

pub fn host_allowed(settings: &Settings, host: &str) -> bool {
    let name = host_name(host);
    is_loopback(name)
        || name.eq_ignore_ascii_case(host_name(&settings.host))
        || matches!(settings.host.as_str(), "0.0.0.0" | "::") && name.parse::<std::net::IpAddr>().is_ok()
        || settings
            .allowed_hosts
            .iter()
            .any(|h| h == "*" || h.eq_ignore_ascii_case(name))
}

fn origin_allowed(settings: &Settings, origin: &str, host: Option<&str>) -> bool {
    let origin = origin.trim_end_matches('/');
    if settings
        .cors_origins
        .iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
    host.is_some_and(|h| h.eq_ignore_ascii_case(authority))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_bearer_key_and_a_session_cookie_are_read() {
        assert_eq!(
            bearer(&headers(&[("authorization", "Bearer abc")])).as_deref(),
            Some("abc")
        );
        assert_eq!(
            bearer(&headers(&[("authorization", "bearer  abc ")])).as_deref(),
            Some("abc")
        );
        assert_eq!(bearer(&headers(&[("authorization", "Basic abc")])), None);
        assert_eq!(bearer(&headers(&[("authorization", "Bearer ")])), None);
        let h = headers(&[("cookie", "a=1; stratus_session=tok; b=2")]);
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("tok"));
        assert_eq!(
            cookie(&headers(&[("cookie", "xstratus_session=1")]), SESSION_COOKIE),
            None
        );
    }

    #[test]
    fn hosts_and_origins() {
        let mut s = Settings::from_env().unwrap();
        s.host = "127.0.0.1".into();
        s.allowed_hosts = vec!["stratus.internal".into()];
        s.cors_origins = vec!["https://app.example.com".into()];
        assert!(host_allowed(&s, "127.0.0.1:4200"));
        assert!(host_allowed(&s, "localhost:4200"));
        assert!(host_allowed(&s, "[::1]:4200"));
        assert!(host_allowed(&s, "stratus.internal"));
        assert!(!host_allowed(&s, "attacker.example:4200"));
        assert!(origin_allowed(
            &s,
            "http://127.0.0.1:4200",
            Some("127.0.0.1:4200")
        ));
        assert!(origin_allowed(
            &s,
            "https://app.example.com",
            Some("127.0.0.1:4200")
        ));
        assert!(!origin_allowed(
            &s,
            "https://evil.example",
            Some("127.0.0.1:4200")
        ));
        assert!(!origin_allowed(&s, "null", Some("127.0.0.1:4200")));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
