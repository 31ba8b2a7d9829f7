//! `stratus account create` and `stratus workspace create|list`: who a hosted Stratus
//! serves. Written straight to the database, as `stratus api-key` is.

use stratus_store::config::Settings;
use stratus_store::db::access;
use stratus_store::db::Client;

use super::{AccountCommand, WorkspaceCommand};

/// Runs `work` with a connection that sees every workspace and who may sign in, on the
/// configured database (or the managed one, started for the while), migrated first.
pub async fn with_directory<T>(
    settings: &Settings,
    work: impl AsyncFnOnce(&deadpool_postgres::Pool, &Client) -> Result<T, String>,
) -> Result<T, String> {
    let (url, local) = super::database(settings).await?;
    let result = async {
        let pool = stratus_store::db::pool(&url, 2)?;
        stratus_store::db::migrate(&pool).await?;
        let client = stratus_store::tenancy::system(pool.get())
            .await
            .map_err(|e| format!("could not connect to Postgres: {e}"))?;
        let result = work(&pool, &client).await;
        drop(client);
        pool.close();
        result
    }
    .await;
    super::leave(local).await;
    result
}

/// An account's id, by name or id, or a clear error.
pub async fn account(client: &Client, name: &str) -> Result<uuid::Uuid, String> {
    access::find_account(client, name)
        .await
        .map_err(|e| format!("could not read accounts: {e}"))?
        .ok_or_else(|| {
            format!("there is no account {name:?} (make one with `stratus account create --name {name}`)")
        })
}

/// A workspace of `account_id`, by name or id, or a clear error.
pub async fn workspace(
    client: &Client,
    account_id: uuid::Uuid,
    name: &str,
) -> Result<access::Workspace, String> {
    access::find_workspace_in(client, account_id, name)
        .await
        .map_err(|e| format!("could not read workspaces: {e}"))?
        .ok_or_else(|| format!("the account has no workspace {name:?} (see `stratus workspace list`)"))
}

/// A name for an account or workspace: what keys' names may be.
fn name(raw: &str) -> Result<&str, String> {
    stratus_domain::access::key_name(raw).map_err(|e| format!("--name: {e}"))
}

pub async fn run_account(command: AccountCommand, settings: &Settings) -> Result<(), String> {
    let AccountCommand::Create { name: raw } = command;
    let name = name(&raw)?;
    with_directory(settings, async |_, client| {
        let id = access::create_account(client, name)
            .await
            .map_err(|e| format!("could not create the account: {e}"))?
            .ok_or_else(|| format!("there is already an account {name:?}"))?;
        println!("Created account {name} ({id}).");
        println!("Add a workspace with: stratus workspace create --account {name} --name NAME");
        Ok(())
    })
    .await
}

pub async fn run_workspace(command: WorkspaceCommand, settings: &Settings) -> Result<(), String> {
    match command {
        WorkspaceCommand::Create {
            name: raw,
            account: account_name,
        } => {
            let name = name(&raw)?;
            with_directory(settings, async |pool, client| {
                let account_id = account(client, &account_name).await?;
                let workspace = access::create_workspace(client, account_id, name)
                    .await
                    .map_err(|e| format!("could not create the workspace: {e}"))?
                    .ok_or_else(|| format!("the account already has a workspace {name:?}"))?;
                stratus_store::tenancy::within(
                    workspace.id,
                    stratus_store::system_blocks::install_in_scope(pool),
                )
                .await
                .map_err(|e| e.to_string())?;
                println!("Created workspace {} ({}) in account {}.", workspace.name, workspace.id, workspace.account_name);
                println!("Its API: PREFECT_API_URL=<server>{}", workspace.api_path());
                println!(
                    "Make it a key with: stratus api-key create --account {} --workspace {} --name NAME --role admin",
                    workspace.account_name, workspace.name
                );
                Ok(())
            })
            .await
        }
        WorkspaceCommand::List {
            account: account_name,
        } => {
            with_directory(settings, async |_, client| {
                let account_id = match &account_name {
                    Some(a) => Some(account(client, a).await?),
                    None => None,
                };
                let workspaces = access::list_workspaces(client, account_id)
                    .await
                    .map_err(|e| format!("could not list workspaces: {e}"))?;
                println!("{:<20}  {:<20}  api path", "account", "workspace");
                for w in workspaces {
                    println!("{:<20}  {:<20}  {}", w.account_name, w.name, w.api_path());
                }
                Ok(())
            })
            .await
        }
    }
}
