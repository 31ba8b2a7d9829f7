//! `stratus api-key create|list|revoke`: the keys a hosted Stratus asks for. They are
//! written straight to the database (as `stratus database` does), so the first admin key
//! can be made before any key exists.

use chrono::Utc;
use stratus_domain::access::Role;
use stratus_store::config::Settings;
use stratus_store::db::access::{self, DEFAULT_WORKSPACE_ID};
use stratus_store::db::Client;

use super::workspaces::{account, with_directory, workspace};
use super::ApiKeyCommand;

pub async fn run(command: ApiKeyCommand, settings: &Settings) -> Result<(), String> {
    with_directory(settings, async |_, client| apply(command, client).await).await
}

async fn apply(command: ApiKeyCommand, client: &Client) -> Result<(), String> {
    match command {
        ApiKeyCommand::Create {
            name,
            role,
            expires_in_days,
            account: account_name,
            workspace: workspace_name,
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
            let account_id = account(client, &account_name).await?;
            let workspace = workspace(client, account_id, &workspace_name).await?;
            let (key, secret) = access::create_key(
                client,
                name,
                account_id,
                (!account_wide).then_some(workspace.id),
                role,
                expires,
            )
            .await
            .map_err(|e| format!("could not create the key: {e}"))?;
            let reach = if account_wide {
                format!("every workspace of account {}", workspace.account_name)
            } else {
                format!("workspace {}", workspace.name)
            };
            println!(
                "Created API key {} ({}, role {}, {reach}).",
                key.id, key.name, key.role
            );
            if workspace.id != DEFAULT_WORKSPACE_ID {
                println!("Use it with PREFECT_API_URL=<server>{}", workspace.api_path());
            }
            println!("Its value is shown this once; store it now (PREFECT_API_KEY):\n{secret}");
            Ok(())
        }
        ApiKeyCommand::List {
            account: account_name,
        } => {
            let account_id = account(client, &account_name).await?;
            let keys = access::list_keys(client, account_id, None)
                .await
                .map_err(|e| format!("could not list keys: {e}"))?;
            let workspaces = access::list_workspaces(client, Some(account_id))
                .await
                .map_err(|e| format!("could not list workspaces: {e}"))?;
            println!(
                "{:<36}  {:<10}  {:<15}  {:<20}  {:<10}  {:<16}  name",
                "id", "role", "starts with", "expires", "status", "workspace"
            );
            let now = Utc::now();
            for k in keys {
                let status = k.status(now);
                let expires = k
                    .expires
                    .map(|e| e.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_else(|| "never".into());
                let reach = match k.workspace_id {
                    None => "(account-wide)".to_string(),
                    Some(w) => workspaces
                        .iter()
                        .find(|x| x.id == w)
                        .map(|x| x.name.clone())
                        .unwrap_or_else(|| w.to_string()),
                };
                println!(
                    "{:<36}  {:<10}  {:<15}  {:<20}  {:<10}  {:<16}  {}",
                    k.id, k.role, k.prefix, expires, status, reach, k.name
                );
            }
            Ok(())
        }
        ApiKeyCommand::Revoke {
            id,
            account: account_name,
        } => {
            let account_id = account(client, &account_name).await?;
            if access::revoke_key(client, account_id, None, id)
                .await
                .map_err(|e| format!("could not revoke the key: {e}"))?
            {
                println!("Revoked API key {id}; servers stop accepting it within STRATUS_AUTH_CACHE_SECONDS (default 5 s).");
                Ok(())
            } else {
                Err(format!("there is no API key {id}"))
            }
        }
    }
}
