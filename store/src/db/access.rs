//! SQL for who may call a hosted Stratus: `account`, `workspace`, `api_key` and the web
//! UI's `ui_session`. Keys and session tokens are random; only their SHA-256 is stored.

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio_postgres::Row;
use uuid::Uuid;

use stratus_domain::access::Role;

/// The account that plain `/api` serves (migration V10).
pub const DEFAULT_ACCOUNT_ID: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_000000000001);
/// The workspace that plain `/api` serves (migration V10).
pub const DEFAULT_WORKSPACE_ID: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_000000000002);

/// What every key starts with, so that secret scanners and people can tell one.
pub const KEY_PREFIX: &str = "stratus_";

/// An API key as listed: never the key itself.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: Uuid,
    pub created: DateTime<Utc>,
    pub name: String,
    /// The key's first characters.
    pub prefix: String,
    pub account_id: Uuid,
    pub workspace_id: Option<Uuid>,
    pub role: Role,
    pub expires: Option<DateTime<Utc>>,
    pub revoked: Option<DateTime<Utc>>,
}

const KEY_COLUMNS: &str =
    "k.id, k.created, k.name, k.prefix, k.account_id, k.workspace_id, k.role, k.expires, k.revoked";

/// A row's `role` (the table's CHECK allows only the four names).
fn role(row: &Row) -> Result<Role, tokio_postgres::Error> {
    let role: String = row.try_get("role")?;
    Ok(Role::parse(&role).unwrap_or(Role::Viewer))
}

impl ApiKey {
    /// `active`, `expired` or `revoked`, as lists show it.
    pub fn status(&self, now: DateTime<Utc>) -> &'static str {
        match (self.revoked, self.expires) {
            (Some(_), _) => "revoked",
            (None, Some(e)) if e <= now => "expired",
            _ => "active",
        }
    }

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(ApiKey {
            id: row.try_get("id")?,
            created: row.try_get("created")?,
            name: row.try_get("name")?,
            prefix: row.try_get("prefix")?,
            account_id: row.try_get("account_id")?,
            workspace_id: row.try_get("workspace_id")?,
            role: role(row)?,
            expires: row.try_get("expires")?,
            revoked: row.try_get("revoked")?,
        })
    }
}

/// Who a verified key or session speaks for. `expires` is checked at each use, so a cached
/// credential still stops at its expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub key_id: Uuid,
    pub account_id: Uuid,
    pub workspace_id: Option<Uuid>,
    pub role: Role,
    pub expires: Option<DateTime<Utc>>,
    /// For a UI session: the token its pages send back with every change.
    pub csrf_token: Option<String>,
}

impl Credential {
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

/// A new random secret: a key (`stratus_` and 64 hex digits) or a session token.
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// Whether `secret` has the shape of a key (`stratus_` and 64 hex digits) or, for a
/// session, of a session token (64 hex digits).
pub fn well_formed(secret: &str, session: bool) -> bool {
    let hex = if session {
        Some(secret)
    } else {
        secret.strip_prefix(KEY_PREFIX)
    };
    hex.is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Creates a key with `role`, in `workspace_id` (None: every workspace of the account).
/// Returns the key as listed and the key itself, which is not kept.
pub async fn create_key(
    c: &impl GenericClient,
    name: &str,
    account_id: Uuid,
    workspace_id: Option<Uuid>,
    role: Role,
    expires: Option<DateTime<Utc>>,
) -> Result<(ApiKey, String), tokio_postgres::Error> {
    let secret = new_secret(KEY_PREFIX);
    let prefix: String = secret.chars().take(KEY_PREFIX.len() + 6).collect();
    let hash = sha256(&secret).to_vec();
    let sql = format!(
        "INSERT INTO api_key AS k (id, name, prefix, key_sha256, account_id, workspace_id, role, expires) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {KEY_COLUMNS}"
    );
    let row = c
        .query_one(
            sql.as_str(),
            &[
                &Uuid::new_v4(),
                &name,
                &prefix,
                &hash,
                &account_id,
                &workspace_id,
                &role.as_str(),
                &expires,
            ],
        )
        .await?;
    Ok((ApiKey::from_row(&row)?, secret))
}

/// Every key of `account_id` (only those of `workspace`, when given), newest first.
pub async fn list_keys(
    c: &impl GenericClient,
    account_id: Uuid,
    workspace: Option<Uuid>,
) -> Result<Vec<ApiKey>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM api_key k WHERE k.account_id = $1 \
         AND ($2::uuid IS NULL OR k.workspace_id = $2) ORDER BY k.created DESC, k.id"
    );
    c.query(sql.as_str(), &[&account_id, &workspace])
        .await?
        .iter()
        .map(ApiKey::from_row)
        .collect()
}

