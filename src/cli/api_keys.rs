//! `stratus api-key create|list|revoke`: the keys a hosted Stratus asks for. They are
//! written straight to the database (as `stratus database` does), so the first admin key
//! can be made before any key exists.

use chrono::Utc;
use stratus_domain::access::Role;
use stratus_store::config::Settings;
use stratus_store::db::access::{self, DEFAULT_ACCOUNT_ID, DEFAULT_WORKSPACE_ID};

use super::ApiKeyCommand;

pub async fn run(command: ApiKeyCommand, settings: &Settings) -> Result<(), String> {
    let (url, local) = super::database(settings).await?;
    let result = apply(command, &url).await;
    super::leave(local).await;
    result
}

async fn apply(command: ApiKeyCommand, url: &str) -> Result<(), String> {
    let pool = stratus_store::db::pool(url, 1)?;
    stratus_store::db::migrate(&pool).await?;
    let client = pool
        .get()
        .await
        .map_err(|e| format!("could not connect to Postgres: {e}"))?;
    let result = match command {
        ApiKeyCommand::Create {
            name,
            role,
            expires_in_days,
            account_wide,
        } => {
            let role = Role::parse(&role).ok_or_else(|| {
                format!("--role {role:?} is not a role: expected admin, developer, runner or viewer")
            })?;
            let name = stratus_domain::access::key_name(&name).map_err(|e| format!("--name: {e}"))?;
            let expires = expires_in_days
                .map(stratus_domain::access::key_lifetime)
                .transpose()
                .map_err(|e| format!("--expires-in-days: {e}"))?
                .map(|lifetime| Utc::now() + lifetime);
            let workspace = (!account_wide).then_some(DEFAULT_WORKSPACE_ID);
            let (key, secret) =
                access::create_key(&client, name, DEFAULT_ACCOUNT_ID, workspace, role, expires)
                    .await
                    .map_err(|e| format!("could not create the key: {e}"))?;
            println!("Created API key {} ({}, role {}).", key.id, key.name, key.role);
            println!("Its value is shown this once; store it now (PREFECT_API_KEY):\n{secret}");
            Ok(())
        }
        ApiKeyCommand::List => {
            let keys = access::list_keys(&client, DEFAULT_ACCOUNT_ID)
                .await
                .map_err(|e| format!("could not list keys: {e}"))?;
            println!(
                "{:<36}  {:<10}  {:<15}  {:<20}  {:<10}  name",
                "id", "role", "starts with", "expires", "status"
            );
            let now = Utc::now();
            for k in keys {
                let status = k.status(now);
                let expires = k
                    .expires
                    .map(|e| e.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_else(|| "never".into());
                println!(
                    "{:<36}  {:<10}  {:<15}  {:<20}  {:<10}  {}",
                    k.id, k.role, k.prefix, expires, status, k.name
                );
            }
            Ok(())
        }
        ApiKeyCommand::Revoke { id } => {
            if access::revoke_key(&client, DEFAULT_ACCOUNT_ID, id)
                .await
                .map_err(|e| format!("could not revoke the key: {e}"))?
            {
                println!("Revoked API key {id}; servers stop accepting it within STRATUS_AUTH_CACHE_SECONDS (default 5 s).");
                Ok(())
            } else {
                Err(format!("there is no API key {id}"))
            }
        }
    };
    drop(client);
    pool.close();
    result
}
