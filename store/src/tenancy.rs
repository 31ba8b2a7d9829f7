//! Which workspace the work in progress is for. The API's gate runs each request
//! `within` its workspace; every connection taken from the pool then speaks for that
//! workspace alone (the tenant role, and `stratus.workspace`: row security in migration
//! V11 does the rest). Work that spans workspaces (migrations, key checks, the
//! scheduler's list of workspaces) says so with `system`. Work that says nothing gets a
//! connection that sees no rows and can write none: forgetting fails closed.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Workspace(Uuid),
    System,
}

tokio::task_local! {
    static SCOPE: Scope;
}

/// Runs `work` for `workspace`: its connections see that workspace's rows only.
pub async fn within<F: Future>(workspace: Uuid, work: F) -> F::Output {
    SCOPE.scope(Scope::Workspace(workspace), work).await
}

/// Runs `work` across workspaces, as the schema's owner.
pub async fn system<F: Future>(work: F) -> F::Output {
    SCOPE.scope(Scope::System, work).await
}

pub fn current() -> Option<Scope> {
    SCOPE.try_with(|s| *s).ok()
}

/// Runs `work` in a scope taken earlier with [`current`]: for work a request leaves behind
/// (a response body streamed after its handler returned) that must still speak for it.
pub async fn enter<F: Future>(scope: Option<Scope>, work: F) -> F::Output {
    match scope {
        Some(s) => SCOPE.scope(s, work).await,
        None => work.await,
    }
}

/// The workspace the work in progress is for, if it is for one.
pub fn workspace() -> Option<Uuid> {
    match current() {
        Some(Scope::Workspace(w)) => Some(w),
        _ => None,
    }
}

/// Every workspace's id, oldest first: what the scheduler and the upkeep passes go over,
/// one workspace at a time.
pub async fn workspaces(pool: &deadpool_postgres::Pool) -> crate::StoreResult<Vec<Uuid>> {
    system(async {
        let client = pool.get().await?;
        let rows = client
            .query("SELECT id FROM workspace ORDER BY created, id", &[])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    })
    .await
}

/// Runs `work` once in each workspace, in its scope, and gives back what each returned.
/// `work` also gets how many workspaces are left, this one included (to share a budget).
/// Each call starts one workspace further along, so that a workspace with much to do
/// cannot always go first; one that fails is logged and skipped, the others still run.
/// Err only if no workspace could be listed, or every one failed.
pub async fn in_each_workspace<T, F: Future<Output = crate::StoreResult<T>>>(
    pool: &deadpool_postgres::Pool,
    mut work: impl FnMut(Uuid, usize) -> F,
) -> crate::StoreResult<Vec<T>> {
    static ROTATION: AtomicUsize = AtomicUsize::new(0);
    let mut workspaces = workspaces(pool).await?;
    if !workspaces.is_empty() {
        let start = ROTATION.fetch_add(1, Ordering::Relaxed) % workspaces.len();
        workspaces.rotate_left(start);
    }
    let count = workspaces.len();
    let mut done = Vec::with_capacity(count);
    let mut failed = None;
    for (i, workspace) in workspaces.into_iter().enumerate() {
        match within(workspace, work(workspace, count - i)).await {
            Ok(t) => done.push(t),
            Err(e) => {
                tracing::warn!(%workspace, error = ?e, "a workspace's pass failed; the others go on");
                failed = Some(e);
            }
        }
    }
    match failed {
        Some(e) if done.is_empty() => Err(e),
        _ => Ok(done),
    }
}

/// The workspace a connection speaks for in `scope` ('': none), and whether it runs as the
/// tenant role (else as the owner).
fn settings(scope: Option<Scope>) -> (bool, String) {
    match scope {
        Some(Scope::Workspace(w)) => (true, w.to_string()),
        Some(Scope::System) => (false, String::new()),
        None => (true, String::new()),
    }
}

/// A pooled connection, as long as it lives: its statement cache is its own, and the
/// time it was made tells apart two that got the same address.
type ConnectionId = (usize, std::time::Instant);

/// What each pooled connection was last made to speak for, so that a connection taken
/// again for the same scope costs no round trip.
static SPEAKS_FOR: Mutex<Option<HashMap<ConnectionId, Option<Scope>>>> = Mutex::new(None);

/// Connections remembered at most; past it the memory starts over (costing one statement
/// per connection).
const REMEMBERED: usize = 10_000;

/// Forgets what every connection speaks for: each is set again when next taken (after
/// the schema, and so maybe the tenant role's name, changed).
pub fn forget_connections() {
    if let Ok(mut map) = SPEAKS_FOR.lock() {
        *map = None;
    }
}

fn remembered(id: ConnectionId) -> Option<Option<Scope>> {
    SPEAKS_FOR.lock().ok()?.as_ref()?.get(&id).copied()
}

fn remember(id: ConnectionId, scope: Option<Option<Scope>>) {
    if let Ok(mut map) = SPEAKS_FOR.lock() {
        let map = map.get_or_insert_with(HashMap::new);
        match scope {
            Some(scope) => {
                if map.len() >= REMEMBERED {
                    map.clear();
                }
                map.insert(id, scope);
            }
            None => {
                map.remove(&id);
            }
        }
    }
}

/// Makes a connection leaving the pool speak for the current scope: the database's tenant
/// role (migration V11 names it) and the workspace, or the owner. The statements are
/// prepared once per connection; the owner's names no function, so that it also works
/// before the migrations have run. A connection already speaking for the scope is left
/// as it is.
pub(crate) async fn apply(
    client: &deadpool_postgres::ClientWrapper,
    metrics: &deadpool_postgres::Metrics,
) -> Result<(), tokio_postgres::Error> {
    let scope = current();
    let id = (
        Arc::as_ptr(&client.statement_cache) as *const () as usize,
        metrics.created,
    );
    if remembered(id) == Some(scope) {
        return Ok(());
    }
    // Forgotten first: were this cut short after the statement reached Postgres, the
    // connection's settings would be unknown, and must be set again next time.
    remember(id, None);
    let (tenant, workspace) = settings(scope);
    let sql = if tenant {
        "SELECT set_config('role', stratus_tenant_role(), false), set_config('stratus.workspace', $1, false)"
    } else {
        "SELECT set_config('role', 'none', false), set_config('stratus.workspace', $1, false)"
    };
    let statement = client.prepare_cached(sql).await?;
    client.query_one(&statement, &[&workspace]).await?;
    remember(id, Some(scope));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scopes_nest_and_default_to_nothing() {
        assert_eq!(current(), None);
        let w = Uuid::new_v4();
        within(w, async {
            assert_eq!(workspace(), Some(w));
            system(async { assert_eq!(current(), Some(Scope::System)) }).await;
            assert_eq!(workspace(), Some(w));
        })
        .await;
        assert_eq!(settings(None), (true, String::new()));
        assert_eq!(settings(Some(Scope::System)), (false, String::new()));
        assert_eq!(settings(Some(Scope::Workspace(w))), (true, w.to_string()));
    }
}