/// Revokes a key (and so every UI session made with it). False if there is no such key
/// in the account (in `workspace`, when given); revoking twice keeps the first time.
pub async fn revoke_key(
    c: &impl GenericClient,
    account_id: Uuid,
    workspace: Option<Uuid>,
    id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "UPDATE api_key SET revoked = COALESCE(revoked, now()) WHERE id = $1 AND account_id = $2 \
             AND ($3::uuid IS NULL OR workspace_id = $3)",
            &[&id, &account_id, &workspace],
        )
        .await?;
    Ok(n == 1)
}

/// The credential of a live (not revoked) key with this hash; expiry is the caller's check.
pub async fn verify_key(
    c: &impl GenericClient,
    hash: &[u8; 32],
) -> Result<Option<Credential>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "SELECT id, account_id, workspace_id, role, expires FROM api_key \
             WHERE key_sha256 = $1 AND revoked IS NULL",
            &[&hash.as_slice()],
        )
        .await?;
    row.map(|r| credential(&r, None)).transpose()
}

fn credential(r: &Row, csrf_token: Option<String>) -> Result<Credential, tokio_postgres::Error> {
    Ok(Credential {
        key_id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        workspace_id: r.try_get("workspace_id")?,
        role: role(r)?,
        expires: r.try_get("expires")?,
        csrf_token,
    })
}

/// A signed-in web UI session: the token goes in the cookie, the CSRF token in the pages.
pub struct NewSession {
    pub token: String,
    pub csrf_token: String,
    pub expires: DateTime<Utc>,
}

/// Starts a UI session for the key `key_id`, lasting `hours`.
pub async fn create_session(
    c: &impl GenericClient,
    key_id: Uuid,
    hours: i64,
) -> Result<NewSession, tokio_postgres::Error> {
    let token = new_secret("");
    let csrf_token = new_secret("");
    let expires = Utc::now() + Duration::hours(hours.max(1));
    c.execute(
        "INSERT INTO ui_session (id, token_sha256, csrf_token, api_key_id, expires) VALUES ($1, $2, $3, $4, $5)",
        &[&Uuid::new_v4(), &sha256(&token).as_slice(), &csrf_token, &key_id, &expires],
    )
    .await?;
    Ok(NewSession {
        token,
        csrf_token,
        expires,
    })
}

/// The credential of a session whose key is still live; it expires with the session or
/// the key, whichever is first.
pub async fn verify_session(
    c: &impl GenericClient,
    hash: &[u8; 32],
) -> Result<Option<Credential>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "SELECT k.id, k.account_id, k.workspace_id, k.role, \
                    LEAST(s.expires, COALESCE(k.expires, s.expires)) AS expires, s.csrf_token \
             FROM ui_session s JOIN api_key k ON k.id = s.api_key_id \
             WHERE s.token_sha256 = $1 AND k.revoked IS NULL",
            &[&hash.as_slice()],
        )
        .await?;
    row.map(|r| {
        let csrf: String = r.try_get("csrf_token")?;
        credential(&r, Some(csrf))
    })
    .transpose()
}

/// Ends a session (signing out), and any that have expired.
pub async fn end_session(c: &impl GenericClient, hash: &[u8; 32]) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "DELETE FROM ui_session WHERE token_sha256 = $1 OR expires < now()",
        &[&hash.as_slice()],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_their_hashes_differ() {
        let a = new_secret(KEY_PREFIX);
        let b = new_secret(KEY_PREFIX);
        assert!(a.starts_with("stratus_") && a.len() == 8 + 64);
        assert_ne!(a, b);
        assert_ne!(sha256(&a), sha256(&b));
        assert!(well_formed(&a, false) && !well_formed(&a, true));
        assert!(well_formed(&new_secret(""), true));
        assert!(!well_formed("stratus_nope", false));
    }
}

/// A workspace, with its account's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub id: Uuid,
    pub name: String,
    pub account_id: Uuid,
    pub account_name: String,
}

impl Workspace {
    /// The API's base path for this workspace, Prefect Cloud's form (plain `/api` serves
    /// the default workspace too).
    pub fn api_path(&self) -> String {
        format!("/api/accounts/{}/workspaces/{}", self.account_id, self.id)
    }

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Workspace {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            account_id: row.try_get("account_id")?,
            account_name: row.try_get("account_name")?,
        })
    }
}

const WORKSPACE_SELECT: &str = "SELECT w.id, w.name, w.account_id, a.name AS account_name \
     FROM workspace w JOIN account a ON a.id = w.account_id";

/// Creates an account; None if the name is taken.
pub async fn create_account(
    c: &impl GenericClient,
    name: &str,
) -> Result<Option<Uuid>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "INSERT INTO account (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id",
            &[&Uuid::new_v4(), &name],
        )
        .await?;
    row.map(|r| r.try_get(0)).transpose()
}

/// An account's id, by id or name.
pub async fn find_account(
    c: &impl GenericClient,
    id_or_name: &str,
) -> Result<Option<Uuid>, tokio_postgres::Error> {
    let id = Uuid::parse_str(id_or_name).ok();
    let row = c
        .query_opt(
            "SELECT id FROM account WHERE id = $1 OR name = $2 ORDER BY id = $1 DESC LIMIT 1",
            &[&id, &id_or_name],
        )
        .await?;
    row.map(|r| r.try_get(0)).transpose()
}

/// Creates a workspace in `account_id`; None if the account has one of that name.
pub async fn create_workspace(
    c: &impl GenericClient,
    account_id: Uuid,
    name: &str,
) -> Result<Option<Workspace>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "INSERT INTO workspace (id, account_id, name) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id, name) DO NOTHING RETURNING id",
            &[&Uuid::new_v4(), &account_id, &name],
        )
        .await?;
    match row {
        Some(row) => find_workspace(c, row.try_get(0)?).await,
        None => Ok(None),
    }
}

pub async fn find_workspace(
    c: &impl GenericClient,
    id: Uuid,
) -> Result<Option<Workspace>, tokio_postgres::Error> {
    let sql = format!("{WORKSPACE_SELECT} WHERE w.id = $1");
    c.query_opt(sql.as_str(), &[&id])
        .await?
        .map(|r| Workspace::from_row(&r))
        .transpose()
}

/// A workspace of `account_id`, by id or name.
pub async fn find_workspace_in(
    c: &impl GenericClient,
    account_id: Uuid,
    id_or_name: &str,
) -> Result<Option<Workspace>, tokio_postgres::Error> {
    let id = Uuid::parse_str(id_or_name).ok();
    let sql = format!(
        "{WORKSPACE_SELECT} WHERE w.account_id = $1 AND (w.id = $2 OR w.name = $3) ORDER BY w.id = $2 DESC LIMIT 1"
    );
    c.query_opt(sql.as_str(), &[&account_id, &id, &id_or_name])
        .await?
        .map(|r| Workspace::from_row(&r))
        .transpose()
}

/// The workspaces of `account_id` (every account's, when None), oldest first.
pub async fn list_workspaces(
    c: &impl GenericClient,
    account_id: Option<Uuid>,
) -> Result<Vec<Workspace>, tokio_postgres::Error> {
    let sql = format!(
        "{WORKSPACE_SELECT} WHERE $1::uuid IS NULL OR w.account_id = $1 ORDER BY a.created, a.name, w.created, w.name"
    );
    c.query(sql.as_str(), &[&account_id])
        .await?
        .iter()
        .map(Workspace::from_row)
        .collect()
}
